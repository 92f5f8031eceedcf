"""Folder-per-class sources: files in index order, the listing's digest for cache keys, and a
threaded one-time decode."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from dsr.data.core import DataError


def natural_key(path: Path) -> list:
    """Sort cifar10_cat_2 before cifar10_cat_10 (file index order, as the official split)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def class_files(name: str, split_dir: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    """{class: files} of a folder-per-class layout, classes and files in sorted order."""
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(
            f"{name}: no class folders in {split_dir}; expected {split_dir}/<class>/ folders of "
            f"{'/'.join(suffixes)} files"
        )
    out = {}
    for c in classes:
        files = [p for p in (split_dir / c).iterdir() if p.suffix.lower() in suffixes]
        if not files:
            raise DataError(
                f"{name}: class folder {split_dir / c} holds no {'/'.join(suffixes)} files; "
                f"remove it or restore its files"
            )
        out[c] = sorted(files, key=natural_key)
    return out


def listing_digest(files: dict[str, list[Path]], base: Path) -> str:
    names = "\n".join(str(p.relative_to(base)) for fs in files.values() for p in fs)
    return hashlib.sha1(names.encode()).hexdigest()


def map_threads(fn: Callable, items: list) -> list:
    # decoders release the GIL (PIL, numpy), so threads parallelise the one-time decode
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(fn, items))
