"""The Snakemake workflow: grid expansion, config errors, lint, the tables and figures it writes.

Workflow runs go through the `snakemake` CLI from the repository root with --nolock and with
results_dir/tables_dir in tmp_path, so nothing in the repository's results/ or paper_tables/ is
touched. Cached-results tests use synthetic, schema-valid metrics files (bench/aggregate.py) and
train nothing; one test trains a single one-epoch digits run end to end.
"""

import itertools
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.aggregate import synthetic_metrics
from dsr import REPO_ROOT as ROOT
from dsr import registry
from dsr.harness.record import RunRecord
from dsr.harness.results import ResultError
from pipeline import collect, names, render, text
from pipeline import published as pub
from tests.experiments import (
    experiment,
    fake_runs,
    grid_of,
    planned,
    planned_run,
    run_folder,
)

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

PAPER_TRAINING_JOBS = 312  # stated in config/paper.yaml
PAPER_CONVERT_JOBS = 44
# 5 methods x 3 T x 3 seeds + Dspike, SLTT, OTTT x 2 T x 2 seeds + (ANN, QCFS's ANN) x 2 seeds
DEFAULT_TRAINING_JOBS, DEFAULT_CONVERT_JOBS = 61, 4
CONVERSION = {"conversion": "ann", "qcfs": "qcfs"}  # method -> whose model it converts
DEFAULT_SWEEP_JOBS = 8  # DSR-IF at T = 4: 4 initial thresholds x 2 seeds
DEFAULT_TUNED_JOBS = 30  # the tuned ruleset at T = 4: 5 methods x 2 candidates x 3 seeds


def snakemake(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, *args, "--nolock"], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def write_config(tmp_path: Path, experiments: list[dict], name: str = "t") -> Path:
    cfg = {"name": name, "results_dir": str(tmp_path / "results"),
           "tables_dir": str(tmp_path / "tables"), "published": "paper_tables/published.csv",
           "experiments": experiments}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def grid_size(cfg: dict) -> tuple[int, int]:
    """(training jobs, conversion jobs) a config asks for, counted independently of common.smk:
    a conversion method adds one job per (arch, seed) and needs its source model trained once
    per (dataset, arch, seed), shared with the `ann` run of the same cell."""
    trained, converted = set(), 0
    for exp in cfg["experiments"]:
        for method in exp["methods"]:
            per = (exp.get("per_method") or {}).get(method, {})
            for arch in exp["archs"]:
                for seed in per.get("seeds", exp["seeds"]):
                    if method in CONVERSION:
                        converted += 1
                        trained.add((exp["dataset"], arch, CONVERSION[method], 1, seed, None))
                        continue
                    values = [f"{k}={v}" for k, vs in (per.get("sweep") or {}).items()
                              for v in vs] or [None]
                    if per.get("tune"):  # candidates: every combination of the listed values
                        values = [tuple(zip(per["tune"], c, strict=True))
                                  for c in itertools.product(*per["tune"].values())]
                    for T in per.get("time_steps", exp["time_steps"]):
                        for value in values:
                            trained.add((exp["dataset"], arch, method, T, seed, value))
    return len(trained), converted


def error_lines(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]


# ---- grid expansion, config errors and lint (parse only, nothing runs) ----------------------


def commands(out: subprocess.CompletedProcess) -> list[dict]:
    """The dsr.run calls of a `snakemake -n -p` dry run, as {flag: value} (repeated --set kept
    as a list)."""
    calls = []
    for line in out.stdout.splitlines():
        if "-m dsr.run" not in line:
            continue
        words = line.split("-m dsr.run", 1)[1].split(">")[0].split()
        flags: dict = {"set": []}
        for flag, value in zip(words[::2], words[1::2], strict=True):
            if flag == "--set":
                flags["set"].append(value)
            else:
                flags[flag.removeprefix("--")] = value
        calls.append(flags)
    return calls


