"""The plumbing every figure shares: saving PNG and PDF atomically, the note drawn when there
is nothing to plot, the title and caption line around the panels, one panel per architecture,
seed counts for the caption, colours by display name and the T labels beside points."""

import matplotlib

matplotlib.use("Agg")
import matplotlib as mpl  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dsr.harness.results import atomic_write  # noqa: E402
from pipeline.names import display  # noqa: E402
from pipeline.style import CAPTION_SIZE, DPI, apply, colour, wrap  # noqa: E402

apply()


def save(fig: plt.Figure, paths: dict[str, str]) -> None:
    """PNG and PDF, written atomically; the PDF without a creation date, so the same figure
    is the same file (committed figures change only when what they show does)."""
    for ext, path in paths.items():
        meta = {"CreationDate": None} if ext == "pdf" else None
        atomic_write(path, lambda f, ext=ext, meta=meta: fig.savefig(
            f, format=ext, dpi=DPI, bbox_inches="tight", metadata=meta), mode="wb")
    plt.close(fig)


def note(title: str, text: str) -> plt.Figure:
    """A figure that says why there is nothing to plot."""
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.set_title(wrap(title, 6, mpl.rcParams["axes.titlesize"]))
    ax.text(0.5, 0.5, wrap(text, 5.5, 9), ha="center", va="center", fontsize=9)
    return fig


def finish(fig: plt.Figure, title: str, caption: str) -> plt.Figure:
    """The title above the panels, the caption line (what the bars and bands are) below them,
    both wrapped to the figure's width, and the panels laid out between."""
    width = fig.get_figwidth()
    fig.suptitle(wrap(title, width, mpl.rcParams["figure.titlesize"]))
    fig.tight_layout()
    fig.text(0.5, 0, wrap(caption, width, CAPTION_SIZE), ha="center", va="top",
             fontsize=CAPTION_SIZE, color="0.3")
    return fig


def seed_counts(runs: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Seeds behind each plotted point (one point per `keys` value)."""
    return runs.groupby(keys, dropna=False)["seed"].nunique()


def palette(methods: list[str]) -> dict[str, tuple]:
    """Display name -> the method's fixed colour (style.colour)."""
    return {display(m): colour(m) for m in methods}


def panels(n: int, width: float = 5.0, height: float = 3.6) -> tuple[plt.Figure, list]:
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])



def label_points(ax: plt.Axes, points: pd.DataFrame, x: str = "cost") -> None:
    """'T=..' beside each point (x: its column; y: acc_best), turned towards the inside near
    the right and top edges so no label leaves the axes (where the legend would hide it)."""
    ax.autoscale_view()
    to_axes = ax.transData + ax.transAxes.inverted()
    for _, p in points.iterrows():
        fx, fy = to_axes.transform((p[x], p["acc_best"]))
        right, top = fx > 0.85, fy > 0.9
        ax.annotate(f"T={p['T']}", (p[x], p["acc_best"]), fontsize=6,
                    xytext=(-3 if right else 3, -3 if top else 3), textcoords="offset points",
                    ha="right" if right else "left", va="top" if top else "bottom")
