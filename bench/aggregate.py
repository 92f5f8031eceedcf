"""Workflow overhead: aggregating 1,000 cached metrics files, and `snakemake -n` of the paper grid.

    python -m bench.aggregate [--files 1000] [--no-dry-run]

Writes N synthetic, schema-valid metrics.json files (5 deep PreAct-ResNets x 8 methods x 5 T x
5 seeds for N = 1000, per-layer firing rates included) into a temporary folder, then times the
`tables` rule's core (pipeline.build.build_tables: read and check every file, summarise, judge
the claims, render Markdown/LaTeX/CSV; then write). Then times `snakemake -n --configfile
config/paper.yaml` (parse, validate, expand the grid, build the DAG; nothing is trained or read).
Targets: <= 10 s each.
The last line is `WORKFLOW aggregate_s=<x> files=<n> dry_run_s=<y> train_jobs=<j>`.
"""

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from dsr import REPO_ROOT
from dsr.config import PJ_PER_AC, PJ_PER_MAC
from dsr.harness.results import SCHEMA_VERSION, validate
from pipeline.build import build_tables, write_all
from pipeline.grid import CLAIM_KINDS

METHODS = ["dsr-if", "dsr-lif", "ann", "sg-bptt", "tet", "plif", "conversion", "qcfs"]
ARCHS = ["preact_resnet20", "preact_resnet32", "preact_resnet44", "preact_resnet56",
         "preact_resnet110"]
TIME_STEPS = [2, 5, 10, 15, 20]
LAYERS = 19


def synthetic_metrics(method: str, dataset: str, arch: str, T: int, seed: int, epochs: int,
                      rng: random.Random, val_fraction: float | None = None) -> dict:
    """A schema-valid metrics.json with plausible random numbers (no training involved); with
    `val_fraction`, a run that held out a validation split."""
    per_epoch = [min(1.0, 0.5 + 0.4 * (e + 1) / epochs + rng.uniform(-0.02, 0.02))
                 for e in range(epochs)]
    per_layer = [rng.uniform(0.01, 0.2) for _ in range(LAYERS)]
    ac, mac = rng.uniform(1e7, 1e9), 1.8e6
    train = {"epochs": epochs, "batch_size": 128, "lr": 0.1, "data_root": None}
    accuracy = {"best": max(per_epoch), "final": per_epoch[-1], "per_epoch": per_epoch,
                "best_epoch": per_epoch.index(max(per_epoch)) + 1, "validation_selected": None}
    if val_fraction:
        val = [min(1.0, a + rng.uniform(-0.02, 0.02)) for a in per_epoch]
        chosen = val.index(max(val))
        accuracy["validation"] = {"fraction": val_fraction, "per_epoch": val,
                                  "best": val[chosen], "best_epoch": chosen + 1}
        accuracy["validation_selected"] = per_epoch[chosen]
    return {
        "schema_version": SCHEMA_VERSION, "method": method, "category": "synthetic",
        "dataset": dataset, "arch": arch, "neuron": "IF", "time_steps": T, "seed": seed,
        "mode": "exact", "epochs": epochs,
        "data": {"name": dataset, "num_classes": 10, "train_size": 50000, "test_size": 10000,
                 "split": None, "source": "synthetic"},
        "accuracy": accuracy,
        "train_loss": [2.0 / (e + 1) for e in range(epochs)],
        "firing_rate": {"per_layer": per_layer, "layer_names": [f"n{i}" for i in range(LAYERS)],
                        "total": sum(per_layer) / LAYERS, "per_epoch_total": [0.1] * epochs},
        "synops": {"per_layer": [], "total_ac": ac, "total_mac": mac,
                   "energy_pj": PJ_PER_AC * ac + PJ_PER_MAC * mac, "pj_per_ac": PJ_PER_AC,
                   "pj_per_mac": PJ_PER_MAC},
        "latency": {"time_steps": T, "ms_per_sample": None, "device": "cpu"},
        "cost": {"seconds_per_epoch": [rng.uniform(10, 60) * T] * epochs,
                 "peak_memory_bytes": int(rng.uniform(1e9, 4e9)),
                 "peak_memory_kind": "cpu_peak_rss",
                 "seconds_per_step": [rng.uniform(0.05, 0.5) * T] * epochs,
                 "training_memory": {"kind": "cpu_rss_growth",
                                     "peak_bytes": int(rng.uniform(1e8, 1e9) * T),
                                     "reserved_bytes": None, "per_epoch_bytes": []}},
        "config": {"method": method, "train": train, "params": {}},
        "config_hash": f"{rng.getrandbits(64):016x}",
        "provenance": {"git_commit": None, "git_dirty": None, "packages": {}, "device": "cpu",
                       "start_time": "2026-01-01T00:00:00+00:00",
                       "end_time": "2026-01-01T01:00:00+00:00"},
    }