def test_paper_grid_trains_each_ann_once(tmp_path: Path) -> None:
    text = (ROOT / "config" / "paper.yaml").read_text()
    assert grid_size(yaml.safe_load(text)) == (PAPER_TRAINING_JOBS, PAPER_CONVERT_JOBS)
    assert (f"Expected jobs: {PAPER_TRAINING_JOBS} training jobs" in text
            and f"and {PAPER_CONVERT_JOBS} `convert` jobs" in text)
    data_before = (ROOT / "data").exists()
    out = snakemake("-n", "-p", "--configfile", "config/paper.yaml", "--config",
                    f"results_dir={tmp_path}/results", f"tables_dir={tmp_path}/tables")
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = planned(out)
    assert jobs["train"] + jobs["train_model"] == PAPER_TRAINING_JOBS
    assert jobs["convert"] == PAPER_CONVERT_JOBS
    assert jobs["tables"] == jobs["figures"] == 1
    calls = commands(out)
    # exactly one ReLU-ANN training per (dataset, arch, seed) and one QCFS training per
    # (dataset, arch, seed, L), each saving the model its conversion jobs load
    anns = [(c["dataset"], c["arch"], c["seed"]) for c in calls if c["method"] == "ann"]
    qcfs = [(c["dataset"], c["arch"], c["seed"], c["save-model"]) for c in calls
            if c["method"] == "qcfs" and "from-checkpoint" not in c]
    assert len(anns) == len(set(anns)) == 2 * 3 + 5 * 3 + 1  # cifar10/100, deep, imagenet
    assert len(qcfs) == len({q[:3] for q in qcfs}) == len(anns)
    # QCFS's L (4 on CIFAR, 16 on ImageNet) is in its ANN run's identity, so in its folder
    assert all(c["out"].split("/")[-2] != "L4" for c in calls)
    sources = {c["out"].removesuffix("metrics.json") + "model.pt" for c in calls
               if "save-model" in c}
    conversions = [c for c in calls if c["method"] in CONVERSION]
    for c in conversions:  # never trains: loads a trained model, sweeps to T_max
        if "from-checkpoint" in c:
            assert c["from-checkpoint"] in sources and int(c["time-steps"]) >= 256
    assert sum("from-checkpoint" in c for c in conversions) == PAPER_CONVERT_JOBS
    assert all(c["time-steps"] == "1" for c in conversions if "from-checkpoint" not in c)
    assert not (tmp_path / "results").exists() and not (tmp_path / "tables").exists()
    assert (ROOT / "data").exists() == data_before  # no data folder made, nothing read


