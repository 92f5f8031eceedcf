"""`sltt`: Spatial Learning Through Time (Meng et al., ICCV 2023), and SLTT-K (`--set K=k`).

BPTT's gradient of an LIF network splits into a spatial path (through the layers at one time
step) and a temporal path (through the membrane from step t to t+1). SLTT drops the temporal
path: the membrane entering step t is detached, so dL/dW = sum_t of the gradient of the step-t
loss L[t] through the spatial path of step t alone. Each step is back-propagated as soon as it
is computed and its graph freed (memory O(1) in T, `baselines._online`). SLTT-K back-propagates
only K time steps drawn at random per batch (torch.randperm), the other T - K run under no_grad;
K = 0 (default) or K >= T is SLTT.
Neuron: SpikingJelly 2.0's SLTTLIFNode (single step, v detached in training), with the authors'
code's settings (github qymeng94/SLTT, train_SLTT.py and modules/neuron.py): v[t] =
(1 - 1/tau) v[t-1] + x[t] (decay_input False), tau 1.1, v_th 1, soft reset (v -= v_th), surrogate
"triangle" = SpikingJelly's PiecewiseQuadratic (alpha 1). SLTTLIFNode's own defaults (decay
input, hard reset, sigmoid) are not the authors' training settings. Loss per step:
((1 - lam) CE(O[t], y) + lam MSE(O[t], phi)) / T with lam 0.05, phi 1 (the authors' -loss_lambda,
-loss_means). BN per step over the batch (see baselines._online). Published rows:
paper_tables/published.csv.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from spikingjelly.activation_based import neuron, surrogate
from torch import Tensor, nn

from baselines._online import OnlineMethod, check_lif
from dsr.config import ConfigError

SURROGATES = {"triangle": surrogate.PiecewiseQuadratic, "sigmoid": surrogate.Sigmoid}


@dataclass(frozen=True)
class SLTTParams:
    K: int = 0  # SLTT-K: back-propagate K random steps per batch (0: all, i.e. SLTT)
    tau: float = 1.1
    v_th: float = 1.0
    v_reset: float | None = None  # None: soft reset (subtract v_th)
    decay_input: bool = False
    surrogate: str = "triangle"  # triangle | sigmoid
    alpha: float = 1.0  # the surrogate's sharpness
    lam: float = 0.05  # weight of the MSE term
    phi: float = 1.0  # its constant target

    def __post_init__(self) -> None:
        if self.K < 0:
            raise ConfigError(f"K must be >= 0 (0: every step), got {self.K}")
        if self.surrogate not in SURROGATES:
            raise ConfigError(f"surrogate must be one of {', '.join(SURROGATES)}, got "
                              f"{self.surrogate!r}")
        check_lif(self)


class SLTT(OnlineMethod):
    key, Params = "sltt", SLTTParams

    def node(self) -> nn.Module:
        p = self.p
        return neuron.SLTTLIFNode(tau=p.tau, decay_input=p.decay_input, v_threshold=p.v_th,
                                  v_reset=p.v_reset, detach_reset=True, step_mode="s",
                                  surrogate_function=SURROGATES[p.surrogate](alpha=p.alpha))

    def mse_target(self, outputs: Tensor, y: Tensor) -> Tensor:
        return torch.full_like(outputs, self.p.phi)

    def trained_steps(self) -> list[int]:
        K = self.p.K
        if K == 0 or K >= self.T:
            return list(range(self.T))
        return sorted(torch.randperm(self.T)[:K].tolist())
