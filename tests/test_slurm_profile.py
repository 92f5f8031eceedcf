"""profiles/slurm with config/paper.yaml: every job requests what the config sets.

A dry run plans the paper grid through the real profile; each training job's GPUs, memory, CPUs
and runtime must equal the config's resources for its dataset and experiment (worked out here
independently of workflow/rules/common.smk), and the SLURM plugin must turn them into the
matching sbatch flags.
"""

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from dsr import REPO_ROOT as REPO

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())


def expected_resources(dataset: str, arch: str, convert: bool = False) -> dict:
    """Config precedence: top-level < dataset < experiment (first experiment naming the cell);
    a conversion job's convert_resources (top-level < dataset < experiment) over those."""
    res = dict(PAPER["resources"])
    res.update(PAPER["datasets"].get(dataset, {}).get("resources", {}))
    exp = next(e for e in PAPER["experiments"] if e["dataset"] == dataset and arch in e["archs"])
    res.update(exp.get("resources", {}))
    if convert:
        res.update(PAPER.get("convert_resources", {}))
        res.update(PAPER["datasets"].get(dataset, {}).get("convert_resources", {}))
        res.update(exp.get("convert_resources", {}))
    return res


PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.v8+.yaml").read_text())
# the profile's default resources with its placeholder account replaced, as a user does
DEFAULTS = ["--default-resources", *(f"{k}={v}" for k, v in
                                     {**PROFILE["default-resources"],
                                      "slurm_account": "my-account"}.items())]


@pytest.fixture(scope="module")
def planned_jobs() -> list[dict]:
    done = subprocess.run(
        [str(SNAKEMAKE), "reproduce_table", "-n", "--profile", "profiles/slurm",
         "--configfile", "config/paper.yaml", *DEFAULTS],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    jobs = []
    for block in re.split(r"\n(?=rule )", done.stdout):
        rule = re.match(r"rule (\w+):", block)
        if rule is None or rule[1] not in ("train", "train_model", "convert"):
            continue
        run = re.search(r"wildcards: run=(\S+)", block)[1]
        dataset, arch = run.split("/")[:2]
        wildcards = {"dataset": dataset, "arch": arch, "run": run}
        resources = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"resources: (.*)", block)[1]))
        jobs.append({"rule": rule[1], "wildcards": wildcards, "resources": resources})
    return jobs


def test_every_training_job_requests_the_configured_resources(planned_jobs: list[dict]) -> None:
    # the counts config/paper.yaml states: 312 training jobs, 44 conversion jobs
    assert len([j for j in planned_jobs if j["rule"] != "convert"]) == 312
    assert len([j for j in planned_jobs if j["rule"] == "convert"]) == 44
    for job in planned_jobs:
        wc, got = job["wildcards"], job["resources"]
        convert = job["rule"] == "convert"
        want = expected_resources(wc["dataset"], wc["arch"], convert)
        # a conversion job evaluates in one process: one GPU at most
        gpus = min(1, want["gpu"]) if convert else want["gpu"]
        assert int(got["gpu"]) == gpus, wc
        assert int(got["mem_mb"]) == want["mem_mb"], wc
        assert int(got["runtime"]) == want["runtime"], wc  # first attempt; retries grow it
        assert int(got["cpus_per_gpu"]) == want["cpus_per_gpu"], wc


def test_conversion_jobs_are_sized_to_their_sweep(planned_jobs: list[dict]) -> None:
    """A conversion job evaluates only: hours, one GPU, not the 24-48 h of a training job."""
    convert = [j for j in planned_jobs if j["rule"] == "convert"]
    assert convert and max(int(j["resources"]["runtime"]) for j in convert) <= 960
    assert {int(j["resources"]["gpu"]) for j in convert} == {1}


def test_profile_placeholder_is_refused_in_one_line() -> None:
    done = subprocess.run(
        [str(SNAKEMAKE), "reproduce_table", "-n", "--profile", "profiles/slurm",
         "--configfile", "config/paper.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert ("error: profile: default-resources slurm_account is still the placeholder "
            "'your-account'") in done.stderr
    assert "Job stats" not in done.stdout


def test_profile_asks_for_a_stop_signal_before_the_time_limit() -> None:
    """The trainer checkpoints its current step on SIGTERM (tests/test_reliability.py), so the
    profile has Slurm send it 5 minutes before the limit, to the job's steps."""
    extra = PROFILE["default-resources"]["slurm_extra"]
    values = {"slurm_extra": extra.strip("'"), "mem_mb": 1000, "runtime": 10}
    job = SimpleNamespace(resources=SimpleNamespace(get=values.get, **values), threads=1)
    params = {"run_uuid": "x", "slurm_logfile": "x.log", "comment_str": "rule_train",
              "account": "-A acct", "partition": "-p gpu", "workdir": "."}
    assert "--signal=TERM@300" in get_submit_command(job, params)


def test_imagenet_jobs_ask_for_several_gpus(planned_jobs: list[dict]) -> None:
    imagenet = [j for j in planned_jobs
                if j["wildcards"]["dataset"] == "imagenet" and j["rule"] != "convert"]
    assert imagenet and {int(j["resources"]["gpu"]) for j in imagenet} == {4}


@pytest.mark.parametrize("dataset,arch", [("cifar10", "preact_resnet18"),
                                          ("cifar10", "preact_resnet110"),
                                          ("imagenet", "preact_resnet18")])
def test_plugin_turns_resources_into_sbatch_flags(dataset: str, arch: str) -> None:
    want = expected_resources(dataset, arch)
    values = {"gpu": want["gpu"], "mem_mb": want["mem_mb"], "runtime": want["runtime"],
              "cpus_per_gpu": want["cpus_per_gpu"]}
    job = SimpleNamespace(resources=SimpleNamespace(get=values.get, **values),
                          threads=want["threads"])
    params = {"run_uuid": "x", "slurm_logfile": "x.log", "comment_str": "rule_train",
              "account": "-A acct", "partition": "-p gpu", "workdir": "."}
    call = get_submit_command(job, params) + set_gres_string(job)
    assert f"--mem {want['mem_mb']}" in call
    assert f"-t {want['runtime']}" in call
    assert f"--cpus-per-gpu={want['cpus_per_gpu']}" in call
    assert f"--gpus={want['gpu']}" in call
