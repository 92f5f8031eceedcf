"""Tables: every cached metrics.json of the grid -> Markdown, LaTeX and CSV per experiment."""


rule tables:
    """Per-experiment tables (+ Fig. S1 data), runs.csv and MISSING.md from the whole grid."""
    input:
        metrics=GRID.metrics_files(),
        published=config["published"],
        claims=GRID.claims()["file"],
    output:
        table_files(GRID),
    params:
        name=config["name"],
        cells=GRID.cells,
        experiments=GRID.experiments(),
        outputs=GRID.outputs(),
        claims=GRID.claims(),
    conda:
        CONDA_ENV
    log:
        f"{GRID.results}/logs/{config['name']}/tables.log",
    localrule: True
    script:
        "../scripts/tables.py"
