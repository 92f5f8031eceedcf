"""DSR-IF/LIF neurons (dsr.snn.neuron) against independent references, in float64 unless stated.

- gradients against the closed forms of spec section 3, written here as plain loops, with inputs
  built to sit exactly on the mask boundaries;
- forward dynamics against a per-step loop over Python floats;
- representation error bounds (hypothesis): IF a - I_bar in (-alpha v_th/T, (1 - alpha) v_th/T];
  the LIF identity a = (1 - lam)/dt I_hat - v[T] / (dt Lam) and the bounds it implies;
- agreement with SpikingJelly 2.0.0's DSRIFNode/DSRLIFNode, and where they differ.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based.neuron import DSRIFNode, DSRLIFNode
from torch import Tensor

from dsr.snn.neuron import (
    IFNeuron,
    LIFNeuron,
    dsr_grad,
    firing_rate,
    if_forward,
    if_masks,
    if_spikes,
    lif_forward,
    lif_masks,
    lif_scales,
    lif_spikes,
    lif_vth_factor,
    weighted_firing_rate,
)
from dsr.snn.phase import Phase, phase

F64 = torch.float64


# ---- independent references (plain Python over scalars) ----------------------------------------


def ref_weights(T: int, dt: float, tau: float) -> list[float]:
    """w_n = lam^(T-n) / sum_k lam^(T-k), n = 1..T (Eq. 13)."""
    lam = math.exp(-dt / tau)
    u = [lam ** (T - n) for n in range(1, T + 1)]
    total = sum(u)
    return [x / total for x in u]


def columns(x: Tensor) -> list[list[float]]:
    """[T, ...] -> one list of T floats per element."""
    return x.detach().reshape(x.shape[0], -1).T.tolist()


def if_grad_ref(g: Tensor, current: Tensor, v_th: float) -> tuple[Tensor, float]:
    """Spec section 3 (IF): G = sum_n g[n]; dI[n] = G/T 1[0 <= I_bar <= v_th];
    dv_th = sum G 1[I_bar > v_th]."""
    T = g.shape[0]
    grad_i, grad_v = [], 0.0
    for gs, cs in zip(columns(g), columns(current), strict=True):
        G, i_bar = sum(gs), sum(cs) / T
        grad_i.append([G / T if 0.0 <= i_bar <= v_th else 0.0] * T)
        grad_v += G if i_bar > v_th else 0.0
    return torch.tensor(grad_i, dtype=F64).T.reshape(g.shape), grad_v


def lif_grad_ref(
    g: Tensor, current: Tensor, v_th: float, dt: float, tau: float, k: float
) -> tuple[Tensor, float]:
    """Spec section 3 (LIF, official G): G = T sum_n w_n g[n]; dI[n] = G/(tau T)
    1[0 < I_hat < v_th tau/dt]; dv_th = k sum G 1[I_hat > v_th tau/dt]."""
    T = g.shape[0]
    w = ref_weights(T, dt, tau)
    top = v_th * tau / dt
    grad_i, grad_v = [], 0.0
    for gs, cs in zip(columns(g), columns(current), strict=True):
        G = T * sum(wn * gn for wn, gn in zip(w, gs, strict=True))
        i_hat = sum(wn * cn for wn, cn in zip(w, cs, strict=True))
        grad_i.append([G / (tau * T) if 0.0 < i_hat < top else 0.0] * T)
        grad_v += k * G if i_hat > top else 0.0
    return torch.tensor(grad_i, dtype=F64).T.reshape(g.shape), grad_v


def if_loop(seq: list[float], v_th: float, alpha: float) -> tuple[list[float], float]:
    """IF (Eq. 4), soft reset: outputs o[n] in {0, v_th} and the final membrane v[T]."""
    v, out = 0.0, []
    for i in seq:
        v = v + i
        s = 1.0 if v >= alpha * v_th else 0.0
        v = v - v_th * s
        out.append(v_th * s)
    return out, v


def lif_loop(
    seq: list[float], v_th: float, alpha: float, dt: float, tau: float
) -> tuple[list[float], float]:
    """LIF (Eq. 5), soft reset: outputs o[n] in {0, v_th/dt} and the final membrane v[T]."""
    lam = math.exp(-dt / tau)
    v, out = 0.0, []
    for i in seq:
        v = lam * v + (1.0 - lam) * i
        s = 1.0 if v >= alpha * v_th else 0.0
        v = v - v_th * s
        out.append(v_th * s / dt)
    return out, v


def currents(
    T: int,
    shape: tuple[int, ...],
    lo: float,
    hi: float,
    gen: torch.Generator,
    dtype: torch.dtype = F64,
) -> Tensor:
    """[T, *shape] currents whose per-element time-means spread over [lo, hi] (plus noise)."""
    base = lo + (hi - lo) * torch.rand(1, *shape, generator=gen, dtype=dtype)
    return base + 0.25 * (hi - lo) * torch.randn(T, *shape, generator=gen, dtype=dtype)


def with_vth(neuron: torch.nn.Module, v_th: float) -> torch.nn.Module:
    """Make `neuron` float64 with a threshold of exactly v_th (not its float32 rounding)."""
    neuron.double()
    with torch.no_grad():
        neuron.v_th.fill_(v_th)
    return neuron


def backward_with(o: Tensor, g: Tensor, *leaves: Tensor) -> tuple[Tensor, ...]:
    return torch.autograd.grad((o * g).sum(), leaves)


def vth(value: float) -> Tensor:
    return torch.tensor(value, dtype=F64, requires_grad=True)


# ---- 1. gradients against the closed forms -----------------------------------------------------


@pytest.mark.parametrize("T", [1, 4, 7])
def test_if_grad_matches_closed_form(T: int, gen: torch.Generator) -> None:
    v_th = 1.3
    current = currents(T, (3, 8), -0.5 * v_th, 1.5 * v_th, gen).requires_grad_()
    g = torch.randn(T, 3, 8, generator=gen, dtype=F64)
    v = vth(v_th)
    grad_i, grad_v = backward_with(if_spikes(current, v, 0.5), g, current, v)
    want_i, want_v = if_grad_ref(g, current, v_th)
    i_bar = current.detach().mean(0)
    assert (i_bar < 0).any() and (i_bar > v_th).any() and ((i_bar > 0) & (i_bar < v_th)).any()
    torch.testing.assert_close(grad_i, want_i, rtol=1e-12, atol=1e-12)
    assert grad_v.item() == pytest.approx(want_v, rel=1e-12, abs=1e-12)


def test_if_grad_mask_boundaries() -> None:
    """Input gradient passes on the closed interval [0, v_th]; threshold gradient needs > v_th."""
    v_th, tiny = 1.5, 2.0**-40
    cols = [
        [1.0, -1.0, 0.5, -0.5],  # I_bar exactly 0: input grad passes
        [3.0, 0.0, 1.5, 1.5],  # I_bar exactly v_th: input grad passes, no threshold grad
        [1.5, 1.5, 1.5, 1.5 + tiny],  # just above v_th: threshold grad only
        [0.0, 0.0, 0.0, -tiny],  # just below 0: nothing
        [0.5, 0.25, 0.25, 0.5],  # interior
    ]
    current = torch.tensor(cols, dtype=F64).T.contiguous().requires_grad_()  # [4, 5]
    g = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]] * 4, dtype=F64)  # G = 4, 8, 12, 16, 20
    v = vth(v_th)
    grad_i, grad_v = backward_with(if_spikes(current, v, 0.5), g, current, v)
    G = g.sum(0)
    want_pass = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0], dtype=F64)
    assert torch.equal(grad_i, (G * want_pass / 4).expand(4, -1))
    assert grad_v.item() == G[2].item()
    want_i, want_v = if_grad_ref(g, current, v_th)
    assert torch.equal(grad_i, want_i) and grad_v.item() == want_v


@pytest.mark.parametrize("vth_grad", ["official", "analytic"])
@pytest.mark.parametrize(("T", "dt", "tau"), [(1, 0.05, 1.0), (5, 0.05, 1.0), (8, 0.2, 2.0)])
def test_lif_grad_matches_closed_form(
    T: int, dt: float, tau: float, vth_grad: str, gen: torch.Generator
) -> None:
    v_th = 0.3
    top = v_th * tau / dt
    current = currents(T, (3, 8), -0.5 * top, 1.5 * top, gen).requires_grad_()
    g = torch.randn(T, 3, 8, generator=gen, dtype=F64)
    v = vth(v_th)
    o = lif_spikes(current, v, 0.3, dt, tau, vth_grad)
    grad_i, grad_v = backward_with(o, g, current, v)
    k = dt if vth_grad == "official" else 1.0 / dt
    want_i, want_v = lif_grad_ref(g, current, v_th, dt, tau, k)
    torch.testing.assert_close(grad_i, want_i, rtol=1e-12, atol=1e-12)
    assert grad_v.item() == pytest.approx(want_v, rel=1e-10, abs=1e-12)
    assert want_v != 0.0 and (want_i == 0).any() and (want_i != 0).any()


@pytest.mark.parametrize("vth_grad", ["official", "analytic"])
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_lif_grad_mask_boundaries_one_step(vth_grad: str, tau: float) -> None:
    """T = 1 (weights exactly 1, so I_hat = I): both masks are strict at 0 and v_th tau/dt."""
    v_th, dt, tiny = 0.25, 0.5, 2.0**-40
    top = v_th * tau / dt  # exact: powers of two
    cols = [0.0, top, top + tiny, -tiny, top / 2]
    current = torch.tensor([cols], dtype=F64, requires_grad=True)  # [1, 5]
    g = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype=F64)
    v = vth(v_th)
    grad_i, grad_v = backward_with(lif_spikes(current, v, 0.3, dt, tau, vth_grad), g, current, v)
    k = dt if vth_grad == "official" else 1.0 / dt
    assert torch.equal(grad_i, torch.tensor([[0.0, 0.0, 0.0, 0.0, 5.0 / tau]], dtype=F64))
    assert grad_v.item() == k * 3.0
    want_i, want_v = lif_grad_ref(g, current, v_th, dt, tau, k)
    assert torch.equal(grad_i, want_i) and grad_v.item() == want_v


def test_lif_grad_mask_boundaries_many_steps(gen: torch.Generator) -> None:
    """T > 1: an all-zero input has I_hat exactly 0, and v_th is chosen so that v_th tau/dt equals
    one column's I_hat as the module computes it; neither column passes either mask."""
    T, dt, tau = 6, 0.5, 1.0
    current = torch.rand(T, 6, generator=gen, dtype=F64) * 3
    current[:, 0] = 0.0
    current[:, 2] = current[:, 1] / 2  # I_hat halves exactly: inside
    current[:, 3] = current[:, 1] * 2  # doubles exactly: above
    i_hat = weighted_firing_rate(current, dt, tau)
    want_i_hat = torch.tensor(
        [
            sum(w * c for w, c in zip(ref_weights(T, dt, tau), col, strict=True))
            for col in columns(current)
        ],
        dtype=F64,
    )
    torch.testing.assert_close(i_hat, want_i_hat, rtol=1e-14, atol=0)
    v_th = i_hat[1].item() * dt / tau  # v_th tau/dt == i_hat[1] exactly (powers of two)
    assert ((i_hat[2:] - i_hat[1]).abs() > 1e-6).all()
    current.requires_grad_()
    g = torch.randn(T, 6, generator=gen, dtype=F64)
    v = vth(v_th)
    grad_i, grad_v = backward_with(lif_spikes(current, v, 0.3, dt, tau), g, current, v)
    assert (grad_i[:, :2] == 0).all()
    G = T * (torch.tensor(ref_weights(T, dt, tau), dtype=F64) @ g)
    inside = i_hat < i_hat[1]
    inside[0] = False
    above = i_hat > i_hat[1]
    torch.testing.assert_close(
        grad_i, (G * inside / (tau * T)).expand(T, -1), rtol=1e-12, atol=1e-15
    )
    assert grad_v.item() == pytest.approx(dt * (G * above).sum().item(), rel=1e-12)


