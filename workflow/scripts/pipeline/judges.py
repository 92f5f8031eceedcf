"""How each kind of claim is judged (paper_tables/claims.yaml's header defines the kinds): where
a claim's runs are in a configuration (`scope`), the numbers from the collected runs, and one
`judge_<kind>` per kind returning a Verdict. pipeline.claims loads the claims and renders them.
"""

import math
from dataclasses import dataclass, field

import pandas as pd
from scipy import stats

from dsr.harness.record import RunRecord
from pipeline.collect import Collected
from pipeline.grid import CLAIM_KINDS
from pipeline.names import display
from pipeline.published import published_for

# kinds whose T values are "every configured T up to the claim's largest" (the others: exact)
UP_TO_T = ("relative", "band", "memory")


@dataclass
class Verdict:
    verdict: str
    reason: str = ""
    evidence: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


# ---- where a claim's runs are in this configuration ----------------------------------------


@dataclass
class Scope:
    exp: dict
    archs: list[str]
    methods: list[str]  # the claim's methods (and versus / reference) this experiment trains
    absent: list[str]  # the claim's methods it does not train
    versus: list[str]  # what the claim compares with: `versus`, then `versus_category`'s methods


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
    versus = comparators(claim, exp)
    wanted = list(runs["methods"]) + versus
    if claim.get("reference"):
        wanted.append(claim["reference"])
    return Scope(exp, archs, [m for m in wanted if m in exp["methods"]],
                 [m for m in wanted if m not in exp["methods"]], versus)


def comparators(claim: dict, exp: dict) -> list[str]:
    """The methods a claim compares with: those it names (`versus`), then every method of the
    experiment whose category (its spec's: a plug-in's too) is `versus_category`."""
    versus = list(claim.get("versus") or [])
    category = claim.get("versus_category")
    if category:
        specs = exp.get("specs") or {}
        versus += [m for m in exp["methods"] if (specs.get(m) or {}).get("category") == category
                   and m not in versus and m not in claim["runs"]["methods"]]
    return versus


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
    a, b = a[a["acc_best"].notna()], b[b["acc_best"].notna()]
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
    versus = [m for m in sc.versus if m in sc.methods]
    v.evidence += [f"{display(m)}: not in this configuration" for m in sc.versus
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
        sweep = RunRecord.read(run["path"]).latency_sweep
        if sweep:
            points += [{"seed": run["seed"], "T_max": sweep.T_max, "T": p.T,
                        "acc": 100 * p.accuracy} for p in sweep.points]
    if not points:
        return None
    df = pd.DataFrame(points)
    df = df[df["T_max"] == df["T_max"].max()]
    return df.groupby("T")["acc"].mean().reset_index().sort_values("T")


def latency_steps(claim: dict, configured: list[int]) -> list[int]:
    """The claim's T where the configuration trains it, else each configured T below it (a
    reduced grid judges the same comparison at its own time steps)."""
    (T,) = claim["runs"]["T"]
    return [T] if T in configured else sorted(t for t in configured if t < T)


def judge_latency(claim, sc, cells, col, published) -> Verdict:
    exp, a, k = sc.exp["name"], claim["runs"]["methods"][0], claim["k"]
    v, parts = Verdict("not run"), []
    for arch in sc.archs:
        steps = latency_steps(claim, list(_expected(cells, exp, arch, a)))
        if not steps:
            v.reason = f"{display(a)} is not trained at or below T={claim['runs']['T'][0]}"
            return v
        for T in steps:
            v.missing += _missing(cells, col, exp, arch, a, T)
            got = _runs(col, exp, arch, a, T)["acc_best"]
            if got.empty:
                parts.append("not run")
                continue
            target = float(got.mean())
            v.evidence.append(f"{display(a)} T={T}: {target:.2f} %")
            for b in sc.versus:
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
    if v.verdict == "not run" and not v.reason:
        v.reason = "no run of the claim's method or no latency sweep of conversion is cached"
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


def judge_memory(claim, sc, cells, col, published) -> Verdict:
    """`runs.methods[0]` trains in less peak training memory than each of `versus` at the same
    T, at an accuracy no more than `tolerance` pp below (paired by seed, mean difference)."""
    exp, a, tol = sc.exp["name"], claim["runs"]["methods"][0], claim["tolerance"]
    v, parts = Verdict("not run"), []
    if a not in sc.methods:
        v.reason = f"{display(a)} is not trained here"
        return v
    for arch in sc.archs:
        for T in time_steps(claim, list(_expected(cells, exp, arch, a))):
            for b in [m for m in sc.versus if m in sc.methods]:
                if T not in _expected(cells, exp, arch, b):
                    continue
                v.missing += _missing(cells, col, exp, arch, a, T)
                v.missing += _missing(cells, col, exp, arch, b, T)
                ra, rb = _runs(col, exp, arch, a, T), _runs(col, exp, arch, b, T)
                ma, mb = ra["train_memory_mb"].dropna(), rb["train_memory_mb"].dropna()
                both = sorted(set(ra["seed"]) & set(rb["seed"]))
                if ma.empty or mb.empty or not both:
                    parts.append("not run")
                    continue
                acc_a = dict(zip(ra["seed"], ra["acc_best"], strict=True))
                acc_b = dict(zip(rb["seed"], rb["acc_best"], strict=True))
                gap = sum(acc_a[s] - acc_b[s] for s in both) / len(both)
                ratio = float(ma.mean()) / float(mb.mean())
                parts.append("holds" if ratio < 1 and gap >= -tol else "fails")
                kind = ", ".join(sorted(set(ra["train_memory_kind"].dropna())))
                v.evidence.append(f"T={T} {display(a)} / {display(b)}: memory {ma.mean():.0f} / "
                                  f"{mb.mean():.0f} MiB (x{ratio:.2f}; {kind}), accuracy "
                                  f"{gap:+.2f} pp ({len(both)} seeds; tolerance {tol:g} pp)")
    v.missing = list(dict.fromkeys(v.missing))
    v.verdict = combine(parts)
    if not parts:
        v.reason = "no T of the claim is trained for both methods"
    elif v.verdict == "not run":
        v.reason = "no training memory of the claim's runs is recorded"
    return v


JUDGES = {kind: globals()[f"judge_{kind}"] for kind in CLAIM_KINDS}
