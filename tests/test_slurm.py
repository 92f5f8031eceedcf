"""Snakemake through a real single-node Slurm cluster (tests/slurm/cluster.sh, profiles/slurm-ci).

A slice of the embedded grid runs with `--profile profiles/slurm-ci`: every training job must pass
through sbatch and end COMPLETED in sacct, and the table must be written; a failing job must be
submitted as often as the profile's `retries` allows and fail the run; a job that dies after a
checkpoint resumes on retry; a GPU request is refused at submission on this GPU-less node.
Needs root (or passwordless sudo) and apt; `make test` runs it (the `slurm` marker keeps it out
of a bare `pytest`).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from dsr import REPO_ROOT as REPO
from tests.experiments import grid_of, planned_run

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm-ci"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
RUN_TIMEOUT_S = 300  # Snakemake can hang on a broken status check, so it always runs under timeout


@dataclass(frozen=True)
class Workflow:
    """A workflow run: where Snakemake starts, its arguments, the files it must produce and the
    rules that must appear in sacct."""

    workdir: Path
    args: tuple[str, ...]
    outputs: tuple[Path, ...]
    rules: frozenset[str]


GPU_SNAKEFILE = """
rule gpu:
    output: "gpu.txt"
    resources: gpu=1
    shell: "nvidia-smi > {output}"
"""


def grid_config(tmp_path: Path, methods: list[str], overrides: dict | None = None,
                plugins: dict | None = None) -> Path:
    """A small slice of the embedded default grid (digits, T = 2, one seed, one epoch, width 4)
    whose results and tables land in tmp_path (`plugins`: out-of-tree methods in tmp_path)."""
    experiment = {
        "name": "digits", "dataset": "digits", "archs": ["preact_resnet8"], "methods": methods,
        "time_steps": [2], "seeds": [0], "epochs": 1,
        "set": {"base_width": 4, **(overrides or {})},
        "per_method": {"ann": {"time_steps": [1]}} if "ann" in methods else {},
    }
    config = {
        "name": "slurmci", "results_dir": str(tmp_path / "results"),
        "tables_dir": str(tmp_path / "tables"), "published": "paper_tables/published.csv",
        "resources": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0},
        "plugins": plugins or {}, "plugin_paths": ["."], "experiments": [experiment],
    }
    path = tmp_path / "slurmci.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_path(tmp_path: Path, method: str, T: int) -> Path:
    """The run's metrics.json: its folder is named by the run's identity, as planned."""
    run = planned_run(grid_of(tmp_path / "slurmci.yaml"), method, T, 0)
    return tmp_path / "results" / run.key / "metrics.json"


def run_log(tmp_path: Path, method: str, T: int) -> Path:
    folder = run_path(tmp_path, method, T).parent.relative_to(tmp_path / "results/runs")
    return tmp_path / f"results/logs/train/{folder}.log"


# an out-of-tree method that plans (imports, resolves) and fails in every job
FAILING = """from baselines.sg_bptt import SGBPTT


class Broken(SGBPTT):
    key = "broken"

    def train_outputs(self, model, x):
        raise RuntimeError("a deliberate failure of every attempt")
"""

# an out-of-tree method whose job dies in its second epoch's first step, after the first
# epoch's checkpoint: a process that has evaluated (end of epoch 1) and then trains again; a
# retry resumes at epoch 2, trains before it evaluates, and completes
DIES_AFTER_EPOCH_1 = """from dsr.method import DSRIF


class DiesAfterEpoch1(DSRIF):
    key = "dies"
    evaluated = False

    def logits(self, model, x):
        self.evaluated = True
        return super().logits(model, x)

    def train_step(self, model, x, y):
        if self.evaluated:
            raise RuntimeError("a deliberate failure after the first epoch's checkpoint")
        return super().train_step(model, x, y)
"""


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    """reproduce_table of the embedded grid's slice: two training jobs through Slurm (the
    tables and figures rules are local), then the table."""
    config = grid_config(tmp_path, ["dsr-if", "ann"])
    return Workflow(
        workdir=REPO,
        args=("reproduce_table", "--configfile", str(config)),  # --configfile takes several
        outputs=(run_path(tmp_path, "dsr-if", 2), run_path(tmp_path, "ann", 1),
                 tmp_path / "tables/slurmci/digits.md"),
        rules=frozenset({"train"}),  # no conversion here, so the ann run saves no model.pt
    )


def _as_root() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"]).returncode == 0:
        return ["sudo", "-n"]
    pytest.skip("bringing up Slurm needs root or passwordless sudo")


def _cluster(root: list[str], action: str, timeout: int) -> None:
    done = subprocess.run(
        [*root, str(CLUSTER), action], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"cluster.sh {action} failed:\n{done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A running cluster for the module; torn down even when bring-up or a test fails."""
    root = _as_root()
    try:
        _cluster(root, "up", timeout=600)
        yield
    finally:
        _cluster(root, "down", timeout=180)


