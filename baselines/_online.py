"""Online training through time, shared by `ottt` and `sltt`: a forward and backward per step.

The architectures (dsr.snn.models) take whole [T, B, ...] sequences; an online method's training
step calls the network once per time step t on that step's input ([1, B, ...]; a static image is
the same at every step) inside `online_steps`, where
- each `OnlineNeuron` carries its membrane v from one call to the next; SpikingJelly's online
  nodes (OTTTLIFNode, SLTTLIFNode) detach it at the start of a step, so no gradient flows along
  the temporal path of v and nothing of step t-1's graph is kept at step t (memory O(1) in T);
- BatchNorm (dsr.snn.layers.TBatchNorm) sees a time length of 1: it normalises over the batch at
  each step and updates its running statistics T times per batch, as in the authors' codes
  (SLTT's PreAct-ResNet and OTTT's VGG with BN call nn.BatchNorm2d once per step);
- time-shared dropout keeps the first step's mask for the whole sequence;
- each `TraceSynapse` (OTTT) keeps the presynaptic trace of its input.
The loss at step t is the authors' per-step loss divided by T, back-propagated at once; the
gradients accumulate over the steps and the harness steps the optimiser once per batch (OTTT_A,
SLTT). Evaluation calls the network once on the whole sequence, like every other method: with BN
in eval mode (running statistics) the per-step and whole-sequence networks are one function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from spikingjelly.activation_based.layer import ReplaceforGrad
from torch import Tensor, nn

from dsr.config import ConfigError
from dsr.method import Method
from dsr.snn.layers import SeqWrap, TimeSharedDropout
from dsr.snn.models import NeuronFactory, steps
from dsr.snn.phase import Phase


class OnlineNeuron(nn.Module):
    """A single-step SpikingJelly node under the factory contract. Outside `online_steps`:
    [T or 1, B, ...] -> [T, B, ...] from rest (reset before and after, so stateless between
    calls); inside: one step [1, B, ...] -> [1, B, ...], the membrane kept for the next call."""

    def __init__(self, T: int, node: nn.Module):
        super().__init__()
        self.T, self.node = T, node
        self.online = False

    def extra_repr(self) -> str:
        return f"T={self.T}"

    def forward(self, x: Tensor) -> Tensor:
        if self.online:
            if x.shape[0] != 1:
                raise ValueError(f"an online step takes one time step, got {x.shape[0]}")
            return self._step(x[0]).unsqueeze(0)  # [1, B, ...]
        x = steps(x, self.T, type(self.node).__name__)
        self.node.reset()
        s = torch.stack([self._step(x[t]) for t in range(self.T)])  # [T, B, ...] in {0, 1}
        self.node.reset()
        return s

    def _step(self, x: Tensor) -> Tensor:
        s = self.node(x)
        # OTTTLIFNode returns [spike, trace] in training; TraceSynapse keeps the trace instead
        return s[0] if isinstance(s, list) else s


class TraceSynapse(nn.Module):
    """OTTT's synapse: conv or linear `op` whose weight gradient at step t is g[t] (x) z_hat[t],
    z_hat[t] = decay z_hat[t-1] + z[t] the presynaptic trace of its input z, instead of g[t] (x)
    z[t]. Forward values and the input gradient are op's (op is linear, so its input gradient does
    not depend on the input); SpikingJelly's ReplaceforGrad routes them (its GradwithTrace rule).

    The trace is kept at the layer's input rather than at the neuron (SpikingJelly passes
    [spike, trace] pairs through an OTTTSequential, which cannot express residual blocks): every
    map between a neuron and the next synaptic layer here (pooling, flatten, shared dropout,
    identity shortcuts) is linear and the same at every step, so the trace of the input is that
    map applied to the neurons' traces.
    """

    def __init__(self, op: nn.Module, decay: float):
        super().__init__()
        self.op, self.decay = op, decay
        self.online = False
        self.trace: Tensor | None = None

    def extra_repr(self) -> str:
        return f"decay={self.decay}"

    def forward(self, z: Tensor) -> Tensor:  # [B, ...]: SeqWrap folds the step's [1, B]
        if not (self.online and self.training):
            return self.op(z)
        zd = z.detach()
        self.trace = zd if self.trace is None else self.trace * self.decay + zd
        if not torch.is_grad_enabled():
            return self.op(z)
        with torch.no_grad():
            out = self.op(z)
        out_for_grad = self.op(ReplaceforGrad.apply(z, self.trace))
        return ReplaceforGrad.apply(out_for_grad, out)


def trace_synapses(model: nn.Module, decay: float) -> nn.Module:
    """Every conv and linear layer of `model` but the first in a TraceSynapse. The first (the
    stem) sees the input, not spikes, and keeps its plain gradient, as in the authors' code."""
    wrapped = [m for m in model.modules()
               if isinstance(m, SeqWrap) and isinstance(m.module, (nn.Conv2d, nn.Linear))]
    for m in wrapped[1:]:
        m.module = TraceSynapse(m.module, decay)
    return model


