"""The `tables` rule: every run of the grid (all must be cached and current) -> per-experiment
tables (Markdown, LaTeX, CSV), Fig. S1 data, claims, runs.csv and MISSING.md."""


from pipeline.build import build_tables, rule_log, write_all


def main(smk) -> None:
    with rule_log(smk) as log:
        tables = build_tables(smk.params, smk.input.published, strict=True)
        write_all(tables.files)
        if log is not None:
            log.write(tables.summary + "\n")


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821  (injected by Snakemake's script directive)
