"""The rule scripts' shared plumbing (pipeline.build): the rule log and its one-line errors."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from dsr.harness.results import ResultError
from pipeline.build import rule_log


def test_rule_log_copies_stderr_and_starts_afresh(tmp_path: Path, capsys) -> None:
    log = tmp_path / "logs" / "tables.log"
    log.parent.mkdir()
    log.write_text("an earlier run's log\n")
    with rule_log(SimpleNamespace(log=[str(log)])) as f:
        print("a warning", file=sys.stderr)
        f.write("summary\n")
    assert log.read_text() == "a warning\nsummary\n"
    assert capsys.readouterr().err == "a warning\n"  # still on the terminal too


def test_rule_log_turns_a_result_error_into_one_line_and_exit_1(tmp_path: Path, capsys) -> None:
    log = tmp_path / "new" / "figures.log"  # its folder is made
    with pytest.raises(SystemExit) as e, rule_log(SimpleNamespace(log=[str(log)])):
        raise ResultError("results/x/metrics.json: not valid JSON; delete it and rerun its job")
    assert e.value.code == 1
    line = "error: results/x/metrics.json: not valid JSON; delete it and rerun its job\n"
    assert log.read_text() == line and capsys.readouterr().err == line


def test_rule_log_keeps_an_unexpected_traceback(tmp_path: Path) -> None:
    log = tmp_path / "from_cache.log"
    with pytest.raises(KeyError), rule_log(SimpleNamespace(log=[str(log)])):
        {}["missing"]
    text = log.read_text()
    assert text.startswith("Traceback") and "KeyError: 'missing'" in text


def test_rule_log_without_a_log_still_reports_errors(capsys) -> None:
    with pytest.raises(SystemExit), rule_log(SimpleNamespace(log=[])) as f:
        assert f is None
        raise ResultError("bad")
    assert capsys.readouterr().err == "error: bad\n"
