"""The paper's claims (paper_tables/claims.yaml) judged against one configuration's cached runs.

Each claim gets one verdict: holds, fails, inconclusive, not run (a run or a recorded field it
needs is absent) or not comparable (the configuration does not judge its kind, e.g. absolute
accuracy under a reduced budget). Beside the verdict: the numbers and intervals behind it and
the runs that were missing. Written as {tables_dir}/{name}/claims.{md,csv} by the tables rule
and by figures_from_cache, from the same collected runs as the tables. A configuration whose
claims block maps experiments under `tuned` judges each relative claim twice: under the
published recipe (its `experiments` map) and under the tuned ruleset (pipeline.tuning), each row
labelled. How each kind is judged: pipeline.judges.
"""

from pathlib import Path

import pandas as pd
import yaml

from dsr.config import ConfigError
from dsr.harness.results import ResultError
from pipeline.collect import Collected
from pipeline.configs import StrictLoader
from pipeline.grid import CLAIM_KINDS
from pipeline.judges import JUDGES, Verdict, scope, t_interval  # noqa: F401 (tests use them)
from pipeline.names import DASH
from pipeline.text import markdown_table

VERDICTS = ("holds", "fails", "inconclusive", "not run", "not comparable")
# kinds judged under the tuned ruleset too, where the configuration maps a tuned experiment
TUNED_KINDS = ("relative",)
REQUIRED = ("id", "statement", "source", "kind", "runs")
COMPARING = ("relative", "latency", "memory")  # kinds that need versus or versus_category


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
        if claim["kind"] in COMPARING and not (claim.get("versus")
                                               or claim.get("versus_category")):
            raise ResultError(f"{where}: a {claim['kind']} claim compares with something; give "
                              "it versus (method keys) or versus_category")
        if claim["id"] in seen:
            raise ResultError(f"{where}: id used twice; give each claim its own id")
        seen.add(claim["id"])
    return claims


def firing_band(claims: list[dict]) -> dict | None:
    """The band claim's bounds (layer_max, total), which Fig. S1 draws; None without one."""
    band = next((c for c in claims if c["kind"] == "band"), None)
    return None if band is None else {"layer_max": band["layer_max"], "total": band["total"]}




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
TUNED_LEGEND = ("Ruleset: published recipe = each method at its published (or default) "
                "settings, accuracy of the best test epoch; tuned = the same claim read from "
                "the tuned experiment, where every method had the same number of candidate "
                "settings, the candidate with the best validation accuracy was selected and "
                "its accuracy is the test accuracy at its best validation epoch.")
CSV_COLUMNS = ["id", "kind", "ruleset", "statement", "source", "experiment", "verdict", "reason",
               "evidence", "missing"]


def rulesets(claim: dict, block: dict) -> list[tuple[str, dict]]:
    """(label, block) of each way the configuration judges `claim`: the published recipe, and
    the tuned ruleset where its experiment is mapped under `tuned`."""
    out = [("published recipe", block)]
    tuned = block.get("tuned") or {}
    if claim["kind"] in TUNED_KINDS and claim["runs"]["experiment"] in tuned:
        out.append(("tuned", {**block, "experiments": tuned}))
    return out


def render_claims(name: str, claims: list[dict], block: dict, experiments: list[dict],
                  cells: list[dict], col: Collected, published: pd.DataFrame,
                  claims_file: str) -> dict[str, str]:
    """claims.md and claims.csv text of one configuration."""
    rows, table = [], []
    labelled = bool(block.get("tuned"))
    for claim in claims:
        for ruleset, judged in rulesets(claim, block):
            v = judge(claim, judged, experiments, cells, col, published)
            exp = judged["experiments"].get(claim["runs"]["experiment"],
                                            claim["runs"]["experiment"])
            rows.append({"id": claim["id"], "kind": claim["kind"], "ruleset": ruleset,
                         "statement": claim["statement"], "source": claim["source"],
                         "experiment": exp, "verdict": v.verdict, "reason": v.reason,
                         "evidence": "; ".join(v.evidence), "missing": "; ".join(v.missing)})
            shown = f"**{v.verdict}**" + (f": {v.reason}" if v.reason else "")
            table.append([f"`{claim['id']}`", *([ruleset] if labelled else []),
                          claim["statement"], claim["source"], shown,
                          "; ".join(v.evidence) or DASH, "; ".join(v.missing) or DASH])
    counts = pd.Series([r["verdict"] for r in rows]).value_counts()
    tally = ", ".join(f"{counts[k]} {k}" for k in VERDICTS if k in counts)
    header = ["Claim", *(["Ruleset"] if labelled else []), "Statement", "Source", "Verdict",
              "Numbers", "Missing runs"]
    md = [f"# Claims: configuration `{name}`", "",
          f"The paper's claims ({claims_file}) judged against this configuration's cached runs: "
          f"{tally}.", "", LEGEND + (" " + TUNED_LEGEND if labelled else ""), "",
          markdown_table(header, table), ""]
    return {"md": "\n".join(md), "csv": pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(index=False)}


def claims_files(params, cells: list[dict], col: Collected,
                 published: pd.DataFrame) -> dict[str, str]:
    """The claims files of a tables / figures_from_cache job, by path (Snakemake params; the
    cells and runs the tables show)."""
    block, out = params.claims, params.outputs["claims"]
    texts = render_claims(params.name, load_claims(block["file"]), block, params.experiments,
                          cells, col, published, block["file"])
    return {out["md"]: texts["md"], out["csv"]: texts["csv"]}
