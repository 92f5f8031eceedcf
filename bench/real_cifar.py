"""Real-data check: DSR on a class-balanced subset of the real CIFAR-10 copy, a few epochs.

    python -m bench.real_cifar [--method dsr-if] [--epochs 3] [--subset 10000] [--set v_th=1]

Runs the trainer CLI exactly as a user would, then prints per-epoch test accuracy and training
images per second. Needs the JPEG copy at ../shared/data (extracted once into data/cifar10/,
where config/reduced.yaml reads it); without it the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench.real_data import ensure_cifar10_jpeg, shared_data_root
from dsr import REPO_ROOT, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", default="dsr-if")
    p.add_argument("--arch", default="preact_resnet20")
    p.add_argument("--time-steps", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--subset", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    if shared_data_root() is None:
        print("skipped: the real CIFAR-10 copy (../shared/data) is not present")
        return 0
    root = ensure_cifar10_jpeg(REPO_ROOT / "data" / "cifar10")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metrics.json"
        cli = ["--method", args.method, "--dataset", "cifar10", "--arch", args.arch,
               "--time-steps", str(args.time_steps), "--epochs", str(args.epochs),
               "--set", f"data_root={root}", "--set", f"train_subset={args.subset}",
               "--set", f"batch_size={args.batch_size}", "--set", "warmup_iters=50",
               *[a for kv in args.set for a in ("--set", kv)], "--out", str(out)]
        print("python -m dsr.run " + " ".join(cli))
        rc = run.main(cli)
        if rc:
            return rc
        m = json.loads(out.read_text())
    acc = " / ".join(f"{100 * a:.1f}" for a in m["accuracy"]["per_epoch"])
    ips = [m["data"]["train_size"] / s for s in m["cost"]["seconds_per_epoch"]]
    print(f"{args.method} {args.arch} T={args.time_steps} subset={args.subset} "
          f"params={m['config']['params']}")
    print(f"test accuracy per epoch (%): {acc}")
    print(f"train images/s per epoch: {' / '.join(f'{v:.0f}' for v in ips)}")
    print(f"firing rate (total): {m['firing_rate']['total']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
