"""Snakemake glue only: the configuration loaded (pipeline/configs.py: config/config.yaml, or
exactly the --configfile files), checked and expanded into a Grid (pipeline/grid.py, plain
Python with its own tests), cached results audited, report entries for the outputs, and the
training rules' per-wildcards lookups (arguments, resources). Config values reach the shell only
through shlex.quote.
"""

import re
import shlex
import sys

# the trainer's package (dsr) and the workflow's library (pipeline), installed in .venv
from dsr.harness.results import quarantine
from pipeline.configs import load_config, placeholder_resources
from pipeline.grid import ConfigError, Grid, check_config
from pipeline.runs import unusable

REPORT = f"{workflow.basedir}/workflow/report"
# One software stack for every rule (the locked .venv, or this file with --sdm conda).
CONDA_ENV = f"{workflow.basedir}/environment.yml"



def plan() -> Grid:
    """The configuration and its grid; a ConfigError ends the workflow with its one line
    (`error: ...`, exit 1) before any job, not with a traceback of this file."""
    try:
        loaded = load_config(workflow.config_settings.configfiles,
                             dict(workflow.config_settings.config), workflow.basedir)
        config.clear()  # Snakemake's own merge of the same files (with any `base:`) is replaced
        config.update(loaded)
        grid = Grid(check_config(config, workflow.basedir))
        bad = placeholder_resources(workflow.resource_settings.default_resources)
        if bad:
            raise ConfigError(bad)
        return grid
    except ConfigError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(1)


GRID = plan()


def audit_cache(grid: Grid) -> None:
    """Move aside (never delete) every cached metrics.json of the grid that cannot be used, so
    its run is planned again: corrupt, not of the schema, non-finite, or of another run. This
    happens whenever the grid is planned, dry runs included (then the dry run shows the job
    that retrains it); jobs on cluster nodes leave it to the main process."""
    if workflow.remote_exec:
        return
    for path, reason in unusable(grid):
        print(f"moved {path} aside to {quarantine(path).name} ({reason}); its run trains again",
              file=sys.stderr)


audit_cache(GRID)


def keys_regex(keys: list[str]) -> str:
    """A wildcard constraint matching exactly these run folders (without runs/)."""
    return "|".join(re.escape(k.removeprefix("runs/")) for k in keys) or "(?!)"


wildcard_constraints:
    run="[a-z0-9_]+/[a-z0-9_]+/[a-z0-9][a-z0-9-]*/T[0-9]+/seed[0-9]+/[0-9a-f]{16}",


def table_files(grid: Grid) -> list:
    """Outputs of the tables rule; the CSVs are report entries. update(): a failing tables job
    restores the previous tables instead of leaving none."""
    outs = grid.outputs()
    # the verdicts come first in the report (its categories are listed in order of appearance)
    files = [report(outs["claims"]["csv"], caption=f"{REPORT}/claims.rst", category="Claims"),
             outs["claims"]["md"], outs["runs_csv"], outs["missing"]]
    captions = {"table": "table", "cost": "cost_table", "firing_rates": "firing_rates_table",
                "tuning": "tuning_table"}
    for name, entry in outs["experiments"].items():
        for kind, caption in captions.items():
            if kind not in entry:
                continue
            csv = report(entry[kind]["csv"], caption=f"{REPORT}/{caption}.rst",
                         category="Tables", subcategory=name)
            files += [entry[kind]["md"], entry[kind]["tex"], csv]
    return [update(f) for f in files]


def figure_files(grid: Grid) -> list:
    """Outputs of the figures rule; the PNGs are report entries."""
    files = []
    for name, entry in grid.outputs()["experiments"].items():
        for kind, paths in entry["figures"].items():
            png = report(paths["png"], caption=f"{REPORT}/{kind}.rst", category="Figures",
                         subcategory=name)
            files += [png, paths["pdf"]]
    return [update(f) for f in files]


def rendered(grid: Grid) -> list[str]:
    """Every table and figure of the configuration (plain paths, for target rules)."""
    return [str(f) for f in table_files(grid) + figure_files(grid)]


def firing_rate_tables(grid: Grid) -> list[str]:
    return [e["firing_rates"]["csv"] for e in grid.outputs()["experiments"].values()
            if "firing_rates" in e]


# ---- the training rules' arguments and resources (functions of wildcards) -----------------


def job(wildcards):
    return GRID.run(f"runs/{wildcards.run}")


def run_processes(wildcards) -> int:
    """Trainer processes of a job: one per GPU (DistributedDataParallel), at least one."""
    return max(1, GRID.resources[job(wildcards).key]["gpu"])


def trainer_command(wildcards) -> str:
    """`python -m dsr.run` with this Snakemake's interpreter; under torchrun on several GPUs."""
    python = shlex.quote(sys.executable)
    procs = run_processes(wildcards)
    if procs > 1:
        return f"{python} -m torch.distributed.run --standalone --nproc_per_node={procs} -m dsr.run"
    return f"{python} -m dsr.run"


def trainer_args(wildcards) -> str:
    """The CLI arguments of one run, each value shell-quoted."""
    return shlex.join(job(wildcards).args(GRID.cfg["dataset_plugins"]))


def source_model(wildcards) -> str:
    """The model.pt a conversion job converts."""
    source = job(wildcards).source
    if source is None:
        raise ConfigError(f"runs/{wildcards.run} is not a conversion job")
    return f"{GRID.results}/{source}/model.pt"


def convert_gpu(wildcards) -> int:
    """A conversion job evaluates in one process: one GPU when the config gives its jobs any."""
    return min(1, GRID.resources[job(wildcards).key]["gpu"])


def run_resource(name: str):
    """Resource `name` of the run at these wildcards, as a rule resource function."""

    def lookup(wildcards) -> int:
        return GRID.resources[job(wildcards).key][name]

    return lookup


def run_threads(wildcards) -> int:
    return GRID.resources[job(wildcards).key]["threads"]


def run_runtime(wildcards, attempt: int) -> int:
    """Minutes; each retry (a preempted or timed-out job resumes its checkpoint) gets more."""
    return GRID.resources[job(wildcards).key]["runtime"] * attempt


def run_cpus_per_gpu(wildcards) -> int:
    res = GRID.resources[job(wildcards).key]
    return res.get("cpus_per_gpu", res["threads"])
