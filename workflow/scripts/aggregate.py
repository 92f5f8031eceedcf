"""Cached metrics.json files -> per-experiment tables (Markdown, LaTeX, CSV), runs.csv, MISSING.md.

A cell is (arch, method, T) of one experiment; its accuracy is the mean +- sample std over the
seeds present, in %. Beside it: every published.csv row that compares with it (same dataset,
arch and T, method key in `compares_with`), marked by how its source was checked. A conversion
job (a cell with a `sweep`) is one metrics file per seed at T_max whose latency_sweep fills a
row at every T of its sweep. Run by the `tables` rule (every run must exist) and by
`figures_from_cache` (what exists is rendered, the rest listed). Every input is read and checked
before anything is written, and each file is replaced atomically, so a corrupt metrics file
leaves the previous tables as they were.
"""

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dsr.config import NOT_IDENTITY, ConfigError, parse_value  # noqa: E402
from dsr.results import (  # noqa: E402
    ResultError,
    atomic_write_text,
    read_metrics,
)

# Display names: the one map from keys (methods, architectures, datasets) to what people read.
DISPLAY = {
    "dsr-if": "DSR (IF)",
    "dsr-lif": "DSR (LIF)",
    "ann": "ANN (ReLU)",
    "sg-bptt": "Surrogate gradient (BPTT)",
    "tet": "TET",
    "plif": "PLIF",
    "conversion": "ANN-to-SNN conversion",
    "qcfs": "QCFS",
    "preact_resnet8": "PreAct-ResNet-8",
    "preact_resnet18": "PreAct-ResNet-18",
    "preact_resnet20": "PreAct-ResNet-20",
    "preact_resnet32": "PreAct-ResNet-32",
    "preact_resnet44": "PreAct-ResNet-44",
    "preact_resnet56": "PreAct-ResNet-56",
    "preact_resnet110": "PreAct-ResNet-110",
    "vgg11": "VGG-11",
    "digits": "digits (scikit-learn)",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet": "ImageNet",
    "cifar10_dvs": "DVS-CIFAR10",
}
PUBLISHED_COLUMNS = ["table", "dataset", "arch", "method", "compares_with", "category", "neuron",
                     "time_steps", "accuracy", "std", "status", "source"]
DAGGER = "†"
DASH = "–"
# published.csv `status`: how the value was checked, and its mark beside the number
STATUS_MARK = {"confirmed-primary": "", "confirmed-secondary": "‡", "not-found": DAGGER,
               "contradicted": "✗"}
STATUS_MEANING = {"confirmed-primary": "confirmed in the primary source",
                  "confirmed-secondary": "confirmed by a later paper that quotes it",
                  "not-found": "no citable source found yet",
                  "contradicted": "a source contradicts it"}


def status_legend() -> str:
    """What each published-value mark means, in one sentence."""
    marks = [f"{m} = {STATUS_MEANING[s]}" for s, m in STATUS_MARK.items() if m]
    return (f"Published marks: {'; '.join(marks)}; unmarked = "
            f"{STATUS_MEANING['confirmed-primary']}.")


def display(key: str) -> str:
    """What people read for a key; a swept run's key is method@param=value."""
    method, _, variant = key.partition("@")
    name = DISPLAY.get(method, method)
    return f"{name}, {variant.replace('=', ' = ')}" if variant else name


def row_key(method: str, variant: str | None) -> str:
    """The table-row and figure key of a run: the method, or method@param=value if swept."""
    return f"{method}@{variant}" if variant else method


# ---- reading ------------------------------------------------------------------------------


def read(path: str | Path) -> dict:
    """A validated metrics.json (dsr.results.read_metrics: one-line errors, cached validator)."""
    return read_metrics(path)


def _same(recorded, raw: str) -> bool:
    """Does a value recorded in metrics.json equal the --set text the config passes (read as
    the trainer reads it, with the recorded value's type)?"""
    numeric = isinstance(recorded, int | float) and not isinstance(recorded, bool)
    kind = float if numeric else str if recorded is None else type(recorded)
    try:
        value = parse_value("", raw, kind | None)
    except ConfigError:
        return False
    if numeric and value is not None:
        return math.isclose(value, float(recorded), rel_tol=1e-9)
    return value == recorded