def synthetic_grid(results: Path, files: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Write `files` metrics files under `results`; the cells and experiment that cover them."""
    seeds = max(1, -(-files // (len(ARCHS) * len(METHODS) * len(TIME_STEPS))))
    rng, cells = random.Random(seed), []
    for arch in ARCHS:
        for method in METHODS:
            for T in TIME_STEPS:
                for s in range(seeds):
                    if len(cells) == files:
                        break
                    path = results / f"runs/cifar10/{arch}/{method}/T{T}/seed{s}/metrics.json"
                    metrics = synthetic_metrics(method, "cifar10", arch, T, s, 5, rng)
                    validate(metrics)  # schema-valid, as the CLI writes
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
                    cells.append({"experiment": "bench", "dataset": "cifar10", "arch": arch,
                                  "method": method, "T": T, "seed": s, "path": str(path),
                                  "hash": metrics["config_hash"], "epochs": 5, "mode": None,
                                  "set": {"lr": "0.1"}})
    experiment = {"name": "bench", "title": "Synthetic CIFAR-10 grid", "dataset": "cifar10",
                  "archs": ARCHS, "methods": METHODS, "firing_rates": ["dsr-if", "dsr-lif"]}
    return cells, [experiment]


def outputs_for(tables: Path) -> dict:
    stems = {"table": tables / "bench", "cost": tables / "bench_cost",
             "firing_rates": tables / "bench_firing_rates"}
    entry = {k: {ext: f"{stem}.{ext}" for ext in ("md", "tex", "csv")} for k, stem in
             stems.items()}
    return {"experiments": {"bench": entry}, "runs_csv": str(tables / "runs.csv"),
            "missing": str(tables / "MISSING.md"),
            "claims": {ext: str(tables / f"claims.{ext}") for ext in ("md", "csv")}}


def time_aggregation(files: int) -> float:
    """Seconds for the tables rule's core on `files` synthetic metrics files."""
    with tempfile.TemporaryDirectory() as tmp:
        cells, experiments = synthetic_grid(Path(tmp) / "results", files)
        # the claims judged as on the paper grid: the synthetic experiment stands for cifar10
        claims = {"file": str(REPO_ROOT / "paper_tables" / "claims.yaml"),
                  "test": list(CLAIM_KINDS), "not_comparable": "",
                  "experiments": {"cifar10": "bench"}, "archs": {}}
        params = SimpleNamespace(name="bench", cells=cells, experiments=experiments,
                                 outputs=outputs_for(Path(tmp) / "tables"), claims=claims)
        start = time.perf_counter()
        tables = build_tables(params, REPO_ROOT / "paper_tables" / "published.csv", strict=True)
        write_all(tables.files)
        seconds = time.perf_counter() - start
        assert len(tables.collected.runs) == files, "every synthetic file must be aggregated"
    return seconds


def time_dry_run() -> tuple[float, int]:
    """Seconds for `snakemake -n` of config/paper.yaml, and the training jobs it plans."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(Path(sys.executable).parent / "snakemake"), "-n", "--nolock", "--quiet",
               "rules", "--configfile", "config/paper.yaml", "--config",
               f"results_dir={tmp}/results", f"tables_dir={tmp}/tables"]
        start = time.perf_counter()
        out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
    # the first `Job stats` table (a dry run prints it again at the end)
    stats = (out.stdout + out.stderr).split("Job stats:")[1].split("total")[0]
    jobs = re.findall(r"^train(?:_model)?\s+(\d+)$", stats, re.M)
    return seconds, sum(map(int, jobs)) if jobs else -1


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.aggregate",
                                description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=1000, help="synthetic metrics files (1000)")
    p.add_argument("--no-dry-run", action="store_true", help="skip timing snakemake -n")
    args = p.parse_args()
    agg = time_aggregation(args.files)
    print(f"aggregate {args.files} metrics files into tables: {agg:.2f} s (target <= 10 s)")
    line = f"WORKFLOW aggregate_s={agg:.2f} files={args.files}"
    if not args.no_dry_run:
        dry, jobs = time_dry_run()
        print(f"snakemake -n of config/paper.yaml ({jobs} training jobs): {dry:.2f} s "
              "(target <= 10 s)")
        line += f" dry_run_s={dry:.2f} train_jobs={jobs}"
    print(line)


if __name__ == "__main__":
    main()