def test_default_grid_covers_every_registered_method(tmp_path: Path) -> None:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    exp, vth, tuned = cfg["experiments"]
    assert set(exp["methods"]) == set(registry.METHODS)
    assert len(exp["time_steps"]) >= 3 and len(exp["seeds"]) >= 3
    assert vth["per_method"]["dsr-if"]["sweep"] == {"v_th": [1, 2, 4, 6]}
    # the tuned ruleset: the relative claims' methods, the same number of candidates each
    assert set(tuned["methods"]) == {"dsr-if", "dsr-lif", "sg-bptt", "tet", "plif"}
    assert {len(p["tune"]) for p in tuned["per_method"].values()} == {1}
    assert {len(next(iter(p["tune"].values()))) for p in tuned["per_method"].values()} == {2}
    assert grid_size(cfg) == (DEFAULT_TRAINING_JOBS + DEFAULT_SWEEP_JOBS + DEFAULT_TUNED_JOBS,
                              DEFAULT_CONVERT_JOBS)
    out = snakemake("-n", "--config", f"results_dir={tmp_path}/results",
                    f"tables_dir={tmp_path}/tables")
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = planned(out)
    # the sweep's v_th = 6 runs are the digits experiment's DSR-IF T = 4 runs (the paper's
    # initial v_th): the same identity, so one folder and one job each
    assert (jobs["train"] + jobs["train_model"]
            == DEFAULT_TRAINING_JOBS + DEFAULT_SWEEP_JOBS + DEFAULT_TUNED_JOBS - 2)
    assert jobs["convert"] == DEFAULT_CONVERT_JOBS
    graph = snakemake("--rulegraph", "--config", f"results_dir={tmp_path}/results",
                      f"tables_dir={tmp_path}/tables")
    ids = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', graph.stdout, re.M))
    edges = {(ids[a], ids[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", graph.stdout, re.M)}
    # conversion jobs depend on a trained model, never on a training job of their own
    assert ("train_model", "convert") in edges and ("train", "convert") not in edges


def test_sweep_trains_each_value_as_its_own_run(tmp_path: Path) -> None:
    exp = experiment(methods=["dsr-if", "dsr-lif"], time_steps=[2], seeds=[0], firing_rates=[],
                     per_method={"dsr-if": {"sweep": {"v_th": [1, 2.5]}}})
    out = snakemake("-n", "-p", "--configfile", str(write_config(tmp_path, [exp])))
    assert out.returncode == 0, out.stderr[-2000:]
    assert planned(out)["train"] == 3
    cmds = sorted(ln for ln in out.stdout.splitlines() if "-m dsr.run" in ln)
    grid = grid_of(tmp_path / "t.yaml")
    lif = run_folder(grid, "dsr-lif", 2, 0)
    assert any("--method dsr-lif" in c and f"--out {lif}/metrics.json" in c
               and "v_th" not in c for c in cmds)
    for value in ("1", "2.5"):
        (cmd,) = [c for c in cmds if f"--set v_th={value} " in c]
        assert f"--out {run_folder(grid, 'dsr-if', 2, 0, f'v_th={value}')}/metrics.json" in cmd


def test_training_command_quotes_config_values(tmp_path: Path) -> None:
    exp = experiment(methods=["dsr-if"], time_steps=[2], seeds=[0],
                     set={"data_root": "my data; rm -rf x", "lr": 0.05},
                     per_method={"dsr-if": {"mode": "exact"}})
    out = snakemake("-n", "-p", "--configfile", str(write_config(tmp_path, [exp])))
    assert out.returncode == 0, out.stderr[-2000:]
    (cmd,) = [ln for ln in out.stdout.splitlines() if "-m dsr.run" in ln]
    assert "--set 'data_root=my data; rm -rf x' --set lr=0.05" in cmd
    assert "--method dsr-if --dataset digits --arch preact_resnet8 --time-steps 2 --seed 0 " \
           "--epochs 5 --mode exact" in cmd
    folder = run_folder(grid_of(tmp_path / "t.yaml"), "dsr-if", 2, 0)
    assert folder.parent == tmp_path / "results/runs/digits/preact_resnet8/dsr-if/T2/seed0"
    assert f"--out {folder}/metrics.json" in cmd


def test_conversion_jobs_take_their_models_training_settings(tmp_path: Path) -> None:
    exp = experiment(methods=["ann", "conversion", "qcfs"], time_steps=[2], seeds=[0],
                     firing_rates=[], per_method={
                         "ann": {"time_steps": [1], "mode": "exact", "set": {"lr": 0.05}},
                         "qcfs": {"set": {"L": 8}},
                         "conversion": {"set": {"percentile": 99.0, "test_subset": 100}}})
    out = snakemake("-n", "-p", "--configfile", str(write_config(tmp_path, [exp])))
    assert out.returncode == 0, out.stderr[-2000:]
    calls = {(c["method"], "from-checkpoint" in c): c for c in commands(out)}
    assert len(calls) == 4  # the ANN once, QCFS's ANN once, two conversion jobs
    grid = grid_of(tmp_path / "t.yaml")
    qcfs_model = f"{run_folder(grid, 'qcfs', 1, 0)}/model.pt"
    assert calls["qcfs", False]["save-model"] == qcfs_model
    assert calls["qcfs", True]["from-checkpoint"] == qcfs_model
    assert "--set L=8" in " ".join(f"--set {v}" for v in calls["qcfs", False]["set"])
    conversion = calls["conversion", True]
    assert conversion["from-checkpoint"] == f"{run_folder(grid, 'ann', 1, 0)}/model.pt"
    assert conversion["set"] == ["lr=0.05", "percentile=99.0", "test_subset=100"]
    assert conversion["out"] == f"{run_folder(grid, 'conversion', 64, 0)}/metrics.json"
    assert conversion["sweep-points"] == "2" and "epochs" in conversion


def test_unregistered_method_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [experiment(methods=["dsr-if", "no-such-method"])])
    out = snakemake("-n", "--configfile", str(cfg))
    assert out.returncode != 0
    hits = [ln for ln in error_lines(out) if "'no-such-method'" in ln]
    assert hits and "not registered" in hits[0] and "plugins:" in hits[0]


PLUGIN = """from baselines.sg_bptt import SGBPTT


class TriSG(SGBPTT):
    key = "tri-sg"
"""


@pytest.mark.parametrize(("changes", "config_key", "plugins", "fragments"), [
    (dict(methods=["tri-sg"]), "plugins", {"tri-sg": "tri_sg:TriSG"},
     ["--plugin tri-sg=tri_sg:TriSG", "--plugin-path {tmp}/plugins"]),
    (dict(name="nmnist", dataset="nmnist", methods=["dsr-if"]), "dataset_plugins",
     {"nmnist": "examples.nmnist_plugin:NMNIST"},
     ["--dataset nmnist", "--dataset-plugin nmnist=examples.nmnist_plugin:NMNIST",
      "/runs/nmnist/preact_resnet8/dsr-if/T2/seed0/"]),
], ids=["method", "dataset"])
def test_plugin_is_accepted_and_passed_to_the_trainer(
    tmp_path: Path, changes: dict, config_key: str, plugins: dict, fragments: list[str]
) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "tri_sg.py").write_text(PLUGIN)
    path = write_config(tmp_path, [experiment(**changes, time_steps=[2], seeds=[0],
                                              firing_rates=[])])
    cfg = yaml.safe_load(path.read_text())
    cfg[config_key] = plugins
    cfg["plugin_paths"] = ["plugins"]  # relative to the config file's folder
    path.write_text(yaml.safe_dump(cfg))
    out = snakemake("-n", "-p", "--configfile", str(path))
    assert out.returncode == 0, out.stderr[-2000:]
    (cmd,) = [ln for ln in out.stdout.splitlines() if "-m dsr.run" in ln]
    for fragment in fragments:
        assert fragment.format(tmp=tmp_path) in cmd


@pytest.mark.parametrize(("target", "module", "expected"), [
    ("tri_sgg:TriSG", None, "'tri-sg' points at 'tri_sgg:TriSG', which does not import"),
    ("tri_sg:TriSG", "import sys\nsys.exit(0)\n", "whose import calls sys.exit(0)"),
    ("tri_sg:TriSG", None, None),
])
def test_plugin_is_resolved_at_planning(tmp_path: Path, target: str, module: str | None,
                                         expected: str | None) -> None:
    """A mistyped module, or one that exits when imported, stops the dry run in one line,
    before any job; a plug-in whose --set key is unknown too."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "tri_sg.py").write_text(module or PLUGIN)
    exp = experiment(methods=["tri-sg"], time_steps=[2], seeds=[0], firing_rates=[],
                     set={} if expected else {"learning_rate": 0.1})  # a typo of lr
    path = write_config(tmp_path, [exp])
    cfg = yaml.safe_load(path.read_text())
    cfg.update(plugins={"tri-sg": target}, plugin_paths=["plugins"])
    path.write_text(yaml.safe_dump(cfg))
    out = snakemake("-n", "--configfile", str(path))
    assert out.returncode != 0
    expected = expected or "unknown key(s) learning_rate for --set (tri-sg on digits)"
    assert any(expected in ln for ln in error_lines(out)), out.stderr[-2000:]
    assert "Job stats" not in out.stdout


def test_lint_is_clean() -> None:
    out = snakemake("--lint")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Lints for" not in out.stdout + out.stderr


# ---- cached results: figures_from_cache, corrupt and stale files --------------------------


def test_figures_from_cache_renders_what_exists_and_names_the_rest(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [experiment()])
    fake_runs(cfg, {("dsr-if", 2): [0, 1], ("dsr-if", 4): [0], ("dsr-lif", 2): [0, 1]})
    dry = snakemake("-n", "figures_from_cache", "--configfile", str(cfg))
    assert planned(dry) == {"figures_from_cache": 1}  # no training job, whatever is missing
    out = snakemake("figures_from_cache", "--cores", "1", "--profile", "profiles/figures",
                    "--configfile", str(cfg))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "3 of 8 runs of configuration `t` are missing or stale" in out.stdout
    assert "DSR (IF) T=4 seeds 1" in out.stdout and "DSR (LIF) T=4 seeds 0, 1" in out.stdout
    tables = tmp_path / "tables" / "t"
    missing = (tables / "MISSING.md").read_text()
    assert "| digits | PreAct-ResNet-8 | DSR (LIF) | 4 | 0, 1 | – |" in missing
    md = (tables / "digits.md").read_text()
    assert "| DSR (IF) | synthetic | PreAct-ResNet-8 | 2 | 2/2 |" in md
    assert "| DSR (IF) | synthetic | PreAct-ResNet-8 | 4 | 1/2 |" in md
    assert "| DSR (LIF) | – | PreAct-ResNet-8 | 4 | 0/2 | not run | not run |" in md
    assert len((tables / "runs.csv").read_text().splitlines()) == 1 + 5
    for kind in ("accuracy_vs_T", "pareto", "cost", "firing_rates"):
        for ext in ("png", "pdf"):
            assert (tables / "figures" / f"digits_{kind}.{ext}").stat().st_size > 1000
    assert not list((tables / "figures").glob("digits_latency.*"))  # no conversion method


def test_sweep_rows_and_figure_carry_the_value(tmp_path: Path) -> None:
    exp = experiment(methods=["dsr-if", "dsr-lif"], time_steps=[2], firing_rates=[],
                     per_method={"dsr-if": {"sweep": {"v_th": [1, 4]}}})
    cfg = write_config(tmp_path, [exp])
    fake_runs(cfg, {("dsr-if", 2, "v_th=1"): [0, 1], ("dsr-if", 2, "v_th=4"): [0],
                    ("dsr-lif", 2): [0, 1]})
    out = snakemake("figures_from_cache", "--cores", "1", "--profile", "profiles/figures",
                    "--configfile", str(cfg))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "DSR (IF), v_th = 4 T=2 seeds 1" in out.stdout  # the one missing run, by value
    tables = tmp_path / "tables" / "t"
    md = (tables / "digits.md").read_text()
    assert "| DSR (IF), v_th = 1 | synthetic | PreAct-ResNet-8 | 2 | 2/2 |" in md
    assert "| DSR (IF), v_th = 4 | synthetic | PreAct-ResNet-8 | 2 | 1/2 |" in md
    assert "| DSR (LIF) | synthetic | PreAct-ResNet-8 | 2 | 2/2 |" in md
    summary = pd.read_csv(tables / "digits.csv")
    assert sorted(summary["variant"].dropna()) == ["v_th=1", "v_th=4"]
    runs = pd.read_csv(tables / "runs.csv")
    assert sorted(runs["variant"].dropna()) == ["v_th=1", "v_th=1", "v_th=4"]
    for ext in ("png", "pdf"):
        assert (tables / "figures" / f"digits_sweep.{ext}").stat().st_size > 1000


def test_conversion_sweep_fills_its_rows_and_missing_conversions_are_listed(
        tmp_path: Path) -> None:
    """One conversion job per seed fills a row at every T of its sweep; a config whose
    conversion runs are missing still renders every table and figure from the cache."""
    exp = experiment(methods=["dsr-if", "ann", "conversion", "qcfs"], firing_rates=["dsr-if"],
                     per_method={"ann": {"time_steps": [1]}}, latency_sweep=16)
    cfg = write_config(tmp_path, [exp])
    grid = fake_runs(cfg, {("dsr-if", 2): [0, 1], ("dsr-if", 4): [0, 1], ("ann", 1): [0, 1]})
    m = synthetic_metrics("conversion", "digits", "preact_resnet8", 16, 0, 5, random.Random(0))
    m["latency_sweep"] = {"T_max": 16, "points": [
        {"T": T, "accuracy": 0.1 + 0.05 * T, "synops": 1000.0 * T, "energy_pj": 900.0 * T}
        for T in (1, 2, 4, 8, 16)]}
    m["config_hash"] = planned_run(grid, "conversion", 16, 0).hash
    path = run_folder(grid, "conversion", 16, 0)
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(m))  # seed 1 and every QCFS run missing
    dry = snakemake("-n", "figures_from_cache", "--configfile", str(cfg))
    assert planned(dry) == {"figures_from_cache": 1}
    out = snakemake("figures_from_cache", "--cores", "1", "--profile", "profiles/figures",
                    "--configfile", str(cfg))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "3 of 10 runs of configuration `t` are missing or stale" in out.stdout
    tables = tmp_path / "tables" / "t"
    missing = (tables / "MISSING.md").read_text()
    assert "| digits | PreAct-ResNet-8 | QCFS | 16 | 0, 1 | – |" in missing
    assert "| digits | PreAct-ResNet-8 | ANN-to-SNN conversion | 16 | 1 | – |" in missing
    md = (tables / "digits.md").read_text()
    for T, acc in ((1, "15.00"), (2, "20.00"), (4, "30.00"), (8, "50.00"), (16, "90.00")):
        assert f"| ANN-to-SNN conversion | synthetic | PreAct-ResNet-8 | {T} | 1/2 | {acc}" in md
        assert f"| QCFS | – | PreAct-ResNet-8 | {T} | 0/2 | not run | not run |" in md
    runs = pd.read_csv(tables / "runs.csv")
    sweep = runs[runs["method"] == "conversion"].sort_values("T")
    assert list(sweep["T"]) == [1, 2, 4, 8, 16] and list(sweep["configured"]) == [
        False, True, True, False, False]
    assert list(sweep["synops_ac"]) == [1000.0 * T for T in (1, 2, 4, 8, 16)]
    assert len(runs) == 4 + 2 + 5
    for kind in ("accuracy_vs_T", "latency", "pareto", "cost"):
        assert (tables / "figures" / f"digits_{kind}.png").stat().st_size > 1000


def test_figures_from_cache_with_nothing_cached_says_so(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [experiment()])
    out = snakemake("figures_from_cache", "--cores", "1", "--configfile", str(cfg))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Nothing cached for configuration `t`: none of its 8 runs" in out.stdout
    tables = tmp_path / "tables" / "t"
    assert sorted(p.name for p in tables.iterdir()) == ["MISSING.md"]


def test_unusable_cached_results_are_moved_aside_and_listed(tmp_path: Path) -> None:
    """Corrupt JSON, a file of another schema, a non-finite number and a file holding another
    run than its folder names are never shown: planning moves each aside (kept, renamed
    metrics.corrupt-<time>.json) and says so in one line, the tables list the run as missing,
    and a dry run of reproduce_table plans its retraining."""
    cfg = write_config(tmp_path, [experiment(time_steps=[2], seeds=[0, 1])])
    grid = fake_runs(cfg, {("dsr-if", 2): [0, 1], ("dsr-lif", 2): [0, 1]})
    folders = {(m, s): run_folder(grid, m, 2, s) for m in ("dsr-if", "dsr-lif") for s in (0, 1)}
    (folders["dsr-lif", 1] / "metrics.json").write_text('{"schema_version": 1, "method": ')
    text = (folders["dsr-if", 0] / "metrics.json").read_text()
    (folders["dsr-if", 0] / "metrics.json").write_text(
        text.replace('"schema_version": 1', '"schema_version": 0'))
    text = (folders["dsr-if", 1] / "metrics.json").read_text()
    (folders["dsr-if", 1] / "metrics.json").write_text(
        re.sub(r'"energy_pj": [0-9.e+]+', '"energy_pj": NaN', text, count=1))
    other = json.loads((folders["dsr-lif", 0] / "metrics.json").read_text())
    other["config_hash"] = "0123456789abcdef"
    (folders["dsr-lif", 0] / "metrics.json").write_text(json.dumps(other))
    dry = snakemake("-n", "reproduce_table", "--configfile", str(cfg))
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert planned(dry)["train"] == 4  # every one of them trains again
    moved = [ln for ln in dry.stderr.splitlines() if ln.startswith("moved ")]
    assert len(moved) == 4 and all(ln.endswith("its run trains again") for ln in moved)
    assert any("corrupt JSON" in ln for ln in moved) and any("NaN" in ln for ln in moved)
    assert any("schema_version 0" in ln for ln in moved)
    assert any("holds run 0123456789abcdef" in ln for ln in moved)
    for folder in folders.values():
        assert not (folder / "metrics.json").exists()
        (kept,) = folder.glob("metrics.corrupt-*.json")  # nothing deleted
    out = snakemake("figures_from_cache", "--cores", "1", "--configfile", str(cfg))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Nothing cached for configuration `t`: none of its 4 runs" in out.stdout


def test_failing_tables_job_keeps_the_previous_tables(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [experiment(time_steps=[2], seeds=[0])])
    fake_runs(cfg, {("dsr-if", 2): [0], ("dsr-lif", 2): [0]})
    published = tmp_path / "published.csv"
    published.write_text((ROOT / "paper_tables" / "published.csv").read_text())
    config = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**config, "published": str(published)}))
    args = ("reproduce_table", "--cores", "1", "--configfile", str(cfg))
    assert snakemake(*args).returncode == 0
    tables = tmp_path / "tables" / "t"
    before = {p: p.read_bytes() for p in tables.rglob("*") if p.is_file()}
    with published.open("a") as f:
        f.write('broken,"\n')
    out = snakemake(*args)
    assert out.returncode != 0
    assert any(ln.startswith(f"error: {published}: cannot read published values")
               for ln in out.stderr.splitlines())
    assert "Restored previous version" in out.stderr
    assert {p: p.read_bytes() for p in tables.rglob("*") if p.is_file()} == before


def test_deleted_result_is_retrained_and_the_tables_follow(tmp_path: Path) -> None:
    """The runs are targets: with every table present, a deleted metrics.json plans its run
    and the tables and figures after it (before run identity: "Nothing to be done")."""
    cfg = write_config(tmp_path, [experiment(time_steps=[2], seeds=[0])])
    grid = fake_runs(cfg, {("dsr-if", 2): [0], ("dsr-lif", 2): [0]})
    args = ("reproduce_table", "--cores", "1", "--configfile", str(cfg))
    assert snakemake(*args).returncode == 0
    assert "Nothing to be done" in snakemake("-n", *args).stdout
    (run_folder(grid, "dsr-lif", 2, 0) / "metrics.json").unlink()
    jobs = planned(snakemake("-n", *args))
    assert (jobs["train"], jobs["tables"], jobs["figures"]) == (1, 1, 1)


# ---- the committed reduced-scale CIFAR-10 results (config/reduced.yaml) --------------------

# config/reduced.yaml: 4 directly trained methods x T 2/5/10 + the ANN + one conversion and one
# QCFS job (each sweeping to T_max), one seed = 15 runs; + QCFS's quantised-ANN training = 16 files
REDUCED_RUNS, REDUCED_FILES = 15, 16


def test_reduced_results_regenerate_from_cache_without_training(tmp_path: Path) -> None:
    """The committed reduced-run metrics regenerate every reduced table and figure on a fresh
    clone: no training job planned, no data read, and the tables equal the committed ones."""
    import shutil

    cfg = yaml.safe_load((ROOT / "config" / "reduced.yaml").read_text())
    committed = ROOT / cfg["tables_dir"] / cfg["name"]
    results = tmp_path / "results"  # a copy: the rule writes its log under results_dir
    shutil.copytree(ROOT / cfg["results_dir"] / "runs", results / "runs")
    assert len(list(results.rglob("metrics.json"))) == REDUCED_FILES
    cfg.update(results_dir=str(results), tables_dir=str(tmp_path / "tables"))
    # the data is not needed, and where it lives is not part of a run's identity
    cfg["datasets"]["cifar10"]["data_root"] = str(tmp_path / "no-data-here")
    path = tmp_path / "reduced.yaml"
    path.write_text(yaml.safe_dump(cfg))
    dry = snakemake("-n", "figures_from_cache", "--configfile", str(path))
    assert dry.returncode == 0 and planned(dry) == {"figures_from_cache": 1}, dry.stderr[-2000:]
    out = snakemake("figures_from_cache", "--profile", "profiles/figures",
                    "--configfile", str(path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"All {REDUCED_RUNS} runs of configuration `reduced` are cached and current" in (
        out.stdout)
    made = tmp_path / "tables" / cfg["name"]
    names = {p.relative_to(made) for p in made.rglob("*") if p.is_file()}
    expected = {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()}
    assert names == expected - {Path("README.md")}
    for rel in names:
        if rel.suffix in (".png", ".pdf"):  # binary, with creation dates: present and non-trivial
            assert (made / rel).stat().st_size > 1000, rel
        else:
            text = (made / rel).read_text().replace(str(results), "results/reduced")
            assert text == (committed / rel).read_text(), f"{rel} differs from the committed one"


# ---- the aggregation functions themselves --------------------------------------------------


def test_published_values_sit_beside_their_cells() -> None:
    published = pub.load_published(ROOT / "paper_tables" / "published.csv")
    hit = pub.published_for(published, "cifar10", "preact_resnet18", "dsr-lif", 20)
    assert list(hit["accuracy"]) == [95.40] and list(hit["status"]) == ["confirmed-secondary"]
    assert pub.published_for(published, "cifar10", "preact_resnet18", "qcfs", 4).empty
    sources = pub.Sources()
    assert pub.published_text(hit, sources) == "95.40 ± 0.15 [1]‡"
    lines = pub.source_lines(sources)
    assert lines[0].startswith("[1] DSR (LIF), PreAct-ResNet-18, T = 20: CLIF (ICML 2024)")
    assert lines[0].endswith("(‡ confirmed-secondary)")
    exp = {"name": "cifar10", "dataset": "cifar10"}
    cells = [{"experiment": "cifar10", "arch": "preact_resnet18", "method": "dsr-lif", "T": 20,
              "seed": 0}]
    only = render.published_only(exp, cells, published)
    assert "DSR" in set(only["method"])  # the T = 5 row: no T = 5 cell here
    assert not ((only["method"] == "DSR") & (only["time_steps"] == 20)).any()


def test_published_csv_errors_name_the_row(tmp_path: Path) -> None:
    bad = tmp_path / "published.csv"
    text = (ROOT / "paper_tables" / "published.csv").read_text()
    bad.write_text(text.replace(",94.45,,confirmed-primary,", ",about 94,,confirmed-primary,"))
    with pytest.raises(ResultError, match=r"row 2: accuracy 'about 94' is not a"):
        pub.load_published(bad)
    bad.write_text(text.replace(",94.45,,confirmed-primary,", ",94.45,,recalled,"))
    with pytest.raises(ResultError, match=r"row 2: status 'recalled'; use one of"):
        pub.load_published(bad)


def test_every_published_row_has_a_known_status_and_a_source() -> None:
    published = pub.load_published(ROOT / "paper_tables" / "published.csv")
    assert set(published["status"]) <= set(pub.STATUS_MARK)
    assert published["source"].str.strip().str.len().min() > 10
    # the OTTT numbers are its VGG-sWS network's (OTTT paper, and as quoted later), not a
    # ResNet-18's
    ottt = published[published["method"] == "OTTT"]
    assert set(ottt["arch"]) == {"VGG-sWS"} and 0.06 in list(ottt["std"])
    legend = pub.status_legend()
    assert all(f"{m} = " in legend for m in pub.STATUS_MARK.values() if m)


def test_stale_reason_compares_the_run_identity() -> None:
    m = RunRecord.from_json(synthetic_metrics("dsr-if", "digits", "preact_resnet8", 2, 0, 5,
                                              random.Random(0)))
    assert collect.stale_reason(m, {"hash": m.config_hash}) is None
    assert collect.stale_reason(m, {"hash": "0" * 16}) == (
        f"holds run {m.config_hash}, the configuration asks for {'0' * 16}")


def test_legend_says_when_runs_use_data_subsets() -> None:
    cell = {"experiment": "e", "set": {"test_subset": "1000", "train_subset": "4000"}}
    exp = {"name": "e", "dataset": "cifar10"}
    text = render.legend_text("c", exp, [cell, {**cell, "experiment": "other", "set": {}}])
    assert "Trained on a fixed class-balanced subset of the train set (4,000 images). " in text
    assert "Accuracy: a fixed class-balanced subset of the test set (1,000 images), %" in text
    full = render.legend_text("c", exp, [{**cell, "set": {}}])
    assert "Trained on" not in full and "Accuracy: test set, %" in full


def test_latex_escapes_and_pareto_front() -> None:
    from pipeline import figures

    assert text.latex_escape("95.40 ± 0.15 [1]† 5% a_b") == (
        r"95.40 $\pm$ 0.15 [1]$^\dagger$ 5\% a\_b")
    points = pd.DataFrame({"cost": [1.0, 2.0, 3.0, 4.0],
                                     "acc_best": [50.0, 40.0, 70.0, 60.0]})
    assert list(figures.pareto_front(points, "cost").index) == [0, 2]


def test_aggregation_bench_runs() -> None:
    from bench.aggregate import time_aggregation

    assert time_aggregation(30) > 0  # it asserts every synthetic file was aggregated


# ---- end to end: one real training run --------------------------------------------------


def test_one_digits_run_end_to_end(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [experiment(methods=["dsr-if"], time_steps=[2], seeds=[0],
                                             epochs=1, firing_rates=["dsr-if"])])
    out = snakemake("reproduce_table", "--cores", "2", "--configfile", str(cfg))
    assert out.returncode == 0, out.stderr[-3000:]
    run = run_folder(grid_of(cfg), "dsr-if", 2, 0)
    assert (run / "metrics.json").is_file() and (run / "checkpoint.pt").is_file()
    rel = run.relative_to(tmp_path / "results/runs")
    assert (tmp_path / f"results/logs/train/{rel}.log").is_file()
    assert (tmp_path / f"results/benchmarks/train/{rel}.tsv").is_file()
    tables = tmp_path / "tables" / "t"
    md = (tables / "digits.md").read_text()
    assert re.search(r"\| DSR \(IF\) \| ours \| PreAct-ResNet-8 \| 2 \| 1/1 \| \d+\.\d\d \|", md)
    assert "All 1 runs of configuration `t` are cached and current." in (
        tables / "MISSING.md").read_text()
    rates = (tables / "digits_firing_rates.md").read_text()
    assert "DSR (IF) T=2" in rates and "| total |" in rates
    assert r"\begin{tabular}" in (tables / "digits.tex").read_text()
    for kind in ("accuracy_vs_T", "pareto", "cost", "memory", "firing_rates"):
        assert (tables / "figures" / f"digits_{kind}.pdf").stat().st_size > 1000
    assert not (tables / "figures" / "digits_latency.pdf").exists()  # no conversion here
    assert "| DSR (IF) | PreAct-ResNet-8 | 2 | 1 |" in (tables / "digits_cost.md").read_text()
    again = snakemake("-n", "reproduce_table", "--configfile", str(cfg))
    assert "Nothing to be done" in again.stdout + again.stderr
    report = tmp_path / "report.html"
    out = snakemake("reproduce_table", "--report", str(report), "--configfile", str(cfg))
    assert out.returncode == 0 and report.stat().st_size > 10_000


@pytest.mark.slow
def test_default_grid_reproduces_within_ten_minutes(tmp_path: Path) -> None:
    """`make reproduce` on 2 cores: the whole embedded grid, every table and figure."""
    start = time.perf_counter()
    out = snakemake("reproduce_table", "--cores", "2", "--config",
                    f"results_dir={tmp_path}/results", f"tables_dir={tmp_path}/tables",
                    timeout=1800)
    seconds = time.perf_counter() - start
    assert out.returncode == 0, out.stderr[-3000:]
    tables = tmp_path / "tables" / "default"
    md = (tables / "digits.md").read_text()
    for method in registry.METHODS:
        assert names.display(method) in md
    assert not re.search(r"\| [0-2]/[23] \|", md)  # every seed of every cell present
    assert "(tuned: " in (tables / "digits_tuned.md").read_text()
    assert len(list((tables / "figures").glob("digits_*.png"))) >= 6
    assert seconds <= 600, f"default grid took {seconds:.0f} s"
