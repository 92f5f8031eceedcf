"""Dataset registry: key -> "module:Class", imported lazily (this module imports no torch, so the
workflow can check names). One key everywhere (CLI, config, results path, table row).

A dataset class has one method, `load(self, root, options) -> dsr.data.Dataset`: root is the
`data_root` setting (None: the dataset's default folder), options a `dsr.data.LoadOptions`; the
class is built with no arguments. It may declare `defaults`, a dict of run defaults as in
dsr.config.DATASET_DEFAULTS (`arch` plus TrainConfig fields), `Params`, a frozen dataclass of
its own settings (defaults in its fields, checks in `__post_init__`, set with `--set` like a
method's, recorded as the run's `data_params`; `options.params` is the resolved instance), and
`key` (then it must equal its registry key). Out-of-tree datasets join through `plugins`
({key: "module:Class"}), which the CLI takes as `--dataset-plugin key=module:Class` and the
workflow from its `dataset_plugins:` config.
"""

from __future__ import annotations

from typing import Any

from dsr.config import DATASET_DEFAULTS
from dsr.registry import import_class, lookup

DATASETS: dict[str, str] = {
    "digits": "dsr.data.digits:Digits",
    "cifar10": "dsr.data.cifar:CIFAR10",
    "cifar100": "dsr.data.cifar:CIFAR100",
    "imagenet": "dsr.data.imagenet:ImageNet",
    "cifar10_dvs": "dsr.data.dvs:CIFAR10DVS",
}


class UnknownDataset(ValueError):
    pass


def check(key: str, plugins: dict[str, str] | None = None) -> str:
    """The "module:Class" registered as `key`; a one-line UnknownDataset if none is."""
    return lookup("dataset", DATASETS, key, plugins, UnknownDataset, "--dataset-plugin")


def get(key: str, plugins: dict[str, str] | None = None) -> type:
    """The dataset class registered as `key` (built-in or plugin)."""
    target = check(key, plugins)
    cls = import_class("dataset", key, target, UnknownDataset)
    if not callable(getattr(cls, "load", None)):
        raise UnknownDataset(f"dataset class {target} has no load(root, options) method")
    return cls


def params(cls: type) -> type:
    """A dataset class's settings dataclass (`Params`; none: dsr.data.core.NoParams)."""
    from dsr.data.core import NoParams  # torch: only once a dataset class is imported

    return getattr(cls, "Params", NoParams)


def defaults(key: str, plugins: dict[str, str] | None = None) -> dict[str, Any]:
    """Run defaults of `key`: the paper's for built-ins, the class's `defaults` for plugins."""
    if key in DATASETS and key not in (plugins or {}):
        return DATASET_DEFAULTS[key]
    return dict(getattr(get(key, plugins), "defaults", {}))
