"""Datasets behind one `batches` interface: digits, CIFAR-10/100, ImageNet, CIFAR10-DVS (supp. C.1).

Static images come out as x [B, C, H, W], event frames time-first as x [T, B, 2, 48, 48]; y [B].
Each source is decoded once into a uint8 (float16 for event frames) tensor cache file; batches
are gathered, augmented (random crop of a zero-padded copy + flip) and normalised on `device`,
from a torch.Generator seeded by (seed, epoch), so a resumed run replays the same batches.
`batch_size` is the global batch: rank r of `world_size` takes samples [r::world_size] of it, with
the augmentation drawn for the whole global batch, so the ranks' union is the 1-process batch.
Exception: ImageNet does not fit one in-memory cache; it streams JPEGs through a DataLoader.
CIFAR10-DVS follows the official code (20 frames of equal event count, bilinear resize to 48,
pad-4 crop, no flip, raw counts), read and binned by tonic or by SpikingJelly (`dvs_reader`; the
two agree exactly); deviation: SpikingJelly 2.0's AEDAT reader orients frames as
x = 127 - y_raw, y = 127 - x_raw, the official (older SpikingJelly) reader as x = 127 - x_raw;
the tonic path decodes addresses the same way.
Each dataset is a class registered in dsr.datasets (plug-ins too): `load(root, LoadOptions)`
returns a `Dataset`.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dsr import REPO_ROOT
from dsr import datasets as registry
from dsr.config import DATASET_DEFAULTS

CACHE_FORMAT = 1  # bump when the cache content changes meaning
SUBSET_SEED = 0  # train_subset / test_subset draw the same images whatever the run seed
DIGITS_SPLIT_SEED = 0
DVS_SPLITS = ("first900", "last900")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")

# Per-channel mean/std of the official DSR code (cifar/main_single_gpu.py) and torchvision.
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
CIFAR100_STATS = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

DVS_SENSOR = 128  # CIFAR10-DVS events live on a 128 x 128 DVS
DVS_SIZE = 48


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


def _where(path: Path) -> str:
    """A data path as recorded in metrics.json: relative to the repository when inside it, so
    results committed with the repository name no machine's directories."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# ---- batching: a seeded plan of global batches, then whole-batch augmentation -----------------


def _generator(seed: int, epoch: int) -> torch.Generator:
    digest = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def _check_batching(split: str, batch_size: int, rank: int, world_size: int) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
    if batch_size < world_size:
        raise ValueError(f"global batch_size {batch_size} is smaller than world_size {world_size}")


def _global_batches(
    n: int, batch_size: int, shuffle: bool, drop_last: bool, gen: torch.Generator
) -> Iterator[Tensor]:
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def random_crop(x: Tensor, pad: int, dy: Tensor, dx: Tensor) -> Tensor:
    """Crop sample b of x [B, ..., H, W] at (dy[b], dx[b]) of its zero-padded copy (same size)."""
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    xp = F.pad(x.reshape(B, -1, H, W), (pad, pad, pad, pad))  # [B, K, H + 2p, W + 2p]
    K = xp.shape[1]
    rows = dy[:, None] + torch.arange(H, device=x.device)  # [B, H]
    cols = dx[:, None] + torch.arange(W, device=x.device)  # [B, W]
    xp = xp.gather(2, rows[:, None, :, None].expand(B, K, H, W + 2 * pad))
    xp = xp.gather(3, cols[:, None, None, :].expand(B, K, H, W))
    return xp.reshape(x.shape)


