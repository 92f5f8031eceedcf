"""The paper's claims (paper_tables/claims.yaml) judged against one configuration's cached runs.

Each claim gets one verdict: holds, fails, inconclusive, not run (a run or a recorded field it
needs is absent) or not comparable (the configuration does not judge its kind, e.g. absolute
accuracy under a reduced budget). Beside the verdict: the numbers and intervals behind it and
the runs that were missing. Written as {tables_dir}/{name}/claims.{md,csv} by the tables rule
and by figures_from_cache, from the same collected runs as the tables.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from scipy import stats

from dsr.config import ConfigError
from dsr.results import ResultError, read_metrics
from pipeline.collect import Collected
from pipeline.configs import StrictLoader
from pipeline.grid import CLAIM_KINDS
from pipeline.names import DASH, display
from pipeline.published import published_for
from pipeline.text import markdown_table

VERDICTS = ("holds", "fails", "inconclusive", "not run", "not comparable")
# kinds whose T values are "every configured T up to the claim's largest" (the others: exact)
UP_TO_T = ("relative", "band")
REQUIRED = ("id", "statement", "source", "kind", "runs")


@dataclass
class Verdict:
    verdict: str
    reason: str = ""
    evidence: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def load_claims(path: str | Path) -> list[dict]:
    """The claims file, checked: unique ids, the fields every claim needs, a known kind."""
    try:
        claims = yaml.load(Path(path).read_text(), Loader=StrictLoader)["claims"]  # noqa: S506
    except (OSError, yaml.YAMLError, KeyError, TypeError, ConfigError) as e:
        raise ResultError(f"{path}: cannot read the claims ({e}); it holds a `claims:` list, "
                          "see its header") from None
    seen = set()
    for i, claim in enumerate(claims):
        where = f"{path}: claim {claim.get('id', i + 1)!r}"
        absent = [k for k in REQUIRED if k not in claim]
        if absent:
            raise ResultError(f"{where}: missing {', '.join(absent)}")
        if claim["kind"] not in CLAIM_KINDS:
            raise ResultError(f"{where}: kind {claim['kind']!r}; use one of "
                              f"{', '.join(CLAIM_KINDS)}")
        if claim["id"] in seen:
            raise ResultError(f"{where}: id used twice; give each claim its own id")
        seen.add(claim["id"])
    return claims


def firing_band(claims: list[dict]) -> dict | None:
    """The band claim's bounds (layer_max, total), which Fig. S1 draws; None without one."""
    band = next((c for c in claims if c["kind"] == "band"), None)
    return None if band is None else {"layer_max": band["layer_max"], "total": band["total"]}


# ---- where a claim's runs are in this configuration ----------------------------------------


@dataclass
class Scope:
    exp: dict
    archs: list[str]
    methods: list[str]  # the claim's methods (and versus / reference) this experiment trains
    absent: list[str]  # the claim's methods it does not train


def _expected(cells: list[dict], exp: str, arch: str, method: str) -> dict[int, list[int]]:
    """T -> configured seeds of one (experiment, arch, method); swept runs are other settings."""
    out: dict[int, list[int]] = {}
    for c in cells:
        if (c["experiment"] == exp and c["arch"] == arch and c["method"] == method
                and not c.get("variant")):
            out.setdefault(c["T"], []).append(c["seed"])
    return out


def scope(claim: dict, block: dict, experiments: list[dict]) -> Scope | str:
    """The configuration's experiment, archs and methods for a claim, or why there are none."""
    runs = claim["runs"]
    name = (block.get("experiments") or {}).get(runs["experiment"], runs["experiment"])
    exp = next((e for e in experiments if e["name"] == name), None)
    if exp is None:
        return (f"this configuration has no `{name}` experiment (map the claim's "
                f"`{runs['experiment']}` under claims.experiments in the config)")
    arch_map = block.get("archs") or {}
    archs = [a for a in (arch_map.get(x, x) for x in runs["arch"]) if a in exp["archs"]]
    if not archs:
        return f"experiment `{name}` trains none of {', '.join(runs['arch'])}"
    wanted = list(runs["methods"]) + list(claim.get("versus") or [])
    if claim.get("reference"):
        wanted.append(claim["reference"])
    return Scope(exp, archs, [m for m in wanted if m in exp["methods"]],
                 [m for m in wanted if m not in exp["methods"]])


def time_steps(claim: dict, configured: list[int]) -> list[int]:
    if claim["kind"] in UP_TO_T:
        return sorted(t for t in configured if t <= max(claim["runs"]["T"]))
    return sorted(t for t in configured if t in claim["runs"]["T"])


# ---- numbers from the collected runs -------------------------------------------------------


