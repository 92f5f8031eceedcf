"""Method registry: key -> MethodSpec (dsr.spec: class, display name, category, neuron, modes,
per-dataset defaults, conversion source), the class imported lazily. One key everywhere (file,
config, results path, table row). Out-of-tree methods join through `plugins`
({key: "module:Class"}), which the CLI takes as `--plugin key=module:Class` and the workflow
from its config.

Importing this module imports no torch (the workflow reads `METHODS` while it plans the grid);
`get` imports the method's module, and with it torch.
"""

from __future__ import annotations

import importlib

from dsr.spec import MethodSpec

# the built-in methods, DSR first; the order is their colours' (pipeline.style)
DSR_MODES = ("fast", "exact", "approx")  # dsr.config.MODES; what each computes: README
METHODS: dict[str, MethodSpec] = {s.key: s for s in (
    MethodSpec("dsr-if", "dsr.method:DSRIF", "DSR (IF)", "ours", "IF", DSR_MODES),
    MethodSpec("dsr-lif", "dsr.method:DSRLIF", "DSR (LIF)", "ours", "LIF", DSR_MODES),
    MethodSpec("sg-bptt", "baselines.sg_bptt:SGBPTT", "Surrogate gradient (BPTT)",
               "surrogate gradient", "IF"),
    MethodSpec("tet", "baselines.tet:TET", "TET", "surrogate gradient", "IF"),
    MethodSpec("plif", "baselines.plif:PLIF", "PLIF", "surrogate gradient", "PLIF"),
    MethodSpec("conversion", "baselines.conversion:Conversion", "ANN-to-SNN conversion",
               "ANN-to-SNN conversion", "IF", source="ann"),
    # L = 4 for CIFAR-scale data (the authors' CIFAR-10 command), 16 for ImageNet (the official
    # ImageNet script's default)
    MethodSpec("qcfs", "baselines.qcfs:QCFS", "QCFS", "ANN-to-SNN conversion", "IF",
               defaults={"*": {"L": 4}, "imagenet": {"L": 16}}, source="qcfs"),
    MethodSpec("ann", "baselines.ann:ANN", "ANN (ReLU)", "ANN", "ReLU"),
    MethodSpec("dspike", "baselines.dspike:DspikeBPTT", "Dspike", "surrogate gradient", "LIF"),
    MethodSpec("ottt", "baselines.ottt:OTTT", "OTTT", "online", "LIF"),
    MethodSpec("sltt", "baselines.sltt:SLTT", "SLTT", "online", "LIF"),
)}


class UnknownMethod(ValueError):
    pass


def lookup(kind: str, builtins: dict[str, str], key: str, plugins: dict[str, str] | None,
           error: type[Exception], flag: str) -> str:
    """The "module:Class" registered as `key` in `builtins` or `plugins`; a one-line `error` naming
    the choices and the CLI `flag` that adds one if none is. Shared like `import_class`."""
    table = {**builtins, **(plugins or {})}
    if key not in table:
        raise error(f"unknown {kind} {key!r}; choose one of {', '.join(sorted(table))} or add one "
                    f"with {flag} KEY=module:Class")
    return table[key]


def import_class(kind: str, key: str, target: str, error: type[Exception]) -> type:
    """Import `target` ("module:Class") registered as `key`; a one-line `error` if it does not
    import or declares another key. Shared by the method and dataset registries."""
    module_name, _, cls_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except SystemExit as e:  # a module that exits when imported would end the run silently
        raise error(f"{kind} {key!r} points at {target!r}, whose import calls sys.exit({e.code})"
                    "; guard the module's script code with `if __name__ == \"__main__\":`"
                    ) from None
    except Exception as e:  # any import failure of a user's module: one line, not a traceback
        raise error(f"{kind} {key!r} points at {target!r}, which does not import ({e}); check "
                    "the module path and that its folder is on the path (plugin_paths: in a "
                    "workflow config, --plugin-path for python -m dsr.run)") from None
    if getattr(cls, "key", key) != key:
        raise error(f"{kind} class {target} declares key {cls.key!r} but is registered as "
                    f"{key!r}; use one name everywhere")
    return cls


def get(key: str, plugins: dict[str, str] | None = None) -> type:
    """The method class registered as `key` (built-in or plugin), checked to be a `Method`."""
    targets = {k: s.target for k, s in METHODS.items()}
    target = lookup("method", targets, key, plugins, UnknownMethod, "--plugin")
    cls = import_class("method", key, target, UnknownMethod)
    from dsr.method import Method  # torch: only once a method is actually wanted

    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise UnknownMethod(f"method {key!r} points at {target!r}, which is not a subclass "
                            "of dsr.method.Method; point it at a method class")
    return cls


def spec(key: str, plugins: dict[str, str] | None = None) -> MethodSpec:
    """A method's spec: a built-in's without importing it, a plug-in's from its class (which
    imports it)."""
    if key in METHODS and key not in (plugins or {}):
        return METHODS[key]
    return MethodSpec.of(key, get(key, plugins))
