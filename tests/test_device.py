"""Device placement without a GPU: every method's training step and evaluation with its tensors on
a fake CUDA device, so a tensor created on the CPU by the suite's code fails here, not on a
user's cluster.

torch's FakeTensorMode runs each op on shapes, dtypes and devices only (no data, no GPU): on this
CUDA build of torch the parameters, buffers and input become fake "cuda:0" tensors, and any op
that meets a non-scalar CPU tensor raises FakeTensorDeviceMismatchError, as CUDA would.

What runs: for every registered method, `Method.train_step` on `training_module(model)` (fast
mode's record and representation passes, the online methods' per-step loop with traces, TET's
per-step outputs, tdBN's parametrised weights, QCFS's ANN), then `Method.logits` in eval mode
(every conversion method on its converted SNN), and the backward of every custom autograd
Function in dsr/ and baselines/, called directly with a stand-in context (their tensor creation
is what a misplaced device would break).

What it does not cover:
- the autograd engine: `Tensor.backward` is a no-op here (on fake CUDA tensors it asks for a real
  CUDA context), so torch's own backward formulas, gradient accumulation and DDP's hooks do not
  run; fast mode's weight-gradient contraction (`torch.autograd.grad` in the record pass) returns
  zeros of the right devices instead of running;
- anything that reads values: `torch.equal` answers True (fast mode's check that every neuron
  shares one time weighting), DSR-LIF's output gradient scale (a Python float from constant
  time weights) is 1, and spike and SynOps counters (`int(count_nonzero)`), the optimiser step,
  threshold calibration and data loading (real CPU tensors by design) do not run;
- SpikingJelly's CUDA and Triton kernels (fake mode runs their shape functions) and its device
  name query (`torch.cuda.get_device_name`, answered "fake" here);
- a second GPU (`cuda:1`) and mixed precision.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from unittest import mock

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import baselines
import dsr
from baselines.dspike import DspikeSpike
from dsr import data as dsr_data
from dsr import registry
from dsr.run import parser, resolve_args
from dsr.snn.layers import _BNRecord, _BNRepresent
from dsr.snn.neuron import DSRRepresent, IFSpike, LIFNeuron, LIFSpike

CUDA = torch.device("cuda", 0)


def to_fake_cuda(module: nn.Module) -> nn.Module:
    """Replace every parameter and buffer by a fake CUDA tensor of its shape and dtype (values
    are not carried: fake tensors have none)."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                fake = torch.empty(p.shape, dtype=p.dtype, device=CUDA)
                m._parameters[name] = nn.Parameter(fake, requires_grad=p.requires_grad)
        for name, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[name] = torch.empty(b.shape, dtype=b.dtype, device=CUDA)
    return module


def fake_cuda():
    """FakeTensorMode with the stand-ins listed in the module docstring."""
    stack = [FakeTensorMode(allow_non_fake_inputs=False),
             mock.patch.object(torch.Tensor, "backward", lambda self, *a, **k: None),
             mock.patch("torch.autograd.grad",
                        lambda outputs, inputs, *a, **k: tuple(torch.zeros_like(i)
                                                               for i in inputs)),
             mock.patch("torch.equal", _same_device),
             mock.patch.object(LIFNeuron, "output_grad_scale", lambda self: 1.0),
             mock.patch("torch.cuda.get_device_name", lambda *a, **k: "fake"),
             mock.patch("torch.cuda.current_device", lambda: 0)]
    return _Stack(stack)