def _runs(col: Collected, exp: str, arch: str, method: str, T: int | None = None,
          diverged: bool = False) -> pd.DataFrame:
    """A cell's runs with results (`diverged`: also those that diverged, never compared)."""
    r = col.runs
    hit = ((r["experiment"] == exp) & (r["arch"] == arch) & (r["method"] == method)
           & r["variant"].isna() & (diverged | r["diverged_epoch"].isna()))
    return r[hit & (r["T"] == T)] if T is not None else r[hit]


def _missing(cells: list[dict], col: Collected, exp: str, arch: str, method: str,
             T: int) -> list[str]:
    """The cell's seeds without a result: not cached, or diverged."""
    runs = _runs(col, exp, arch, method, T, diverged=True)
    epoch = dict(zip(runs["seed"], runs["diverged_epoch"], strict=True))
    name = f"{display(method)} {display(arch)} T={T} seed"
    return [f"{name} {s}" + ("" if s not in epoch else f" (diverged in epoch {epoch[s]:.0f})")
            for s in _expected(cells, exp, arch, method).get(T, [])
            if s not in epoch or not pd.isna(epoch[s])]


def t_interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t interval of paired differences (at least two)."""
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def combine(parts: list[str]) -> str:
    """One verdict from per-comparison verdicts: any fails, all hold, or inconclusive."""
    judged = [p for p in parts if p != "not run"]
    if not judged:
        return "not run"
    if "fails" in judged:
        return "fails"
    return "holds" if all(p == "holds" for p in judged) else "inconclusive"


# ---- the kinds -----------------------------------------------------------------------------


def judge_absolute(claim, sc, cells, col, published) -> Verdict:
    exp, (T,) = sc.exp["name"], claim["runs"]["T"]
    v = Verdict("not run")
    best, pub = None, None
    for arch in sc.archs:
        for method in [m for m in claim["runs"]["methods"] if m in sc.methods]:
            if T not in _expected(cells, exp, arch, method):
                v.missing.append(f"{display(method)} T={T}: not configured")
                continue
            v.missing += _missing(cells, col, exp, arch, method, T)
            got = _runs(col, exp, arch, method, T)["acc_best"]
            rows = published_for(published, sc.exp["dataset"], arch, method, T)
            rows = rows[rows["method"] == claim["published_method"]]
            if len(rows) and pub is None:
                pub = float(rows["accuracy"].iloc[0])
            if len(got):
                mean = float(got.mean())
                v.evidence.append(f"{display(method)}: {mean:.2f} % ({len(got)} seed(s))")
                best = mean if best is None else max(best, mean)
    if best is None:
        v.reason = "no run of the claim's cells is cached"
        return v
    if pub is None:
        v.verdict, v.reason = "inconclusive", "published.csv has no value for this cell"
        return v
    tol = claim["tolerance"]
    v.evidence.append(f"published {pub:.2f} %, tolerance {tol:g} pp: best {best - pub:+.2f} pp")
    v.verdict = "holds" if best >= pub - tol else "fails"
    return v


def _pair(a: pd.DataFrame, b: pd.DataFrame) -> tuple[str, str]:
    """Verdict and evidence of 'a beats b', paired by seed."""
    both = sorted(set(a["seed"]) & set(b["seed"]))
    acc_a = dict(zip(a["seed"], a["acc_best"], strict=True))
    acc_b = dict(zip(b["seed"], b["acc_best"], strict=True))
    diffs = [acc_a[s] - acc_b[s] for s in both]
    if not diffs:
        return "not run", "no seed with both runs"
    if len(diffs) == 1:
        return "inconclusive", f"{diffs[0]:+.2f} pp (one seed: no interval)"
    mean, lo, hi = t_interval(diffs)
    verdict = "holds" if lo > 0 else "fails" if hi < 0 else "inconclusive"
    return verdict, f"{mean:+.2f} pp, 95 % CI [{lo:+.2f}, {hi:+.2f}] ({len(diffs)} seeds)"


def judge_relative(claim, sc, cells, col, published) -> Verdict:
    exp, a = sc.exp["name"], claim["runs"]["methods"][0]
    v = Verdict("not run")
    if a not in sc.methods:
        v.reason = f"{display(a)} is not trained here"
        return v
    versus = [m for m in claim["versus"] if m in sc.methods]
    v.evidence += [f"{display(m)}: not in this configuration" for m in claim["versus"]
                   if m not in sc.methods]
    parts = []
    for arch in sc.archs:
        for T in time_steps(claim, list(_expected(cells, exp, arch, a))):
            for b in versus:
                if T not in _expected(cells, exp, arch, b):
                    continue
                v.missing += _missing(cells, col, exp, arch, a, T)
                v.missing += _missing(cells, col, exp, arch, b, T)
                verdict, text = _pair(_runs(col, exp, arch, a, T), _runs(col, exp, arch, b, T))
                parts.append(verdict)
                v.evidence.append(f"T={T} {display(a)} − {display(b)}: {text}")
    v.missing = list(dict.fromkeys(v.missing))
    v.verdict = combine(parts)
    if not parts:
        v.reason = "no T of the claim is trained for both methods"
    elif v.verdict == "inconclusive":
        one_seed = all("one seed" in e for e in v.evidence if " − " in e)
        v.reason = "one seed: no interval" if one_seed else "an interval includes 0"
    return v


def judge_band(claim, sc, cells, col, published) -> Verdict:
    exp = sc.exp["name"]
    top, (lo, hi) = claim["layer_max"], claim["total"]
    v, parts = Verdict("not run"), []
    layers = col.layers[col.layers["experiment"] == exp]
    for method in [m for m in claim["runs"]["methods"] if m in sc.methods]:
        for arch in sc.archs:
            for T in time_steps(claim, list(_expected(cells, exp, arch, method))):
                v.missing += _missing(cells, col, exp, arch, method, T)
                runs = _runs(col, exp, arch, method, T)
                mine = layers[(layers["method"] == method) & (layers["T"] == T)
                              & layers["seed"].isin(runs["seed"])]
                total = runs["firing_rate"].dropna()
                if mine.empty or total.empty:
                    parts.append("not run")
                    continue
                per_layer = mine.groupby("layer_index")["rate"].mean()
                worst, total = float(per_layer.max()), float(total.mean())
                ok = worst < top and lo <= total <= hi
                parts.append("holds" if ok else "fails")
                v.evidence.append(f"{display(method)} T={T}: max layer {worst:.1f} %, total "
                                  f"{total:.1f} % ({len(runs)} seed(s))")
    v.verdict = combine(parts)
    if v.verdict == "not run":
        v.reason = "no firing rates of the claim's methods are cached"
    elif v.verdict == "fails":
        v.reason = f"a layer at or above {top:g} % or a total outside {lo:g}-{hi:g} %"
    return v


def _sweep(col: Collected, exp: str, arch: str, method: str) -> pd.DataFrame | None:
    """Mean accuracy (%) per step of the method's recorded latency sweeps (longest sweep)."""
    points = []
    for _, run in _runs(col, exp, arch, method).iterrows():
        sweep = read_metrics(run["path"]).get("latency_sweep")
        if sweep:
            points += [{"seed": run["seed"], "T_max": sweep["T_max"], "T": p["T"],
                        "acc": 100 * p["accuracy"]} for p in sweep["points"]]
    if not points:
        return None
    df = pd.DataFrame(points)
    df = df[df["T_max"] == df["T_max"].max()]
    return df.groupby("T")["acc"].mean().reset_index().sort_values("T")


