"""From what a user asks (a CLI call, a workflow cell) to one frozen RunConfig and its method.

`dsr.run` (the trainer's CLI) and `pipeline.grid` (the workflow's planner) both call `resolve`,
so the run the workflow plans, and names by its hash, is the run the trainer trains: defaults
per dataset and method, `--set` overrides checked key by key, plug-ins imported and recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsr import datasets, registry
from dsr.config import (
    ConfigError,
    RunConfig,
    TrainConfig,
    apply_overrides,
    split_overrides,
    train_config,
)
from dsr.snn import models

if TYPE_CHECKING:
    from dsr.method import Method


def plugin_targets(flag: str, pairs: list[str]) -> dict[str, str]:
    """--plugin / --dataset-plugin KEY=module:Class pairs as {key: target}."""
    for pair in pairs:
        key, _, target = pair.partition("=")
        if not key or ":" not in target:
            raise ConfigError(f"{flag} {pair}: expected KEY=module:Class")
    return split_overrides(pairs, flag)


def add_plugin_paths(paths: list[str | Path]) -> None:
    """Put the folders of out-of-tree plug-ins first on the import path (each once)."""
    for path in reversed([str(Path(p).resolve()) for p in paths]):
        if not Path(path).is_dir():
            raise ConfigError(f"plug-in path {path} is not a folder; point it at the folder "
                              "that holds the plug-in's module")
        if path not in sys.path:
            sys.path.insert(0, path)


def resolve(method: str, dataset: str, time_steps: int, seed: int, *, arch: str | None = None,
            epochs: int | None = None, mode: str | None = None,
            overrides: dict[str, str] | None = None, plugins: dict[str, str] | None = None,
            dataset_plugins: dict[str, str] | None = None, source: str | None = None,
            ) -> tuple[RunConfig, type[Method]]:
    """One frozen RunConfig and the method class it runs; raises ConfigError, UnknownMethod
    or UnknownDataset (one line each). `overrides` are --set texts; `source` is the hash of the
    run whose model a conversion run converts."""
    plugins, dataset_plugins = plugins or {}, dataset_plugins or {}
    dataset_defaults = datasets.defaults(dataset, dataset_plugins)
    method_cls = registry.get(method, plugins)
    arch = arch or dataset_defaults.get("arch")
    if arch is None:
        raise ConfigError(f"dataset {dataset!r} declares no default arch; pass --arch")
    if arch not in models.names():
        raise ConfigError(f"unknown architecture {arch!r}; choose one of "
                          f"{', '.join(models.names())}")
    mode = mode or method_cls.modes[0]
    if mode not in method_cls.modes:
        raise ConfigError(f"--mode {mode} is not available for {method} (it has "
                          f"{', '.join(method_cls.modes)}); fast and approx mode are DSR's")
    overrides = dict(overrides or {})
    if epochs is not None:
        overrides["epochs"] = str(epochs)
    params_cls = method_cls.Params
    data_cls = datasets.params(datasets.get(dataset, dataset_plugins))
    known = {f.name for cls in (TrainConfig, params_cls, data_cls) for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} for --set ({method} on "
                          f"{dataset}); valid keys: {', '.join(sorted(known))}")
    train = train_config(dataset, time_steps, overrides, dataset_defaults)
    params = apply_overrides(params_cls, method_cls.default_params(time_steps, dataset),
                             overrides)
    params_cls(**params)  # validates types/values the method checks in __post_init__
    data_params = apply_overrides(data_cls, dataclasses.asdict(data_cls()), overrides)
    data_cls(**data_params)  # likewise the dataset's
    outside = {kind: table[key] for kind, key, table in
               (("method", method, plugins), ("dataset", dataset, dataset_plugins))
               if key in table}
    cfg = RunConfig(method=method, dataset=dataset, arch=arch, time_steps=time_steps,
                    seed=seed, mode=mode, train=train, params=params, data_params=data_params,
                    plugins=outside, source=source)
    return cfg, method_cls


def plugin_provenance(cfg: RunConfig) -> list[dict[str, Any]]:
    """Each out-of-tree class of the run: its module:Class, source file and the file's sha256
    (what git_commit says for the suite's own code)."""
    out = []
    for kind, target in sorted(cfg.plugins.items()):
        key = cfg.method if kind == "method" else cfg.dataset
        module = sys.modules.get(target.partition(":")[0])
        try:
            path = Path(inspect.getsourcefile(module)).resolve()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except (TypeError, OSError):  # not imported, or built without a source file
            path, digest = None, None
        out.append({"kind": kind, "key": key, "target": target,
                    "file": None if path is None else str(path), "sha256": digest})
    return out
