"""A method's sweep (`per_method.<key>.sweep`): one parameter, each value its own run (its own
identity folder), table row and point of the experiment's sweep figure. `check` refuses what the
figure or the table could not show, in one line, while the grid is planned."""

import re

from dsr.config import ConfigError, format_value


def check(exp: dict, conversion: set[str]) -> None:
    where = f"config: experiment {exp['name']!r}"
    for method, per in (exp.get("per_method") or {}).items():
        sweep = per.get("sweep")
        if not sweep:
            continue
        if len(sweep) != 1:
            raise ConfigError(f"{where}: per_method.{method}.sweep names {len(sweep)} "
                              f"parameters ({', '.join(sweep)}); sweep one parameter per "
                              "method (one figure axis), or add a second experiment")
        (param,) = sweep
        if method in conversion:
            raise ConfigError(f"{where}: per_method.{method}.sweep: {method} trains nothing "
                              "of its own (it converts a trained model); sweep the method "
                              "it converts, or add an experiment per value")
        bad = [v for v in sweep[param]
               if not re.fullmatch(r"[A-Za-z0-9._+-]+", format_value(v))]
        if bad:
            raise ConfigError(f"{where}: per_method.{method}.sweep.{param} value {bad[0]!r} "
                              "cannot be a table label; use numbers or plain words")
        if param in {**(exp.get("set") or {}), **(per.get("set") or {})}:
            raise ConfigError(f"{where}: per_method.{method} both sets and sweeps {param}; "
                              "remove it from set")
        if method in (exp.get("firing_rates") or ()):
            raise ConfigError(f"{where}: firing_rates names {method}, whose "
                              f"{param} is swept; the sweep figure shows its firing rate "
                              "per value, so remove it from firing_rates")
