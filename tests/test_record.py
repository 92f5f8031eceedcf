"""RunRecord, metrics.json's one typed record: every committed result reads and writes back
byte for byte, a record written is the record read, a file the class does not describe is a
one-line error, and the pipeline reads records through the class."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from dsr import REPO_ROOT
from dsr.harness.record import LatencySweep, RunRecord, SweepPoint
from dsr.harness.results import ResultError
from pipeline import collect

COMMITTED = sorted((REPO_ROOT / "results").rglob("metrics.json"))


def test_there_are_committed_results_of_both_kinds():
    kinds = {RunRecord.read(p).latency_sweep is None for p in COMMITTED}
    assert len(COMMITTED) >= 10 and kinds == {True, False}  # training and conversion runs


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_committed_result_round_trips_byte_for_byte(path: Path, tmp_path: Path):
    rec = RunRecord.read(path)
    rec.write(tmp_path / "metrics.json")
    assert (tmp_path / "metrics.json").read_bytes() == path.read_bytes()
    assert RunRecord.read(tmp_path / "metrics.json") == rec
    assert rec.to_json() == json.loads(path.read_text())


def test_parts_are_typed_and_optional_fields_left_out_when_none(tmp_path: Path):
    conversion = next(p for p in COMMITTED if "/conversion/" in str(p))
    rec = RunRecord.read(conversion)
    assert isinstance(rec.latency_sweep, LatencySweep)
    assert all(isinstance(p, SweepPoint) for p in rec.latency_sweep.points)
    assert rec.latency_sweep.points[-1].T == rec.latency_sweep.T_max == rec.time_steps
    assert rec.converted_from.method == "ann" and rec.cost.eval_seconds > 0
    trained = dataclasses.replace(rec, latency_sweep=None, converted_from=None)
    trained.write(tmp_path / "metrics.json")
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert "latency_sweep" not in written and "converted_from" not in written
    assert written["accuracy"]["validation_selected"] is None  # always written, null included


@pytest.mark.parametrize(("change", "says"), [
    (lambda m: m.update(extra=1), "unknown field 'extra'"),
    (lambda m: m["accuracy"].update(typo=1), "accuracy: unknown field 'typo'"),
    (lambda m: m["accuracy"].pop("validation_selected"), "validation_selected"),
    (lambda m: m["firing_rate"].update(total=2.0), "field firing_rate/total"),
])
def test_a_file_the_class_does_not_describe_is_a_one_line_error(change, says, tmp_path: Path):
    raw = json.loads(COMMITTED[0].read_text())
    change(raw)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultError) as e:
        RunRecord.read(path)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_collect_reads_records_through_the_class(tmp_path: Path):
    path = next(p for p in COMMITTED if "/conversion/" in str(p))
    copy = tmp_path / "metrics.json"
    shutil.copy(path, copy)
    raw = json.loads(path.read_text())
    cell = {"experiment": "e", "dataset": raw["dataset"], "arch": raw["arch"],
            "method": raw["method"], "T": raw["time_steps"], "seed": raw["seed"],
            "path": str(copy), "hash": raw["config_hash"], "sweep": True,
            "points": [p["T"] for p in raw["latency_sweep"]["points"]]}
    got = collect.collect([cell], [{"name": "e", "firing_rates": [raw["method"]]}], strict=True)
    rows = got.runs.set_index("T")
    for point in raw["latency_sweep"]["points"]:
        assert rows.loc[point["T"], "acc_best"] == pytest.approx(100 * point["accuracy"])
        assert rows.loc[point["T"], "synops_ac"] == point["synops"]
    assert list(got.layers["layer"]) == raw["firing_rate"]["layer_names"]
    assert rows.loc[raw["time_steps"], "firing_rate"] == pytest.approx(
        100 * raw["firing_rate"]["total"])
