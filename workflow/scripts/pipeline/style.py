"""One look for every figure of every configuration: colours, titles, units, resolution.

A method keeps its colour whichever subset of methods a figure shows, so DSR-IF is the same
blue in the default, reduced and paper grids; where a figure separates a method's time steps
(Fig. S1), they are shades of that colour, and a swept run (key method@param=value) takes a
darker or lighter shade of it. Keys not listed (plug-ins) take the remaining colours of the
palette in the order they are first asked for. Titles are short (the experiment's name); what a
figure shows in full is its report caption and its table's legend.
"""

import matplotlib as mpl
import seaborn as sns

DPI = 200  # PNG resolution; the PDF is vector
FORMATS = ("png", "pdf")
ACCURACY_LABEL = "test accuracy, best epoch (%)"
T_LABEL = "time steps T"
RATE_LABEL = "firing rate (% of neurons per time step)"

# tab10, then Dark2 for the methods and plug-ins beyond ten (the first ten keep their colours)
_PALETTE = sns.color_palette("tab10", 10) + sns.color_palette("Dark2", 8)
# fixed order: the registered methods, DSR first
_FIXED = ["dsr-if", "dsr-lif", "sg-bptt", "tet", "plif", "conversion", "qcfs", "ann", "dspike",
          "ottt", "sltt"]
_COLOURS: dict[str, tuple] = dict(zip(_FIXED, _PALETTE, strict=False))


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
    """A figure's title: the experiment's name, and what the figure plots if it is not obvious."""
    return exp["name"] if what is None else f"{exp['name']}: {what}"


def apply() -> None:
    """The shared matplotlib / seaborn settings (call once before drawing)."""
    sns.set_theme(style="whitegrid", context="paper")
    mpl.rcParams.update({
        "savefig.dpi": DPI, "savefig.bbox": "tight", "figure.dpi": 100,
        "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
        "legend.fontsize": 7, "figure.titlesize": 11,
        "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by publishers
    })
