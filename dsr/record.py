"""metrics.json of a run: the final metrics (latency and memory measured now, then recorded with
the run's evaluation and history) and the record of a run that diverged.

`metrics_record` and `diverged_record` are pure (nothing is timed or run there); the schema is
workflow/schemas/metrics.schema.json, checked when the file is written.
"""

from __future__ import annotations

from typing import Any

import torch

from dsr import data as dsr_data
from dsr.config import RunConfig
from dsr.cost import TrainingMemory, measure_latency, peak_memory
from dsr.evaluate import Evaluation
from dsr.method import Method
from dsr.provenance import Start, provenance
from dsr.resolve import plugin_provenance
from dsr.results import SCHEMA_VERSION


def run_provenance(cfg: RunConfig, device: torch.device, start: Start,
                   world_size: int) -> dict[str, Any]:
    """provenance() plus every out-of-tree class the run imported (file and sha256)."""
    return {**provenance(device, start, world_size), "plugins": plugin_provenance(cfg)}


def final_metrics(cfg: RunConfig, method: Method, data: dsr_data.Dataset, device: torch.device,
                  last: Evaluation, history: dict[str, list], start: Start, world_size: int,
                  training: TrainingMemory | None = None,
                  batch: int | None = None) -> dict[str, Any]:
    """metrics.json: latency timed at batch 1 and at `batch` (default eval_batch_size) and the
    peak memory measured now, then recorded with the run's evaluation, history and (a training
    run) its training memory."""
    x, _ = next(iter(data.batches("test", batch or cfg.train.eval_batch_size, device=device)))
    ms = measure_latency(lambda inp: method.logits(last.net, inp), x, cfg.train.latency_batches)
    memory = peak_memory(device) if training is None else training.process_peak()
    return metrics_record(cfg, method, data.info, last, history, latency=ms, memory=memory,
                          device=str(device), prov=run_provenance(cfg, device, start, world_size),
                          training_kind=None if training is None else training.kind)


def training_cost(history: dict[str, list], memory: tuple[int, str], kind: str | None
                  ) -> dict[str, Any]:
    """metrics.json "cost": training seconds per epoch and per step, peak training memory
    (`kind`: dsr.cost.TrainingMemory's; None for a run that trained nothing) and the process
    peak."""
    steps, seconds = history.get("steps") or [], history["seconds"]
    cost: dict[str, Any] = {"seconds_per_epoch": seconds, "peak_memory_bytes": memory[0],
                            "peak_memory_kind": memory[1]}
    if kind is None:
        return cost
    per_epoch = [m for m in history.get("memory") or [] if m is not None]
    reserved = [r for r in history.get("reserved") or [] if r is not None]
    cost["seconds_per_step"] = [s / n for s, n in zip(seconds, steps, strict=False) if n]
    cost["training_memory"] = {"kind": kind, "peak_bytes": max(per_epoch) if per_epoch else None,
                               "reserved_bytes": max(reserved) if reserved else None,
                               "per_epoch_bytes": history.get("memory") or []}
    return cost


def accuracy_record(cfg: RunConfig, history: dict[str, list]) -> dict[str, Any]:
    """metrics.json "accuracy": best and final test accuracy (the best epoch is the first with
    the highest test accuracy, as the paper reports); with a validation split (val_fraction)
    also its per-epoch accuracy and `validation_selected`, the test accuracy at the first epoch
    with the highest validation accuracy (an epoch chosen without looking at the test set)."""
    acc, val = history["accuracy"], history.get("val_accuracy")
    best = max(range(len(acc)), key=lambda i: acc[i]) if acc else None
    out = {"best": None if best is None else acc[best], "final": acc[-1] if acc else None,
           "best_epoch": None if best is None else best + 1, "per_epoch": acc,
           "validation_selected": None}
    if val:
        chosen = max(range(len(val)), key=lambda i: val[i])
        out["validation"] = {"fraction": cfg.train.val_fraction, "per_epoch": val,
                             "best": val[chosen], "best_epoch": chosen + 1}
        out["validation_selected"] = acc[chosen]
    return out


def _common(cfg: RunConfig, method: Method, info: dsr_data.DataInfo) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "method": cfg.method, "category": method.category, "dataset": cfg.dataset,
        "arch": cfg.arch, "neuron": method.neuron, "time_steps": cfg.time_steps,
        "seed": cfg.seed, "mode": cfg.mode, "epochs": cfg.train.epochs,
        "data": {"name": info.name, "num_classes": info.num_classes,
                 "train_size": info.train_size, "test_size": info.test_size,
                 "split": info.split, "source": info.source,
                 "preprocessing": info.preprocessing},
    }


def metrics_record(cfg: RunConfig, method: Method, info: dsr_data.DataInfo, last: Evaluation,
                   history: dict[str, list], latency: dict[str, float], memory: tuple[int, str],
                   device: str, prov: dict[str, Any],
                   training_kind: str | None = None) -> dict[str, Any]:
    """metrics.json from values already measured (nothing is timed or run here); accuracy as
    `accuracy_record` says."""
    counter = last.counter
    names = [n for n, m in last.net.named_modules() if any(m is s for s in counter.layers)]
    return {
        **_common(cfg, method, info),
        "accuracy": accuracy_record(cfg, history),
        "train_loss": history["loss"],
        "firing_rate": {"per_layer": counter.per_layer(), "layer_names": names,
                        "total": counter.total(), "per_epoch_total": history["rate"]},
        "synops": last.synops,
        "latency": {"time_steps": cfg.time_steps, "ms_per_sample": latency, "device": device},
        "cost": training_cost(history, memory, training_kind),
        "config": cfg.to_dict(), "config_hash": cfg.hash,
        "provenance": prov,
    }


def diverged_metrics(cfg: RunConfig, method: Method, info: dsr_data.DataInfo,
                     history: dict[str, list], diverged: Exception, device: torch.device,
                     start: Start, world_size: int, training: TrainingMemory) -> dict[str, Any]:
    """metrics.json of a run whose loss or weights became non-finite (see diverged_record)."""
    return diverged_record(cfg, method, info, history, epoch=diverged.epoch,
                           reason=diverged.reason, memory=training.process_peak(),
                           device=str(device), prov=run_provenance(cfg, device, start, world_size),
                           training_kind=training.kind)


def diverged_record(cfg: RunConfig, method: Method, info: dsr_data.DataInfo,
                    history: dict[str, list], epoch: int, reason: str,
                    memory: tuple[int, str], device: str, prov: dict[str, Any],
                    training_kind: str | None = None) -> dict[str, Any]:
    """A diverged run: `diverged` says in which epoch and why; the epochs completed before it
    keep their accuracies (best over them; none if it diverged in the first), and nothing is
    evaluated after it (no firing rates, SynOps or latency of a non-finite network)."""
    return {
        **_common(cfg, method, info),
        "diverged": {"epoch": epoch, "reason": reason},
        "accuracy": accuracy_record(cfg, history),
        "train_loss": history["loss"],
        "firing_rate": {"per_layer": [], "layer_names": [], "total": None,
                        "per_epoch_total": history["rate"]},
        "synops": {"per_layer": [], "total_ac": None, "total_mac": None, "energy_pj": None},
        "latency": {"time_steps": cfg.time_steps, "ms_per_sample": None, "device": device},
        "cost": training_cost(history, memory, training_kind),
        "config": cfg.to_dict(), "config_hash": cfg.hash,
        "provenance": prov,
    }
