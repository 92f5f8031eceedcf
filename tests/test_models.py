"""DSR networks (dsr.layers, dsr.models): exact vs fast gradients, the LIF rules, architecture
sizes, the ANN twin, direct encoding, time-shared dropout, learning, and error paths.

Exact mode is `model(x)` under autograd (official DSR backward in every neuron); fast mode is
`dsr.layers.fast_forward`. Gradient comparisons run in float64 at small widths.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsr import models
from dsr.layers import (
    SeqWrap,
    TBatchNorm,
    TimeSharedDropout,
    fast_forward,
    linear,
    phase,
)
from dsr.neuron import IFNeuron, LIFNeuron

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


def grads(model: nn.Module, x: Tensor, y: Tensor, fast: bool) -> tuple[Tensor, dict]:
    out = fast_forward(model, x) if fast else model(x)
    names, params = zip(*model.named_parameters(), strict=True)
    gs = torch.autograd.grad(F.cross_entropy(out, y), params)
    return out.detach(), dict(zip(names, gs, strict=True))


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


# ---- 5. exact vs fast ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["IF", "LIF"])
@pytest.mark.parametrize("name", models.names())
def test_exact_and_fast_agree_with_bn_in_eval(name: str, kind: str, gen: torch.Generator) -> None:
    model = small(name, NEURONS[kind]).double()
    randomise_bn(model, gen)
    model.eval()
    x, y = sample(name, gen), torch.randint(0, 10, (B,), generator=gen)
    out_exact, g_exact = grads(model, x, y, fast=False)
    out_fast, g_fast = grads(model, x, y, fast=True)
    torch.testing.assert_close(out_fast, out_exact, rtol=1e-12, atol=1e-12)
    scale = max(g.abs().max().item() for g in g_exact.values())
    for key, g in g_exact.items():
        assert max_rel(g, g_fast[key], scale) < 1e-10, key
    # the comparison is not vacuous: every weight and most thresholds get a gradient
    assert all(g.abs().max() > 0 for k, g in g_exact.items() if k.endswith("weight"))
    vth = [g.item() != 0 for k, g in g_exact.items() if k.endswith("v_th")]
    assert sum(vth) >= len(vth) // 2


@pytest.mark.parametrize("kind", ["IF", "LIF"])
@pytest.mark.parametrize("name", ["preact_resnet8", "vgg11"])
def test_exact_and_fast_agree_without_output_neuron(
    name: str, kind: str, gen: torch.Generator
) -> None:
    """output_neuron=False: logits are the time-mean of the FC output in both modes."""
    model = small(name, NEURONS[kind], output_neuron=False).double()
    randomise_bn(model, gen)
    model.eval()
    x, y = sample(name, gen), torch.randint(0, 10, (B,), generator=gen)
    out_exact, g_exact = grads(model, x, y, fast=False)
    out_fast, g_fast = grads(model, x, y, fast=True)
    torch.testing.assert_close(out_fast, out_exact, rtol=1e-12, atol=1e-12)
    scale = max(g.abs().max().item() for g in g_exact.values())
    for key, g in g_exact.items():
        assert max_rel(g, g_fast[key], scale) < 1e-10, key


@pytest.mark.parametrize("name", ["preact_resnet8", "preact_resnet20", "vgg11"])
def test_bn_training_mode_if(name: str, gen: torch.Generator) -> None:
    """IF with BN in training mode: thresholds, BN parameters, the static-input stem and conv
    biases (zero: BN follows) agree; weights fed by spikes (or by an event sequence) lose only
    BN's variance-coupling term. Seen here (T = 3, B = 4): cosine 0.90-0.98 for the FC weight
    (the lowest), median over weights >= 0.9995, whole gradient >= 0.995."""
    model = small(name, NEURONS["IF"]).double()
    randomise_bn(model, gen)
    model.train()
    x, y = sample(name, gen), torch.randint(0, 10, (B,), generator=gen)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    out_exact, g_exact = grads(model, x, y, fast=False)
    after_exact = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(start)
    out_fast, g_fast = grads(model, x, y, fast=True)
    torch.testing.assert_close(out_fast, out_exact, rtol=1e-12, atol=1e-12)
    for k, v in model.state_dict().items():  # the record pass updates BN running stats once
        torch.testing.assert_close(v, after_exact[k], rtol=1e-12, atol=1e-12)
    scale = max(g.abs().max().item() for g in g_exact.values())
    differ, cosines = [], []
    for key, g in g_exact.items():
        spike_fed = key.endswith("module.weight") and not key.startswith("stem")
        if spike_fed:
            cosines.append(F.cosine_similarity(g.flatten(), g_fast[key].flatten(), dim=0))
            differ.append(max_rel(g, g_fast[key], scale) > 1e-4)
        else:
            assert max_rel(g, g_fast[key], scale) < 1e-10, key
    assert all(differ)
    assert min(cosines) > 0.85 and sorted(cosines)[len(cosines) // 2] > 0.99


@pytest.mark.parametrize("name", ["preact_resnet8", "vgg11"])
def test_bn_training_mode_lif(name: str, gen: torch.Generator) -> None:
    """LIF (official rule) with BN in training mode: the coupling term varies over time, and
    the official G is a lam-weighted (not plain) sum over time, so the term also reaches the
    hidden neurons: their thresholds and BN parameters differ slightly (seen: up to 8e-2
    relative per tensor, cosine >= 0.99996 over all of them); only the output layer's BN and
    threshold agree exactly."""
    model = small(name, NEURONS["LIF"]).double()
    randomise_bn(model, gen)
    model.train()
    x, y = sample(name, gen), torch.randint(0, 10, (B,), generator=gen)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    _, g_exact = grads(model, x, y, fast=False)
    model.load_state_dict(start)
    _, g_fast = grads(model, x, y, fast=True)
    scale = max(g.abs().max().item() for g in g_exact.values())
    for key in ("bn_out.weight", "bn_out.bias", "n_out.v_th"):
        assert max_rel(g_exact[key], g_fast[key], scale) < 1e-10, key
    hidden = [k for k in g_exact if k.endswith("v_th") and k != "n_out.v_th"]
    rel = [max_rel(g_exact[k], g_fast[k], scale) for k in hidden]
    assert max(rel) > 1e-6  # a real difference, not rounding
    keys = bn_params(model) | set(hidden)
    a = torch.cat([g_exact[k].flatten() for k in sorted(keys)])
    b = torch.cat([g_fast[k].flatten() for k in sorted(keys)])
    assert F.cosine_similarity(a, b, dim=0) > 0.999


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
def test_lif_official_is_c_times_representation(
    steps: int, dt: float, train: bool, gen: torch.Generator
) -> None:
    """With one neuron layer fed by a static input, dL/dI[n] = c dL/da/(tau T) for every n under
    the official rule and dL/dz = dL/da/tau under the representation rule, so every gradient of
    the official rule is c = T sum_n w_n^2 times the representation rule's; values are equal."""
    nets = {}
    for rule in ("official", "representation"):
        torch.manual_seed(1)
        nets[rule] = OneLayer(LIFNeuron(steps, v_th=0.05, dt=dt, rule=rule)).double()
        randomise_bn(nets[rule], torch.Generator().manual_seed(2))
        nets[rule].train(train)
    x = torch.randn(16, 6, generator=gen, dtype=F64)
    y = torch.randint(0, 5, (16,), generator=gen)
    start = {k: v.clone() for k, v in nets["official"].state_dict().items()}
    out_o, g_official = grads(nets["official"], x, y, fast=False)
    nets["official"].load_state_dict(start)
    out_of, g_official_fast = grads(nets["official"], x, y, fast=True)
    out_r, g_repr = grads(nets["representation"], x, y, fast=True)
    torch.testing.assert_close(out_of, out_o, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_r, out_o, rtol=1e-12, atol=1e-12)
    c = nets["official"].n.output_grad_scale()
    assert nets["representation"].n.output_grad_scale() == 1.0
    assert c == pytest.approx(lif_c(steps, dt), rel=1e-12) and c > 1
    for key, g in g_official.items():
        assert g.abs().max() > 0, key
        torch.testing.assert_close(g, c * g_repr[key], rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(g, g_official_fast[key], rtol=1e-10, atol=1e-14)


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
    out_exact, g_exact = grads(model, x, y, fast=False)
    mask = model.drop._mask.clone()
    torch.manual_seed(3)  # the record pass draws the same mask as the exact pass did
    out_fast, g_fast = grads(model, x, y, fast=True)
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
