"""Threshold calibration on a trained ANN: the inputs it sees and its activation percentiles.

- `calibration_batches`: the first n training batches of epoch 0 (inputs only).
- `activation_percentiles`: per neuron layer, the p-th percentile of the ANN's activations over a
  few training batches (Rueckauer et al., Front. Neurosci. 2017, "robust normalisation", p = 99.9;
  the official DSR ImageNet code, which pools post-ReLU values, zeros included, and takes the
  99.9% order statistic of a random subsample of at most 1e6 values).
Used by DSR's ImageNet hybrid (`dsr.method`) and by the conversion baselines.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from dsr.config import RunConfig
    from dsr.data import Dataset


def calibration_batches(
    data: Dataset, cfg: RunConfig, device: torch.device, n: int
) -> list[Tensor]:
    """The first `n` training batches of epoch 0 (the same on every rank): inputs only."""
    batches = data.batches("train", cfg.train.batch_size, epoch=0, seed=cfg.seed, device=device)
    return [x for x, _ in itertools.islice(batches, n)]


def _subsample(values: Tensor, max_samples: int, gen: torch.Generator) -> Tensor:
    flat = values.detach().flatten().float()
    if flat.numel() <= max_samples:
        return flat
    idx = torch.randint(flat.numel(), (max_samples,), generator=gen)
    return flat[idx.to(flat.device)]


@torch.no_grad()
def activation_percentiles(
    model: nn.Module,
    batches: Iterable[Tensor],
    percentile: float = 99.9,
    max_samples: int = 1_000_000,
    seed: int = 0,
) -> list[float]:
    """p-th percentile of each neuron layer's output (model.neurons() order) in eval mode.

    Values are pooled over the batches; each layer keeps a uniform random subsample of at most
    `max_samples` values per batch and overall (the official code's 1e6 cap). A layer whose
    percentile is 0 (nearly always silent) falls back to its maximum, or to 1 if it never fires.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    layers = model.neurons()
    gen = torch.Generator().manual_seed(seed)
    pools: list[list[Tensor]] = [[] for _ in layers]

    def keep(i: int) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            pools[i].append(_subsample(output, max_samples, gen))

        return hook

    handles = [m.register_forward_hook(keep(i)) for i, m in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        for x in batches:
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if not pools or not pools[0]:
        raise ValueError("threshold calibration saw no batches: the training split is empty")
    out = []
    for pool in pools:
        values = _subsample(torch.cat(pool), max_samples, gen)
        q = float(torch.quantile(values, percentile / 100))
        if q <= 0:
            q = float(values.max())
        out.append(q if q > 0 else 1.0)
    return out
