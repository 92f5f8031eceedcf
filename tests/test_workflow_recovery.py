"""An interrupted workflow recovers: kill Snakemake mid-grid, unlock, rerun; no finished run lost.

metrics.json is written atomically at a run's end, so a killed job leaves only its checkpoint;
the rerun (`--rerun-incomplete` is in profiles/default) trains what is missing, resumes the
killed run from its checkpoint, and leaves the finished run's file untouched.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from dsr import REPO_ROOT as REPO
from tests.experiments import grid_of, planned_run

SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def grid(tmp_path: Path) -> Path:
    config = {
        "name": "recovery", "results_dir": str(tmp_path / "results"),
        "tables_dir": str(tmp_path / "tables"), "published": "paper_tables/published.csv",
        "resources": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0},
        "experiments": [{
            "name": "digits", "dataset": "digits", "archs": ["preact_resnet8"],
            "methods": ["dsr-if", "dsr-lif"], "time_steps": [2], "seeds": [0], "epochs": 3,
            "set": {"base_width": 4},
        }],
    }
    path = tmp_path / "recovery.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_dir(tmp_path: Path, method: str) -> Path:
    """The run's folder, named by its identity as the workflow plans it."""
    return Path(grid_of(tmp_path / "recovery.yaml").results,
                planned_run(grid_of(tmp_path / "recovery.yaml"), method, 2, 0).key)


def test_killed_workflow_resumes_and_keeps_finished_runs(tmp_path: Path) -> None:
    config = grid(tmp_path)
    cmd = [str(SNAKEMAKE), "reproduce_table", "--cores", "1", "--configfile", str(config)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    runs = [run_dir(tmp_path, m) for m in ("dsr-if", "dsr-lif")]
    try:
        deadline = time.monotonic() + 240
        # one run finished and the other one past its first checkpoint, not finished
        while not (sum((r / "metrics.json").exists() for r in runs) == 1
                   and any((r / "checkpoint.pt").exists() and not (r / "metrics.json").exists()
                           for r in runs)):
            assert proc.poll() is None, "the workflow ended before it could be interrupted"
            assert time.monotonic() < deadline, "the workflow did not reach the kill point"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = next(r for r in runs if (r / "metrics.json").exists())
    killed = next(r for r in runs if r is not done)
    before = ((done / "metrics.json").read_bytes(), (done / "metrics.json").stat().st_mtime_ns)

    unlock = subprocess.run([*cmd, "--unlock"], cwd=REPO, capture_output=True, text=True)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    rerun = subprocess.run([*cmd, "--rerun-incomplete"], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    after = ((done / "metrics.json").read_bytes(), (done / "metrics.json").stat().st_mtime_ns)
    assert after == before  # the finished run was neither retrained nor rewritten
    assert (killed / "metrics.json").exists()
    log = tmp_path / f"results/logs/train/{killed.relative_to(tmp_path / 'results/runs')}.log"
    assert "resuming" in log.read_text()
    assert (tmp_path / "tables/recovery/digits.md").exists()
