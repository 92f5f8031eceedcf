"""What the suite knows about a method without importing it (no torch): its key, where its class
lives, the name people read, its category, its neuron, its modes, its default hyperparameters per
dataset and, for ANN-to-SNN conversion, whose trained model it converts. Built-in methods are
registered as specs in `dsr.registry.METHODS`, in the order their colours are assigned; a
registered class takes these facts from its spec (`dsr.method.Method.__init_subclass__`), so
each has one home. An out-of-tree method declares the same facts as class attributes (`name`,
`category`, `neuron`, `modes`, `defaults`, `source_method`), and `MethodSpec.of` reads them once
the planner has imported it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# table grouping; claims choose their comparators by category
CATEGORIES = ("ours", "ANN", "surrogate gradient", "online", "ANN-to-SNN conversion")


@dataclass(frozen=True)
class MethodSpec:
    key: str  # file name, registry key, config value, results path segment, table row
    target: str  # "module:Class"
    name: str  # what tables, legends and claims show
    category: str  # one of CATEGORIES (a plug-in may name its own)
    neuron: str = ""  # recorded as metrics.json "neuron" (a --set neuron=... may change it)
    modes: tuple[str, ...] = ("exact",)  # dsr.config.MODES it runs in; the first is the default
    # hyperparameter defaults by dataset key, "*" for every dataset, over its Params' own
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str | None = None  # conversion: the key of the method whose model.pt it converts

    @classmethod
    def of(cls, key: str, method_cls: type) -> MethodSpec:
        """A plug-in's spec from its class attributes. Its display name is the one its own class
        declares, else its key (a subclass of a built-in does not inherit the built-in's name);
        the other facts may be inherited."""
        return cls(key, f"{method_cls.__module__}:{method_cls.__qualname__}",
                   method_cls.__dict__.get("name") or key, method_cls.category or "plug-in",
                   _plain(method_cls.neuron), tuple(method_cls.modes),
                   dict(method_cls.defaults), method_cls.source_method)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plain(neuron: Any) -> str:
    # a class whose neuron is a hyperparameter reads it in a property: no fact without a run
    return neuron if isinstance(neuron, str) else ""
