"""scikit-learn's 8 x 8 digits: 1,797 images, a stratified 80/20 split; no download.

The split is cached as tensors (dsr.data.cache, keyed by scikit-learn's version): a job that
finds the cache file does not import scikit-learn, 1.3 to 2.1 s of a digits job
(bench/startup.py)."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from dsr.data.cache import cached
from dsr.data.core import DataInfo, Dataset, LoadOptions, builtin

DIGITS_SPLIT_SEED = 0


def _split() -> dict[str, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)  # [1797, 1, 8, 8], 0..16
    y = torch.from_numpy(bunch.target.astype(np.int64))
    train, test = train_test_split(
        np.arange(len(y)), test_size=0.2, stratify=bunch.target, random_state=DIGITS_SPLIT_SEED
    )
    return {"x": x, "y": y, "train": torch.from_numpy(np.sort(train)),
            "test": torch.from_numpy(np.sort(test))}


def _load_digits(root: Path, opt: LoadOptions) -> Dataset:
    key = {"source": "sklearn", "version": version("scikit-learn"), "seed": DIGITS_SPLIT_SEED}
    content = cached("digits", key, opt.cache_dir, _split)
    x, y, train, test = (content[k] for k in ("x", "y", "train", "test"))
    pixels = x[train].float() / 16
    info = DataInfo(
        name="digits",
        num_classes=10,
        in_channels=1,
        image_size=8,
        sequence=False,
        frames=None,
        split=None,
        train_size=len(train),
        test_size=len(test),
        source="sklearn",
        # no augmentation: a +-1 px shift of an 8x8 digit costs ~30 points of accuracy in the
        # default 8-epoch budget (91% -> 60% for DSR-IF at T = 4)
        preprocessing="scale /16, normalise (train mean/std), no augmentation",
    )
    return Dataset(
        info,
        {"train": (x[train], y[train]), "test": (x[test], y[test])},
        scale=1 / 16,
        mean=(pixels.mean().item(),),
        std=(pixels.std().item(),),
        pad=0,
        flip=False,
    )


Digits = builtin("digits", _load_digits)
