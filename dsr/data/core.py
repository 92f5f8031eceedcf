"""The one interface every dataset goes through: `load` -> `Dataset` (batches, subsets, shards).

A dataset class (registered in dsr.datasets) returns a `Dataset` from `load(root, LoadOptions)`;
this module batches it: a plan of global batches from a torch.Generator seeded by (seed, epoch),
rank r of `world_size` taking samples [r::world_size] of each, augmented (dsr.data.augment) and
normalised on `device`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dsr import REPO_ROOT
from dsr import datasets as registry
from dsr.config import DATASET_DEFAULTS
from dsr.data.augment import crop_and_flip, draw

SUBSET_SEED = 0  # train_subset / test_subset draw the same images whatever the run seed
VAL_SEED = 1  # the validation split likewise, drawn independently of the subsets
SPLITS = ("train", "val", "test")
DATASETS = tuple(registry.DATASETS)


class DataError(ValueError):
    """Missing or malformed data; the message is one line: dataset, path, expected layout, fix."""


@dataclass(frozen=True)
class DataInfo:
    """What was loaded, as recorded in metrics.json."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    sequence: bool  # True: event frames, x is [T, B, C, H, W]
    frames: int | None
    split: str | None  # the CIFAR10-DVS train/test split, part of a result's identity
    train_size: int
    test_size: int
    source: str  # the directory read, or "sklearn"
    preprocessing: str


@dataclass(frozen=True)
class NoParams:
    """The settings of a dataset that has none (a dataset class declares its own `Params`)."""


@dataclass(frozen=True)
class LoadOptions:
    """What a dataset's `load(root, options)` is given besides its root."""

    download: bool  # fetch the data when it is missing
    cache_dir: Path  # where decoded tensors are cached (see `cached`)
    params: Any  # the dataset class's own `Params` (e.g. CIFAR10-DVS's frames), resolved
    workers: int  # streamed datasets: DataLoader processes