@contextlib.contextmanager
def online_steps(model: nn.Module) -> Iterator[None]:
    """Inside, each call of `model` is one time step (module docstring); neurons start at rest,
    and on exit they are at rest again with traces and dropout masks dropped."""
    mods = list(model.modules())
    stepping = [m for m in mods if isinstance(m, (OnlineNeuron, TraceSynapse))]
    drops = [m for m in mods if isinstance(m, TimeSharedDropout)]
    _rest(mods)
    for m in stepping:
        m.online = True
    for d in drops:  # in the REPRESENT phase it reuses the mask drawn by the first call
        d.phase = Phase.REPRESENT
        d.reset_mask()
    try:
        yield
    finally:
        for m in stepping:
            m.online = False
        for d in drops:
            d.phase = Phase.SPIKE
            d.reset_mask()
        _rest(mods)


def _rest(mods: list[nn.Module]) -> None:
    for m in mods:
        if isinstance(m, OnlineNeuron):
            m.node.reset()
        elif isinstance(m, TraceSynapse):
            m.trace = None


def check_lif(p) -> None:
    """One-line errors for the LIF fields shared by the online methods."""
    if not p.tau > 1:
        raise ConfigError(f"SpikingJelly's LIF needs tau > 1, got {p.tau}")
    if not p.v_th > 0 or not p.alpha > 0:
        raise ConfigError(f"v_th and alpha must be > 0, got v_th={p.v_th} alpha={p.alpha}")
    if not 0 <= p.lam <= 1:
        raise ConfigError(f"lam must be in [0, 1], got {p.lam}")


class OnlineMethod(Method):
    """Base of `ottt` and `sltt`: LIF nodes stepped online, head pool -> FC (no neuron after the
    pool or on the logits, as the authors' networks), logits = time-mean of the FC's outputs."""

    category, neuron = "online", "LIF"
    output_neuron = False
    pool_neuron = False

    def node(self) -> nn.Module:
        """A fresh single-step SpikingJelly node with this method's hyperparameters."""
        raise NotImplementedError

    def neuron_factory(self) -> NeuronFactory:
        return lambda: OnlineNeuron(self.T, self.node())

    def mse_target(self, outputs: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        """The authors' loss of one step's logits [B, K] (before the 1/T):
        (1 - lam) CE(outputs, y) + lam MSE(outputs, target)."""
        ce = F.cross_entropy(outputs, y)
        lam = self.p.lam
        if lam == 0:
            return ce
        return (1 - lam) * ce + lam * F.mse_loss(outputs, self.mse_target(outputs, y))

    def trained_steps(self) -> list[int]:
        """The time steps whose loss is back-propagated (all of them; SLTT-K draws K)."""
        return list(range(self.T))

    def train_step(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """One forward and, at trained steps, one backward per time step; the loss summed over
        all T steps (each divided by T) for logging."""
        T = self.T
        net = getattr(model, "module", model)  # the network inside DDP
        static = x.dim() == net.static_input_dims
        if not static and x.shape[0] != T:
            raise ValueError(f"{self.key} expects {T} input frames, got {x.shape[0]}")
        trained = set(self.trained_steps())
        last = max(trained)
        losses = []
        with online_steps(model):
            for t in range(T):
                x_t = x if static else x[t:t + 1]  # [B, C, H, W] or [1, B, C, H, W]
                with _no_sync(model, t in trained and t != last), \
                        torch.set_grad_enabled(t in trained):
                    loss = self.loss(model(x_t), y) / T
                    if t in trained:
                        loss.backward()
                losses.append(loss.detach())
        return torch.stack(losses).sum()


def _no_sync(model: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
    """DDP: all-reduce only at the last backward of the batch (the gradients accumulate)."""
    if skip and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()
