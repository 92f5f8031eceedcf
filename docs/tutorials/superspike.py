"""Tutorial: a surrogate-gradient method written as an out-of-tree plug-in.

`superspike`: LIF neurons trained by backpropagation through time, with the Heaviside's
derivative replaced by SuperSpike's fast sigmoid (Zenke & Ganguli, Neural Computation 2018):
  v[t] = beta v[t-1] + x[t];  s[t] = H(v[t] - v_th);  v[t] <- v[t] - v_th s[t] (soft reset)
  backward: dH/du is replaced by 1 / (1 + slope |u|)^2 at u = v[t] - v_th
Tensors are time-first, [T, B, ...]. Plain PyTorch: an autograd.Function for the spike, a
module for the neuron, a Params dataclass for the hyperparameters and a Method subclass that
says how the harness builds the network; everything else (data, training loop, metrics,
checkpoints, metrics.json) is the harness's.

    python -m dsr.run --plugin-path docs/tutorials --plugin superspike=superspike:SuperSpike \
        --method superspike --dataset digits --time-steps 4 \
        --out results/tutorial/superspike/metrics.json
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dsr.config import ConfigError
from dsr.method import Method
from dsr.snn.models import NeuronFactory, steps


class FastSigmoidSpike(torch.autograd.Function):
    """s = H(u) forward; SuperSpike's surrogate 1 / (1 + slope |u|)^2 backward."""

    @staticmethod
    def forward(ctx, u: Tensor, slope: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.slope = slope
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad / (1 + ctx.slope * u.abs()) ** 2, None


class LIF(nn.Module):
    """LIF neurons over T steps: [T, B, ...] currents -> [T, B, ...] spikes in {0, 1}.

    Stateless between calls (the whole sequence goes in); a [1, B, ...] input, such as a static
    image after the first layer, is a constant current over the T steps.
    """

    def __init__(self, T: int, beta: float, v_th: float, slope: float):
        super().__init__()
        self.T, self.beta, self.v_th, self.slope = T, beta, v_th, slope

    def extra_repr(self) -> str:
        return f"T={self.T}, beta={self.beta}, v_th={self.v_th}, slope={self.slope}"

    def forward(self, x: Tensor) -> Tensor:
        x = steps(x, self.T, "superspike LIF")  # [T, B, ...]
        v = torch.zeros_like(x[0])
        out = []
        for t in range(self.T):
            v = self.beta * v + x[t]
            s = FastSigmoidSpike.apply(v - self.v_th, self.slope)
            v = v - self.v_th * s  # soft reset; gradients flow through it (BPTT)
            out.append(s)
        return torch.stack(out)  # [T, B, ...]


@dataclass(frozen=True)
class Params:
    """Hyperparameters: `--set beta=0.8` etc.; an unknown key is an error."""

    beta: float = 0.9  # membrane decay per step
    v_th: float = 1.0
    slope: float = 10.0  # steepness of the surrogate (SuperSpike's beta)

    def __post_init__(self) -> None:
        if not 0 < self.beta <= 1:
            raise ConfigError(f"beta must be in (0, 1], got {self.beta}")
        if not (self.v_th > 0 and self.slope > 0):
            raise ConfigError(f"v_th and slope must be > 0, got v_th={self.v_th}, "
                              f"slope={self.slope}")


class SuperSpike(Method):
    """The plug-in: every architecture is built from `neuron_factory()`."""

    key = "superspike"  # must equal the key it is registered under
    name = "SuperSpike"  # what tables, legends and claims show (default: the key)
    category = "surrogate gradient"  # the table's grouping; claims compare by it
    neuron = "LIF"  # recorded in metrics.json
    # the usual surrogate-gradient readout: no neuron after the global average pool and none on
    # the output, so the logits are the time-mean of the last linear layer's outputs
    output_neuron = False
    pool_neuron = False
    Params = Params

    def neuron_factory(self) -> NeuronFactory:
        p = self.p  # this run's Params, defaults overridden by --set
        return lambda: LIF(self.T, p.beta, p.v_th, p.slope)