def judge_latency(claim, sc, cells, col, published) -> Verdict:
    exp, a, (T,), k = sc.exp["name"], claim["runs"]["methods"][0], claim["runs"]["T"], claim["k"]
    v, parts = Verdict("not run"), []
    for arch in sc.archs:
        v.missing += _missing(cells, col, exp, arch, a, T)
        got = _runs(col, exp, arch, a, T)["acc_best"]
        if got.empty:
            v.reason = f"no {display(a)} run at T={T} is cached"
            return v
        target = float(got.mean())
        v.evidence.append(f"{display(a)} T={T}: {target:.2f} %")
        for b in claim["versus"]:
            if b not in sc.methods:
                v.evidence.append(f"{display(b)}: not in this configuration")
                continue
            sweep = _sweep(col, exp, arch, b)
            if sweep is None:
                parts.append("not run")
                v.evidence.append(f"{display(b)}: no run recorded a latency sweep "
                                  "(metrics.json latency_sweep)")
                continue
            reached = sweep[sweep["acc"] >= target]
            top = int(sweep["T"].max())
            if len(reached):
                needs = int(reached["T"].iloc[0])
                parts.append("holds" if needs >= k * T else "fails")
                v.evidence.append(f"{display(b)} needs T={needs} (= {needs / T:.1f} x T; "
                                  f"claim: >= {k:g} x T)")
            else:
                parts.append("holds" if top >= k * T else "inconclusive")
                v.evidence.append(f"{display(b)} stays below it up to T={top} "
                                  f"(best {sweep['acc'].max():.2f} %)")
    v.verdict = combine(parts)
    if v.verdict == "not run":
        v.reason = "no latency sweep of the conversion methods is recorded"
    return v