def stale_reason(metrics: dict, cell: dict) -> str | None:
    """Why a cached run does not match what the config asks for now (None: it matches)."""
    if cell["epochs"] is not None and metrics["epochs"] != cell["epochs"]:
        return f"ran {metrics['epochs']} epochs, config asks {cell['epochs']}"
    if cell["mode"] is not None and metrics["mode"] != cell["mode"]:
        return f"ran mode {metrics['mode']}, config asks {cell['mode']}"
    recorded = {**metrics["config"].get("params", {}), **metrics["config"].get("train", {})}
    for key, raw in cell["set"].items():
        # where the data lives, the device, latency repeats: not what the run computed
        if key in NOT_IDENTITY:
            continue
        if key in recorded and not _same(recorded[key], raw):
            return f"ran {key}={recorded[key]}, config asks {key}={raw}"
    return None


def check_identity(metrics: dict, cell: dict) -> None:
    for key, field_name in (("method", "method"), ("dataset", "dataset"), ("arch", "arch"),
                            ("T", "time_steps"), ("seed", "seed")):
        if metrics[field_name] != cell[key]:
            raise ResultError(f"{cell['path']}: holds {field_name}={metrics[field_name]!r} but "
                              f"its path says {cell[key]!r}; delete the file and rerun its job")


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def sweep_rows(metrics: dict, cell: dict) -> list[dict]:
    """A conversion job's rows: one per latency-sweep point, at that point's T. SynOps and energy
    are the point's (the first T steps); the firing rate is recorded over T_max only."""
    sweep = metrics.get("latency_sweep")
    if sweep is None:
        raise ResultError(f"{cell['path']}: a conversion job's metrics without latency_sweep; "
                          "delete the file and rerun its job")
    base, syn = run_row(metrics, cell), metrics["synops"]
    pj_ac, pj_mac = syn.get("pj_per_ac"), syn.get("pj_per_mac")
    rows = []
    for point in sweep["points"]:
        ac, energy = point["synops"], point["energy_pj"]
        mac = (None if None in (ac, energy, pj_ac) or not pj_mac
               else (energy - pj_ac * ac) / pj_mac)
        rows.append({**base, "T": point["T"], "acc_best": 100 * point["accuracy"],
                     "acc_final": 100 * point["accuracy"], "synops_ac": ac, "synops_mac": mac,
                     "energy_pj": energy,
                     "firing_rate": base["firing_rate"] if point["T"] == sweep["T_max"] else None,
                     "configured": point["T"] in cell["points"]})
    return rows


def run_row(metrics: dict, cell: dict) -> dict:
    """One run's numbers, accuracies and rates in %, memory in MB."""
    syn, cost, rate = metrics["synops"], metrics["cost"], metrics["firing_rate"]
    peak = cost.get("peak_memory_bytes")
    return {
        "experiment": cell["experiment"], "dataset": cell["dataset"], "arch": cell["arch"],
        "method": cell["method"], "variant": cell.get("variant"), "T": cell["T"],
        "seed": cell["seed"], "category": metrics["category"], "neuron": metrics["neuron"],
        "mode": metrics["mode"],
        "epochs": metrics["epochs"], "best_epoch": metrics["accuracy"]["best_epoch"],
        "acc_best": 100 * metrics["accuracy"]["best"],
        "acc_final": 100 * metrics["accuracy"]["final"],
        "synops_ac": syn.get("total_ac"), "synops_mac": syn.get("total_mac"),
        "energy_pj": syn.get("energy_pj"), "pj_per_ac": syn.get("pj_per_ac"),
        "pj_per_mac": syn.get("pj_per_mac"),
        "firing_rate": None if rate.get("total") is None else 100 * rate["total"],
        "seconds_per_epoch": _mean(cost.get("seconds_per_epoch") or []),
        "train_seconds": sum(cost.get("seconds_per_epoch") or []),
        "peak_memory_mb": None if peak is None else peak / 2**20,
        "peak_memory_kind": cost.get("peak_memory_kind"),
        "path": cell["path"],
        "sweep_T_max": None if cell.get("sweep") is None else cell["T"],
        "configured": True,  # T is one of the experiment's time steps for this method
    }


