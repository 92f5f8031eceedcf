"""The real CIFAR-10 JPEG copy that benchmarks and slow tests read: the `../shared/data` folder
beside the repository, extracted once into data/cifar10/ (where config/reduced.yaml reads it);
and the `python -m dsr.run` options of the benches that train on it."""

from __future__ import annotations

import argparse
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from dsr import REPO_ROOT
from dsr.data import DataError
from dsr.data.core import one_line


def shared_data_root() -> Path | None:
    """The real-data folder `../shared/data` beside the repository, if present."""
    path = REPO_ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


def ensure_cifar10_jpeg(dest: Path) -> Path:
    """Extract ../shared/data/cifar10-jpeg.tar.gz once into dest (train/ and test/ inside)."""
    dest = Path(dest)
    if (dest / "train").is_dir() and (dest / "test").is_dir():
        return dest
    shared = shared_data_root()
    archive = shared / "cifar10-jpeg.tar.gz" if shared is not None else None
    if archive is None or not archive.is_file():
        raise DataError(
            f"cifar10: no JPEG archive at {REPO_ROOT.parent / 'shared' / 'data'}/"
            f"cifar10-jpeg.tar.gz; use the python batches instead (--set download=true)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)  # atomic: a concurrent or interrupted extraction leaves no half copy
    except OSError as err:
        if not ((dest / "train").is_dir() and (dest / "test").is_dir()):
            raise DataError(
                f"cifar10: cannot extract {archive} into {dest} ({one_line(err)}); delete {dest}"
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def real_cifar10() -> Path | None:
    """data/cifar10, extracted once from ../shared/data; None, after saying the bench is skipped,
    where that folder is absent."""
    if shared_data_root() is None:
        print("skipped: the real CIFAR-10 copy (../shared/data) is not present")
        return None
    return ensure_cifar10_jpeg(REPO_ROOT / "data" / "cifar10")


def add_run_options(p: argparse.ArgumentParser, time_steps_flag: str, subset: int) -> None:
    """The options of a bench that trains on the real copy and `run_argv` passes on."""
    p.add_argument("--method", default="dsr-if")
    p.add_argument("--arch", default="preact_resnet20")
    p.add_argument(time_steps_flag, dest="time_steps", metavar="T", type=int, default=5)
    p.add_argument("--subset", type=int, default=subset)
    p.add_argument("--batch-size", type=int, default=64)


def run_argv(args: argparse.Namespace, root: Path, *options: str, out: str | Path) -> list[str]:
    """`python -m dsr.run` arguments training on the class-balanced `args.subset` of the copy at
    `root`: add_run_options's, then `options`, then the bench's own `--set`s (`args.set`)."""
    return ["--method", args.method, "--dataset", "cifar10", "--arch", args.arch,
            "--time-steps", str(args.time_steps), *options, "--set", f"data_root={root}",
            "--set", f"train_subset={args.subset}", "--set", f"batch_size={args.batch_size}",
            "--set", "warmup_iters=50", *[a for kv in args.set for a in ("--set", kv)],
            "--out", str(out)]