def random_flip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror sample b of x [B, ..., W] horizontally where flip[b]."""
    return torch.where(flip.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)


def _balanced_subset(y: Tensor, n: int, num_classes: int, name: str, split: str) -> Tensor:
    """Sorted indices of n samples of `split`, n // K per class (the remainder to the first
    classes), drawn with SUBSET_SEED so every run and method sees the same images."""
    field = f"{split}_subset"
    if not num_classes <= n <= len(y):
        raise DataError(
            f"{name}: {field}={n} must be between num_classes={num_classes} and the "
            f"{split}-set size {len(y)}; set {field} accordingly"
        )
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SUBSET_SEED))
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
        idx = _balanced_subset(y, n, self.info.num_classes, self.info.name, split)
        out = copy.copy(self)
        out.info = dataclasses.replace(self.info, **{f"{split}_size": n})
        out._splits = {**self._splits, split: (x[idx], y[idx])}
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
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """(x float32, y int64) batches; shuffle and augment default to split == "train"."""
        _check_batching(split, batch_size, rank, world_size)
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
    ) -> Iterator[tuple[Tensor, Tensor]]:
        x_all, y_all = self._tensors(split, device)
        a, b = self._affine(device)
        for idx in _global_batches(len(y_all), batch_size, shuffle, drop_last, gen):
            m = len(idx)
            # drawn for the global batch on every rank, so each rank's slice matches 1 process
            dy = dx = flip = None
            if augment and self._pad:
                dy = torch.randint(0, 2 * self._pad + 1, (m,), generator=gen)[mine].to(device)
                dx = torch.randint(0, 2 * self._pad + 1, (m,), generator=gen)[mine].to(device)
            if augment and self._flip:
                flip = (torch.rand(m, generator=gen) < 0.5)[mine].to(device)
            idx = idx[mine].to(device)
            x = x_all[idx]
            if dy is not None:
                x = random_crop(x, self._pad, dy, dx)
            if flip is not None:
                x = random_flip(x, flip)
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


# ---- the exception: ImageNet streams through a DataLoader --------------------------------------


class _SeededTransform(torch.utils.data.Dataset):
    """ImageFolder samples through a transform whose randomness is seeded per (epoch, sample)."""

    def __init__(self, folder, transform, base_seed: int | None):
        self.folder, self.transform, self.base_seed = folder, transform, base_seed

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        img, label = self.folder[i]
        if self.base_seed is None:
            return self.transform(img), label
        # torchvision's random transforms draw from the global RNG: fork it so a sample's crop
        # depends only on (seed, epoch, index), whatever the worker count or rank
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.base_seed + i)
            return self.transform(img), label


def _pil_rgb(path: str):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"imagenet: cannot decode image {path} ({_one_line(err)})") from None


class ImageFolderStream(Dataset):
    """ImageNet: JPEGs decoded every epoch by DataLoader workers (no in-memory cache fits)."""

    def __init__(self, info: DataInfo, folders: dict, workers: int):
        from torchvision import transforms as tv

        self.info, self._folders, self._workers = info, folders, workers
        self._subset: dict[str, Tensor] = {}  # split -> indices into its folder
        norm = [tv.ToTensor(), tv.Normalize(*IMAGENET_STATS)]
        self._train_tf = tv.Compose([tv.RandomResizedCrop(224), tv.RandomHorizontalFlip(), *norm])
        self._eval_tf = tv.Compose([tv.Resize(256), tv.CenterCrop(224), *norm])

    def split_size(self, split: str) -> int:
        if split in self._subset:
            return len(self._subset[split])
        return len(self._folders[split])

    def with_subset(self, split: str, n: int) -> ImageFolderStream:
        y = torch.tensor(self._folders[split].targets)
        out = copy.copy(self)
        out.info = dataclasses.replace(self.info, **{f"{split}_size": n})
        picked = _balanced_subset(y, n, self.info.num_classes, self.info.name, split)
        out._subset = {**self._subset, split: picked}
        return out

    def _iterate(self, split, batch_size, gen, shuffle, augment, device, mine, drop_last):
        base_seed = int(torch.randint(0, 2**62, (), generator=gen)) if augment else None
        data = _SeededTransform(
            self._folders[split], self._train_tf if augment else self._eval_tf, base_seed
        )
        index = self._subset.get(split)
        n = self.split_size(split)
        plan = [
            (idx if index is None else index[idx])[mine].tolist()
            for idx in _global_batches(n, batch_size, shuffle, drop_last, gen)
        ]
        loader = torch.utils.data.DataLoader(
            data, batch_sampler=plan, num_workers=self._workers, pin_memory=device.type == "cuda"
        )
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


# ---- the decoded-tensor cache ------------------------------------------------------------------


def cached(
    name: str, key: dict, cache_dir: Path, build: Callable[[], dict]
) -> dict[str, Tensor | list[str]]:
    """Load the cache file for `key`, or build it and write it atomically (temp + os.replace).

    key: everything the content depends on (source folder, file listing, settings); build: a
    function returning a dict of tensors (and lists of str). A plug-in dataset may use it too.
    """
    text = json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True)
    path = cache_dir / f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:16]}.pt"
    if path.exists():
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(content, dict) or content.get("key") != text:
                raise ValueError("unexpected content")
        except Exception as err:
            raise DataError(
                f"{name}: cache file {path} is corrupt or truncated ({_one_line(err)}); "
                f"delete it and rerun to rebuild it from the source"
            ) from None
        return content
    content = {**build(), "key": text}
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(content, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is as readable as the data
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return content


def _natural_key(path: Path) -> list:
    """Sort cifar10_cat_2 before cifar10_cat_10 (file index order, as the official split)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _class_files(name: str, split_dir: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
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
        out[c] = sorted(files, key=_natural_key)
    return out


def _listing_digest(files: dict[str, list[Path]], base: Path) -> str:
    names = "\n".join(str(p.relative_to(base)) for fs in files.values() for p in fs)
    return hashlib.sha1(names.encode()).hexdigest()


def _map_threads(fn: Callable, items: list) -> list:
    # decoders release the GIL (PIL, numpy), so threads parallelise the one-time decode
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(fn, items))


