"""DSR spiking neurons: IF and LIF whose gradient differentiates the spike representation.

Symbols (Meng et al., CVPR 2022; the paper's N is `T` here): current I[n], membrane v, threshold
v_th, firing condition v >= alpha * v_th (Eq. 20), soft reset by v_th, leak lam = exp(-dt / tau).
  IF  (Eq. 4): v[n] = v[n-1] + I[n];               s[n] = H(v[n] - alpha v_th); o[n] = v_th s[n]
  LIF (Eq. 5): v[n] = lam v[n-1] + (1 - lam) I[n]; same s and reset;         o[n] = v_th s[n] / dt
Representations (Eqs. 13-15): IF a = mean_n o[n];  LIF a = sum_n lam^(T-n) o[n] / sum_n lam^(T-n).
Backward (Eq. 17, official code), G = sum_n dL/do[n] (IF) or T * lam-weighted mean of dL/do (LIF):
  IF:  dL/dI[n] = G/T 1[0 <= I_bar <= v_th];        dL/dv_th = sum G 1[I_bar > v_th]
  LIF: dL/dI[n] = G/(tau T) 1[0 < I_hat < v_th tau/dt]; dL/dv_th = k sum G 1[I_hat > v_th tau/dt]
  with k = dt ("official", the author's choice) or 1/dt ("analytic"). `dsr_grad` is this rule,
  written once: exact mode's autograd Functions and fast mode's REPRESENT phase both call it.
Tensors are time-first [T, B, ...]. A current of time length 1 is a constant input: modules
broadcast it over their T steps (direct encoding computes the first layer once).
Deviation from the official code: backward saves the time-mean of the input, not all T steps
(same gradient, O(1) in T), and never all-reduces dL/dv_th (the official multi-GPU bug).
"""

from __future__ import annotations

import abc
import math
from typing import Literal

import torch
from torch import Tensor, nn

from dsr.snn.phase import Phase, PhaseAware

VthGrad = Literal["official", "analytic"]


# ---- pure functions: forward dynamics, representations, gradients -----------------------------


def _state_dtype(current: Tensor) -> torch.dtype:
    # under bf16/fp16 autocast the membrane still integrates in float32
    return torch.promote_types(current.dtype, torch.float32)


@torch.no_grad()  # a Heaviside train has no useful autograd gradient; if_spikes adds DSR's
def if_forward(current: Tensor, v_th: Tensor, alpha: float) -> Tensor:
    """IF dynamics (Eq. 4 with soft reset). current [T, B, ...] -> o [T, B, ...] in {0, v_th}."""
    # the hot loop of every forward: 4 in-place kernels per step into preallocated buffers; the
    # spike s in {0, 1} is written straight into o[n] as a float (no bool -> float conversion)
    o = torch.empty_like(current)  # [T, B, ...]
    v = current[0].to(_state_dtype(current), copy=True)  # v[1] = 0 + I[1]
    fire_at, minus_vth = alpha * v_th, -v_th
    for n in range(current.shape[0]):
        if n:
            v.add_(current[n])
        s = torch.ge(v, fire_at, out=o[n])
        v.addcmul_(s, minus_vth)  # soft reset; s * v_th is exact, so this rounds like v - v_th s
        s.mul_(v_th)
    return o


@torch.no_grad()
def lif_forward(current: Tensor, v_th: Tensor, alpha: float, dt: float, tau: float = 1.0) -> Tensor:
    """LIF dynamics (Eq. 5, soft reset). current [T, B, ...] -> o [T, B, ...] in {0, v_th/dt}."""
    lam = math.exp(-dt / tau)
    o = torch.empty_like(current)  # [T, B, ...]
    v = torch.mul(current[0].to(_state_dtype(current)), 1.0 - lam)  # v[1] = (1 - lam) I[1]
    fire_at, minus_vth, amplitude = alpha * v_th, -v_th, v_th / dt
    for n in range(current.shape[0]):
        if n:
            v.mul_(lam).add_(current[n], alpha=1.0 - lam)
        s = torch.ge(v, fire_at, out=o[n])
        v.addcmul_(s, minus_vth)
        s.mul_(amplitude)
    return o


def lif_weights(T: int, dt: float, tau: float = 1.0, *, like: Tensor | None = None) -> Tensor:
    """lam^(T-n) for n = 1..T, normalised to sum 1 (the weights of Eq. 13). Shape [T]."""
    n = torch.arange(1, T + 1, dtype=torch.float64)
    w = torch.exp(-(T - n) * dt / tau)
    w = w / w.sum()
    if like is not None:
        w = w.to(dtype=like.dtype, device=like.device)
    return w


def firing_rate(o: Tensor) -> Tensor:
    """IF representation a = (1/T) sum_n o[n]: [T, B, ...] -> [B, ...]."""
    return o.mean(0)


