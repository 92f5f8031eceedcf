"""metrics.json of a run as one typed record, `RunRecord`, written and read by the same class.

`RunRecord.write` checks the schema (dsr/schemas/metrics.schema.json, dsr.harness.results) and
writes the file atomically; `RunRecord.read` reads it back checked, so the harness, the pipeline and
the tests share one shape. A field marked `optional` is left out of the file when None (absent
in older or other kinds of runs: a conversion's `latency_sweep`); every other field is written,
null included. `trained_record`, `converted_record` and `diverged_record` build records from
values already measured (nothing is timed or run here). Torch-free: the pipeline imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from dsr.harness.results import SCHEMA_VERSION, ResultError, read_metrics, write_metrics

if TYPE_CHECKING:
    from dsr.config import RunConfig
    from dsr.data import DataInfo
    from dsr.harness.evaluate import Evaluation
    from dsr.method import Method


def optional(default: Any = None) -> Any:
    """A field left out of the file when None."""
    return field(default=default, metadata={"optional": True})


class Part:
    """A part of the record: JSON in and out, field by field (nested parts as their classes)."""

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("optional"):
                continue
            out[f.name] = _encode(value)
        return out

    @classmethod
    def from_json(cls, value: dict[str, Any], where: str = "metrics") -> Any:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ResultError(f"{where}: unknown field {unknown[0]!r}; rerun the job that wrote "
                              "it with this version of the suite")
        missing = [f.name for f in fields(cls) if f.name not in value
                   and f.default is dataclasses.MISSING]
        if missing:
            raise ResultError(f"{where}: field {missing[0]!r} is missing; rerun the job that "
                              "wrote it")
        hints = _hints(cls)
        return cls(**{k: _decode(hints[k], v, f"{where}/{k}") for k, v in value.items()})


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _encode(value: Any) -> Any:
    if isinstance(value, Part):
        return value.to_json()
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value  # numbers, strings and the free-form dicts (config, provenance) as they are


def _decode(hint: Any, value: Any, where: str) -> Any:
    """`value` as `hint` says: a Part (possibly `| None`) from its dict, lists element-wise."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        parts = [a for a in typing.get_args(hint) if isinstance(a, type) and issubclass(a, Part)]
        return parts[0].from_json(value, where) if parts and value is not None else value
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint)
        return [_decode(item, v, f"{where}/{i}") for i, v in enumerate(value)]
    if isinstance(hint, type) and issubclass(hint, Part):
        return hint.from_json(value, where)
    return value


@dataclass
class DataRecord(Part):
    name: str
    num_classes: int
    train_size: int
    test_size: int
    split: str | None
    source: str
    preprocessing: str | None = optional()


@dataclass
class Validation(Part):
    fraction: float
    per_epoch: list[float]
    best: float
    best_epoch: int


@dataclass
class Accuracy(Part):
    """Test accuracy: the best epoch is the first with the highest, as the paper reports; with a
    validation split, `validation_selected` is the test accuracy at the first epoch with the
    highest validation accuracy (an epoch chosen without looking at the test set)."""

    best: float | None
    final: float | None
    best_epoch: int | None
    per_epoch: list[float]
    validation_selected: float | None
    validation: Validation | None = optional()


@dataclass
class FiringRate(Part):
    per_layer: list[float]
    total: float | None
    layer_names: list[str] | None = optional()
    per_epoch_total: list[float | None] | None = optional()


@dataclass
class SynOps(Part):
    per_layer: list[dict[str, Any]]
    total_ac: float | None
    total_mac: float | None
    energy_pj: float | None
    pj_per_ac: float | None = optional()
    pj_per_mac: float | None = optional()
    samples: int | None = optional()


@dataclass
class Latency(Part):
    time_steps: int
    ms_per_sample: dict[str, float] | float | None
    device: str | None = optional()


@dataclass
class TrainingMemoryRecord(Part):
    kind: str
    peak_bytes: int | None
    reserved_bytes: int | None
    per_epoch_bytes: list[int | None]


