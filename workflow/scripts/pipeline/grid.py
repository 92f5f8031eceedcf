"""The configured grid: config checks, the runs (one CLI call each), their resources, the cells
of each table and every output path. Pure Python (no Snakemake globals), so tests build a Grid
from a config dict; workflow/rules/common.smk turns it into rule inputs and wildcard lookups.

Every experiment in the config is archs x methods x time_steps x seeds on one dataset
(`per_method` changes one method's time steps, seeds, epochs, mode or overrides, sweeps one of
its parameters or tunes it: pipeline.sweeps, pipeline.tuning). Each run is resolved while the
grid is planned, exactly as the trainer will resolve it (dsr.harness.resolve: defaults, overrides,
plug-ins imported), and its results folder is
{results_dir}/runs/{dataset}/{arch}/{method}/T{T}/seed{seed}/{config_hash}/: the readable cell,
then the run's identity (dsr.config.identity). Two configurations, or a changed setting, never
share a folder; experiments that ask for the same run share it (and its job).

ANN-to-SNN conversion methods (a spec with a `source`: Grid.conversion) train nothing: per
(arch, seed) one job converts the source run's model.pt (`ann`, or QCFS's own quantised ANN, at
T1) and evaluates it up to the experiment's latency_sweep T_max, at .../T{T_max}/...; its metrics
hold every T of the table, and its identity includes the hash of the run it converts.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dsr import datasets, registry
from dsr.config import TRAINING_KEYS, ConfigError, format_value, sweep_points
from dsr.harness.resolve import add_plugin_paths, resolve
from dsr.spec import MethodSpec
from pipeline import sweeps, tuning

SCHEMA = "workflow/schemas/config.schema.yaml"  # relative to the repository root
# a run's folder under {results_dir}: the readable cell, then its identity (config hash)
RUN_PATTERN = "runs/{dataset}/{arch}/{method}/T{T}/seed{seed}/{hash}"
# paper_tables/claims.yaml
CLAIM_KINDS = ("absolute", "relative", "band", "latency", "depth", "memory")
BASE_RESOURCES = {"threads": 1, "mem_mb": 4000, "runtime": 60, "gpu": 0}  # runtime: minutes
FIGURE_KINDS = ("accuracy_vs_T", "pareto", "cost", "memory", "latency")
# T_max of the latency sweep when an experiment does not set latency_sweep
LATENCY_SWEEP = {"digits": 64}
LATENCY_SWEEP_DEFAULT = 256


def check_config(cfg: dict, root: str | Path) -> dict:
    """Validate against the schema (filling defaults); one-line ConfigError on failure."""
    try:
        validate(cfg, f"{root}/{SCHEMA}")
    except WorkflowError as e:
        err = e.__context__  # validate() raises WorkflowError while handling the schema error
        if not isinstance(err, jsonschema.ValidationError):
            raise
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"config: {where}: {err.message} (see {SCHEMA})") from None
    return cfg


@dataclass(frozen=True)
class Run:
    """One job: the CLI call that writes one metrics.json, and the identity it resolves to."""

    dataset: str
    arch: str
    method: str
    T: int
    seed: int
    epochs: int | None
    mode: str | None
    overrides: tuple[tuple[str, str], ...]  # --set pairs, sorted
    plugin: str | None  # module:Class of an out-of-tree method
    variant: str | None = None  # "param=value" of a swept run (its value is in overrides too)
    source: str | None = None  # conversion: the key of the run whose model.pt it converts
    points: tuple[int, ...] = ()  # conversion: T values its sweep records besides powers of 2
    hash: str = ""  # dsr.config.identity's hash of the resolved run (set by Grid.resolve)
    plugin_paths: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        """The run's folder under the results folder."""
        return RUN_PATTERN.format(dataset=self.dataset, arch=self.arch, method=self.method,
                                  T=self.T, seed=self.seed, hash=self.hash)

    def args(self, dataset_plugins: dict[str, str]) -> list[str]:
        """The `python -m dsr.run` arguments of this run (the caller quotes them)."""
        args = ["--method", self.method, "--dataset", self.dataset, "--arch", self.arch,
                "--time-steps", str(self.T), "--seed", str(self.seed)]
        if self.epochs is not None:
            args += ["--epochs", str(self.epochs)]
        if self.mode is not None:
            args += ["--mode", self.mode]
        for key, value in self.overrides:
            args += ["--set", f"{key}={value}"]
        if self.plugin is not None:
            args += ["--plugin", f"{self.method}={self.plugin}"]
        if self.dataset in dataset_plugins:
            args += ["--dataset-plugin", f"{self.dataset}={dataset_plugins[self.dataset]}"]
        if self.plugin is not None or self.dataset in dataset_plugins:
            for path in self.plugin_paths:
                args += ["--plugin-path", path]
        if self.points:
            args += ["--sweep-points", ",".join(map(str, self.points))]
        return args

    def cell(self, experiment: str, results: str, variant: str | None) -> dict:
        """What the aggregation scripts need to find, check and place this run (`variant`:
        the experiment's label of it, which another experiment sharing the run may not have)."""
        return {"experiment": experiment, "dataset": self.dataset, "arch": self.arch,
                "method": self.method, "T": self.T, "seed": self.seed,
                "path": f"{results}/{self.key}/metrics.json", "hash": self.hash,
                "epochs": self.epochs, "mode": self.mode, "set": dict(self.overrides),
                "variant": variant,
                "sweep": sweep_points(self.T, self.points) if self.source else None,
                "points": list(self.points) if self.source else None}


