"""DSR-Bench: train the configured grid, then write tables and figures beside published values.

    snakemake --cores all --profile profiles/default reproduce_table      # config/config.yaml
    snakemake reproduce_table --profile profiles/slurm --configfile config/paper.yaml
    snakemake --cores 1 --profile profiles/figures figures_from_cache     # cached results only
    snakemake --profile profiles/figures --report report.html reproduce_table

The configuration is config/config.yaml, or exactly the --configfile files (each names itself and
any base explicitly; workflow/scripts/pipeline/configs.py); it is loaded in common.smk. Name the
target before --configfile, which takes every later word as a file.
"""

from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


rule all:
    """Every run, table and figure of the configuration (the default target). The runs are
    targets themselves, so a run whose metrics.json was deleted trains again even when the
    tables exist (they are then rebuilt, being older than it)."""
    input:
        GRID.metrics_files(),
        rendered(GRID),
    default_target: True


rule reproduce_table:
    """Train whatever is missing, then write every table and figure."""
    input:
        rules.all.input,


include: "workflow/rules/train.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
