"""The `figures` rule: every figure of the grid from the CSVs the `tables` rule wrote."""

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]
from pipeline.build import rule_log  # noqa: E402
from pipeline.claims import firing_band, load_claims  # noqa: E402
from pipeline.figures import render_from_csv  # noqa: E402
from pipeline.published import load_published  # noqa: E402


def main(smk) -> None:
    with rule_log(smk):
        published = load_published(smk.input.published)
        band = firing_band(load_claims(smk.params.claims["file"]))
        render_from_csv(smk.params.experiments, smk.params.outputs, published, band)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821  (injected by Snakemake's script directive)
