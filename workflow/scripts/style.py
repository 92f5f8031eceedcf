"""One look for every figure of every configuration: a fixed colour per method key.

A method keeps its colour whichever subset of methods a figure shows, so DSR-IF is the same
blue in the default, reduced and paper grids. Keys not listed (plug-ins) take the remaining
colours of the palette in the order they are first asked for. A swept run (key
method@param=value) takes a darker or lighter shade of its method's colour.
"""

import seaborn as sns

_PALETTE = sns.color_palette("tab10", 10)
# fixed order: the registered methods, DSR first
_FIXED = ["dsr-if", "dsr-lif", "sg-bptt", "tet", "plif", "conversion", "qcfs", "ann"]
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
