"""What the suite knows about a method without importing it (no torch): its key, where its class
lives, the name people read, its category and, for ANN-to-SNN conversion, whose trained model
it converts. Built-in methods are registered as specs in `dsr.registry.METHODS`, in the order
their colours are assigned; a registered class takes its category and conversion source from its
spec (`dsr.method.Method.__init_subclass__`), so each fact has one home. An out-of-tree method
declares the same facts as class attributes (`name`, `category`, `source_method`), and
`MethodSpec.of` reads them once the planner has imported it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# table grouping; claims choose their comparators by category
CATEGORIES = ("ours", "ANN", "surrogate gradient", "online", "ANN-to-SNN conversion")


@dataclass(frozen=True)
class MethodSpec:
    key: str  # file name, registry key, config value, results path segment, table row
    target: str  # "module:Class"
    name: str  # what tables, legends and claims show
    category: str  # one of CATEGORIES (a plug-in may name its own)
    source: str | None = None  # conversion: the key of the method whose model.pt it converts

    @classmethod
    def of(cls, key: str, method_cls: type) -> MethodSpec:
        """A plug-in's spec from its class attributes. Its display name is the one its own class
        declares, else its key (a subclass of a built-in does not inherit the built-in's name);
        its category and conversion source may be inherited."""
        return cls(key, f"{method_cls.__module__}:{method_cls.__qualname__}",
                   method_cls.__dict__.get("name") or key, method_cls.category or "plug-in",
                   method_cls.source_method)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
