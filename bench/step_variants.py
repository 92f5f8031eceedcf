"""The variants of the training-step benchmark (`bench.train_step`): one configuration (`Case`)
and the network and training step each variant builds (see that module's docstring)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

VARIANTS = ("fast", "exact", "approx", "sj-dsr", "sj-bptt", "sltt", "ottt", "infer")
OPT_IN = ("sltt-k2",)
ONLINE = {"sltt": ("sltt", []), "ottt": ("ottt", []), "sltt-k2": ("sltt", ["K=2"])}
ARCHS = ("preact_resnet20", "preact_resnet18")
V_TH = 1.0  # same initial threshold for every variant; timing does not depend on it


@dataclass(frozen=True)
class Case:
    arch: str
    T: int
    variant: str
    batch: int
    threads: int
    device: str
    amp: str
    channels_last: bool
    warmup: int
    repeats: int
    max_seconds: float
    heap_reuse: bool = False



def sj_neuron(variant: str, T: int):
    import torch
    from spikingjelly.activation_based import neuron, surrogate
    from torch import nn

    class SJNeuron(nn.Module):
        """A SpikingJelly multi-step node on [T, B, ...]; a [1, B, ...] constant input repeats."""

        def __init__(self):
            super().__init__()
            if variant == "sj-dsr":
                self.node = neuron.DSRIFNode(T=T, v_threshold=V_TH, alpha=0.5,
                                             v_threshold_lower_bound=0.01, step_mode="m")
            else:
                self.node = neuron.LIFNode(tau=2.0, v_threshold=V_TH,
                                           surrogate_function=surrogate.ATan(), step_mode="m")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] == 1:
                x = x.expand(T, *x.shape[1:])
            self.node.reset()  # stateless between calls, like ours
            return self.node(x)

    return SJNeuron


def build(case: Case):
    """(model, forward, online): `online(x, y)` is the online methods' whole training step."""
    import torch

    from dsr.snn import models
    from dsr.snn.layers import fast_forward
    from dsr.snn.neuron import IFNeuron

    method = None
    if case.variant in ONLINE:
        method = online_method(case)
        factory = method.neuron_factory()
    elif case.variant in ("fast", "exact", "approx", "infer"):
        factory = functools.partial(IFNeuron, case.T, v_th=V_TH, lower_bound=0.01, alpha=0.5)
    else:
        factory = sj_neuron(case.variant, case.T)
    model = models.create(case.arch, factory, num_classes=10)
    forward: Callable = model
    if case.variant in ("fast", "approx"):
        forward = functools.partial(fast_forward, model, coupling=case.variant == "fast")
    if case.variant == "ottt":
        from baselines._online import trace_synapses

        trace_synapses(model, decay=1.0 - 1.0 / method.p.tau)  # what OTTT.build adds
    device = torch.device(case.device)
    fmt = torch.channels_last if case.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt)
    online = None if method is None else functools.partial(method.train_step, model)
    return model, forward, online


def online_method(case: Case):
    """The registered method behind an online variant, with its defaults (the authors')."""
    from dsr.run import parser, resolve_args

    key, sets = ONLINE[case.variant]
    argv = ["--method", key, "--dataset", "cifar10", "--arch", case.arch, "--time-steps",
            str(case.T), "--out", "unused.json", *[a for kv in sets for a in ("--set", kv)]]
    cfg, cls = resolve_args(parser().parse_args(argv))
    return cls(cfg)

