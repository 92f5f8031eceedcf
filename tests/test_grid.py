"""The configured grid as plain Python (pipeline.grid): config checks, run expansion, cells,
resources, trainer arguments and output paths, without Snakemake. test_workflow.py checks the
same grid through the `snakemake` CLI (dry runs, lint, the tables and figures it writes)."""

import copy
import re

import pytest
import yaml

from dsr import REPO_ROOT as ROOT
from dsr import registry
from dsr.config import ConfigError
from pipeline.grid import CONVERSION_SOURCES, Grid, check_config
from tests.experiments import experiment


def config(*experiments: dict, **top) -> dict:
    cfg = {"name": "t", "results_dir": "res", "tables_dir": "tab",
           "published": "paper_tables/published.csv", "experiments": list(experiments), **top}
    return check_config(copy.deepcopy(cfg), ROOT)


def test_conversion_source_map_matches_the_methods() -> None:
    for method, source in CONVERSION_SOURCES.items():
        assert registry.get(method).source_method == source
    assert {k for k in registry.METHODS if registry.get(k).source_method is not None} == set(
        CONVERSION_SOURCES)


def test_grid_is_archs_x_methods_x_steps_x_seeds_with_one_cell_each() -> None:
    grid = Grid(config(experiment()))
    assert len(grid.runs) == len(grid.cells) == 2 * 2 * 2
    assert "runs/digits/preact_resnet8/dsr-lif/T4/seed1" in grid.runs
    cell = grid.cells[0]
    assert cell["path"] == "res/runs/digits/preact_resnet8/dsr-if/T2/seed0/metrics.json"
    assert (cell["epochs"], cell["mode"], cell["set"], cell["sweep"]) == (5, None, {}, None)
    assert grid.metrics_files()[0] == cell["path"]


def test_sweep_is_one_run_and_cell_per_value() -> None:
    exp = experiment(methods=["dsr-if"], time_steps=[2], seeds=[0], firing_rates=[],
                     set={"lr": 0.05}, per_method={"dsr-if": {"sweep": {"v_th": [1, 2.5]}}})
    grid = Grid(config(exp))
    assert sorted(grid.runs) == ["runs/digits/preact_resnet8/dsr-if/T2/v_th=1/seed0",
                                 "runs/digits/preact_resnet8/dsr-if/T2/v_th=2.5/seed0"]
    assert [c["variant"] for c in grid.cells] == ["v_th=1", "v_th=2.5"]
    assert grid.cells[1]["set"] == {"lr": "0.05", "v_th": "2.5"}
    assert grid.experiments()[0]["sweeps"] == {"dsr-if": "v_th"}


def test_run_arguments_carry_every_setting() -> None:
    exp = experiment(methods=["dsr-if"], time_steps=[2], seeds=[3],
                     set={"data_root": "my data; rm -rf x"},
                     per_method={"dsr-if": {"mode": "exact"}})
    grid = Grid(config(exp, plugins={}, dataset_plugins={}))
    (run,) = grid.runs.values()
    assert run.args({}) == ["--method", "dsr-if", "--dataset", "digits", "--arch",
                            "preact_resnet8", "--time-steps", "2", "--seed", "3", "--epochs", "5",
                            "--mode", "exact", "--set", "data_root=my data; rm -rf x"]
    assert run.args({"digits": "m:D"})[-2:] == ["--dataset-plugin", "digits=m:D"]


def test_conversion_trains_its_source_once_and_sweeps_to_t_max() -> None:
    exp = experiment(methods=["ann", "conversion", "qcfs"], time_steps=[2], seeds=[0],
                     firing_rates=[], per_method={"ann": {"time_steps": [1], "set": {"lr": 0.05}},
                                                  "qcfs": {"set": {"L": 8}}})
    grid = Grid(config(exp))
    runs = "runs/digits/preact_resnet8"
    assert sorted(grid.runs) == [f"{runs}/ann/T1/seed0", f"{runs}/conversion/T64/seed0",
                                 f"{runs}/qcfs/L8/seed0", f"{runs}/qcfs/T64/seed0"]
    conv = grid.runs[f"{runs}/conversion/T64/seed0"]
    assert conv.source == f"{runs}/ann/T1/seed0" and conv.points == (2,)
    assert dict(conv.overrides) == {"lr": "0.05"}  # the ANN's training settings
    assert grid.runs[f"{runs}/qcfs/T64/seed0"].source == f"{runs}/qcfs/L8/seed0"
    # cells: the ANN and both conversions (each sweeping powers of 2 and the configured T);
    # QCFS's own quantised ANN is no table row
    sweeps = {c["method"]: c["sweep"] for c in grid.cells}
    assert set(sweeps) == {"ann", "conversion", "qcfs"} and sweeps["ann"] is None
    assert sweeps["conversion"] == [1, 2, 4, 8, 16, 32, 64]


