"""The configured grid as plain Python (pipeline.grid): config checks, run expansion, cells,
resources, trainer arguments and output paths, without Snakemake. test_workflow.py checks the
same grid through the `snakemake` CLI (dry runs, lint, the tables and figures it writes)."""

import copy
import re

import pytest

from dsr import REPO_ROOT as ROOT
from dsr import registry
from dsr.config import ConfigError
from dsr.harness.resolve import resolve
from pipeline.configs import load_config
from pipeline.grid import Grid, check_config
from tests.experiments import experiment


def config(*experiments: dict, **top) -> dict:
    cfg = {"name": "t", "results_dir": "res", "tables_dir": "tab",
           "published": "paper_tables/published.csv", "experiments": list(experiments), **top}
    return check_config(copy.deepcopy(cfg), ROOT)


def test_every_built_in_class_takes_its_facts_from_its_spec() -> None:
    """One home: a registered class's name, category, neuron, modes, per-dataset defaults and
    conversion source are its spec's; a run with default hyperparameters records the spec's
    neuron, and resolution takes the spec's defaults (QCFS's L by dataset)."""
    for key, spec in registry.METHODS.items():
        cls = registry.get(key)
        assert (cls.name, cls.category, cls.source_method, cls.modes, cls.defaults) == (
            spec.name, spec.category, spec.source, spec.modes, spec.defaults)
        cfg, method_cls = resolve(key, "digits", 4, 0)
        assert method_cls(cfg).neuron == spec.neuron and cfg.mode == spec.modes[0]
    assert resolve("qcfs", "cifar10", 4, 0)[0].params["L"] == 4
    assert resolve("qcfs", "imagenet", 4, 0)[0].params["L"] == 16
    assert resolve("qcfs", "imagenet", 4, 0, overrides={"L": "8"})[0].params["L"] == 8
    grid = Grid(config(experiment(methods=["dsr-if", "ann", "conversion", "qcfs"],
                                  firing_rates=[], per_method={"ann": {"time_steps": [1]}})))
    assert grid.conversion == {"conversion": "ann", "qcfs": "qcfs"}
    (exp,) = grid.experiments()
    assert exp["specs"]["conversion"]["category"] == "ANN-to-SNN conversion"


def test_grid_is_archs_x_methods_x_steps_x_seeds_with_one_cell_each() -> None:
    grid = Grid(config(experiment()))
    assert len(grid.runs) == len(grid.cells) == 2 * 2 * 2
    cell = grid.cells[0]
    cfg, _ = resolve("dsr-if", "digits", 2, 0, arch="preact_resnet8", epochs=5)
    assert cell["hash"] == cfg.hash  # the planner resolves a run exactly as the trainer does
    assert cell["path"] == f"res/runs/digits/preact_resnet8/dsr-if/T2/seed0/{cfg.hash}/metrics.json"
    assert (cell["epochs"], cell["mode"], cell["set"], cell["sweep"]) == (5, None, {}, None)
    assert grid.metrics_files()[0] == cell["path"]
    assert len({c["hash"] for c in grid.cells}) == 8


def test_run_folder_follows_every_setting_and_only_those() -> None:
    """A changed setting is a new folder beside the old one; where the data lives is not."""
    base = experiment(methods=["dsr-if"], time_steps=[2], seeds=[0], firing_rates=[])
    (key,) = Grid(config(base)).runs
    for changed in (dict(epochs=6), dict(set={"lr": 0.05}), dict(set={"v_th": 2}),
                    dict(per_method={"dsr-if": {"mode": "exact"}})):
        (other,) = Grid(config({**base, **changed})).runs
        assert other != key and other.rsplit("/", 1)[0] == key.rsplit("/", 1)[0]
    for same in (dict(set={"v_th": 6}), dict(set={"data_root": "/elsewhere"}),
                 dict(set={"v_th": "6.0"})):  # the default value, a non-identity setting
        assert list(Grid(config({**base, **same})).runs) == [key]


