"""ImageNet (ILSVRC2012), the one source without an in-memory cache: an ImageFolder whose JPEGs
DataLoader workers decode every epoch, with torchvision's random resized crop seeded per sample."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from dsr.data.core import (
    DataError,
    DataInfo,
    Dataset,
    LoadOptions,
    balanced_subset,
    builtin,
    global_batches,
    one_line,
    where,
)

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


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
        raise DataError(f"imagenet: cannot decode image {path} ({one_line(err)})") from None


class ImageFolderStream(Dataset):
    """ImageNet: JPEGs decoded every epoch by DataLoader workers (no in-memory cache fits)."""

    def __init__(self, info: DataInfo, folders: dict, workers: int):
        from torchvision import transforms as tv

        self.info, self._folders, self._workers = info, folders, workers
        self._subset: dict[str, Tensor] = {}  # split -> indices into its folder
        norm = [tv.ToTensor(), tv.Normalize(*IMAGENET_STATS)]
        self._train_tf = tv.Compose([tv.RandomResizedCrop(224), tv.RandomHorizontalFlip(), *norm])
        self._eval_tf = tv.Compose([tv.Resize(256), tv.CenterCrop(224), *norm])

    def has_split(self, split: str) -> bool:
        return split in self._folders

    def with_validation(self, fraction: float) -> ImageFolderStream:
        raise DataError(f"imagenet: val_fraction={fraction} is not supported for the streamed "
                        "ImageNet folders (no held-out split is built from them); leave "
                        "val_fraction at 0 or tune on an in-memory dataset")

    def split_size(self, split: str) -> int:
        if split in self._subset:
            return len(self._subset[split])
        return len(self._folders[split])

    def labels(self, split: str) -> Tensor:
        y = torch.tensor(self._folders[split].targets)
        return y[self._subset[split]] if split in self._subset else y

    def with_subset(self, split: str, n: int) -> ImageFolderStream:
        y = torch.tensor(self._folders[split].targets)
        out = copy.copy(self)
        out.info = dataclasses.replace(self.info, **{f"{split}_size": n})
        picked = balanced_subset(y, n, self.info.num_classes, self.info.name, split)
        out._subset = {**self._subset, split: picked}
        return out

    def _iterate(self, split, batch_size, gen, shuffle, augment, device, mine, drop_last,
                 start=0):
        base_seed = int(torch.randint(0, 2**62, (), generator=gen)) if augment else None
        data = _SeededTransform(
            self._folders[split], self._train_tf if augment else self._eval_tf, base_seed
        )
        index = self._subset.get(split)
        n = self.split_size(split)
        plan = [
            (idx if index is None else index[idx])[mine].tolist()
            for idx in global_batches(n, batch_size, shuffle, drop_last, gen)
        ][start:]  # each sample's augmentation is seeded by its index: skipping draws nothing
        loader = torch.utils.data.DataLoader(
            data, batch_sampler=plan, num_workers=self._workers, pin_memory=device.type == "cuda"
        )
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _load_imagenet(root: Path, opt: LoadOptions) -> Dataset:
    from torchvision import datasets

    folders = {}
    for split, sub in (("train", "train"), ("test", "val")):
        try:
            folders[split] = datasets.ImageFolder(str(root / sub), loader=_pil_rgb)
        except (FileNotFoundError, OSError) as err:
            raise DataError(
                f"imagenet: cannot read {root / sub} ({one_line(err)}); expected ImageFolder "
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
        source=where(root),
        preprocessing="train: random resized crop 224, flip; eval: resize 256, centre crop 224; "
        "normalise (ImageNet mean/std); decoded every epoch by DataLoader workers",
    )
    return ImageFolderStream(info, folders, opt.workers)


ImageNet = builtin("imagenet", _load_imagenet)
