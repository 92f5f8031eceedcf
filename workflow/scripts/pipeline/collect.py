"""Cached metrics.json files -> one row per run (and per layer), each checked against its cell.

A cell (Grid.cells) is one run of one experiment: where its metrics.json lies and what the
config asks of it (epochs, mode, --set values). A file whose identity fields contradict its path
is an error; one that ran other settings than the config now asks is stale. A conversion job (a
cell with a `sweep`) is one file per seed at T_max whose latency_sweep gives a row at every T.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dsr.config import NOT_IDENTITY, ConfigError, parse_value
from dsr.results import ResultError, read_metrics


def same_value(recorded, raw: str) -> bool:
    """Does a value recorded in metrics.json equal the --set text the config passes (read as
    the trainer reads it, with the recorded value's type)?"""
    numeric = isinstance(recorded, int | float) and not isinstance(recorded, bool)
    kind = float if numeric else str if recorded is None else type(recorded)
    try:
        value = parse_value("", raw, kind | None)
    except ConfigError:
        return False
    if numeric and value is not None:
        return math.isclose(value, float(recorded), rel_tol=1e-9)
    return value == recorded


def stale_reason(metrics: dict, cell: dict) -> str | None:
    """Why a cached run does not match what the config asks for now (None: it matches)."""
    if cell["epochs"] is not None and metrics["epochs"] != cell["epochs"]:
        return f"ran {metrics['epochs']} epochs, config asks {cell['epochs']}"
    if cell["mode"] is not None and metrics["mode"] != cell["mode"]:
        return f"ran mode {metrics['mode']}, config asks {cell['mode']}"
    recorded = {**metrics["config"].get("params", {}), **metrics["config"].get("train", {})}
    for key, raw in cell["set"].items():
        # where the data lives, the device, latency repeats: not what the run computed
        if key in NOT_IDENTITY:
            continue
        if key in recorded and not same_value(recorded[key], raw):
            return f"ran {key}={recorded[key]}, config asks {key}={raw}"
    return None


def check_identity(metrics: dict, cell: dict) -> None:
    for key, field_name in (("method", "method"), ("dataset", "dataset"), ("arch", "arch"),
                            ("T", "time_steps"), ("seed", "seed")):
        if metrics[field_name] != cell[key]:
            raise ResultError(f"{cell['path']}: holds {field_name}={metrics[field_name]!r} but "
                              f"its path says {cell[key]!r}; delete the file and rerun its job")


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def sweep_rows(metrics: dict, cell: dict) -> list[dict]:
    """A conversion job's rows: one per latency-sweep point, at that point's T. SynOps and energy
    are the point's (the first T steps); the firing rate is recorded over T_max only."""
    sweep = metrics.get("latency_sweep")
    if sweep is None:
        raise ResultError(f"{cell['path']}: a conversion job's metrics without latency_sweep; "
                          "delete the file and rerun its job")
    base, syn = run_row(metrics, cell), metrics["synops"]
    pj_ac, pj_mac = syn.get("pj_per_ac"), syn.get("pj_per_mac")
    rows = []
    for point in sweep["points"]:
        ac, energy = point["synops"], point["energy_pj"]
        mac = (None if None in (ac, energy, pj_ac) or not pj_mac
               else (energy - pj_ac * ac) / pj_mac)
        rows.append({**base, "T": point["T"], "acc_best": 100 * point["accuracy"],
                     "acc_final": 100 * point["accuracy"], "synops_ac": ac, "synops_mac": mac,
                     "energy_pj": energy,
                     "firing_rate": base["firing_rate"] if point["T"] == sweep["T_max"] else None,
                     "configured": point["T"] in cell["points"]})
    return rows


def run_row(metrics: dict, cell: dict) -> dict:
    """One run's numbers, accuracies and rates in %, memory in MB."""
    syn, cost, rate = metrics["synops"], metrics["cost"], metrics["firing_rate"]
    peak = cost.get("peak_memory_bytes")
    return {
        "experiment": cell["experiment"], "dataset": cell["dataset"], "arch": cell["arch"],
        "method": cell["method"], "variant": cell.get("variant"), "T": cell["T"],
        "seed": cell["seed"], "category": metrics["category"], "neuron": metrics["neuron"],
        "mode": metrics["mode"],
        "epochs": metrics["epochs"], "best_epoch": metrics["accuracy"]["best_epoch"],
        "acc_best": 100 * metrics["accuracy"]["best"],
        "acc_final": 100 * metrics["accuracy"]["final"],
        "synops_ac": syn.get("total_ac"), "synops_mac": syn.get("total_mac"),
        "energy_pj": syn.get("energy_pj"), "pj_per_ac": syn.get("pj_per_ac"),
        "pj_per_mac": syn.get("pj_per_mac"),
        "firing_rate": None if rate.get("total") is None else 100 * rate["total"],
        "seconds_per_epoch": _mean(cost.get("seconds_per_epoch") or []),
        "train_seconds": sum(cost.get("seconds_per_epoch") or []),
        "peak_memory_mb": None if peak is None else peak / 2**20,
        "peak_memory_kind": cost.get("peak_memory_kind"),
        "path": cell["path"],
        "sweep_T_max": None if cell.get("sweep") is None else cell["T"],
        "configured": True,  # T is one of the experiment's time steps for this method
    }


RUN_COLUMNS = ["experiment", "dataset", "arch", "method", "variant", "T", "seed", "category",
               "neuron", "mode", "epochs", "best_epoch", "acc_best", "acc_final", "synops_ac",
               "synops_mac", "energy_pj", "pj_per_ac", "pj_per_mac", "firing_rate",
               "seconds_per_epoch", "train_seconds", "peak_memory_mb", "peak_memory_kind", "path",
               "sweep_T_max", "configured"]
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
    seen: dict[str, dict] = {}
    for cell in cells:
        path = cell["path"]
        if path not in seen:
            if not Path(path).is_file():
                if strict:
                    raise ResultError(f"{path}: no such metrics file; run `snakemake "
                                      "reproduce_table` to train it")
                missing.append(cell)
                continue
            seen[path] = read_metrics(path)
        metrics = seen[path]
        check_identity(metrics, cell)
        reason = stale_reason(metrics, cell)
        if reason is not None:
            if strict:
                raise ResultError(f"{path}: {reason}; delete it (or rerun without "
                                  "--rerun-triggers mtime) so its job runs again")
            stale.append((cell, reason))
            continue
        rows += sweep_rows(metrics, cell) if cell.get("sweep") else [run_row(metrics, cell)]
        if cell["method"] in rate_methods[cell["experiment"]]:
            rates = metrics["firing_rate"]
            names = rates.get("layer_names") or []
            for i, r in enumerate(rates["per_layer"]):
                layer_rows.append({"experiment": cell["experiment"], "method": cell["method"],
                                   "T": cell["T"], "seed": cell["seed"], "layer_index": i,
                                   "layer": names[i] if i < len(names) else f"layer {i}",
                                   "rate": 100 * r})
    return Collected(runs=pd.DataFrame(rows, columns=RUN_COLUMNS),
                     layers=pd.DataFrame(layer_rows, columns=LAYER_COLUMNS),
                     missing=missing, stale=stale, total=len(cells))