@dataclass
class Cost(Part):
    seconds_per_epoch: list[float]
    peak_memory_bytes: int | None
    peak_memory_kind: str | None = optional()
    seconds_per_step: list[float] | None = optional()
    training_memory: TrainingMemoryRecord | None = optional()
    eval_seconds: float | None = optional()  # a conversion's sweep


@dataclass
class Divergence(Part):
    epoch: int  # 1-based
    reason: str


@dataclass
class SweepPoint(Part):
    T: int
    accuracy: float
    synops: float | None
    energy_pj: float | None


@dataclass
class LatencySweep(Part):
    T_max: int
    points: list[SweepPoint]


@dataclass
class ConvertedFrom(Part):
    path: str
    method: str
    config_hash: str
    accuracy: float


@dataclass
class RunRecord(Part):
    """One run's metrics.json."""

    schema_version: int
    method: str
    category: str
    dataset: str
    arch: str
    neuron: str
    time_steps: int
    seed: int
    mode: str
    epochs: int
    data: DataRecord
    accuracy: Accuracy
    firing_rate: FiringRate
    synops: SynOps
    latency: Latency
    cost: Cost
    config: dict[str, Any]
    config_hash: str
    provenance: dict[str, Any]
    train_loss: list[float] | None = optional()
    diverged: Divergence | None = optional()
    latency_sweep: LatencySweep | None = optional()
    converted_from: ConvertedFrom | None = optional()

    def write(self, path: str | Path) -> None:
        """Check against the schema, then write atomically (dsr.harness.results.write_metrics)."""
        write_metrics(path, self.to_json())

    @classmethod
    def read(cls, path: str | Path) -> RunRecord:
        """The record in `path`, checked (dsr.harness.results.read_metrics); one-line
        ResultError."""
        return cls.from_json(read_metrics(path), str(path))


# ---- building records from measured values ----------------------------------------------------


def accuracy_record(cfg: RunConfig, history: dict[str, list]) -> Accuracy:
    """The Accuracy of a history's per-epoch test (and validation) accuracies."""
    acc, val = history["accuracy"], history.get("val_accuracy")
    best = max(range(len(acc)), key=lambda i: acc[i]) if acc else None
    out = Accuracy(best=None if best is None else acc[best], final=acc[-1] if acc else None,
                   best_epoch=None if best is None else best + 1, per_epoch=acc,
                   validation_selected=None)
    if val:
        chosen = max(range(len(val)), key=lambda i: val[i])
        out.validation = Validation(cfg.train.val_fraction, val, val[chosen], chosen + 1)
        out.validation_selected = acc[chosen]
    return out


def training_cost(history: dict[str, list], memory: tuple[int, str], kind: str | None) -> Cost:
    """Training seconds per epoch and per step, peak training memory (`kind`:
    dsr.harness.cost.TrainingMemory's; None for a run that trained nothing) and the process peak."""
    steps, seconds = history.get("steps") or [], history["seconds"]
    cost = Cost(seconds_per_epoch=seconds, peak_memory_bytes=memory[0],
                peak_memory_kind=memory[1])
    if kind is None:
        return cost
    per_epoch = [m for m in history.get("memory") or [] if m is not None]
    reserved = [r for r in history.get("reserved") or [] if r is not None]
    cost.seconds_per_step = [s / n for s, n in zip(seconds, steps, strict=False) if n]
    cost.training_memory = TrainingMemoryRecord(kind, max(per_epoch) if per_epoch else None,
                                                max(reserved) if reserved else None,
                                                history.get("memory") or [])
    return cost


def _record(cfg: RunConfig, method: Method, info: DataInfo, **parts: Any) -> RunRecord:
    data = DataRecord(info.name, info.num_classes, info.train_size, info.test_size, info.split,
                      info.source, info.preprocessing)
    return RunRecord(schema_version=SCHEMA_VERSION, method=cfg.method, category=method.category,
                     dataset=cfg.dataset, arch=cfg.arch, neuron=method.neuron,
                     time_steps=cfg.time_steps, seed=cfg.seed, mode=cfg.mode,
                     epochs=cfg.train.epochs, data=data, config=cfg.to_dict(),
                     config_hash=cfg.hash, **parts)


