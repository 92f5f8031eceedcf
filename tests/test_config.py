"""--set values: one text encoding (`format_value` / `parse_value`) for the CLI, the workflow's
trainer arguments and the staleness check of cached runs."""

from __future__ import annotations

import pytest

from dsr.config import ConfigError, format_value, parse_value
from pipeline import collect


@pytest.mark.parametrize("value, typ, text", [
    (None, float | None, "none"),
    (True, bool, "true"),
    (False, bool, "false"),
    (3, int, "3"),
    (None, int | None, "none"),
    (0.05, float, "0.05"),
    (1e-3, float, "0.001"),
    ("first900", str, "first900"),
])
def test_format_then_parse_is_the_identity(value, typ, text):
    assert format_value(value) == text
    assert parse_value("key", format_value(value), typ) == value


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "NaN", "Infinity"])
def test_non_finite_numbers_are_refused(raw):
    with pytest.raises(ConfigError, match=f"--set v_th={raw}: expected a finite number"):
        parse_value("v_th", raw, float)


@pytest.mark.parametrize("recorded, raw, same", [
    (0.1, "0.1", True), (0.1, "0.10", True), (0.1, "0.05", False), (0.1, "fast", False),
    (4, "4", True), (4, "4.0", True), (4, "5", False),
    (True, "yes", True), (True, "false", False), (None, "none", True), (None, "3", False),
    ("first900", "first900", True), ("first900", "last900", False), (0.1, "none", False),
])
def test_aggregate_reads_set_text_as_the_trainer_does(recorded, raw, same):
    assert collect.same_value(recorded, raw) is same
