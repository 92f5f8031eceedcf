"""Per-experiment tables (Markdown, LaTeX, CSV), the Fig. S1 tables and MISSING.md.

A table row is (arch, method, T) of one experiment: accuracy as mean +- sample std over the seeds
present, in %, SynOps, energy and firing rate, beside every published value that compares with
it. Rendering is pure: every function returns text; `build.write_all` writes it.
"""

import pandas as pd

from pipeline import cost
from pipeline.collect import Collected
from pipeline.names import DASH, display, row_key
from pipeline.published import (
    Sources,
    published_for,
    published_text,
    source_lines,
    status_legend,
)
from pipeline.text import amount, energy_model, fmt, latex_table, markdown_table, pm


def _mean_std(values: pd.Series) -> tuple[float | None, float | None]:
    values = values.dropna()
    if values.empty:
        return None, None
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None


def experiment_cells(exp: dict, cells: list[dict]) -> list[tuple[str, str, str | None, int,
                                                                   list[int]]]:
    """(arch, method, variant, T, seeds) of an experiment, in config order; a conversion job
    gives one per T of its sweep."""
    order: dict[tuple[str, str, str | None, int], list[int]] = {}
    for c in cells:
        if c["experiment"] == exp["name"]:
            for T in c.get("sweep") or [c["T"]]:
                order.setdefault((c["arch"], c["method"], c.get("variant"), T), []).append(
                    c["seed"])
    return [(a, m, v, t, s) for (a, m, v, t), s in order.items()]


def summarise(exp: dict, cells: list[dict], runs: pd.DataFrame, published: pd.DataFrame,
              sources: Sources) -> pd.DataFrame:
    """One row per configured cell: seeds present, accuracy mean/std, SynOps, ..., published."""
    mine = runs[runs["experiment"] == exp["name"]]
    out = []
    for arch, method, variant, T, seeds in experiment_cells(exp, cells):
        got = mine[(mine["arch"] == arch) & (mine["method"] == method) & (mine["T"] == T)
                   & (mine["variant"].fillna("") == (variant or ""))]
        diverged = got["diverged_epoch"].dropna()
        got = got[got["diverged_epoch"].isna()]  # a diverged run has no numbers to average
        best, best_std = _mean_std(got["acc_best"])
        final, final_std = _mean_std(got["acc_final"])
        pub = published_for(published, exp["dataset"], arch, method, T)
        first = pub.iloc[0] if len(pub) else None
        out.append({
            "experiment": exp["name"], "dataset": exp["dataset"], "arch": arch,
            "method": method, "variant": variant,
            "method_name": display(row_key(method, variant)) + tuned_text(got),
            "category": got["category"].iloc[0] if len(got) else None,
            "T": T, "seeds_present": len(got) + len(diverged), "seeds_expected": len(seeds),
            "seeds_diverged": len(diverged),
            "diverged_epochs": ", ".join(str(int(e)) for e in diverged) or None,
            "acc_best_mean": best, "acc_best_std": best_std,
            "acc_final_mean": final, "acc_final_std": final_std,
            "synops_ac_m": _mean_std(got["synops_ac"] / 1e6)[0],
            "synops_mac_m": _mean_std(got["synops_mac"] / 1e6)[0],
            "energy_uj": _mean_std(got["energy_pj"] / 1e6)[0],
            "firing_rate": _mean_std(got["firing_rate"])[0],
            "seconds_per_epoch": _mean_std(got["seconds_per_epoch"])[0],
            "peak_memory_mb": _mean_std(got["peak_memory_mb"])[0],
            "published_accuracy": None if first is None else first["accuracy"],
            "published_std": None if first is None or pd.isna(first["std"]) else first["std"],
            "published_status": None if first is None else first["status"],
            "published_source": None if first is None else first["source"],
            "diff_best_pp": None if first is None or best is None else best - first["accuracy"],
            "published_text": published_text(pub, sources),
        })
    return pd.DataFrame(out)


def tuned_text(got: pd.DataFrame) -> str:
    """A tuned experiment's row: which candidate was selected (pipeline.tuning)."""
    labels = got["tuned"].dropna().unique() if "tuned" in got else []
    return f" (tuned: {labels[0].replace('=', ' = ')})" if len(labels) else ""


def published_only(exp: dict, cells: list[dict], published: pd.DataFrame) -> pd.DataFrame:
    """Published rows of this experiment's table that no configured cell compares with."""
    mine = published[published["table"] == exp["name"]]
    used = set()
    for arch, method, _, T, _ in experiment_cells(exp, cells):
        used |= set(published_for(mine, exp["dataset"], arch, method, T).index)
    return mine[~mine.index.isin(used)]


# ---- rendering ----------------------------------------------------------------------------

HEADER = ["Method", "Category", "Arch", "T", "Seeds", "Best acc. (%)", "Final acc. (%)",
          "SynOps (M)", "Energy (µJ)", "Firing rate (%)", "Published (%)", "Δ best (pp)"]
ONLY_HEADER = ["Method", "Category", "Arch", "Neuron", "T", "Published (%)"]


