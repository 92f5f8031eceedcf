"""The paper's claims as data: each kind of test judged on synthetic metrics fixtures."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.aggregate import synthetic_metrics
from dsr import REPO_ROOT as ROOT
from dsr import registry
from dsr.config import sweep_points
from dsr.harness.results import ResultError
from dsr.spec import MethodSpec
from pipeline import claims, collect, names
from pipeline import published as pub
from tests.experiments import grid_of

CLAIMS = claims.load_claims(ROOT / "paper_tables" / "claims.yaml")
PUBLISHED = pub.load_published(ROOT / "paper_tables" / "published.csv")
REDUCED = {"test": ["relative", "band"], "not_comparable": "reduced budget",
           "experiments": {"cifar10": "digits"}, "archs": {"preact_resnet18": "preact_resnet8"}}


def claim(claim_id: str) -> dict:
    return next(c for c in CLAIMS if c["id"] == claim_id)


def fixture(tmp_path: Path, runs: dict, exp: str = "digits", dataset: str = "digits",
            arch: str = "preact_resnet8", specs: dict | None = None
            ) -> tuple[list[dict], list[dict], collect.Collected]:
    """Metrics files for {(method, T): {seed: changes}}; changes: acc (%), rates (%), sweep;
    `specs`: plug-ins' MethodSpecs (the built-ins' come from the registry)."""
    rng, cells = random.Random(0), []
    for (method, T), seeds in runs.items():
        for seed, change in seeds.items():
            path = tmp_path / f"{method}/T{T}/seed{seed}/metrics.json"
            m = synthetic_metrics(method, dataset, arch, T, seed, 5, rng)
            cells.append({"experiment": exp, "dataset": dataset, "arch": arch, "method": method,
                          "T": T, "seed": seed, "path": str(path), "hash": m["config_hash"],
                          "epochs": 5, "mode": None, "set": {}})
            if change is None:  # configured, not run
                continue
            if "acc" in change:
                m["accuracy"]["best"] = change["acc"] / 100
            if "rates" in change:
                m["firing_rate"]["per_layer"] = [r / 100 for r in change["rates"]]
                m["firing_rate"]["layer_names"] = [f"n{i}" for i in range(len(change["rates"]))]
                m["firing_rate"]["total"] = change["total"] / 100
            if "sweep" in change:
                m["latency_sweep"] = {"T_max": max(change["sweep"]), "points": [
                    {"T": t, "accuracy": a / 100, "synops": None, "energy_pj": None}
                    for t, a in change["sweep"].items()]}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(m))
    methods = list(dict.fromkeys(m for m, _ in runs))
    experiments = [{"name": exp, "title": exp, "dataset": dataset, "archs": [arch],
                    "methods": methods, "firing_rates": [m for m in methods
                                                         if m.startswith("dsr-")],
                    "specs": {m: (specs or {})[m].to_dict() if m in (specs or {})
                              else registry.spec(m).to_dict() for m in methods}}]
    return cells, experiments, collect.collect(cells, experiments, strict=False)


def verdict(claim_id: str, block: dict, built: tuple) -> claims.Verdict:
    cells, experiments, col = built
    return claims.judge(claim(claim_id), block, experiments, cells, col, PUBLISHED)


def test_claims_file_covers_the_paper_and_every_kind() -> None:
    ids = {c["id"] for c in CLAIMS}
    assert {"cifar10-t20", "cifar100-t20", "cifar10-t5", "cifar100-t5", "dvs-cifar10",
            "imagenet", "deep-resnets", "firing-rate-band", "low-latency-vs-conversion"} <= ids
    assert {c["kind"] for c in CLAIMS} == set(claims.CLAIM_KINDS)
    # the DSR paper's claims, and those of the newer methods' papers (named by method)
    assert all(c["source"].startswith(("paper", "supplement", "SLTT")) for c in CLAIMS)


def test_bad_claims_file_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "claims.yaml"
    bad.write_text(yaml.safe_dump({"claims": [{**CLAIMS[0], "kind": "vibes"}]}))
    with pytest.raises(ResultError, match="kind 'vibes'; use one of absolute"):
        claims.load_claims(bad)
    bad.write_text(yaml.safe_dump({"claims": [CLAIMS[0], CLAIMS[0]]}))
    with pytest.raises(ResultError, match="id used twice"):
        claims.load_claims(bad)


def test_t_interval_matches_a_paired_t_test() -> None:
    from scipy import stats

    diffs = [1.0, 2.5, 0.5, 1.8]
    mean, lo, hi = claims.t_interval(diffs)
    ci = stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    assert mean == pytest.approx(1.45) and (lo, hi) == pytest.approx((ci.low, ci.high))


def test_a_plug_in_of_the_category_is_compared_under_its_declared_name(tmp_path: Path) -> None:
    """Claims choose comparators by category (versus_category), so an out-of-tree
    surrogate-gradient method is one of them, shown by the name its class declares."""
    plug = MethodSpec("tri-sg", "my_methods:TriSG", "Triangle SG", "surrogate gradient")
    built = fixture(tmp_path, {
        ("dsr-if", 2): {s: {"acc": 80 + s} for s in range(3)},
        ("sg-bptt", 2): {s: {"acc": 70 + s} for s in range(3)},
        ("tri-sg", 2): {s: {"acc": 90 + s} for s in range(3)}}, specs={"tri-sg": plug})
    names.use_specs(built[1])
    v = verdict("dsr-if-beats-sg-low-t", REDUCED, built)
    assert v.verdict == "fails"  # the plug-in beats DSR here
    assert any(e.startswith("T=2 DSR (IF) − Triangle SG: -10.00 pp") for e in v.evidence)
    assert names.display("tri-sg") == "Triangle SG"


@pytest.mark.parametrize(("accs", "expected"), [
    ({0: (80, 70), 1: (82, 71), 2: (79, 70)}, "holds"),
    ({0: (70, 80), 1: (71, 82), 2: (70, 79)}, "fails"),
    ({0: (80, 70), 1: (70, 81), 2: (75, 74)}, "inconclusive"),  # the interval spans 0
    ({0: (90, 50)}, "inconclusive"),  # one seed: never "holds"
])
def test_relative_claim_is_judged_on_paired_seeds(tmp_path: Path, accs: dict,
                                                  expected: str) -> None:
    built = fixture(tmp_path, {
        ("dsr-if", 2): {s: {"acc": a} for s, (a, _) in accs.items()},
        ("sg-bptt", 2): {s: {"acc": b} for s, (_, b) in accs.items()},
        ("dsr-if", 8): {0: {"acc": 50}},  # above the claim's largest T (5): not judged
        ("sg-bptt", 8): {0: {"acc": 90}}})
    v = verdict("dsr-if-beats-sg-low-t", REDUCED, built)
    assert v.verdict == expected
    # compared with the experiment's surrogate-gradient methods (only BPTT here), not above T = 5
    assert "T=8" not in " ".join(v.evidence) and len(v.evidence) == 1
    if len(accs) == 1:
        assert "one seed: no interval" in v.evidence[-1] and v.reason == "one seed: no interval"
    else:
        assert v.reason == ("an interval includes 0" if expected == "inconclusive" else "")
        assert "95 % CI [" in v.evidence[-1] and "(3 seeds)" in v.evidence[-1]


def test_relative_claim_lists_missing_runs(tmp_path: Path) -> None:
    built = fixture(tmp_path, {("dsr-if", 2): {0: {"acc": 80}, 1: None},
                               ("sg-bptt", 2): {0: {"acc": 70}, 1: {"acc": 71}}})
    v = verdict("dsr-if-beats-sg-low-t", REDUCED, built)
    assert v.verdict == "inconclusive"
    assert v.missing == ["DSR (IF) PreAct-ResNet-8 T=2 seed 1"]


@pytest.mark.parametrize(("rates", "total", "expected"), [
    ([5, 12, 19.5, 3], 8.0, "holds"),
    ([5, 12, 25.0, 3], 8.0, "fails"),  # one layer above 20 %
    ([5, 12, 15.0, 3], 6.0, "fails"),  # total below the band
])
def test_band_claim(tmp_path: Path, rates: list, total: float, expected: str) -> None:
    built = fixture(tmp_path, {(m, T): {0: {"rates": rates, "total": total}}
                               for m in ("dsr-if", "dsr-lif") for T in (2, 4)})
    v = verdict("firing-rate-band", REDUCED, built)
    assert v.verdict == expected and len(v.evidence) == 4
    assert f"max layer {max(rates):.1f} %, total {total:.1f} %" in v.evidence[0]


def test_absolute_claims_are_not_comparable_under_a_reduced_budget(tmp_path: Path) -> None:
    built = fixture(tmp_path, {("dsr-lif", 20): {0: {"acc": 99}}})
    v = verdict("cifar10-t20", REDUCED, built)
    assert (v.verdict, v.reason) == ("not comparable", "reduced budget")


@pytest.mark.parametrize(("acc", "expected"), [(95.0, "holds"), (93.0, "fails")])
def test_absolute_claim_reads_the_published_row(tmp_path: Path, acc: float,
                                                expected: str) -> None:
    built = fixture(tmp_path, {("dsr-lif", 20): {0: {"acc": acc}, 1: {"acc": acc}}},
                    exp="cifar10", dataset="cifar10", arch="preact_resnet18")
    published = pub.published_for(PUBLISHED, "cifar10", "preact_resnet18", "dsr-lif", 20)
    v = verdict("cifar10-t20", {}, built)
    assert v.verdict == expected
    assert f"published {published['accuracy'].iloc[0]:.2f} %" in v.evidence[-1]


@pytest.mark.parametrize(("sweep", "expected"), [
    ({20: 60, 40: 80, 100: 89, 120: 91, 200: 93}, "holds"),  # needs T = 120 >= 5 x 20
    ({20: 60, 40: 91, 200: 93}, "fails"),  # needs T = 40 < 100
    ({20: 60, 40: 80, 60: 85}, "inconclusive"),  # the sweep stops before 5 x T
])
def test_latency_claim_reads_the_conversion_sweep(tmp_path: Path, sweep: dict,
                                                  expected: str) -> None:
    built = fixture(tmp_path, {("dsr-if", 20): {0: {"acc": 90}},
                               ("conversion", 20): {0: {"acc": 60, "sweep": sweep}}},
                    exp="cifar10", dataset="cifar10", arch="preact_resnet18")
    v = verdict("low-latency-vs-conversion", {}, built)
    assert v.verdict == expected, v.evidence


def test_latency_claim_without_a_sweep_is_not_run(tmp_path: Path) -> None:
    built = fixture(tmp_path, {("dsr-if", 20): {0: {"acc": 90}},
                               ("conversion", 20): {0: {"acc": 60}}},
                    exp="cifar10", dataset="cifar10", arch="preact_resnet18")
    v = verdict("low-latency-vs-conversion", {}, built)
    assert v.verdict == "not run" and "latency_sweep" in " ".join(v.evidence)


def test_depth_claim_compares_each_depth_with_its_ann(tmp_path: Path) -> None:
    built = fixture(tmp_path, {("dsr-if", 20): {0: {"acc": 90}}, ("ann", 1): {0: {"acc": 91}}},
                    exp="deep_resnets", dataset="cifar10", arch="preact_resnet20")
    v = verdict("deep-resnets", {}, built)
    # one depth of five: it holds there, but the claim is about every depth
    assert v.verdict == "inconclusive" and "(-1.00 pp)" in v.evidence[0]


def test_claim_without_its_experiment_is_not_run(tmp_path: Path) -> None:
    built = fixture(tmp_path, {("dsr-if", 2): {0: {"acc": 80}}})
    v = verdict("dsr-if-beats-sg-low-t", {}, built)
    assert v.verdict == "not run" and "no `cifar10` experiment" in v.reason


@pytest.mark.parametrize(("name", "kinds", "cifar10"), [
    ("config", ["relative", "band", "latency", "memory"], "digits"),
    ("reduced", ["relative", "band", "latency"], "cifar10_reduced"),
    ("paper", list(claims.CLAIM_KINDS), "cifar10"),
])
def test_each_configuration_says_which_claims_it_judges(name: str, kinds: list,
                                                        cifar10: str) -> None:
    """As the workflow reads them (pipeline.configs: each file whole, or its named base)."""
    from pipeline.configs import load_file

    cfg = load_file(ROOT / "config" / f"{name}.yaml")
    block = cfg["claims"]
    assert sorted(block["test"]) == sorted(kinds)
    assert block["experiments"]["cifar10"] == cifar10
    assert cifar10 in [e["name"] for e in cfg["experiments"]]
    assert bool(block["not_comparable"]) == (name != "paper")


def test_default_grid_writes_a_verdict_for_every_applicable_claim(tmp_path: Path) -> None:
    """config/config.yaml on synthetic metrics of every run: claims.md without training."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg.update(results_dir=str(tmp_path / "results"), tables_dir=str(tmp_path / "tables"))
    path = tmp_path / "default.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rng, grid = random.Random(0), grid_of(path)
    for run in grid.runs.values():
        val = dict(run.overrides).get("val_fraction")
        m = synthetic_metrics(run.method, "digits", run.arch, run.T, run.seed, 6, rng,
                              val_fraction=None if val is None else float(val))
        m["config_hash"] = run.hash
        if run.source is not None:
            m["latency_sweep"] = {"T_max": run.T, "points": [
                {"T": t, "accuracy": 0.5, "synops": None, "energy_pj": None}
                for t in sweep_points(run.T, run.points)]}
        folder = Path(grid.results, run.key)
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(m))
    snakemake = str(Path(sys.executable).parent / "snakemake")
    out = subprocess.run([snakemake, "figures_from_cache", "--cores", "1", "--nolock",
                          "--profile", "profiles/figures", "--configfile", str(path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    table = pd.read_csv(tmp_path / "tables/default/claims.csv", keep_default_na=False)
    assert list(dict.fromkeys(table["id"])) == [c["id"] for c in CLAIMS]
    applicable = table[table["kind"].isin(cfg["claims"]["test"])]
    assert len(applicable) >= 3
    assert set(applicable["verdict"]) <= {"holds", "fails", "inconclusive"}
    assert set(table.loc[~table.index.isin(applicable.index), "verdict"]) == {"not comparable"}
    # every relative claim twice, under the published recipe and the tuned ruleset; the rest once
    relative = table[table["kind"] == "relative"]
    assert sorted(relative["ruleset"]) == sorted(
        ["published recipe", "tuned"] * (len(relative) // 2))
    assert set(relative.loc[relative["ruleset"] == "tuned", "experiment"]) == {"digits_tuned"}
    assert set(table.loc[table["kind"] != "relative", "ruleset"]) == {"published recipe"}
    md = (tmp_path / "tables/default/claims.md").read_text()
    assert md.startswith("# Claims: configuration `default`")
    assert "| `firing-rate-band` | published recipe |" in md
