"""Cached metrics.json files -> one row per run (and per layer), each checked against its cell.

A cell (Grid.cells) is one run of one experiment: where its metrics.json lies and the identity
(config hash) the configuration resolves it to. A file whose fields contradict its path is an
error; one that holds another run than its cell asks is stale (the planner moves such files
aside before training, so only a cache-only render meets one). A run that diverged is a result:
its row says so and carries no accuracy. A conversion job (a cell with a `sweep`) is one file
per seed at T_max whose latency_sweep gives a row at every T. Files are read as
`dsr.harness.record.RunRecord`s.
"""

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dsr.harness.record import RunRecord
from dsr.harness.results import ResultError


def stale_reason(rec: RunRecord, cell: dict) -> str | None:
    """Why a cached run is not the one its cell asks for (None: it is)."""
    if rec.config_hash != cell["hash"]:
        return f"holds run {rec.config_hash}, the configuration asks for {cell['hash']}"
    return None


def check_identity(rec: RunRecord, cell: dict) -> None:
    for key, field_name in (("method", "method"), ("dataset", "dataset"), ("arch", "arch"),
                            ("T", "time_steps"), ("seed", "seed")):
        value = getattr(rec, field_name)
        if value != cell[key]:
            raise ResultError(f"{cell['path']}: holds {field_name}={value!r} but its path says "
                              f"{cell[key]!r}; delete the file and rerun its job")


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def sweep_rows(rec: RunRecord, cell: dict) -> list[dict]:
    """A conversion job's rows: one per latency-sweep point, at that point's T. SynOps and energy
    are the point's (the first T steps); the firing rate is recorded over T_max only. A
    conversion of a diverged model gives one diverged row per configured T."""
    if rec.diverged is not None:
        return [{**run_row(rec, cell), "T": T} for T in cell["points"]]
    sweep = rec.latency_sweep
    if sweep is None:
        raise ResultError(f"{cell['path']}: a conversion job's metrics without latency_sweep; "
                          "delete the file and rerun its job")
    base, pj_ac, pj_mac = run_row(rec, cell), rec.synops.pj_per_ac, rec.synops.pj_per_mac
    rows = []
    for point in sweep.points:
        ac, energy = point.synops, point.energy_pj
        mac = (None if None in (ac, energy, pj_ac) or not pj_mac
               else (energy - pj_ac * ac) / pj_mac)
        rows.append({**base, "T": point.T, "acc_best": 100 * point.accuracy,
                     "acc_final": 100 * point.accuracy, "synops_ac": ac, "synops_mac": mac,
                     "energy_pj": energy,
                     "firing_rate": base["firing_rate"] if point.T == sweep.T_max else None,
                     "configured": point.T in cell["points"]})
    return rows


def run_row(rec: RunRecord, cell: dict) -> dict:
    """One run's numbers, accuracies and rates in %, memory in MB."""
    syn, cost, rate, acc = rec.synops, rec.cost, rec.firing_rate, rec.accuracy
    training = cost.training_memory
    mib = lambda b: None if b is None else b / 2**20  # noqa: E731
    diverged = rec.diverged
    percent = (lambda v: None if v is None or diverged else 100 * v)  # noqa: E731
    return {
        "experiment": cell["experiment"], "dataset": cell["dataset"], "arch": cell["arch"],
        "method": cell["method"], "variant": cell.get("variant"), "T": cell["T"],
        "seed": cell["seed"], "category": rec.category, "neuron": rec.neuron,
        "mode": rec.mode,
        "epochs": rec.epochs, "best_epoch": None if diverged else acc.best_epoch,
        "acc_best": percent(acc.best), "acc_final": percent(acc.final),
        "acc_val": percent(acc.validation.best if acc.validation else None),
        "acc_val_selected": percent(acc.validation_selected),
        "diverged_epoch": diverged.epoch if diverged else None,
        "synops_ac": syn.total_ac, "synops_mac": syn.total_mac,
        "energy_pj": syn.energy_pj, "pj_per_ac": syn.pj_per_ac, "pj_per_mac": syn.pj_per_mac,
        "firing_rate": None if rate.total is None else 100 * rate.total,
        "seconds_per_epoch": _mean(cost.seconds_per_epoch),
        "train_seconds": sum(cost.seconds_per_epoch),
        "peak_memory_mb": mib(cost.peak_memory_bytes), "peak_memory_kind": cost.peak_memory_kind,
        "seconds_per_step": _mean(cost.seconds_per_step or []),
        "train_memory_mb": mib(training.peak_bytes if training else None),
        "train_memory_reserved_mb": mib(training.reserved_bytes if training else None),
        "train_memory_kind": training.kind if training else None,
        "path": cell["path"],
        "sweep_T_max": None if cell.get("sweep") is None else cell["T"],
        "configured": True,  # T is one of the experiment's time steps for this method
        "selected": None,  # a tuned experiment's candidate: selected or not (pipeline.tuning)
    }


