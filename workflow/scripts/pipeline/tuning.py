"""The tuned ruleset: the same tuning budget for every method, selected on validation only.

An experiment is tuned when its methods carry `per_method.<key>.tune` blocks (parameters and
their values; every combination is one candidate). Every method of a tuned experiment tunes,
with as many candidates as the others, and every candidate run holds out the same share of the
training set as a validation split (`validation`, TrainConfig.val_fraction: the same images for
every run, seed and method). Per (arch, method, T) the candidate with the highest validation
accuracy, averaged over the seeds (each run's best epoch on validation), is selected, the first
listed on a tie; its runs are the experiment's row, and their accuracy is the test accuracy at
their best validation epoch (metrics.json accuracy.validation_selected). No choice, of a
candidate or of an epoch, looks at the test set. While any candidate's run is missing the
selection waits (the row shows "not run" and MISSING.md lists the runs).

Planning: `check` and `candidates` (pipeline.grid). Rendering: `mark` adds each candidate run's
`selected` flag (runs.csv), `view` turns the runs into the experiment's table rows, `cells`
its table cells, and `tuning_files` writes the evidence: every candidate's validation and test
accuracy, and which was selected ({experiment}_tuning.{md,tex,csv}).
"""

import itertools
import re

import pandas as pd

from dsr.config import ConfigError, format_value
from pipeline.names import display
from pipeline.text import latex_table, markdown_table, pm

DEFAULT_VALIDATION = 0.2  # the share of the training set a tuned experiment's runs hold out


def tuned(exp: dict) -> bool:
    return any(per.get("tune") for per in (exp.get("per_method") or {}).values())


def validation(exp: dict) -> float | None:
    """The val_fraction of a tuned experiment's runs (None: it does not tune)."""
    return exp.get("validation", DEFAULT_VALIDATION) if tuned(exp) else None


def candidates(tune: dict) -> list[tuple[str, dict]]:
    """(label, {param: value}) of every combination, in the order listed."""
    params = list(tune)
    out = []
    for values in itertools.product(*(tune[p] for p in params)):
        label = ",".join(f"{p}={format_value(v)}" for p, v in zip(params, values, strict=True))
        out.append((label, dict(zip(params, values, strict=True))))
    return out


def check(exp: dict, conversion: set[str]) -> None:
    """A tuned experiment gives every method the same budget; one-line ConfigError if not."""
    if not tuned(exp):
        return
    where = f"config: experiment {exp['name']!r}"
    per_all = exp.get("per_method") or {}
    trained = [m for m in exp["methods"] if m not in conversion]
    if len(trained) < len(exp["methods"]):
        listed = ", ".join(sorted(conversion & set(exp["methods"])))
        raise ConfigError(f"{where} tunes its methods, and {listed} trains nothing to tune; "
                          "list conversion methods in another experiment")
    untuned = [m for m in trained if not (per_all.get(m) or {}).get("tune")]
    if untuned:
        raise ConfigError(f"{where}: {', '.join(untuned)} has no per_method tune block; in a "
                          "tuned experiment every method tunes (the same budget for each), so "
                          "add one or move the method to another experiment")
    counts = {m: len(candidates(per_all[m]["tune"])) for m in trained}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{m} {n}" for m, n in counts.items())
        raise ConfigError(f"{where}: the methods tune different numbers of candidates ({shown});"
                          " give each the same number, so each gets the same tuning budget")
    if exp.get("firing_rates"):
        raise ConfigError(f"{where}: firing_rates in a tuned experiment (its rows are selected "
                          "candidates); list them in an experiment that does not tune")
    sets = exp.get("set") or {}
    for method in trained:
        per = per_all[method]
        if per.get("sweep"):
            raise ConfigError(f"{where}: per_method.{method} both sweeps and tunes; tuning "
                              "selects one value, a sweep shows every value: choose one")
        given = {*sets, *(per.get("set") or {})}
        if "val_fraction" in given:
            raise ConfigError(f"{where}: val_fraction is set by hand; a tuned experiment sets "
                              "it for every candidate from its `validation` key, so remove it "
                              "from set")
        both = sorted(set(per["tune"]) & given)
        if both:
            raise ConfigError(f"{where}: per_method.{method} both sets and tunes {both[0]}; "
                              "remove it from set")
        for label, _ in candidates(per["tune"]):
            if not re.fullmatch(r"[A-Za-z0-9._+=,-]+", label):
                raise ConfigError(f"{where}: per_method.{method}.tune candidate {label!r} "
                                  "cannot be a table label; use numbers or plain words")


# ---- selection, on the collected runs -----------------------------------------------------


def _is(values: pd.Series) -> pd.Series:
    """The `selected` column as booleans (it reads back from runs.csv as text or NaN)."""
    return values.astype(str) == "True"


def choose(runs: pd.DataFrame, labels: list[str], expected: dict[str, int]) -> str | None:
    """The selected label of one (experiment, arch, method, T): the highest mean validation
    accuracy (a diverged run counts 0), the first listed on a tie; None while a candidate
    lacks a seed."""
    best, score = None, None
    for label in labels:
        got = runs[runs["variant"] == label]
        if len(got) < expected[label]:
            return None
        mean = float(got["acc_val"].fillna(0).where(got["diverged_epoch"].isna(), 0).mean())
        if score is None or mean > score:
            best, score = label, mean
    return best


