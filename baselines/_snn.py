"""Pieces the baselines share: the time-step contract, threshold calibration, ANN-to-SNN swap.

- `steps`: a [1, B, ...] constant input repeated over T steps (direct encoding), as DSR neurons do.
- `activation_percentiles`: per neuron layer, the p-th percentile of the ANN's activations over a
  few training batches (Rueckauer et al., Front. Neurosci. 2017, "robust normalisation", p = 99.9;
  the official DSR ImageNet code, which pools post-ReLU values, zeros included, and takes the
  99.9% order statistic of a random subsample of at most 1e6 values).
- `ConversionIF`: the IF neuron of converted SNNs: soft reset (reset by subtraction), spikes of
  amplitude v_th so the next layer sees the ANN's scale, initial membrane v_init * v_th.
- `convert`: a copy of an ANN with each activation replaced by a `ConversionIF`.
Tensors are time-first [T, B, ...].
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from dsr.models import tag
from dsr.neuron import if_forward

if TYPE_CHECKING:
    from dsr.config import RunConfig
    from dsr.data import Dataset


def steps(x: Tensor, T: int, who: str) -> Tensor:
    """x [1 or T, B, ...] -> [T, B, ...]: a time length of 1 is a constant input over T steps."""
    if x.shape[0] == 1:
        return x.expand(T, *x.shape[1:])
    if x.shape[0] != T:
        raise ValueError(f"{who} expects {T} time steps (or 1), got {x.shape[0]}")
    return x


# ---- percentile calibration -----------------------------------------------------------------


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


# ---- the converted SNN ----------------------------------------------------------------------


class ConversionIF(nn.Module):
    """IF neuron of a converted SNN: v[t] = v[t-1] + x[t]; o[t] = v_th H(v[t] - v_th); v -= o[t].

    The membrane starts at v_init * v_th (0 for classic conversion, 1/2 for QCFS). This equals
    DSR's IF dynamics with firing factor alpha = 1 - v_init started from 0 (`dsr.neuron.if_forward`:
    both fire the k-th spike once the summed input reaches (k - v_init) v_th), so one
    implementation of the IF loop serves both. The threshold is fixed (a buffer, not trained).
    """

    def __init__(self, T: int, v_th: float, v_init: float = 0.0):
        super().__init__()
        if T < 1:
            raise ValueError(f"time steps T must be >= 1, got {T}")
        if not 0 <= v_init < 1:
            raise ValueError(f"v_init is a fraction of v_th in [0, 1), got {v_init}")
        self.T, self.v_init = T, v_init
        self.register_buffer("v_th", torch.tensor(float(v_th)))

    def extra_repr(self) -> str:
        return f"T={self.T}, v_th={float(self.v_th):.4g}, v_init={self.v_init}"

    def forward(self, x: Tensor) -> Tensor:
        return if_forward(steps(x, self.T, "ConversionIF"), self.v_th, 1.0 - self.v_init)


def convert(ann: nn.Module, v_th: list[float], T: int, v_init: float) -> nn.Module:
    """A copy of `ann` whose neuron layers (in `ann.neurons()` order) are `ConversionIF`s."""
    snn = copy.deepcopy(ann)
    old = snn.neurons()
    if len(old) != len(v_th):
        raise ValueError(f"{len(v_th)} thresholds for {len(old)} neuron layers")
    new = {id(m): tag(ConversionIF(T, th, v_init)) for m, th in zip(old, v_th, strict=True)}
    # swap by identity under every name (architectures alias the output neuron as
    # `output_neuron`), so no path still reaches an ANN activation
    for parent in list(snn.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None and id(child) in new:
                parent._modules[name] = new[id(child)]
    return snn.eval()


def weights_key(model: nn.Module) -> tuple:
    """Changes whenever any parameter or buffer of `model` is modified in place or replaced.

    Optimiser steps, BN running statistics and load_state_dict all write in place and bump the
    tensor's version counter, so an equal key means the same weights (a cheap cache key).
    """
    return (id(model),) + tuple((t.data_ptr(), t._version) for t in model.state_dict().values())


# ---- pre-training stages ----------------------------------------------------------------------
