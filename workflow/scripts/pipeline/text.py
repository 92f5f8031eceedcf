"""Cells and whole tables as text: numbers, Markdown and LaTeX (escaped)."""

import math

import pandas as pd

from pipeline.names import DASH


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.2f}"


def amount(value: float | None) -> str:
    """SynOps / energy: readable at any magnitude."""
    if value is None or math.isnan(value):
        return DASH
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return DASH
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}"}
LATEX_SYMBOLS = {"`": "", "−": "$-$", "±": r"$\pm$", "†": r"$^\dagger$", "‡": r"$^\ddagger$",
                 "✗": r"$^\times$", "–": "--",
                 "µ": r"$\mu$", "Δ": r"$\Delta$"}


def latex_escape(text: str) -> str:
    text = "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for symbol, tex in LATEX_SYMBOLS.items():
        text = text.replace(symbol, tex)
    return text


def latex_table(header: list[str], rows: list[list[str]], caption: str, label: str,
                notes: list[str]) -> str:
    cols = "l" * 3 + "r" * (len(header) - 3)
    body = [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    lines = [r"\begin{table}[t]", r"\centering", r"\scriptsize",
             rf"\caption{{{latex_escape(caption)}}}", rf"\label{{tab:{label}}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule", *body,
             r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip{{\footnotesize {latex_escape(n)}}}" for n in notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def energy_model(runs: pd.DataFrame | None) -> str:
    """The pJ per AC and per MAC the runs recorded, e.g. '0.9 pJ/AC, 4.6 pJ/MAC'."""
    parts = []
    for column, unit in (("pj_per_ac", "AC"), ("pj_per_mac", "MAC")):
        values = (sorted(runs[column].dropna().unique())
                  if runs is not None and column in runs else [])
        if values:
            parts.append(" or ".join(f"{v:g}" for v in values) + f" pJ/{unit}")
    return ", ".join(parts) if parts else "energy model not recorded"