def mark(runs: pd.DataFrame, cells: list[dict], experiments: list[dict]) -> pd.DataFrame:
    """`runs` with `selected` True / False on every candidate run of a tuned experiment."""
    runs = runs.copy()
    runs["selected"] = None
    for exp in experiments:
        if not exp.get("tuned"):
            continue
        groups: dict[tuple, dict[str, int]] = {}
        for c in cells:
            if c["experiment"] == exp["name"]:
                seeds = groups.setdefault((c["arch"], c["method"], c["T"]), {})
                seeds[c["variant"]] = seeds.get(c["variant"], 0) + 1
        for (arch, method, T), expected in groups.items():
            hit = ((runs["experiment"] == exp["name"]) & (runs["arch"] == arch)
                   & (runs["method"] == method) & (runs["T"] == T))
            label = choose(runs[hit], list(expected), expected)
            runs.loc[hit, "selected"] = runs.loc[hit, "variant"] == label
    return runs


def view(runs: pd.DataFrame, experiments: list[dict]) -> pd.DataFrame:
    """The rows tables, figures and claims show: a tuned experiment's selected runs as its
    methods' rows (variant None, `tuned` = the selected candidate, accuracy = test accuracy at
    the best validation epoch); the other candidates are left out."""
    names = {e["name"] for e in experiments if e.get("tuned")}
    if not names:
        return runs
    mine = runs["experiment"].isin(names)
    chosen = runs[mine & _is(runs["selected"])].copy()
    chosen["tuned"] = chosen["variant"]
    chosen["variant"] = None
    chosen["acc_best"] = chosen["acc_val_selected"]
    return pd.concat([runs[~mine].assign(tuned=None), chosen], ignore_index=True)


def cells(all_cells: list[dict], experiments: list[dict]) -> list[dict]:
    """The table cells: a tuned experiment's candidates become one cell per (arch, method, T,
    seed), variant None."""
    names = {e["name"] for e in experiments if e.get("tuned")}
    out, seen = [], set()
    for c in all_cells:
        if c["experiment"] not in names:
            out.append(c)
            continue
        key = (c["experiment"], c["arch"], c["method"], c["T"], c["seed"])
        if key not in seen:
            seen.add(key)
            out.append({**c, "variant": None})
    return out


HEADER = ["Method", "Arch", "T", "Candidate", "Seeds", "Validation acc. (%)",
          "Test acc. at best validation epoch (%)", "Selected"]


def tuning_files(exp: dict, runs: pd.DataFrame, all_cells: list[dict],
                 paths: dict[str, str]) -> dict[str, str]:
    """The selection's evidence: every candidate's validation and test accuracy (mean ± sample
    std over seeds), and the selected one; Markdown, LaTeX and CSV text by path."""
    expected: dict[tuple, int] = {}
    for c in all_cells:
        if c["experiment"] == exp["name"]:
            key = (c["arch"], c["method"], c["T"], c["variant"])
            expected[key] = expected.get(key, 0) + 1
    rows, table = [], []
    for (arch, method, T, label), n in expected.items():
        got = runs[(runs["experiment"] == exp["name"]) & (runs["arch"] == arch)
                   & (runs["method"] == method) & (runs["T"] == T) & (runs["variant"] == label)]
        ok = got[got["diverged_epoch"].isna()]
        val, test = ok["acc_val"], ok["acc_val_selected"]
        std = (lambda s: float(s.std(ddof=1)) if len(s) > 1 else None)  # noqa: E731
        chosen = bool(_is(got["selected"]).any())
        rows.append({"experiment": exp["name"], "arch": arch, "method": method, "T": T,
                     "candidate": label, "seeds_present": len(got), "seeds_expected": n,
                     "seeds_diverged": len(got) - len(ok),
                     "val_mean": val.mean() if len(ok) else None, "val_std": std(val),
                     "test_mean": test.mean() if len(ok) else None, "test_std": std(test),
                     "selected": chosen})
        table.append([display(method), display(arch), str(T), label.replace("=", " = "),
                      f"{len(got)}/{n}", pm(rows[-1]["val_mean"], rows[-1]["val_std"]),
                      pm(rows[-1]["test_mean"], rows[-1]["test_std"]), "yes" if chosen else ""])
    title = f"{exp['title']}: tuning candidates"
    share = f"{100 * exp['validation']:g} %"
    legend = (f"Every candidate setting of each method, trained with {share} of the training "
              "set held out for validation (the same images for every run). Validation acc. = "
              "each run's best epoch on the validation split; test acc. = that epoch's test "
              "accuracy; mean ± sample std over seeds, %. Per method and T, the candidate with "
              "the highest mean validation accuracy is selected (the first listed on a tie) "
              "and its test accuracy is the experiment's table row. No candidate or epoch is "
              "chosen on the test set.")
    md = "\n".join([f"# {title}", "", legend, "", markdown_table(HEADER, table), ""])
    tex = latex_table(HEADER, table, f"{title}. {legend}", f"{exp['name']}-tuning", [])
    csv = pd.DataFrame(rows).to_csv(index=False)
    return {paths["md"]: md, paths["tex"]: tex, paths["csv"]: csv}
