"""One look for every figure of every configuration: a fixed colour per method key.

A method keeps its colour whichever subset of methods a figure shows, so DSR-IF is the same
blue in the default, reduced and paper grids. Keys not listed (plug-ins) take the remaining
colours of the palette in the order they are first asked for.
"""

import seaborn as sns

_PALETTE = sns.color_palette("tab10", 10)
# fixed order: the registered methods, DSR first
_FIXED = ["dsr-if", "dsr-lif", "sg-bptt", "tet", "plif", "conversion", "qcfs", "ann"]
_COLOURS: dict[str, tuple] = dict(zip(_FIXED, _PALETTE, strict=False))


def colour(method: str) -> tuple:
    """The method's colour (RGB in 0..1)."""
    if method not in _COLOURS:
        _COLOURS[method] = _PALETTE[len(_COLOURS) % len(_PALETTE)]
    return _COLOURS[method]
