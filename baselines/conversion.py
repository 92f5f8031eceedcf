"""`conversion`: ANN-to-SNN conversion with 99.9th-percentile threshold normalisation.

Rueckauer et al., Front. Neurosci. 2017 ("robust normalisation"): the ReLU ANN is the `ann`
run's (plain-FC head, its model.pt); conversion never trains. `dsr.harness.convert.convert` loads it
and converts it once for a latency sweep up to T_max: per neuron layer l, v_th^l =
the 99.9th percentile of layer l's ANN activations over 5 training batches, and the ReLU becomes
an IF neuron with soft reset, membrane starting at 0, spikes of amplitude v_th^l (equivalent to
their layer-wise weight normalisation W^l * lam^(l-1) / lam^l with unit thresholds). BN stays as
the per-channel affine map of its running statistics. The SNN runs T steps on the constant input;
logits = time-mean of the last FC's outputs (the FC is linear, so this is FC(mean spike rate)).
Why not SpikingJelly's `ann2snn`: its FX converter cannot trace these networks (SpikingNet picks
static vs event input with `if x.dim() == 4` and SeqWrap unpacks `x.shape[:2]`: data-dependent
control flow), it only matches `nn.ReLU` modules, and it emits a single-step stateful network to
be called T times with `reset_net`, while every network here takes the whole [T, B, ...]
sequence in one stateless call; its VoltageHook also averages per-batch percentiles with
momentum instead of taking one percentile of the pooled activations. So the conversion is
implemented directly (baselines._snn). Published results: paper_tables/published.csv.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from baselines._snn import convert, weights_key
from dsr.config import ConfigError
from dsr.harness.calibration import activation_percentiles, calibration_batches
from dsr.method import Method
from dsr.snn import models
from dsr.stages import CONVERT, Stage


@dataclass(frozen=True)
class ConversionParams:
    percentile: float = 99.9  # Rueckauer et al. 2017
    calib_batches: int = 5  # official DSR ImageNet calibration: 5 batches

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100:
            raise ConfigError(f"percentile must be in (0, 100], got {self.percentile}")
        if self.calib_batches < 1:
            raise ConfigError(f"calib_batches must be >= 1, got {self.calib_batches}")


class ConversionMethod(Method):
    """Converts a trained ANN to an IF SNN run for T steps (shared with `qcfs`).

    `source_method` is the key of the run whose model.pt is converted (`dsr.run
    --from-checkpoint`). A method whose source is itself (`qcfs`) also trains that ANN: its
    stages start with `train-ann`, which evaluates the ANN and counts no spikes.
    """

    category, neuron = "ANN-to-SNN conversion", "IF"
    output_neuron = False
    source_method: ClassVar[str] = "ann"  # a plug-in's default; a built-in's is its spec's
    v_init: ClassVar[float] = 0.0  # initial membrane, as a fraction of v_th

    def __init__(self, cfg):
        super().__init__(cfg)
        self._cache: tuple[tuple, nn.Module] | None = None

    def stages(self) -> tuple[Stage, ...]:
        return (CONVERT,)

    def thresholds(self, ann: nn.Module, data) -> list[float]:
        """v_th per neuron layer of the trained ANN, in `ann.neurons()` order."""
        raise NotImplementedError

    def inference_model(self, model: nn.Module, data) -> nn.Module:
        # one conversion per set of weights: the harness asks again for the same epoch (final
        # metrics match layers by identity) and conversion calibrates on training batches
        key = weights_key(model)
        if self._cache is None or self._cache[0] != key:
            snn = convert(model, self.thresholds(model, data), self.T, self.v_init)
            self._cache = (key, snn)
        return self._cache[1]


class Conversion(ConversionMethod):
    key, Params = "conversion", ConversionParams

    def neuron_factory(self) -> models.NeuronFactory:
        return models.ReLU

    def thresholds(self, ann: nn.Module, data) -> list[float]:
        device = next(ann.parameters()).device
        batches = calibration_batches(data, self.cfg, device, self.p.calib_batches)
        return activation_percentiles(ann, batches, self.p.percentile)
