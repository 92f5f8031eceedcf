"""`plif`: LIF with a learnable membrane time constant per layer (Fang et al., ICCV 2021).

SpikingJelly's ParametricLIFNode, one trainable w per neuron layer, k = sigmoid(w) = 1/tau,
initialised to tau = init_tau = 2. Defaults from the official code: v_th 1, hard reset to 0,
detach_reset=True, ATan surrogate alpha 2; trained by BPTT like `sg-bptt` (same head, T x B BN).
Deviation: the paper charges v[t] = v[t-1] + k (x[t] - v[t-1]) (decay_input=True), whose
membrane converges to the input, so a neuron whose input stays below v_th (a pooled spike rate
<= 1 < v_th, say) never fires (BENCHMARKS.md, "Baseline defaults"). The default here is
decay_input=False, v[t] = (1 - k) v[t-1] + x[t] (steady state tau x), the form of STBP-tdBN and
TET; `--set decay_input=true` restores the paper's.
Weight decay applies to w as to every parameter (the harness's rule), pulling tau towards 2.
Published results (on the paper's own convolutional networks): paper_tables/published.csv.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikingjelly.activation_based import neuron
from torch import nn

from baselines.sg_bptt import SURROGATES, SurrogateMethod, _check


@dataclass(frozen=True)
class PLIFParams:
    init_tau: float = 2.0
    v_th: float = 1.0
    v_reset: float | None = 0.0  # None: soft reset (subtract v_th)
    decay_input: bool = False  # deviation from the paper's decay_input form: see docstring
    detach_reset: bool = True
    surrogate: str = "atan"  # atan | sigmoid
    alpha: float = 2.0

    def __post_init__(self) -> None:
        _check(self, tau=self.init_tau)


class PLIF(SurrogateMethod):
    key, Params = "plif", PLIFParams

    def node(self) -> nn.Module:
        p = self.p
        return neuron.ParametricLIFNode(
            init_tau=p.init_tau, decay_input=p.decay_input, v_threshold=p.v_th,
            v_reset=p.v_reset, surrogate_function=SURROGATES[p.surrogate](alpha=p.alpha),
            detach_reset=p.detach_reset, step_mode="m")
