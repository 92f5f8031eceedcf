"""Spiking statistics of evaluation: firing rates (Fig. S1), SynOps and energy.

Firing rate = spikes per neuron per time step over the whole test set. A spike is a non-zero
output element at one step, whatever its amplitude (v_th for DSR-IF, v_th/dt for DSR-LIF, a scale
for conversion), since every neuron here emits at most one spike per step.
SynOps (spec section 9), per test sample and per synaptic layer (Conv1d/2d/3d, Linear), summed
over time steps: a spike-fed layer costs ACs = sum over arriving spikes of their fan-out, one AC
per spike whatever its amplitude (folded into the weights); an analog-fed layer costs MACs =
fvcore's count, out.numel() * C_in/groups * prod(kernel) per evaluation. Bias adds are not
counted (as fvcore and NeuroBench). Energy: the run's pj_per_ac and pj_per_mac (defaults, 45 nm:
dsr.config.PJ_PER_AC and PJ_PER_MAC).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from dsr.config import PJ_PER_AC, PJ_PER_MAC


class HookMetric:
    """A metric object that counts in forward hooks while attached (`attach`), so the logits
    and labels of dsr.harness.evaluate.run_pass's `update` add nothing to it."""

    def update(self, logits: Tensor, y: Tensor) -> None:
        pass


class SpikeCounter(HookMetric):
    """Forward hooks on spiking layers that count spikes and neuron-steps."""

    def __init__(self, layers: list[nn.Module]):
        self.layers = layers
        self.spikes = [0] * len(layers)
        self.slots = [0] * len(layers)

    @contextlib.contextmanager
    def attach(self) -> Iterator[SpikeCounter]:
        handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def _hook(self, i: int) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            self.spikes[i] += int(torch.count_nonzero(output))
            self.slots[i] += output.numel()

        return hook

    def per_layer(self) -> list[float]:
        return [s / n if n else 0.0 for s, n in zip(self.spikes, self.slots, strict=True)]

    def total(self) -> float | None:
        slots = sum(self.slots)
        return sum(self.spikes) / slots if slots else None


# ---- SynOps ------------------------------------------------------------------------------------

SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_TAG = "_dsr_synops_flow"
# ops through which a spike tensor stays a set of spike events (same events, other layout)
_SHAPE_OPS = frozenset({
    "flatten", "unflatten", "view", "view_as", "reshape", "reshape_as", "contiguous", "clone",
    "squeeze", "unsqueeze", "permute", "transpose", "movedim", "expand", "expand_as",
    "__getitem__", "select", "narrow", "to", "float", "double", "half", "bfloat16", "detach",
})
_STACK_OPS = frozenset({"stack", "cat", "concat", "concatenate"})
_MUL_OPS = frozenset({"mul", "multiply", "__mul__", "__rmul__"})
_DIV_OPS = frozenset({"div", "divide", "true_divide", "__truediv__"})
_INPLACE_DUNDER = frozenset({"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
                             "__ifloordiv__", "__ipow__", "__iand__", "__ior__", "__ixor__"})
_DROPOUTS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
             F.feature_alpha_dropout)
_MAX_POOLS = (F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d,
              F.adaptive_max_pool2d, F.adaptive_max_pool3d)
_ADAPTIVE_AVG = {F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3}
_AVG_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                  "divisor_override")


@dataclass(frozen=True)
class _Flow:
    """What a tensor carries: spikes of `source` (a spiking layer's name), or the network input."""

    owner: object  # the counter that set the tag; stale tags of other passes are ignored
    source: str
    spikes: bool
    count: Tensor | None = None  # spikes merged into each element by a pool; None: x != 0


@dataclass
class _Tally:
    source: str
    ops: float = 0.0
    spikes: float = 0.0
    once: float = 0.0  # ops of evaluations that ran once for all steps (static input)
    per_step: list[float] | None = None  # ops of each time step (SynOpsCounter(time_steps=T))


class _FlowMode(TorchFunctionMode):
    def __init__(self, counter: SynOpsCounter):
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.counter._propagate(func, args, kwargs, out)
        return out