RUN_COLUMNS = ["experiment", "dataset", "arch", "method", "variant", "T", "seed", "category",
               "neuron", "mode", "epochs", "best_epoch", "acc_best", "acc_final", "synops_ac",
               "synops_mac", "energy_pj", "pj_per_ac", "pj_per_mac", "firing_rate",
               "seconds_per_epoch", "train_seconds", "peak_memory_mb", "peak_memory_kind", "path",
               "sweep_T_max", "configured"]
LAYER_COLUMNS = ["experiment", "method", "T", "seed", "layer_index", "layer", "rate"]


@dataclass
class Collected:
    """What the cache holds for a list of cells."""

    runs: pd.DataFrame  # one row per (experiment, run) present and current
    layers: pd.DataFrame  # per-layer firing rates (%) of the experiments' firing_rates methods
    missing: list[dict] = field(default_factory=list)
    stale: list[tuple[dict, str]] = field(default_factory=list)
    total: int = 0


def collect(cells: list[dict], experiments: list[dict], strict: bool) -> Collected:
    """Read every cell's metrics.json; strict: a missing or stale run is an error."""
    rate_methods = {e["name"]: set(e["firing_rates"]) for e in experiments}
    rows, layer_rows, missing, stale = [], [], [], []
    seen: dict[str, dict] = {}
    for cell in cells:
        path = cell["path"]
        if path not in seen:
            if not Path(path).is_file():
                if strict:
                    raise ResultError(f"{path}: no such metrics file; run `snakemake "
                                      "reproduce_table` to train it")
                missing.append(cell)
                continue
            seen[path] = read(path)
        metrics = seen[path]
        check_identity(metrics, cell)
        reason = stale_reason(metrics, cell)
        if reason is not None:
            if strict:
                raise ResultError(f"{path}: {reason}; delete it (or rerun without "
                                  "--rerun-triggers mtime) so its job runs again")
            stale.append((cell, reason))
            continue
        rows += sweep_rows(metrics, cell) if cell.get("sweep") else [run_row(metrics, cell)]
        if cell["method"] in rate_methods[cell["experiment"]]:
            rates = metrics["firing_rate"]
            names = rates.get("layer_names") or []
            for i, r in enumerate(rates["per_layer"]):
                layer_rows.append({"experiment": cell["experiment"], "method": cell["method"],
                                   "T": cell["T"], "seed": cell["seed"], "layer_index": i,
                                   "layer": names[i] if i < len(names) else f"layer {i}",
                                   "rate": 100 * r})
    return Collected(runs=pd.DataFrame(rows, columns=RUN_COLUMNS),
                     layers=pd.DataFrame(layer_rows, columns=LAYER_COLUMNS),
                     missing=missing, stale=stale, total=len(cells))


# ---- published values ---------------------------------------------------------------------