# ---- sources -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadOptions:
    """What a dataset's `load(root, options)` is given besides its root (a plugin may ignore
    what does not apply to it)."""

    download: bool  # fetch the data when it is missing
    cache_dir: Path  # where decoded tensors are cached (see `cached`)
    frames: int  # event datasets: frames per sample
    dvs_split: str  # cifar10_dvs: first900 | last900
    dvs_reader: str  # cifar10_dvs: tonic | spikingjelly
    workers: int  # streamed datasets: DataLoader processes


def _load_digits(root: Path | None, opt: LoadOptions) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)  # [1797, 1, 8, 8], 0..16
    y = torch.from_numpy(bunch.target.astype(np.int64))
    train, test = train_test_split(
        np.arange(len(y)), test_size=0.2, stratify=bunch.target, random_state=DIGITS_SPLIT_SEED
    )
    train, test = torch.from_numpy(np.sort(train)), torch.from_numpy(np.sort(test))
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


def _decode_image(path: Path, name: str) -> np.ndarray:
    """One image file as uint8 [H, W, 3]."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(
            f"{name}: cannot decode image {path} ({_one_line(err)}); re-extract the dataset or "
            f"delete the file"
        ) from None


def _read_cifar_folder(name: str, root: Path, num_classes: int) -> tuple[str, Callable[[], dict]]:
    """ImageFolder root/train/<class>/*, root/test/<class>/* (classes sorted = label order)."""
    files = {s: _class_files(name, root / s, IMAGE_SUFFIXES) for s in ("train", "test")}
    if list(files["train"]) != list(files["test"]) or len(files["train"]) != num_classes:
        raise DataError(
            f"{name}: {root}/train and {root}/test must hold the same {num_classes} class folders, "
            f"found {len(files['train'])} and {len(files['test'])}"
        )

    def decode(path: Path) -> np.ndarray:
        img = _decode_image(path, name)
        if img.shape != (32, 32, 3):
            raise DataError(f"{name}: image {path} is {img.shape[1]}x{img.shape[0]}, not 32x32")
        return img

    def build() -> dict:
        out: dict = {"classes": list(files["train"])}
        for split, by_class in files.items():
            paths = [p for fs in by_class.values() for p in fs]
            labels = [c for c, fs in enumerate(by_class.values()) for _ in fs]
            x = torch.from_numpy(np.stack(_map_threads(decode, paths)))  # [N, 32, 32, 3]
            out[f"{split}_x"] = x.permute(0, 3, 1, 2).contiguous()  # [N, 3, 32, 32]
            out[f"{split}_y"] = torch.tensor(labels, dtype=torch.int64)
        return out

    every = {f"{s}/{c}": fs for s, by_class in files.items() for c, fs in by_class.items()}
    return _listing_digest(every, root), build


def _read_cifar_batches(name: str, root: Path, download: bool) -> tuple[list, Callable[[], dict]]:
    """torchvision's python-batch reader (with its md5 checks and optional download)."""
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100

    def read(train: bool) -> datasets.CIFAR10:
        try:
            return cls(str(root), train=train, download=download)
        except Exception as err:  # torchvision: RuntimeError on md5 mismatch, URLError, ...
            raise DataError(
                f"{name}: python batches in {root / cls.base_folder} are missing or fail "
                f"torchvision's md5 check ({_one_line(err)}); pass --set download=true to "
                f"(re)download, or delete the folder"
            ) from None

    def build() -> dict:
        out: dict = {}
        for split in ("train", "test"):
            ds = read(split == "train")
            out[f"{split}_x"] = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
            out[f"{split}_y"] = torch.tensor(ds.targets, dtype=torch.int64)
            out["classes"] = list(ds.classes)
        return out

    folder = root / cls.base_folder
    if download and not folder.is_dir():
        read(True)  # download first, so the cache key sees the downloaded files
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files], build


def _load_cifar(name: str, num_classes: int, stats: tuple) -> Callable[..., Dataset]:
    def load_cifar(root: Path | None, opt: LoadOptions) -> Dataset:
        root = Path(root) if root is not None else REPO_ROOT / "data" / name
        base = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
        if (root / base).is_dir() or (opt.download and not (root / "train").is_dir()):
            source = root / base
            fingerprint, build = _read_cifar_batches(name, root, opt.download)
        elif (root / "train").is_dir() and (root / "test").is_dir():
            source = root
            fingerprint, build = _read_cifar_folder(name, root, num_classes)
        else:
            raise DataError(
                f"{name}: no data at {root}; expected {root}/{base}/ (torchvision python batches) "
                f"or {root}/train/<class>/*.png|jpg and {root}/test/<class>/* (ImageFolder); pass "
                f"--set download=true or set data_root"
            )
        key = {"source": str(source.resolve()), "files": fingerprint}
        content = cached(name, key, opt.cache_dir, build)
        splits = {s: (content[f"{s}_x"], content[f"{s}_y"]) for s in ("train", "test")}
        info = DataInfo(
            name=name,
            num_classes=len(content["classes"]),
            in_channels=3,
            image_size=32,
            sequence=False,
            frames=None,
            split=None,
            train_size=len(splits["train"][1]),
            test_size=len(splits["test"][1]),
            source=_where(source),
            preprocessing="normalise (official mean/std), crop32 pad4, flip",
        )
        return Dataset(info, splits, scale=1 / 255, mean=stats[0], std=stats[1], pad=4, flip=True)

    return load_cifar


def _load_imagenet(root: Path | None, opt: LoadOptions) -> Dataset:
    from torchvision import datasets

    root = Path(root) if root is not None else REPO_ROOT / "data" / "imagenet"
    folders = {}
    for split, sub in (("train", "train"), ("test", "val")):
        try:
            folders[split] = datasets.ImageFolder(str(root / sub), loader=_pil_rgb)
        except (FileNotFoundError, OSError) as err:
            raise DataError(
                f"imagenet: cannot read {root / sub} ({_one_line(err)}); expected ImageFolder "
                f"{root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG; download ILSVRC2012 "
                f"from image-net.org, sort val into class folders, and set data_root"
            ) from None
    if folders["train"].classes != folders["test"].classes:
        raise DataError(f"imagenet: {root}/train and {root}/val hold different class folders")
    info = DataInfo(
        name="imagenet",
        num_classes=len(folders["train"].classes),
        in_channels=3,
        image_size=224,
        sequence=False,
        frames=None,
        split=None,
        train_size=len(folders["train"]),
        test_size=len(folders["test"]),
        source=_where(root),
        preprocessing="train: random resized crop 224, flip; eval: resize 256, centre crop 224; "
        "normalise (ImageNet mean/std); decoded every epoch by DataLoader workers",
    )
    return ImageFolderStream(info, folders, opt.workers)


class _NoEvents(ValueError):
    """An event file that decodes to zero events."""


class _Int16Overflow(ValueError):
    """A pixel of a frame got more events than tonic's int16 frames hold."""


def _sj_counts(path: Path, frames: int) -> np.ndarray:
    """SpikingJelly's reader and binning: [T, 2, 128, 128] event counts (the reference)."""
    from spikingjelly.datasets.cifar10_dvs import _load_origin_data
    from spikingjelly.datasets.utils import integrate_events_by_fixed_frames_number

    if path.suffix == ".npz":  # SpikingJelly's converted events_np/ (already oriented)
        with np.load(path) as f:
            events = {k: f[k] for k in ("t", "x", "y", "p")}
    else:
        events = _load_origin_data(path)
    if len(events["t"]) == 0:
        raise _NoEvents
    return integrate_events_by_fixed_frames_number(events, "number", frames, DVS_SENSOR, DVS_SENSOR)


def _tonic_events(path: Path) -> np.ndarray:
    """tonic's AEDAT 2.0 reader; addresses decoded (and oriented) as SpikingJelly's reader does."""
    import tonic.io
    from tonic.datasets import CIFAR10DVS

    if path.suffix == ".npz":  # SpikingJelly's converted events_np/: only the binning is tonic's
        with np.load(path) as f:
            t, x, y, p = (f[k] for k in ("t", "x", "y", "p"))
    else:
        with path.open("rb") as f:
            if not f.read(9).startswith(b"#!AER-DAT"):
                raise ValueError("no '#!AER-DAT2.0' header line")
        version, start, _ = tonic.io.read_aedat_header_from_file(str(path))
        if not 2 <= version < 3:
            raise ValueError(f"AEDAT version {version}, CIFAR10-DVS files are 2.0")
        size = path.stat().st_size
        with path.open("rb") as f:
            f.seek(start)
            if start == size - 1 and f.read() == b"\n":
                start = size  # header only: at end of file tonic steps back into its last line
        body = size - start
        if body % 8:  # tonic's np.fromfile would silently drop the partial event
            raise ValueError(f"{body} data bytes is not a whole number of 8-byte events: truncated")
        raw = tonic.io.get_aer_events_from_file(str(path), version, start)
        addr = raw["address"].astype(np.int64)
        x_raw, y_raw, p_raw = (addr >> 1) & 0x7F, (addr >> 8) & 0x7F, addr & 1
        t, x, y, p = raw["timeStamp"], 127 - y_raw, 127 - x_raw, 1 - p_raw
    if len(t) == 0:
        raise _NoEvents
    if len(x) and (min(x.min(), y.min()) < 0 or max(x.max(), y.max()) >= DVS_SENSOR):
        raise ValueError(f"event coordinates outside the {DVS_SENSOR} x {DVS_SENSOR} sensor")
    return tonic.io.make_structured_array(t, x, y, p, dtype=CIFAR10DVS.dtype)


def _tonic_counts(path: Path, frames: int) -> np.ndarray:
    """tonic's binning: [T, 2, 128, 128] event counts.

    tonic's n_event_bins slices N events into T bins of N // T and drops the last N mod T events;
    SpikingJelly (and the official code) add them to the last frame. We keep the official edges,
    frame i = events [i * (N // T), (i + 1) * (N // T)), the last frame running to N, by binning
    the remainder with tonic as one more frame and adding it to the last.
    """
    from tonic.transforms import ToFrame

    events = _tonic_events(path)
    sensor = (DVS_SENSOR, DVS_SENSOR, 2)  # (W, H, polarities); frames come out [T, P, H, W]
    counts = ToFrame(sensor_size=sensor, n_event_bins=frames)(events).astype(np.int64)
    rest = events[len(events) // frames * frames :]
    counts[-1] += ToFrame(sensor_size=sensor, n_event_bins=1)(rest)[0].astype(np.int64)
    if counts.sum() != len(events):  # tonic accumulates in int16: a wrapped pixel loses events
        raise _Int16Overflow
    return counts


DVS_READERS = {"tonic": _tonic_counts, "spikingjelly": _sj_counts}


def _dvs_frames(path: Path, frames: int, reader: str = "tonic") -> Tensor:
    """One event stream -> [T, 2, 48, 48] float16: T frames of equal event count, resized."""
    try:
        counts = DVS_READERS[reader](path, frames)  # [T, 2, 128, 128]
    except _NoEvents:
        raise DataError(
            f"cifar10_dvs: event file {path} holds no events; re-extract it or remove it"
        ) from None
    except _Int16Overflow:
        raise DataError(
            f"cifar10_dvs: event file {path} puts more than 32767 events on one pixel of one "
            f"frame, more than tonic's int16 frames hold; use more frames or "
            f"--set dvs_reader=spikingjelly"
        ) from None
    except Exception as err:  # a truncated or foreign file: odd word count, bad coordinates, ...
        raise DataError(
            f"cifar10_dvs: cannot read event file {path} with the {reader} reader "
            f"({_one_line(err)}); re-extract it"
        ) from None
    x = torch.from_numpy(counts).float()
    # bilinear without antialiasing, as transforms.Resize on tensors in the official code
    x = F.interpolate(x, size=(DVS_SIZE, DVS_SIZE), mode="bilinear", align_corners=False)
    return x.half()


def _dvs_source(root: Path) -> tuple[str, Path, tuple[str, ...]] | None:
    """(layout, folder of class folders, suffixes), preferring already-converted data."""
    candidates = [
        ("events_np", root / "events_np", (".npz",)),
        ("aedat", root / "extract", (".aedat",)),
        ("aedat", root, (".aedat",)),
        ("zip", root / "download", (".zip",)),
    ]
    for layout, folder, suffixes in candidates:
        pattern = "*.zip" if layout == "zip" else f"*/*{suffixes[0]}"
        if folder.is_dir() and next(folder.glob(pattern), None) is not None:
            return layout, folder, suffixes
    return None


