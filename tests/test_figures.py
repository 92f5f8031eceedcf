"""Figure style: resolution, units from the runs' recorded energy model, Fig. S1's band; titles
from the experiment's `title:`, a caption saying what the bars are, no text hidden or cut, and no
latency figure without a conversion method (figures rendered from synthetic runs)."""

import random
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from PIL import Image

from dsr import REPO_ROOT as ROOT
from pipeline import cost, draw, figures, style
from pipeline.grid import Grid, check_config
from pipeline.published import load_published


def test_png_is_written_at_200_dpi_beside_a_pdf(tmp_path: Path) -> None:
    fig = draw.note("t", "nothing")
    paths = {ext: str(tmp_path / f"f.{ext}") for ext in style.FORMATS}
    draw.save(fig, paths)
    dpi = Image.open(paths["png"]).info["dpi"]
    assert round(dpi[0]) == style.DPI == 200
    assert Path(paths["pdf"]).read_bytes().startswith(b"%PDF")


def test_energy_axis_names_the_recorded_energy_per_operation() -> None:
    runs = pd.DataFrame({"energy_pj": [1e6, 2e6], "synops_ac": [1e6, 1e6],
                         "pj_per_ac": [0.03, 0.03], "pj_per_mac": [0.2, 0.2]})
    (column, label), _ = figures.cost_axes(runs)
    assert column == "energy_pj" and "0.03 pJ/AC, 0.2 pJ/MAC" in label
    assert figures.cost_axes(runs.assign(energy_pj=None))[0][0] == "synops_ac"


def test_a_method_keeps_its_colour_and_its_time_steps_are_its_shades() -> None:
    assert style.colour("dsr-if") == style.colour("dsr-if") != style.colour("sg-bptt")
    light, dark = style.shades("dsr-lif", 2)
    assert dark == pytest.approx(style.colour("dsr-lif"), abs=0.01)
    assert sum(light) > sum(dark)  # the smaller T is lighter


