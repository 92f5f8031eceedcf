"""`tet`: Temporal Efficient Training (Deng et al., ICLR 2022) on the `sg-bptt` network.

Loss on the per-step outputs O[t] = FC output at step t ([T, B, K]):
  L = (1 - lam) (1/T) sum_t CE(O[t], y) + lam (1/T) sum_t MSE(O[t], phi)
with phi = 1 and lam = 1e-3, the official code's defaults (`--means 1.0 --lamb 1e-3`,
`TET_loss` in the authors' repository; the MSE is the mean over all T x B x K entries).
Evaluation uses the time-mean of O, as the official test loop does.
Deviation: the network and neuron are sg-bptt's (IF, ATan). The official code's neuron is
mem = 0.5 mem + x with hard reset at 1, i.e. `--set neuron=lif` here, but a triangle surrogate.
Reported (TET paper, unverified here): CIFAR-10 ResNet-19 94.16 / 94.44 / 94.50 % at T = 2 / 4 / 6;
CIFAR-100 ResNet-19 72.87 / 74.47 / 74.72 %; ImageNet SEW-ResNet-34 68.00 % (T = 4);
CIFAR10-DVS VGGSNN 83.17 % (T = 10).
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


class TET(SGBPTT):
    key, Params = "tet", TETParams

    def build(self, arch, info) -> nn.Module:
        net = super().build(arch, info)
        # keep the per-step outputs of the layer that ends `sequence`, so training can call the
        # model itself (through DistributedDataParallel, whose forward syncs gradients)
        last = net.output_neuron if net.output_neuron is not None else net.fc
        last.register_forward_hook(self._keep)
        self._seq: Tensor | None = None
        return net

    def _keep(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if module.training:
            self._seq = output

    def train_outputs(self, model: nn.Module, x: Tensor) -> Tensor:
        model(x)
        seq, self._seq = self._seq, None
        return seq  # [T, B, K]

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return tet_loss(outputs, y, self.p.lam, self.p.phi)
