"""Figures from the aggregated CSVs (runs.csv, <experiment>_firing_rates.csv), PNG + PDF.

Per experiment: accuracy vs time steps per method (mean +- sample std over seeds, published
values as hollow diamonds, T = 1 runs such as the ANN as a dashed reference line), accuracy vs
latency on a log axis (conversion methods as curves over their latency sweep), accuracy vs
energy or SynOps with its Pareto front, the training cost figures (cost.py: time and memory vs
T, accuracy vs training memory), and where the config asks for it Fig. S1 as the paper draws it
(per-layer firing rates, one panel per neuron model, one bar per T, the network total last, the
20 % line and the total band shaded). Each figure is
titled by the experiment's `title:` and has a caption line saying what its bars and bands are
(mean +- sample std over seeds, with n). A figure whose data is absent (e.g. SynOps not
recorded) is drawn as a note saying so; a kind whose methods the experiment lacks (latency
without a conversion method) is not drawn at all (Grid.outputs). Colours, titles, units and
resolution: style.py; saving, notes, titles and captions: draw.py.
"""

import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd
import seaborn as sns

from pipeline import cost, tuning
from pipeline.draw import finish, label_points, note, palette, panels, save, seed_counts
from pipeline.names import display, row_key, use_specs
from pipeline.published import published_for
from pipeline.style import (
    RATE_LABEL,
    SPREAD,
    T_LABEL,
    accuracy_label,
    accuracy_words,
    colour,
    seeds,
    shades,
)
from pipeline.style import title as figure_title
from pipeline.text import energy_model


def accuracy_vs_T(exp: dict, runs: pd.DataFrame, published: pd.DataFrame) -> plt.Figure:
    title = figure_title(exp)
    if runs.empty:
        return note(title, "No cached run of this experiment yet.")
    colors = palette(exp["methods"])
    fig, axes = panels(len(exp["archs"]))
    for ax, arch in zip(axes, exp["archs"], strict=True):
        data = runs[runs["arch"] == arch].assign(Method=lambda d: d["method"].map(display))
        snn = data[data["T"] > 1]
        if not snn.empty:
            sns.lineplot(snn, x="T", y="acc_best", hue="Method", palette=colors, marker="o",
                         errorbar="sd", err_style="bars", ax=ax)
        for method, ref in data[data["T"] == 1].groupby("method"):
            ax.axhline(ref["acc_best"].mean(), ls="--", color=colors[display(method)],
                       label=f"{display(method)} (T = 1)")
        for (method, T), _ in data.groupby(["method", "T"]):
            pub = published_for(published, exp["dataset"], arch, method, T)
            if len(pub):
                ax.scatter([T] * len(pub), pub["accuracy"], marker="D", s=40,
                           facecolors="none", edgecolors=[colors[display(method)]] * len(pub),
                           label=f"{display(method)} published")
        ax.set(title=display(arch), xlabel=T_LABEL, ylabel=accuracy_label(exp))
        if not snn.empty:
            ax.set_xticks(sorted(snn["T"].unique()))
    # one legend for all panels, right of them: a method is one colour in every panel
    unique: dict[str, object] = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        unique.update(zip(labels, handles, strict=True))
        if ax.get_legend():
            ax.get_legend().remove()
    finish(fig, title, f"Points and error bars: {SPREAD} of the {accuracy_words(exp)} "
           f"({seeds(seed_counts(runs, ['arch', 'method', 'T']))}). Dashed lines: T = 1 runs "
           "such as the ANN (mean). Hollow diamonds: published values.")
    fig.legend(unique.values(), unique.keys(), bbox_to_anchor=(1.0, 0.5), loc="center left")
    return fig


def pareto_front(points: pd.DataFrame, x: str) -> pd.DataFrame:
    """Points no other point beats on both lower cost and higher accuracy."""
    best, keep = float("-inf"), []
    for i, row in points.sort_values([x, "acc_best"], ascending=[True, False]).iterrows():
        if row["acc_best"] > best:
            keep.append(i)
            best = row["acc_best"]
    return points.loc[keep]


