"""Figure style: resolution, units from the runs' recorded energy model, Fig. S1's band."""

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from pipeline import figures, style


def test_png_is_written_at_200_dpi_beside_a_pdf(tmp_path: Path) -> None:
    fig = figures.note("t", "nothing")
    paths = {ext: str(tmp_path / f"f.{ext}") for ext in style.FORMATS}
    figures.save(fig, paths)
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
