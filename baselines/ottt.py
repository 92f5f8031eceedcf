"""`ottt`: Online Training Through Time (Xiao et al., NeurIPS 2022), OTTT_A.

Each step t runs forward and backward at once, with the membrane entering step t detached (no
temporal path, as SLTT); what differs is the weight gradient of every synaptic layer fed by
spikes: g[t] (x) a_hat[t] with the presynaptic trace a_hat[t] = lam a_hat[t-1] + s[t],
lam = 1 - 1/tau, in place of g[t] (x) s[t] (g[t]: the step-t loss's gradient at the layer's
output through the spatial path). a_hat carries the leak's effect of past inputs on the membrane
(dv[t]/dW = a_hat[t] for v[t] = lam v[t-1] + W s[t], resets and BN aside), so OTTT keeps that
part of BPTT's temporal gradient at memory O(1) in T. OTTT_A: gradients summed over the T
steps, one optimiser step per batch (the authors' default; OTTT_O, an update per step, is not
offered). The first layer sees the image, not spikes, and keeps its plain gradient (authors'
code).
SpikingJelly 2.0: OTTTLIFNode is the neuron; its trace output is not used, as the trace is kept
at each synaptic layer's input (`baselines._online.TraceSynapse`, which routes the gradient with
SpikingJelly's ReplaceforGrad; why there, and why it is the same trace: its docstring).
Settings of the authors' code (github pkuxmq/OTTT-SNN, train_cifar.py, modules/neuron.py):
tau 2, v_th 1, soft reset, detach_reset, Sigmoid surrogate (alpha 4), loss per step
((1 - lam) CE(O[t], y) + lam MSE(O[t], one_hot(y))) / T with lam 0.05.
Deviation: the authors' CIFAR network is a VGG with scaled weight standardisation and no BN; on
the suite's architectures BN runs per step (baselines._online). Published rows:
paper_tables/published.csv.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from spikingjelly.activation_based import neuron, surrogate
from torch import Tensor, nn

from baselines._online import OnlineMethod, check_lif, trace_synapses


@dataclass(frozen=True)
class OTTTParams:
    tau: float = 2.0
    v_th: float = 1.0
    v_reset: float | None = None  # None: soft reset (subtract v_th)
    decay_input: bool = False
    alpha: float = 4.0  # Sigmoid surrogate's sharpness
    lam: float = 0.05  # weight of the MSE term (to the one-hot label)

    def __post_init__(self) -> None:
        check_lif(self)


class OTTT(OnlineMethod):
    key, Params = "ottt", OTTTParams

    def build(self, arch: str, info) -> nn.Module:
        return trace_synapses(super().build(arch, info), decay=1.0 - 1.0 / self.p.tau)

    def node(self) -> nn.Module:
        p = self.p
        return neuron.OTTTLIFNode(tau=p.tau, decay_input=p.decay_input, v_threshold=p.v_th,
                                  v_reset=p.v_reset, detach_reset=True, step_mode="s",
                                  surrogate_function=surrogate.Sigmoid(alpha=p.alpha))

    def mse_target(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.one_hot(y, outputs.shape[-1]).to(outputs.dtype)