def weighted_firing_rate(o: Tensor, dt: float, tau: float = 1.0) -> Tensor:
    """LIF representation a = sum_n lam^(T-n) o[n] / sum_n lam^(T-n): [T, B, ...] -> [B, ...]."""
    w = lif_weights(o.shape[0], dt, tau, like=o)
    return torch.tensordot(w, o, dims=([0], [0]))


def if_masks(i_bar: Tensor, v_th: Tensor) -> tuple[Tensor, Tensor]:
    """(pass, above): 1[0 <= I_bar <= v_th] for dL/dI and 1[I_bar > v_th] for dL/dv_th (Eq. 17)."""
    return (i_bar >= 0) & (i_bar <= v_th), i_bar > v_th


def lif_masks(i_hat: Tensor, v_th: Tensor, dt: float, tau: float = 1.0) -> tuple[Tensor, Tensor]:
    """(pass, above): 1[0 < I_hat < v_th tau/dt] and 1[I_hat > v_th tau/dt] (Eq. 14, official)."""
    top = v_th * tau / dt
    return (i_hat > 0) & (i_hat < top), i_hat > top


def lif_vth_factor(dt: float, vth_grad: VthGrad) -> float:
    """k in dL/dv_th = k sum G 1[...]: analytic d clamp(., 0, v_th/dt)/dv_th = 1/dt; official dt."""
    if vth_grad == "official":
        return dt
    if vth_grad == "analytic":
        return 1.0 / dt
    raise ValueError(f"vth_grad must be 'official' or 'analytic', got {vth_grad!r}")


def lif_scales(dt: float, tau: float, vth_grad: VthGrad) -> tuple[float, float]:
    """(input_scale, vth_scale) of `dsr_grad` for LIF: 1/tau and k (IF: 1 and 1)."""
    return 1.0 / tau, lif_vth_factor(dt, vth_grad)


def dsr_grad(
    G: Tensor, pass_: Tensor, above: Tensor, input_scale: float = 1.0, vth_scale: float = 1.0
) -> tuple[Tensor, Tensor]:
    """The DSR backward (Eq. 17) from the summed output gradient G [B, ...] and the masks
    (pass, above) of `if_masks` / `lif_masks`: returns dL/dI summed over the T steps,
    input_scale G 1[pass] ([B, ...]; each step gets 1/T of it), and
    dL/dv_th = sum vth_scale G 1[above] (0-dim). IF: both scales 1; LIF: `lif_scales`."""
    return G * pass_ * input_scale, (G * vth_scale * above).sum()


def _spread(grad_i: Tensor, grad_o: Tensor) -> Tensor:
    # the official backward hands each of the T steps the same 1/T of the summed gradient
    return (grad_i / grad_o.shape[0]).unsqueeze(0).expand_as(grad_o)


def if_grad(grad_o: Tensor, i_bar: Tensor, v_th: Tensor) -> tuple[Tensor, Tensor]:
    """DSR-IF backward (Eq. 17 with Eq. 15): returns dL/dI [T, B, ...] and dL/dv_th (0-dim)."""
    grad_i, grad_v = dsr_grad(grad_o.sum(0), *if_masks(i_bar, v_th))
    return _spread(grad_i, grad_o), grad_v


def lif_grad(
    grad_o: Tensor, i_hat: Tensor, v_th: Tensor, dt: float, tau: float, vth_grad: VthGrad
) -> tuple[Tensor, Tensor]:
    """DSR-LIF backward as in the official code: G = T * weighted mean of dL/do (Eq. 17, 14)."""
    G = grad_o.shape[0] * weighted_firing_rate(grad_o, dt, tau)
    masks = lif_masks(i_hat, v_th, dt, tau)
    grad_i, grad_v = dsr_grad(G, *masks, *lif_scales(dt, tau, vth_grad))
    return _spread(grad_i, grad_o), grad_v


# ---- autograd Functions: only call the pure functions ------------------------------------------


class IFSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current: Tensor, v_th: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(current.mean(0), v_th)
        return if_forward(current, v_th, alpha)

    @staticmethod
    def backward(ctx, grad_o: Tensor):
        i_bar, v_th = ctx.saved_tensors
        grad_i, grad_v = if_grad(grad_o, i_bar, v_th)
        return grad_i, grad_v.reshape(v_th.shape), None


class LIFSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, v_th, alpha, dt, tau, vth_grad):
        ctx.save_for_backward(weighted_firing_rate(current, dt, tau), v_th)
        ctx.dt, ctx.tau, ctx.vth_grad = dt, tau, vth_grad
        return lif_forward(current, v_th, alpha, dt, tau)

    @staticmethod
    def backward(ctx, grad_o: Tensor):
        i_hat, v_th = ctx.saved_tensors
        grad_i, grad_v = lif_grad(grad_o, i_hat, v_th, ctx.dt, ctx.tau, ctx.vth_grad)
        return grad_i, grad_v.reshape(v_th.shape), None, None, None, None


