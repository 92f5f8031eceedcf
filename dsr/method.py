"""Methods as plug-ins: a base class with working defaults, and DSR itself (`dsr-if`, `dsr-lif`).

A method says how to build its model, its loss, its stages (dsr.stages: e.g. pre-training
before it trains), how it produces logits at evaluation and which layers spike; the harness
(`dsr.harness.train`, `dsr.harness.convert`) runs the stages and does everything else.
Hyperparameters are the fields of the method's `Params` dataclass, defaults from its paper;
`--set key=value` overrides them and unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsr import registry
from dsr.config import ConfigError
from dsr.harness.calibration import activation_percentiles, calibration_batches
from dsr.snn import models
from dsr.snn.layers import FastForward
from dsr.snn.neuron import IFNeuron, LIFNeuron
from dsr.stages import CALIBRATE, FINE_TUNE, TRAIN, Stage, pretrain_ann

if TYPE_CHECKING:
    from dsr.config import RunConfig
    from dsr.data import DataInfo, Dataset


@dataclass(frozen=True)
class NoParams:
    pass


class Method:
    """Defaults: build `arch` from `neuron_factory()`, cross-entropy on `model(x)`, one stage
    (train)."""

    key: ClassVar[str] = ""
    # a built-in's name, category, neuron, modes, defaults and source_method come from its spec
    # (dsr.registry.METHODS, set in __init_subclass__); a plug-in declares them here
    # (dsr.spec.MethodSpec.of reads them)
    name: ClassVar[str] = ""  # what tables and legends show (default: the key)
    category: ClassVar[str] = ""  # table grouping (dsr.spec.CATEGORIES); claims compare by it
    # recorded as metrics.json "neuron"; a method whose neuron is a hyperparameter overrides it
    # with a property
    neuron: ClassVar[str] = ""
    modes: ClassVar[tuple[str, ...]] = ("exact",)  # the first is the default
    # hyperparameters by dataset key ("*": every dataset) over the Params' own defaults
    defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    spiking: ClassVar[bool] = True
    output_neuron: ClassVar[bool] = True  # the architectures' official head ends in a neuron
    pool_neuron: ClassVar[bool] = True  # ResNets: a neuron after the global average pool
    # ANN-to-SNN conversion methods: the key of the run whose model.pt they convert (None: the
    # method trains what it evaluates); `dsr.run --from-checkpoint` and `dsr.harness.convert` use it
    source_method: ClassVar[str | None] = None
    Params: ClassVar[type] = NoParams

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = registry.METHODS.get(cls.__dict__.get("key", ""))
        if spec is not None and spec.target == f"{cls.__module__}:{cls.__qualname__}":
            cls.name, cls.category, cls.source_method = spec.name, spec.category, spec.source
            cls.modes, cls.defaults = spec.modes, {k: dict(v) for k, v in spec.defaults.items()}
            if "neuron" not in cls.__dict__:  # a property reads the run's own choice
                cls.neuron = spec.neuron

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.T = cfg.time_steps
        self.p = self.Params(**cfg.params)

    @classmethod
    def default_params(cls, time_steps: int, dataset: str) -> dict[str, Any]:
        """The paper's hyperparameters for this T and dataset: the Params' defaults under the
        spec's `defaults` for the dataset (override for T-dependent ones)."""
        per_dataset = {**cls.defaults.get("*", {}), **cls.defaults.get(dataset, {})}
        return dataclasses.asdict(cls.Params(**per_dataset))

    def neuron_factory(self) -> models.NeuronFactory:
        raise NotImplementedError

    def model_options(self, info: DataInfo) -> dict[str, Any]:
        """The architecture options of `build` (also what `dsr.harness.preflight` probes with)."""
        t = self.cfg.train
        return dict(num_classes=info.num_classes, in_channels=info.in_channels,
                    input_size=info.image_size, base_width=t.base_width, dropout=t.dropout,
                    stem=t.stem, output_neuron=self.output_neuron, pool_neuron=self.pool_neuron)

    def build(self, arch: str, info: DataInfo) -> nn.Module:
        return models.create(arch, self.neuron_factory(), **self.model_options(info))

    def stages(self) -> tuple[Stage, ...]:
        """What a run of this method does, in order (dsr.stages); the harness runs them."""
        return (TRAIN,)

    def ann_twin(self) -> Method:
        """The method a `pretrain-ann` stage trains (its network's weights load into this one's)."""
        raise NotImplementedError

    def calibrate(self, model: nn.Module, ann: nn.Module, data: Dataset) -> None:
        """A `calibrate` stage: set `model` up from the pre-trained `ann` (weights, thresholds)."""
        raise NotImplementedError

    def training_module(self, model: nn.Module) -> nn.Module:
        """What the harness calls (and wraps in DDP) during training; `model` by default."""
        return model

    def train_outputs(self, model: nn.Module, x: Tensor) -> Tensor:
        """Outputs for the loss; `model` is `training_module(...)`, possibly inside DDP."""
        return model(x)

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(outputs, y)

    def train_step(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Gradients of one batch into `.grad` (the harness zeroes them before and steps the
        optimiser after); returns the detached loss for logging. Online methods override it
        with a forward and backward per time step."""
        loss = self.loss(self.train_outputs(model, x), y)
        loss.backward()
        return loss.detach()

    def inference_model(self, model: nn.Module, data: Dataset) -> nn.Module:
        """The network evaluated (conversion methods build their SNN here)."""
        return model

    @torch.no_grad()
    def logits(self, model: nn.Module, x: Tensor) -> Tensor:
        return model(x)

    def spiking_layers(self, model: nn.Module) -> list[nn.Module]:
        """Layers whose outputs are spikes (one per element per step at most), forward order."""
        return model.neurons() if self.spiking else []


# ---- DSR (Meng et al., CVPR 2022) ------------------------------------------------------------


@dataclass(frozen=True)
class DSRIFParams:
    v_th: float = 6.0  # supplement C.4
    lower_bound: float = 0.1  # supplement C.4 (official code and README: 0.01)
    alpha: float = 0.5
    ann_pretrain_epochs: int = 0  # > 0: the ImageNet hybrid (see DSRMethod.stages)

    def __post_init__(self) -> None:
        _check_neuron(self)


def _check_neuron(p: DSRIFParams | DSRLIFParams) -> None:
    if not 0 < p.lower_bound <= p.v_th:
        raise ConfigError(f"need 0 < lower_bound <= v_th, got lower_bound={p.lower_bound}, "
                          f"v_th={p.v_th}")
    if not 0 < p.alpha <= 1:
        raise ConfigError(f"alpha must be in (0, 1], got {p.alpha}")
    if p.ann_pretrain_epochs < 0:
        raise ConfigError(f"ann_pretrain_epochs must be >= 0, got {p.ann_pretrain_epochs}")


# Table S2 (tau = 1): T -> (initial v_th, lower bound, dt, alpha)
LIF_TABLE_S2 = {20: (0.3, 0.0005, 0.05, 0.3), 15: (0.3, 0.0005, 0.05, 0.4),
                10: (0.3, 0.0005, 0.05, 0.4), 5: (0.6, 0.001, 0.1, 0.5)}


@dataclass(frozen=True)
class DSRLIFParams:
    v_th: float = 0.3
    lower_bound: float = 0.0005
    dt: float = 0.05
    alpha: float = 0.3
    tau: float = 1.0
    vth_grad: str = "official"  # official (dt factor) | analytic (1/dt)
    ann_pretrain_epochs: int = 0  # > 0: the ImageNet hybrid (see DSRMethod.stages)

    def __post_init__(self) -> None:
        _check_neuron(self)
        if not (self.dt > 0 and self.tau > 0):
            raise ConfigError(f"dt and tau must be > 0, got dt={self.dt}, tau={self.tau}")
        if self.vth_grad not in ("official", "analytic"):
            raise ConfigError(f"vth_grad must be official or analytic, got {self.vth_grad!r}")


# the official ImageNet calibration: 99.9th percentile over 5 batches
HYBRID_PERCENTILE, HYBRID_CALIB_BATCHES = 99.9, 5


class _ANNTwin(Method):
    """The ReLU twin of a DSR network, same head (BN1d + ReLU on the logits), for pre-training."""

    key, spiking = "ann-twin", False

    def __init__(self, cfg: RunConfig):
        # no Params of its own: cfg.params are the DSR run's, not the twin's
        super().__init__(dataclasses.replace(cfg, params={}))

    def neuron_factory(self) -> models.NeuronFactory:
        return models.ReLU


class DSRMethod(Method):
    def stages(self) -> tuple[Stage, ...]:
        """The ImageNet hybrid of the official code when ann_pretrain_epochs > 0: train the ReLU
        twin for that many epochs, calibrate from it, then DSR fine-tunes the spiking network."""
        epochs = self.p.ann_pretrain_epochs
        if epochs == 0:
            return (TRAIN,)
        return (pretrain_ann(epochs), CALIBRATE, FINE_TUNE)

    def ann_twin(self) -> Method:
        return _ANNTwin(self.cfg)

    def calibrate(self, model: nn.Module, ann: nn.Module, data: Dataset) -> None:
        """Set each layer's v_th from the 99.9th percentile of the twin's activations there (on
        training batches; the official code used 5 validation batches) and load its weights."""
        device = next(model.parameters()).device
        batches = calibration_batches(data, self.cfg, device, HYBRID_CALIB_BATCHES)
        clips = activation_percentiles(ann, batches, HYBRID_PERCENTILE)
        models.load_ann_weights(model, ann.state_dict())
        with torch.no_grad():
            for neuron, clip in zip(model.neurons(), clips, strict=True):
                neuron.v_th.fill_(self.v_th_for_clip(clip))

    def v_th_for_clip(self, clip: float) -> float:
        """The v_th whose representation saturates at `clip`, the ReLU twin's calibrated clip."""
        raise NotImplementedError

    def training_module(self, model: nn.Module) -> nn.Module:
        if self.cfg.mode == "exact":
            return model
        return FastForward(model, coupling=self.cfg.mode == "fast")


class DSRIF(DSRMethod):
    key, Params = "dsr-if", DSRIFParams

    def v_th_for_clip(self, clip: float) -> float:
        return clip  # a = clamp(I_bar, 0, v_th)

    def neuron_factory(self) -> models.NeuronFactory:
        p = self.p
        return functools.partial(IFNeuron, self.T, v_th=p.v_th, lower_bound=p.lower_bound,
                                 alpha=p.alpha)


class DSRLIF(DSRMethod):
    key, Params = "dsr-lif", DSRLIFParams

    @classmethod
    def default_params(cls, time_steps: int, dataset: str) -> dict[str, Any]:
        # the nearest Table S2 row (the table covers T = 5, 10, 15, 20)
        row = LIF_TABLE_S2[min(LIF_TABLE_S2, key=lambda t: (abs(t - time_steps), t))]
        v_th, lb, dt, alpha = row
        return dataclasses.asdict(DSRLIFParams(v_th=v_th, lower_bound=lb, dt=dt, alpha=alpha))

    def v_th_for_clip(self, clip: float) -> float:
        return clip * self.p.dt  # a = clamp(I_hat / tau, 0, v_th / dt) with tau = 1 (Table S2)

    def neuron_factory(self) -> models.NeuronFactory:
        p = self.p
        return functools.partial(LIFNeuron, self.T, v_th=p.v_th, lower_bound=p.lower_bound,
                                 alpha=p.alpha, dt=p.dt, tau=p.tau, vth_grad=p.vth_grad)