def _dvs_split(y: Tensor, pos: Tensor, dvs_split: str) -> Tensor:
    """True where a sample is in the test split: per class the last (first900) or first
    (last900) tenth by file index, i.e. files 900-999 or 0-99 of 1,000."""
    n = torch.bincount(y)[y]
    n_test = torch.clamp(torch.round(n / 10), min=1)
    return pos >= n - n_test if dvs_split == "first900" else pos < n_test


def _decode_dvs(files: dict[str, list[Path]], frames: int, reader: str) -> dict:
    paths = [p for fs in files.values() for p in fs]
    x = torch.empty(len(paths), frames, 2, DVS_SIZE, DVS_SIZE, dtype=torch.float16)

    def fill(i: int) -> None:
        x[i] = _dvs_frames(paths[i], frames, reader)

    _map_threads(fill, list(range(len(paths))))
    return {
        "classes": list(files),
        "x": x,  # [N, T, 2, 48, 48]
        "y": torch.tensor([c for c, fs in enumerate(files.values()) for _ in fs]),
        "pos": torch.tensor([i for fs in files.values() for i in range(len(fs))]),  # file index
    }


def _load_cifar10_dvs(root: Path | None, opt: LoadOptions) -> Dataset:
    root = Path(root) if root is not None else REPO_ROOT / "data" / "cifar10_dvs"
    if opt.dvs_split not in DVS_SPLITS:
        raise DataError(
            f"cifar10_dvs: dvs_split must be one of {DVS_SPLITS}, not {opt.dvs_split!r}"
        )
    if opt.dvs_reader not in DVS_READERS:
        raise DataError(
            f"cifar10_dvs: dvs_reader must be one of {', '.join(DVS_READERS)}, not "
            f"{opt.dvs_reader!r}"
        )
    found = _dvs_source(root)
    if found is None and opt.download:
        from spikingjelly.datasets.cifar10_dvs import CIFAR10DVS

        try:  # downloads to root/download, extracts, converts to root/events_np
            CIFAR10DVS(str(root), data_type="event")
        except Exception as err:
            raise DataError(f"cifar10_dvs: download to {root} failed ({_one_line(err)})") from None
        found = _dvs_source(root)
    if found is None:
        raise DataError(
            f"cifar10_dvs: no event files at {root}; expected {root}/extract/<class>/*.aedat, "
            f"{root}/<class>/*.aedat, {root}/events_np/<class>/*.npz or {root}/download/<class>.zip"
            f" (figshare CIFAR10-DVS); pass --set download=true or set data_root"
        )
    layout, folder, suffixes = found
    if layout == "zip":
        zips = sorted(folder.glob("*.zip"))
        fingerprint = [[p.name, p.stat().st_size] for p in zips]
    else:
        files = _class_files("cifar10_dvs", folder, suffixes)
        fingerprint = _listing_digest(files, folder)

    def build() -> dict:
        if layout != "zip":
            return _decode_dvs(files, opt.frames, opt.dvs_reader)
        opt.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=opt.cache_dir, prefix="cifar10_dvs-unzip-") as tmp:
            by_class = {}
            for z in zips:  # <class>.zip holds <class>/*.aedat (or the files at its top)
                try:
                    with zipfile.ZipFile(z) as archive:
                        archive.extractall(Path(tmp) / z.stem)
                except (zipfile.BadZipFile, OSError) as err:
                    raise DataError(
                        f"cifar10_dvs: cannot extract {z} ({_one_line(err)}); download it again"
                    ) from None
                aedat = sorted((Path(tmp) / z.stem).rglob("*.aedat"), key=_natural_key)
                if not aedat:
                    raise DataError(f"cifar10_dvs: {z} holds no .aedat files; download it again")
                by_class[z.stem] = aedat
            return _decode_dvs(by_class, opt.frames, opt.dvs_reader)

    key = {"source": str(folder.resolve()), "files": fingerprint, "frames": opt.frames}
    if opt.dvs_reader != "spikingjelly":  # one cache file per reader; SpikingJelly's keeps its
        key["reader"] = opt.dvs_reader  # earlier key, so caches built before stay valid
    content = cached("cifar10_dvs", key, opt.cache_dir, build)
    test = _dvs_split(content["y"], content["pos"], opt.dvs_split)
    x, y = content["x"], content["y"]
    splits = {"train": (x[~test], y[~test]), "test": (x[test], y[test])}
    info = DataInfo(
        name="cifar10_dvs",
        num_classes=len(content["classes"]),
        in_channels=2,
        image_size=DVS_SIZE,
        sequence=True,
        frames=opt.frames,
        split=opt.dvs_split,
        train_size=int((~test).sum()),
        test_size=int(test.sum()),
        source=_where(folder),
        preprocessing=f"{opt.dvs_reader} reader, {opt.frames} frames split_by=number, resize 48 "
        "bilinear, crop48 pad4, "
        "no flip, raw event counts (no normalisation)",
    )
    return Dataset(info, splits, scale=1.0, mean=(0.0, 0.0), std=(1.0, 1.0), pad=4, flip=False)