class DSRRepresent(torch.autograd.Function):
    """Fast mode's REPRESENT phase of a DSR neuron at batch B: value the recorded rate `carrier`,
    backward `dsr_grad` of the recorded masks; the gradient at batch B is exact mode's summed
    output gradient G (the layers between neurons are linear: `dsr.snn.layers`)."""

    @staticmethod
    def forward(ctx, z, v_th, carrier, pass_, above, input_scale, vth_scale):
        ctx.save_for_backward(pass_, above)
        ctx.scales, ctx.vth_shape = (input_scale, vth_scale), v_th.shape
        # the value is the carrier up to rounding; computed as s + (carrier - s), s the rule's
        # linear map, it rounds as the detach trick that this Function replaced (same outputs)
        s = z * pass_ * input_scale + v_th * above * vth_scale
        return s + (carrier - s)

    @staticmethod
    def backward(ctx, G: Tensor):
        pass_, above = ctx.saved_tensors
        grad_z, grad_v = dsr_grad(G, pass_, above, *ctx.scales)
        return grad_z, grad_v.reshape(ctx.vth_shape), None, None, None, None, None


# ---- functional entry points (public, stable API) ----------------------------------------------


def if_spikes(current: Tensor, v_th: Tensor, alpha: float = 0.5) -> Tensor:
    """DSR-IF output spikes o[n] = v_th s[n], [T, B, ...]; autograd gives the DSR gradients."""
    return IFSpike.apply(current, v_th, alpha)


def lif_spikes(
    current: Tensor,
    v_th: Tensor,
    alpha: float,
    dt: float,
    tau: float = 1.0,
    vth_grad: VthGrad = "official",
) -> Tensor:
    """DSR-LIF output spikes o[n] = v_th s[n] / dt, [T, B, ...]; autograd gives DSR gradients."""
    lif_vth_factor(dt, vth_grad)  # validates early, not in backward
    return LIFSpike.apply(current, v_th, alpha, dt, tau, vth_grad)


# ---- modules -----------------------------------------------------------------------------------


