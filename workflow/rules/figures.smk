"""Figures from the tables rule's CSVs, and the cache-only path that never trains."""


rule figures:
    """Accuracy vs T, the accuracy/energy Pareto view, cost vs T and Fig. S1, PNG + PDF."""
    input:
        runs=GRID.outputs()["runs_csv"],
        firing_rates=firing_rate_tables(GRID),
        published=config["published"],
    output:
        figure_files(GRID),
    params:
        experiments=GRID.experiments(),
        outputs=GRID.outputs(),
        claims=GRID.claims(),
    conda:
        CONDA_ENV
    log:
        f"{GRID.results}/logs/{config['name']}/figures.log",
    localrule: True
    script:
        "../scripts/figures.py"


rule figures_from_cache:
    """Tables and figures from the metrics already under results/; lists what is missing.

    It has no outputs and no training inputs, so it always runs, never schedules a training
    job and never waits for one (a cell that is missing is listed in MISSING.md and skipped).
    """
    input:
        published=config["published"],
        claims=GRID.claims()["file"],
    params:
        name=config["name"],
        results=GRID.results,
        cells=GRID.cells,
        experiments=GRID.experiments(),
        outputs=GRID.outputs(),
        claims=GRID.claims(),
    conda:
        CONDA_ENV
    log:
        f"{GRID.results}/logs/{config['name']}/figures_from_cache.log",
    localrule: True
    script:
        "../scripts/from_cache.py"
