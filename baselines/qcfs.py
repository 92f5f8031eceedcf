"""`qcfs`: quantisation clip-floor-shift activation, then conversion (Bu et al., ICLR 2022).

The ANN replaces every ReLU by  h(z) = lam * clip(floor(z L / lam + phi) / L, 0, 1)  (the paper's
QCFS function) with L quantisation levels, shift phi = 1/2 and one trainable clip lam per layer
(initialised to 8, the official code's; floor passes its gradient straight through). Conversion
uses lam as the IF threshold with the membrane starting at lam / 2; with T = L and a constant
input the SNN's mean output equals h exactly (the paper's zero expected conversion error).
L's defaults by dataset are the spec's (dsr.registry.METHODS: 4 for CIFAR-scale data, 16 for
ImageNet). Head as `ann` (plain FC logits, no activation after it),
and on ResNets no activation after the global average pool either (see `QCFS.pool_neuron`).
Published results: paper_tables/published.csv.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from baselines.conversion import ConversionMethod
from dsr.config import ConfigError
from dsr.snn import models
from dsr.stages import CONVERT, TRAIN_ANN, Stage


def floor_ste(x: Tensor) -> Tensor:
    """floor(x) forward, identity gradient (the official GradFloor)."""
    return x + (torch.floor(x) - x).detach()


class ClipFloorShift(nn.Module):
    """h(z) = lam clip(floor(z L / lam + phi) / L, 0, 1) on [T, B, ...]; lam is trainable."""

    def __init__(self, L: int, lam: float = 8.0, phi: float = 0.5):
        super().__init__()
        self.L, self.phi = L, phi
        self.lam = nn.Parameter(torch.tensor(float(lam)))

    def extra_repr(self) -> str:
        return f"L={self.L}, phi={self.phi}"

    def forward(self, z: Tensor) -> Tensor:
        q = floor_ste(z * self.L / self.lam + self.phi) / self.L
        return self.lam * q.clamp(0, 1)


@dataclass(frozen=True)
class QCFSParams:
    L: int  # quantisation levels; the default is the spec's, by dataset
    lam: float = 8.0  # initial clip per layer
    phi: float = 0.5  # shift; 1/2 makes the expected conversion error zero

    def __post_init__(self) -> None:
        if self.L < 1 or not self.lam > 0:
            raise ConfigError(f"QCFS needs L >= 1 and lam > 0, got L={self.L} lam={self.lam}")


class QCFS(ConversionMethod):
    """Trains its quantised ANN (`--time-steps 1`, evaluated as that ANN); converted from its
    model.pt by `--from-checkpoint`."""

    key, Params = "qcfs", QCFSParams
    v_init = 0.5
    # No activation after the global average pool, as in the QCFS networks: the pool is linear,
    # so its spikes feed the FC directly (counted as ACs). With one, QCFS quantises pooled means
    # (below 1) with lam = 8, L = 4 to 0: at initialisation on real CIFAR-10 every FC input was
    # 0 and the logits' std 0.012 (`python -m bench.pool_head`), and a 3-epoch run kept the loss
    # at ln 10. (`conversion` keeps the neuron: its ReLU there is the identity on pooled ReLU
    # outputs, so its ANN is `ann`'s function.)
    pool_neuron = False

    def stages(self) -> tuple[Stage, ...]:
        return (TRAIN_ANN, CONVERT)

    def neuron_factory(self) -> models.NeuronFactory:
        return functools.partial(ClipFloorShift, self.p.L, self.p.lam, self.p.phi)

    def thresholds(self, ann: nn.Module, data) -> list[float]:
        return [float(m.lam.detach()) for m in ann.neurons()]
