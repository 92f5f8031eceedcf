"""figures_from_cache: tables and figures from the metrics already cached, never training.

Missing and stale runs are listed in MISSING.md and on stdout and left out; with nothing cached
at all it says so and leaves any earlier tables and figures alone. Exit 0 unless a cached file
is corrupt (then a one-line error, and nothing is written).
"""

from pathlib import Path

from dsr.harness.results import atomic_write_text
from pipeline.build import build_tables, rule_log, write_all
from pipeline.claims import firing_band, load_claims
from pipeline.figures import render_from_csv


def main(smk) -> None:
    p = smk.params
    with rule_log(smk) as log:
        tables = build_tables(p, smk.input.published, strict=False)
        col, missing = tables.collected, p.outputs["missing"]
        if col.runs.empty:
            summary = (f"Nothing cached for configuration `{p.name}`: none of its {col.total} "
                       f"runs has a current metrics.json under {p.results}/runs "
                       f"({len(col.missing)} missing, {len(col.stale)} stale), so no table or "
                       "figure was written and earlier ones are kept; see MISSING.md. Train "
                       "with `snakemake --cores all --profile profiles/default reproduce_table`.")
            atomic_write_text(missing, tables.files[missing])
        else:
            write_all(tables.files)
            render_from_csv(p.experiments, p.outputs, tables.published,
                            firing_band(load_claims(p.claims["file"])))
            summary = tables.summary + f"\nTables and figures: {Path(missing).parent}/"
        print(summary)
        if log is not None:
            log.write(summary + "\n")


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821  (injected by Snakemake's script directive)
