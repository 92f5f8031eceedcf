"""The online methods (`sltt`, `ottt`) against independent computations, in float64.

- SLTT (and SLTT-K) on a small chain network: the method's accumulated per-step gradients equal
  one backward through a plain loop of the same network (own LIF, own surrogate, own per-step
  BatchNorm) whose membrane is detached at every step, i.e. BPTT with the temporal path cut;
  the full BPTT gradient differs, so the test sees the truncation.
- OTTT on the same chain: the method's gradients equal the trace-based closed form, computed by
  hand from each step's spatial gradients and presynaptic traces; the trace kept at a synaptic
  layer's input equals SpikingJelly's OTTTLIFNode's own trace.
- On the suite's architectures: BN runs per step during training, evaluation (whole sequence in
  one call) equals stepping in eval mode, states are at rest after a step, OTTT wraps every
  synaptic layer but the stem, SLTT-K draws K steps, and SLTT-K trains through the CLI.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from baselines._online import OnlineNeuron, TraceSynapse, online_steps
from dsr import data as dsr_data
from dsr.harness.results import read_metrics
from dsr.run import main, parser, resolve_args
from dsr.snn import models
from dsr.snn.layers import TBatchNorm, linear

F64 = torch.float64
D, H, K, B = 6, 5, 4, 8  # chain: input, hidden, classes, batch


def method_for(key: str, T: int, *sets: str):
    argv = ["--method", key, "--dataset", "digits", "--time-steps", str(T), "--out", "x.json"]
    argv += [a for kv in sets for a in ("--set", kv)]
    cfg, cls = resolve_args(parser().parse_args(argv))
    return cls(cfg)


class Chain(models.SpikingNet):
    """x [B, D] -> fc0 -> bn0 -> n0 -> fc1 -> bn1 -> n1 -> fc2: per-step logits O[t] [B, K]."""

    static_input_dims = 2

    def __init__(self, neuron):
        super().__init__()
        self.fc0, self.bn0, self.n0 = linear(D, H), TBatchNorm(H), models.tag(neuron())
        self.fc1, self.bn1, self.n1 = linear(H, H), TBatchNorm(H), models.tag(neuron())
        self.fc2 = linear(H, K)
        self.output_neuron = None

    def sequence(self, x: Tensor) -> Tensor:
        out = self.n0(self.bn0(self.fc0(self._input(x))))
        return self.fc2(self.n1(self.bn1(self.fc1(out))))


def chain(method, seed: int = 0) -> Chain:
    torch.manual_seed(seed)
    net = Chain(method.neuron_factory())
    with torch.no_grad():  # weights large enough that both layers spike and sit near threshold
        for m in (net.fc0, net.fc1, net.fc2):
            m.module.weight.mul_(3.0)
        for bn in (net.bn0, net.bn1):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(0.2, 1.0)
    return net.double().train()


def batch(seed: int = 1) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=gen, dtype=F64), torch.randint(K, (B,), generator=gen)


# ---- an independent plain loop of the chain ------------------------------------------------------


class Spike(torch.autograd.Function):
    """H(u) forward; backward the closed-form surrogate derivative `grad(u)`."""

    @staticmethod
    def forward(ctx, u, grad):
        ctx.save_for_backward(u)
        ctx.grad = grad
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * ctx.grad(u), None


def triangle(alpha: float):  # SpikingJelly's PiecewiseQuadratic: alpha - alpha^2 |u|, >= 0
    return lambda u: (alpha - alpha**2 * u.abs()).clamp(min=0)


def sigmoid(alpha: float):  # SpikingJelly's Sigmoid: alpha sig(alpha u) (1 - sig(alpha u))
    return lambda u: alpha * torch.sigmoid(alpha * u) * (1 - torch.sigmoid(alpha * u))


def leaves(net: Chain) -> dict[str, Tensor]:
    """Copies of the chain's parameters, by short name, as fresh leaves."""
    out = {}
    for i in range(3):
        op = getattr(net, f"fc{i}").module
        op = getattr(op, "op", op)  # OTTT wraps it in a TraceSynapse
        out[f"W{i}"], out[f"b{i}"] = op.weight, op.bias
    for i in range(2):
        bn = getattr(net, f"bn{i}")
        out[f"g{i}"], out[f"be{i}"] = bn.weight, bn.bias
    return {k: v.detach().clone().requires_grad_() for k, v in out.items()}


def method_grads(net: Chain) -> dict[str, Tensor]:
    named = leaves(net)  # only for the names; gradients come from the net itself
    got = {}
    for i in range(3):
        op = getattr(net, f"fc{i}").module
        op = getattr(op, "op", op)
        got[f"W{i}"], got[f"b{i}"] = op.weight.grad, op.bias.grad
    for i in range(2):
        bn = getattr(net, f"bn{i}")
        got[f"g{i}"], got[f"be{i}"] = bn.weight.grad, bn.bias.grad
    assert set(got) == set(named)
    return got


