"""Training loss per step, exact vs fast (vs approx) mode, on real CIFAR-10.

    python -m bench.learning_curve [--T 5] [--subset 4000] [--modes exact fast approx]
        [--set v_th=1] [--out bench/results]

One epoch of DSR-IF (PreAct-ResNet-20 by default) on a class-balanced subset of the CIFAR-10
JPEG copy, the same seed, data order and initial weights in every mode, through the real
harness (`dsr.train.Trainer.train_epoch`); the method's loss is wrapped to record each step's
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

import torch

from bench.real_data import ensure_cifar10_jpeg, shared_data_root
from dsr import REPO_ROOT, run
from dsr import data as dsr_data
from dsr.train import Dist, Trainer, make_optimizer, make_schedule


def losses_per_step(argv: list[str]) -> tuple[list[float], float]:
    """One epoch of `python -m dsr.run argv` through the harness: each step's loss, seconds."""
    cfg, method_cls = run.resolve(run.parser().parse_args(argv))
    t = cfg.train
    torch.manual_seed(cfg.seed)
    data = dsr_data.load(cfg.dataset, t.data_root, train_subset=t.train_subset)
    method = method_cls(cfg)
    model = method.build(cfg.arch, data.info)
    trainer = Trainer(cfg, method, data, torch.device("cpu"), Dist(), log=lambda *a: None)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, t, data, Dist(), epochs=1)
    losses: list[float] = []
    loss = method.loss

    def recorded(outputs, y):
        value = loss(outputs, y)
        losses.append(value.item())
        return value

    method.loss = recorded
    t0 = time.perf_counter()
    trainer.train_epoch(trainer.training_module(model, method), method, opt, sched, 0)
    return losses, time.perf_counter() - t0


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
    p.add_argument("--method", default="dsr-if")
    p.add_argument("--arch", default="preact_resnet20")
    p.add_argument("--T", type=int, default=5)
    p.add_argument("--subset", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", nargs="+", choices=("exact", "fast", "approx"),
                   default=["exact", "fast", "approx"])
    p.add_argument("--set", action="append", default=["v_th=1"], metavar="KEY=VALUE",
                   help="method/harness overrides (default v_th=1, the reduced grid's)")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args(argv)
    if "exact" not in args.modes:
        args.modes.insert(0, "exact")  # the reference every other curve is compared with
    if shared_data_root() is None:
        print("skipped: the real CIFAR-10 copy (../shared/data) is not present")
        return 0
    root = ensure_cifar10_jpeg(REPO_ROOT / "data" / "cifar10")
    curves, seconds = {}, {}
    for mode in args.modes:
        cli = ["--method", args.method, "--dataset", "cifar10", "--arch", args.arch,
               "--time-steps", str(args.T), "--seed", str(args.seed), "--mode", mode,
               "--epochs", "1", "--device", "cpu", "--set", f"data_root={root}",
               "--set", f"train_subset={args.subset}", "--set", f"batch_size={args.batch_size}",
               "--set", "warmup_iters=50", *[a for kv in args.set for a in ("--set", kv)],
               "--out", "unused.json"]
        print("python -m dsr.run " + " ".join(cli), flush=True)
        curves[mode], seconds[mode] = losses_per_step(cli)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "learning_curve_cifar10"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", *args.modes])
        for i, row in enumerate(zip(*curves.values(), strict=True), 1):
            w.writerow([i, *(f"{v:.6f}" for v in row)])
    title = (f"{args.method}, {args.arch}, T = {args.T}, CIFAR-10 "
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
