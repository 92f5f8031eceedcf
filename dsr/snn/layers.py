"""Time-first layers and the ways to differentiate a DSR network.

Every layer maps [T, B, ...] -> [T, B, ...]; a time length of 1 is a constant input. Synaptic
layers fold time into batch; BatchNorm normalises over the merged T x B axis (supplement Eq. S10).

exact mode: the T-step network under autograd; neurons apply the official DSR backward.
fast mode (`fast_forward`): the T-step network runs once without saving activations (phase RECORD,
`dsr.snn.phase`), then the same modules run again at batch B on representations (REPRESENT):
synaptic layers are linear and time-invariant, so conv(mean_n o[n]) = mean_n conv(o[n]); each neuron
returns its recorded representation carrying the DSR gradient. It gives exact mode's gradients
(tests, float64).
BatchNorm in training mode needs one thing more. The official backward hands every step the same
gradient g_b, so BN's input gradient is (gamma/sigma)[g_b - mean(g) - x_hat[t, b] k] per channel,
k = mean_{t,b}(g x_hat) (a scalar known at backward). The neurons below take a (weighted) sum over
time of it, which the batch-B graph has; the weights W feeding the BN take sum_{t,b} of it times
their input s[t, b], which adds -(gamma/sigma) k Delta, Delta = sum_{t,b} (x_hat[t, b] -
x_hat_w[b]) s[t, b] backprojected to W (x_hat_w: x_hat reduced over time with the neurons'
gradient weights). Delta depends on the forward pass only and has the size of W: the record
pass computes it once per BN with a weight-gradient contraction over T x B (O(1) in T saved).
approx mode (`fast_forward(..., coupling=False)`) skips Delta and reduces with the plain mean:
cheaper, and equal to exact with BN in eval mode only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsr.snn.phase import Phase, PhaseAware, phase


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


class TBatchNorm(PhaseAware, nn.Module):
    """BatchNorm over merged time x batch (Eq. S10); channel dim 2 of [T, B, C, ...]."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        # set by fast_forward for the record pass: the neurons' gradient weights over time
        # (None: uniform) and whether to compute the coupling term Delta
        self.time_weights: Tensor | None = None
        self.coupling = False
        self._rec: _BNRecord | None = None

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        if self.training and self.phase is Phase.REPRESENT:
            return self._represent(x.flatten(0, 1)).unflatten(0, (T, B))
        if self.training and self.phase is Phase.RECORD:
            return self._record(x).unflatten(0, (T, B))
        if self.training:
            self.num_batches_tracked += 1
        y = F.batch_norm(x.flatten(0, 1), self.running_mean, self.running_var, self.weight,
                         self.bias, self.training, self.momentum, self.eps)
        return y.unflatten(0, (T, B))

    def _record(self, x: Tensor) -> Tensor:
        # x [T, B, C, ...] may carry a graph back to the weights feeding this BN (fast_forward
        # builds one per BN in the record pass); the normalisation itself runs without one
        self.num_batches_tracked += 1
        with torch.no_grad():
            # the kernel's own batch statistics: a separate var() pass costs twice the BN itself
            y, mean, invstd = torch.native_batch_norm(
                x.detach().flatten(0, 1), self.weight, self.bias, self.running_mean,
                self.running_var, True, self.momentum, self.eps)
        rec = _BNRecord(T=x.shape[0], mean=mean, invstd=invstd)
        if self.coupling and x.requires_grad and x.shape[0] > 1:
            rec.x_red, rec.params, rec.delta = _coupling(x, self.time_weights)
        self._rec = rec
        return y

    def _represent(self, flat: Tensor) -> Tensor:
        rec = self._rec
        if rec is None:
            raise RuntimeError("representation pass without a recorded spike pass")
        return _BNRepresent.apply(flat, self.weight, self.bias, rec, *rec.params)


class _BNRecord:
    """What the representation pass of one TBatchNorm needs from the record pass."""

    def __init__(self, T: int, mean: Tensor, invstd: Tensor):
        self.T, self.mean, self.invstd = T, mean, invstd  # statistics over T x B, [C] each
        self.x_red: Tensor | None = None  # [B, C, ...] input reduced over time by w (None: mean)
        self.params: tuple[Tensor, ...] = ()  # the weights feeding the BN
        self.delta: tuple[Tensor, ...] = ()  # their Delta / sigma (unnormalised x_hat: see below)


def _graph_leaves(t: Tensor) -> list[Tensor]:
    """Leaf tensors (the parameters) that `t`'s autograd graph reaches, in a fixed order."""
    out, seen, stack = [], set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):  # AccumulateGrad: a leaf
            out.append(fn.variable)
        stack.extend(f for f, _ in fn.next_functions)
    return out


def _coupling(
    x: Tensor, w: Tensor | None
) -> tuple[Tensor | None, tuple[Tensor, ...], tuple[Tensor, ...]]:
    """x [T, B, C, ...] with a graph to the weights feeding it -> (x_red [B, C, ...], or None for
    the plain mean; the weights; sigma Delta per weight), with Delta = sum_{t,b} (x_hat[t, b] -
    x_hat_w[b]) s[t, b] backprojected to W. x_hat - x_hat_w = (x - x_w) / sigma, so the
    contraction uses x - x_w and the backward divides by sigma once more. Each weight's first
    dimension must be the BN's channel (true for conv, pooling, sums and shared dropout)."""
    params = tuple(_graph_leaves(x))
    for p in params:
        if p.shape[0] != x.shape[2]:
            raise ValueError(f"fast mode: a weight of shape {tuple(p.shape)} feeds a BatchNorm of "
                             f"{x.shape[2]} channels through a channel-mixing map; use mode exact")
    xd = x.detach()
    x_red = xd.mean(0) if w is None else torch.tensordot(w.to(xd), xd, dims=([0], [0]))
    deltas = torch.autograd.grad(x, params, xd - x_red) if params else ()
    # the uniform reduction is the time-mean of x, which the representation pass carries anyway
    return (None if w is None else x_red), params, deltas