def plain_steps(p: dict[str, Tensor], x: Tensor, T: int, tau: float, v_th: float, grad,
                detach: bool = True):
    """Yield, per step, (o, h, z): logits [B, K], the linear layers' outputs h0..h2 and their
    inputs z0..z2 (z0 = x), for the chain with LIF (decay_input False, soft reset with the
    spike detached) and BN over the batch of each step."""
    lam = 1 - 1 / tau
    v = [torch.zeros(B, H, dtype=F64) for _ in range(2)]

    def bn(h, g, b):
        return (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5) * g + b

    for _ in range(T):
        z, h = [x], []
        for i in range(2):
            h.append(z[-1] @ p[f"W{i}"].T + p[f"b{i}"])
            v[i] = lam * (v[i].detach() if detach else v[i]) + bn(h[-1], p[f"g{i}"], p[f"be{i}"])
            s = Spike.apply(v[i] - v_th, grad)
            v[i] = v[i] - v_th * s.detach()
            z.append(s)
        h.append(z[-1] @ p["W2"].T + p["b2"])
        yield h[-1], h, z


def step_loss(o: Tensor, y: Tensor, lam: float, target: Tensor, T: int) -> Tensor:
    return ((1 - lam) * F.cross_entropy(o, y) + lam * F.mse_loss(o, target)) / T


