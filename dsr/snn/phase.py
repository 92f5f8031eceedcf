"""The phases of a DSR network, and the one way to set them.

Fast mode (`dsr.snn.layers.fast_forward`) runs the same modules in three phases: SPIKE (the T-step
network; under autograd, exact mode), RECORD (the T-step network without saving activations,
each module keeping what the next phase needs) and REPRESENT (one pass at batch B on the
representations, carrying the DSR gradient). A module whose forward depends on the phase
subclasses `PhaseAware`; `set_phase` and the `phase` context manager reach every such module of
a model by that class, and the setter refuses anything but a `Phase` (or its name).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator

from torch import nn


class Phase(enum.StrEnum):
    SPIKE = "spike"
    RECORD = "record"
    REPRESENT = "represent"


def as_phase(value: Phase | str) -> Phase:
    """`value` as a Phase; a one-line ValueError for anything else."""
    try:
        return Phase(value)
    except ValueError:
        names = ", ".join(repr(p.value) for p in Phase)
        raise ValueError(f"phase must be one of {names}, got {value!r}") from None


class PhaseAware:
    """Mixin of an `nn.Module` whose forward depends on the phase (put it before nn.Module in
    the bases). The phase is a validated property, SPIKE until set; it is no parameter or
    buffer, so state_dict and repr are the module's own."""

    _phase: Phase = Phase.SPIKE

    @property
    def phase(self) -> Phase:
        return self._phase

    @phase.setter
    def phase(self, value: Phase | str) -> None:
        self._phase = as_phase(value)


def phase_aware_modules(model: nn.Module) -> list[PhaseAware]:
    """Every module of `model` (itself included) that is PhaseAware, in `modules()` order."""
    return [m for m in model.modules() if isinstance(m, PhaseAware)]


def set_phase(model: nn.Module, value: Phase | str) -> list[PhaseAware]:
    """Set every phase-aware module of `model` to `value`; returns those modules."""
    value = as_phase(value)
    mods = phase_aware_modules(model)
    for m in mods:
        m.phase = value
    return mods


@contextlib.contextmanager
def phase(model: nn.Module, value: Phase | str) -> Iterator[None]:
    """Inside, every phase-aware module of `model` is in phase `value`; SPIKE again on exit."""
    mods = set_phase(model, value)
    try:
        yield
    finally:
        for m in mods:
            m.phase = Phase.SPIKE
