"""A researcher's whole journey, as a test: an out-of-tree method in a folder of their own, their
own configuration beside a slice of the default grid in the same results folder, then a changed
setting, a deleted result and a corrupt one. Every finished run survives (same bytes, same
mtime), every changed or lost run is trained again, and the tables say what is cached.

Real training (digits, width 4, 1-2 epochs, T = 2): about a dozen short jobs.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import yaml

from dsr import REPO_ROOT as ROOT
from tests.experiments import grid_of, planned, planned_run

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

PLUGIN = '''"""A triangle-surrogate BPTT method: an out-of-tree plug-in."""

from baselines.sg_bptt import SGBPTT


class TriSG(SGBPTT):
    key = "tri-sg"
'''


def snakemake(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([SNAKEMAKE, *args, "--cores", "2", "--nolock"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    return out


def write(path: Path, cfg: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def experiment(methods: list[str], epochs: int, **extra) -> dict:
    return {"name": "digits", "dataset": "digits", "archs": ["preact_resnet8"],
            "methods": methods, "time_steps": [2], "seeds": [0], "epochs": epochs,
            "set": {"base_width": 4}, "firing_rates": [], **extra}


def cached(results: Path) -> dict[Path, tuple[bytes, int]]:
    """Every finished result: bytes and mtime."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in results.rglob("metrics.json")}


def test_own_config_and_plugin_beside_the_default_grid(tmp_path: Path) -> None:
    results = tmp_path / "results"
    base = {"results_dir": str(results), "tables_dir": str(tmp_path / "tables"),
            "published": "paper_tables/published.csv",
            "claims": {"test": ["relative"], "not_comparable": "a tiny budget"}}
    # a slice of the embedded default grid: DSR-IF, the ANN and its conversion, 1 epoch
    default = write(tmp_path / "default.yaml", {**base, "name": "default", "experiments": [
        experiment(["dsr-if", "ann", "conversion"], 1, latency_sweep=2,
                   per_method={"ann": {"time_steps": [1]}})]})
    # the researcher's own folder: a plug-in and a config that names it, 2 epochs
    mine_dir = tmp_path / "mine"
    mine_dir.mkdir()
    (mine_dir / "tri_sg.py").write_text(PLUGIN)
    mine_cfg = {**base, "name": "mine", "plugins": {"tri-sg": "tri_sg:TriSG"},
                "plugin_paths": ["."], "experiments": [experiment(["dsr-if", "tri-sg"], 2)]}
    mine = write(mine_dir / "mine.yaml", mine_cfg)

    out = snakemake("reproduce_table", "--configfile", str(default))
    assert out.returncode == 0, out.stderr[-3000:]
    first = cached(results)
    assert len(first) == 3  # dsr-if, the ANN, the conversion

    out = snakemake("reproduce_table", "--configfile", str(mine))
    assert out.returncode == 0, out.stderr[-3000:]
    after_mine = cached(results)
    assert all(after_mine[p] == v for p, v in first.items())  # the default's runs untouched
    assert len(after_mine) == 5  # its DSR-IF (2 epochs) beside the default's (1 epoch)
    lines = (tmp_path / "tables/mine/digits.md").read_text()
    assert "| tri-sg |" in lines  # the plug-in's row (its key: no display name declared)

    # the plug-in's source is recorded with every run that used it
    grid = grid_of(mine)
    tri = json.loads((results / planned_run(grid, "tri-sg", 2, 0).key / "metrics.json")
                     .read_text())
    (plugin,) = tri["provenance"]["plugins"]
    assert plugin["target"] == "tri_sg:TriSG" and plugin["file"] == str(mine_dir / "tri_sg.py")
    assert plugin["sha256"] == hashlib.sha256((mine_dir / "tri_sg.py").read_bytes()).hexdigest()

    again = snakemake("-n", "reproduce_table", "--configfile", str(default))
    assert "Nothing to be done" in again.stdout, again.stdout[-2000:]

    # a changed setting: new runs beside the old ones, nothing deleted
    mine_cfg["experiments"][0]["set"]["lr"] = 0.05
    write(mine, mine_cfg)
    out = snakemake("reproduce_table", "--configfile", str(mine))
    assert out.returncode == 0, out.stderr[-3000:]
    changed = cached(results)
    assert all(changed[p] == v for p, v in after_mine.items()) and len(changed) == 7

    # a deleted result of the default grid is trained again; its tables follow
    lost = results / planned_run(grid_of(default), "dsr-if", 2, 0).key / "metrics.json"
    lost.unlink()
    jobs = planned(snakemake("-n", "reproduce_table", "--configfile", str(default)))
    assert (jobs["train"], jobs["tables"]) == (1, 1) and "convert" not in jobs
    out = snakemake("reproduce_table", "--configfile", str(default))
    assert out.returncode == 0, out.stderr[-3000:]
    assert lost.exists()
    assert "All 3 runs of configuration `default` are cached and current." in (
        tmp_path / "tables/default/MISSING.md").read_text()

    # a corrupt result of the researcher's grid is moved aside (kept) and trained again
    bad = results / planned_run(grid_of(mine), "tri-sg", 2, 0).key / "metrics.json"
    bad.write_text('{"schema_version": 1, "accuracy": ')
    out = snakemake("reproduce_table", "--configfile", str(mine))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"moved {bad} aside" in out.stderr
    assert json.loads(bad.read_text())["method"] == "tri-sg"
    assert len(list(bad.parent.glob("metrics.corrupt-*.json"))) == 1
    final = cached(results)
    survivors = {p: v for p, v in changed.items() if p not in (lost, bad)}
    assert all(final[p] == v for p, v in survivors.items())

    # runs that no configuration asks for any more are listed, then removed on request
    prune = [sys.executable, "-m", "pipeline.runs", "prune", str(default), str(mine)]
    listed = subprocess.run(prune, cwd=tmp_path, capture_output=True, text=True)  # installed
    assert listed.returncode == 0, listed.stderr
    stale = [ln.split(" ", 1)[1] for ln in listed.stdout.splitlines()
             if ln.startswith("unreferenced ")]
    assert len(stale) == 2 and all(Path(s).exists() for s in stale)  # the lr 0.1 runs of mine
    assert "add --delete to remove them" in listed.stdout
    removed = subprocess.run([*prune, "--delete"], cwd=tmp_path, capture_output=True, text=True)
    assert removed.returncode == 0 and not any(Path(s).exists() for s in stale)
    assert all(p.exists() for p in cached(results)) and len(cached(results)) == 5
