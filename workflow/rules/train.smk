"""The one training rule: a shell call of the trainer CLI per run of the grid (train_variant:
the same rule for a swept run, whose path has one more segment)."""


rule train:
    """One run; its checkpoint.pt (undeclared, beside metrics.json) makes a retry resume."""
    output:
        metrics=f"{GRID.results}/runs/{RUN}/metrics.json",
    conda:
        CONDA_ENV
    log:
        f"{GRID.results}/logs/train/{RUN}.log",
    benchmark:
        f"{GRID.results}/benchmarks/train/{RUN}.tsv"
    params:
        trainer=trainer_command,
        args=trainer_args,
        processes=run_processes,
    threads: run_threads
    resources:
        mem_mb=run_resource("mem_mb"),
        runtime=run_runtime,
        gpu=run_resource("gpu"),
        cpus_per_gpu=run_cpus_per_gpu,
    shell:
        # the job's threads shared among its processes (one per GPU under torchrun)
        "OMP_NUM_THREADS=$(( ({threads} + {params.processes} - 1) / {params.processes} )) "
        "{params.trainer} {params.args} --out {output.metrics:q} > {log:q} 2>&1"


use rule train as train_variant with:
    output:
        metrics=f"{GRID.results}/runs/{RUN_VARIANT}/metrics.json",
    log:
        f"{GRID.results}/logs/train/{RUN_VARIANT}.log",
    benchmark:
        f"{GRID.results}/benchmarks/train/{RUN_VARIANT}.tsv"