def load_published(path: str | Path) -> pd.DataFrame:
    """published.csv, checked: the columns above, numeric accuracy, a known status, a source."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as e:
        raise ResultError(f"{path}: cannot read published values ({e}); see "
                          "paper_tables/README.md for the format") from None
    absent = [c for c in PUBLISHED_COLUMNS if c not in df.columns]
    if absent:
        raise ResultError(f"{path}: missing column(s) {', '.join(absent)}; expected "
                          f"{','.join(PUBLISHED_COLUMNS)}")
    for i, row in df.iterrows():
        where = f"{path}: row {i + 2}"
        for col in ("accuracy", "std", "time_steps"):
            text = row[col].strip()
            if text == "" and col != "accuracy":
                continue
            try:
                float(text)
            except ValueError:
                raise ResultError(f"{where}: {col} {text!r} is not a number") from None
        if row["status"] not in STATUS_MARK:
            raise ResultError(f"{where}: status {row['status']!r}; use one of "
                              f"{', '.join(STATUS_MARK)}")
        if not row["source"].strip():
            raise ResultError(f"{where}: no source; name the document the value comes from")
    df["accuracy"] = df["accuracy"].astype(float)
    df["std"] = pd.to_numeric(df["std"].replace("", None))
    df["time_steps"] = pd.to_numeric(df["time_steps"].replace("", None))
    df["keys"] = df["compares_with"].map(lambda s: {k.strip() for k in s.split(";") if k.strip()})
    return df


def published_for(published: pd.DataFrame, dataset: str, arch: str, method: str,
                  T: int) -> pd.DataFrame:
    hit = ((published["dataset"] == dataset) & (published["arch"] == arch)
           & (published["time_steps"] == T) & published["keys"].map(lambda k: method in k))
    return published[hit]


# ---- per-experiment summaries -------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.2f}"


def _amount(value: float | None) -> str:
    """SynOps / energy: readable at any magnitude."""
    if value is None or math.isnan(value):
        return DASH
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _mean_std(values: pd.Series) -> tuple[float | None, float | None]:
    values = values.dropna()
    if values.empty:
        return None, None
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return DASH
    return _fmt(mean) if std is None else f"{_fmt(mean)} ± {_fmt(std)}"


@dataclass
class Sources:
    """Footnote numbers of the published rows a table cites, in order of first use."""

    rows: list[pd.Series] = field(default_factory=list)

    def ref(self, row: pd.Series) -> int:
        for i, known in enumerate(self.rows):
            if known.name == row.name:
                return i + 1
        self.rows.append(row)
        return len(self.rows)


def _published_text(rows: pd.DataFrame, sources: Sources) -> str:
    parts = []
    for _, row in rows.iterrows():
        std = "" if pd.isna(row["std"]) else f" ± {row['std']:.2f}"
        parts.append(f"{row['accuracy']:.2f}{std} [{sources.ref(row)}]{STATUS_MARK[row['status']]}")
    return "; ".join(parts) if parts else DASH


def experiment_cells(exp: dict, cells: list[dict]) -> list[tuple[str, str, str | None, int,
                                                                   list[int]]]:
    """(arch, method, variant, T, seeds) of an experiment, in config order; a conversion job
    gives one per T of its sweep."""
    order: dict[tuple[str, str, str | None, int], list[int]] = {}
    for c in cells:
        if c["experiment"] == exp["name"]:
            for T in c.get("sweep") or [c["T"]]:
                order.setdefault((c["arch"], c["method"], c.get("variant"), T), []).append(
                    c["seed"])
    return [(a, m, v, t, s) for (a, m, v, t), s in order.items()]


def summarise(exp: dict, cells: list[dict], runs: pd.DataFrame, published: pd.DataFrame,
              sources: Sources) -> pd.DataFrame:
    """One row per configured cell: seeds present, accuracy mean/std, SynOps, ..., published."""
    mine = runs[runs["experiment"] == exp["name"]]
    out = []
    for arch, method, variant, T, seeds in experiment_cells(exp, cells):
        got = mine[(mine["arch"] == arch) & (mine["method"] == method) & (mine["T"] == T)
                   & (mine["variant"].fillna("") == (variant or ""))]
        best, best_std = _mean_std(got["acc_best"])
        final, final_std = _mean_std(got["acc_final"])
        pub = published_for(published, exp["dataset"], arch, method, T)
        first = pub.iloc[0] if len(pub) else None
        out.append({
            "experiment": exp["name"], "dataset": exp["dataset"], "arch": arch,
            "method": method, "variant": variant,
            "method_name": display(row_key(method, variant)),
            "category": got["category"].iloc[0] if len(got) else None,
            "T": T, "seeds_present": len(got), "seeds_expected": len(seeds),
            "acc_best_mean": best, "acc_best_std": best_std,
            "acc_final_mean": final, "acc_final_std": final_std,
            "synops_ac_m": _mean_std(got["synops_ac"] / 1e6)[0],
            "synops_mac_m": _mean_std(got["synops_mac"] / 1e6)[0],
            "energy_uj": _mean_std(got["energy_pj"] / 1e6)[0],
            "firing_rate": _mean_std(got["firing_rate"])[0],
            "seconds_per_epoch": _mean_std(got["seconds_per_epoch"])[0],
            "peak_memory_mb": _mean_std(got["peak_memory_mb"])[0],
            "published_accuracy": None if first is None else first["accuracy"],
            "published_std": None if first is None or pd.isna(first["std"]) else first["std"],
            "published_status": None if first is None else first["status"],
            "published_source": None if first is None else first["source"],
            "diff_best_pp": None if first is None or best is None else best - first["accuracy"],
            "published_text": _published_text(pub, sources),
        })
    return pd.DataFrame(out)


def published_only(exp: dict, cells: list[dict], published: pd.DataFrame) -> pd.DataFrame:
    """Published rows of this experiment's table that no configured cell compares with."""
    mine = published[published["table"] == exp["name"]]
    used = set()
    for arch, method, _, T, _ in experiment_cells(exp, cells):
        used |= set(published_for(mine, exp["dataset"], arch, method, T).index)
    return mine[~mine.index.isin(used)]


