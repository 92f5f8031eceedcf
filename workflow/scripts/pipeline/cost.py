"""What training costs, per experiment: a table in the style of SLTT's efficiency table (time and
memory beside accuracy, every method at each T) and two figures, time and memory against T, and
accuracy against peak training memory.

Training memory is dsr.harness.cost.TrainingMemory's: CUDA max allocated (absolute), or on a CPU the
growth of the resident set over its level when training started; a run recorded before it
existed shows the process peak instead, and says so. Conversion jobs train nothing: no row.
"""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from pipeline.draw import finish, label_points, note, palette, seed_counts
from pipeline.names import DASH, display, row_key
from pipeline.style import SPREAD, T_LABEL, accuracy_label, accuracy_words, seeds
from pipeline.style import title as figure_title
from pipeline.text import fmt, latex_table, markdown_table, pm

HEADER = ["Method", "Arch", "T", "Seeds", "Time / epoch (s)", "Time / step (ms)",
          "Training memory (MiB)", "Process peak (MiB)", "Best acc. (%)"]


def memory_column(runs: pd.DataFrame) -> tuple[str, str]:
    """(column, axis label): training memory where any run recorded it, else the process
    peak (runs recorded before training memory was measured)."""
    if runs["train_memory_mb"].notna().any():
        kinds = ", ".join(sorted(runs["train_memory_kind"].dropna().unique()))
        return "train_memory_mb", f"peak training memory (MiB; {kinds})"
    kinds = ", ".join(sorted(runs["peak_memory_kind"].dropna().unique())) or "not recorded"
    return "peak_memory_mb", f"peak memory of the process (MiB; {kinds})"


def summary(exp: dict, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, method or swept value, T): means and stds over the seeds that did not
    diverge (a diverged run has no accuracy; its time and memory count)."""
    mine = runs[(runs["experiment"] == exp["name"]) & runs["sweep_T_max"].isna()]
    mine = mine.assign(key=[row_key(m, v if isinstance(v, str) else None)
                            for m, v in zip(mine["method"], mine["variant"], strict=True)])
    rows = []
    for (arch, key, T), got in mine.groupby(["arch", "key", "T"], sort=False):
        ok = got[got["diverged_epoch"].isna()]
        std = lambda col, g=got: float(g[col].std(ddof=1)) if len(g) > 1 else None  # noqa: E731
        rows.append({
            "experiment": exp["name"], "arch": arch, "method": key, "T": T,
            "method_name": display(key), "seeds": len(got),
            "seconds_per_epoch": got["seconds_per_epoch"].mean(),
            "ms_per_step": 1e3 * got["seconds_per_step"].mean(),
            "train_memory_mb": got["train_memory_mb"].mean(),
            "train_memory_std": std("train_memory_mb"),
            "train_memory_kind": ", ".join(sorted(got["train_memory_kind"].dropna().unique())),
            "peak_memory_mb": got["peak_memory_mb"].mean(),
            "acc_best_mean": ok["acc_best"].mean() if len(ok) else None,
            "acc_best_std": float(ok["acc_best"].std(ddof=1)) if len(ok) > 1 else None})
    return pd.DataFrame(rows)


def table_files(exp: dict, runs: pd.DataFrame, paths: dict[str, str]) -> dict[str, str]:
    """The experiment's cost table: Markdown, LaTeX and CSV text by path."""
    table = summary(exp, runs)
    rows = [[r["method_name"], display(r["arch"]), str(r["T"]), str(r["seeds"]),
             fmt(r["seconds_per_epoch"]), fmt(r["ms_per_step"]),
             pm(r["train_memory_mb"], r["train_memory_std"]), fmt(r["peak_memory_mb"]),
             pm(r["acc_best_mean"], r["acc_best_std"])] for _, r in table.iterrows()]
    kinds = sorted({k for k in table.get("train_memory_kind", []) if k})
    title = f"{exp['title']}: training cost"
    kind = ", ".join(kinds) or "not recorded by these runs"
    legend = ("Per run, mean (± sample std where shown) over seeds: training seconds per epoch "
              "and per optimiser step (evaluation excluded); training memory, the peak of the "
              f"training steps ({kind}; on CUDA the allocator's max allocated, on a CPU the "
              "growth of the resident set over its level when training started); the process "
              f"peak (start-up and evaluation included); {accuracy_words(exp)}. "
              f"{DASH} = not recorded. Conversion jobs train nothing and have no row.")
    md = "\n".join([f"# {title}", "", legend, "", markdown_table(HEADER, rows), ""])
    tex = latex_table(HEADER, rows, f"{title}. {legend}", f"{exp['name']}-cost", [])
    return {paths["md"]: md, paths["tex"]: tex, paths["csv"]: table.to_csv(index=False)}


def time_and_memory(exp: dict, runs: pd.DataFrame) -> plt.Figure:
    """Training time per epoch and peak memory against T, one line per method."""
    title = figure_title(exp, "training cost")
    if runs.empty:
        return note(title, "No cached run of this experiment yet.")
    data = runs.assign(Method=runs["method"].map(display), Arch=runs["arch"].map(display))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    style = "Arch" if len(exp["archs"]) > 1 else None
    for ax, (y, label) in zip(axes, (("seconds_per_epoch", "training time per epoch (s)"),
                                     memory_column(runs)), strict=True):
        if data[y].notna().any():
            sns.lineplot(data, x="T", y=y, hue="Method", style=style,
                         palette=palette(exp["methods"]), marker="o", errorbar="sd",
                         err_style="bars", ax=ax)
            ax.set_xticks(sorted(data["T"].unique()))
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", transform=ax.transAxes)
        ax.set(xlabel=T_LABEL, ylabel=label)
    return finish(fig, title, f"Points and error bars: {SPREAD} "
                  f"({seeds(seed_counts(runs, ['arch', 'method', 'T']))}).")


def memory_vs_accuracy(exp: dict, runs: pd.DataFrame) -> plt.Figure:
    """Best-epoch accuracy against peak training memory: one point per method and T (mean over
    seeds), each method's T joined by a line, labelled T=..."""
    title = figure_title(exp, "accuracy vs training memory")
    ok = runs[runs["diverged_epoch"].isna()] if len(runs) else runs
    column, label = memory_column(runs) if len(runs) else ("train_memory_mb", "")
    points = (ok.dropna(subset=[column])
              .groupby(["method", "T"], sort=False)[[column, "acc_best"]].mean().reset_index())
    if points.empty:
        return note(title, "No cached run of this experiment recorded its memory yet.")
    colors = palette(exp["methods"])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method, curve in points.groupby("method", sort=False):
        curve = curve.sort_values("T")
        ax.plot(curve[column], curve["acc_best"], marker="o", lw=1, label=display(method),
                color=colors.get(display(method)))
    label_points(ax, points, x=column)
    ax.set(xlabel=label, ylabel=accuracy_label(exp))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return finish(fig, title, "Points: mean over seeds of accuracy and memory "
                  f"({seeds(seed_counts(ok, ['method', 'T']), bars=False)}); no error bars. "
                  "Lines join a method's time steps; up and to the left is better.")
