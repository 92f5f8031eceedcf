"""Fidelity of the faster DSR modes on real training: paired seeds against exact mode.

    python -m bench.fidelity [--seeds 8] [--epochs 6] [--jobs 2] [--modes fast approx]
        [--cells NAME ...] [--no-float64] [--out DIR]

Each cell is one `python -m dsr.run` configuration on digits (PreAct-ResNet-8); every seed is
trained once in exact mode and once in each other mode with the same data order and initial
weights, so a pair differs only in the gradient computation. Part 1 (float32, the CLI as users
run it): per cell and mode the mean best test accuracy of both, the paired differences (mode -
exact), their mean with a 95 % t interval, mean |difference| and how many seeds the mode lost.
Part 2 (float64, the same runs through `dsr.harness.train`'s harness with model and inputs in
float64): each mode vs exact step by step (largest loss difference over every step, largest accuracy
difference over every epoch), and the rounding floor: the paired difference between float32
and float64 exact runs, i.e. how far float32 rounding alone moves a run's outcome. Runs go to
worker processes (one thread each); their results stay under --out (a finished run is reused, so
an interrupted bench resumes).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from dsr.harness.record import RunRecord

# (method, T, --set overrides): the paper's initial v_th 6 and a short-budget v_th 1 for IF; the
# LIF cells use the Table S2 row nearest to T (the T = 5 row)
CELLS: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "if-T2-vth6": ("dsr-if", 2, ("v_th=6",)),
    "if-T4-vth6": ("dsr-if", 4, ("v_th=6",)),
    "if-T2-vth1": ("dsr-if", 2, ("v_th=1",)),
    "if-T4-vth1": ("dsr-if", 4, ("v_th=1",)),
    "lif-T2-S2": ("dsr-lif", 2, ()),
    "lif-T4-S2": ("dsr-lif", 4, ()),
}


@dataclass(frozen=True)
class Job:
    cell: str
    mode: str
    seed: int
    epochs: int
    out: Path
    float64: bool = False

    def argv(self) -> list[str]:
        method, T, sets = CELLS[self.cell]
        args = ["--method", method, "--dataset", "digits", "--time-steps", str(T),
                "--epochs", str(self.epochs), "--seed", str(self.seed), "--mode", self.mode,
                "--device", "cpu", "--set", "latency_batches=1"]
        for s in sets:
            args += ["--set", s]
        return args + ["--out", str(self.metrics)]

    @property
    def metrics(self) -> Path:
        dtype = "float64" if self.float64 else "float32"
        name = "trajectory.json" if self.float64 else "metrics.json"
        return self.out / self.cell / dtype / self.mode / f"seed{self.seed}" / name


def _run(job: Job) -> tuple[Job, float]:
    import torch

    from dsr import run

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if job.float64 and not job.metrics.exists():
        job.metrics.parent.mkdir(parents=True, exist_ok=True)
        job.metrics.write_text(json.dumps(_trajectory(job.argv(), torch.float64)))
    elif not job.metrics.exists():
        log = io.StringIO()  # the run's progress lines; its error line if it fails
        with contextlib.redirect_stderr(log):
            code = run.main(job.argv())
        if code != 0:
            last = log.getvalue().strip().splitlines()[-1:]
            raise RuntimeError(f"python -m dsr.run {' '.join(job.argv())} exited with {code}: "
                               f"{' '.join(last)}")
    return job, time.perf_counter() - t0


def _trajectory(argv: list[str], dtype) -> dict:
    """Train the run `argv` describes through the harness in `dtype`: each step's loss and each
    epoch's test accuracy."""
    from bench.harness import harness
    from dsr.harness.evaluate import evaluate, evaluated
    from dsr.harness.train import train_one_epoch, training_module
    from dsr.stages import TRAIN

    h = harness(argv, dtype)
    r = h.run
    module = training_module(h.model, h.method, r.device, r.dist)
    accuracy = []
    for epoch in range(h.cfg.train.epochs):
        train_one_epoch(module, h.method, r.data, h.opt, h.sched, h.cfg, epoch, r.device)
        net, layers = evaluated(h.model, h.method, TRAIN, r.data)
        accuracy.append(evaluate(net, layers, h.method, r.data, h.cfg, r.device).accuracy)
    return {"losses": h.losses, "accuracy": accuracy}


def paired(exact: list[float], other: list[float]) -> dict:
    """Mean and 95 % t interval of the paired differences other - exact (in points)."""
    d = [100 * (b - a) for a, b in zip(exact, other, strict=True)]
    n = len(d)
    mean = statistics.fmean(d)
    half = float(stats.t.ppf(0.975, n - 1)) * statistics.stdev(d) / math.sqrt(n)
    return {"n": n, "exact": 100 * statistics.fmean(exact), "other": 100 * statistics.fmean(other),
            "mean": mean, "lo": mean - half, "hi": mean + half,
            "abs": statistics.fmean(abs(x) for x in d), "losses": sum(x < 0 for x in d)}


