"""The configured grid: config checks, the runs (one CLI call each), their resources, the cells
of each table and every output path. Pure Python (no Snakemake globals), so tests build a Grid
from a config dict; workflow/rules/common.smk turns it into rule inputs and wildcard lookups.

Every experiment in the config is archs x methods x time_steps x seeds on one dataset
(`per_method` changes one method's time steps, seeds, epochs, mode or overrides, or sweeps one of
its parameters). A run is one results path, {results_dir}/runs/{dataset}/{arch}/{method}/T{T}/
seed{seed}/metrics.json, shared by every experiment that names it; a swept run has one more
segment, .../T{T}/{param}={value}/seed{seed}/, so each value is its own run and table row. Two
experiments that would train one path differently are an error.

ANN-to-SNN conversion methods (CONVERSION_SOURCES) train nothing themselves: per (arch, seed)
one job converts a trained model.pt and evaluates it up to the experiment's latency_sweep
(T_max), at runs/.../{method}/T{T_max}/seed{seed}/; its metrics hold every T of the table. The
model comes from the `ann` run at T1 (conversion) or from QCFS's own quantised-ANN training at
runs/.../qcfs/L{L}/seed{seed}/ (one per L); both write model.pt beside their metrics.json.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dsr import registry
from dsr.config import (
    DATASET_DEFAULTS,
    EVAL_ONLY,
    NOT_IDENTITY,
    ConfigError,
    TrainConfig,
    format_value,
    qcfs_levels,
    sweep_points,
)

SCHEMA = "workflow/schemas/config.schema.yaml"  # relative to the repository root
RUN = "{dataset}/{arch}/{method}/T{T}/seed{seed}"  # one run's wildcards, in every path
RUN_PATTERN = f"runs/{RUN}"
RUN_VARIANT = "{dataset}/{arch}/{method}/T{T}/{variant}/seed{seed}"  # a swept run: variant p=v
VARIANT_PATTERN = f"runs/{RUN_VARIANT}"
VARIANT = "[a-z_][a-z0-9_]*=[^/]+"
CLAIM_KINDS = ("absolute", "relative", "band", "latency", "depth")  # paper_tables/claims.yaml
# a run that trains a model for conversion: the ann run (stage T1) or QCFS's ANN (stage L{L})
MODEL = "{dataset}/{arch}/{method}/{stage}/seed{seed}"
MODEL_PATTERN = f"runs/{MODEL}"
# Resources of a training job unless the config says otherwise (runtime in minutes).
BASE_RESOURCES = {"threads": 1, "mem_mb": 4000, "runtime": 60, "gpu": 0}
FIGURE_KINDS = ("accuracy_vs_T", "pareto", "cost", "latency")
# conversion method -> the method whose trained model.pt it converts (ConversionMethod
# .source_method; tests/test_workflow.py checks the two agree)
CONVERSION_SOURCES = {"conversion": "ann", "qcfs": "qcfs"}
# T_max of the latency sweep when an experiment does not set latency_sweep
LATENCY_SWEEP = {"digits": 64}
LATENCY_SWEEP_DEFAULT = 256
# harness keys that change a trained model: a conversion run takes them from its ANN's run
TRAINING_KEYS = frozenset(TrainConfig.__dataclass_fields__) - set(NOT_IDENTITY) - set(EVAL_ONLY)


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
    """One training job: the CLI call that writes one metrics.json."""

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
    folder: str | None = None  # a model-training stage's folder instead of T{T} (QCFS: L{L})

    @property
    def key(self) -> str:
        if self.folder is not None:
            return MODEL_PATTERN.format(dataset=self.dataset, arch=self.arch,
                                        method=self.method, stage=self.folder, seed=self.seed)
        fields = dict(dataset=self.dataset, arch=self.arch, method=self.method, T=self.T,
                      seed=self.seed)
        if self.variant is None:
            return RUN_PATTERN.format(**fields)
        return VARIANT_PATTERN.format(variant=self.variant, **fields)

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
        if self.points:
            args += ["--sweep-points", ",".join(map(str, self.points))]
        return args

    def cell(self, experiment: str, results: str) -> dict:
        """What the aggregation scripts need to find, check and place this run."""
        return {"experiment": experiment, "dataset": self.dataset, "arch": self.arch,
                "method": self.method, "T": self.T, "seed": self.seed,
                "path": f"{results}/{self.key}/metrics.json", "epochs": self.epochs,
                "mode": self.mode, "set": dict(self.overrides), "variant": self.variant,
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
        self.runs: dict[str, Run] = {}
        self.resources: dict[str, dict] = {}
        self.cells: list[dict] = []
        registered = set(registry.METHODS) | set(cfg["plugins"])
        names = [e["name"] for e in cfg["experiments"]]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"config: experiment name {twice[0]!r} is used twice; each "
                              "experiment is one table, so give each a distinct name")
        for exp in cfg["experiments"]:
            self.check_experiment(exp, registered)
            for run in self.expand(exp):
                self.add(run, exp)
            for run in self.expand_conversions(exp):
                self.add(run, exp, cell=run.source is not None)

    def check_experiment(self, exp: dict, registered: set[str]) -> None:
        where = f"config: experiment {exp['name']!r}"
        datasets = {*DATASET_DEFAULTS, *self.cfg["dataset_plugins"]}
        if exp["dataset"] not in datasets:
            raise ConfigError(f"{where}: unknown dataset {exp['dataset']!r}; choose one of "
                              f"{', '.join(sorted(datasets))} or map it under dataset_plugins: "
                              f"({exp['dataset']}: module:Class)")
        for method in exp["methods"]:
            if method not in registered:
                raise ConfigError(
                    f"{where} names method {method!r}, which is not registered; registered: "
                    f"{', '.join(sorted(registered))}; add it to METHODS in dsr/registry.py "
                    f"or map it under plugins: ({method}: module:Class)")
        for field in ("per_method", "firing_rates"):
            stray = sorted(set(exp.get(field) or ()) - set(exp["methods"]))
            if stray:
                raise ConfigError(f"{where}: {field} names {', '.join(stray)}, which is not "
                                  "in its methods list; add it there or remove it")
        for method, per in (exp.get("per_method") or {}).items():
            sweep = per.get("sweep")
            if not sweep:
                continue
            if len(sweep) != 1:
                raise ConfigError(f"{where}: per_method.{method}.sweep names {len(sweep)} "
                                  f"parameters ({', '.join(sweep)}); sweep one parameter per "
                                  "method (one figure axis), or add a second experiment")
            (param,) = sweep
            if method in CONVERSION_SOURCES:
                raise ConfigError(f"{where}: per_method.{method}.sweep: {method} trains nothing "
                                  "of its own (it converts a trained model); sweep the method "
                                  "it converts, or add an experiment per value")
            bad = [v for v in sweep[param]
                   if not re.fullmatch(r"[A-Za-z0-9._+-]+", format_value(v))]
            if bad:
                raise ConfigError(f"{where}: per_method.{method}.sweep.{param} value {bad[0]!r} "
                                  "cannot be a path segment; use numbers or plain words")
            if param in {**(exp.get("set") or {}), **(per.get("set") or {})}:
                raise ConfigError(f"{where}: per_method.{method} both sets and sweeps {param}; "
                                  "remove it from set")
            if method in (exp.get("firing_rates") or ()):
                raise ConfigError(f"{where}: firing_rates names {method}, whose "
                                  f"{param} is swept; the sweep figure shows its firing rate "
                                  "per value, so remove it from firing_rates")

    def expand(self, exp: dict) -> list[Run]:
        data_root = self.cfg["datasets"].get(exp["dataset"], {}).get("data_root")
        runs = []
        for arch in exp["archs"]:
            for method in exp["methods"]:
                if method in CONVERSION_SOURCES:
                    continue  # expand_conversions
                per = (exp.get("per_method") or {}).get(method, {})
                sets = {**(exp.get("set") or {}), **(per.get("set") or {})}
                if data_root is not None:
                    sets.setdefault("data_root", data_root)
                # no sweep: one variant, None; a sweep: one run per value, path and row
                variants = [(None, sets)]
                for param, values in (per.get("sweep") or {}).items():
                    variants = [(f"{param}={format_value(v)}", {**sets, param: v})
                                for v in values]
                for variant, values in variants:
                    overrides = tuple(sorted((k, format_value(v)) for k, v in values.items()))
                    for T in per.get("time_steps", exp["time_steps"]):
                        for seed in per.get("seeds", exp["seeds"]):
                            runs.append(Run(exp["dataset"], arch, method, T, seed,
                                            per.get("epochs", exp.get("epochs")),
                                            per.get("mode"), overrides,
                                            self.cfg["plugins"].get(method), variant))
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
        methods = [m for m in exp["methods"] if m in CONVERSION_SOURCES]
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
            source = CONVERSION_SOURCES[method]
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
            if source == method:
                L = own_sets.get("L", qcfs_levels(exp["dataset"]))
                folder, sets = f"L{L}", src_sets
            else:
                folder = "T1"
                sets = {**{k: v for k, v in src_sets.items() if k in TRAINING_KEYS}, **own_sets}
            points = tuple(sorted(set(per.get("time_steps", exp["time_steps"]))))
            for arch in exp["archs"]:
                for seed in per.get("seeds", exp["seeds"]):
                    model = Run(exp["dataset"], arch, source, 1, seed, epochs,
                                per_all.get(source, {}).get("mode"), quoted(src_sets),
                                self.cfg["plugins"].get(source),
                                folder=None if folder == "T1" else folder)
                    runs.append(model)
                    runs.append(Run(exp["dataset"], arch, method, T_max, seed, epochs, None,
                                    quoted(sets), self.cfg["plugins"].get(method),
                                    source=model.key, points=points))
        return runs

    def add(self, run: Run, exp: dict, cell: bool = True) -> None:
        known = self.runs.setdefault(run.key, run)
        if known != run:
            raise ConfigError(
                f"config: experiment {exp['name']!r} trains {run.key} differently from an "
                f"earlier experiment (epochs/mode/set differ); results paths carry no "
                f"experiment name, so give both the same settings or use another results_dir")
        dataset_res = self.cfg["datasets"].get(run.dataset, {}).get("resources")
        wanted = merge_resources(self.cfg.get("resources"), dataset_res, exp.get("resources"))
        have = self.resources.get(run.key, {})
        # a run shared by two experiments gets the larger request of each resource
        self.resources[run.key] = {k: max(v, have.get(k, v)) for k, v in wanted.items()}
        if cell:
            self.cells.append(run.cell(exp["name"], self.results))

    # ---- per-wildcards lookups for the training rule -------------------------------------

    def run(self, wildcards) -> Run:
        if "stage" in wildcards.keys():
            pattern = MODEL_PATTERN
        else:
            pattern = VARIANT_PATTERN if "variant" in wildcards.keys() else RUN_PATTERN
        key = pattern.format(**wildcards)
        if key not in self.runs:
            raise ConfigError(f"{key} is not in the configured grid ({self.cfg['name']}); "
                              "add it to an experiment in the config")
        return self.runs[key]

    def metrics_files(self) -> list[str]:
        return [f"{self.results}/{key}/metrics.json" for key in self.runs]

    # ---- what the aggregation scripts write --------------------------------------------

    def experiments(self) -> list[dict]:
        return [{"name": e["name"], "title": e.get("title", e["name"]), "dataset": e["dataset"],
                 "archs": e["archs"], "methods": e["methods"],
                 "firing_rates": e.get("firing_rates") or [],
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
                "experiments": block.get("experiments", {}), "archs": block.get("archs", {})}

    def outputs(self) -> dict:
        """Every file the tables and figures rules write, by experiment and kind."""
        per_exp = {}
        for exp in self.experiments():
            stem = f"{self.tables}/{exp['name']}"
            figs = f"{self.tables}/figures/{exp['name']}"
            # the latency figure plots conversion sweeps: only where a conversion method is run
            kinds = [k for k in FIGURE_KINDS
                     if k != "latency" or set(exp["methods"]) & set(CONVERSION_SOURCES)]
            entry = {"table": {ext: f"{stem}.{ext}" for ext in ("md", "tex", "csv")},
                     "figures": {k: {ext: f"{figs}_{k}.{ext}" for ext in ("png", "pdf")}
                                 for k in kinds}}
            if exp["firing_rates"]:
                entry["firing_rates"] = {ext: f"{stem}_firing_rates.{ext}"
                                         for ext in ("md", "tex", "csv")}
                entry["figures"]["firing_rates"] = {
                    ext: f"{figs}_firing_rates.{ext}" for ext in ("png", "pdf")}
            if exp["sweeps"]:
                entry["figures"]["sweep"] = {ext: f"{figs}_sweep.{ext}" for ext in ("png", "pdf")}
            per_exp[exp["name"]] = entry
        return {"experiments": per_exp, "runs_csv": f"{self.tables}/runs.csv",
                "missing": f"{self.tables}/MISSING.md",
                "claims": {ext: f"{self.tables}/claims.{ext}" for ext in ("md", "csv")}}