class DSRNeuron(PhaseAware, nn.Module, abc.ABC):
    """Base of the DSR neuron modules: a trainable scalar v_th projected to >= lower_bound.

    Its phase (`dsr.snn.phase`): SPIKE runs T steps (autograd = exact DSR gradient); RECORD runs T
    steps and keeps what the representation pass needs; REPRESENT returns the recorded
    representation carrying the DSR gradient at batch B (`dsr.snn.layers.fast_forward`). A subclass
    provides the hooks below; the base handles phases, projection and direct encoding.
    """

    def __init__(self, T: int, v_th: float, lower_bound: float, alpha: float):
        super().__init__()
        if T < 1:
            raise ValueError(f"time steps T must be >= 1, got {T}")
        self.T, self.alpha, self.lower_bound = T, alpha, lower_bound
        self.v_th = nn.Parameter(torch.tensor(float(v_th)))
        self._record: dict[str, Tensor] = {}

    def extra_repr(self) -> str:
        return f"T={self.T}, alpha={self.alpha}, lower_bound={self.lower_bound}"

    # -- hooks of a neuron model --

    @abc.abstractmethod
    def _spike(self, x: Tensor) -> Tensor:
        """[T, B, ...] current -> output spikes, under autograd with the DSR backward."""

    @abc.abstractmethod
    def _spike_nograd(self, x: Tensor) -> Tensor:
        """The same spikes without an autograd graph."""

    @abc.abstractmethod
    def represent_seq(self, o: Tensor) -> Tensor:
        """The spike representation of an output sequence: [T, B, ...] -> [B, ...]."""

    @abc.abstractmethod
    def _masks(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(pass, above) of the DSR backward from the input sequence x [T, B, ...]."""

    @abc.abstractmethod
    def _grad_scales(self) -> tuple[float, float]:
        """(input_scale, vth_scale) of this neuron's `dsr_grad`."""

    @abc.abstractmethod
    def grad_time_weights(self) -> Tensor | None:
        """w [T] with G = T sum_n w_n dL/do[n] in this neuron's backward; None: uniform weights
        (G = sum_n dL/do[n]). The fast mode reduces BN's per-step coupling term with it."""

    # -- the phases --

    def _steps(self, current: Tensor) -> Tensor:
        # [1, B, ...] constant input -> [T, B, ...] view (direct encoding)
        return current.expand(self.T, *current.shape[1:]) if current.shape[0] == 1 else current

    def forward(self, current: Tensor) -> Tensor:
        # projection before every use (spec section 1); through .data so a graph that saved v_th
        # in an earlier forward (two forwards, one backward) stays valid
        self.v_th.data.clamp_(min=self.lower_bound)
        if self.phase is Phase.REPRESENT:
            return self._represent(current)
        x = self._steps(current)
        if x.shape[0] != self.T:
            raise ValueError(f"{type(self).__name__} expects {self.T} time steps, got {x.shape[0]}")
        if self.phase is Phase.RECORD:
            o = self._spike_nograd(x)
            pass_, above = self._masks(x)
            # the carrier is the plain rate: the official backward spreads G uniformly over time,
            # so the weight gradients of the layer above see the plain rate of this one
            self._record = {"pass": pass_, "above": above, "carrier": firing_rate(o),
                            "rep": self.represent_seq(o)}
            return o
        if not torch.is_grad_enabled():  # inference: skip what backward would save
            return self._spike_nograd(x)
        return self._spike(x)

    def _represent(self, z: Tensor) -> Tensor:
        # z [1, B, ...]: the layer input built from representations; its value equals the recorded
        # mean input up to rounding, so the masks come from the record (exact boundaries).
        r = self._record
        if not r:
            raise RuntimeError("representation pass without a recorded spike pass")
        return DSRRepresent.apply(z, self.v_th, r["carrier"].unsqueeze(0), r["pass"], r["above"],
                                  *self._grad_scales())

    def readout(self, o: Tensor) -> Tensor:
        """Network output from the last neuron layer's spikes: its representation [B, ...]."""
        if self.phase is Phase.REPRESENT:
            # value: the representation; gradient: c times the carrier's (c = 1 for IF)
            c = self.output_grad_scale()
            return c * o[0] + (self._record["rep"] - c * o[0]).detach()
        return self.represent_seq(o)

    def output_grad_scale(self) -> float:
        """c = T sum_n w_n^2: the official G at the output layer over dL/da (1 for uniform w)."""
        w = self.grad_time_weights()
        return 1.0 if w is None else float(self.T * (w**2).sum())


class IFNeuron(DSRNeuron):
    """DSR-IF layer. Defaults: v_th 6, lower bound 0.1 (supplement; official 0.01), alpha 0.5."""

    def __init__(self, T: int, v_th: float = 6.0, lower_bound: float = 0.1, alpha: float = 0.5):
        super().__init__(T, v_th, lower_bound, alpha)

    def _spike(self, x: Tensor) -> Tensor:
        return if_spikes(x, self.v_th, self.alpha)

    def _spike_nograd(self, x: Tensor) -> Tensor:
        return if_forward(x, self.v_th.detach(), self.alpha)

    def represent_seq(self, o: Tensor) -> Tensor:
        return firing_rate(o)

    def _masks(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return if_masks(x.mean(0), self.v_th.detach())

    def _grad_scales(self) -> tuple[float, float]:
        return 1.0, 1.0

    def grad_time_weights(self) -> None:
        return None


class LIFNeuron(DSRNeuron):
    """DSR-LIF layer (tau = 1). Table S2 gives v_th, lower bound, dt and alpha per T.

    The official backward passes G = T * weighted-mean(dL/do) uniformly over time, so the weight
    gradients of the layer above see this layer's plain firing rate, and the output layer's
    gradient is c = T sum_n w_n^2 (w normalised, c >= 1) times dL/da of the weighted rate.
    """

    def __init__(
        self,
        T: int,
        v_th: float = 0.3,
        lower_bound: float = 0.0005,
        alpha: float = 0.3,
        dt: float = 0.05,
        tau: float = 1.0,
        vth_grad: VthGrad = "official",
    ):
        super().__init__(T, v_th, lower_bound, alpha)
        lif_vth_factor(dt, vth_grad)
        self.dt, self.tau, self.vth_grad = dt, tau, vth_grad

    def extra_repr(self) -> str:
        return super().extra_repr() + f", dt={self.dt}, vth_grad={self.vth_grad}"

    def _spike(self, x: Tensor) -> Tensor:
        return lif_spikes(x, self.v_th, self.alpha, self.dt, self.tau, self.vth_grad)

    def _spike_nograd(self, x: Tensor) -> Tensor:
        return lif_forward(x, self.v_th.detach(), self.alpha, self.dt, self.tau)

    def represent_seq(self, o: Tensor) -> Tensor:
        return weighted_firing_rate(o, self.dt, self.tau)

    def _masks(self, x: Tensor) -> tuple[Tensor, Tensor]:
        i_hat = weighted_firing_rate(x, self.dt, self.tau)
        return lif_masks(i_hat, self.v_th.detach(), self.dt, self.tau)

    def _grad_scales(self) -> tuple[float, float]:
        return lif_scales(self.dt, self.tau, self.vth_grad)

    def grad_time_weights(self) -> Tensor:
        return lif_weights(self.T, self.dt, self.tau)