def report(jobs: list[Job], modes: list[str]) -> str:
    acc: dict[tuple[str, str, int], float] = {}
    for job in (j for j in jobs if not j.float64):
        acc[job.cell, job.mode, job.seed] = RunRecord.read(job.metrics).accuracy.best
    head = (f"{'cell':<12} {'mode':<7} {'n':>2} {'exact %':>8} {'mode %':>8} {'diff':>6} "
            f"{'95% interval':>16} {'mean|d|':>7} {'lost':>5}")
    lines = [head, "-" * len(head)]
    for cell in dict.fromkeys(j.cell for j in jobs):
        seeds = sorted({j.seed for j in jobs if j.cell == cell})
        exact = [acc[cell, "exact", s] for s in seeds]
        for mode in modes:
            r = paired(exact, [acc[cell, mode, s] for s in seeds])
            lines.append(f"{cell:<12} {mode:<7} {r['n']:>2} {r['exact']:>8.2f} {r['other']:>8.2f} "
                         f"{r['mean']:>+6.2f} [{r['lo']:>+6.2f}, {r['hi']:>+6.2f}] "
                         f"{r['abs']:>7.2f} {r['losses']:>2}/{r['n']}")
    lines.append("per seed (best accuracy %, seeds in order):")
    for cell in dict.fromkeys(j.cell for j in jobs):
        seeds = sorted({j.seed for j in jobs if j.cell == cell})
        for mode in ["exact", *modes]:
            vals = " ".join(f"{100 * acc[cell, mode, s]:.1f}" for s in seeds)
            lines.append(f"  {cell:<12} {mode:<7} {vals}")
    if any(j.float64 for j in jobs):
        lines.append(float64_report(jobs, acc, modes))
    return "\n".join(lines)


def float64_report(jobs: list[Job], acc32: dict[tuple[str, str, int], float],
                   modes: list[str]) -> str:
    """Each mode vs exact in float64 step by step; float32 vs float64 exact: the rounding
    floor."""
    traj = {(j.cell, j.mode, j.seed): json.loads(j.metrics.read_text())
            for j in jobs if j.float64}
    head = (f"{'cell':<12} {'mode':<7} {'n':>2} {'max|dloss|':>10} {'max|dacc|':>9} | "
            f"{'f32 - f64':>9} {'95% interval':>16} {'mean|d|':>7}")
    lines = ["", "float64: each mode vs exact, largest difference over every step (loss) and "
             "epoch (accuracy, points) | the rounding floor: float32 - float64 exact, best "
             "accuracy (points)", head, "-" * len(head)]
    for cell in dict.fromkeys(j.cell for j in jobs if j.float64):
        seeds = sorted({j.seed for j in jobs if j.float64 and j.cell == cell})
        best64 = [max(traj[cell, "exact", s]["accuracy"]) for s in seeds]
        floor = paired(best64, [acc32[cell, "exact", s] for s in seeds])
        for mode in modes:
            dloss = max(abs(a - b) for s in seeds for a, b in
                        zip(traj[cell, "exact", s]["losses"], traj[cell, mode, s]["losses"],
                            strict=True))
            dacc = max(100 * abs(a - b) for s in seeds for a, b in
                       zip(traj[cell, "exact", s]["accuracy"], traj[cell, mode, s]["accuracy"],
                           strict=True))
            lines.append(f"{cell:<12} {mode:<7} {len(seeds):>2} {dloss:>10.1e} {dacc:>9.2f} | "
                         f"{floor['mean']:>+9.2f} [{floor['lo']:>+6.2f}, {floor['hi']:>+6.2f}] "
                         f"{floor['abs']:>7.2f}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fidelity", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--modes", nargs="+", choices=("fast", "approx"), default=["fast", "approx"])
    p.add_argument("--cells", nargs="+", choices=sorted(CELLS), default=list(CELLS))
    p.add_argument("--float64", action=argparse.BooleanOptionalAction, default=True,
                   help="part 2: every mode's runs again in float64 through the harness")
    p.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0))
                   if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    p.add_argument("--out", type=Path, help="where the runs' metrics.json go (default: a "
                   "temporary folder, removed at the end)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.seeds < 2 or args.epochs < 1 or args.jobs < 1:
        print("error: --seeds must be >= 2 (an interval needs two pairs), --epochs and --jobs "
              ">= 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        jobs = [Job(cell, mode, seed, args.epochs, out) for cell in args.cells
                for seed in range(args.seeds) for mode in ["exact", *args.modes]]
        if args.float64:
            jobs += [Job(cell, mode, seed, args.epochs, out, float64=True)
                     for cell in args.cells for seed in range(args.seeds)
                     for mode in ["exact", *args.modes]]
        t0 = time.perf_counter()
        print(f"command: python -m bench.fidelity {' '.join(argv or sys.argv[1:])}; "
              f"{len(jobs)} runs, {args.jobs} at a time", flush=True)
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            for i, (job, seconds) in enumerate(pool.imap_unordered(_run, jobs), 1):
                dtype = "float64" if job.float64 else "float32"
                print(f"  [{i}/{len(jobs)}] {job.cell} {job.mode} {dtype} seed {job.seed} "
                      f"{seconds:.0f} s", file=sys.stderr, flush=True)
        print(f"wall time {time.perf_counter() - t0:.0f} s")
        print(report(jobs, args.modes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