def test_fig_s1_draws_the_band_and_the_layer_bound() -> None:
    rates = pd.DataFrame([
        {"method": m, "T": T, "layer_index": i, "layer": name, "rate_mean": r}
        for m in ("dsr-if", "dsr-lif") for T in (2, 4)
        for i, name, r in ((0, "n0", 10.0), (1, "n1", 15.0), (None, "total", 8.0))])
    exp = {"name": "digits", "firing_rates": ["dsr-if", "dsr-lif"]}
    fig = figures.firing_rates(exp, rates, {"layer_max": 20.0, "total": [7.5, 9.5]})
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert sorted(labels) == ["20 % (every layer, paper)", "7.5-9.5 % (total, paper)", "T = 2",
                              "T = 4"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["n0", "n1", "total"]
    assert fig.texts[0].get_text() == "digits: Fig. S1, firing rates"


# ---- figures that explain themselves: title, caption, nothing hidden ---------------------------

LONG_TITLE = ("Synthetic grid: PreAct-ResNet-8 on digits, five methods at T = 2, 4, 8 and a "
              "conversion sweep to T = 64, three seeds each, a title longer than any figure")
METHODS = ["dsr-if", "dsr-lif", "sg-bptt", "ann", "conversion"]


def synthetic_experiment(**changes) -> dict:
    exp = {"name": "synthetic", "title": LONG_TITLE, "dataset": "digits",
           "archs": ["preact_resnet8"], "methods": METHODS, "firing_rates": ["dsr-if", "dsr-lif"],
           "sweeps": {}}
    return {**exp, **changes}


def synthetic_runs(seeds: int = 3) -> pd.DataFrame:
    """runs.csv rows as collect writes them: the ANN at T = 1, conversion swept to T = 64 (its
    costliest point sits at the right edge, the ANN's at the top), the rest at T = 2, 4, 8."""
    rng = random.Random(0)
    rows = []
    for i, method in enumerate(METHODS):
        swept = method == "conversion"
        Ts = [1] if method == "ann" else [1, 2, 4, 8, 16, 32, 64] if swept else [2, 4, 8]
        for T in Ts:
            for seed in range(seeds):
                acc = 98.0 if method == "ann" else 60 + 4 * i + 3 * T ** 0.5 + rng.uniform(-2, 2)
                ac = 1e5 * T * (4 if swept else 1 + i)
                rows.append({
                    "experiment": "synthetic", "dataset": "digits", "arch": "preact_resnet8",
                    "method": method, "variant": None, "T": T, "seed": seed, "acc_best": acc,
                    "synops_ac": ac, "synops_mac": 1e4, "energy_pj": 0.9 * ac + 4.6e4,
                    "pj_per_ac": 0.9, "pj_per_mac": 4.6, "firing_rate": 10 + i,
                    "seconds_per_epoch": T * rng.uniform(1, 2), "peak_memory_mb": 900 + 50 * T,
                    "peak_memory_kind": "cpu_peak_rss", "sweep_T_max": 64 if swept else None,
                    "seconds_per_step": 0.01 * T, "train_memory_mb": 40 + (10 + i) * T,
                    "train_memory_kind": "cpu_rss_growth", "diverged_epoch": None,
                    "configured": T in (2, 4, 8) or not swept})
    return pd.DataFrame(rows)


def synthetic_rates(seeds: int = 3) -> pd.DataFrame:
    return pd.DataFrame([
        {"method": m, "T": T, "layer_index": i, "layer": name, "rate_mean": r, "seeds": seeds}
        for m in ("dsr-if", "dsr-lif") for T in (2, 4, 8)
        for i, name, r in ((0, "stem.n", 12.0), (1, "stages.0.n1", 18.0), (None, "total", 8.0))])


def hidden_texts(fig: plt.Figure) -> list[str]:
    """Texts a reader would not see whole: outside the bounding box savefig keeps (tight, with
    its padding), cut by their clip box, or, for texts placed in an axes (point labels, notes),
    past that axes' edge, where a legend beside it would cover them."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inches = fig.get_tightbbox(renderer).padded(plt.rcParams["savefig.pad_inches"])
    saved = Bbox(inches.get_points() * fig.dpi)  # display pixels, as the texts' extents
    in_axes = {id(t): ax for ax in fig.axes for t in ax.texts}
    # tick labels are placed by their axis, which draws only those in view (and keeps them in
    # the saved box); the rest exist unused outside the view and are skipped
    ticks = {id(label) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for tick in axis.get_major_ticks() + axis.get_minor_ticks()
             for label in (tick.label1, tick.label2)}

    def inside(box: Bbox, outer: Bbox) -> bool:
        return (box.x0 >= outer.x0 - 1 and box.x1 <= outer.x1 + 1 and box.y0 >= outer.y0 - 1
                and box.y1 <= outer.y1 + 1)

    hidden = []
    for t in fig.findobj(Text):
        if not (t.get_visible() and t.get_text().strip()) or id(t) in ticks:
            continue
        box = t.get_window_extent(renderer)
        clip = t.get_clip_box() if t.get_clip_on() else None
        ax = in_axes.get(id(t))
        if (not inside(box, saved) or (clip is not None and not inside(box, clip))
                or (ax is not None and not inside(box, ax.get_window_extent(renderer)))):
            hidden.append(t.get_text())
    return hidden


def test_the_check_flags_a_label_past_the_axes_edge() -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.scatter([1, 2], [1, 2])
    ax.annotate("T=4", (2, 2), xytext=(3, 3), textcoords="offset points")  # the old placement
    ax.legend(["runs"], bbox_to_anchor=(1.02, 1), loc="upper left")
    assert hidden_texts(fig) == ["T=4"]
    plt.close(fig)


def all_figures(exp: dict, runs: pd.DataFrame) -> dict[str, plt.Figure]:
    published = load_published(ROOT / "paper_tables" / "published.csv")
    band = {"layer_max": 20.0, "total": [7.5, 9.5]}
    return {"accuracy_vs_T": figures.accuracy_vs_T(exp, runs[runs["configured"]], published),
            "latency": figures.latency(exp, runs, published),
            "pareto": figures.pareto(exp, runs),
            "cost": cost.time_and_memory(exp, runs[runs["sweep_T_max"].isna()]),
            "memory": cost.memory_vs_accuracy(exp, runs[runs["sweep_T_max"].isna()]),
            "firing_rates": figures.firing_rates(exp, synthetic_rates(), band)}


def test_every_figure_is_titled_captioned_and_shows_every_text_whole() -> None:
    figs = all_figures(synthetic_experiment(), synthetic_runs())
    for kind, fig in figs.items():
        suptitle = fig.get_suptitle().replace("\u00a0", " ")  # "T = 64" kept on one line
        assert " ".join(suptitle.split()).startswith(LONG_TITLE), kind
        assert max(map(len, suptitle.splitlines())) < len(LONG_TITLE)  # wrapped
        caption = " ".join(fig.texts[-1].get_text().replace("\u00a0", " ").split())
        assert "n = 3 seeds per" in caption, (kind, caption)
        if kind in ("accuracy_vs_T", "latency", "cost"):
            assert "mean ± sample standard deviation over seeds" in caption, kind
        else:
            assert "mean over seeds" in caption and "no error bars" in caption, kind
        assert hidden_texts(fig) == [], kind
        plt.close(fig)


def test_caption_gives_the_spread_of_seeds_and_says_when_a_seed_has_no_bar() -> None:
    runs = synthetic_runs()
    uneven = runs[~((runs["method"] == "dsr-if") & (runs["seed"] > 0))]
    fig = figures.accuracy_vs_T(synthetic_experiment(), uneven[uneven["configured"]],
                                load_published(ROOT / "paper_tables" / "published.csv"))
    assert "n = 1 to 3 seeds per point; no bar where n = 1" in " ".join(
        fig.texts[-1].get_text().replace("\u00a0", " ").split())
    plt.close(fig)
    assert style.seeds([1, 1]) == "n = 1 seed per point; one seed: no bar"


def test_no_latency_figure_for_an_experiment_without_a_conversion_method(tmp_path: Path) -> None:
    exp = synthetic_experiment(methods=["dsr-if", "dsr-lif"], firing_rates=[])
    cfg = check_config({"name": "t", "results_dir": str(tmp_path / "res"),
                        "tables_dir": str(tmp_path / "tab"),
                        "published": "paper_tables/published.csv",
                        "experiments": [{k: v for k, v in exp.items() if k != "sweeps"}
                                        | {"time_steps": [2, 4, 8], "seeds": [0, 1, 2]}]}, ROOT)
    grid = Grid(cfg)
    outputs = grid.outputs()
    assert "latency" not in outputs["experiments"]["synthetic"]["figures"]
    runs = synthetic_runs()
    figures.render_figures(grid.experiments(), outputs, runs[runs["method"].isin(exp["methods"])],
                           {}, load_published(ROOT / "paper_tables" / "published.csv"))
    written = sorted(p.name for p in (tmp_path / "tab" / "t" / "figures").glob("*.png"))
    assert written == ["synthetic_accuracy_vs_T.png", "synthetic_cost.png", "synthetic_memory.png",
                       "synthetic_pareto.png"]


def test_cost_table_and_memory_figure_read_the_training_memory() -> None:
    """The SLTT-style cost table: time per epoch and step, training memory beside accuracy,
    every trained method at each T, no conversion row; a run recorded before training memory
    was measured shows the process peak in the figure's axis, and says so."""
    exp, runs = synthetic_experiment(), synthetic_runs()
    files = cost.table_files(exp, runs, {"md": "c.md", "tex": "c.tex", "csv": "c.csv"})
    md = files["c.md"]
    assert "| DSR (IF) | PreAct-ResNet-8 | 4 | 3 | " in md
    assert "| ANN-to-SNN conversion |" not in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| DSR (IF) | PreAct-ResNet-8 | 4 "))
    assert "| 40.00 |" in row  # 10 ms per step at T = 4, in ms
    assert "| 80.00 ± 0.00 |" in row  # training memory 40 + 10 T MiB
    assert "cpu_rss_growth" in md
    assert cost.memory_column(runs)[0] == "train_memory_mb"
    older = runs.assign(train_memory_mb=None, train_memory_kind=None)
    assert cost.memory_column(older) == ("peak_memory_mb",
                                         "peak memory of the process (MiB; cpu_peak_rss)")
    fig = cost.memory_vs_accuracy(exp, runs[runs["sweep_T_max"].isna()])
    assert fig.axes[0].get_xlabel().startswith("peak training memory (MiB")
    assert hidden_texts(fig) == []
    plt.close(fig)
