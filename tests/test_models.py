"""DSR networks (dsr.snn.layers, dsr.snn.models): exact vs fast gradients, the LIF rules,
architecture sizes, the ANN twin, direct encoding, time-shared dropout, learning, and error paths.

Exact mode is `model(x)` under autograd (official DSR backward in every neuron); fast mode is
`dsr.snn.layers.fast_forward`. Gradient comparisons run in float64 at small widths.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsr.snn import models
from dsr.snn.layers import (
    SeqWrap,
    TBatchNorm,
    TimeSharedDropout,
    fast_forward,
    linear,
    phase,
)
from dsr.snn.neuron import IFNeuron, LIFNeuron

F64 = torch.float64
T, B = 3, 4

NEURONS: dict[str, Callable[[], nn.Module]] = {
    "IF": lambda: IFNeuron(T, v_th=1.0),
    "LIF": lambda: LIFNeuron(T, v_th=0.05),  # dt 0.05: input mask (0, 1), spikes of size 1
}


def small(name: str, neuron: Callable[[], nn.Module], **kw) -> models.SpikingNet:
    if name == "vgg11":
        kw.setdefault("input_size", 32)
        kw.setdefault("dropout", 0.0)
    return models.create(name, neuron, base_width=4, **kw)


def sample(name: str, gen: torch.Generator) -> Tensor:
    if name == "vgg11":
        return torch.randn(T, B, 2, 32, 32, generator=gen, dtype=F64)  # event sequence
    return torch.randn(B, 3, 16, 16, generator=gen, dtype=F64)  # static image


def randomise_bn(model: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, TBatchNorm):
                c = m.num_features
                m.running_mean.copy_(0.3 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=gen))
                m.bias.copy_(0.2 + 0.2 * torch.randn(c, generator=gen))


def grads(model: nn.Module, x: Tensor, y: Tensor, mode: str) -> tuple[Tensor, dict]:
    """Logits and every parameter's gradient of the cross-entropy, in mode exact/fast/approx."""
    out = model(x) if mode == "exact" else fast_forward(model, x, coupling=mode == "fast")
    names, params = zip(*model.named_parameters(), strict=True)
    gs = torch.autograd.grad(F.cross_entropy(out, y), params)
    return out.detach(), dict(zip(names, gs, strict=True))


def compare(model: nn.Module, x: Tensor, y: Tensor, mode: str) -> tuple[dict, dict, float]:
    """Exact-mode and `mode` gradients from the same state (BN running statistics restored),
    with the forward values and the state after the step checked equal; returns both and the
    largest exact gradient."""
    start = {k: v.clone() for k, v in model.state_dict().items()}
    out_exact, g_exact = grads(model, x, y, "exact")
    after_exact = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(start)
    out_other, g_other = grads(model, x, y, mode)
    torch.testing.assert_close(out_other, out_exact, rtol=1e-12, atol=1e-12)
    for k, v in model.state_dict().items():  # the record pass updates BN running stats once
        torch.testing.assert_close(v, after_exact[k], rtol=1e-12, atol=1e-12)
    return g_exact, g_other, max(g.abs().max().item() for g in g_exact.values())


def bn_params(model: nn.Module) -> set[str]:
    return {
        f"{prefix}.{name}"
        for prefix, m in model.named_modules()
        if isinstance(m, TBatchNorm)
        for name, _ in m.named_parameters(recurse=False)
    }


def max_rel(a: Tensor, b: Tensor, scale: float) -> float:
    """max |a - b| relative to max |a|, floored at 1e-4 of the largest gradient in the net
    (conv biases followed by BN in training mode have zero gradient up to rounding)."""
    return ((a - b).abs().max() / max(a.abs().max().item(), 1e-4 * scale)).item()


# ---- 5. exact vs fast vs approx -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "approx"])
@pytest.mark.parametrize("kind", ["IF", "LIF"])
@pytest.mark.parametrize("name", models.names())
def test_fast_modes_equal_exact_with_bn_in_eval(
    name: str, kind: str, mode: str, gen: torch.Generator
) -> None:
    model = small(name, NEURONS[kind]).double()
    randomise_bn(model, gen)
    model.eval()
    x, y = sample(name, gen), torch.randint(0, 10, (B,), generator=gen)
    g_exact, g_fast, scale = compare(model, x, y, mode)
    for key, g in g_exact.items():
        assert max_rel(g, g_fast[key], scale) < 1e-10, key
    # the comparison is not vacuous: every weight and most thresholds get a gradient
    assert all(g.abs().max() > 0 for k, g in g_exact.items() if k.endswith("weight"))
    vth = [g.item() != 0 for k, g in g_exact.items() if k.endswith("v_th")]
    assert sum(vth) >= len(vth) // 2


