"""Snakemake glue only: the config checked and expanded into a Grid (pipeline/grid.py, plain
Python with its own tests), report entries for the outputs, and the training rule's per-wildcards
lookups (arguments, resources). Config values reach the shell only through shlex.quote.
"""

import shlex
import sys

# the trainer's package (`import dsr`) and the workflow's library (`import pipeline`)
sys.path[:0] = [workflow.basedir, f"{workflow.basedir}/workflow/scripts"]
from pipeline.grid import (  # noqa: E402
    CONVERSION_SOURCES,
    MODEL,
    MODEL_PATTERN,
    RUN,
    RUN_PATTERN,
    RUN_VARIANT,
    VARIANT,
    ConfigError,
    Grid,
    check_config,
)

REPORT = f"{workflow.basedir}/workflow/report"
# One software stack for every rule (the locked .venv, or this file with --sdm conda).
CONDA_ENV = f"{workflow.basedir}/environment.yml"

wildcard_constraints:
    dataset="[a-z0-9_]+",
    arch="[a-z0-9_]+",
    method="[a-z0-9][a-z0-9-]*",
    T="[0-9]+",
    seed="[0-9]+",
    variant=VARIANT,
    stage="T1|L[0-9]+",


def table_files(grid: Grid) -> list:
    """Outputs of the tables rule; the CSVs are report entries."""
    outs = grid.outputs()
    # the verdicts come first in the report (its categories are listed in order of appearance)
    files = [report(outs["claims"]["csv"], caption=f"{REPORT}/claims.rst", category="Claims"),
             outs["claims"]["md"], outs["runs_csv"], outs["missing"]]
    for name, entry in outs["experiments"].items():
        for kind in ("table", "firing_rates"):
            if kind not in entry:
                continue
            caption = f"{REPORT}/{'table' if kind == 'table' else 'firing_rates_table'}.rst"
            csv = report(entry[kind]["csv"], caption=caption, category="Tables", subcategory=name)
            files += [entry[kind]["md"], entry[kind]["tex"], csv]
    return files


def figure_files(grid: Grid) -> list:
    """Outputs of the figures rule; the PNGs are report entries."""
    files = []
    for name, entry in grid.outputs()["experiments"].items():
        for kind, paths in entry["figures"].items():
            png = report(paths["png"], caption=f"{REPORT}/{kind}.rst", category="Figures",
                         subcategory=name)
            files += [png, paths["pdf"]]
    return files


def rendered(grid: Grid) -> list[str]:
    """Every table and figure of the configuration (plain paths, for target rules)."""
    return [str(f) for f in table_files(grid) + figure_files(grid)]


def firing_rate_tables(grid: Grid) -> list[str]:
    return [e["firing_rates"]["csv"] for e in grid.outputs()["experiments"].values()
            if "firing_rates" in e]


# ---- the training rule's arguments and resources (functions of wildcards) ------------------


def run_processes(wildcards) -> int:
    """Trainer processes of a job: one per GPU (DistributedDataParallel), at least one."""
    return max(1, GRID.resources[GRID.run(wildcards).key]["gpu"])


def trainer_command(wildcards) -> str:
    """`python -m dsr.run` with this Snakemake's interpreter; under torchrun on several GPUs."""
    python = shlex.quote(sys.executable)
    procs = run_processes(wildcards)
    if procs > 1:
        return f"{python} -m torch.distributed.run --standalone --nproc_per_node={procs} -m dsr.run"
    return f"{python} -m dsr.run"


def trainer_args(wildcards) -> str:
    """The CLI arguments of one run, each value shell-quoted."""
    return shlex.join(GRID.run(wildcards).args(GRID.cfg["dataset_plugins"]))


def source_model(wildcards) -> str:
    """The model.pt a conversion job converts."""
    source = GRID.run(wildcards).source
    if source is None:
        raise ConfigError(f"{RUN_PATTERN.format(**wildcards)} is not a conversion job")
    return f"{GRID.results}/{source}/model.pt"


def convert_gpu(wildcards) -> int:
    """A conversion job evaluates in one process: one GPU when the config gives its jobs any."""
    return min(1, GRID.resources[GRID.run(wildcards).key]["gpu"])


def run_resource(name: str):
    """Resource `name` of the run at these wildcards, as a rule resource function."""

    def lookup(wildcards) -> int:
        return GRID.resources[GRID.run(wildcards).key][name]

    return lookup


def run_threads(wildcards) -> int:
    return GRID.resources[GRID.run(wildcards).key]["threads"]


def run_runtime(wildcards, attempt: int) -> int:
    """Minutes; each retry (a preempted or timed-out job resumes its checkpoint) gets more."""
    return GRID.resources[GRID.run(wildcards).key]["runtime"] * attempt


def run_cpus_per_gpu(wildcards) -> int:
    res = GRID.resources[GRID.run(wildcards).key]
    return res.get("cpus_per_gpu", res["threads"])
