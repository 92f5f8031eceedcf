"""paper_tables/published.csv: read and checked, matched to table cells, cited as footnotes.

Each row is one published accuracy with its source and a `status` saying how that source was
checked; a table cell shows every row that compares with it (same dataset, arch and T, the cell's
method in `compares_with`), numbered in order of first use and marked by status.
"""

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dsr.harness.results import ResultError
from pipeline.names import DASH, display

PUBLISHED_COLUMNS = ["table", "dataset", "arch", "method", "compares_with", "category", "neuron",
                     "time_steps", "accuracy", "std", "status", "source"]
# published.csv `status`: how the value was checked, and its mark beside the number
STATUS_MARK = {"confirmed-primary": "", "confirmed-secondary": "‡", "not-found": "†",
               "contradicted": "✗"}
STATUS_MEANING = {"confirmed-primary": "confirmed in the primary source",
                  "confirmed-secondary": "confirmed by a later paper that quotes it",
                  "not-found": "no citable source found yet",
                  "contradicted": "a source contradicts it"}


def status_legend() -> str:
    """What each published-value mark means, in one sentence."""
    marks = [f"{m} = {STATUS_MEANING[s]}" for s, m in STATUS_MARK.items() if m]
    return (f"Published marks: {'; '.join(marks)}; unmarked = "
            f"{STATUS_MEANING['confirmed-primary']}.")


def load_published(path: str | Path) -> pd.DataFrame:
    """published.csv, checked: the columns above, numeric accuracy, a known status, a source."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as e:
        raise ResultError(f"{path}: cannot read published values ({e}); see "
                          "paper_tables/README.md for the format") from None
    absent = [c for c in PUBLISHED_COLUMNS if c not in df.columns]
    if absent:
        raise ResultError(f"{path}: missing column(s) {', '.join(absent)}; expected "
                          f"{','.join(PUBLISHED_COLUMNS)}")
    for i, row in df.iterrows():
        where = f"{path}: row {i + 2}"
        for col in ("accuracy", "std", "time_steps"):
            text = row[col].strip()
            if text == "" and col != "accuracy":
                continue
            try:
                float(text)
            except ValueError:
                raise ResultError(f"{where}: {col} {text!r} is not a number") from None
        if row["status"] not in STATUS_MARK:
            raise ResultError(f"{where}: status {row['status']!r}; use one of "
                              f"{', '.join(STATUS_MARK)}")
        if not row["source"].strip():
            raise ResultError(f"{where}: no source; name the document the value comes from")
    df["accuracy"] = df["accuracy"].astype(float)
    df["std"] = pd.to_numeric(df["std"].replace("", None))
    df["time_steps"] = pd.to_numeric(df["time_steps"].replace("", None))
    df["keys"] = df["compares_with"].map(lambda s: {k.strip() for k in s.split(";") if k.strip()})
    return df


def published_for(published: pd.DataFrame, dataset: str, arch: str, method: str,
                  T: int) -> pd.DataFrame:
    hit = ((published["dataset"] == dataset) & (published["arch"] == arch)
           & (published["time_steps"] == T) & published["keys"].map(lambda k: method in k))
    return published[hit]


@dataclass
class Sources:
    """Footnote numbers of the published rows a table cites, in order of first use."""

    rows: list[pd.Series] = field(default_factory=list)

    def ref(self, row: pd.Series) -> int:
        for i, known in enumerate(self.rows):
            if known.name == row.name:
                return i + 1
        self.rows.append(row)
        return len(self.rows)


def published_text(rows: pd.DataFrame, sources: Sources) -> str:
    parts = []
    for _, row in rows.iterrows():
        std = "" if pd.isna(row["std"]) else f" ± {row['std']:.2f}"
        parts.append(f"{row['accuracy']:.2f}{std} [{sources.ref(row)}]{STATUS_MARK[row['status']]}")
    return "; ".join(parts) if parts else DASH


def source_lines(sources: Sources) -> list[str]:
    lines = []
    for i, r in enumerate(sources.rows, 1):
        T = "" if pd.isna(r["time_steps"]) else f", T = {int(r['time_steps'])}"
        mark = STATUS_MARK[r["status"]]
        lines.append(f"[{i}] {r['method']} ({r['neuron']}), {display(r['arch'])}{T}: "
                     f"{r['source']} ({mark + ' ' if mark else ''}{r['status']})")
    return lines
