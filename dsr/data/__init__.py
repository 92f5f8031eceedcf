"""Datasets behind one `batches` interface: digits, CIFAR-10/100, ImageNet, CIFAR10-DVS (supp. C.1).

Static images come out as x [B, C, H, W], event frames time-first as x [T, B, 2, 48, 48]; y [B].
Each source is decoded once into a uint8 (float16 for event frames) tensor cache file (`cache`);
batches are gathered, augmented (random crop of a zero-padded copy + flip, `augment`) and
normalised on `device`, from a torch.Generator seeded by (seed, epoch), so a resumed run replays
the same batches. `batch_size` is the global batch: rank r of `world_size` takes samples
[r::world_size] of it, with the augmentation drawn for the whole global batch, so the ranks' union
is the 1-process batch (`core`). Exception: ImageNet does not fit one in-memory cache; it streams
JPEGs through a DataLoader (`imagenet`).
One module per source (`digits`, `cifar`, `imagenet`, `dvs`), each a class registered in
dsr.datasets (plug-ins too): `load(root, LoadOptions)` returns a `Dataset`.
"""

from dsr.data.augment import random_crop, random_flip
from dsr.data.cache import cached
from dsr.data.cifar import CIFAR10_STATS, CIFAR100_STATS
from dsr.data.core import (
    DATASETS,
    DataError,
    DataInfo,
    Dataset,
    LoadOptions,
    check_splits,
    load,
)
from dsr.data.dvs import DVS_READERS, DVS_SENSOR, DVS_SIZE
from dsr.data.imagenet import IMAGENET_STATS

__all__ = [
    "CIFAR100_STATS",
    "CIFAR10_STATS",
    "DATASETS",
    "DVS_READERS",
    "DVS_SENSOR",
    "DVS_SIZE",
    "IMAGENET_STATS",
    "DataError",
    "DataInfo",
    "Dataset",
    "LoadOptions",
    "cached",
    "check_splits",
    "load",
    "random_crop",
    "random_flip",
]