def where(path: Path) -> str:
    """A data path as recorded in metrics.json: relative to the repository when inside it, so
    results committed with the repository name no machine's directories."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# ---- batching: a seeded plan of global batches, then whole-batch augmentation -----------------


def _generator(seed: int, epoch: int) -> torch.Generator:
    digest = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def _check_batching(split: str, batch_size: int, rank: int, world_size: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
    if batch_size < world_size:
        raise ValueError(f"global batch_size {batch_size} is smaller than world_size {world_size}")


def global_batches(
    n: int, batch_size: int, shuffle: bool, drop_last: bool, gen: torch.Generator
) -> Iterator[Tensor]:
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def balanced_subset(y: Tensor, n: int, num_classes: int, name: str, split: str,
                    field: str | None = None, seed: int = SUBSET_SEED) -> Tensor:
    """Sorted indices of n samples of `split`, n // K per class (the remainder to the first
    classes), drawn with `seed` so every run and method sees the same images; `field` names
    the setting that asked for them in errors (default `{split}_subset`)."""
    field = field or f"{split}_subset"
    if not num_classes <= n <= len(y):
        raise DataError(
            f"{name}: {field}={n} must be between num_classes={num_classes} and the "
            f"{split}-set size {len(y)}; set {field} accordingly"
        )
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    y_perm = y[perm]
    picked = []
    for c in range(num_classes):
        quota = n // num_classes + (c < n % num_classes)
        idx = perm[y_perm == c][:quota]
        if len(idx) < quota:
            raise DataError(
                f"{name}: {field}={n} needs {quota} images of class {c}, the {split} set "
                f"has {len(idx)}; use a smaller {field}"
            )
        picked.append(idx)
    return torch.cat(picked).sort().values


class Dataset:
    """A dataset with both splits in memory as stored tensors (uint8 images, float16 frames).

    x is stored [N, C, H, W] or [N, T, C, H, W]; a batch is augmented in stored units (so crop
    padding is black / zero events, as torchvision pads before ToTensor), then scaled to float32,
    normalised per channel, and for event frames made time-first.
    """

    def __init__(
        self,
        info: DataInfo,
        splits: dict[str, tuple[Tensor, Tensor]],
        *,
        scale: float,
        mean: Sequence[float],
        std: Sequence[float],
        pad: int,
        flip: bool,
    ):
        self.info = info
        self._splits = splits
        self._scale, self._mean, self._std = scale, tuple(mean), tuple(std)
        self._pad, self._flip = pad, flip
        self._on_device: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}

    def split_size(self, split: str) -> int:
        return len(self._splits[split][1])

    def has_split(self, split: str) -> bool:
        return split in self._splits

    def labels(self, split: str) -> Tensor:
        """Every label of `split`, in stored order."""
        return self._splits[split][1]

    def num_batches(
        self, split: str, batch_size: int, world_size: int = 1, drop_last: bool = False
    ) -> int:
        """Global steps per epoch; the same on every rank (rank batches hold batch_size/world)."""
        _check_batching(split, batch_size, 0, world_size)
        n = self.split_size(split)
        return n // batch_size if drop_last else -(-n // batch_size)

    def with_subset(self, split: str, n: int) -> Dataset:
        """A copy whose `split` is a class-balanced, seed-independent subset of n samples."""
        x, y = self._splits[split]
        idx = balanced_subset(y, n, self.info.num_classes, self.info.name, split)
        out = copy.copy(self)
        out.info = dataclasses.replace(self.info, **{f"{split}_size": n})
        out._splits = {**self._splits, split: (x[idx], y[idx])}
        out._on_device = {}
        return out

    def with_validation(self, fraction: float) -> Dataset:
        """A copy whose training split gives round(fraction * size) samples, class-balanced and
        the same for every run, seed and method (VAL_SEED), to a "val" split."""
        x, y = self._splits["train"]
        n = round(fraction * len(y))
        if n >= len(y) - self.info.num_classes:
            raise DataError(f"{self.info.name}: val_fraction={fraction} holds out {n} of "
                            f"{len(y)} training samples and leaves too few to train on; use a "
                            "smaller val_fraction")
        held = balanced_subset(y, n, self.info.num_classes, self.info.name, "train",
                               field=f"round(val_fraction * {len(y)})", seed=VAL_SEED)
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[held] = False
        out = copy.copy(self)
        out.info = dataclasses.replace(self.info, train_size=len(y) - n)
        out._splits = {**self._splits, "train": (x[keep], y[keep]), "val": (x[held], y[held])}
        out._on_device = {}
        return out

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        epoch: int = 0,
        seed: int = 0,
        shuffle: bool | None = None,
        augment: bool | None = None,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        start: int = 0,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """(x float32, y int64) batches; shuffle and augment default to split == "train".
        `start` skips the epoch's first global batches (a run resumed mid-epoch), yielding the
        rest exactly as an uninterrupted epoch would."""
        _check_batching(split, batch_size, rank, world_size)
        if not self.has_split(split):
            raise ValueError(f"split {split!r} is not held out here; set val_fraction > 0")
        train = split == "train"
        shuffle = train if shuffle is None else shuffle
        augment = train if augment is None else augment
        return self._iterate(
            split,
            batch_size,
            _generator(seed, epoch),
            shuffle,
            augment,
            torch.device(device),
            slice(rank, None, world_size),
            drop_last,
            start,
        )

    def _iterate(
        self,
        split: str,
        batch_size: int,
        gen: torch.Generator,
        shuffle: bool,
        augment: bool,
        device: torch.device,
        mine: slice,
        drop_last: bool,
        start: int = 0,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        x_all, y_all = self._tensors(split, device)
        a, b = self._affine(device)
        for i, idx in enumerate(global_batches(len(y_all), batch_size, shuffle, drop_last, gen)):
            m = len(idx)
            if i < start:  # skipped, but its augmentation drawn: the generator stays in step
                if augment:
                    draw(gen, m, self._pad, self._flip)
                continue
            idx = idx[mine].to(device)
            x = x_all[idx]
            if augment:
                x = crop_and_flip(x, gen, m, mine, self._pad, self._flip)
            x = x.float().mul_(a).sub_(b)
            if self.info.sequence:
                x = x.transpose(0, 1).contiguous()  # [T, B, C, H, W]
            yield x, y_all[idx]

    def _tensors(self, split: str, device: torch.device) -> tuple[Tensor, Tensor]:
        if device.type == "cpu":
            return self._splits[split]
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = (split, str(device))
        if key not in self._on_device:  # the whole split moves once; batches index it there
            x, y = self._splits[split]
            self._on_device[key] = (x.to(device), y.to(device))
        return self._on_device[key]

    def _affine(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """(a, b) with x_norm = x_stored * a - b, shaped [C, 1, 1]."""
        mean = torch.tensor(self._mean, device=device).view(-1, 1, 1)
        std = torch.tensor(self._std, device=device).view(-1, 1, 1)
        return self._scale / std, mean / std


# ---- loading: the registered class, then subsets ----------------------------------------------


def builtin(key: str, loader: Callable[[Path, LoadOptions], Dataset],
            params: type = NoParams) -> type:
    """A registered dataset class (dsr.datasets.DATASETS) around a loader of this package, with
    its settings `params`; the loader gets the root folder: data_root when set, else the
    default <repo>/data/<key>."""

    def load(root: str | Path | None, options: LoadOptions) -> Dataset:
        return loader(Path(root) if root is not None else REPO_ROOT / "data" / key, options)

    return type(key, (), {"key": key, "defaults": DATASET_DEFAULTS[key], "Params": params,
                          "load": staticmethod(load)})


def load(
    name: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    cache_dir: str | Path | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    params: dict[str, Any] | None = None,
    workers: int | None = None,
    plugins: dict[str, str] | None = None,
) -> Dataset:
    """Load a registered dataset, built-in or in `plugins` ({key: "module:Class"}, see
    dsr.datasets), decoding it into the cache on first use.

    root defaults to <repo>/data/<name>; cache_dir to $DSR_CACHE_DIR, else <repo>/.cache/data.
    train_subset=N keeps a class-balanced, seed-independent N-image training subset, test_subset=M
    an M-image test subset (the same M images for every run: reduced-scale runs that cannot afford
    the full test set).
    `params` sets fields of the dataset class's `Params` (e.g. cifar10_dvs's frames, dvs_split,
    dvs_reader; a run's resolved `data_params`); workers (DataLoader processes, default
    min(8, cpus)) applies to imagenet.
    """
    try:
        cls = registry.get(name, plugins)
        settings = registry.params(cls)(**(params or {}))
    except (registry.UnknownDataset, ValueError, TypeError) as err:  # ConfigError: a ValueError
        raise DataError(f"{name}: {one_line(err)}") from None
    opt = LoadOptions(
        download=download,
        cache_dir=Path(cache_dir or os.environ.get("DSR_CACHE_DIR") or REPO_ROOT / ".cache/data"),
        params=settings,
        workers=min(8, os.cpu_count() or 1) if workers is None else workers,
    )
    data = cls().load(Path(root) if root is not None else None, opt)
    if not isinstance(data, Dataset):
        raise DataError(f"{name}: {cls.__module__}.{cls.__qualname__}.load returned "
                        f"{type(data).__name__}, not a dsr.data.Dataset")
    check_labels(data, name)
    for split, n in (("train", train_subset), ("test", test_subset)):
        if n is not None:
            data = data.with_subset(split, n)
    return data


def check_labels(data: Dataset, name: str) -> None:
    """Refuse labels that are not class indices in [0, num_classes): they fail at the first
    loss of a run, or (past the subset) silently drop a class. Checked on every load."""
    k = data.info.num_classes
    for split in ("train", "test"):
        y = data.labels(split)
        if len(y) == 0:
            continue
        if y.is_floating_point() or y.is_complex():
            raise DataError(f"{name}: {split} labels are {y.dtype}, expected integer class "
                            "indices; return them as a torch.long tensor")
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= k:
            raise DataError(f"{name}: {split} labels span {low}..{high}, outside 0..{k - 1} "
                            f"(num_classes={k}); fix the labels or the DataInfo's num_classes")


def check_splits(data: Dataset, name: str) -> None:
    """Refuse, before a run's first step, a dataset with an empty split (it would fail after
    the last epoch, with the whole run lost). The trainer calls it; `load` loads what the
    files hold."""
    for split in ("train", "test"):
        if data.split_size(split) == 0:
            raise DataError(f"{name}: the {split} split is empty; the dataset's load() must "
                            f"return samples in both splits")