def check_fast_equals_exact(model: nn.Module, x: Tensor, y: Tensor) -> None:
    model.train()
    g_exact, g_fast, scale = compare(model, x, y, "fast")
    for key, g in g_exact.items():
        assert max_rel(g, g_fast[key], scale) < 1e-9, key
    assert all(g.abs().max() > 0 for k, g in g_exact.items() if k.endswith("weight"))
    vth = [g.item() != 0 for k, g in g_exact.items() if k.endswith("v_th")]
    assert sum(vth) >= len(vth) // 2, "too few thresholds get a gradient to test them"


@pytest.mark.parametrize("kind", ["IF", "LIF"])
@pytest.mark.parametrize("name", models.names())
def test_fast_equals_exact_with_bn_in_training(name: str, kind: str, gen: torch.Generator) -> None:
    """The fast mode's claim: exact mode's gradients (the official code's) with BN in training
    mode, every parameter (weights, biases, BN affine, thresholds), every architecture."""
    model = small(name, NEURONS[kind]).double()
    randomise_bn(model, gen)
    check_fast_equals_exact(model, sample(name, gen), torch.randint(0, 10, (B,), generator=gen))


# Table S2 rows (v_th, lower bound, dt, alpha) and IF at the paper's v_th scale, several T
@pytest.mark.parametrize(
    ("steps", "neuron"),
    [
        (2, lambda n: IFNeuron(n, v_th=1.0)),
        (5, lambda n: IFNeuron(n, v_th=2.0, alpha=1.0)),
        (8, lambda n: IFNeuron(n, v_th=1.0)),
        (5, lambda n: LIFNeuron(n, v_th=0.06, lower_bound=0.001, dt=0.1, alpha=0.5)),
        (10, lambda n: LIFNeuron(n, v_th=0.03, dt=0.05, alpha=0.4)),
        (20, lambda n: LIFNeuron(n, v_th=0.03, dt=0.05, alpha=0.3, vth_grad="analytic")),
    ],
    ids=["IF-T2", "IF-T5-alpha1", "IF-T8", "LIF-T5", "LIF-T10", "LIF-T20-analytic"],
)
@pytest.mark.parametrize("name", ["preact_resnet8", "vgg11"])
def test_fast_equals_exact_across_time_steps(
    name: str, steps: int, neuron: Callable[[int], nn.Module], gen: torch.Generator
) -> None:
    """Several T (for VGG-11 also an event sequence of that length) and neuron settings."""
    model = small(name, functools.partial(neuron, steps), dropout=0.2 if name == "vgg11" else 0)
    model = model.double()
    randomise_bn(model, gen)
    if name == "vgg11":
        x = torch.randn(steps, B, 2, 32, 32, generator=gen, dtype=F64)
    else:
        x = sample(name, gen)
    torch.manual_seed(5)  # dropout masks: exact and the record pass draw the same
    start = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    _, g_exact = grads(model, x, (y := torch.randint(0, 10, (B,), generator=gen)), "exact")
    model.load_state_dict(start)
    torch.manual_seed(5)
    _, g_fast = grads(model, x, y, "fast")
    scale = max(g.abs().max().item() for g in g_exact.values())
    for key, g in g_exact.items():
        assert max_rel(g, g_fast[key], scale) < 1e-9, key


@pytest.mark.parametrize(("name", "kind"), [("preact_resnet20", "IF"), ("vgg11", "IF"),
                                            ("preact_resnet8", "LIF")])