def merge_resources(*layers: dict | None) -> dict:
    out = dict(BASE_RESOURCES)
    for layer in layers:
        out.update(layer or {})
    return out


class Grid:
    """The configured runs (by results key), their resources and the cells of each table."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.results = str(Path(cfg["results_dir"]))
        self.tables = str(Path(cfg["tables_dir"], cfg["name"]))
        for key in ("results_dir", "tables_dir"):
            if Path(cfg[key]).exists() and not Path(cfg[key]).is_dir():
                raise ConfigError(f"config: {key} {cfg[key]} is a file, not a folder; point "
                                  f"{key} at a folder (it is created if missing)")
        self.plugin_paths = tuple(cfg.get("plugin_paths") or ())
        add_plugin_paths(self.plugin_paths)  # the planner imports every plug-in, as jobs will
        self.runs: dict[str, Run] = {}
        self.resources: dict[str, dict] = {}
        self.cells: list[dict] = []
        # every method's spec (dsr.spec); conversion method -> whose model.pt it converts
        self.specs: dict[str, MethodSpec] = {}
        self.conversion: dict[str, str] = {}
        registered = set(registry.METHODS) | set(cfg["plugins"])
        names = [e["name"] for e in cfg["experiments"]]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"config: experiment name {twice[0]!r} is used twice; each "
                              "experiment is one table, so give each a distinct name")
        tuned = {e["name"] for e in cfg["experiments"] if tuning.tuned(e)}
        for key, name in ((cfg.get("claims") or {}).get("tuned") or {}).items():
            if name not in tuned:
                raise ConfigError(f"config: claims.tuned maps {key} to {name!r}, which is not a "
                                  "tuned experiment here (one whose methods have per_method tune "
                                  "blocks); map a tuned experiment or remove the entry")
        for exp in cfg["experiments"]:
            self.check_experiment(exp, registered)
            for run in self.expand(exp):
                self.add(run, exp)
            for run in self.expand_conversions(exp):
                self.add(run, exp, cell=run.source is not None)

    def check_experiment(self, exp: dict, registered: set[str]) -> None:
        where = f"config: experiment {exp['name']!r}"
        known = {*datasets.DATASETS, *self.cfg["dataset_plugins"]}
        if exp["dataset"] not in known:
            raise ConfigError(f"{where}: unknown dataset {exp['dataset']!r}; choose one of "
                              f"{', '.join(sorted(known))} or map it under dataset_plugins: "
                              f"({exp['dataset']}: module:Class)")
        for method in exp["methods"]:
            if method not in registered:
                raise ConfigError(
                    f"{where} names method {method!r}, which is not registered; registered: "
                    f"{', '.join(sorted(registered))}; add it to METHODS in dsr/registry.py "
                    f"or map it under plugins: ({method}: module:Class)")
            self.specs[method] = self.spec(method, where)
            if self.specs[method].source is not None:
                self.conversion[method] = self.specs[method].source
        for field_name in ("per_method", "firing_rates"):
            stray = sorted(set(exp.get(field_name) or ()) - set(exp["methods"]))
            if stray:
                raise ConfigError(f"{where}: {field_name} names {', '.join(stray)}, which is "
                                  "not in its methods list; add it there or remove it")
        tuning.check(exp, set(self.conversion))
        sweeps.check(exp, set(self.conversion))

    def spec(self, method: str, where: str) -> MethodSpec:
        """The method's spec; a plug-in that does not import is one line."""
        try:
            return registry.spec(method, self.cfg["plugins"])
        except registry.UnknownMethod as e:
            raise ConfigError(f"{where}: {e}") from None

    def resolved(self, run: Run, exp: dict, source: Run | None = None) -> Run:
        """`run` with its identity, resolved exactly as `python -m dsr.run` will resolve it (a
        plug-in that does not import, an unknown --set key or a bad value fails here, in one
        line, before anything trains)."""
        try:
            cfg, _ = resolve(run.method, run.dataset, run.T, run.seed, arch=run.arch,
                             epochs=run.epochs, mode=run.mode, overrides=dict(run.overrides),
                             plugins=self.cfg["plugins"],
                             dataset_plugins=self.cfg["dataset_plugins"],
                             source=None if source is None else source.hash)
        except (ConfigError, registry.UnknownMethod, datasets.UnknownDataset) as e:
            raise ConfigError(f"config: experiment {exp['name']!r}, {run.method} on "
                              f"{run.dataset}/{run.arch} at T={run.T}: {e}") from None
        return dataclasses.replace(run, hash=cfg.hash, plugin_paths=self.plugin_paths,
                                   source=None if source is None else source.key)

    def expand(self, exp: dict) -> list[Run]:
        data_root = self.cfg["datasets"].get(exp["dataset"], {}).get("data_root")
        runs = []
        for arch in exp["archs"]:
            for method in exp["methods"]:
                if method in self.conversion:
                    continue  # expand_conversions
                per = (exp.get("per_method") or {}).get(method, {})
                sets = {**(exp.get("set") or {}), **(per.get("set") or {})}
                if data_root is not None:
                    sets.setdefault("data_root", data_root)
                # no sweep: one variant, None; a sweep: one run per value and table row; a
                # tuned experiment: one run per candidate, each with the validation split
                variants = [(None, sets)]
                for param, values in (per.get("sweep") or {}).items():
                    variants = [(f"{param}={format_value(v)}", {**sets, param: v})
                                for v in values]
                if per.get("tune"):
                    held = {**sets, "val_fraction": tuning.validation(exp)}
                    variants = [(label, {**held, **values})
                                for label, values in tuning.candidates(per["tune"])]
                for T in per.get("time_steps", exp["time_steps"]):
                    for seed in per.get("seeds", exp["seeds"]):
                        labels: dict[str, str] = {}  # hash -> the sweep value that gave it
                        for variant, values in variants:
                            overrides = tuple(sorted((k, format_value(v))
                                                     for k, v in values.items()))
                            run = self.resolved(Run(exp["dataset"], arch, method, T, seed,
                                                    per.get("epochs", exp.get("epochs")),
                                                    per.get("mode"), overrides,
                                                    self.cfg["plugins"].get(method), variant),
                                                exp)
                            if run.hash in labels:
                                raise ConfigError(
                                    f"config: experiment {exp['name']!r}: per_method.{method}."
                                    f"{'tune' if per.get('tune') else 'sweep'} gives "
                                    f"{labels[run.hash]} and {variant}, the same setting (one "
                                    "run); list each value once")
                            labels[run.hash] = variant
                            runs.append(run)
        return runs

    def latency_sweep(self, exp: dict) -> int:
        """The experiment's T_max, checked against every T its conversion rows must show."""
        T_max = exp.get("latency_sweep", LATENCY_SWEEP.get(exp["dataset"], LATENCY_SWEEP_DEFAULT))
        per = exp.get("per_method") or {}
        largest = max(t for m in exp["methods"]
                      for t in (per.get(m) or {}).get("time_steps", exp["time_steps"]))
        if T_max < largest:
            raise ConfigError(f"config: experiment {exp['name']!r}: latency_sweep {T_max} is "
                              f"below its largest time step {largest}; set latency_sweep to at "
                              f"least {largest}")
        return T_max

    def expand_conversions(self, exp: dict) -> list[Run]:
        """Per (arch, seed) of each conversion method: the run that trains the model it converts
        (no table cell unless that method is listed itself) and the one conversion job."""
        methods = [m for m in exp["methods"] if m in self.conversion]
        if not methods:
            return []
        where = f"config: experiment {exp['name']!r}: per_method"
        T_max = self.latency_sweep(exp)
        data_root = self.cfg["datasets"].get(exp["dataset"], {}).get("data_root")
        per_all = exp.get("per_method") or {}

        def settings(method: str) -> tuple[dict, int | None]:
            per = per_all.get(method, {})
            sets = {**(exp.get("set") or {}), **(per.get("set") or {})}
            if data_root is not None:
                sets.setdefault("data_root", data_root)
            return sets, per.get("epochs", exp.get("epochs"))

        def quoted(sets: dict) -> tuple[tuple[str, str], ...]:
            return tuple(sorted((k, format_value(v)) for k, v in sets.items()))

        runs = []
        for method in methods:
            per = per_all.get(method, {})
            source = self.conversion[method]
            own_sets, _ = settings(method)
            if source != method:
                for key in ("epochs", "mode"):
                    if key in per:
                        raise ConfigError(f"{where}.{method}.{key}: {method} never trains (it "
                                          f"converts the {source!r} run's model.pt); set {key} "
                                          f"under per_method.{source}")
                for key in sorted(set(per.get("set") or {}) & TRAINING_KEYS):
                    raise ConfigError(f"{where}.{method}.set.{key}: {method} never trains (it "
                                      f"converts the {source!r} run's model.pt); set {key} "
                                      f"under per_method.{source}.set or the experiment's set")
            src_sets, epochs = settings(source)
            if source == method:  # QCFS trains its own quantised ANN with its own settings
                sets = src_sets
            else:
                sets = {**{k: v for k, v in src_sets.items() if k in TRAINING_KEYS}, **own_sets}
            points = tuple(sorted(set(per.get("time_steps", exp["time_steps"]))))
            for arch in exp["archs"]:
                for seed in per.get("seeds", exp["seeds"]):
                    model = self.resolved(Run(exp["dataset"], arch, source, 1, seed, epochs,
                                              per_all.get(source, {}).get("mode"),
                                              quoted(src_sets),
                                              self.cfg["plugins"].get(source)), exp)
                    runs.append(model)
                    runs.append(self.resolved(Run(exp["dataset"], arch, method, T_max, seed,
                                                  epochs, None, quoted(sets),
                                                  self.cfg["plugins"].get(method),
                                                  points=points), exp, source=model))
        return runs

    def add(self, run: Run, exp: dict, cell: bool = True) -> None:
        """Register `run` (experiments that ask for the same run share it and its job; the
        first one's arguments are its command) and its cell in `exp`'s table."""
        self.runs.setdefault(run.key, run)
        dataset_res = self.cfg["datasets"].get(run.dataset, {}).get("resources")
        wanted = merge_resources(self.cfg.get("resources"), dataset_res, exp.get("resources"))
        if run.source is not None:  # a conversion evaluates: sized by its own block if any
            dataset_conv = self.cfg["datasets"].get(run.dataset, {}).get("convert_resources")
            wanted = merge_resources(wanted, self.cfg.get("convert_resources"), dataset_conv,
                                     exp.get("convert_resources"))
        have = self.resources.get(run.key, {})
        # a run shared by two experiments gets the larger request of each resource
        self.resources[run.key] = {k: max(v, have.get(k, v)) for k, v in wanted.items()}
        if cell:
            self.cells.append(run.cell(exp["name"], self.results, run.variant))

    # ---- per-wildcards lookups for the training rule -------------------------------------

    def run(self, key: str) -> Run:
        """The run whose folder is `key` (runs/.../{hash})."""
        if key not in self.runs:
            raise ConfigError(f"{key} is not in the configured grid ({self.cfg['name']}); "
                              "add it to an experiment in the config")
        return self.runs[key]

    def model_keys(self) -> list[str]:
        """Runs whose trained model.pt a conversion job converts."""
        return sorted({run.source for run in self.runs.values() if run.source is not None})

    def conversion_keys(self) -> list[str]:
        return sorted(key for key, run in self.runs.items() if run.source is not None)

    def metrics_files(self) -> list[str]:
        return [f"{self.results}/{key}/metrics.json" for key in self.runs]

    # ---- what the aggregation scripts write --------------------------------------------

    def experiments(self) -> list[dict]:
        return [{"name": e["name"], "title": e.get("title", e["name"]), "dataset": e["dataset"],
                 "archs": e["archs"], "methods": e["methods"],
                 "firing_rates": e.get("firing_rates") or [],
                 "tuned": tuning.tuned(e), "validation": tuning.validation(e),
                 "specs": {m: self.specs[m].to_dict() for m in e["methods"]},
                 "sweeps": {m: next(iter(per["sweep"]))
                            for m, per in (e.get("per_method") or {}).items()
                            if per.get("sweep")}}
                for e in self.cfg["experiments"]]

    def claims(self) -> dict:
        """The config's claims block with its defaults: which kinds it judges, key maps."""
        block = self.cfg.get("claims") or {}
        return {"file": block.get("file", "paper_tables/claims.yaml"),
                "test": block.get("test", list(CLAIM_KINDS)),
                "not_comparable": block.get("not_comparable", ""),
                "experiments": block.get("experiments", {}), "archs": block.get("archs", {}),
                "tuned": block.get("tuned", {})}

    def outputs(self) -> dict:
        """Every file the tables and figures rules write, by experiment and kind."""
        per_exp = {}
        for exp in self.experiments():
            stem = f"{self.tables}/{exp['name']}"
            figs = f"{self.tables}/figures/{exp['name']}"
            # the latency figure plots conversion sweeps: only where a conversion method is run
            kinds = [k for k in FIGURE_KINDS
                     if k != "latency" or set(exp["methods"]) & set(self.conversion)]
            entry = {"table": {ext: f"{stem}.{ext}" for ext in ("md", "tex", "csv")},
                     "cost": {ext: f"{stem}_cost.{ext}" for ext in ("md", "tex", "csv")},
                     "figures": {k: {ext: f"{figs}_{k}.{ext}" for ext in ("png", "pdf")}
                                 for k in kinds}}
            if exp["firing_rates"]:
                entry["firing_rates"] = {ext: f"{stem}_firing_rates.{ext}"
                                         for ext in ("md", "tex", "csv")}
                entry["figures"]["firing_rates"] = {
                    ext: f"{figs}_firing_rates.{ext}" for ext in ("png", "pdf")}
            if exp["tuned"]:
                entry["tuning"] = {ext: f"{stem}_tuning.{ext}" for ext in ("md", "tex", "csv")}
            if exp["sweeps"]:
                entry["figures"]["sweep"] = {ext: f"{figs}_sweep.{ext}" for ext in ("png", "pdf")}
            per_exp[exp["name"]] = entry
        return {"experiments": per_exp, "runs_csv": f"{self.tables}/runs.csv",
                "missing": f"{self.tables}/MISSING.md",
                "claims": {ext: f"{self.tables}/claims.{ext}" for ext in ("md", "csv")}}
