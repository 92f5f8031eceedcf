"""DSR-Bench: train the configured grid, then write tables and figures beside published values.

    snakemake --cores all --profile profiles/default reproduce_table      # config/config.yaml
    snakemake --profile profiles/slurm --configfile config/paper.yaml reproduce_table
    snakemake --cores 1 --profile profiles/figures figures_from_cache     # cached results only
    snakemake --profile profiles/figures --report report.html reproduce_table
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


GRID = Grid(check_config(config, workflow.basedir))


rule all:
    """Every table and figure of the configuration (the default target)."""
    input:
        rendered(GRID),
    default_target: True


rule reproduce_table:
    """Train whatever is missing, then write every table and figure."""
    input:
        rules.all.input,


include: "workflow/rules/train.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