def test_approx_mode_drops_the_coupling_term(name: str, kind: str, gen: torch.Generator) -> None:
    """approx mode with BN in training mode: thresholds, BN parameters, the static-input stem
    and conv biases agree for IF (the neurons see the time-summed gradient, which the batch-B
    graph has); weights fed by spikes (or an event sequence) lose BN's variance-coupling term.
    For LIF the official rule weights time steps, so hidden thresholds and BN parameters
    differ too; only the output layer's BN and threshold agree. Seen here (T = 3, B = 4): weight
    cosines 0.90-0.98 at the FC layer, median >= 0.999."""
    model = small(name, NEURONS[kind]).double()
    randomise_bn(model, gen)
    model.train()
    x, y = sample(name, gen), torch.randint(0, 10, (B,), generator=gen)
    g_exact, g_approx, scale = compare(model, x, y, "approx")
    cosines = []
    for key, g in g_exact.items():
        spike_fed = key.endswith("module.weight") and not key.startswith("stem")
        if spike_fed:
            cosines.append(F.cosine_similarity(g.flatten(), g_approx[key].flatten(), dim=0))
            assert max_rel(g, g_approx[key], scale) > 1e-4, key
        elif kind == "IF" or key in ("bn_out.weight", "bn_out.bias", "n_out.v_th"):
            assert max_rel(g, g_approx[key], scale) < 1e-10, key
    assert min(cosines) > 0.8 and sorted(cosines)[len(cosines) // 2] > 0.99
    if kind == "LIF":
        hidden = [k for k in g_exact if k.endswith("v_th") and k != "n_out.v_th"]
        assert max(max_rel(g_exact[k], g_approx[k], scale) for k in hidden) > 1e-6


class OneLayer(nn.Module):
    """Static input -> linear -> BN -> LIF output neuron; logits are its representation."""

    def __init__(self, neuron: LIFNeuron):
        super().__init__()
        self.fc, self.bn, self.n = linear(6, 5), TBatchNorm(5), neuron

    def forward(self, x: Tensor) -> Tensor:
        return self.n.readout(self.n(self.bn(self.fc(x.unsqueeze(0)))))  # [1, B, 6] input


def lif_c(T: int, dt: float, tau: float = 1.0) -> float:
    """T sum_n w_n^2 for w_n = lam^(T-n)/sum lam^k, in closed form (geometric sums)."""
    lam = math.exp(-dt / tau)
    return T * (1 - lam) * (1 + lam**T) / ((1 + lam) * (1 - lam**T)) if T > 1 else 1.0


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(("steps", "dt"), [(4, 0.05), (8, 0.2), (20, 0.5)])
def test_lif_output_layer_gradient_is_c_times_the_representation_gradient(
    steps: int, dt: float, train: bool, gen: torch.Generator
) -> None:
    """One LIF layer fed by a static input: the official rule gives dL/dI[n] = c dL/da/(tau T)
    for every n, c = T sum_n w_n^2, so its gradients are c times those of the weighted
    representation a differentiated as a graph (a = clamp(z/tau, 0, v_th/dt) at batch B); fast
    mode reproduces the official ones."""
    torch.manual_seed(1)
    net = OneLayer(LIFNeuron(steps, v_th=0.05, dt=dt)).double()
    randomise_bn(net, torch.Generator().manual_seed(2))
    net.train(train)
    x = torch.randn(16, 6, generator=gen, dtype=F64)
    y = torch.randint(0, 5, (16,), generator=gen)
    g_official, g_fast, _ = compare(net, x, y, "fast")
    # the representation as a graph: value a, gradient of clamp(z / tau, 0, v_th / dt)
    z = net.bn(net.fc(x.unsqueeze(0)))[0]
    with torch.no_grad():
        a = net.n.represent_seq(net.n(net.bn(net.fc(x.unsqueeze(0)))))
    top = net.n.v_th / dt
    clamp = torch.minimum(torch.relu(z / net.n.tau), top)
    rep = clamp + (a - clamp).detach()
    names, params = zip(*net.named_parameters(), strict=True)
    g_rep = dict(zip(names, torch.autograd.grad(F.cross_entropy(rep, y), params), strict=True))
    c = net.n.output_grad_scale()
    assert c == pytest.approx(lif_c(steps, dt), rel=1e-12) and c > 1
    for key, g in g_official.items():
        assert g.abs().max() > 0, key
        torch.testing.assert_close(g_fast[key], g, rtol=1e-10, atol=1e-14)
        # the official dL/dv_th factor is dt, the graph's (analytic) 1/dt
        factor = c * dt**2 if key == "n.v_th" else c
        torch.testing.assert_close(g, factor * g_rep[key], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dt", [0.01, 0.05, 0.3, 1.0])
def test_output_grad_scale(dt: float) -> None:
    """c = T sum w_n^2 >= 1 (Cauchy-Schwarz), = 1 iff the weights are uniform, i.e. T = 1."""
    for steps in (1, 2, 3, 10, 50):
        c = LIFNeuron(steps, dt=dt).output_grad_scale()
        lam = math.exp(-dt)
        u = [lam ** (steps - n) for n in range(1, steps + 1)]
        assert c == pytest.approx(steps * sum(x * x for x in u) / sum(u) ** 2, rel=1e-12)
        assert c == pytest.approx(lif_c(steps, dt), rel=1e-12)
        assert c == 1.0 if steps == 1 else c > 1.0


# ---- 6. sizes, the ANN twin ---------------------------------------------------------------------


def conv_params(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def resnet_size(blocks: list[int], widths: list[int], per_neuron: int) -> tuple[int, int]:
    """(parameters, neuron layers) from the description in spec section 5: 3x3 stem without
    bias; blocks BN-N-conv3x3-BN-N-conv3x3 (with bias) plus a biased 1x1 conv shortcut when the
    shape changes; head BN-N-avgpool-N-FC-BN1d-N; 10 classes, 3 input channels."""
    total, neurons, cin = conv_params(3, widths[0], 3, bias=False), 0, widths[0]
    for n, w in zip(blocks, widths, strict=True):
        for _ in range(n):
            total += 2 * cin + conv_params(cin, w, 3) + 2 * w + conv_params(w, w, 3)
            total += conv_params(cin, w, 1) if cin != w else 0
            neurons, cin = neurons + 2, w
    total += 2 * cin + (cin * 10 + 10) + 2 * 10
    neurons += 3
    return total + per_neuron * neurons, neurons


def vgg_size(cfg: list, size: int, per_neuron: int) -> tuple[int, int]:
    """conv3x3(bias)-BN-N per number, avg pool for M, then FC-BN1d-N; 2 input channels."""
    total, neurons, cin = 0, 0, 2
    for c in cfg:
        if c == "M":
            size //= 2
        else:
            total, neurons, cin = total + conv_params(cin, c, 3) + 2 * c, neurons + 1, c
    total += cin * size * size * 10 + 10 + 2 * 10
    return total + per_neuron * (neurons + 1), neurons + 1


def expected_size(name: str, per_neuron: int) -> tuple[int, int]:
    if name == "vgg11":
        cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
        return vgg_size(cfg, 48, per_neuron)
    if name == "preact_resnet18":
        return resnet_size([2, 2, 2, 2], [64, 128, 256, 512], per_neuron)
    n = {"8": 1, "20": 3, "32": 5, "44": 7, "56": 9, "110": 18}[name.removeprefix("preact_resnet")]
    return resnet_size([n] * 3, [16, 32, 64], per_neuron)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", models.names())
def test_sizes(name: str) -> None:
    snn = models.create(name, lambda: IFNeuron(4))
    params, layers = expected_size(name, per_neuron=1)
    assert (n_params(snn), len(snn.neurons())) == (params, layers)
    want_layers = {"preact_resnet18": 19, "vgg11": 9}
    n = {
        "preact_resnet8": 1,
        "preact_resnet20": 3,
        "preact_resnet32": 5,
        "preact_resnet44": 7,
        "preact_resnet56": 9,
        "preact_resnet110": 18,
    }
    assert layers == want_layers.get(name, 6 * n.get(name, 0) + 3)
    assert n_params(models.create(name, models.ReLU)) == expected_size(name, per_neuron=0)[0]


def test_preact_resnet18_against_the_known_figure() -> None:
    """The common CIFAR-10 PreAct-ResNet-18 (bias-free convs, no head BN) has 11,171,146
    parameters. The DSR version adds conv biases (2 per block, 3 shortcuts), the head BN(512),
    the BN1d(10) before the output neuron and 19 thresholds: 11,176,945."""
    widths = [64, 128, 256, 512]
    extra = 2 * 2 * sum(widths) + sum(widths[1:]) + 2 * 512 + 2 * 10 + 19
    assert n_params(models.create("preact_resnet18", lambda: IFNeuron(4))) == 11_171_146 + extra
    assert 11_171_146 + extra == 11_176_945


@pytest.mark.parametrize("name", ["preact_resnet8", "vgg11"])
def test_ann_twin_loads_into_snn(name: str) -> None:
    snn, ann = small(name, lambda: IFNeuron(4)), small(name, models.ReLU)
    snn_names = {k for k, _ in snn.named_parameters()}
    assert {k for k, _ in ann.named_parameters()} == {
        k for k in snn_names if not k.endswith("v_th")
    }
    with torch.no_grad():
        for p in ann.parameters():
            p.normal_()
    vth_before = {k: v.clone() for k, v in snn.state_dict().items() if k.endswith("v_th")}
    models.load_ann_weights(snn, ann.state_dict())
    state = snn.state_dict()
    for k, v in ann.state_dict().items():
        assert torch.equal(state[k], v), k
    for k, v in vth_before.items():
        assert torch.equal(state[k], v)


def test_load_ann_weights_rejects_other_names() -> None:
    snn = models.create("preact_resnet8", lambda: IFNeuron(4), base_width=4, output_neuron=False)
    ann = models.create("preact_resnet8", models.ReLU, base_width=4)
    with pytest.raises(ValueError, match="architectures differ") as err:
        models.load_ann_weights(snn, ann.state_dict())
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("snn_kw", "ann_kw"),
    [
        ({"name": "preact_resnet32"}, {"name": "preact_resnet20"}),
        ({"name": "preact_resnet8", "base_width": 4}, {"name": "preact_resnet8", "base_width": 8}),
    ],
    ids=["depth", "width"],
)
def test_load_ann_weights_rejects_other_shapes(snn_kw: dict, ann_kw: dict) -> None:
    snn = models.create(neuron=lambda: IFNeuron(4), **{"base_width": 4, **snn_kw})
    ann = models.create(neuron=models.ReLU, **{"base_width": 4, **ann_kw})
    with pytest.raises(ValueError, match="architectures differ") as err:
        models.load_ann_weights(snn, ann.state_dict())
    assert "\n" not in str(err.value)


# ---- 7. direct encoding --------------------------------------------------------------------------


def test_static_input_runs_the_stem_once(gen: torch.Generator) -> None:
    model = small("preact_resnet8", NEURONS["IF"]).double()
    seen: list[int] = []
    model.stem[0].module.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    x = torch.randn(B, 3, 16, 16, generator=gen, dtype=F64)
    model(x)
    assert seen == [B]
    fast_forward(model, x)  # record pass + representation pass
    assert seen == [B, B, B]
    first = model.neurons()[0]
    first.register_forward_hook(lambda m, inp, out: seen.append((inp[0].shape[0], out.shape[0])))
    model(x)
    assert seen[-1] == (1, T)  # a [1, B, ...] current, repeated over T steps by the neuron


def test_event_input_runs_every_step(gen: torch.Generator) -> None:
    model = small("vgg11", NEURONS["IF"]).double()
    seen: list[int] = []
    model.features[0].module.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    fast_forward(model, sample("vgg11", gen))
    assert seen == [T * B, B]  # T x B in the record pass, B in the representation pass


# ---- 8. learning ---------------------------------------------------------------------------------


class MLP(nn.Module):
    """Static [B, 16] input -> linear-BN-neuron -> linear-BN-neuron; logits: its representation."""

    def __init__(self, neuron: Callable[[], nn.Module], hidden: int = 32, classes: int = 4):
        super().__init__()
        self.fc1, self.bn1, self.n1 = linear(16, hidden), TBatchNorm(hidden), neuron()
        self.fc2, self.bn2, self.n2 = linear(hidden, classes), TBatchNorm(classes), neuron()

    def forward(self, x: Tensor) -> Tensor:
        s = self.n1(self.bn1(self.fc1(x.unsqueeze(0))))
        return self.n2.readout(self.n2(self.bn2(self.fc2(s))))


def blobs(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    centres = 2.0 * torch.randn(4, 16, generator=torch.Generator().manual_seed(7))
    y = torch.randint(0, 4, (n,), generator=gen)
    return centres[y] + torch.randn(n, 16, generator=gen), y


@pytest.mark.parametrize(
    ("neuron", "fast"),
    [
        (lambda: IFNeuron(8, v_th=1.0), True),
        (lambda: IFNeuron(8, v_th=1.0), False),
        (lambda: LIFNeuron(8, v_th=0.05, dt=0.05), True),
        (lambda: LIFNeuron(8, v_th=0.05, dt=0.05), False),
    ],
    ids=["IF-fast", "IF-exact", "LIF-fast", "LIF-exact"],
)
def test_small_network_learns(
    neuron: Callable[[], nn.Module], fast: bool, gen: torch.Generator
) -> None:
    x, y = blobs(512, gen)
    x_test, y_test = blobs(512, gen)
    model = MLP(neuron)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(200):
        out = fast_forward(model, x) if fast else model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert losses[-1] < 0.3 * losses[0]
    assert acc > 0.9


# ---- 9. time-shared dropout ----------------------------------------------------------------------


def test_dropout_mask_is_shared_over_time() -> None:
    drop = TimeSharedDropout(0.25)
    out = drop(torch.ones(5, 64, 32, dtype=F64))
    assert (out == out[:1]).all()
    assert set(out.unique().tolist()) == {0.0, 1 / 0.75}
    assert 0.15 < (out[0] == 0).float().mean().item() < 0.35
    drop.eval()
    x = torch.randn(5, 3)
    assert drop(x) is x
    assert TimeSharedDropout(0.0)(x) is x


class DropNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.n1 = linear(8, 32), IFNeuron(T, v_th=1.0)
        self.drop = TimeSharedDropout(0.3)
        self.fc2, self.n2 = linear(32, 3), IFNeuron(T, v_th=1.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.n2.readout(self.n2(self.fc2(self.drop(self.n1(self.fc1(x.unsqueeze(0)))))))


def test_represent_pass_reuses_the_record_mask(gen: torch.Generator) -> None:
    model = DropNet().double().train()
    x = 2 * torch.randn(B, 8, generator=gen, dtype=F64)
    y = torch.randint(0, 3, (B,), generator=gen)
    torch.manual_seed(3)
    out_exact, g_exact = grads(model, x, y, "exact")
    mask = model.drop._mask.clone()
    torch.manual_seed(3)  # the record pass draws the same mask as the exact pass did
    out_fast, g_fast = grads(model, x, y, "fast")
    assert torch.equal(model.drop._mask, mask) and (mask == 0).any()
    torch.testing.assert_close(out_fast, out_exact, rtol=1e-12, atol=1e-12)
    for key, g in g_exact.items():
        assert g.abs().max() > 0, key
        torch.testing.assert_close(g_fast[key], g, rtol=1e-10, atol=1e-14)


# ---- 10. error paths -----------------------------------------------------------------------------


def test_unknown_architecture_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'resnet18'") as err:
        models.create("resnet18", models.ReLU)
    assert all(name in str(err.value) for name in models.names())


def test_each_architecture_takes_the_options_it_understands() -> None:
    every = dict(num_classes=7, in_channels=2, input_size=32, base_width=8, dropout=0.0,
                 stem="imagenet", output_neuron=False, pool_neuron=False)
    vgg = models.create("vgg11", models.ReLU, **every)  # ignores stem and pool_neuron
    assert vgg(torch.zeros(3, 2, 32, 32)).shape == (3, 7) and vgg.output_neuron is None
    resnet = models.create("preact_resnet8", models.ReLU, **every)  # ignores input_size
    assert isinstance(resnet.n_pool, nn.Identity) and len(resnet.stem) == 2  # 7x7/2 conv + pool
    assert resnet.stem[0].module.out_channels == 8
    with pytest.raises(ValueError, match="unknown architecture option.*input_sise"):
        models.create("vgg11", models.ReLU, input_sise=16)


def test_phase_errors() -> None:
    model = MLP(lambda: IFNeuron(T)).train()
    with pytest.raises(ValueError, match="phase must be one of"):
        with phase(model, "backward"):
            pass
    with phase(model, "represent"), pytest.raises(RuntimeError, match="without a recorded"):
        model(torch.zeros(2, 16))
    assert all(m.phase == "spike" for m in model.modules() if hasattr(m, "phase"))


def test_seqwrap_folds_time_into_batch(gen: torch.Generator) -> None:
    lin = nn.Linear(3, 2)
    x = torch.randn(T, B, 3, generator=gen)
    torch.testing.assert_close(SeqWrap(lin)(x), torch.stack([lin(x[n]) for n in range(T)]))