def test_sweep_is_one_run_and_cell_per_value() -> None:
    exp = experiment(methods=["dsr-if"], time_steps=[2], seeds=[0], firing_rates=[],
                     set={"lr": 0.05}, per_method={"dsr-if": {"sweep": {"v_th": [1, 2.5]}}})
    grid = Grid(config(exp))
    assert len(grid.runs) == 2 and {k.rsplit("/", 1)[0] for k in grid.runs} == {
        "runs/digits/preact_resnet8/dsr-if/T2/seed0"}
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
    by = {(r.method, r.T): r for r in grid.runs.values()}
    assert sorted(by) == [("ann", 1), ("conversion", 64), ("qcfs", 1), ("qcfs", 64)]
    conv = by["conversion", 64]
    assert conv.source == by["ann", 1].key and conv.points == (2,)
    assert dict(conv.overrides) == {"lr": "0.05"}  # the ANN's training settings
    assert by["qcfs", 64].source == by["qcfs", 1].key
    # a conversion's identity includes the model it converts
    ann, _ = resolve("ann", "digits", 1, 0, arch="preact_resnet8", epochs=5,
                     overrides={"lr": "0.05"})
    mine, _ = resolve("conversion", "digits", 64, 0, arch="preact_resnet8", epochs=5,
                      overrides={"lr": "0.05"}, source=ann.hash)
    assert (by["ann", 1].hash, conv.hash) == (ann.hash, mine.hash)
    assert sorted(grid.model_keys()) == sorted([by["ann", 1].key, by["qcfs", 1].key])
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
    assert entry["cost"]["md"] == "tab/t/digits_cost.md"
    # no latency figure: it plots conversion sweeps, and the experiment converts nothing
    assert set(entry["figures"]) == {"accuracy_vs_T", "pareto", "cost", "memory", "firing_rates",
                                     "sweep"}
    assert (out["runs_csv"], out["missing"]) == ("tab/t/runs.csv", "tab/t/MISSING.md")
    assert grid.claims()["test"] == ["absolute", "relative", "band", "latency", "depth", "memory"]
    converts = Grid(config(experiment(methods=["dsr-if", "ann", "conversion"], firing_rates=[],
                                      per_method={"ann": {"time_steps": [1]}})))
    assert set(converts.outputs()["experiments"]["digits"]["figures"]) == {
        "accuracy_vs_T", "pareto", "cost", "memory", "latency"}


def test_paper_and_default_configs_build() -> None:
    for name in ("config", "paper", "reduced"):
        cfg = load_config([ROOT / "config" / f"{name}.yaml"], {}, ROOT)
        grid = Grid(check_config(cfg, ROOT))
        assert grid.cells and set(grid.resources) == set(grid.runs)


@pytest.mark.parametrize(
    ("experiments", "expected"),
    [
        ([experiment(time_steps=[0])], "config: experiments.0.time_steps.0: 0 is less than"),
        ([experiment(dataset="mnist")], "unknown dataset 'mnist'; choose one of cifar10, "),
        ([experiment(firing_rates=["tet"])], "firing_rates names tet"),
        ([experiment(), experiment()], "experiment name 'digits' is used twice"),
        ([experiment(firing_rates=[], per_method={"dsr-if": {"sweep": {"v_th": [1, "1"]}}})],
         "per_method.dsr-if.sweep gives v_th=1 and v_th=1, the same setting (one run)"),
        ([experiment(firing_rates=[], per_method={"dsr-if": {"sweep": {"v_th": [2, "2.0"]}}})],
         "per_method.dsr-if.sweep gives v_th=2 and v_th=2.0, the same setting (one run)"),
        ([experiment(set={"learning_rate": 0.1})], "unknown key(s) learning_rate for --set"),
        ([experiment(set={"lr": "fast"})], "--set lr=fast: expected a number"),
        ([experiment(seeds=[2**32])], "config: experiments.0.seeds.0: 4294967296 is greater"),
        ([experiment(per_method={"dsr-lif": {"sweep": {"v_th": [1], "alpha": [0.5]}}})],
         "per_method.dsr-lif.sweep names 2 parameters"),
        ([experiment(set={"v_th": 2}, per_method={"dsr-lif": {"sweep": {"v_th": [1, 3]}}})],
         "per_method.dsr-lif both sets and sweeps v_th"),
        ([experiment(per_method={"dsr-if": {"sweep": {"v_th": [1, 3]}}})],
         "firing_rates names dsr-if, whose v_th is swept"),
        ([experiment(firing_rates=[], per_method={"dsr-if": {"sweep": {"v_th": ["a/b"]}}})],
         "value 'a/b' cannot be a table label"),
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
    ids=["schema", "dataset", "firing-rates", "duplicate-name", "same-sweep-value",
         "same-sweep-number", "unknown-set-key", "bad-set-value", "seed-range",
         "sweep-two-params", "sweep-and-set", "sweep-firing-rates", "sweep-bad-value",
         "sweep-empty", "latency-sweep", "conversion-epochs", "conversion-set"],
)
def test_config_errors_are_one_line(experiments: list, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)) as e:
        Grid(config(*experiments))
    assert "\n" not in str(e.value)


def test_results_dir_that_is_a_file_is_a_one_line_error(tmp_path) -> None:
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(ConfigError, match="results_dir .* is a file, not a folder") as e:
        Grid(config(experiment(), results_dir=str(tmp_path / "results")))
    assert "\n" not in str(e.value)
