"""The converted SNN the conversion baselines evaluate, and a cache key for its weights.

- `ConversionIF`: the IF neuron of converted SNNs: soft reset (reset by subtraction), spikes of
  amplitude v_th so the next layer sees the ANN's scale, initial membrane v_init * v_th.
- `convert`: a copy of an ANN with each activation replaced by a `ConversionIF`.
Threshold calibration (percentiles of the ANN's activations) lives in `dsr.harness.calibration`.
Tensors are time-first [T, B, ...].
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from dsr.snn.models import steps, tag
from dsr.snn.neuron import if_forward


class ConversionIF(nn.Module):
    """IF neuron of a converted SNN: v[t] = v[t-1] + x[t]; o[t] = v_th H(v[t] - v_th); v -= o[t].

    The membrane starts at v_init * v_th (0 for classic conversion, 1/2 for QCFS). This equals
    DSR's IF dynamics with firing factor alpha = 1 - v_init started from 0
    (`dsr.snn.neuron.if_forward`: both fire the k-th spike once the summed input reaches (k -
    v_init) v_th), so one implementation of the IF loop serves both. The threshold is fixed (a
    buffer, not trained).
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

