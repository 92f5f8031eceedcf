"""Training loss per step, exact vs fast (vs approx) mode, on real CIFAR-10.

    python -m bench.learning_curve [--T 5] [--subset 4000] [--modes exact fast approx]
        [--set v_th=1] [--out bench/results]

One epoch of DSR-IF (PreAct-ResNet-20 by default) on a class-balanced subset of the CIFAR-10
JPEG copy, the same seed, data order and initial weights in every mode, through the real
harness (`dsr.harness.train.train_one_epoch`); the method's loss is wrapped to record each step's
value. Writes `learning_curve_cifar10.csv` and the figure (PNG and PDF) to --out and prints the
largest per-step difference from exact mode. Needs ../shared/data (extracted once into
data/cifar10/); without it the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from bench.harness import harness
from bench.real_data import add_run_options, real_cifar10, run_argv
from dsr.harness.train import train_one_epoch, training_module


def losses_per_step(argv: list[str]) -> tuple[list[float], float]:
    """One epoch of `python -m dsr.run argv` through the harness: each step's loss, seconds."""
    h = harness(argv)
    t0 = time.perf_counter()
    r = h.run
    module = training_module(h.model, h.method, r.device, r.dist)
    train_one_epoch(module, h.method, r.data, h.opt, h.sched, h.cfg, 0, r.device)
    return h.losses, time.perf_counter() - t0


def plot(curves: dict[str, list[float]], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.2), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.4]})
    styles = {"exact": dict(color="black", lw=2.2),
              "fast": dict(color="tab:orange", lw=1.2, ls="--"),
              "approx": dict(color="tab:blue", lw=1.2)}
    for mode, ys in curves.items():
        top.plot(range(1, len(ys) + 1), ys, label=mode, **styles.get(mode, {}))
        if mode != "exact":
            diff = [a - b for a, b in zip(ys, curves["exact"], strict=True)]
            bottom.plot(range(1, len(ys) + 1), diff, label=f"{mode} - exact",
                        **styles.get(mode, {}))
    top.set_ylabel("training loss (cross-entropy)")
    top.set_title(title)
    top.legend()
    bottom.axhline(0, color="grey", lw=0.6)
    bottom.set_xlabel("training step")
    bottom.set_ylabel("loss difference")
    bottom.legend()
    fig.tight_layout()
    for suffix, kw in ((".png", {"dpi": 200}), (".pdf", {})):
        fig.savefig(out.with_suffix(suffix), **kw)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.learning_curve",
                                description=__doc__.split("\n")[0])
    add_run_options(p, "--T", subset=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", nargs="+", choices=("exact", "fast", "approx"),
                   default=["exact", "fast", "approx"])
    p.add_argument("--set", action="append", default=["v_th=1"], metavar="KEY=VALUE",
                   help="method/harness overrides (default v_th=1, the reduced grid's)")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args(argv)
    if "exact" not in args.modes:
        args.modes.insert(0, "exact")  # the reference every other curve is compared with
    root = real_cifar10()
    if root is None:
        return 0
    curves, seconds = {}, {}
    for mode in args.modes:
        cli = run_argv(args, root, "--seed", str(args.seed), "--mode", mode, "--epochs", "1",
                       "--device", "cpu", out="unused.json")
        print("python -m dsr.run " + " ".join(cli), flush=True)
        curves[mode], seconds[mode] = losses_per_step(cli)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "learning_curve_cifar10"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", *args.modes])
        for i, row in enumerate(zip(*curves.values(), strict=True), 1):
            w.writerow([i, *(f"{v:.6f}" for v in row)])
    title = (f"{args.method}, {args.arch}, T = {args.time_steps}, CIFAR-10 "
             f"({args.subset} images, 1 epoch)")
    plot(curves, title, stem)
    steps = len(curves["exact"])
    for mode in args.modes:
        diff = max(abs(a - b) for a, b in zip(curves[mode], curves["exact"], strict=True))
        print(f"{mode:<7} steps {steps} final loss {curves[mode][-1]:.4f} mean loss "
              f"{sum(curves[mode]) / steps:.4f} max |loss - exact| {diff:.2e} "
              f"epoch {seconds[mode]:.0f} s")
    print(f"wrote {stem.with_suffix('.csv')}, .png, .pdf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
