"""`tet`: Temporal Efficient Training (Deng et al., ICLR 2022) on the `sg-bptt` network.

Loss on the per-step outputs O[t] = FC output at step t ([T, B, K]):
  L = (1 - lam) (1/T) sum_t CE(O[t], y) + lam (1/T) sum_t MSE(O[t], phi)
with phi = 1 and lam = 1e-3, the official code's defaults (`--means 1.0 --lamb 1e-3`,
`TET_loss` in the authors' repository; the MSE is the mean over all T x B x K entries).
Evaluation uses the time-mean of O, as the official test loop does.
Deviation: the network and neuron are sg-bptt's (IF, ATan). The official code's neuron is
mem = 0.5 mem + x with hard reset at 1, i.e. `--set neuron=lif` here, but a triangle surrogate.
Published results: paper_tables/published.csv.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.sg_bptt import SGBPTT, SGParams
from dsr.config import ConfigError


@dataclass(frozen=True)
class TETParams(SGParams):
    lam: float = 1e-3  # weight of the MSE regulariser (official `--lamb`)
    phi: float = 1.0  # its target (official `--means`)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.lam <= 1:
            raise ConfigError(f"lam must be in [0, 1], got {self.lam}")


def tet_loss(outputs: Tensor, y: Tensor, lam: float, phi: float) -> Tensor:
    """TET loss of per-step outputs [T, B, K] against labels [B]."""
    T = outputs.shape[0]
    ce = F.cross_entropy(outputs.flatten(0, 1), y.repeat(T))  # = (1/T) sum_t CE(O[t], y)
    mse = F.mse_loss(outputs, torch.full_like(outputs, phi))
    return (1 - lam) * ce + lam * mse


class PerStep(nn.Module):
    """`net.sequence` as a module's forward: the output layer's [T, B, K] sequence.

    Training calls this module, not `net.sequence`, so DistributedDataParallel (which syncs
    gradients in its forward) can wrap it.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.sequence(x)


class TET(SGBPTT):
    key, Params = "tet", TETParams

    def training_module(self, model: nn.Module) -> nn.Module:
        return PerStep(model)

    def train_outputs(self, model: nn.Module, x: Tensor) -> Tensor:
        return model(x)  # [T, B, K]

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return tet_loss(outputs, y, self.p.lam, self.p.phi)
