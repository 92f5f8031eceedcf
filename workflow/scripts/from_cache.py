"""figures_from_cache: tables and figures from the metrics already cached, never training.

Missing and stale runs are listed in MISSING.md and on stdout and left out; with nothing cached
at all it says so and leaves any earlier tables and figures alone. Exit 0 unless a cached file
is corrupt (then the one-line error of aggregate.py, and nothing is written).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aggregate import collect, fail, load_published, render_tables, write_all  # noqa: E402
from claims import claims_files, firing_band, load_claims  # noqa: E402
from figures import render_from_csv  # noqa: E402

from dsr.results import ResultError, atomic_write_text  # noqa: E402


def main(smk) -> None:
    p = smk.params
    log = smk.log[0] if smk.log else None
    try:
        published = load_published(smk.input.published)
        col = collect(p.cells, p.experiments, strict=False)
        files, summary = render_tables(p.name, p.cells, p.experiments, p.outputs, col, published)
        files.update(claims_files(p, col, published))
    except ResultError as e:
        fail(str(e), log)
    if col.runs.empty:
        summary = (f"Nothing cached for configuration `{p.name}`: none of its {col.total} runs "
                   f"has a current metrics.json under {p.results}/runs ({len(col.missing)} "
                   f"missing, {len(col.stale)} stale), so no table or figure was written and "
                   "earlier ones are kept; see MISSING.md. Train with `snakemake --cores all "
                   "--profile profiles/default reproduce_table`.")
        atomic_write_text(p.outputs["missing"], files[p.outputs["missing"]])
    else:
        write_all(files)
        render_from_csv(p.experiments, p.outputs, published,
                        firing_band(load_claims(p.claims["file"])))
        summary += f"\nTables and figures: {Path(p.outputs['missing']).parent}/"
    print(summary)
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(summary + "\n")


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821  (injected by Snakemake's script directive)
