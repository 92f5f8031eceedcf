"""The tuned ruleset (pipeline.tuning): the validation split a run holds out, the candidates the
grid plans, the checks that keep the budget equal, and a selection that never reads the test
set. The whole path through Snakemake (claims under both rulesets) is in
test_claims.test_default_grid_writes_a_verdict_for_every_applicable_claim."""

import copy

import pandas as pd
import pytest
import torch

from dsr import data
from dsr.config import ConfigError, RunConfig, TrainConfig, identity
from dsr.harness.record import Validation, accuracy_record
from dsr.harness.resolve import resolve
from pipeline import tuning
from pipeline.grid import Grid
from tests.experiments import experiment
from tests.test_grid import config


def tuned(**changes) -> dict:
    exp = experiment(name="tuned", methods=["dsr-if", "sg-bptt"], time_steps=[4], seeds=[0, 1],
                     firing_rates=[], per_method={"dsr-if": {"tune": {"v_th": [6, 2]}},
                                                  "sg-bptt": {"tune": {"alpha": [2, 4]}}})
    exp.update(changes)
    return exp


# ---- the validation split -----------------------------------------------------------------


def test_validation_split_is_held_out_balanced_and_the_same_for_every_run() -> None:
    digits = data.load("digits")
    split = digits.with_validation(0.2)
    n = digits.split_size("train")
    assert split.split_size("val") == round(0.2 * n)
    assert split.split_size("train") + split.split_size("val") == n
    assert split.info.train_size == n - round(0.2 * n)
    assert split.split_size("test") == digits.split_size("test")  # the test set is untouched
    # disjoint from what is trained on, and balanced: at most one more of a class than another
    x_train, _ = next(split.batches("train", n, shuffle=False, augment=False))
    x_val, y_val = next(split.batches("val", n))
    rows = {tuple(r.flatten().tolist()) for r in x_train}
    assert not any(tuple(r.flatten().tolist()) in rows for r in x_val)
    counts = torch.bincount(y_val, minlength=10)
    assert int(counts.max() - counts.min()) <= 1
    again = data.load("digits").with_validation(0.2)
    assert torch.equal(next(again.batches("val", n))[1], y_val)


def test_validation_fraction_is_checked() -> None:
    with pytest.raises(ConfigError, match="val_fraction must be in"):
        TrainConfig(val_fraction=1.0)
    with pytest.raises(data.DataError, match="smaller val_fraction"):
        data.load("digits").with_validation(0.999)


def test_no_validation_leaves_every_earlier_identity() -> None:
    cfg, _ = resolve("dsr-if", "digits", 4, 0, arch="preact_resnet8", epochs=5)
    assert "val_fraction" not in identity(cfg)["train"]
    held, _ = resolve("dsr-if", "digits", 4, 0, arch="preact_resnet8", epochs=5,
                      overrides={"val_fraction": "0.2"})
    assert identity(held)["train"]["val_fraction"] == 0.2 and held.hash != cfg.hash


def test_validation_selected_is_the_test_accuracy_at_the_best_validation_epoch() -> None:
    cfg: RunConfig = resolve("dsr-if", "digits", 4, 0, overrides={"val_fraction": "0.2"})[0]
    history = {"accuracy": [0.5, 0.9, 0.7, 0.8], "val_accuracy": [0.6, 0.7, 0.9, 0.9]}
    acc = accuracy_record(cfg, history)
    assert (acc.best, acc.best_epoch) == (0.9, 2)  # the paper's best test epoch
    assert acc.validation == Validation(fraction=0.2, per_epoch=[0.6, 0.7, 0.9, 0.9], best=0.9,
                                        best_epoch=3)
    assert acc.validation_selected == 0.7  # epoch 3: the first with the best validation
    assert accuracy_record(cfg, {"accuracy": [0.5]}).validation_selected is None


# ---- planning --------------------------------------------------------------------------------


