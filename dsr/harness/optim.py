"""The optimiser and learning-rate schedule of a run: SGD or Adam over every parameter (weight
decay on v_th too, as the official code), linear warm-up then cosine annealing, stepped once per
training batch."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from dsr.config import RunConfig, TrainConfig

if TYPE_CHECKING:
    from dsr import data as dsr_data
    from dsr.harness.train import Dist


def lr_lambda(warmup: int, total: int):
    """Linear warm-up over `warmup` iterations, then cosine annealing to 0 at `total`."""

    def f(it: int) -> float:
        if it < warmup:
            return (it + 1) / warmup
        progress = (it - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    t = cfg.train
    # weight decay on every parameter, v_th included, as the official code does
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum,
                               weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def steps_per_epoch(data: dsr_data.Dataset, t: TrainConfig, dist: Dist) -> int:
    return data.num_batches("train", t.batch_size, world_size=dist.world_size,
                            drop_last=dist.drop_last)


def make_schedule(opt: torch.optim.Optimizer, t: TrainConfig, data: dsr_data.Dataset, dist: Dist,
                  epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The lr schedule of `epochs` epochs, stepped once per training batch."""
    total = epochs * steps_per_epoch(data, t, dist)
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(t.warmup_iters, total))
