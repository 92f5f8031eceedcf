"""A shell call of the trainer CLI per run of the grid: `train`, `train_model` for the runs whose
model a conversion method converts (+ --save-model), and `convert` for the conversion jobs that
load that model and train nothing (+ --from-checkpoint). A run's folder is its identity
(runs/.../seed{seed}/{config_hash}/), so a job never runs over another run's results; update()
keeps a finished metrics.json in place if Snakemake reruns its job (the trainer then finds the
run finished and does nothing), and restores it if that job fails."""


rule train:
    """One run; its checkpoint.pt (undeclared, beside metrics.json) makes a retry resume."""
    output:
        metrics=update(f"{GRID.results}/runs/{{run}}/metrics.json"),
    conda:
        CONDA_ENV
    log:
        f"{GRID.results}/logs/train/{{run}}.log",
    benchmark:
        f"{GRID.results}/benchmarks/train/{{run}}.tsv"
    params:
        trainer=trainer_command,
        args=trainer_args,
        processes=run_processes,
        save="",
    threads: run_threads
    resources:
        mem_mb=run_resource("mem_mb"),
        runtime=run_runtime,
        gpu=run_resource("gpu"),
        cpus_per_gpu=run_cpus_per_gpu,
    shell:
        # the job's threads shared among its processes (one per GPU under torchrun)
        "OMP_NUM_THREADS=$(( ({threads} + {params.processes} - 1) / {params.processes} )) "
        "{params.trainer} {params.args} {params.save}--out {output.metrics:q} > {log:q} 2>&1"


use rule train as train_model with:
    """A run whose trained model a conversion method converts (the ann run, QCFS's quantised
    ANN): the train rule's call plus --save-model."""
    output:
        metrics=update(f"{GRID.results}/runs/{{run}}/metrics.json"),
        model=update(f"{GRID.results}/runs/{{run}}/model.pt"),
    wildcard_constraints:
        run=keys_regex(GRID.model_keys()),
    params:
        trainer=trainer_command,
        args=trainer_args,
        processes=run_processes,
        save=lambda wildcards, output: f"--save-model {shlex.quote(output.model)} ",


rule convert:
    """One conversion job: convert a trained model.pt, evaluate the SNN up to T_max = {T} and
    record every T of the table in one pass (never trains; one process, at most one GPU)."""
    input:
        model=source_model,
    output:
        metrics=update(f"{GRID.results}/runs/{{run}}/metrics.json"),
    wildcard_constraints:
        run=keys_regex(GRID.conversion_keys()),
    conda:
        CONDA_ENV
    log:
        f"{GRID.results}/logs/convert/{{run}}.log",
    benchmark:
        f"{GRID.results}/benchmarks/convert/{{run}}.tsv"
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
