"""The `figures` rule: every figure of the grid from the CSVs the `tables` rule wrote."""


from pipeline.build import rule_log
from pipeline.claims import firing_band, load_claims
from pipeline.figures import render_from_csv
from pipeline.published import load_published


def main(smk) -> None:
    with rule_log(smk):
        published = load_published(smk.input.published)
        band = firing_band(load_claims(smk.params.claims["file"]))
        render_from_csv(smk.params.experiments, smk.params.outputs, published, band)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821  (injected by Snakemake's script directive)