def accuracy_text(r: pd.Series, kind: str) -> str:
    """A cell's accuracy: mean ± std over the seeds with results, and how many diverged."""
    if r["seeds_present"] == 0:
        return "not run"
    div = r["seeds_diverged"]
    if div == r["seeds_present"]:
        return f"diverged (epoch {r['diverged_epochs']})"
    text = pm(r[f"acc_{kind}_mean"], r[f"acc_{kind}_std"])
    return f"{text}; {div} diverged" if div else text


def table_rows(summary: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, r in summary.iterrows():
        category = DASH if pd.isna(r["category"]) else r["category"]
        rows.append([
            r["method_name"], category, display(r["arch"]), str(r["T"]),
            f"{r['seeds_present']}/{r['seeds_expected']}",
            accuracy_text(r, "best"), accuracy_text(r, "final"),
            amount(r["synops_ac_m"]), amount(r["energy_uj"]), fmt(r["firing_rate"]),
            r["published_text"],
            DASH if pd.isna(r["diff_best_pp"]) else f"{r['diff_best_pp']:+.2f}",
        ])
    return rows


def only_rows(only: pd.DataFrame, sources: Sources) -> list[list[str]]:
    rows = []
    for _, r in only.iterrows():
        T = DASH if pd.isna(r["time_steps"]) else str(int(r["time_steps"]))
        rows.append([r["method"], r["category"], display(r["arch"]), r["neuron"], T,
                     published_text(only.loc[[r.name]], sources)])
    return rows


def subset_text(cells: list[dict], split: str) -> str | None:
    """How the experiment's runs subsample `split` (train_subset / test_subset), if they do."""
    sizes = sorted({c["set"].get(f"{split}_subset", "none") for c in cells})
    if sizes == ["none"]:
        return None
    shown = ", ".join("full" if n == "none" else f"{int(n):,}" for n in sizes)
    return f"a fixed class-balanced subset of the {split} set ({shown} images)"


def legend_text(name: str, exp: dict, cells: list[dict], runs: pd.DataFrame | None = None) -> str:
    cells = [c for c in cells if c["experiment"] == exp["name"]]
    test, train = subset_text(cells, "test"), subset_text(cells, "train")
    best = ("Best = the test accuracy at the best validation epoch of the candidate selected on "
            f"validation accuracy (tuned ruleset; every candidate: {exp['name']}_tuning.md)"
            if exp.get("tuned") else "Best = best epoch (what the paper reports)")
    return (f"Configuration `{name}`, experiment `{exp['name']}` on {display(exp['dataset'])}. "
            + (f"Trained on {train}. " if train else "")
            + f"Accuracy: {test or 'test set'}, %, mean ± sample std over the seeds present "
            f"(Seeds: present/configured); {best}, Final = last epoch. "
            "SynOps: millions of accumulates per test sample; energy: µJ per test sample "
            f"({energy_model(runs)}, as the runs recorded); firing rate = spikes per neuron per "
            f"time step; {DASH} = not recorded. Published values come from "
            f"paper_tables/published.csv. {status_legend()} Δ = Best − published "
            "(percentage points).")


def render_experiment(name: str, exp: dict, cells: list[dict], col: Collected,
                      published: pd.DataFrame) -> tuple[dict[str, str], pd.DataFrame]:
    """Markdown, LaTeX and CSV text of one experiment's table (+ its summary frame)."""
    sources = Sources()
    summary = summarise(exp, cells, col.runs, published, sources)
    only = published_only(exp, cells, published)
    rows, orows = table_rows(summary), only_rows(only, sources)
    lacking = int((summary["seeds_expected"] - summary["seeds_present"]).sum())
    legend = legend_text(name, exp, cells, col.runs[col.runs["experiment"] == exp["name"]])
    md = [f"# {exp['title']}", "", legend, ""]
    if lacking:
        md += [f"**{lacking} of {int(summary['seeds_expected'].sum())} runs are missing or "
               "stale; see MISSING.md.**", ""]
    md += [markdown_table(HEADER, rows), ""]
    if orows:
        md += ["Published, not reproduced in this configuration:", "",
               markdown_table(ONLY_HEADER, orows), ""]
    notes = source_lines(sources)
    if notes:
        md += ["Sources:", "", *[f"- {n}" for n in notes], ""]
    tex = latex_table(HEADER, rows, f"{exp['title']}. {legend}", exp["name"], notes)
    if orows:
        tex += latex_table(ONLY_HEADER, orows, f"{exp['title']}: published, not reproduced.",
                           f"{exp['name']}-published", [])
    csv = summary.drop(columns=["published_text"]).to_csv(index=False)
    return {"md": "\n".join(md), "tex": tex, "csv": csv}, summary


def firing_rate_tables(exp: dict, col: Collected, runs: pd.DataFrame) -> dict[str, str]:
    """Fig. S1 data: per-layer firing rate (%) per method and T, mean over seeds; + total."""
    layers = col.layers[col.layers["experiment"] == exp["name"]]
    stats = (layers.groupby(["method", "T", "layer_index", "layer"], sort=False)["rate"]
             .agg(rate_mean="mean", rate_std="std", seeds="count").reset_index())
    mine = runs[(runs["experiment"] == exp["name"]) & runs["method"].isin(exp["firing_rates"])]
    totals = (mine.groupby(["method", "T"], sort=False)["firing_rate"]
              .agg(rate_mean="mean", rate_std="std", seeds="count").reset_index())
    totals["layer"], totals["layer_index"] = "total", None
    long = pd.concat([stats, totals], ignore_index=True) if len(totals) else stats
    long.insert(1, "method_name", long["method"].map(display))
    columns = [(m, t) for m in exp["firing_rates"]
               for t in sorted(long.loc[long["method"] == m, "T"].unique())]
    index = list(dict.fromkeys(zip(stats["layer_index"], stats["layer"], strict=True)))
    header = ["#", "Layer"] + [f"{display(m)} T={t}" for m, t in columns]
    rows = []
    for i, layer in [*sorted(index), (None, "total")]:
        row = ["" if i is None else str(i), layer]
        for m, t in columns:
            hit = long[(long["method"] == m) & (long["T"] == t) & (long["layer"] == layer)]
            row.append(fmt(hit["rate_mean"].iloc[0]) if len(hit) else DASH)
        rows.append(row)
    title = f"{exp['title']}: per-layer firing rates (Fig. S1 data)"
    legend = ("Spikes per neuron per time step over the test set, %, mean over seeds; the last "
              "row is the whole network. Paper (CIFAR-10, PreAct-ResNet-18): every layer below "
              "20%, total 7.5-9.5%.")
    if not columns:
        legend += " No run of these methods is cached yet."
    md = "\n".join([f"# {title}", "", legend, "", markdown_table(header, rows), ""])
    tex = latex_table(header, rows, f"{title}. {legend}", f"{exp['name']}-firing-rates", [])
    return {"md": md, "tex": tex, "csv": long.to_csv(index=False)}


def missing_report(name: str, col: Collected) -> tuple[str, str]:
    """MISSING.md and a short stdout summary, grouped by (experiment, arch, method, T)."""
    groups: dict[tuple, dict[str, list]] = {}
    for cell in col.missing:
        key = (cell["experiment"], cell["arch"], row_key(cell["method"], cell.get("variant")),
               cell["T"])
        groups.setdefault(key, {"missing": [], "stale": []})["missing"].append(cell["seed"])
    for cell, reason in col.stale:
        key = (cell["experiment"], cell["arch"], row_key(cell["method"], cell.get("variant")),
               cell["T"])
        groups.setdefault(key, {"missing": [], "stale": []})["stale"].append(
            f"{cell['seed']} ({reason})")
    absent = len(col.missing) + len(col.stale)
    if not absent:
        head = f"All {col.total} runs of configuration `{name}` are cached and current."
        return f"# Missing results: `{name}`\n\n{head}\n", head
    head = (f"{absent} of {col.total} runs of configuration `{name}` are missing or stale; "
            "the tables and figures show the rest. Train them with `snakemake --cores all "
            "--profile profiles/default reproduce_table` (add `--configfile config/<name>.yaml`"
            " for another configuration).")
    rows = [[e, display(a), display(m), str(t), ", ".join(map(str, g["missing"])) or DASH,
             "; ".join(g["stale"]) or DASH] for (e, a, m, t), g in groups.items()]
    md = "\n".join([f"# Missing results: `{name}`", "", head, "",
                    markdown_table(["Experiment", "Arch", "Method", "T", "Missing seeds",
                                    "Stale seeds"], rows), ""])
    lines = [head] + [f"  missing {e}: {display(a)} {display(m)} T={t} seeds "
                      f"{', '.join(map(str, g['missing'])) or DASH}"
                      + (f"; stale {'; '.join(g['stale'])}" if g["stale"] else "")
                      for (e, a, m, t), g in groups.items()]
    return md, "\n".join(lines)


def render_tables(name: str, cells: list[dict], experiments: list[dict], outputs: dict,
                  col: Collected, published: pd.DataFrame) -> tuple[dict[str, str], str]:
    """Every table file's text by path (but runs.csv and the tuning tables: pipeline.build),
    and the summary line(s) for stdout; `col.runs` and `cells` are what the tables show
    (pipeline.tuning.view and .cells)."""
    files: dict[str, str] = {}
    for exp in experiments:
        out = outputs["experiments"][exp["name"]]
        texts, _ = render_experiment(name, exp, cells, col, published)
        files.update({out["table"][ext]: texts[ext] for ext in ("md", "tex", "csv")})
        files.update(cost.table_files(exp, col.runs, out["cost"]))
        if exp["firing_rates"]:
            rates = firing_rate_tables(exp, col, col.runs)
            files.update({out["firing_rates"][ext]: rates[ext] for ext in ("md", "tex", "csv")})
    md, summary = missing_report(name, col)
    files[outputs["missing"]] = md
    return files, summary