@pytest.mark.parametrize("static", [False, True])
def test_modules_use_the_same_rule(static: bool, gen: torch.Generator) -> None:
    """IFNeuron/LIFNeuron route through the functional rule; a [1, B, ...] constant current is
    repeated over T, so its gradient is the sum over steps of the per-step gradient."""
    T, B = 5, 7
    steps = 1 if static else T
    x = currents(steps, (B,), -0.5, 1.5, gen).requires_grad_()
    g = torch.randn(T, B, generator=gen, dtype=F64)
    full = x.detach().expand(T, B)
    for neuron, v_th, ref in [
        (IFNeuron(T), 1.0, lambda: if_grad_ref(g, full, 1.0)),
        (
            LIFNeuron(T, dt=0.1, vth_grad="analytic"),
            0.05,
            lambda: lif_grad_ref(g, full, 0.05, 0.1, 1.0, 10.0),
        ),
    ]:
        with_vth(neuron, v_th)
        grad_i, grad_v = backward_with(neuron(x), g, x, neuron.v_th)
        want_i, want_v = ref()
        torch.testing.assert_close(
            grad_i, want_i.sum(0, keepdim=True) if static else want_i, rtol=1e-12, atol=1e-12
        )
        assert grad_v.item() == pytest.approx(want_v, rel=1e-10, abs=1e-12)


