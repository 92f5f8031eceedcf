"""`sg-bptt`: IF (or LIF) neurons trained by backpropagation through time with a surrogate gradient.

Neurons are SpikingJelly 2.0 multi-step nodes (step_mode="m"):
  IF:  v[t] = v[t-1] + x[t];  LIF: v[t] = (1 - 1/tau) v[t-1] + x[t] (decay_input=False), or
  v[t] = v[t-1] + (x[t] - v[t-1]) / tau (decay_input=True, SpikingJelly's default);
  s[t] = H(v[t] - v_th); hard reset v <- v_reset = 0 after a spike (None: v -= v_th), not
  detached; backward replaces dH/dv by ATan, g'(u) = alpha / 2 / (1 + (pi/2 alpha u)^2),
  u = v - v_th, alpha = 2 (SpikingJelly's ATan, used by Fang et al., ICCV 2021).
Defaults: IF, v_th 1 (no leak, so a weak input still integrates to a spike; BENCHMARKS.md,
"Baseline defaults"); for LIF tau 2 without input decay (STBP-tdBN's and TET's form).
BN normalises over T x B (dsr.snn.layers.TBatchNorm), as tdBN does (Zheng et al., AAAI 2021);
`--set tdbn=true` adds tdBN's threshold scaling, y = lam (alpha v_th x_hat) + beta
with x_hat normalised over T x B and lam, beta trained (lam starts at 1): a fixed factor alpha v_th
on every BN's weight (`tdbn_scale`; alpha = `tdbn_alpha`, 1 as in tdBN outside residual
additions: these pre-activation blocks have no BN in front of an addition). At v_th 1 and alpha 1
the factor is 1 and tdBN is plain BN over T x B. Head: no neuron after the global average pool
and output_neuron=False, logits = time-mean of the last FC's outputs (the usual SG readout). The
closest published recipe (SG + BPTT + T x B BN) is STBP-tdBN; its results are rows of
paper_tables/published.csv.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikingjelly.activation_based import neuron, surrogate
from torch import Tensor, nn
from torch.nn.utils import parametrize

from dsr.config import ConfigError
from dsr.method import Method
from dsr.snn.layers import TBatchNorm
from dsr.snn.models import NeuronFactory, steps

SURROGATES = {"atan": surrogate.ATan, "sigmoid": surrogate.Sigmoid}


class SJNeuron(nn.Module):
    """A SpikingJelly multi-step neuron under the factory contract: [T, B, ...] -> [T, B, ...].

    A [1, B, ...] constant input is repeated over T steps; the node's state is reset before and
    after every call, so the module is stateless between calls like the DSR neurons.
    """

    def __init__(self, T: int, node: nn.Module):
        super().__init__()
        self.T, self.node = T, node

    def extra_repr(self) -> str:
        return f"T={self.T}"

    def forward(self, x: Tensor) -> Tensor:
        self.node.reset()
        s = self.node(steps(x, self.T, type(self.node).__name__))  # [T, B, ...] in {0, 1}
        self.node.reset()  # drop the last membrane (and its graph) until the next call
        return s


def _check(p, *, tau: float) -> None:
    if p.surrogate not in SURROGATES:
        raise ConfigError(f"surrogate must be one of {', '.join(SURROGATES)}, got {p.surrogate!r}")
    if not p.alpha > 0 or not p.v_th > 0:
        raise ConfigError(f"alpha and v_th must be > 0, got alpha={p.alpha} v_th={p.v_th}")
    if not tau > 1:
        raise ConfigError(f"SpikingJelly's LIF needs tau > 1, got {tau}; use neuron=if for no leak")


@dataclass(frozen=True)
class SGParams:
    neuron: str = "if"  # if | lif (see the module docstring for why IF is the default)
    tau: float = 2.0  # LIF only
    v_th: float = 1.0
    v_reset: float | None = 0.0  # None: soft reset (subtract v_th)
    decay_input: bool = False  # LIF only: u[t] = (1 - 1/tau) u[t-1] + x[t] (STBP-tdBN, TET)
    detach_reset: bool = False
    surrogate: str = "atan"  # atan | sigmoid
    alpha: float = 2.0
    tdbn: bool = False  # tdBN's alpha * v_th scaling of every BN (Zheng et al.)
    tdbn_alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.neuron not in ("lif", "if"):
            raise ConfigError(f"neuron must be 'lif' or 'if', got {self.neuron!r}")
        _check(self, tau=self.tau if self.neuron == "lif" else 2.0)
        if not self.tdbn_alpha > 0:
            raise ConfigError(f"tdbn_alpha must be > 0, got {self.tdbn_alpha}")


class _Scaled(nn.Module):
    """A parametrisation: the stored weight lam times a fixed factor."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.factor


def tdbn_scale(model: nn.Module, factor: float) -> nn.Module:
    """tdBN: every TBatchNorm's weight becomes lam * factor (factor = alpha v_th), lam the
    trained parameter, so y = lam (factor x_hat) + beta with x_hat over T x B."""
    for m in model.modules():
        if isinstance(m, TBatchNorm):
            parametrize.register_parametrization(m, "weight", _Scaled(factor))
    return model


class SurrogateMethod(Method):
    """Base of the BPTT baselines: one SpikingJelly node per neuron layer, logits = FC time-mean."""

    category = "surrogate gradient"
    output_neuron = False
    # pool -> FC, as in the STBP-tdBN / TET ResNets: an IF neuron after the global average pool
    # integrates pooled rates r < 1 and fires only if sum_t r_t >= v_th; at T = 2 on real
    # CIFAR-10 no pooled feature reached the FC at initialisation (`python -m bench.pool_head`)
    # and a 3-epoch TET run stayed at chance (loss ln 10)
    pool_neuron = False

    def node(self) -> nn.Module:
        """A fresh multi-step SpikingJelly neuron with this method's hyperparameters."""
        raise NotImplementedError

    def neuron_factory(self) -> NeuronFactory:
        return lambda: SJNeuron(self.T, self.node())


def if_or_lif(p, surrogate_function: nn.Module) -> nn.Module:
    """A multi-step SpikingJelly IFNode or LIFNode from `p`'s neuron fields."""
    common = dict(v_threshold=p.v_th, v_reset=p.v_reset, detach_reset=p.detach_reset,
                  surrogate_function=surrogate_function, step_mode="m")
    if p.neuron == "if":
        return neuron.IFNode(**common)
    return neuron.LIFNode(tau=p.tau, decay_input=p.decay_input, **common)


class SGBPTT(SurrogateMethod):
    key, Params = "sg-bptt", SGParams

    @property
    def neuron(self) -> str:  # recorded in metrics.json: the --set neuron choice
        return self.p.neuron.upper()

    def build(self, arch: str, info) -> nn.Module:
        model = super().build(arch, info)
        p = self.p
        return tdbn_scale(model, p.tdbn_alpha * p.v_th) if p.tdbn else model

    def node(self) -> nn.Module:
        p = self.p
        return if_or_lif(p, SURROGATES[p.surrogate](alpha=p.alpha))
