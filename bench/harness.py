"""One `python -m dsr.run` configuration set up through the trainer's own pieces on the CPU, for
benches that drive `dsr.harness.train.train_one_epoch` epoch by epoch and record every step's
loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dsr import data as dsr_data
from dsr import run
from dsr.config import RunConfig
from dsr.harness.train import Dist, Run, make_optimizer, make_schedule
from dsr.method import Method


class _Cast:
    """A dsr.data.Dataset whose batches come in another floating-point type."""

    def __init__(self, data, dtype):
        self.data, self.dtype, self.info = data, dtype, data.info

    def num_batches(self, *args, **kw) -> int:
        return self.data.num_batches(*args, **kw)

    def batches(self, *args, **kw):
        for x, y in self.data.batches(*args, **kw):
            yield x.to(self.dtype), y


@dataclass
class Harness:
    cfg: RunConfig
    method: Method
    model: torch.nn.Module
    run: Run
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    losses: list[float]  # each training step's loss, appended as the step runs


def harness(argv: list[str], dtype: torch.dtype | None = None) -> Harness:
    """The run `argv` describes, seeded and ready to train; with `dtype`, model and input batches
    in that floating-point type. The method's loss is wrapped to record each step's value."""
    cfg, method_cls = run.resolve(run.parser().parse_args(argv))
    t = cfg.train
    torch.manual_seed(cfg.seed)
    data = dsr_data.load(cfg.dataset, t.data_root, train_subset=t.train_subset)
    if dtype is not None:
        data = _Cast(data, dtype)
    method = method_cls(cfg)
    model = method.build(cfg.arch, data.info)
    if dtype is not None:
        model = model.to(dtype)
    ctx = Run(cfg, data, torch.device("cpu"), Dist(), log=lambda *a: None)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, t, data, Dist(), t.epochs)
    losses: list[float] = []
    loss = method.loss

    def recorded(outputs, y):
        value = loss(outputs, y)
        losses.append(value.item())
        return value

    method.loss = recorded
    return Harness(cfg, method, model, ctx, opt, sched, losses)