def firing_rate(last: Evaluation, per_epoch_total: list[float | None]) -> FiringRate:
    """The evaluated network's firing rates, its layers named as its modules."""
    counter = last.counter
    names = [n for n, m in last.net.named_modules() if any(m is s for s in counter.layers)]
    return FiringRate(counter.per_layer(), counter.total(), names, per_epoch_total)


def trained_record(cfg: RunConfig, method: Method, info: DataInfo, last: Evaluation,
                   history: dict[str, list], latency: dict[str, float], memory: tuple[int, str],
                   device: str, prov: dict[str, Any],
                   training_kind: str | None = None) -> RunRecord:
    """A trained run: its last evaluation and per-epoch history."""
    return _record(cfg, method, info, accuracy=accuracy_record(cfg, history),
                   train_loss=history["loss"], firing_rate=firing_rate(last, history["rate"]),
                   synops=SynOps(**last.synops),
                   latency=Latency(cfg.time_steps, latency, device),
                   cost=training_cost(history, memory, training_kind), provenance=prov)


def converted_record(cfg: RunConfig, method: Method, info: DataInfo, last: Evaluation,
                     sweep: LatencySweep, source: ConvertedFrom, latency: dict[str, float],
                     memory: tuple[int, str], eval_seconds: float, device: str,
                     prov: dict[str, Any]) -> RunRecord:
    """A conversion run: one evaluation at T_max (its accuracy best and final, no training)
    and the latency sweep of the same pass."""
    acc = last.accuracy
    return _record(cfg, method, info,
                   accuracy=Accuracy(acc, acc, 1, [acc], validation_selected=None),
                   train_loss=[], firing_rate=firing_rate(last, [last.counter.total()]),
                   synops=SynOps(**last.synops), latency=Latency(cfg.time_steps, latency, device),
                   cost=Cost([], memory[0], memory[1], eval_seconds=eval_seconds),
                   provenance=prov, latency_sweep=sweep, converted_from=source)


def diverged_record(cfg: RunConfig, method: Method, info: DataInfo, history: dict[str, list],
                    epoch: int, reason: str, memory: tuple[int, str], device: str,
                    prov: dict[str, Any], training_kind: str | None = None) -> RunRecord:
    """A run that diverged in `epoch`: the epochs completed before it keep their accuracies
    (best over them; none if it diverged in the first)."""
    return _diverged(cfg, method, info, Divergence(epoch, reason), accuracy_record(cfg, history),
                     history["loss"], history["rate"],
                     training_cost(history, memory, training_kind), device, prov)


def diverged_conversion(cfg: RunConfig, method: Method, info: DataInfo, reason: str,
                        epoch: int, memory: tuple[int, str], device: str,
                        prov: dict[str, Any]) -> RunRecord:
    """A conversion of a model whose training diverged in `epoch`: no epochs of its own."""
    return _diverged(cfg, method, info, Divergence(epoch, reason),
                     Accuracy(None, None, None, [], validation_selected=None), [], [],
                     Cost([], memory[0], memory[1]), device, prov)


def _diverged(cfg: RunConfig, method: Method, info: DataInfo, divergence: Divergence,
              accuracy: Accuracy, train_loss: list[float], rates: list[float | None],
              cost: Cost, device: str, prov: dict[str, Any]) -> RunRecord:
    """`diverged` says in which epoch and why; nothing is evaluated after it (no firing rates,
    SynOps or latency of a non-finite network)."""
    return _record(cfg, method, info, diverged=divergence, accuracy=accuracy,
                   train_loss=train_loss, firing_rate=FiringRate([], None, [], rates),
                   synops=SynOps([], None, None, None),
                   latency=Latency(cfg.time_steps, None, device), cost=cost, provenance=prov)
