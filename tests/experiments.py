"""The small digits experiment that the grid and workflow tests vary, and the planned grid of a
config file with synthetic results written into it (not a test module)."""

import json
import random
import re
import subprocess
from pathlib import Path

from bench.aggregate import synthetic_metrics
from dsr import REPO_ROOT
from pipeline.configs import load_config
from pipeline.grid import Grid, Run, check_config


def experiment(**changes) -> dict:
    """One config experiment: DSR-IF and DSR-LIF, T = 2 and 4, two seeds, 5 epochs; `changes`
    replace its keys (firing_rates defaults to its DSR methods)."""
    exp = {"name": "digits", "title": "Test grid", "dataset": "digits",
           "archs": ["preact_resnet8"], "methods": ["dsr-if", "dsr-lif"], "time_steps": [2, 4],
           "seeds": [0, 1], "epochs": 5}
    exp.update(changes)
    exp.setdefault("firing_rates", [m for m in exp["methods"] if m.startswith("dsr-")])
    return exp


def grid_of(config_file: Path) -> Grid:
    """The grid a config file plans, as the workflow plans it."""
    return Grid(check_config(load_config([config_file], {}, REPO_ROOT), REPO_ROOT))


def planned_run(grid: Grid, method: str, T: int, seed: int, variant: str | None = None,
                arch: str = "preact_resnet8") -> Run:
    """The one run of the grid with these coordinates (a swept run by its `variant`)."""
    (run,) = [r for r in grid.runs.values()
              if (r.method, r.T, r.seed, r.variant, r.arch) == (method, T, seed, variant, arch)]
    return run


def run_folder(grid: Grid, method: str, T: int, seed: int, variant: str | None = None) -> Path:
    return Path(grid.results, planned_run(grid, method, T, seed, variant).key)


def fake_runs(config_file: Path, seeds_by_cell: dict[tuple, list[int]], epochs: int = 5,
              dataset: str = "digits") -> Grid:
    """Write synthetic metrics files, each with its planned identity, for (method, T[, variant])
    -> seeds into the config's results folder; the grid they belong to."""
    grid, rng = grid_of(config_file), random.Random(0)
    for (method, T, *variant), seeds in seeds_by_cell.items():
        for seed in seeds:
            run = planned_run(grid, method, T, seed, *variant)
            m = synthetic_metrics(method, dataset, run.arch, T, seed, epochs, rng)
            m["config_hash"] = run.hash
            folder = Path(grid.results, run.key)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "metrics.json").write_text(json.dumps(m))
    return grid


def planned(out: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts of a dry run's `Job stats` table."""
    stats = out.stdout.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}
