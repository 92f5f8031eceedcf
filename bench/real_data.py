"""The real CIFAR-10 JPEG copy that benchmarks and slow tests read: the `../shared/data` folder
beside the repository, extracted once into data/cifar10/ (where config/reduced.yaml reads it)."""

from __future__ import annotations

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