def _adaptive_area(in_size: Sequence[int], out_size: Sequence[int], device) -> Tensor:
    """Elements per window of an adaptive pool: [start, end) = [floor(iL/O), ceil((i+1)L/O))."""
    area = torch.ones((), device=device)
    for L, O in zip(in_size, out_size, strict=True):
        i = torch.arange(O, device=device)
        length = ((i + 1) * L + O - 1) // O - (i * L) // O
        area = area.unsqueeze(-1) * length.float()  # outer product over the pooled axes
    return area


class SynOpsCounter(HookMetric):
    """Counts ACs and MACs of every synaptic layer of `net` while attached.

    Whether a layer's input is spike-fed is decided by data flow, not by its values: the outputs
    of `spiking_layers` are tagged, and a torch-function mode carries the tag through the ops
    that keep spike events events: layout ops (flatten, view, indexing, stack), scaling and
    dropout (dropped spikes do not arrive), and pooling. Any other op (BN, residual add, conv)
    yields analog values. Pooling is folded into the next layer: an average pool passes the
    number of spikes it merged into each element, so every spike costs the fan-out of the
    folded pool+conv operator (exact for non-overlapping pools, the only ones fed by spikes in
    the suite's architectures; overlapping pools count each spike once per path). A max pool
    passes one spike per window that holds one. Fan-out is structural: zero weights count.

    With `time_steps=T` it also keeps each layer's ops per time step, so `report(..., steps=t)`
    gives the cost of the first t steps of the same pass (a converted SNN's latency sweep): a
    layer's [T*B, ...] input (time-major, as SeqWrap flattens it) is split by step, while a
    [B, ...] input (the static image entering once) costs the same at every prefix.
    """

    def __init__(self, net: nn.Module, spiking_layers: Sequence[nn.Module],
                 time_steps: int | None = None):
        self.net = net
        self.time_steps = time_steps
        self._batch: int | None = None
        names = {id(m): n for n, m in net.named_modules()}
        missing = [type(m).__name__ for m in spiking_layers if id(m) not in names]
        if missing:
            raise ValueError(f"spiking layers {missing} are not submodules of the network; pass "
                             "method.spiking_layers(net) of the network being measured")
        self.spiking = [(names[id(m)], m) for m in spiking_layers]
        self.synaptic = [(n, m) for n, m in net.named_modules() if isinstance(m, SYNAPTIC)]
        self._token = object()
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._reach: dict[tuple, Tensor] = {}

    @contextlib.contextmanager
    def attach(self) -> Iterator[SynOpsCounter]:
        handles = [self.net.register_forward_pre_hook(self._input_hook)]
        handles += [m.register_forward_hook(self._spike_hook(n)) for n, m in self.spiking]
        handles += [m.register_forward_hook(self._synaptic_hook(n)) for n, m in self.synaptic]
        try:
            with _FlowMode(self):
                yield self
        finally:
            for h in handles:
                h.remove()

    def report(self, samples: int, pj_per_ac: float = PJ_PER_AC,
               pj_per_mac: float = PJ_PER_MAC, steps: int | None = None) -> dict[str, Any]:
        """Per-sample SynOps and energy over `samples` measured samples (metrics.json "synops");
        `steps`: of the first `steps` time steps only (needs `time_steps` at construction)."""
        if samples < 1:
            raise ValueError("SynOps need at least one measured sample; the test split is empty")
        if pj_per_ac < 0 or pj_per_mac < 0:
            raise ValueError(f"energy per op must be >= 0, got pj_per_ac={pj_per_ac}, "
                             f"pj_per_mac={pj_per_mac}")
        if steps is not None and not (self.time_steps and 1 <= steps <= self.time_steps):
            raise ValueError(f"a report over the first {steps} steps needs a counter built with "
                             f"time_steps >= {steps} (got {self.time_steps})")
        tallies = {k: self._prefix(t, steps) for k, t in self._tallies.items()}
        per_layer = []
        for (name, kind), t in tallies.items():
            ops = t.ops / samples
            rec = {"name": name, "kind": kind, "ops": ops,
                   "energy_pj": ops * (pj_per_ac if kind == "AC" else pj_per_mac),
                   "fan_in_source": t.source}
            if kind == "AC":
                rec["spikes"] = t.spikes / samples  # spikes arriving per sample
            per_layer.append(rec)
        # sum, then divide: the totals of integer counts stay exact
        total_ac = sum(t.ops for (_, kind), t in tallies.items() if kind == "AC") / samples
        total_mac = sum(t.ops for (_, kind), t in tallies.items() if kind == "MAC") / samples
        return {"per_layer": per_layer, "total_ac": total_ac, "total_mac": total_mac,
                "energy_pj": pj_per_ac * total_ac + pj_per_mac * total_mac,
                "pj_per_ac": pj_per_ac, "pj_per_mac": pj_per_mac, "samples": samples}

    def _prefix(self, t: _Tally, steps: int | None) -> _Tally:
        if steps is None or steps == self.time_steps:
            return t
        ops = t.once + sum(t.per_step[:steps])
        # spikes arrive in proportion to the ops they cost within a layer
        spikes = t.spikes * ops / t.ops if t.ops else 0.0
        return replace(t, ops=ops, spikes=spikes)

    # -- tags ----------------------------------------------------------------------------------

    def _flow(self, t: Any) -> _Flow | None:
        f = getattr(t, _TAG, None) if isinstance(t, Tensor) else None
        return f if f is not None and f.owner is self._token else None

    def _set(self, t: Tensor, flow: _Flow) -> None:
        setattr(t, _TAG, flow)

    @staticmethod
    def _count(x: Tensor, flow: _Flow) -> Tensor:
        return flow.count if flow.count is not None else (x != 0).float()

    def _input_hook(self, module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], Tensor) and args[0].dim() >= 4:
            self._batch = args[0].shape[-4]  # [B, C, H, W] or [T, B, C, H, W]
        if args and isinstance(args[0], Tensor) and self._flow(args[0]) is None:
            self._set(args[0], _Flow(self._token, "input", spikes=False))

    def _spike_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if isinstance(output, Tensor):
                self._set(output, _Flow(self._token, name, spikes=True))

        return hook

    def _propagate(self, func, args: tuple, kwargs: dict, out: Any) -> None:
        name = getattr(func, "__name__", "")
        first = args[0] if args else None
        if name in _INPLACE_DUNDER or (name.endswith("_") and not name.startswith("_")):
            if self._flow(first) is not None:
                delattr(first, _TAG)  # modified in place: no longer the events it held
            return
        if not isinstance(out, Tensor):
            return
        if name in _STACK_OPS and isinstance(first, (list, tuple)):
            self._propagate_stack(func, args, kwargs, out)
            return
        x, flow = first, self._flow(first)
        if flow is None and name in _MUL_OPS and len(args) > 1:
            x, flow = args[1], self._flow(args[1])
        if flow is None or out is x:
            return
        count = None
        if name in _SHAPE_OPS and x is first:
            if flow.count is not None:
                count = func(flow.count, *args[1:], **kwargs).float()
        elif name in _MUL_OPS or (name in _DIV_OPS and x is first):
            if any(self._flow(a) is not None for a in args if a is not x):
                return  # spikes times spikes: not a spike event any more
            if flow.count is not None:
                count = torch.broadcast_to(flow.count, out.shape) * (out != 0)
        elif func in _DROPOUTS:
            if flow.count is not None:
                count = flow.count * (out != 0)
        elif name in ("avg_pool2d", "avg_pool3d"):
            if flow.spikes:
                p = dict(zip(_AVG_POOL_ARGS, args, strict=False)) | kwargs
                count = func(self._count(x, flow), p["kernel_size"], p.get("stride"),
                             p.get("padding", 0), p.get("ceil_mode", False), True, 1)
        elif func in _ADAPTIVE_AVG:
            if flow.spikes:
                d = _ADAPTIVE_AVG[func]
                area = _adaptive_area(x.shape[-d:], out.shape[-d:], x.device)
                count = func(self._count(x, flow), *args[1:], **kwargs) * area
        elif func not in _MAX_POOLS:
            return
        self._set(out, replace(flow, count=count))

    def _propagate_stack(self, func, args: tuple, kwargs: dict, out: Tensor) -> None:
        parts = list(args[0])
        flows = [self._flow(t) for t in parts]
        if not flows or any(f is None for f in flows) or len({f.spikes for f in flows}) > 1:
            return
        count = None
        if flows[0].spikes and any(f.count is not None for f in flows):
            counts = [self._count(t, f) for t, f in zip(parts, flows, strict=True)]
            count = func(counts, *args[1:], **kwargs)
        source = "+".join(dict.fromkeys(f.source for f in flows))
        self._set(out, _Flow(self._token, source, flows[0].spikes, count))

    # -- counting ------------------------------------------------------------------------------

    def _synaptic_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            x = inputs[0]
            flow = self._flow(x)
            steps = self._steps(x)
            if flow is not None and flow.spikes:
                count = flow.count if flow.count is not None else x != 0  # bool: 1 byte each
                spikes = float(count.sum(dtype=torch.float64))
                if isinstance(module, nn.Linear):
                    rows = count.reshape(count.shape[0] if count.dim() > 1 else 1, -1)
                    per = rows.sum(1, dtype=torch.float64).cpu() * module.out_features
                else:
                    per = self._conv_acs(module, count)
                self._add(name, "AC", flow.source, per, spikes, steps)
            else:
                # fvcore: one MAC per output element and weight of its receptive field
                per = torch.full((output.shape[0],), float(output[0].numel()
                                                          * module.weight.shape[1:].numel()),
                                 dtype=torch.float64)
                self._add(name, "MAC", "analog" if flow is None else flow.source, per, 0.0,
                          steps)

        return hook

    def _steps(self, x: Tensor) -> int | None:
        """T when `x`'s leading dim is time-major T*B of a per-step counter, else None."""
        T, B = self.time_steps, self._batch
        if T is None or B is None or x.dim() < 1 or x.shape[0] != T * B:
            return None
        return T

    def _conv_acs(self, m: nn.Module, count: Tensor) -> Tensor:
        """ACs per leading (sample) index: (C_out / groups) * sum over input positions of
        spikes there x outputs reached."""
        d = len(m.kernel_size)
        # spikes at each position, per leading index
        per_position = count.flatten(1, count.dim() - d - 1).sum(1, dtype=torch.float64)
        reach = self._reach_map(m, tuple(count.shape[-d:]), count.device)
        acs = (per_position * reach.double()).flatten(1).sum(1)
        return acs.cpu() * (m.out_channels // m.groups)

    def _reach_map(self, m: nn.Module, size: tuple[int, ...], device) -> Tensor:
        """Output positions whose window covers each input position (borders, stride, dilation,
        padding mode exact): the gradient of sum(conv(z, ones)) with respect to z."""
        key = (id(m), size, str(device))
        if key not in self._reach:
            d = len(size)
            conv = (F.conv1d, F.conv2d, F.conv3d)[d - 1]
            z = torch.zeros(1, 1, *size, device=device, requires_grad=True)
            ones = torch.ones(1, 1, *m.kernel_size, device=device)
            with torch.enable_grad():
                x, padding = z, m.padding
                if m.padding_mode != "zeros":
                    x = F.pad(z, m._reversed_padding_repeated_twice, mode=m.padding_mode)
                    padding = 0
                y = conv(x, ones, None, m.stride, padding, m.dilation)
                (grad,) = torch.autograd.grad(y.sum(), z)
            self._reach[key] = grad[0, 0]
        return self._reach[key]

    def _add(self, name: str, kind: str, source: str, per: Tensor, spikes: float,
             steps: int | None) -> None:
        """Add ops `per` (one value per leading index of the layer's input); with `steps` the
        leading index is time-major (T*B) and the ops are kept per step as well."""
        t = self._tallies.setdefault((name, kind), _Tally(source))
        if source not in t.source.split("+"):
            t.source += "+" + source
        ops = float(per.sum())
        t.ops += ops
        t.spikes += spikes
        if self.time_steps is None:
            return
        if t.per_step is None:
            t.per_step = [0.0] * self.time_steps
        if steps is None:
            t.once += ops
        else:
            for i, v in enumerate(per.view(steps, -1).sum(1).tolist()):
                t.per_step[i] += v