def _snakemake(workdir: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Runs Snakemake with the CI profile under a fresh job-name prefix; returns the prefix."""
    prefix = f"dsrci{uuid.uuid4().hex[:8]}"
    cmd = ["timeout", "-k", "10", str(RUN_TIMEOUT_S), str(SNAKEMAKE), "--profile", str(PROFILE)]
    cmd += ["--slurm-jobname-prefix", prefix, *args]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    assert done.returncode != 124, f"Snakemake timed out after {RUN_TIMEOUT_S}s:\n{done.stderr}"
    return done, prefix


def _submitted(done: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"submitted with SLURM jobid (\d+)", done.stdout + done.stderr))


def _sacct_jobs(prefix: str) -> dict[str, tuple[str, str]]:
    """Slurm job id -> (rule, state) for every job whose name carries this run's prefix, read
    from accounting once no job is pending or running any more."""
    fields = "JobID,JobName,State,Comment"
    for _ in range(30):
        out = subprocess.run(
            ["sacct", "-a", "-X", "-P", "-n", "-S", "now-1hours", "-o", fields],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [line.split("|", 3) for line in out.splitlines() if line]
        jobs = {
            job_id: (re.sub(r"^rule_|_wildcards_.*$", "", comment), state)
            for job_id, name, state, comment in rows
            if name.startswith(prefix + "_")
        }
        if not any(state in ("PENDING", "RUNNING") for _, state in jobs.values()):
            return jobs
        time.sleep(1)
    raise AssertionError(f"jobs of {prefix} still active in sacct: {jobs}")


def test_every_job_runs_through_slurm(cluster: None, workflow: Workflow) -> None:
    done, prefix = _snakemake(workflow.workdir, *workflow.args)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = _sacct_jobs(prefix)
    assert jobs, f"no job named {prefix}_* in sacct"
    assert set(jobs) == _submitted(done)
    assert {rule for rule, _ in jobs.values()} == workflow.rules
    assert {state for _, state in jobs.values()} == {"COMPLETED"}
    for output in workflow.outputs:
        assert output.stat().st_size > 0, output


def test_failing_job_is_retried_then_reported(cluster: None, tmp_path: Path) -> None:
    """A method that raises in every job (it plans: a bad --set would stop the planner) fails
    every attempt."""
    retries = yaml.safe_load((PROFILE / "config.v8+.yaml").read_text())["retries"]
    (tmp_path / "broken_method.py").write_text(FAILING)
    config = grid_config(tmp_path, ["broken"], plugins={"broken": "broken_method:Broken"})
    done, prefix = _snakemake(REPO, "reproduce_table", "--configfile", str(config))
    assert done.returncode != 0
    jobs = _sacct_jobs(prefix)
    assert len(jobs) == retries + 1
    assert set(jobs.values()) == {("train", "FAILED")}
    assert not run_path(tmp_path, "broken", 2).exists()
    assert "a deliberate failure of every attempt" in run_log(tmp_path, "broken", 2).read_text()


def test_retried_job_resumes_from_its_checkpoint(cluster: None, tmp_path: Path) -> None:
    """A job that dies after its epoch checkpoint is retried by the profile and the retry
    resumes from that checkpoint instead of training again."""
    (tmp_path / "dies_method.py").write_text(DIES_AFTER_EPOCH_1)
    config = grid_config(tmp_path, ["dies"], plugins={"dies": "dies_method:DiesAfterEpoch1"})
    cfg = yaml.safe_load(config.read_text())
    cfg["experiments"][0]["epochs"] = 2
    config.write_text(yaml.safe_dump(cfg))
    done, prefix = _snakemake(REPO, "reproduce_table", "--configfile", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    states = sorted(state for _, state in _sacct_jobs(prefix).values())
    assert states == ["COMPLETED", "FAILED"]
    metrics = json.loads(run_path(tmp_path, "dies", 2).read_text())
    assert len(metrics["accuracy"]["per_epoch"]) == 2
    log = run_log(tmp_path, "dies", 2).read_text()  # the retry's (a retry rewrites the log)
    assert re.search(r"resuming .* at epoch 2, step 0", log), log


def test_gpu_request_is_refused_at_submission(cluster: None, tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(GPU_SNAKEFILE)
    done, prefix = _snakemake(tmp_path)
    assert done.returncode != 0
    assert "Invalid generic resource" in done.stdout + done.stderr
    assert _sacct_jobs(prefix) == {}


def test_stop_signal_checkpoints_and_the_retry_resumes_mid_run(cluster: None,
                                                               tmp_path: Path) -> None:
    """What Slurm does before a time limit (the slurm profile's --signal=TERM@300) or when it
    preempts: SIGTERM to the job's steps. The trainer checkpoints the step it is on and exits
    75, Snakemake waits for it and reports the job failed, the retry resumes from that step (not
    from scratch) and the run completes."""
    config = grid_config(tmp_path, ["dsr-if"])
    cfg = yaml.safe_load(config.read_text())
    cfg["experiments"][0]["epochs"] = 30  # long enough to be signalled while it trains
    config.write_text(yaml.safe_dump(cfg))
    prefix = f"dsrci{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        ["timeout", "-k", "10", str(RUN_TIMEOUT_S), str(SNAKEMAKE), "--profile", str(PROFILE),
         "--slurm-jobname-prefix", prefix, "reproduce_table", "--configfile", str(config)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = run_log(tmp_path, "dsr-if", 2)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not (log.exists() and "epoch 3/30" in log.read_text()):
            assert proc.poll() is None, "the workflow ended before the job was signalled"
            assert time.monotonic() < deadline, "the job never reached epoch 3"
            time.sleep(0.2)
        names = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True,
                               check=True).stdout.split("\n")
        (job_id,) = [ln.split()[0] for ln in names if f" {prefix}_" in ln]
        subprocess.run(["scancel", "--signal=TERM", job_id], check=True)  # the job's steps
        stdout, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout[-3000:]
    states = sorted(state for _, state in _sacct_jobs(prefix).values())
    assert states == ["COMPLETED", "FAILED"]  # the signalled attempt, then its retry
    resumed = re.search(r"resuming .* at epoch (\d+), step (\d+)", log.read_text())
    assert resumed and int(resumed[1]) >= 3, log.read_text()  # from its checkpoint, not 1
    metrics = json.loads(run_path(tmp_path, "dsr-if", 2).read_text())
    assert len(metrics["accuracy"]["per_epoch"]) == 30