class _BNRepresent(torch.autograd.Function):
    """BN at batch B in the representation pass: value gamma x_hat_mean + beta with the T x B
    statistics; backward is the T x B BN backward for a gradient constant over time (see the
    module docstring), with dy the gradient summed over steps:
      dgamma = sum dy x_hat,  dbeta = sum dy,  k = sum(dy x_hat) / (T M)   (M = B x spatial)
      dz = (gamma/sigma) [dy - sum(dy)/M - x_hat_red sum(dy x_hat)/M]
      dW = -(gamma/sigma) k Delta = -(gamma/sigma^2) k (sigma Delta)  per output channel."""

    @staticmethod
    def forward(ctx, z: Tensor, weight: Tensor, bias: Tensor, rec: _BNRecord, *params: Tensor):
        shape = [1, -1] + [1] * (z.dim() - 2)  # [B, C, ...] broadcasting of a [C] vector
        x_hat = (z - rec.mean.view(shape)) * rec.invstd.view(shape)
        ctx.rec, ctx.shape = rec, shape
        ctx.save_for_backward(x_hat, weight)
        return x_hat * weight.view(shape) + bias.view(shape)

    @staticmethod
    def backward(ctx, dy: Tensor):
        x_hat, weight = ctx.saved_tensors
        rec, shape = ctx.rec, ctx.shape
        dims = [0, *range(2, dy.dim())]
        M = dy.numel() // dy.shape[1]
        s, sx = dy.sum(dims), (dy * x_hat).sum(dims)  # [C] each
        scale = weight * rec.invstd
        x_red = x_hat
        if rec.x_red is not None:
            x_red = (rec.x_red - rec.mean.view(shape)) * rec.invstd.view(shape)
        dz = scale.view(shape) * (dy - (s / M).view(shape) - x_red * (sx / M).view(shape))
        k = scale * rec.invstd * sx / (rec.T * M)  # (gamma/sigma^2) k, [C]
        dparams = tuple(-k.view(-1, *[1] * (d.dim() - 1)) * d for d in rec.delta)
        return (dz, sx, s, None, *dparams)


class TimeSharedDropout(PhaseAware, nn.Module):
    """Dropout with one mask for all time steps (SpikingJelly's layer.Dropout convention).

    The official code draws a new mask per time step; a shared mask keeps the representation
    pass consistent with the spike pass (same mask in both), so exact and fast agree. In the
    REPRESENT phase a call reuses the last call's mask (the first after `reset_mask` draws one).
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self._mask: Tensor | None = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if self.phase is not Phase.REPRESENT or self._mask is None:
            keep = torch.rand_like(x[:1]) >= self.p  # [1, B, ...], broadcast over T
            self._mask = keep.to(x.dtype) / (1 - self.p)
        return x * self._mask

    def reset_mask(self) -> None:
        """Forget the mask: the next call draws a new one, in any phase."""
        self._mask = None


def fast_forward(model: nn.Module, x: Tensor, coupling: bool = True) -> Tensor:
    """Fast-mode DSR output: a T-step record pass, then a batch-B representation graph.

    Returns the same value as `model(x)` with exact mode's gradients (BN's coupling term
    included) and saved activations O(1) in T. `coupling=False` is approx mode: it drops that
    term (exact only with BN in eval mode) and skips its weight-gradient contraction.
    """
    if not torch.is_grad_enabled():
        return model(x)
    record_pass(model, x, coupling)
    with phase(model, Phase.REPRESENT):
        return model(x)


def record_pass(model: nn.Module, x: Tensor, coupling: bool = True) -> None:
    """The T-step forward of the fast mode: each module keeps what the representation pass
    needs (neurons: masks and rates; BN: statistics and, with `coupling`, its Delta terms)."""
    bns = [m for m in model.modules() if isinstance(m, TBatchNorm)]
    coupling = coupling and any(m.training for m in bns)
    weights = _time_weights(model) if coupling else None
    for m in bns:
        m.coupling, m.time_weights = coupling, weights
    try:
        # grad mode on only so each BN sees the graph from the weights feeding it (neurons and
        # BN run without one); each BN consumes and frees its graph at once
        with torch.set_grad_enabled(coupling), phase(model, Phase.RECORD):
            model(x)
    finally:
        for m in bns:
            m.coupling, m.time_weights = False, None


def _time_weights(model: nn.Module) -> Tensor | None:
    """The neurons' gradient weights over time (one neuron model per network)."""
    found = [m.grad_time_weights() for m in model.modules() if hasattr(m, "grad_time_weights")]
    if not found or all(w is None for w in found):
        return None
    if any(w is None or not torch.equal(w, found[0]) for w in found):
        raise ValueError("fast mode needs one neuron model (same T, dt, tau) in every layer; "
                         "use mode exact for mixed neurons")
    return found[0]


class FastForward(nn.Module):
    """Calling it runs `fast_forward(net, x, coupling)`: a module, so DistributedDataParallel
    sees the call (its forward prepares the gradient all-reduce) while the parameters stay
    `net`'s."""

    def __init__(self, net: nn.Module, coupling: bool = True):
        super().__init__()
        self.net, self.coupling = net, coupling

    def forward(self, x: Tensor) -> Tensor:
        return fast_forward(self.net, x, self.coupling)
