"""The documentation site: it builds with --strict (a broken link, anchor, included file or API
reference fails), its tutorial pages include the tutorial files rather than copies of them, and
every tutorial file runs: the method and dataset plug-ins train through `python -m dsr.run` with
`--plugin-path docs/tutorials`, as the pages tell a reader to, and the tutorial configuration
runs through the workflow. tests/test_docs_browser.py opens the built pages in a browser."""

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dsr import REPO_ROOT as ROOT
from dsr import data
from pipeline.configs import load_config
from pipeline.grid import Grid, check_config

MKDOCS = str(Path(sys.executable).parent / "mkdocs")
TUTORIALS = ROOT / "docs" / "tutorials"
# page -> the tutorial files it must include with a snippet
INCLUDES = {"add-a-method.md": ["docs/tutorials/superspike.py"],
            "add-a-dataset.md": ["docs/tutorials/bars.py"],
            "experiments.md": ["docs/tutorials/bars_experiment.yaml"]}


def build_site(site: Path) -> subprocess.CompletedProcess:
    """`make docs` into `site` (the same command, another folder)."""
    return subprocess.run([MKDOCS, "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def page_text(path: Path) -> str:
    """A built page's visible text: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_site_builds_strict_without_warnings(tmp_path: Path) -> None:
    site = tmp_path / "site"
    out = build_site(site)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "WARNING" not in out.stderr, out.stderr[-3000:]
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)["nav"]
    assert [next(iter(entry)) for entry in nav] == [
        "Home", "Quickstart", "Your own experiments", "Add a method", "Add a dataset",
        "Claims and verdicts", "Metrics", "Running on a cluster", "Reproducing the paper",
        "Benchmarks", "API reference"]
    # the tutorials' code is on their pages, and the API reference is rendered from docstrings
    assert "class SuperSpike(Method):" in page_text(site / "add-a-method" / "index.html")
    assert "class Bars:" in page_text(site / "add-a-dataset" / "index.html")
    assert "name: bars_tutorial" in page_text(site / "experiments" / "index.html")
    method_api = (site / "reference" / "method" / "index.html").read_text()
    assert 'id="dsr.method.Method"' in method_api
    assert 'id="dsr.method.Method.neuron_factory"' in method_api
    assert "Training step: fast vs exact vs SpikingJelly" in page_text(
        site / "benchmarks" / "index.html")
    figures = sorted(p.name for p in (site / "figures" / "reduced").glob("*.png"))
    assert figures == sorted(p.name for p in
                             (ROOT / "paper_tables/reduced/figures").glob("*.png"))


def test_tutorial_pages_include_their_files_and_never_copy_them() -> None:
    pages = {p.relative_to(ROOT / "docs").as_posix(): p.read_text()
             for p in (ROOT / "docs").rglob("*.md")}
    for page, files in INCLUDES.items():
        for file in files:
            assert f'--8<-- "{file}"' in pages[page], (page, file)
    # a copy: three consecutive non-comment lines of a tutorial file anywhere in a page
    for file in TUTORIALS.iterdir():
        if file.suffix not in (".py", ".yaml"):
            continue
        lines = [s for line in file.read_text().splitlines()
                 if (s := line.strip()) and not s.startswith("#")]
        for i in range(len(lines) - 2):
            window = lines[i:i + 3]
            for page, text in pages.items():
                stripped = [line.strip() for line in text.splitlines() if line.strip()]
                assert not any(stripped[j:j + 3] == window for j in range(len(stripped))), (
                    f"{page} copies {file.name}: {window}")


def run_tutorial(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`python -m dsr.run --plugin-path docs/tutorials ...`, as the pages say."""
    env = {**os.environ, "DSR_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "dsr.run", "--plugin-path", "docs/tutorials",
                           "--device", "cpu", "--epochs", "1", "--set", "base_width=2",
                           "--set", "latency_batches=1", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


METHOD = ["--plugin", "superspike=superspike:SuperSpike", "--method", "superspike"]
DATASET = ["--dataset-plugin", "bars=bars:Bars", "--dataset", "bars"]


def test_method_tutorial_trains_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    run = run_tutorial(*METHOD, "--dataset", "digits", "--time-steps", "2", "--set",
                       "train_subset=200", "--set", "slope=2", "--out", str(out),
                       tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    m = json.loads(out.read_text())
    assert (m["method"], m["category"], m["neuron"]) == ("superspike", "surrogate gradient",
                                                          "LIF")
    assert m["config"]["params"] == {"beta": 0.9, "v_th": 1.0, "slope": 2.0}
    assert m["firing_rate"]["total"] > 0 and m["synops"]["total_ac"] > 0  # it spikes
    (plugin,) = m["provenance"]["plugins"]  # the out-of-tree source, by its hash
    assert plugin["file"] == str(TUTORIALS / "superspike.py") and len(plugin["sha256"]) == 64
    bad = run_tutorial(*METHOD, "--dataset", "digits", "--time-steps", "2", "--set", "beta=2",
                       "--out", str(tmp_path / "bad" / "metrics.json"), tmp_path=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: beta must be in (0, 1], got 2.0")


def test_dataset_tutorial_trains_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    run = run_tutorial(*DATASET, "--method", "dsr-if", "--time-steps", "2", "--out", str(out),
                       tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    m = json.loads(out.read_text())
    assert m["dataset"] == "bars" and m["arch"] == "preact_resnet8"  # the plug-in's defaults
    assert (m["data"]["num_classes"], m["data"]["train_size"], m["data"]["test_size"]) == (
        4, 1000, 400)
    assert len(list((tmp_path / "cache").glob("bars-*.pt"))) == 1  # decoded once, cached


def test_both_tutorial_plugins_train_together(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    run = run_tutorial(*METHOD, *DATASET, "--time-steps", "2", "--out", str(out),
                       tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    m = json.loads(out.read_text())
    assert (m["method"], m["dataset"]) == ("superspike", "bars")


def test_dataset_tutorial_is_balanced_and_the_same_every_time(tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(TUTORIALS))
    plugins = {"bars": "bars:Bars"}
    first = data.load("bars", cache_dir=tmp_path / "a", plugins=plugins)
    again = data.load("bars", cache_dir=tmp_path / "b", plugins=plugins)
    x, y = next(first.batches("train", 1000, shuffle=False, augment=False))
    x2, _ = next(again.batches("train", 1000, shuffle=False, augment=False))
    assert x.shape == (1000, 1, 8, 8) and bool((x == x2).all())
    assert y.bincount().tolist() == [250] * 4


def test_config_tutorial_plans_its_grid() -> None:
    cfg = load_config([TUTORIALS / "bars_experiment.yaml"], {}, ROOT)
    assert cfg["plugin_paths"] == [str(TUTORIALS)]  # `.`, relative to the file
    grid = Grid(check_config(cfg, ROOT))
    # 2 x 2 x 2 + 3 x 2, less the 2 slope=10 runs (SuperSpike's default slope) that the first
    # experiment's T = 4 SuperSpike runs already are: the number the file's header states
    assert len(grid.runs) == 2 * 2 * 2 + 3 * 2 - 2
    args = next(iter(grid.runs.values())).args(grid.cfg["dataset_plugins"])
    assert args[args.index("--dataset-plugin") + 1] == "bars=bars:Bars"
    assert args[args.index("--plugin-path") + 1] == str(TUTORIALS)
    swept = [c for c in grid.cells if c["variant"]]
    assert {c["variant"] for c in swept} == {"slope=2", "slope=10", "slope=50"}


def test_config_tutorial_runs_through_the_workflow(tmp_path: Path) -> None:
    """The tutorial configuration itself, end to end (its results and tables in tmp_path)."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "--cores", "2", "--nolock",
         "--profile", "profiles/default", "reproduce_table", "--configfile",
         "docs/tutorials/bars_experiment.yaml", "--config", f"results_dir={tmp_path}/results",
         f"tables_dir={tmp_path}/tables"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "DSR_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-3000:]
    tables = tmp_path / "tables" / "bars_tutorial"
    assert "All 14 runs of configuration `bars_tutorial` are cached and current." in (
        tables / "MISSING.md").read_text()
    slope = (tables / "bars_slope.md").read_text()
    for value in (2, 10, 50):
        assert f"| SuperSpike, slope = {value} | surrogate gradient | PreAct-ResNet-8 | 4 | 2/2 |" \
            in slope
    assert len(list((tmp_path / "results").rglob("metrics.json"))) == 12  # the header's count


@pytest.mark.parametrize("page", sorted(INCLUDES))
def test_tutorial_commands_name_the_tutorial_folder(page: str) -> None:
    text = (ROOT / "docs" / page).read_text()
    assert "--plugin-path docs/tutorials" in text or (
        "docs/tutorials/bars_experiment.yaml" in text
        and "plugin_paths: [.]" in (TUTORIALS / "bars_experiment.yaml").read_text())
    assert "PYTHONPATH=docs/tutorials" not in text