RULES = {  # name -> (v_th, dt, tau, k) of the closed form; dt None: IF
    "IF": (1.3, None, 1.0, 1.0),
    "LIF-official": (0.3, 0.05, 1.0, 0.05),
    "LIF-analytic": (0.3, 0.05, 1.0, 20.0),
    "LIF-official-tau2": (0.3, 0.2, 2.0, 0.2),
    "LIF-analytic-tau2": (0.3, 0.2, 2.0, 5.0),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_dsr_grad_matches_closed_form(rule: str, gen: torch.Generator) -> None:
    """The shared backward from G and the masks: dL/dI summed over steps = G/tau 1[inside]
    (IF: 0 <= I_bar <= v_th; LIF: 0 < I_hat < v_th tau/dt), dL/dv_th = k sum G 1[above]."""
    v_th, dt, tau, k = RULES[rule]
    top = v_th if dt is None else v_th * tau / dt
    i_red = top * (3 * torch.rand(3, 8, generator=gen, dtype=F64) - 1)  # I_bar or I_hat
    i_red[0, :3] = torch.tensor([0.0, top, top])  # on the boundaries
    G = torch.randn(3, 8, generator=gen, dtype=F64)
    vt = torch.tensor(v_th, dtype=F64)
    if dt is None:
        grad_i, grad_v = dsr_grad(G, *if_masks(i_red, vt))
    else:
        vth_grad = "official" if "official" in rule else "analytic"
        grad_i, grad_v = dsr_grad(G, *lif_masks(i_red, vt, dt, tau), *lif_scales(dt, tau, vth_grad))
    want_i, want_v = [], 0.0
    for g, i in zip(G.flatten().tolist(), i_red.flatten().tolist(), strict=True):
        inside = 0.0 <= i <= top if dt is None else 0.0 < i < top
        want_i.append(g / tau if inside else 0.0)
        want_v += k * g if i > top else 0.0
    assert 0 < sum(x != 0 for x in want_i) < len(want_i) and want_v != 0
    torch.testing.assert_close(grad_i, torch.tensor(want_i, dtype=F64).view(3, 8), rtol=1e-14,
                               atol=0)
    assert grad_v.shape == () and grad_v.item() == pytest.approx(want_v, rel=1e-12)


@pytest.mark.parametrize("rule", ["IF", "LIF-official", "LIF-analytic-tau2"])
def test_represent_phase_uses_the_same_backward(rule: str, gen: torch.Generator) -> None:
    """Fast mode's REPRESENT phase: value the recorded representation, gradient `dsr_grad` of
    the recorded masks for the gradient G at batch B, bitwise."""
    v_th, dt, tau, _ = RULES[rule]
    if dt is None:
        neuron = with_vth(IFNeuron(6), v_th)
    else:
        vth_grad = "official" if "official" in rule else "analytic"
        neuron = with_vth(LIFNeuron(6, dt=dt, tau=tau, vth_grad=vth_grad), v_th)
    top = v_th if dt is None else v_th * tau / dt
    x = currents(6, (5, 4), -0.5 * top, 1.5 * top, gen)
    with phase(neuron, Phase.RECORD):
        o = neuron(x)
    i_red = x.mean(0) if dt is None else weighted_firing_rate(x, dt, tau)
    masks = if_masks(i_red, neuron.v_th.detach()) if dt is None else lif_masks(
        i_red, neuron.v_th.detach(), dt, tau)
    scales = (1.0, 1.0) if dt is None else lif_scales(dt, tau, vth_grad)
    z = x.mean(0, keepdim=True).requires_grad_()  # [1, B, ...]
    G = torch.randn(1, 5, 4, generator=gen, dtype=F64)
    with phase(neuron, Phase.REPRESENT):
        a = neuron(z)
    torch.testing.assert_close(a[0], firing_rate(o), rtol=1e-14, atol=1e-14)
    grad_z, grad_v = torch.autograd.grad(a, (z, neuron.v_th), G)
    want_z, want_v = dsr_grad(G, *masks, *scales)
    assert masks[0].any() and masks[1].any()
    assert torch.equal(grad_z, want_z) and torch.equal(grad_v, want_v)


# ---- 2. forward dynamics against a per-step loop -----------------------------------------------


@pytest.mark.parametrize("alpha", [0.3, 0.5, 1.0])
def test_if_forward_matches_scalar_loop(alpha: float, gen: torch.Generator) -> None:
    T, v_th = 16, 0.8
    current = currents(T, (4, 6), -0.3 * v_th, 1.3 * v_th, gen)
    o = if_forward(current, torch.tensor(v_th, dtype=F64), alpha)
    want = torch.tensor([if_loop(col, v_th, alpha)[0] for col in columns(current)], dtype=F64)
    assert torch.equal(o, want.T.reshape(o.shape))
    assert set(o.unique().tolist()) == {0.0, v_th}
    neuron = with_vth(IFNeuron(T, alpha=alpha), v_th)
    assert torch.equal(neuron(current), o)
    assert torch.equal(o / v_th, (o > 0).to(F64))  # spikes carry amplitude v_th


@pytest.mark.parametrize("alpha", [0.3, 0.5, 1.0])
@pytest.mark.parametrize(("dt", "tau"), [(0.05, 1.0), (0.25, 1.0), (1.0, 1.0), (0.1, 2.0)])
def test_lif_forward_matches_scalar_loop(
    alpha: float, dt: float, tau: float, gen: torch.Generator
) -> None:
    T, v_th = 16, 0.3
    lam = math.exp(-dt / tau)
    current = currents(T, (4, 6), -0.3 * v_th / (1 - lam), 1.3 * v_th / (1 - lam), gen)
    o = lif_forward(current, torch.tensor(v_th, dtype=F64), alpha, dt, tau)
    want = [lif_loop(col, v_th, alpha, dt, tau)[0] for col in columns(current)]
    assert torch.equal(o, torch.tensor(want, dtype=F64).T.reshape(o.shape))
    assert set(o.unique().tolist()) == {0.0, v_th / dt}
    neuron = with_vth(LIFNeuron(T, alpha=alpha, dt=dt, tau=tau), v_th)
    assert torch.equal(neuron(current), o)
    torch.testing.assert_close(o * dt / v_th, (o > 0).to(F64))  # amplitude v_th / dt


def test_constant_input_is_repeated_over_time(gen: torch.Generator) -> None:
    T = 9
    x = torch.rand(1, 5, generator=gen, dtype=F64) * 8
    for neuron in (IFNeuron(T).double(), LIFNeuron(T).double()):
        assert torch.equal(neuron(x), neuron(x.expand(T, -1).clone()))


# ---- 3. representation error bounds ------------------------------------------------------------

EPS = 1e-9  # relative slack for float64 rounding over <= 64 steps


@settings(max_examples=60, deadline=None, database=None)
@given(
    T=st.integers(1, 64),
    v_th=st.floats(0.1, 10.0),
    alpha=st.sampled_from([0.5, 1.0]),
    units=st.lists(st.floats(-2.0, 2.0), min_size=1, max_size=16),
)
def test_if_constant_input_error_bound(
    T: int, v_th: float, alpha: float, units: list[float]
) -> None:
    """alpha = 0.5: |a - clamp(I, 0, v_th)| <= v_th/(2T) (rounding); alpha = 1: <= v_th/T and
    biased low (a <= I). Outside [0, v_th] the representation is the clamp exactly."""
    current = torch.tensor(units, dtype=F64) * v_th
    a = firing_rate(if_forward(current.expand(T, -1), torch.tensor(v_th, dtype=F64), alpha))
    err = a - current.clamp(0, v_th)
    assert (err.abs() <= v_th * (0.5 if alpha == 0.5 else 1.0) / T + EPS * v_th).all()
    if alpha == 1.0:
        assert (err <= EPS * v_th).all()
    outside = (current < 0) | (current > v_th)
    assert (err[outside].abs() <= EPS * v_th).all()


@settings(max_examples=40, deadline=None, database=None)
@given(
    T=st.integers(1, 64),
    v_th=st.floats(0.1, 10.0),
    alpha=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_if_varying_input_error_bound(T: int, v_th: float, alpha: float, seed: int) -> None:
    """Any input with every I[n] in [0, v_th] keeps v in [(alpha-1) v_th, alpha v_th), so
    a - I_bar = -v[T]/T lies in (-alpha v_th/T, (1 - alpha) v_th/T]."""
    g = torch.Generator().manual_seed(seed)
    current = torch.rand(T, 32, generator=g, dtype=F64) * v_th
    a = firing_rate(if_forward(current, torch.tensor(v_th, dtype=F64), alpha))
    err = a - current.mean(0)
    assert (err > -alpha * v_th / T - EPS * v_th).all()
    assert (err <= (1 - alpha) * v_th / T + EPS * v_th).all()


def test_if_rate_converges_to_clamp(gen: torch.Generator) -> None:
    v_th = 1.0
    current = (torch.rand(2000, generator=gen, dtype=F64) * 1.6 - 0.3) * v_th
    errs = []
    for T in (10, 100, 1000):
        a = firing_rate(if_forward(current.expand(T, -1), torch.tensor(v_th, dtype=F64), 0.5))
        errs.append((a - current.clamp(0, v_th)).abs().max().item())
        assert errs[-1] <= v_th / (2 * T) * (1 + EPS)
        assert errs[-1] >= 0.9 * v_th / (2 * T)  # the bound is tight over many inputs
    assert errs[0] > errs[1] > errs[2]


@settings(max_examples=40, deadline=None, database=None)
@given(
    T=st.integers(1, 64),
    dt=st.floats(0.01, 1.0),
    tau=st.sampled_from([1.0, 2.0]),
    alpha=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_lif_representation_identity(
    T: int, dt: float, tau: float, alpha: float, seed: int
) -> None:
    """Unrolling Eq. 5 gives, exactly, a = (1 - lam)/dt I_hat - v[T] / (dt Lam) with
    Lam = sum_k lam^k (k < T). For every I[n] in [0, v_th/(1 - lam)], v stays in
    [(alpha - 1) v_th, alpha v_th), which bounds a - (1 - lam)/dt I_hat."""
    v_th = 0.3
    lam = math.exp(-dt / tau)
    lam_sum = sum(lam**k for k in range(T))
    g = torch.Generator().manual_seed(seed)
    current = torch.rand(T, 16, generator=g, dtype=F64) * v_th / (1 - lam)
    o = lif_forward(current, torch.tensor(v_th, dtype=F64), alpha, dt, tau)
    a = weighted_firing_rate(o, dt, tau)
    i_hat = weighted_firing_rate(current, dt, tau)
    v_end = torch.tensor(
        [lif_loop(col, v_th, alpha, dt, tau)[1] for col in columns(current)], dtype=F64
    )
    scale = v_th / (dt * lam_sum)
    torch.testing.assert_close(
        a, (1 - lam) / dt * i_hat - v_end / (dt * lam_sum), rtol=0, atol=1e-9 * v_th / dt
    )
    err = a - (1 - lam) / dt * i_hat
    assert (err > -alpha * scale - 1e-9 * v_th / dt).all()
    assert (err <= (1 - alpha) * scale + 1e-9 * v_th / dt).all()


def lif_constant_error(T: int, dt: float, gen: torch.Generator) -> tuple[float, float]:
    """Max |a - clamp(I/tau, 0, v_th/dt)| over random constant inputs, in units of the full
    scale v_th/dt, and its bound max(alpha, 1 - alpha)/Lam + (1 - (1 - lam) tau/dt)."""
    v_th, alpha, tau = 0.3, 0.3, 1.0
    lam, full = math.exp(-dt / tau), v_th / dt
    current = (torch.rand(2000, generator=gen, dtype=F64) * 1.6 - 0.3) * v_th * tau / dt
    o = lif_forward(current.expand(T, -1), torch.tensor(v_th, dtype=F64), alpha, dt, tau)
    err = (weighted_firing_rate(o, dt, tau) - (current / tau).clamp(0, full)).abs().max()
    lam_sum = (1 - lam**T) / (1 - lam)
    return err.item() / full, max(alpha, 1 - alpha) / lam_sum + (1 - (1 - lam) * tau / dt)


def test_lif_rate_does_not_converge_in_T_at_fixed_dt(gen: torch.Generator) -> None:
    """The weights lam^(T-n) average over ~tau/dt recent steps only, so growing T at fixed dt
    leaves an error of order v_th/tau (about dt of the full scale): a plateau, not convergence."""
    errs = []
    for T in (10, 100, 1000):
        err, bound = lif_constant_error(T, 0.05, gen)
        assert err <= bound
        errs.append(err)
    assert errs[0] > errs[1]
    assert errs[2] > 0.9 * errs[1] and errs[2] > 0.5 * 0.05  # no further gain past T dt ~ 5 tau


def test_lif_rate_converges_as_dt_shrinks(gen: torch.Generator) -> None:
    """With T dt = 10 tau fixed, the relative error and its bound are O(dt) (Eq. 14's limit)."""
    errs = []
    for dt in (0.2, 0.05, 0.0125):
        err, bound = lif_constant_error(round(10 / dt), dt, gen)
        assert err <= bound <= 1.25 * dt
        errs.append(err)
    assert errs[0] > 2 * errs[1] > 4 * errs[2]


# ---- 4. SpikingJelly 2.0.0 -----------------------------------------------------------------------


def sj_and_ours_grads(
    sj: torch.nn.Module, ours: torch.nn.Module, x: Tensor, g: Tensor
) -> tuple[Tensor, Tensor, tuple[Tensor, ...], tuple[Tensor, ...]]:
    xs, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    o_sj, o_ours = sj(xs), ours(xo)
    return (
        o_sj,
        o_ours,
        backward_with(o_sj, g, xs, sj.v_threshold),
        backward_with(o_ours, g, xo, ours.v_th),
    )


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_if_agrees_with_spikingjelly(alpha: float, gen: torch.Generator) -> None:
    """Same rule: identical spikes, same input gradient (both masks on [0, v_th]) and threshold
    gradient (mask I_bar > v_th, factor 1) in float32, on [T, B, ...] with step_mode='m'."""
    T, v_th = 6, 1.25
    x = currents(T, (4, 10), -0.3 * v_th, 1.3 * v_th, gen, torch.float32)
    x[:, 0, 0] = torch.tensor([2.5, 0.0, 1.25, 1.25, 2.5, 0.0])  # mean exactly v_th
    x[:, 0, 1] = torch.tensor([1.0, -1.0, 0.5, -0.5, 0.0, 0.0])  # mean exactly 0
    g = torch.randn(T, 4, 10, generator=gen)
    sj = DSRIFNode(T=T, v_threshold=v_th, alpha=alpha, v_threshold_lower_bound=0.01)
    ours = IFNeuron(T, v_th=v_th, lower_bound=0.01, alpha=alpha)
    o_sj, o_ours, (gx_sj, gv_sj), (gx, gv) = sj_and_ours_grads(sj, ours, x, g)
    assert torch.equal(o_sj, o_ours)
    torch.testing.assert_close(gx, gx_sj, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gv, gv_sj, rtol=1e-5, atol=1e-5)
    assert gv.item() != 0 and (gx == 0).any()


@pytest.mark.parametrize(("dt", "tau"), [(0.05, 1.0), (0.1, 2.0)])
def test_lif_agrees_with_spikingjelly(dt: float, tau: float, gen: torch.Generator) -> None:
    """Same rule as vth_grad='official': spikes v_th s/dt, G = T x weighted mean of dL/do,
    input mask (0, v_th tau/dt) and gradient G/(tau T), threshold gradient dt sum G 1[above].
    'analytic' differs by exactly 1/dt^2 on the threshold gradient only."""
    T, v_th, alpha = 8, 0.3, 0.3
    x = currents(T, (4, 10), -0.3 * v_th * tau / dt, 1.3 * v_th * tau / dt, gen, torch.float32)
    g = torch.randn(T, 4, 10, generator=gen)
    sj = DSRLIFNode(
        T=T, v_threshold=v_th, tau=tau, delta_t=dt, alpha=alpha, v_threshold_lower_bound=0.01
    )
    for vth_grad, factor in (("official", 1.0), ("analytic", 1.0 / dt**2)):
        sj.v_threshold.grad = None
        ours = LIFNeuron(
            T, v_th=v_th, lower_bound=0.01, alpha=alpha, dt=dt, tau=tau, vth_grad=vth_grad
        )
        o_sj, o_ours, (gx_sj, gv_sj), (gx, gv) = sj_and_ours_grads(sj, ours, x, g)
        assert torch.equal(o_sj, o_ours)
        torch.testing.assert_close(gx, gx_sj, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gv, gv_sj * factor, rtol=1e-5, atol=1e-5)
        assert gv.item() != 0 and (gx == 0).any() and (gx != 0).any()


def test_where_spikingjelly_differs(gen: torch.Generator) -> None:
    """Differences from SpikingJelly 2.0.0's DSR nodes. The same in both: time-first [T, B, ...]
    layout (SJ asserts step_mode='m'; a flattened [T*B, ...] tensor would be read as T*B steps),
    output scaling (v_th s for IF, v_th s/dt for LIF), the masks ([0, v_th] and > v_th for IF;
    (0, v_th tau/dt) and > v_th tau/dt for LIF), G, and the official LIF factor dt.

    1. dtype: SJ casts spikes to float32 (`.float()`); ours keeps the input dtype (float64 here).
    2. memory: SJ saves the whole [T, B, ...] input for backward; ours saves its [B, ...]
       time-mean (IF) or weighted mean (LIF), O(1) in T.
    3. constant input: ours repeats a [1, B, ...] current over T steps; SJ runs a single step
       and its backward stacks T copies that autograd sums back onto that step (T-fold).
    4. lower bound: SJ clamps a copy of v_th each forward (the parameter may stay below the
       bound and then gets no gradient); ours projects the parameter itself, which keeps its
       gradient.
    5. defaults: SJ IF lower bound 0.01 (ours 0.1, the supplement); SJ LIF tau 2, v_th 1,
       lower bound 0.1 (ours tau 1, v_th 0.3, 0.0005, Table S2). SJ has a threshold-gradient
       scale (the official ImageNet 0.001); ours has none.
    6. LIF threshold gradient: SJ hard-codes the official factor dt; ours also offers the
       analytic 1/dt (checked in test_lif_agrees_with_spikingjelly).
    """
    T = 4
    x = torch.rand(T, 3, 5, generator=gen, dtype=F64) * 2
    sj, ours = DSRIFNode(T=T, v_threshold=1.0), IFNeuron(T, v_th=1.0).double()
    assert sj(x).dtype == torch.float32 and ours(x).dtype == F64

    sj_lif, ours_lif = DSRLIFNode(T=T, v_threshold=1.0, tau=1.0), LIFNeuron(T, v_th=1.0)
    xr = x.float().requires_grad_()
    for node, want in ((sj, [T, 3, 5]), (ours, [3, 5]), (sj_lif, [T, 3, 5]), (ours_lif, [3, 5])):
        saved = node.float()(xr).grad_fn.saved_tensors
        assert max(t.numel() for t in saved) == math.prod(want)

    const = x[:1].float().requires_grad_()
    assert ours(const).shape == (T, 3, 5)
    o_sj = sj(const)
    assert o_sj.shape == (1, 3, 5)
    o_sj.sum().backward()
    assert torch.equal(const.grad, T * ((const >= 0) & (const <= 1.0)).float())

    low = torch.full((T, 3, 5), 0.5)
    sj_low, ours_low = DSRIFNode(T=T, v_threshold=1.0), IFNeuron(T, v_th=1.0, lower_bound=0.1)
    with torch.no_grad():
        sj_low.v_threshold.fill_(0.001)
        ours_low.v_th.fill_(0.001)
    sj_low(low).sum().backward()
    ours_low(low).sum().backward()
    assert sj_low.v_threshold.item() == pytest.approx(0.001) and sj_low.v_threshold.grad == 0
    assert ours_low.v_th.item() == pytest.approx(0.1) and ours_low.v_th.grad > 0

    sj_if_defaults = inspect.signature(DSRIFNode.__init__).parameters
    sj_lif_defaults = inspect.signature(DSRLIFNode.__init__).parameters
    assert sj_if_defaults["v_threshold_lower_bound"].default == 0.01 != IFNeuron(1).lower_bound
    lif = LIFNeuron(1)
    assert sj_lif_defaults["tau"].default == 2.0 != lif.tau
    assert sj_lif_defaults["v_threshold"].default == 1.0 != lif.v_th.item()
    assert "v_threshold_grad_scaling" in sj_if_defaults
    assert "v_threshold_grad_scaling" not in inspect.signature(IFNeuron).parameters


@pytest.mark.parametrize(
    "make", [lambda: IFNeuron(4, v_th=1.0), lambda: LIFNeuron(4)], ids=["IF", "LIF"]
)
def test_two_forwards_before_one_backward(make) -> None:
    neuron = make()
    x = torch.rand(4, 3, requires_grad=True)
    (neuron(x).sum() + neuron(2 * x).sum()).backward()
    assert x.grad is not None and neuron.v_th.grad is not None


# ---- 10. error paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: IFNeuron(0), lambda: LIFNeuron(-1)])
def test_time_steps_must_be_positive(make) -> None:
    with pytest.raises(ValueError, match="T must be >= 1"):
        make()


@pytest.mark.parametrize("neuron", [IFNeuron(4), LIFNeuron(4)])
def test_wrong_sequence_length(neuron: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="expects 4 time steps, got 3"):
        neuron(torch.zeros(3, 2))


def test_invalid_lif_options() -> None:
    with pytest.raises(ValueError, match="vth_grad must be 'official' or 'analytic'"):
        LIFNeuron(4, vth_grad="exact")
    with pytest.raises(ValueError, match="vth_grad"):
        lif_spikes(torch.zeros(4, 2), torch.tensor(0.3), 0.3, 0.05, vth_grad="bogus")
    with pytest.raises(ValueError, match="vth_grad"):
        lif_vth_factor(0.05, "bogus")