RUN_COLUMNS = ["experiment", "dataset", "arch", "method", "variant", "T", "seed", "category",
               "neuron", "mode", "epochs", "best_epoch", "acc_best", "acc_final",
               "acc_val", "acc_val_selected", "diverged_epoch", "synops_ac",
               "synops_mac", "energy_pj", "pj_per_ac", "pj_per_mac", "firing_rate",
               "seconds_per_epoch", "train_seconds", "peak_memory_mb", "peak_memory_kind",
               "seconds_per_step", "train_memory_mb", "train_memory_reserved_mb",
               "train_memory_kind", "path",
               "sweep_T_max", "configured", "selected"]
LAYER_COLUMNS = ["experiment", "method", "T", "seed", "layer_index", "layer", "rate"]


@dataclass
class Collected:
    """What the cache holds for a list of cells."""

    runs: pd.DataFrame  # one row per (experiment, run) present and current
    layers: pd.DataFrame  # per-layer firing rates (%) of the experiments' firing_rates methods
    missing: list[dict] = field(default_factory=list)
    stale: list[tuple[dict, str]] = field(default_factory=list)
    total: int = 0


def collect(cells: list[dict], experiments: list[dict], strict: bool) -> Collected:
    """Read every cell's metrics.json; strict: a missing or stale run is an error."""
    rate_methods = {e["name"]: set(e["firing_rates"]) for e in experiments}
    rows, layer_rows, missing, stale = [], [], [], []
    seen: dict[str, RunRecord] = {}
    for cell in cells:
        path = cell["path"]
        if path not in seen:
            if not Path(path).is_file():
                if strict:
                    raise ResultError(f"{path}: no such metrics file; run `snakemake "
                                      "reproduce_table` to train it")
                missing.append(cell)
                continue
            seen[path] = RunRecord.read(path)
        rec = seen[path]
        check_identity(rec, cell)
        reason = stale_reason(rec, cell)
        if reason is not None:
            if strict:
                raise ResultError(f"{path}: {reason}; move it aside (reproduce_table does) so "
                                  "its job runs again")
            stale.append((cell, reason))
            continue
        rows += sweep_rows(rec, cell) if cell.get("sweep") else [run_row(rec, cell)]
        if cell["method"] in rate_methods[cell["experiment"]] and rec.diverged is None:
            names = rec.firing_rate.layer_names or []
            for i, r in enumerate(rec.firing_rate.per_layer):
                layer_rows.append({"experiment": cell["experiment"], "method": cell["method"],
                                   "T": cell["T"], "seed": cell["seed"], "layer_index": i,
                                   "layer": names[i] if i < len(names) else f"layer {i}",
                                   "rate": 100 * r})
    return Collected(runs=pd.DataFrame(rows, columns=RUN_COLUMNS),
                     layers=pd.DataFrame(layer_rows, columns=LAYER_COLUMNS),
                     missing=missing, stale=stale, total=len(cells))