def test_every_candidate_is_a_run_with_the_validation_split() -> None:
    grid = Grid(config(tuned(validation=0.25)))
    assert len(grid.runs) == 2 * 2 * 2  # methods x candidates x seeds
    labels = sorted({(r.method, r.variant) for r in grid.runs.values()})
    assert labels == [("dsr-if", "v_th=2"), ("dsr-if", "v_th=6"), ("sg-bptt", "alpha=2"),
                      ("sg-bptt", "alpha=4")]
    assert all(dict(r.overrides)["val_fraction"] == "0.25" for r in grid.runs.values())
    (exp,) = grid.experiments()
    assert (exp["tuned"], exp["validation"]) == (True, 0.25)
    assert set(grid.outputs()["experiments"]["tuned"]["tuning"]) == {"md", "tex", "csv"}
    product = tuning.candidates({"v_th": [1, 2], "lr": [0.1, 0.05]})
    assert [label for label, _ in product] == ["v_th=1,lr=0.1", "v_th=1,lr=0.05",
                                               "v_th=2,lr=0.1", "v_th=2,lr=0.05"]


@pytest.mark.parametrize(("changes", "message"), [
    (dict(per_method={"dsr-if": {"tune": {"v_th": [6, 2, 1]}},
                      "sg-bptt": {"tune": {"alpha": [2, 4]}}}),
     r"different numbers of candidates \(dsr-if 3, sg-bptt 2\)"),
    (dict(per_method={"dsr-if": {"tune": {"v_th": [6, 2]}}}),
     "sg-bptt has no per_method tune block"),
    (dict(methods=["dsr-if", "sg-bptt", "conversion"]), "conversion trains nothing to tune"),
    (dict(per_method={"dsr-if": {"tune": {"v_th": [6, 2]}, "sweep": {"lr": [0.1, 0.2]}},
                      "sg-bptt": {"tune": {"alpha": [2, 4]}}}), "both sweeps and tunes"),
    (dict(set={"v_th": 3}), "both sets and tunes v_th"),
    (dict(set={"val_fraction": 0.1}), "val_fraction is set by hand"),
    (dict(firing_rates=["dsr-if"]), "firing_rates in a tuned experiment"),
    (dict(per_method={"dsr-if": {"tune": {"v_th": [6, "6.0"]}},
                      "sg-bptt": {"tune": {"alpha": [2, 4]}}}), "tune gives v_th=6 and v_th=6.0"),
])
def test_unequal_or_unclear_tuning_is_refused_in_one_line(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        Grid(config(tuned(**changes)))
    assert "\n" not in str(err.value)


def test_claims_tuned_must_name_a_tuned_experiment() -> None:
    plain = experiment(name="plain", firing_rates=[])
    cfg = config(tuned(), plain, claims={"tuned": {"cifar10": "plain"}})
    with pytest.raises(ConfigError, match="claims.tuned maps cifar10 to 'plain', which is not"):
        Grid(cfg)


# ---- selection -------------------------------------------------------------------------------


def runs_of(rows: list[tuple]) -> pd.DataFrame:
    """(method, candidate, seed, validation %, test % at that epoch, best test %, diverged)."""
    return pd.DataFrame([{"experiment": "tuned", "arch": "preact_resnet8", "method": m, "T": 4,
                          "variant": v, "seed": s, "acc_val": val, "acc_val_selected": test,
                          "acc_best": best, "diverged_epoch": div}
                         for m, v, s, val, test, best, div in rows])


def cells_of(grid: Grid) -> list[dict]:
    return copy.deepcopy(grid.cells)


def test_selection_reads_validation_only_and_reports_that_epochs_test_accuracy() -> None:
    grid = Grid(config(tuned()))
    (exp,) = grid.experiments()
    runs = runs_of([
        # v_th = 6 has the better best-epoch test accuracy, v_th = 2 the better validation
        ("dsr-if", "v_th=6", 0, 90.0, 88.0, 99.0, None),
        ("dsr-if", "v_th=6", 1, 91.0, 89.0, 99.0, None),
        ("dsr-if", "v_th=2", 0, 95.0, 93.0, 94.0, None),
        ("dsr-if", "v_th=2", 1, 94.0, 92.0, 94.0, None),
        # alpha = 4's diverged run counts 0 (its other run alone would win)
        ("sg-bptt", "alpha=2", 0, 90.0, 85.0, 86.0, None),
        ("sg-bptt", "alpha=2", 1, 90.0, 86.0, 87.0, None),
        ("sg-bptt", "alpha=4", 0, 100.0, 95.0, 96.0, 3.0),
        ("sg-bptt", "alpha=4", 1, 95.0, 90.0, 91.0, None),
    ])
    marked = tuning.mark(runs, grid.cells, [exp])
    chosen = marked[marked["selected"] == True]  # noqa: E712
    assert sorted(set(zip(chosen["method"], chosen["variant"], strict=True))) == [
        ("dsr-if", "v_th=2"), ("sg-bptt", "alpha=2")]
    shown = tuning.view(marked, [exp])
    dsr = shown[shown["method"] == "dsr-if"].sort_values("seed")
    assert list(dsr["acc_best"]) == [93.0, 92.0]  # the test accuracy at the validation epoch
    assert set(dsr["tuned"]) == {"v_th=2"} and dsr["variant"].isna().all()
    assert len(shown) == 4  # the other candidates are not rows of the table
    table = tuning.cells(grid.cells, [exp])
    assert len(table) == 4 and all(c["variant"] is None for c in table)
    paths = {"md": "t.md", "tex": "t.tex", "csv": "t.csv"}
    files = tuning.tuning_files(exp, marked, grid.cells, paths)
    evidence = pd.read_csv(pd.io.common.StringIO(files["t.csv"]))
    assert list(evidence["selected"]) == [False, True, True, False]  # v_th 6, 2; alpha 2, 4
    assert "| DSR (IF) | PreAct-ResNet-8 | 4 | v_th = 2 | 2/2 | 94.50 ± 0.71" in files["t.md"]


def test_a_tie_selects_the_first_listed_candidate() -> None:
    runs = runs_of([("dsr-if", "v_th=6", 0, 90.0, 80.0, 80.0, None),
                    ("dsr-if", "v_th=2", 0, 90.0, 95.0, 95.0, None)])
    assert tuning.choose(runs, ["v_th=6", "v_th=2"], {"v_th=6": 1, "v_th=2": 1}) == "v_th=6"
    assert tuning.choose(runs, ["v_th=2", "v_th=6"], {"v_th=6": 1, "v_th=2": 1}) == "v_th=2"


def test_no_selection_while_a_candidate_run_is_missing() -> None:
    grid = Grid(config(tuned()))
    (exp,) = grid.experiments()
    runs = runs_of([("dsr-if", "v_th=6", 0, 90.0, 88.0, 99.0, None),
                    ("dsr-if", "v_th=6", 1, 91.0, 89.0, 99.0, None),
                    ("dsr-if", "v_th=2", 0, 95.0, 93.0, 94.0, None)])
    marked = tuning.mark(runs, grid.cells, [exp])
    assert not (marked["selected"] == True).any()  # noqa: E712
    assert tuning.view(marked, [exp]).empty


def test_a_run_with_a_validation_split_records_it(tmp_path) -> None:
    """The whole CLI: the run trains on the rest of the training set and records validation
    accuracy per epoch and the test accuracy at its best validation epoch."""
    import json
    import subprocess
    import sys

    from dsr import REPO_ROOT

    out = tmp_path / "metrics.json"
    subprocess.run([sys.executable, "-m", "dsr.run", "--method", "dsr-if", "--dataset",
                    "digits", "--time-steps", "2", "--epochs", "2", "--set",
                    "val_fraction=0.2", "--out", str(out)], cwd=REPO_ROOT, check=True,
                   capture_output=True, timeout=300)
    m = json.loads(out.read_text())
    acc, full = m["accuracy"], data.load("digits").split_size("train")
    assert m["data"]["train_size"] == full - round(0.2 * full)
    assert len(acc["validation"]["per_epoch"]) == 2 and acc["validation"]["fraction"] == 0.2
    chosen = acc["validation"]["best_epoch"] - 1
    assert acc["validation_selected"] == acc["per_epoch"][chosen]
    assert m["config"]["train"]["val_fraction"] == 0.2