def _same_device(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.device != b.device:
        raise RuntimeError(f"torch.equal of tensors on {a.device} and {b.device}")
    return True


class _Stack:
    def __init__(self, managers):
        self.managers = managers

    def __enter__(self):
        for m in self.managers:
            m.__enter__()

    def __exit__(self, *exc):
        for m in reversed(self.managers):
            m.__exit__(*exc)


def method_for(key: str):
    cls = registry.get(key)
    T = 1 if cls.source_method == key else 3  # QCFS trains its ANN at T = 1
    argv = ["--method", key, "--dataset", "digits", "--time-steps", str(T), "--set",
            "base_width=2", "--device", "cpu", "--out", "x.json"]
    cfg, cls = resolve_args(parser().parse_args(argv))
    return cfg, cls(cfg)


@pytest.mark.parametrize("key", sorted(registry.METHODS))
def test_training_step_and_evaluation_on_a_fake_cuda_device(key):
    cfg, method = method_for(key)
    info = dsr_data.load("digits").info
    model = method.build(cfg.arch, info).train()
    with fake_cuda():
        to_fake_cuda(model)
        x = torch.randn(4, info.in_channels, 8, 8, device=CUDA)
        y = torch.randint(0, info.num_classes, (4,), device=CUDA)
        loss = method.train_step(method.training_module(model), x, y)
        assert loss.device == CUDA and loss.dim() == 0
        logits = method.logits(model.eval(), x)
        assert logits.device == CUDA and logits.shape == (4, info.num_classes)


@pytest.mark.parametrize("key", [k for k in sorted(registry.METHODS)
                                 if registry.get(k).source_method is not None])
def test_converted_snn_runs_on_a_fake_cuda_device(key, monkeypatch):
    cfg, method = method_for(key)
    info = dsr_data.load("digits").info
    ann = method.build(cfg.arch, info).eval()
    at_T = registry.get(key)(dataclasses.replace(cfg, time_steps=8))
    monkeypatch.setattr(at_T, "thresholds", lambda net, data: [1.0] * len(net.neurons()))
    snn = at_T.inference_model(ann, data=None)  # converted on the CPU, then moved
    assert len(at_T.spiking_layers(snn)) > 0
    with fake_cuda():
        to_fake_cuda(snn)
        x = torch.randn(4, info.in_channels, 8, 8, device=CUDA)
        logits = at_T.logits(snn, x)
        assert logits.device == CUDA and logits.shape == (4, info.num_classes)


# ---- custom backward functions, called directly -------------------------------------------------


class Ctx:
    """Stands in for autograd's context object when forward and backward are called directly."""

    def __init__(self, n_inputs: int):
        self.needs_input_grad = (True,) * n_inputs
        self.saved_tensors: tuple = ()

    def save_for_backward(self, *tensors) -> None:
        self.saved_tensors = tensors


def _bn_represent_inputs():
    B, C = 4, 3
    w = torch.empty(C, 2, 3, 3, device=CUDA)
    rec = _BNRecord(T=5, mean=torch.randn(C, device=CUDA), invstd=torch.rand(C, device=CUDA))
    rec.x_red = torch.randn(B, C, 6, 6, device=CUDA)  # LIF's weighted reduction branch
    rec.params, rec.delta = (w,), (torch.randn_like(w),)
    z = torch.randn(B, C, 6, 6, device=CUDA)
    return (z, torch.rand(C, device=CUDA), torch.rand(C, device=CUDA), rec, w)


CASES = {  # every torch.autograd.Function subclass in dsr/ and baselines/, with inputs
    "dsr.snn.neuron.IFSpike": (IFSpike, lambda: (torch.randn(5, 4, 3, device=CUDA),
                                             torch.tensor(1.0, device=CUDA), 0.5)),
    "dsr.snn.neuron.LIFSpike": (LIFSpike, lambda: (torch.randn(5, 4, 3, device=CUDA),
                                               torch.tensor(0.3, device=CUDA), 0.3, 0.05, 1.0,
                                               "official")),
    "dsr.snn.layers._BNRepresent": (_BNRepresent, _bn_represent_inputs),
    "dsr.snn.neuron.DSRRepresent": (DSRRepresent, lambda: (
        torch.randn(1, 4, 3, device=CUDA), torch.tensor(0.3, device=CUDA),
        torch.rand(1, 4, 3, device=CUDA), torch.rand(4, 3, device=CUDA) > 0.5,
        torch.rand(4, 3, device=CUDA) > 0.5, 1.0, 0.05)),
    "baselines.dspike.DspikeSpike": (DspikeSpike, lambda: (torch.randn(4, 3, device=CUDA), 3.0)),
}


def custom_functions() -> set[str]:
    """Names of the autograd Functions defined in the dsr and baselines packages."""
    found = set()
    for pkg in (dsr, baselines):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            module = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, torch.autograd.Function) and obj.__module__ == module.__name__:
                    found.add(f"{obj.__module__}.{obj.__qualname__}")
    return found


def test_every_custom_backward_is_covered():
    assert custom_functions() == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_custom_backward_creates_its_tensors_on_the_input_device(name):
    fn, make_inputs = CASES[name]
    with fake_cuda():
        inputs = make_inputs()
        ctx = Ctx(len(inputs))
        out = fn.forward(ctx, *inputs)
        grads = fn.backward(ctx, torch.randn_like(out))
        tensors = [g for g in grads if isinstance(g, torch.Tensor)]
        assert tensors and all(g.device == CUDA for g in tensors)


def test_a_cpu_tensor_created_in_a_step_fails_here(monkeypatch):
    """The check itself: a constant made on the CPU inside a step raises on fake CUDA."""
    cfg, method = method_for("sltt")
    model = method.build(cfg.arch, dsr_data.load("digits").info).train()
    monkeypatch.setattr(type(method), "mse_target",
                        lambda self, outputs, y: torch.full(outputs.shape, 1.0))  # CPU: a bug
    with fake_cuda(), pytest.raises(Exception, match="devices"):
        to_fake_cuda(model)
        method.train_step(model, torch.randn(4, 1, 8, 8, device=CUDA),
                          torch.randint(0, 10, (4,), device=CUDA))