def judge_depth(claim, sc, cells, col, published) -> Verdict:
    exp, a, (T,) = sc.exp["name"], claim["runs"]["methods"][0], claim["runs"]["T"]
    ref, tol = claim["reference"], claim["tolerance"]
    v, parts = Verdict("not run"), []
    if ref not in sc.methods or a not in sc.methods:
        v.reason = f"{display(a)} and {display(ref)} are not both trained here"
        return v
    absent = [x for x in claim["runs"]["arch"] if x not in sc.archs]
    v.missing += [f"{display(x)}: not in this configuration" for x in absent]
    for arch in sc.archs:
        v.missing += _missing(cells, col, exp, arch, a, T)
        mine, twin = _runs(col, exp, arch, a, T)["acc_best"], _runs(col, exp, arch, ref)["acc_best"]
        if mine.empty or twin.empty:
            parts.append("not run")
            continue
        gap = float(mine.mean()) - float(twin.mean())
        parts.append("holds" if gap >= -tol else "fails")
        v.evidence.append(f"{display(arch)}: {float(mine.mean()):.2f} % vs ANN "
                          f"{float(twin.mean()):.2f} % ({gap:+.2f} pp)")
    v.verdict = combine(parts)
    if absent and v.verdict == "holds":
        v.verdict, v.reason = "inconclusive", "not every depth is trained here"
    return v


JUDGES = {kind: globals()[f"judge_{kind}"] for kind in CLAIM_KINDS}


def judge(claim: dict, block: dict, experiments: list[dict], cells: list[dict],
          col: Collected, published: pd.DataFrame) -> Verdict:
    if claim["kind"] not in block.get("test", CLAIM_KINDS):
        return Verdict("not comparable", block.get("not_comparable")
                       or f"this configuration does not judge {claim['kind']} claims")
    sc = scope(claim, block, experiments)
    if isinstance(sc, str):
        return Verdict("not run", sc)
    return JUDGES[claim["kind"]](claim, sc, cells, col, published)


# ---- output --------------------------------------------------------------------------------

LEGEND = ("holds / fails: the test of the claim's kind passed / did not; inconclusive: an "
          "interval includes 0, there is one seed, or a needed published value is absent; "
          "not run: the runs (or a recorded field) it needs are absent here; not comparable: "
          "this configuration does not judge claims of this kind. Relative claims: per-seed "
          "paired difference of best accuracy with a 95 % t interval over seeds.")
CSV_COLUMNS = ["id", "kind", "statement", "source", "experiment", "verdict", "reason",
               "evidence", "missing"]


def render_claims(name: str, claims: list[dict], block: dict, experiments: list[dict],
                  cells: list[dict], col: Collected, published: pd.DataFrame,
                  claims_file: str) -> dict[str, str]:
    """claims.md and claims.csv text of one configuration."""
    rows, table = [], []
    for claim in claims:
        v = judge(claim, block, experiments, cells, col, published)
        exp = (block.get("experiments") or {}).get(claim["runs"]["experiment"],
                                                   claim["runs"]["experiment"])
        rows.append({"id": claim["id"], "kind": claim["kind"], "statement": claim["statement"],
                     "source": claim["source"], "experiment": exp, "verdict": v.verdict,
                     "reason": v.reason, "evidence": "; ".join(v.evidence),
                     "missing": "; ".join(v.missing)})
        shown = f"**{v.verdict}**" + (f": {v.reason}" if v.reason else "")
        table.append([f"`{claim['id']}`", claim["statement"], claim["source"], shown,
                      "; ".join(v.evidence) or DASH, "; ".join(v.missing) or DASH])
    counts = pd.Series([r["verdict"] for r in rows]).value_counts()
    tally = ", ".join(f"{counts[k]} {k}" for k in VERDICTS if k in counts)
    md = [f"# Claims: configuration `{name}`", "",
          f"The paper's claims ({claims_file}) judged against this configuration's cached runs: "
          f"{tally}.", "", LEGEND, "",
          markdown_table(["Claim", "Statement", "Source", "Verdict", "Numbers", "Missing runs"],
                         table), ""]
    return {"md": "\n".join(md), "csv": pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(index=False)}


def claims_files(params, col: Collected, published: pd.DataFrame) -> dict[str, str]:
    """The claims files of a tables / figures_from_cache job, by path (Snakemake params)."""
    block, out = params.claims, params.outputs["claims"]
    texts = render_claims(params.name, load_claims(block["file"]), block, params.experiments,
                          params.cells, col, published, block["file"])
    return {out["md"]: texts["md"], out["csv"]: texts["csv"]}
