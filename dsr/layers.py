"""Time-first layers and the two ways to differentiate a DSR network.

Every layer maps [T, B, ...] -> [T, B, ...]; a time length of 1 is a constant input. Synaptic
layers fold time into batch; BatchNorm normalises over the merged T x B axis (supplement Eq. S10).

exact mode: the T-step network under autograd; neurons apply the official DSR backward.
fast mode (`fast_forward`): the T-step network runs once under no_grad ("record"), then the same
modules run once more at batch B on representations ("represent"): synaptic layers are linear
and time-invariant, so conv(mean_n o[n]) = mean_n conv(o[n]); each neuron returns its recorded
representation carrying the clamp's gradient (the DSR rule). BN uses the recorded T x B mean
and variance as values and the batch-B statistics for gradients. With BN in eval mode the two
modes agree to rounding. In training mode, for IF, every neuron, v_th and BN-parameter gradient
still equals exact mode's and only conv/linear weight gradients lose BN's variance-coupling term
(the covariance over time of spikes and currents); for LIF the official rule's lam-weighted sum
over time also carries part of that term, so hidden thresholds and BN parameters differ slightly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PHASES = ("spike", "record", "represent")


class SeqWrap(nn.Module):
    """Apply a stateless per-sample module to [T, B, ...] by folding time into batch."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        y = self.module(x.flatten(0, 1))  # [T*B, ...]
        return y.unflatten(0, (T, B))


def conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool = True) -> SeqWrap:
    return SeqWrap(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias))


def linear(fin: int, fout: int) -> SeqWrap:
    return SeqWrap(nn.Linear(fin, fout))


def avg_pool(k: int, stride: int | None = None, padding: int = 0) -> SeqWrap:
    return SeqWrap(nn.AvgPool2d(k, stride=stride, padding=padding))


def global_avg_pool() -> SeqWrap:
    return SeqWrap(nn.AdaptiveAvgPool2d(1))


def flatten() -> SeqWrap:
    return SeqWrap(nn.Flatten())


class TBatchNorm(nn.Module):
    """BatchNorm over merged time x batch (Eq. S10); channel dim 2 of [T, B, C, ...]."""

    phase: str = "spike"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self._stats: tuple[Tensor, Tensor] | None = None

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        flat = x.flatten(0, 1)  # [T*B, C, ...]
        if self.phase == "represent" and self.training:
            return self._represent(flat).unflatten(0, (T, B))
        if self.training:
            self.num_batches_tracked += 1
        if self.phase == "record" and self.training:
            # the kernel's own batch statistics: a separate var() pass costs twice the BN itself
            y, mean, invstd = torch.native_batch_norm(flat, self.weight, self.bias,
                                                      self.running_mean, self.running_var, True,
                                                      self.momentum, self.eps)
            self._stats = (mean, invstd.pow(-2) - self.eps)  # biased variance over T x B
            return y.unflatten(0, (T, B))
        y = F.batch_norm(flat, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum, self.eps)
        return y.unflatten(0, (T, B))

    def _represent(self, flat: Tensor) -> Tensor:
        if self._stats is None:
            raise RuntimeError("representation pass without a recorded spike pass")
        mean_tb, var_tb = self._stats
        var_b, mean_b = torch.var_mean(flat, [0, *range(2, flat.dim())], correction=0)
        mean = mean_b + (mean_tb - mean_b).detach()  # value: T x B statistics
        var = var_b + (var_tb - var_b).detach()  # gradient: through the batch-B statistics
        shape = [1, -1] + [1] * (flat.dim() - 2)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return (flat - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)


class TimeSharedDropout(nn.Module):
    """Dropout with one mask for all time steps (SpikingJelly's layer.Dropout convention).

    The official code draws a new mask per time step; a shared mask keeps the representation
    pass consistent with the spike pass (same mask in both), so exact and fast agree.
    """

    phase: str = "spike"

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self._mask: Tensor | None = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if self.phase != "represent" or self._mask is None:
            keep = torch.rand_like(x[:1]) >= self.p  # [1, B, ...], broadcast over T
            self._mask = keep.to(x.dtype) / (1 - self.p)
        return x * self._mask


def phased_modules(model: nn.Module) -> Iterator[nn.Module]:
    for m in model.modules():
        if hasattr(m, "phase"):
            yield m


@contextlib.contextmanager
def phase(model: nn.Module, name: str) -> Iterator[None]:
    """Set every phase-aware module of `model` to `name` ("spike", "record", "represent")."""
    if name not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {name!r}")
    mods = list(phased_modules(model))
    for m in mods:
        m.phase = name
    try:
        yield
    finally:
        for m in mods:
            m.phase = "spike"


def fast_forward(model: nn.Module, x: Tensor) -> Tensor:
    """Fast-mode DSR output: T-step forward under no_grad, then a batch-B representation graph.

    Returns the same value as `model(x)` with DSR gradients; saved activations are O(1) in T.
    """
    if not torch.is_grad_enabled():
        return model(x)
    with torch.no_grad(), phase(model, "record"):
        model(x)
    with phase(model, "represent"):
        return model(x)


class FastForward(nn.Module):
    """Calling it runs `fast_forward(net, x)`: a module, so DistributedDataParallel sees the call
    (its forward prepares the gradient all-reduce) while the parameters stay `net`'s."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return fast_forward(self.net, x)