# ---- rendering ----------------------------------------------------------------------------

HEADER = ["Method", "Category", "Arch", "T", "Seeds", "Best acc. (%)", "Final acc. (%)",
          "SynOps (M)", "Energy (µJ)", "Firing rate (%)", "Published (%)", "Δ best (pp)"]
ONLY_HEADER = ["Method", "Category", "Arch", "Neuron", "T", "Published (%)"]


def table_rows(summary: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, r in summary.iterrows():
        present = r["seeds_present"] > 0
        category = DASH if pd.isna(r["category"]) else r["category"]
        rows.append([
            r["method_name"], category, display(r["arch"]), str(r["T"]),
            f"{r['seeds_present']}/{r['seeds_expected']}",
            _pm(r["acc_best_mean"], r["acc_best_std"]) if present else "not run",
            _pm(r["acc_final_mean"], r["acc_final_std"]) if present else "not run",
            _amount(r["synops_ac_m"]), _amount(r["energy_uj"]), _fmt(r["firing_rate"]),
            r["published_text"],
            DASH if pd.isna(r["diff_best_pp"]) else f"{r['diff_best_pp']:+.2f}",
        ])
    return rows


def only_rows(only: pd.DataFrame, sources: Sources) -> list[list[str]]:
    rows = []
    for _, r in only.iterrows():
        T = DASH if pd.isna(r["time_steps"]) else str(int(r["time_steps"]))
        rows.append([r["method"], r["category"], display(r["arch"]), r["neuron"], T,
                     _published_text(only.loc[[r.name]], sources)])
    return rows


def source_lines(sources: Sources) -> list[str]:
    lines = []
    for i, r in enumerate(sources.rows, 1):
        T = "" if pd.isna(r["time_steps"]) else f", T = {int(r['time_steps'])}"
        mark = STATUS_MARK[r["status"]]
        lines.append(f"[{i}] {r['method']} ({r['neuron']}), {display(r['arch'])}{T}: "
                     f"{r['source']} ({mark + ' ' if mark else ''}{r['status']})")
    return lines


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}"}
LATEX_SYMBOLS = {"`": "", "−": "$-$", "±": r"$\pm$", "†": r"$^\dagger$", "‡": r"$^\ddagger$",
                 "✗": r"$^\times$", "–": "--",
                 "µ": r"$\mu$", "Δ": r"$\Delta$"}


def latex_escape(text: str) -> str:
    text = "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for symbol, tex in LATEX_SYMBOLS.items():
        text = text.replace(symbol, tex)
    return text