def cost_axes(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, axis label) of the recorded cost measures: energy first, then SynOps."""
    energy = runs.dropna(subset=["energy_pj"]) if "energy_pj" in runs else runs.iloc[:0]
    axes = [("energy_pj", f"energy per test sample (µJ; {energy_model(energy)})"),
            ("synops_ac", "SynOps per test sample (millions of accumulates)")]
    return [(c, label) for c, label in axes if c in runs and runs[c].notna().any()]


def pareto(exp: dict, runs: pd.DataFrame) -> plt.Figure:
    title = figure_title(exp, "accuracy vs inference cost")
    # energy where recorded, else SynOps; both in millions of their unit (pJ -> µJ, AC -> M)
    axes = cost_axes(runs)
    if not axes:
        return note(title, "No run recorded SynOps or energy (synops.total_ac and "
                           "synops.energy_pj are null), so there is no cost axis to plot.")
    column, label = axes[0]
    points = (runs.dropna(subset=[column]).assign(cost=lambda d: d[column] / 1e6)
              .groupby(["arch", "method", "T"], sort=False)[["cost", "acc_best"]].mean()
              .reset_index())
    colors = palette(exp["methods"])
    markers = dict(zip(exp["archs"], "osD^vP*X", strict=False))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, p in points.iterrows():
        ax.scatter(p["cost"], p["acc_best"], color=colors[display(p["method"])],
                   marker=markers.get(p["arch"], "o"), s=36,
                   label=display(p["method"]) + ("" if len(exp["archs"]) == 1
                                                 else f", {display(p['arch'])}"))
    swept = runs.loc[runs["sweep_T_max"].notna(), "method"].unique()
    for (arch, method), curve in points[points["method"].isin(swept)].groupby(["arch", "method"]):
        curve = curve.sort_values("T")  # a conversion method's latency sweep: one curve
        ax.plot(curve["cost"], curve["acc_best"], color=colors[display(method)], lw=1,
                alpha=0.6, marker=markers.get(arch, "o"), ms=0)
    front = pareto_front(points, "cost")
    ax.step(front["cost"], front["acc_best"], where="post", ls=":", color="grey",
            label="Pareto front")
    if points["cost"].max() > 10 * points["cost"].min() > 0:
        ax.set_xscale("log")
    label_points(ax, points)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7, bbox_to_anchor=(1.02, 1),
              loc="upper left")
    ax.set(xlabel=label, ylabel=accuracy_label(exp))
    return finish(fig, title, "Points: mean over seeds of accuracy and cost "
                  f"({seeds(seed_counts(runs, ['arch', 'method', 'T']), bars=False)}); no error "
                  "bars. Lines join a conversion method's latency sweep; dotted: the Pareto "
                  "front of the points.")


def category(exp: dict, method: str) -> str | None:
    """The method's category, from its spec (Grid.experiments' `specs`)."""
    return ((exp.get("specs") or {}).get(method) or {}).get("category")


def latency(exp: dict, runs: pd.DataFrame, published: pd.DataFrame) -> plt.Figure:
    """Accuracy vs time steps on a log axis: conversion sweeps as curves, trained methods as
    points, the ANN as a line (the latency story: accuracy at low T against T up to T_max)."""
    title = figure_title(exp, "accuracy vs latency")
    if runs.empty:
        return note(title, "No cached run of this experiment yet.")
    colors = palette(exp["methods"])
    fig, axes = panels(len(exp["archs"]), width=6.0, height=4.2)
    for ax, arch in zip(axes, exp["archs"], strict=True):
        data = runs[runs["arch"] == arch]
        swept = data["sweep_T_max"].notna()
        stats = (data.groupby(["method", "T"], sort=False)["acc_best"]
                 .agg(["mean", "std"]).reset_index().sort_values("T"))
        for method in dict.fromkeys(data["method"]):
            s = stats[stats["method"] == method]
            c, name = colors[display(method)], display(method)
            if swept[data["method"] == method].any():
                ax.plot(s["T"], s["mean"], color=c, marker=".", label=f"{name} (sweep)")
                ax.fill_between(s["T"], s["mean"] - s["std"].fillna(0),
                                s["mean"] + s["std"].fillna(0), color=c, alpha=0.2, lw=0)
            elif (s["T"] == 1).all() and category(exp, method) == "ANN":
                ax.axhline(s["mean"].iloc[0], ls="--", color=c, label=name)
            else:
                ax.errorbar(s["T"], s["mean"], yerr=s["std"].fillna(0), color=c, fmt="o",
                            ms=5, capsize=3, label=name)
        pub = published[(published["dataset"] == exp["dataset"]) & (published["arch"] == arch)
                         & published["time_steps"].notna()]
        for method in exp["methods"]:
            hit = pub[pub["keys"].map(lambda k, m=method: m in k)]
            if len(hit):
                ax.scatter(hit["time_steps"], hit["accuracy"], marker="D", s=40,
                           facecolors="none", edgecolors=[colors[display(method)]] * len(hit),
                           label=f"{display(method)} published")
        ax.set_xscale("log", base=2)
        ticks = sorted(int(t) for t in data["T"].unique())
        ax.set_xticks(ticks, [str(t) for t in ticks])  # 1 2 4 ..., not 2^k
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set(title=display(arch), xlabel=f"{T_LABEL} (log scale)", ylabel=accuracy_label(exp))
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), loc="best")
    return finish(fig, title, f"Points, curves, error bars and bands: {SPREAD} "
                  f"({seeds(seed_counts(runs, ['arch', 'method', 'T']))}). Conversion methods: "
                  "each seed's converted SNN read at every T of one sweep. Dashed line: the ANN. "
                  "Hollow diamonds: published values.")


def firing_rates(exp: dict, rates: pd.DataFrame, band: dict | None = None) -> plt.Figure:
    """Fig. S1: a bar per layer and T (shades of the method's colour), the network total last;
    `band` (the claim's layer_max and total range) draws the 20 % line and the shaded band."""
    title = figure_title(exp, "Fig. S1, firing rates")
    layers = rates[rates["layer"] != "total"].dropna(subset=["layer_index"])
    if layers.empty:
        return note(title, "No cached run of " + ", ".join(map(display, exp["firing_rates"]))
                    + " yet.")
    fig, axes = plt.subplots(len(exp["firing_rates"]), 1, squeeze=False,
                             figsize=(9, 3.2 * len(exp["firing_rates"])))
    for ax, method in zip(axes.flat, exp["firing_rates"], strict=True):
        data = rates[rates["method"] == method]
        Ts = sorted(data["T"].unique())
        names = (data[data["layer"] != "total"].drop_duplicates("layer_index")
                 .sort_values("layer_index")["layer"].tolist())
        groups = [*names, "total"]
        width = 0.8 / max(1, len(Ts))
        for i, (T, shade) in enumerate(zip(Ts, shades(method, len(Ts)), strict=True)):
            per = data[data["T"] == T].set_index("layer")["rate_mean"]
            xs = [g + (i - (len(Ts) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, [per.get(name, float("nan")) for name in groups], width=width,
                   color=shade, label=f"T = {T}")
        if not Ts:
            ax.text(0.5, 0.5, "not cached", ha="center", transform=ax.transAxes)
        if band is not None:
            ax.axhline(band["layer_max"], ls=":", color="grey",
                       label=f"{band['layer_max']:g} % (every layer, paper)")
            lo, hi = band["total"]
            ax.fill_between([len(groups) - 1.5, len(groups) - 0.5], lo, hi, color="grey",
                            alpha=0.3, lw=0, label=f"{lo:g}-{hi:g} % (total, paper)")
        ax.set_xticks(range(len(groups)), groups, rotation=90, fontsize=6)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set(title=display(method), xlabel="spiking layer", ylabel=RATE_LABEL)
        ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left")
    n = seeds(rates["seeds"].dropna() if "seeds" in rates else [], bars=False, per="bar")
    paper = ("" if band is None else " Dotted line and grey band: the paper's bound for every "
             "layer and its range for the total.")
    return finish(fig, title, f"Bars: mean over seeds of each layer's firing rate ({n}); no "
                  f"error bars; 'total' is the whole network.{paper}")


def sweep(exp: dict, runs: pd.DataFrame) -> plt.Figure:
    """Accuracy and firing rate against each swept parameter, one line per (method, T)."""
    title = figure_title(exp, "parameter sweep")
    swept = runs[runs["method"].isin(exp["sweeps"]) & runs["variant"].notna()]
    if swept.empty:
        return note(title, "No cached run of the sweep yet.")
    params = sorted(set(exp["sweeps"].values()))
    fig, axes = plt.subplots(len(params), 2, figsize=(11, 4 * len(params)), squeeze=False)
    for (ax_acc, ax_rate), param in zip(axes, params, strict=True):
        data = swept[swept["method"].map(exp["sweeps"]) == param].assign(
            value=lambda d: d["variant"].str.partition("=")[2].astype(float),
            Run=lambda d: d["method"].map(display) + ", T = " + d["T"].astype(str))
        hues = {r: colour(m) for r, m in zip(data["Run"], data["method"], strict=True)}
        for ax, y, label in ((ax_acc, "acc_best", accuracy_label(exp)),
                             (ax_rate, "firing_rate", RATE_LABEL)):
            if data[y].notna().any():
                sns.lineplot(data, x="value", y=y, hue="Run", palette=hues, marker="o",
                             errorbar="sd", err_style="bars", ax=ax)
                ax.set_xticks(sorted(data["value"].unique()))
                ax.legend()
            else:
                ax.text(0.5, 0.5, "not recorded", ha="center", transform=ax.transAxes)
            ax.set(xlabel=f"{param} (swept; initial value where the method learns it)",
                   ylabel=label)
    return finish(fig, title, f"Points and error bars: {SPREAD} "
                  f"({seeds(seed_counts(swept, ['method', 'T', 'variant']))}).")


def with_row_keys(exp: dict, runs: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """The experiment and its runs with each swept run as its own method (method@p=v), so
    the per-method figures draw one line or point per value."""
    if not exp["sweeps"] or runs.empty:
        return exp, runs
    keys = [row_key(m, v if isinstance(v, str) else None)
            for m, v in zip(runs["method"], runs["variant"], strict=True)]
    methods = [k for m in exp["methods"] for k in dict.fromkeys(keys) if k.partition("@")[0] == m]
    return {**exp, "methods": methods}, runs.assign(method=keys)


def render_figures(experiments: list[dict], outputs: dict, runs: pd.DataFrame,
                   rates: dict[str, pd.DataFrame], published: pd.DataFrame,
                   band: dict | None = None) -> None:
    """Write every figure of every experiment (`rates`: Fig. S1 data by experiment; `band`:
    the firing-rate claim's bounds, drawn on Fig. S1)."""
    for exp in experiments:
        figs = outputs["experiments"][exp["name"]]["figures"]
        mine = runs[runs["experiment"] == exp["name"]]
        if exp["sweeps"]:
            save(sweep(exp, mine), figs["sweep"])
        exp, mine = with_row_keys(exp, mine)
        # conversion sweeps beyond the experiment's T are the latency figure's
        save(accuracy_vs_T(exp, mine[mine["configured"]], published), figs["accuracy_vs_T"])
        if "latency" in figs:  # only where a conversion method sweeps its latency
            save(latency(exp, mine, published), figs["latency"])
        save(pareto(exp, mine), figs["pareto"])
        trained = mine[mine["sweep_T_max"].isna()]  # conversion jobs train nothing
        save(cost.time_and_memory(exp, trained), figs["cost"])
        save(cost.memory_vs_accuracy(exp, trained), figs["memory"])
        if exp["firing_rates"]:
            save(firing_rates(exp, rates[exp["name"]], band), figs["firing_rates"])


def render_from_csv(experiments: list[dict], outputs: dict, published: pd.DataFrame,
                    band: dict | None = None) -> None:
    """Every figure, from the runs.csv and firing-rate CSVs the tables step wrote."""
    use_specs(experiments)
    runs = tuning.view(pd.read_csv(outputs["runs_csv"]), experiments)
    rates = {e["name"]: pd.read_csv(outputs["experiments"][e["name"]]["firing_rates"]["csv"])
             for e in experiments if e["firing_rates"]}
    render_figures(experiments, outputs, runs, rates, published, band)

