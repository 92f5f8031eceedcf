"""One look for every figure of every configuration: colours, titles, units, resolution.

A method keeps its colour whichever subset of methods a figure shows, so DSR-IF is the same
blue in the default, reduced and paper grids; where a figure separates a method's time steps
(Fig. S1), they are shades of that colour, and a swept run (key method@param=value) takes a
darker or lighter shade of it. Keys not listed (plug-ins) take the remaining colours of the
palette in the order they are first asked for. A figure's title is the experiment's `title:`
(its name where it has none) and a caption line under it says what the bars and bands are:
mean +- sample standard deviation over seeds, with n. Long titles and captions are wrapped to the
figure's width, so no text runs past its edge.
"""

import textwrap

import matplotlib as mpl
import seaborn as sns

from dsr import registry

DPI = 200  # PNG resolution; the PDF is vector
FORMATS = ("png", "pdf")
ACCURACY_LABEL = "test accuracy, best epoch (%)"
T_LABEL = "time steps T"
RATE_LABEL = "firing rate (% of neurons per time step)"
CAPTION_SIZE = 7  # points
SPREAD = "mean ± sample standard deviation over seeds"  # what every error bar and band shows

# tab10, then Dark2 for the methods and plug-ins beyond ten (the first ten keep their colours)
_PALETTE = sns.color_palette("tab10", 10) + sns.color_palette("Dark2", 8)
# fixed colours: the built-in methods in their registry order (DSR first); plug-ins next
_COLOURS: dict[str, tuple] = dict(zip(registry.METHODS, _PALETTE, strict=False))


def accuracy_label(exp: dict) -> str:
    """The accuracy axis: the best test epoch, or in a tuned experiment (pipeline.tuning) the
    test accuracy at the selected run's best validation epoch."""
    return ("test accuracy at best validation epoch (%)" if exp.get("tuned")
            else ACCURACY_LABEL)


def accuracy_words(exp: dict) -> str:
    """What the accuracy of a caption is, in words (see accuracy_label)."""
    return ("test accuracy at the best validation epoch" if exp.get("tuned")
            else "best-epoch test accuracy")


_SHADES = (-0.5, -0.25, 0.0, 0.3, 0.55, 0.75)  # < 0 towards black, > 0 towards white; in order


def colour(method: str) -> tuple:
    """The method's colour (RGB in 0..1)."""
    if method not in _COLOURS:
        base, _, variant = method.partition("@")
        if variant:
            shade = _SHADES[sum(k.startswith(base + "@") for k in _COLOURS) % len(_SHADES)]
            target = 0.0 if shade < 0 else 1.0
            _COLOURS[method] = tuple(c + abs(shade) * (target - c) for c in colour(base))
        else:
            _COLOURS[method] = _PALETTE[len(_COLOURS) % len(_PALETTE)]
    return _COLOURS[method]


def shades(method: str, n: int) -> list[tuple]:
    """n shades of the method's colour, light to dark (e.g. one per T, smallest first)."""
    if n == 1:
        return [colour(method)]
    return sns.light_palette(colour(method), n_colors=n + 1)[1:]


def title(exp: dict, what: str | None = None) -> str:
    """A figure's title: the experiment's `title:` (else its name), and what the figure plots if
    it is not obvious."""
    head = exp.get("title") or exp["name"]
    return head if what is None else f"{head}: {what}"


def wrap(text: str, width_in: float, fontsize: float) -> str:
    """`text` broken into lines that fit `width_in` inches at `fontsize` points (a character is
    at most about 0.6 em wide in the sans-serif font used)."""
    chars = max(20, int(width_in * 72 / (0.6 * fontsize)))
    keep = text.replace(" = ", "\u00a0=\u00a0")  # "T = 64" stays on one line
    return "\n".join(textwrap.fill(line, chars) for line in keep.splitlines())


def seeds(counts, bars: bool = True, per: str = "point") -> str:
    """'n = 3 seeds per point' from the number of seeds behind each point (a spread when they
    differ); with `bars`, that a single seed has no standard deviation, so no bar."""
    counts = [int(c) for c in counts]
    if not counts:
        return "no runs"
    lo, hi = min(counts), max(counts)
    n = f"n = {lo}" if lo == hi else f"n = {lo} to {hi}"
    note = "" if lo > 1 or not bars else ("; one seed: no bar" if hi == 1 else
                                          "; no bar where n = 1")
    return f"{n} seed{'s' if hi > 1 else ''} per {per}{note}"


def apply() -> None:
    """The shared matplotlib / seaborn settings (call once before drawing)."""
    sns.set_theme(style="whitegrid", context="paper")
    mpl.rcParams.update({
        "savefig.dpi": DPI, "savefig.bbox": "tight", "figure.dpi": 100,
        "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
        "legend.fontsize": 7, "figure.titlesize": 11,
        "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by publishers
    })
