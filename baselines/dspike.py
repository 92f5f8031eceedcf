"""`dspike`: BPTT with the Dspike surrogate gradient (Li et al., NeurIPS 2021).

Dspike is a tanh-shaped relaxation of the spike on the membrane window x in [0, 1]
around the firing point x = 1/2, with temperature b (larger b: sharper):
  Dspike(x) = (tanh(b (x - 1/2)) + tanh(b/2)) / (2 tanh(b/2)),  0 below the window, 1 above it.
Here x = u + 1/2 with u = v - v_th (the surrogate's input, as for every SpikingJelly surrogate),
so the window is |u| <= 1/2 and the gradient that replaces dH/du is
  g(u) = b / (2 tanh(b/2)) sech^2(b u)  for |u| <= 1/2,  0 outside  (it integrates to 1).
Forward: the Heaviside step H(u), spikes in {0, 1}. Network: `sg-bptt`'s (BN over T x B, pool ->
FC head) with its LIF option as the default neuron (the Dspike paper's neuron): v[t] =
(1 - 1/tau) v[t-1] + x[t], tau 2, v_th 1, hard reset to 0.
Deviations: the paper adapts b during training by a finite-difference-gradient search (its
Algorithm 1); here b is fixed (`--set b=...`). Its default 3 is not from the paper (its initial
temperature was not found in a source this project could read); the paper's membrane window is
[0, 1] around a threshold of 1/2, here the same width around v_th. Published rows:
paper_tables/published.csv.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from spikingjelly.activation_based import surrogate
from torch import Tensor, nn

from baselines.sg_bptt import SurrogateMethod, if_or_lif
from dsr.config import ConfigError

# ---- pure functions -------------------------------------------------------------------------


def dspike(u: Tensor, b: float) -> Tensor:
    """Dspike(u + 1/2): 0 for u < -1/2, 1 for u > 1/2, tanh-shaped in between."""
    inside = u.clamp(-0.5, 0.5)
    return (torch.tanh(b * inside) + math.tanh(b / 2)) / (2 * math.tanh(b / 2))


def dspike_grad(u: Tensor, b: float) -> Tensor:
    """dDspike/du: b / (2 tanh(b/2)) sech^2(b u) on |u| <= 1/2, else 0."""
    g = b / (2 * math.tanh(b / 2)) / torch.cosh(b * u).square()
    return g.masked_fill(u.abs() > 0.5, 0.0)


# ---- autograd Function and SpikingJelly surrogate -----------------------------------------------


class DspikeSpike(torch.autograd.Function):
    """H(u) forward (a spike where v >= v_th), Dspike's derivative backward."""

    @staticmethod
    def forward(ctx, u: Tensor, b: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.b = b
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_s: Tensor):
        (u,) = ctx.saved_tensors
        return grad_s * dspike_grad(u, ctx.b), None


class Dspike(surrogate.SurrogateFunctionBase):
    """Dspike as a SpikingJelly surrogate function (for its IF/LIF nodes); `b` the temperature."""

    def __init__(self, b: float = 3.0, spiking: bool = True):
        super().__init__(spiking, b=b)

    @staticmethod
    def spiking_function(x: Tensor, b: float) -> Tensor:
        return DspikeSpike.apply(x, b)

    @staticmethod
    def primitive_function(x: Tensor, b: float) -> Tensor:
        return dspike(x, b)


# ---- the method -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DspikeParams:
    b: float = 3.0  # temperature (fixed; see the module docstring)
    neuron: str = "lif"  # lif | if
    tau: float = 2.0  # LIF only
    v_th: float = 1.0
    v_reset: float | None = 0.0  # None: soft reset (subtract v_th)
    decay_input: bool = False
    detach_reset: bool = False

    def __post_init__(self) -> None:
        if self.neuron not in ("lif", "if"):
            raise ConfigError(f"neuron must be 'lif' or 'if', got {self.neuron!r}")
        if not 0 < self.b < math.inf:
            raise ConfigError(f"the temperature b must be a positive number, got {self.b}")
        if not self.v_th > 0:
            raise ConfigError(f"v_th must be > 0, got {self.v_th}")
        _check_tau(self)


def _check_tau(p: DspikeParams) -> None:
    if p.neuron == "lif" and not p.tau > 1:
        raise ConfigError(f"SpikingJelly's LIF needs tau > 1, got {p.tau}; use neuron=if for "
                          "no leak")


class DspikeBPTT(SurrogateMethod):
    key, Params = "dspike", DspikeParams

    @property
    def neuron(self) -> str:
        return self.p.neuron.upper()

    def node(self) -> nn.Module:
        return if_or_lif(self.p, Dspike(self.p.b))
