"""CIFAR-10 and CIFAR-100: torchvision's python batches (md5-checked, downloadable) or an
ImageFolder of 32 x 32 images (root/train/<class>/*, root/test/<class>/*), cached as uint8."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dsr.data.cache import cached
from dsr.data.core import DataError, DataInfo, Dataset, LoadOptions, builtin, one_line, where
from dsr.data.files import class_files, listing_digest, map_threads

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")

# Per-channel mean/std of the official DSR code (cifar/main_single_gpu.py) and torchvision.
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
CIFAR100_STATS = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))


def _decode_image(path: Path, name: str) -> np.ndarray:
    """One image file as uint8 [H, W, 3]."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(
            f"{name}: cannot decode image {path} ({one_line(err)}); re-extract the dataset or "
            f"delete the file"
        ) from None


def _read_cifar_folder(name: str, root: Path, num_classes: int) -> tuple[str, Callable[[], dict]]:
    """ImageFolder root/train/<class>/*, root/test/<class>/* (classes sorted = label order)."""
    files = {s: class_files(name, root / s, IMAGE_SUFFIXES) for s in ("train", "test")}
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
            x = torch.from_numpy(np.stack(map_threads(decode, paths)))  # [N, 32, 32, 3]
            out[f"{split}_x"] = x.permute(0, 3, 1, 2).contiguous()  # [N, 3, 32, 32]
            out[f"{split}_y"] = torch.tensor(labels, dtype=torch.int64)
        return out

    every = {f"{s}/{c}": fs for s, by_class in files.items() for c, fs in by_class.items()}
    return listing_digest(every, root), build


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
                f"torchvision's md5 check ({one_line(err)}); pass --set download=true to "
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
    def load_cifar(root: Path, opt: LoadOptions) -> Dataset:
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
            source=where(source),
            preprocessing="normalise (official mean/std), crop32 pad4, flip",
        )
        return Dataset(info, splits, scale=1 / 255, mean=stats[0], std=stats[1], pad=4, flip=True)

    return load_cifar


CIFAR10 = builtin("cifar10", _load_cifar("cifar10", 10, CIFAR10_STATS))
CIFAR100 = builtin("cifar100", _load_cifar("cifar100", 100, CIFAR100_STATS))