def test_shared_run_gets_the_larger_resources() -> None:
    small = experiment(name="a", methods=["dsr-if"], time_steps=[2], seeds=[0],
                       resources={"mem_mb": 1000, "runtime": 300})
    large = {**small, "name": "b", "resources": {"mem_mb": 8000, "runtime": 10}}
    grid = Grid(config(small, large))
    (res,) = grid.resources.values()
    assert (res["mem_mb"], res["runtime"], res["threads"]) == (8000, 300, 1)
    assert len(grid.runs) == 1 and len(grid.cells) == 2  # one run, a row in each table


def test_outputs_name_every_file_of_each_experiment() -> None:
    grid = Grid(config(experiment(per_method={"dsr-lif": {"sweep": {"alpha": [0.5, 1]}}},
                                  firing_rates=["dsr-if"])))
    out = grid.outputs()
    entry = out["experiments"]["digits"]
    assert entry["table"]["tex"] == "tab/t/digits.tex"
    assert entry["firing_rates"]["csv"] == "tab/t/digits_firing_rates.csv"
    # no latency figure: it plots conversion sweeps, and the experiment converts nothing
    assert set(entry["figures"]) == {"accuracy_vs_T", "pareto", "cost", "firing_rates", "sweep"}
    assert (out["runs_csv"], out["missing"]) == ("tab/t/runs.csv", "tab/t/MISSING.md")
    assert grid.claims()["test"] == ["absolute", "relative", "band", "latency", "depth"]
    converts = Grid(config(experiment(methods=["dsr-if", "ann", "conversion"], firing_rates=[],
                                      per_method={"ann": {"time_steps": [1]}})))
    assert set(converts.outputs()["experiments"]["digits"]["figures"]) == {
        "accuracy_vs_T", "pareto", "cost", "latency"}


def test_paper_and_default_configs_build() -> None:
    for name in ("config", "paper", "reduced"):
        cfg = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
        grid = Grid(check_config(cfg, ROOT))
        assert grid.cells and set(grid.resources) == set(grid.runs)


@pytest.mark.parametrize(
    ("experiments", "expected"),
    [
        ([experiment(time_steps=[0])], "config: experiments.0.time_steps.0: 0 is less than"),
        ([experiment(dataset="mnist")], "unknown dataset 'mnist'; choose one of cifar10, "),
        ([experiment(firing_rates=["tet"])], "firing_rates names tet"),
        ([experiment(), experiment()], "experiment name 'digits' is used twice"),
        ([experiment(), experiment(name="other", epochs=3)], "differently from an earlier"),
        ([experiment(per_method={"dsr-lif": {"sweep": {"v_th": [1], "alpha": [0.5]}}})],
         "per_method.dsr-lif.sweep names 2 parameters"),
        ([experiment(set={"v_th": 2}, per_method={"dsr-lif": {"sweep": {"v_th": [1, 3]}}})],
         "per_method.dsr-lif both sets and sweeps v_th"),
        ([experiment(per_method={"dsr-if": {"sweep": {"v_th": [1, 3]}}})],
         "firing_rates names dsr-if, whose v_th is swept"),
        ([experiment(firing_rates=[], per_method={"dsr-if": {"sweep": {"v_th": ["a/b"]}}})],
         "value 'a/b' cannot be a path segment"),
        ([experiment(per_method={"dsr-if": {"sweep": {"v_th": []}}})],
         "config: experiments.0.per_method.dsr-if.sweep.v_th"),
        ([experiment(methods=["conversion"], time_steps=[2, 128], firing_rates=[])],
         "experiment 'digits': latency_sweep 64 is below its largest time step 128; set "
         "latency_sweep to at least 128"),
        ([experiment(methods=["ann", "conversion"], firing_rates=[],
                     per_method={"conversion": {"epochs": 3}})],
         "per_method.conversion.epochs: conversion never trains (it converts the 'ann' run's "
         "model.pt); set epochs under per_method.ann"),
        ([experiment(methods=["conversion"], firing_rates=[],
                     per_method={"conversion": {"set": {"lr": 0.05, "percentile": 99}}})],
         "per_method.conversion.set.lr: conversion never trains"),
    ],
    ids=["schema", "dataset", "firing-rates", "duplicate-name", "conflicting-run",
         "sweep-two-params", "sweep-and-set", "sweep-firing-rates", "sweep-bad-value",
         "sweep-empty", "latency-sweep", "conversion-epochs", "conversion-set"],
)
def test_config_errors_are_one_line(experiments: list, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)) as e:
        Grid(config(*experiments))
    assert "\n" not in str(e.value)