def _builtin(key: str, loader: Callable[[Path | None, LoadOptions], Dataset]) -> type:
    """A registered dataset class (dsr.datasets.DATASETS) around one of the loaders above."""
    return type(key, (), {"key": key, "defaults": DATASET_DEFAULTS[key],
                          "load": staticmethod(loader)})


Digits = _builtin("digits", _load_digits)
CIFAR10 = _builtin("cifar10", _load_cifar("cifar10", 10, CIFAR10_STATS))
CIFAR100 = _builtin("cifar100", _load_cifar("cifar100", 100, CIFAR100_STATS))
ImageNet = _builtin("imagenet", _load_imagenet)
CIFAR10DVS = _builtin("cifar10_dvs", _load_cifar10_dvs)
DATASETS = tuple(registry.DATASETS)


def load(
    name: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    cache_dir: str | Path | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    dvs_split: str = "first900",
    dvs_reader: str = "tonic",
    frames: int = 20,
    workers: int | None = None,
    plugins: dict[str, str] | None = None,
) -> Dataset:
    """Load a registered dataset, built-in or in `plugins` ({key: "module:Class"}, see
    dsr.datasets), decoding it into the cache on first use.

    root defaults to <repo>/data/<name>; cache_dir to $DSR_CACHE_DIR, else <repo>/.cache/data.
    train_subset=N keeps a class-balanced, seed-independent N-image training subset, test_subset=M
    an M-image test subset (the same M images for every run: reduced-scale runs that cannot afford
    the full test set).
    dvs_split, dvs_reader and frames apply to cifar10_dvs, workers (DataLoader processes, default
    min(8, cpus)) to imagenet.
    """
    try:
        cls = registry.get(name, plugins)
    except registry.UnknownDataset as err:
        raise DataError(str(err)) from None
    if frames < 1:
        raise DataError(f"{name}: frames must be a positive integer, got {frames}")
    opt = LoadOptions(
        download=download,
        cache_dir=Path(cache_dir or os.environ.get("DSR_CACHE_DIR") or REPO_ROOT / ".cache/data"),
        frames=frames,
        dvs_split=dvs_split,
        dvs_reader=dvs_reader,
        workers=min(8, os.cpu_count() or 1) if workers is None else workers,
    )
    data = cls().load(Path(root) if root is not None else None, opt)
    if not isinstance(data, Dataset):
        raise DataError(f"{name}: {cls.__module__}.{cls.__qualname__}.load returned "
                        f"{type(data).__name__}, not a dsr.data.Dataset")
    for split, n in (("train", train_subset), ("test", test_subset)):
        if n is not None:
            data = data.with_subset(split, n)
    return data


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
                f"cifar10: cannot extract {archive} into {dest} ({_one_line(err)}); delete {dest}"
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
