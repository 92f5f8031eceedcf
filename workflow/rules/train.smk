"""A shell call of the trainer CLI per run of the grid: `train` (and `train_variant`, the same
rule for a swept run, whose path has one more segment), `train_model` for the runs whose model a
conversion method converts (+ --save-model), and `convert` for the conversion jobs that load
that model and train nothing (+ --from-checkpoint)."""


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


rule train_model:
    """A run whose trained model a conversion method converts (the ann run at T1, QCFS's
    quantised ANN at L{L}): the train rule's call plus --save-model."""
    output:
        metrics=f"{GRID.results}/{MODEL_PATTERN}/metrics.json",
        model=f"{GRID.results}/{MODEL_PATTERN}/model.pt",
    wildcard_constraints:
        method="|".join(sorted(set(CONVERSION_SOURCES.values()))),
    conda:
        CONDA_ENV
    log:
        f"{GRID.results}/logs/train/{MODEL}.log",
    benchmark:
        f"{GRID.results}/benchmarks/train/{MODEL}.tsv"
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
        "OMP_NUM_THREADS=$(( ({threads} + {params.processes} - 1) / {params.processes} )) "
        "{params.trainer} {params.args} --save-model {output.model:q} --out {output.metrics:q} "
        "> {log:q} 2>&1"


rule convert:
    """One conversion job: convert a trained model.pt, evaluate the SNN up to T_max = {T} and
    record every T of the table in one pass (never trains; one process, at most one GPU)."""
    input:
        model=source_model,
    output:
        metrics=f"{GRID.results}/runs/{RUN}/metrics.json",
    wildcard_constraints:
        method="|".join(sorted(CONVERSION_SOURCES)),
    conda:
        CONDA_ENV
    log:
        f"{GRID.results}/logs/convert/{RUN}.log",
    benchmark:
        f"{GRID.results}/benchmarks/convert/{RUN}.tsv"
    params:
        args=trainer_args,
        python=shlex.quote(sys.executable),
    threads: run_threads
    resources:
        mem_mb=run_resource("mem_mb"),
        runtime=run_runtime,
        gpu=convert_gpu,
        cpus_per_gpu=run_cpus_per_gpu,
    shell:
        "OMP_NUM_THREADS={threads} {params.python} -m dsr.run {params.args} "
        "--from-checkpoint {input.model:q} --out {output.metrics:q} > {log:q} 2>&1"


ruleorder: train_model > convert > train
