"""Real-data check: DSR on a class-balanced subset of the real CIFAR-10 copy, a few epochs.

    python -m bench.real_cifar [--method dsr-if] [--epochs 3] [--subset 10000] [--set v_th=1]

Runs the trainer CLI exactly as a user would, then prints per-epoch test accuracy and training
images per second. Needs the JPEG copy at ../shared/data (extracted once into data/cifar10/,
where config/reduced.yaml reads it); without it the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.real_data import add_run_options, real_cifar10, run_argv
from dsr import run
from dsr.harness.record import RunRecord


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_options(p, "--time-steps", subset=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    root = real_cifar10()
    if root is None:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metrics.json"
        cli = run_argv(args, root, "--epochs", str(args.epochs), out=out)
        print("python -m dsr.run " + " ".join(cli))
        rc = run.main(cli)
        if rc:
            return rc
        m = RunRecord.read(out)
    acc = " / ".join(f"{100 * a:.1f}" for a in m.accuracy.per_epoch)
    ips = [m.data.train_size / s for s in m.cost.seconds_per_epoch]
    print(f"{args.method} {args.arch} T={args.time_steps} subset={args.subset} "
          f"params={m.config['params']}")
    print(f"test accuracy per epoch (%): {acc}")
    print(f"train images/s per epoch: {' / '.join(f'{v:.0f}' for v in ips)}")
    print(f"firing rate (total): {m.firing_rate.total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
