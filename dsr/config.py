"""One frozen run configuration: the paper's defaults per dataset, overridable key by key.

Defaults follow Table S3 (optimizer, epochs, lr, batch size, cosine schedule) plus what the
official code adds (momentum 0.9, weight decay 5e-4 on every parameter including v_th, 400-step
linear warm-up); CIFAR-10 at T = 5 uses lr 0.05 (supplement C.4). Method hyperparameters (neuron
thresholds, surrogate widths, ...) live in each method's `Params` dataclass, not here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, get_args, get_type_hints

MODES = ("exact", "fast", "approx")

# Table S3 (+ official-code additions). `arch` is the dataset's default architecture.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # embedded default: sized so a run takes seconds on a CPU (not a paper setting)
    "digits": dict(arch="preact_resnet8", epochs=8, batch_size=64, optimizer="sgd", lr=0.1,
                   warmup_iters=20),
    "cifar10": dict(arch="preact_resnet18", epochs=200, batch_size=128, optimizer="sgd", lr=0.1),
    "cifar100": dict(arch="preact_resnet18", epochs=200, batch_size=128, optimizer="sgd", lr=0.1),
    # Table S3 gives Adam without weight decay for ImageNet
    "imagenet": dict(arch="preact_resnet18", epochs=90, batch_size=144, optimizer="adam", lr=1e-3,
                     weight_decay=0.0, stem="imagenet"),
    "cifar10_dvs": dict(arch="vgg11", epochs=300, batch_size=128, optimizer="sgd", lr=0.05,
                        dropout=0.1),
}


# energy per operation, 45 nm (Horowitz, ISSCC 2014): 32-bit float add (AC), multiply + add (MAC);
# the defaults of TrainConfig's pj_per_ac and pj_per_mac
PJ_PER_AC = 0.9
PJ_PER_MAC = 4.6


def sweep_points(T_max: int, extra) -> list[int]:
    """A conversion run's latency sweep: every power of two up to T_max, T_max and `extra`."""
    return sorted({2**k for k in range(T_max.bit_length())} | {T_max} | set(extra))


# TrainConfig fields that do not change what a run computes
NOT_IDENTITY = ("data_root", "download", "device", "latency_batches")
# former TrainConfig fields, outside every identity, that older records still carry:
# fail_at_epoch, a test hook (tests now fail a job with a plug-in method instead)
RETIRED = ("fail_at_epoch",)
# dataset settings that were TrainConfig fields before datasets declared their own Params, with
# the values every run had: the identity keeps them where they were (see `identity`)
DATA_PARAMS_BEFORE: dict[str, Any] = {"frames": 20, "dvs_split": "first900", "dvs_reader": "tonic"}
# TrainConfig fields that only change how a trained model is evaluated: a conversion run may set
# them differently from the run that trained its ANN; every other field must match
EVAL_ONLY = ("eval_batch_size", "test_subset", "pj_per_ac", "pj_per_mac")
# seeds are drawn from [0, 2**32): what torch, numpy and every generator here accept
SEED_LIMIT = 2**32


class ConfigError(ValueError):
    """A configuration value is wrong; the message names it and how to fix it."""


