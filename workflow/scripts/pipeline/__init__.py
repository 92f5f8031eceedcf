"""The workflow's library: what the Snakemake rules compute, as importable, tested modules.

    grid       config -> runs, resources, table cells, output paths (common.smk's model)
    collect    cached metrics.json -> checked run and layer rows
    published  paper_tables/published.csv -> checked rows, matched and cited
    render     rows -> per-experiment tables, Fig. S1 data, MISSING.md (text only)
    claims     paper_tables/claims.yaml judged against the collected runs
    figures    the tables' CSVs -> PNG + PDF figures (look: style)
    names, text  display names; Markdown/LaTeX/number formatting
    build      `build_tables`, atomic writes and the rule log: what the rule scripts call
The rule scripts beside this package (tables.py, figures.py, from_cache.py) only unpack
Snakemake's arguments and call it.
"""
