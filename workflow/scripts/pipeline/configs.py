"""Workflow configurations as files: standalone, parsed strictly, plug-in folders resolved.

With no --configfile the workflow runs config/config.yaml. A file given with --configfile is
the whole configuration: nothing is taken from config/config.yaml unless the file names a base
explicitly, `base: <path>` (relative to the file's folder): the base is loaded first and the
file's keys are merged over it (nested mappings key by key, lists and values replaced), the same
way several --configfile files and then --config key=value settings are merged, in that order.
Every file must set `name` itself (its tables go to {tables_dir}/{name}/), so two configurations
never write one tables folder by accident. A key written twice in one mapping is an error, not
"the last one wins". `plugin_paths` entries are folders relative to the file that lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dsr.config import ConfigError

DEFAULT = "config/config.yaml"  # relative to the workflow's folder


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping."""


def _mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise ConfigError(f"{node.start_mark.name}:{key_node.start_mark.line + 1}: key "
                              f"{key!r} is written twice (first on line {seen[key]}); keep one")
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=True)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(path: str | Path) -> Any:
    """A YAML file, duplicate keys refused; one-line ConfigError for any problem."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; fix the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path}: cannot read ({e})") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        raise ConfigError(f"config file {path}{line}: not valid YAML "
                          f"({getattr(e, 'problem', None) or e})") from None


def merge(base: dict, over: dict) -> dict:
    """`over` merged onto `base`: mappings key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_file(path: str | Path, chain: tuple[Path, ...] = ()) -> dict:
    """One configuration file with its `base` chain merged in, plug-in paths made absolute."""
    path = Path(path).resolve()
    if path in chain:
        raise ConfigError(f"config file {path}: its base chain returns to itself; remove a base")
    cfg = read_yaml(path)
    if not isinstance(cfg, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings at the top level")
    paths = cfg.get("plugin_paths")
    if paths is not None:
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ConfigError(f"config file {path}: plugin_paths must be a list of folders")
        cfg["plugin_paths"] = [str((path.parent / p).resolve()) for p in paths]
    base = cfg.pop("base", None)
    if base is None:
        return cfg
    if not isinstance(base, str):
        raise ConfigError(f"config file {path}: base must be the path of another config file")
    return merge(load_file(path.parent / base, (*chain, path)), cfg)


def load_config(files: list[str | Path], settings: dict, root: str | Path) -> dict:
    """The configuration of a workflow run: `files` (--configfile, in order; none: the default
    config of the workflow folder `root`), then `settings` (--config key=value)."""
    files = [Path(f) for f in files] or [Path(root) / DEFAULT]
    cfg: dict = {}
    for path in files:
        own = read_yaml(path) if path.exists() else None
        if isinstance(own, dict) and "name" not in own and "name" not in settings:
            raise ConfigError(f"config file {path}: set `name:` (its tables go to "
                              "{tables_dir}/{name}/); a configuration is named by its own file, "
                              "even when it names a base")
        cfg = merge(cfg, load_file(path))
    return merge(cfg, settings)


# profile values that must be replaced before a cluster run (profiles/slurm/config.v8+.yaml)
PLACEHOLDERS = {"slurm_account": "your-account"}


def placeholder_resources(defaults) -> str | None:
    """A one-line error if the profile's default resources (Snakemake's, each with the `raw`
    text the profile gave) still hold a placeholder, else None."""
    for name, placeholder in PLACEHOLDERS.items():
        value = defaults.get(name) if hasattr(defaults, "get") else None
        if str(getattr(value, "raw", value)).strip("'\"") == placeholder:
            return (f"profile: default-resources {name} is still the placeholder "
                    f"{placeholder!r}; set your cluster's value in the profile (e.g. "
                    f"profiles/slurm/config.v8+.yaml) or pass --default-resources {name}=...")
    return None