def latex_table(header: list[str], rows: list[list[str]], caption: str, label: str,
                notes: list[str]) -> str:
    cols = "l" * 3 + "r" * (len(header) - 3)
    body = [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    lines = [r"\begin{table}[t]", r"\centering", r"\scriptsize",
             rf"\caption{{{latex_escape(caption)}}}", rf"\label{{tab:{label}}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule", *body,
             r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip{{\footnotesize {latex_escape(n)}}}" for n in notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def subset_text(cells: list[dict], split: str) -> str | None:
    """How the experiment's runs subsample `split` (train_subset / test_subset), if they do."""
    sizes = sorted({c["set"].get(f"{split}_subset", "none") for c in cells})
    if sizes == ["none"]:
        return None
    shown = ", ".join("full" if n == "none" else f"{int(n):,}" for n in sizes)
    return f"a fixed class-balanced subset of the {split} set ({shown} images)"


def energy_model(runs: pd.DataFrame | None) -> str:
    """The pJ per AC and per MAC the runs recorded, e.g. '0.9 pJ/AC, 4.6 pJ/MAC'."""
    parts = []
    for column, unit in (("pj_per_ac", "AC"), ("pj_per_mac", "MAC")):
        values = (sorted(runs[column].dropna().unique())
                  if runs is not None and column in runs else [])
        if values:
            parts.append(" or ".join(f"{v:g}" for v in values) + f" pJ/{unit}")
    return ", ".join(parts) if parts else "energy model not recorded"


def legend_text(name: str, exp: dict, cells: list[dict], runs: pd.DataFrame | None = None) -> str:
    cells = [c for c in cells if c["experiment"] == exp["name"]]
    test, train = subset_text(cells, "test"), subset_text(cells, "train")
    return (f"Configuration `{name}`, experiment `{exp['name']}` on {display(exp['dataset'])}. "
            + (f"Trained on {train}. " if train else "")
            + f"Accuracy: {test or 'test set'}, %, mean ± sample std over the seeds present "
            "(Seeds: present/"
            "configured); Best = best epoch (what the paper reports), Final = last epoch. "
            "SynOps: millions of accumulates per test sample; energy: µJ per test sample "
            f"({energy_model(runs)}, as the runs recorded); firing rate = spikes per neuron per "
            f"time step; {DASH} = not recorded. Published values come from "
            f"paper_tables/published.csv. {status_legend()} Δ = Best − published "
            "(percentage points).")


def render_experiment(name: str, exp: dict, cells: list[dict], col: Collected,
                      published: pd.DataFrame) -> tuple[dict[str, str], pd.DataFrame]:
    """Markdown, LaTeX and CSV text of one experiment's table (+ its summary frame)."""
    sources = Sources()
    summary = summarise(exp, cells, col.runs, published, sources)
    only = published_only(exp, cells, published)
    rows, orows = table_rows(summary), only_rows(only, sources)
    lacking = int((summary["seeds_expected"] - summary["seeds_present"]).sum())
    legend = legend_text(name, exp, cells, col.runs[col.runs["experiment"] == exp["name"]])
    md = [f"# {exp['title']}", "", legend, ""]
    if lacking:
        md += [f"**{lacking} of {int(summary['seeds_expected'].sum())} runs are missing or "
               "stale; see MISSING.md.**", ""]
    md += [markdown_table(HEADER, rows), ""]
    if orows:
        md += ["Published, not reproduced in this configuration:", "",
               markdown_table(ONLY_HEADER, orows), ""]
    notes = source_lines(sources)
    if notes:
        md += ["Sources:", "", *[f"- {n}" for n in notes], ""]
    tex = latex_table(HEADER, rows, f"{exp['title']}. {legend}", exp["name"], notes)
    if orows:
        tex += latex_table(ONLY_HEADER, orows, f"{exp['title']}: published, not reproduced.",
                           f"{exp['name']}-published", [])
    csv = summary.drop(columns=["published_text"]).to_csv(index=False)
    return {"md": "\n".join(md), "tex": tex, "csv": csv}, summary


def firing_rate_tables(exp: dict, col: Collected, runs: pd.DataFrame) -> dict[str, str]:
    """Fig. S1 data: per-layer firing rate (%) per method and T, mean over seeds; + total."""
    layers = col.layers[col.layers["experiment"] == exp["name"]]
    stats = (layers.groupby(["method", "T", "layer_index", "layer"], sort=False)["rate"]
             .agg(rate_mean="mean", rate_std="std", seeds="count").reset_index())
    mine = runs[(runs["experiment"] == exp["name"]) & runs["method"].isin(exp["firing_rates"])]
    totals = (mine.groupby(["method", "T"], sort=False)["firing_rate"]
              .agg(rate_mean="mean", rate_std="std", seeds="count").reset_index())
    totals["layer"], totals["layer_index"] = "total", None
    long = pd.concat([stats, totals], ignore_index=True) if len(totals) else stats
    long.insert(1, "method_name", long["method"].map(display))
    columns = [(m, t) for m in exp["firing_rates"]
               for t in sorted(long.loc[long["method"] == m, "T"].unique())]
    index = list(dict.fromkeys(zip(stats["layer_index"], stats["layer"], strict=True)))
    header = ["#", "Layer"] + [f"{display(m)} T={t}" for m, t in columns]
    rows = []
    for i, layer in [*sorted(index), (None, "total")]:
        row = ["" if i is None else str(i), layer]
        for m, t in columns:
            hit = long[(long["method"] == m) & (long["T"] == t) & (long["layer"] == layer)]
            row.append(_fmt(hit["rate_mean"].iloc[0]) if len(hit) else DASH)
        rows.append(row)
    title = f"{exp['title']}: per-layer firing rates (Fig. S1 data)"
    legend = ("Spikes per neuron per time step over the test set, %, mean over seeds; the last "
              "row is the whole network. Paper (CIFAR-10, PreAct-ResNet-18): every layer below "
              "20%, total 7.5-9.5%.")
    if not columns:
        legend += " No run of these methods is cached yet."
    md = "\n".join([f"# {title}", "", legend, "", markdown_table(header, rows), ""])
    tex = latex_table(header, rows, f"{title}. {legend}", f"{exp['name']}-firing-rates", [])
    return {"md": md, "tex": tex, "csv": long.to_csv(index=False)}


def missing_report(name: str, col: Collected) -> tuple[str, str]:
    """MISSING.md and a short stdout summary, grouped by (experiment, arch, method, T)."""
    groups: dict[tuple, dict[str, list]] = {}
    for cell in col.missing:
        key = (cell["experiment"], cell["arch"], row_key(cell["method"], cell.get("variant")),
               cell["T"])
        groups.setdefault(key, {"missing": [], "stale": []})["missing"].append(cell["seed"])
    for cell, reason in col.stale:
        key = (cell["experiment"], cell["arch"], row_key(cell["method"], cell.get("variant")),
               cell["T"])
        groups.setdefault(key, {"missing": [], "stale": []})["stale"].append(
            f"{cell['seed']} ({reason})")
    absent = len(col.missing) + len(col.stale)
    if not absent:
        head = f"All {col.total} runs of configuration `{name}` are cached and current."
        return f"# Missing results: `{name}`\n\n{head}\n", head
    head = (f"{absent} of {col.total} runs of configuration `{name}` are missing or stale; "
            "the tables and figures show the rest. Train them with `snakemake --cores all "
            "--profile profiles/default reproduce_table` (add `--configfile config/<name>.yaml`"
            " for another configuration).")
    rows = [[e, display(a), display(m), str(t), ", ".join(map(str, g["missing"])) or DASH,
             "; ".join(g["stale"]) or DASH] for (e, a, m, t), g in groups.items()]
    md = "\n".join([f"# Missing results: `{name}`", "", head, "",
                    markdown_table(["Experiment", "Arch", "Method", "T", "Missing seeds",
                                    "Stale seeds"], rows), ""])
    lines = [head] + [f"  missing {e}: {display(a)} {display(m)} T={t} seeds "
                      f"{', '.join(map(str, g['missing'])) or DASH}"
                      + (f"; stale {'; '.join(g['stale'])}" if g["stale"] else "")
                      for (e, a, m, t), g in groups.items()]
    return md, "\n".join(lines)


def render_tables(name: str, cells: list[dict], experiments: list[dict], outputs: dict,
                  col: Collected, published: pd.DataFrame) -> tuple[dict[str, str], str]:
    """Every table file's text by path, and the summary line(s) for stdout."""
    files: dict[str, str] = {}
    for exp in experiments:
        out = outputs["experiments"][exp["name"]]
        texts, _ = render_experiment(name, exp, cells, col, published)
        files.update({out["table"][ext]: texts[ext] for ext in ("md", "tex", "csv")})
        if exp["firing_rates"]:
            rates = firing_rate_tables(exp, col, col.runs)
            files.update({out["firing_rates"][ext]: rates[ext] for ext in ("md", "tex", "csv")})
    files[outputs["runs_csv"]] = col.runs.to_csv(index=False)
    md, summary = missing_report(name, col)
    files[outputs["missing"]] = md
    return files, summary


def write_all(files: dict[str, str]) -> None:
    for path, text in files.items():
        atomic_write_text(path, text)


def fail(message: str, log: str | None) -> None:
    """The one-line error of a failed aggregation, on stderr and in the rule's log; exit 1."""
    line = f"error: {message}"
    print(line, file=sys.stderr)
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(line + "\n")
    sys.exit(1)


def main(smk) -> None:
    p = smk.params
    log = smk.log[0] if smk.log else None
    try:
        published = load_published(smk.input.published)
        col = collect(p.cells, p.experiments, strict=True)
        files, summary = render_tables(p.name, p.cells, p.experiments, p.outputs, col, published)
        # imported here: claims.py imports this module's helpers
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from claims import claims_files

        files.update(claims_files(p, col, published))
    except ResultError as e:
        fail(str(e), log)
    write_all(files)
    if log:
        Path(log).write_text(summary + "\n")


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821  (injected by Snakemake's script directive)