@dataclass(frozen=True)
class TrainConfig:
    """Harness hyperparameters; every field can be set with `--set key=value`."""

    epochs: int = 200
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 400  # linear warm-up, then cosine annealing to 0 over the run
    eval_batch_size: int = 256
    data_root: str | None = None
    download: bool = False
    train_subset: int | None = None  # class-balanced subset size for reduced-scale runs
    test_subset: int | None = None  # the same class-balanced test images for every run
    # > 0: this share of the training set (class-balanced, the same images for every run, seed
    # and method) is held out as a validation split: the run trains on the rest and records
    # validation accuracy per epoch (a tuned experiment selects on it, never on the test set)
    val_fraction: float = 0.0
    base_width: int | None = None  # None: the architecture's own width
    dropout: float = 0.0
    stem: str = "cifar"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    latency_batches: int = 5  # timed batches for inference latency
    pj_per_ac: float = PJ_PER_AC  # energy per accumulate
    pj_per_mac: float = PJ_PER_MAC  # energy per multiply-accumulate

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"lr must be a positive finite number, got {self.lr}")
        if not 0 <= self.weight_decay < math.inf:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("pj_per_ac", "pj_per_mac"):  # used only after the last epoch: check now
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(f"{name} must be a finite energy >= 0 (picojoules), got "
                                  f"{getattr(self, name)}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        for name in ("warmup_iters", "latency_batches", "base_width"):
            value, least = getattr(self, name), 0 if name == "warmup_iters" else 1
            if value is not None and value < least:
                raise ConfigError(f"{name} must be >= {least}, got {value}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if self.stem not in ("cifar", "imagenet"):
            raise ConfigError(f"stem must be 'cifar' or 'imagenet', got {self.stem!r}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


# TrainConfig fields that change the weights a run trains: a conversion run takes them from the
# run whose model it converts (the rest are NOT_IDENTITY or EVAL_ONLY)
TRAINING_KEYS = frozenset(f.name for f in fields(TrainConfig)) - set(NOT_IDENTITY) - set(EVAL_ONLY)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run; `hash` identifies it (see `identity`)."""

    method: str
    dataset: str
    arch: str
    time_steps: int
    seed: int
    mode: str
    train: TrainConfig
    params: dict[str, Any] = field(default_factory=dict)  # the method's resolved Params
    data_params: dict[str, Any] = field(default_factory=dict)  # the dataset's resolved Params
    # out-of-tree classes, {"method" | "dataset": "module:Class"}: another class under the same
    # key is another run
    plugins: dict[str, str] = field(default_factory=dict)
    source: str | None = None  # conversion: the hash of the run whose model.pt it converts

    def __post_init__(self) -> None:
        if not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(f"seed must be in [0, 2**32), got {self.seed}; pick a smaller seed")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, recorded: dict[str, Any]) -> RunConfig:
        """The RunConfig a metrics.json or model.pt recorded (`to_dict`), from any version: a
        retired TrainConfig field is dropped (it changed no result: see RETIRED), and the
        dataset settings of a record older than `data_params` move there (CIFAR10-DVS's; the
        other built-ins have none)."""
        train = {k: v for k, v in recorded["train"].items() if k not in RETIRED}
        moved = {k: train.pop(k) for k in DATA_PARAMS_BEFORE if k in train}
        if "data_params" not in recorded and recorded["dataset"] == "cifar10_dvs":
            recorded = {**recorded, "data_params": moved}
        return cls(**{**recorded, "train": TrainConfig(**train)})

    @property
    def hash(self) -> str:
        """The run's identity as 16 hex digits: its results folder's name, and the key of its
        checkpoint, model.pt and cached metrics."""
        blob = json.dumps(identity(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# RunConfig fields added after results were cached: left out of the identity at these values, so
# an earlier run keeps its hash (and its results folder). A new field that changes no earlier
# run's result joins this map with the value that reproduces the old behaviour.
ADDED_LATER: dict[str, Any] = {"plugins": {}, "source": None}
# TrainConfig fields and method hyperparameters added after results were cached, likewise, by
# field name: the validation split; sg-bptt's tdBN option (in every method whose Params extend
# SGParams: tet, plif, dspike)
TRAIN_ADDED_LATER: dict[str, Any] = {"val_fraction": 0.0}
PARAMS_ADDED_LATER: dict[str, Any] = {"tdbn": False, "tdbn_alpha": 1.0}


def identity(cfg: RunConfig) -> dict[str, Any]:
    """What identifies a run: every setting that can change its result, and nothing else (not
    where the data lives, which device runs it, how often latency is timed, test-only switches),
    so a run retried elsewhere resumes and a changed setting is a new run beside the old one.

    The one definition: RunConfig.hash (results folder, checkpoint, model.pt), the workflow's
    planned folders and cached-result check (pipeline.grid, pipeline.collect) and conversion's
    model check (dsr.harness.convert, through `source`) all derive from it."""
    ident = cfg.to_dict()
    ident["train"] = {k: v for k, v in ident["train"].items() if k not in NOT_IDENTITY
                      and (k not in TRAIN_ADDED_LATER or v != TRAIN_ADDED_LATER[k])}
    # the dataset settings that were TrainConfig fields stay there, at the values every run had
    # where the dataset has no such setting (dvs_reader was in CIFAR10-DVS's identity only)
    data = dict(ident.pop("data_params"))
    for name, before in DATA_PARAMS_BEFORE.items():
        value = data.pop(name, before)
        if name != "dvs_reader" or cfg.dataset == "cifar10_dvs":
            ident["train"][name] = value
    if data:  # a dataset's other settings
        ident["data_params"] = data
    for name, neutral in ADDED_LATER.items():
        if ident[name] == neutral:
            del ident[name]
    ident["params"] = {k: v for k, v in ident["params"].items()
                       if k not in PARAMS_ADDED_LATER or v != PARAMS_ADDED_LATER[k]}
    return ident


_KINDS = {bool: "true or false", int: "an integer", float: "a number"}


def format_value(value: Any) -> str:
    """A config value (a YAML scalar) as `--set` text; `parse_value` reads it back."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_value(key: str, raw: str, typ: Any) -> Any:
    """Parse `--set` text `raw` for a field annotated `typ` (int, float, bool, str, optional
    variants); the inverse of `format_value`."""
    args = get_args(typ)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), typ)
    if optional and raw.lower() in ("none", "null", ""):
        return None
    try:
        if base is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if base is int:
            return int(raw)
        if base is float:
            value = float(raw)
    except ValueError:
        raise ConfigError(f"--set {key}={raw}: expected {_KINDS[base]}"
                          f"{' or none' if optional else ''}") from None
    if base is float:
        if not math.isfinite(value):  # no hyperparameter here is meant to be inf or nan
            raise ConfigError(f"--set {key}={raw}: expected a finite number")
        return value
    return raw


def split_overrides(pairs: list[str], flag: str = "--set") -> dict[str, str]:
    """KEY=VALUE pairs as a dict; a key given twice is an error (which one was meant?)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects key=value, got {pair!r}")
        key = key.strip()
        if key in out:
            raise ConfigError(f"{flag} {key} is given twice ({key}={out[key]} and "
                              f"{key}={value.strip()}); give it once")
        out[key] = value.strip()
    return out


def apply_overrides(cls: type, base: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """Parse the overrides that name fields of dataclass `cls` into `base` (returns a new dict)."""
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    out = dict(base)
    for key, raw in overrides.items():
        if key in names:
            out[key] = parse_value(key, raw, hints[key])
    return out


def train_config(dataset: str, time_steps: int, overrides: dict[str, str],
                 defaults: dict[str, Any] | None = None) -> TrainConfig:
    """The paper's TrainConfig for `dataset` (Table S3), or `defaults` (a plug-in dataset's),
    then `overrides` applied."""
    defaults = DATASET_DEFAULTS[dataset] if defaults is None else defaults
    base = {k: v for k, v in defaults.items() if k != "arch"}
    stray = sorted(set(base) - {f.name for f in fields(TrainConfig)})
    if stray:
        raise ConfigError(f"dataset {dataset!r} declares defaults {', '.join(stray)}, which are "
                          "not TrainConfig fields; remove them from its defaults")
    if dataset == "cifar10" and time_steps == 5:
        base["lr"] = 0.05  # supplement C.4
    return TrainConfig(**apply_overrides(TrainConfig, base, overrides))
