"""What the rule scripts run: every table of a configuration from its cache, written atomically,
with the script's stderr in the rule's log.

`build_tables` is the one path from cached metrics to table text, shared by the `tables` rule
(strict: every run must exist and be current) and `figures_from_cache` (what exists is rendered,
the rest listed in MISSING.md). Every input is read and checked before anything is written, and
each file is replaced atomically, so a corrupt metrics file leaves the previous tables as they
were.
"""

import contextlib
import dataclasses
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pandas as pd

from dsr.harness.results import ResultError, atomic_write_text
from pipeline import names, tuning
from pipeline.claims import claims_files
from pipeline.collect import Collected, collect
from pipeline.published import load_published
from pipeline.render import render_tables


@dataclass
class Tables:
    files: dict[str, str]  # every table file's text, by path
    summary: str  # what is cached, missing or stale, in a few lines
    collected: Collected
    published: pd.DataFrame


def build_tables(params, published: str | Path, strict: bool) -> Tables:
    """Tables, claims, runs.csv and MISSING.md of one configuration (`params`: the rule's
    Snakemake params: name, cells, experiments, outputs, claims)."""
    names.use_specs(params.experiments)
    pub = load_published(published)
    col = collect(params.cells, params.experiments, strict=strict)
    # runs.csv lists every run; the tables, figures and claims show a tuned experiment's
    # selected candidates as its rows
    listed = tuning.mark(col.runs, params.cells, params.experiments)
    shown = dataclasses.replace(col, runs=tuning.view(listed, params.experiments))
    cells = tuning.cells(params.cells, params.experiments)
    files, summary = render_tables(params.name, cells, params.experiments, params.outputs,
                                   shown, pub)
    files[params.outputs["runs_csv"]] = listed.to_csv(index=False)
    for exp in params.experiments:
        if exp.get("tuned"):
            paths = params.outputs["experiments"][exp["name"]]["tuning"]
            files.update(tuning.tuning_files(exp, listed, params.cells, paths))
    files.update(claims_files(params, cells, shown, pub))
    return Tables(files, summary, dataclasses.replace(col, runs=listed), pub)


def write_all(files: dict[str, str]) -> None:
    for path, text in files.items():
        atomic_write_text(path, text)


class _Tee:
    """A text stream that writes to two (the terminal and the rule's log)."""

    def __init__(self, *streams: TextIO):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


@contextlib.contextmanager
def rule_log(smk) -> Iterator[TextIO | None]:
    """Run a rule script's body with its stderr (warnings included) copied to the rule's log,
    started afresh; yields the log for the script's own summary. A ResultError ends it as one
    line, `error: ...`, there and on the terminal, and exit 1; any other error's traceback
    goes to the log before it propagates."""
    path = smk.log[0] if smk.log else None
    with contextlib.ExitStack() as stack:
        log = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            log = stack.enter_context(open(path, "w"))
            stack.enter_context(contextlib.redirect_stderr(_Tee(sys.stderr, log)))
        try:
            yield log
        except ResultError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        except Exception:
            if log is not None:
                log.write(traceback.format_exc())
            raise