def assert_same(got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
    for k in want:
        assert torch.allclose(got[k], want[k], rtol=1e-10, atol=1e-12), k


# ---- SLTT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 3, 5])
def test_sltt_gradient_is_bptt_with_the_temporal_path_cut(T):
    method = method_for("sltt", T)
    net = chain(method)
    p = leaves(net)
    x, y = batch()
    loss = method.train_step(net, x, y)
    got = method_grads(net)

    def bptt(detach: bool) -> tuple[Tensor, dict[str, Tensor]]:
        q = {k: v.detach().clone().requires_grad_() for k, v in p.items()}
        total = sum(step_loss(o, y, 0.05, torch.ones_like(o), T)
                    for o, _, _ in plain_steps(q, x, T, 1.1, 1.0, triangle(1.0), detach))
        total.backward()
        return total, {k: v.grad for k, v in q.items()}

    total, want = bptt(detach=True)
    assert torch.allclose(loss, total.detach(), rtol=1e-12)
    assert_same(got, want)
    assert all(float(g.abs().max()) > 0 for g in got.values())  # every layer gets a gradient
    if T > 1:  # the truncation matters: full BPTT of the same loop differs
        full = bptt(detach=False)[1]
        assert not torch.allclose(full["W0"], want["W0"], rtol=1e-6)


def test_sltt_k_back_propagates_only_its_steps(monkeypatch):
    T, steps = 5, [1, 3]
    method = method_for("sltt", T, "K=2")
    monkeypatch.setattr(method, "trained_steps", lambda: steps)
    net = chain(method)
    p = leaves(net)
    x, y = batch()
    method.train_step(net, x, y)
    total = sum(step_loss(o, y, 0.05, torch.ones_like(o), T)
                for t, (o, _, _) in enumerate(plain_steps(p, x, T, 1.1, 1.0, triangle(1.0)))
                if t in steps)
    total.backward()
    assert_same(method_grads(net), {k: v.grad for k, v in p.items()})


def test_sltt_k_draws_k_distinct_steps_per_batch():
    method = method_for("sltt", 6, "K=2")
    torch.manual_seed(3)
    draws = [method.trained_steps() for _ in range(20)]
    assert all(len(d) == 2 and d == sorted(set(d)) and 0 <= d[0] < d[1] < 6 for d in draws)
    assert len({tuple(d) for d in draws}) > 1
    torch.manual_seed(3)
    assert [method.trained_steps() for _ in range(20)] == draws  # the run's seed fixes them
    assert method_for("sltt", 6).trained_steps() == list(range(6))
    assert method_for("sltt", 2, "K=2").trained_steps() == [0, 1]  # K >= T: SLTT


# ---- OTTT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 4])
def test_ottt_gradient_is_the_trace_closed_form(T):
    method = method_for("ottt", T)
    net = chain(method)
    from baselines._online import trace_synapses

    trace_synapses(net, decay=0.5)  # what OTTT.build does to an architecture (tau 2)
    assert isinstance(net.fc1.module, TraceSynapse) and not isinstance(net.fc0.module,
                                                                       TraceSynapse)
    p = leaves(net)
    x, y = batch()
    method.train_step(net, x, y)
    got = method_grads(net)
    # closed form: sum_t g[t] (x) z_hat[t], z_hat the trace of each layer's input (0.5 = 1 -
    # 1/tau); the stem's input is the image itself; biases and BN take the plain per-step sums
    want = {k: torch.zeros_like(v) for k, v in p.items()}
    untraced = torch.zeros_like(p["W1"])  # sum_t g[t] (x) z[t]: SLTT's rule for comparison
    z_hat: list[Tensor | None] = [None, None, None]
    for o, h, z in plain_steps(p, x, T, 2.0, 1.0, sigmoid(4.0)):
        loss = step_loss(o, y, 0.05, F.one_hot(y, K).to(F64), T)
        names = ["g0", "be0", "g1", "be1"]
        grads = torch.autograd.grad(loss, [*h, *(p[n] for n in names)])
        for i in range(3):
            zi = z[i].detach()
            z_hat[i] = zi if i == 0 else (zi if z_hat[i] is None else 0.5 * z_hat[i] + zi)
            want[f"W{i}"] += grads[i].T @ z_hat[i]
            want[f"b{i}"] += grads[i].sum(0)
        untraced += grads[1].T @ z[1].detach()
        for n, g in zip(names, grads[3:], strict=True):
            want[n] += g
    assert_same(got, want)
    assert torch.allclose(untraced, want["W1"]) == (T == 1)  # earlier steps' spikes count


def test_trace_at_the_synapse_is_ottt_nodes_own_trace():
    from spikingjelly.activation_based import neuron

    node = neuron.OTTTLIFNode(tau=2.0, step_mode="s").double().train()
    cell = OnlineNeuron(5, node)
    syn = TraceSynapse(torch.nn.Linear(H, 3).double(), decay=0.5).train()
    gen = torch.Generator().manual_seed(0)
    with online_steps(torch.nn.ModuleList([cell, syn])):
        for _ in range(5):
            s = cell(torch.rand(1, B, H, generator=gen, dtype=F64) * 2)
            syn(s[0])
            assert torch.equal(syn.trace, node.trace)
    assert syn.trace is None  # dropped on exit


# ---- on the suite's architectures ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["ottt", "sltt"])
def test_bn_steps_per_time_step_and_states_rest_after_a_batch(key):
    T = 3
    method = method_for(key, T, "base_width=2")
    net = method.build("preact_resnet8", dsr_data.load("digits").info).double().train()
    x = torch.randn(4, 1, 8, 8, dtype=F64)
    y = torch.randint(10, (4,))
    bns = [m for m in net.modules() if isinstance(m, TBatchNorm)]
    seen = []
    bns[-1].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    method.train_step(net, x, y)
    assert all(int(bn.num_batches_tracked) == T for bn in bns)
    assert len(seen) == T and all(s[:2] == (1, 4) for s in seen)  # one step of 4 images
    neurons = net.neurons()
    assert all(isinstance(n, OnlineNeuron) and not n.online for n in neurons)
    assert all(isinstance(n.node.v, float) for n in neurons)  # at rest: no tensor, no graph
    assert all(p.grad is not None for p in net.parameters())
    if key == "ottt":
        syn = [m for m in net.modules() if isinstance(m, TraceSynapse)]
        convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert len(syn) == len(convs) - 1 and all(s.trace is None for s in syn)
        assert not isinstance(net.stem[0].module, TraceSynapse)


@pytest.mark.parametrize("key", ["ottt", "sltt"])
def test_evaluation_of_the_whole_sequence_equals_stepping(key):
    T = 4
    method = method_for(key, T, "base_width=2")
    net = method.build("preact_resnet8", dsr_data.load("digits").info).double()
    x = torch.randn(6, 1, 8, 8, dtype=F64) * 3
    net.train()
    method.train_step(net, x, torch.randint(10, (6,)))  # non-trivial running statistics
    net.eval()
    whole = method.logits(net, x)
    with torch.no_grad(), online_steps(net):
        stepped = torch.stack([net(x) for _ in range(T)]).mean(0)
    assert torch.allclose(whole, stepped, rtol=1e-12, atol=1e-12)
    counted = []
    hooks = [n.register_forward_hook(lambda m, i, o: counted.append(o.shape[0]))
             for n in method.spiking_layers(net)]
    method.logits(net, x)
    for h in hooks:
        h.remove()
    assert counted == [T] * len(net.neurons())  # spike counters see every step's spikes


def test_sltt_k_trains_through_the_cli(tmp_path):
    out = tmp_path / "metrics.json"
    rc = main(["--method", "sltt", "--dataset", "digits", "--time-steps", "4", "--epochs", "1",
               "--set", "K=2", "--set", "base_width=4", "--set", "batch_size=32",
               "--device", "cpu", "--out", str(out)])
    assert rc == 0
    m = read_metrics(out)
    assert m["method"] == "sltt" and m["category"] == "online"
    assert m["config"]["params"]["K"] == 2
    assert math.isfinite(m["train_loss"][0]) and 0 < m["firing_rate"]["total"] < 1


@pytest.mark.parametrize("argv,message", [
    (["--method", "sltt", "--set", "K=-1"], "K must be >= 0"),
    (["--method", "sltt", "--set", "tau=1"], "SpikingJelly's LIF needs tau > 1"),
    (["--method", "ottt", "--set", "lam=2"], "lam must be in [0, 1]"),
    (["--method", "sltt", "--set", "surrogate=atan"], "surrogate must be one of"),
])
def test_bad_online_settings_are_one_line_errors(argv, message, tmp_path, capsys):
    rc = main([*argv, "--dataset", "digits", "--time-steps", "4",
               "--out", str(tmp_path / "metrics.json")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and message in err
