"""Data layer: real on-disk formats written by the tests, batching determinism, DDP sharding,
the tensor cache, and one-line errors. The real CIFAR-10 JPEG copy is used only by a slow test."""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bench.real_data import ensure_cifar10_jpeg, shared_data_root
from dsr import REPO_ROOT, data
from dsr.data import DataError, DataInfo, Dataset, cifar, dvs

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def class_colour(c: int) -> tuple[int, int, int]:
    return (20 + 20 * c, 235 - 20 * c, 128)


def unnormalise(x: torch.Tensor, stats=data.CIFAR10_STATS) -> torch.Tensor:
    """[B, 3, H, W] normalised -> 0..255 pixel values."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in stats)
    return (x * std + mean) * 255


# ---- fixtures in the real on-disk formats ------------------------------------------------------


def write_cifar_folder(root: Path, per_class: dict[str, int], size: int = 32) -> Path:
    """ImageFolder of JPEGs: root/<split>/<class>/NNNN.jpg, one constant colour per class."""
    for split, n in per_class.items():
        for c, name in enumerate(CIFAR10_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                img = Image.new("RGB", (size, size), class_colour(c))
                img.save(folder / f"{i:04d}.jpg", quality=95)
    return root


@pytest.fixture
def cifar_folder(tmp_path: Path) -> Path:
    return write_cifar_folder(tmp_path / "cifar10-jpeg", {"train": 4, "test": 2})


def write_pickle(path: Path, obj: dict) -> None:
    # The real batches are Python 2 pickles whose str keys load as str under torchvision's
    # encoding="latin1" (as b"data" only under encoding="bytes"); str keys written here load
    # identically, with `data` a uint8 array [N, 3072] (channel-major rows of 32x32).
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10_batches(root: Path, n: int = 20) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(n)]
        write_pickle(folder / name, {"batch_label": name, "labels": labels, "data": images})
        written[name] = images
    write_pickle(
        folder / "batches.meta",
        {"num_cases_per_batch": n, "label_names": list(CIFAR10_CLASSES), "num_vis": 3072},
    )
    return written


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = [i % 100 for i in range(n)]
        write_pickle(
            folder / name,
            {
                "filenames": [f"{i}.png" for i in range(n)],
                "batch_label": name,
                "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine],
                "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            },
        )
    write_pickle(
        folder / "meta",
        {
            "fine_label_names": [f"class{i:02d}" for i in range(100)],
            "coarse_label_names": [f"super{i:02d}" for i in range(20)],
        },
    )


@pytest.fixture
def md5_free_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision checks the official files' md5 sums, which no fixture can match; accept any
    existing file. Everything else (pickle parsing, label keys, meta) stays torchvision's code."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


# CIFAR10-DVS: AEDAT 2.0 files (jAER), as in the figshare release: '#' header lines, then
# big-endian uint32 pairs (address, timestamp). SpikingJelly's reader takes x from address bits
# 1-7, y from bits 8-14, polarity from bit 0, and returns x = 127 - y_raw, y = 127 - x_raw,
# p = 1 - p_raw; frames are indexed [p, y, x].
DVS_CLASSES = ("airplane", "automobile", "bird")
DVS_FILES = 11  # indices 0..10: file 10 sorts last by index but before file 2 by name


def dvs_block(c: int, k: int) -> tuple[int, int]:
    """Top-left (row, col) on the 128 x 128 sensor of file k of class c's 4 x 4 event block."""
    return 8 + 40 * c, 20 + 8 * k


def write_aedat(path: Path, row: int, col: int, repeats: int = 4) -> None:
    """Events on a 4 x 4 block at (row, col): the first half ON (channel 0), then OFF."""
    words = []
    n = 16 * repeats
    for e in range(n):
        r, q = row + (e % 16) // 4, col + e % 4
        x_raw, y_raw, p_raw = 127 - r, 127 - q, int(e < n // 2)
        words += [(y_raw << 8) | (x_raw << 1) | p_raw, 1000 + 10 * e]
    header = b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n# tick 1 us\r\n"
    path.write_bytes(header + struct.pack(f">{len(words)}I", *words))


@pytest.fixture(scope="module")
def dvs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar10_dvs")
    for c, name in enumerate(DVS_CLASSES):
        (root / "extract" / name).mkdir(parents=True)
        for k in range(DVS_FILES):
            write_aedat(root / "extract" / name / f"cifar10_{name}_{k}.aedat", *dvs_block(c, k))
    return root


def to_frame_px(src: float) -> float:
    """Sensor coordinate -> 48 x 48 frame coordinate (bilinear, align_corners=False)."""
    return (src + 0.5) * data.DVS_SIZE / data.DVS_SENSOR - 0.5


def centroid(img: torch.Tensor) -> tuple[float, float]:
    """(row, col) centre of mass of a non-negative [H, W] image."""
    rows, cols = torch.meshgrid(
        torch.arange(img.shape[0]), torch.arange(img.shape[1]), indexing="ij"
    )
    total = img.sum()
    return float((img * rows).sum() / total), float((img * cols).sum() / total)


# ---- registry and errors -----------------------------------------------------------------------


def test_registry_names():
    assert data.DATASETS == ("digits", "cifar10", "cifar100", "imagenet", "cifar10_dvs")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DataError) as err:
        data.load("mnist")
    msg = str(err.value)
    assert "\n" not in msg and "mnist" in msg
    assert all(name in msg for name in data.DATASETS)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenet", "cifar10_dvs"])
def test_missing_root_names_path_and_fix(name: str, tmp_path: Path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        data.load(name, root, cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(name) and str(root) in msg
    assert "data_root" in msg


def test_wrong_layout_is_reported(tmp_path: Path):
    (tmp_path / "train" / "cat").mkdir(parents=True)  # no test/ folder, no python batches
    with pytest.raises(DataError, match="expected .*cifar-10-batches-py.*train/<class>"):
        data.load("cifar10", tmp_path, cache_dir=tmp_path / "cache")


def test_wrong_class_count_is_reported(tmp_path: Path):
    root = write_cifar_folder(tmp_path / "c", {"train": 1, "test": 1})
    (root / "test" / "truck").rename(root / "test" / "lorry")
    with pytest.raises(DataError, match="same 10 class folders"):
        data.load("cifar10", root, cache_dir=tmp_path / "cache")


def test_corrupt_image_names_the_file(cifar_folder: Path, tmp_path: Path):
    bad = cifar_folder / "train" / "cat" / "0001.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    with pytest.raises(DataError) as err:
        data.load("cifar10", cifar_folder, cache_dir=tmp_path / "cache")
    assert str(err.value).startswith("cifar10: cannot decode image")
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "cache").glob("*")), "no cache file for a failed decode"


def test_wrong_image_size_is_reported(tmp_path: Path):
    root = write_cifar_folder(tmp_path / "c", {"train": 1, "test": 1}, size=16)
    with pytest.raises(DataError, match="16x16, not 32x32"):
        data.load("cifar10", root, cache_dir=tmp_path / "cache")


# ---- digits and the batching contract ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load("digits")


def test_digits_shapes_and_stratified_split(digits: data.Dataset):
    info = digits.info
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 1, 8)
    assert (info.train_size, info.test_size, info.source) == (1437, 360, "sklearn")
    assert not info.sequence and info.frames is None and info.split is None
    x, y = next(digits.batches("test", 360))
    assert x.shape == (360, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    counts = torch.bincount(y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~20% of each ~180-image class
    _, y_train = next(digits.batches("train", 1437, shuffle=False, augment=False))
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1  # normalised
    again = data.load("digits")
    assert torch.equal(next(again.batches("test", 360))[0], x)
    assert torch.equal(next(again.batches("train", 1437, shuffle=False))[1], y_train)


def test_test_batches_are_ordered_and_unaugmented(digits: data.Dataset):
    xs, ys = zip(*digits.batches("test", 100), strict=True)
    assert [len(y) for y in ys] == [100, 100, 100, 60]
    x1, y1 = next(digits.batches("test", 360))
    assert torch.equal(torch.cat(xs), x1) and torch.equal(torch.cat(ys), y1)


def test_batches_deterministic_given_seed_and_epoch(digits: data.Dataset):
    def epoch(**kw) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(digits.batches("train", 256, **kw))

    a, b = epoch(epoch=3, seed=7), epoch(epoch=3, seed=7)
    assert all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )
    for other in (epoch(epoch=4, seed=7), epoch(epoch=3, seed=8)):
        assert not torch.equal(a[0][1], other[0][1])
    # every training image exactly once per epoch
    assert torch.equal(
        torch.cat([y for _, y in a]).sort().values, digits._splits["train"][1].sort().values
    )


def test_num_batches_matches_iteration(digits: data.Dataset):
    for drop_last in (False, True):
        for world_size in (1, 3):
            steps = list(digits.batches("train", 100, drop_last=drop_last, world_size=world_size))
            assert len(steps) == digits.num_batches("train", 100, world_size, drop_last)
    assert (
        digits.num_batches("train", 100) == 15
        and digits.num_batches("train", 100, drop_last=True) == 14
    )


def test_bad_batching_arguments(digits: data.Dataset):
    with pytest.raises(ValueError, match="split"):
        digits.batches("valid", 10)
    with pytest.raises(ValueError, match="split 'val' is not held out here; set val_fraction"):
        digits.batches("val", 10)
    with pytest.raises(ValueError, match="rank"):
        digits.batches("train", 10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size"):
        digits.batches("train", 2, world_size=4)


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shards_union_to_the_single_process_batch(digits: data.Dataset, world_size: int):
    kw = dict(epoch=1, seed=5)
    single = list(digits.batches("train", 64, **kw))
    ranks = [
        list(digits.batches("train", 64, rank=r, world_size=world_size, **kw))
        for r in range(world_size)
    ]
    assert all(len(steps) == len(single) for steps in ranks)
    for step, (x, y) in enumerate(single):
        for r in range(world_size):
            xr, yr = ranks[r][step]
            assert torch.equal(xr, x[r::world_size]) and torch.equal(yr, y[r::world_size])


def test_train_subset_is_balanced_and_seed_independent(digits: data.Dataset):
    sub = data.load("digits", train_subset=105)
    y = sub._splits["train"][1]
    assert sub.info.train_size == len(y) == 105
    assert torch.bincount(y).tolist() == [11] * 5 + [10] * 5
    assert torch.equal(
        data.load("digits", train_subset=105)._splits["train"][0], sub._splits["train"][0]
    )
    assert sub.info.test_size == 360
    with pytest.raises(DataError, match="train_subset=5000"):
        data.load("digits", train_subset=5000)


def test_test_subset_is_balanced_fixed_and_leaves_training_alone(digits: data.Dataset):
    sub = data.load("digits", test_subset=50)
    x, y = sub._splits["test"]
    assert sub.info.test_size == len(y) == 50 and torch.bincount(y).tolist() == [5] * 10
    assert sub.info.train_size == digits.info.train_size
    assert torch.equal(sub._splits["train"][0], digits._splits["train"][0])
    # a subset of the full test split, the same images on every load
    full = digits._splits["test"][0].flatten(1)
    assert all((full == row).all(1).any() for row in x.flatten(1))
    assert torch.equal(data.load("digits", test_subset=50)._splits["test"][0], x)
    assert len(list(sub.batches("test", 16))) == 4
    with pytest.raises(DataError, match=r"test_subset=400 must be between .* test-set size 360"):
        data.load("digits", test_subset=400)


# ---- augmentation ------------------------------------------------------------------------------


def test_random_crop_matches_per_sample_slicing():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (6, 2, 3, 7, 9), generator=gen, dtype=torch.uint8)  # [B, T, C, H, W]
    dy, dx = torch.randint(0, 5, (6,), generator=gen), torch.randint(0, 5, (6,), generator=gen)
    out = data.random_crop(x, 2, dy, dx)
    for b in range(6):
        padded = F.pad(x[b], (2, 2, 2, 2))
        assert torch.equal(out[b], padded[..., dy[b] : dy[b] + 7, dx[b] : dx[b] + 9])
    flip = torch.tensor([True, False, True, False, False, True])
    flipped = data.random_flip(x, flip)
    assert torch.equal(flipped[0], x[0].flip(-1)) and torch.equal(flipped[1], x[1])


def test_augmentation_keeps_shapes_and_labels(cifar_folder: Path, tmp_path: Path):
    ds = data.load("cifar10", cifar_folder, cache_dir=tmp_path / "cache")
    plain = torch.cat([x for x, _ in ds.batches("train", 16, augment=False, shuffle=False)])
    saw_padding = False
    for x, y in ds.batches("train", 16, epoch=0, seed=0):
        assert x.shape == (len(y), 3, 32, 32) and x.dtype == torch.float32
        px = unnormalise(x)
        # the centre survives any pad-4 crop: it still shows the class colour of its label
        centre = px[:, :, 12:20, 12:20].mean((2, 3))
        expect = torch.tensor([class_colour(int(c)) for c in y], dtype=torch.float32)
        assert (centre - expect).abs().max() < 4
        saw_padding |= bool((px[:, :, [0, -1], :].amax(1) < 1).any())  # black zero padding
    assert saw_padding
    assert not torch.equal(plain, torch.cat([x for x, _ in ds.batches("train", 16, shuffle=False)]))


# ---- CIFAR sources and the cache ---------------------------------------------------------------


def test_cifar10_image_folder(cifar_folder: Path, tmp_path: Path):
    ds = data.load("cifar10", cifar_folder, cache_dir=tmp_path / "cache")
    info = ds.info
    assert (info.train_size, info.test_size, info.num_classes) == (40, 20, 10)
    assert info.source == str(cifar_folder.resolve()) and "crop32 pad4, flip" in info.preprocessing
    x, y = next(ds.batches("test", 20))
    assert y.tolist() == [c for c in range(10) for _ in range(2)]  # sorted classes = labels
    colours = unnormalise(x).mean((2, 3))
    assert (colours - torch.tensor([class_colour(c) for c in y.tolist()])).abs().max() < 3


def test_cifar10_python_batches(tmp_path: Path, md5_free_torchvision):
    written = write_cifar10_batches(tmp_path / "root", n=20)
    ds = data.load("cifar10", tmp_path / "root", cache_dir=tmp_path / "cache")
    assert (ds.info.train_size, ds.info.test_size, ds.info.num_classes) == (100, 20, 10)
    assert ds.info.source.endswith("cifar-10-batches-py")
    x, y = next(ds.batches("test", 20))
    assert y.tolist() == [i % 10 for i in range(20)]
    pixels = written["test_batch"].reshape(20, 3, 32, 32)
    assert torch.allclose(unnormalise(x), torch.from_numpy(pixels).float(), atol=1e-3)
    _, y_train = next(ds.batches("train", 100, shuffle=False))
    assert y_train.tolist() == [i % 10 for i in range(20)] * 5


def test_cifar100_python_batches(tmp_path: Path, md5_free_torchvision):
    write_cifar100(tmp_path / "root")
    ds = data.load("cifar100", tmp_path / "root", cache_dir=tmp_path / "cache", train_subset=100)
    assert (ds.info.num_classes, ds.info.train_size, ds.info.test_size) == (100, 100, 100)
    x, y = next(ds.batches("train", 100, shuffle=False))
    assert x.shape == (100, 3, 32, 32) and sorted(y.tolist()) == list(range(100))


def test_cifar_python_batches_failing_md5_is_a_data_error(tmp_path: Path):
    write_cifar10_batches(tmp_path / "root", n=4)  # torchvision's real md5 check rejects these
    with pytest.raises(DataError) as err:
        data.load("cifar10", tmp_path / "root", cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert (
        "md5" in msg and str(tmp_path / "root" / "cifar-10-batches-py") in msg and "\n" not in msg
    )


def test_cache_is_reused_without_decoding(cifar_folder: Path, tmp_path: Path, monkeypatch):
    cache = tmp_path / "cache"
    first = data.load("cifar10", cifar_folder, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"  # no temp file left behind

    def refuse(path, name):
        raise AssertionError(f"decoded {path} despite the cache")

    monkeypatch.setattr(cifar, "_decode_image", refuse)
    second = data.load("cifar10", cifar_folder, cache_dir=cache)
    for split in ("train", "test"):
        assert all(
            torch.equal(a, b)
            for a, b in zip(first._splits[split], second._splits[split], strict=True)
        )
    # a changed source (a new file) gets a new cache entry, so it is decoded again
    Image.new("RGB", (32, 32)).save(cifar_folder / "test" / "cat" / "9999.jpg")
    with pytest.raises(AssertionError, match="despite the cache"):
        data.load("cifar10", cifar_folder, cache_dir=cache)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_cache_is_a_one_line_error(cifar_folder: Path, tmp_path: Path, damage: str):
    cache = tmp_path / "cache"
    data.load("cifar10", cifar_folder, cache_dir=cache)
    (path,) = cache.iterdir()
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a torch file")
    with pytest.raises(DataError) as err:
        data.load("cifar10", cifar_folder, cache_dir=cache)
    msg = str(err.value)
    assert str(path) in msg and "delete" in msg and "\n" not in msg


def test_cache_file_name_is_stable(tmp_path: Path):
    """The name hashes the key with CACHE_FORMAT: a change would orphan every existing cache."""
    key = {"source": "s", "files": ["a"]}
    content = data.cached("demo", key, tmp_path, lambda: {"x": torch.arange(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["demo-abc671d7de3b8769.pt"]
    again = data.cached("demo", key, tmp_path, lambda: pytest.fail("rebuilt an existing cache"))
    assert torch.equal(again["x"], content["x"]) and again["key"] == content["key"]


class Unsaveable:
    def __reduce__(self):
        raise OSError(28, "No space left on device")


def test_failed_cache_write_leaves_nothing(tmp_path: Path):
    build = lambda: {"x": torch.zeros(1000), "y": Unsaveable()}  # noqa: E731
    with pytest.raises(OSError, match="No space left"):  # torch.save fails midway
        data.cached("demo", {"k": 1}, tmp_path, build)
    assert list(tmp_path.iterdir()) == []  # no cache file, no temporary file


# ---- CIFAR10-DVS -------------------------------------------------------------------------------


def test_dvs_frames_split_and_labels(dvs_root: Path, tmp_path: Path):
    ds = data.load("cifar10_dvs", dvs_root, cache_dir=tmp_path / "cache", params={"frames": 4})
    info = ds.info
    assert (info.num_classes, info.in_channels, info.image_size, info.frames) == (3, 2, 48, 4)
    assert info.sequence and info.split == "first900"
    assert (info.train_size, info.test_size) == (30, 3)  # per class: 10 train, the last 1 test
    x, y = next(ds.batches("test", 3))
    assert x.shape == (4, 3, 2, 48, 48) and y.tolist() == [0, 1, 2]  # time-first
    for c in range(3):
        # equal event counts per frame: the first half of the stream is ON (channel 0)
        per_frame = x[:, c].sum((2, 3))  # [T, 2]
        assert (per_frame[:2, 1] == 0).all() and (per_frame[2:, 0] == 0).all()
        assert (per_frame[:2, 0] > 0).all() and torch.allclose(per_frame[:2, 0], per_frame[2:, 1])
        # test file = index 10, the last by file index (name order would give index 9)
        row, col = dvs_block(c, 10)
        got = centroid(x[:, c].sum((0, 1)))
        assert (
            abs(got[0] - to_frame_px(row + 1.5)) < 0.6
            and abs(got[1] - to_frame_px(col + 1.5)) < 0.6
        )

    last = data.load(
        "cifar10_dvs", dvs_root, cache_dir=tmp_path / "cache",
        params={"frames": 4, "dvs_split": "last900"})
    assert last.info.split == "last900" and (last.info.train_size, last.info.test_size) == (30, 3)
    x0, _ = next(last.batches("test", 3))
    row, col = dvs_block(1, 0)
    got = centroid(x0[:, 1].sum((0, 1)))
    assert abs(got[0] - to_frame_px(row + 1.5)) < 0.6 and abs(got[1] - to_frame_px(col + 1.5)) < 0.6


def test_dvs_train_batches_and_sharding(dvs_root: Path, tmp_path: Path):
    ds = data.load("cifar10_dvs", dvs_root, cache_dir=tmp_path / "cache", params={"frames": 4})
    single = list(ds.batches("train", 8, epoch=2))
    shards = [list(ds.batches("train", 8, epoch=2, rank=r, world_size=2)) for r in range(2)]
    assert sum(len(y) for _, y in single) == 30
    for step, (x, y) in enumerate(single):
        assert x.shape == (4, len(y), 2, 48, 48) and (x >= 0).all()
        for r in range(2):
            xr, yr = shards[r][step]
            assert torch.equal(xr, x[:, r::2]) and torch.equal(yr, y[r::2])
    plain = next(ds.batches("train", 30, shuffle=False, augment=False))[0]
    assert not torch.equal(plain, next(ds.batches("train", 30, shuffle=False, augment=True))[0])


def test_dvs_zip_layout_reads_like_extracted(dvs_root: Path, tmp_path: Path):
    zipped = tmp_path / "zipped"
    (zipped / "download").mkdir(parents=True)
    for name in DVS_CLASSES:
        with zipfile.ZipFile(zipped / "download" / f"{name}.zip", "w") as z:
            for f in (dvs_root / "extract" / name).iterdir():
                z.write(f, f"{name}/{f.name}")
    a = data.load("cifar10_dvs", dvs_root, cache_dir=tmp_path / "cache", params={"frames": 4})
    b = data.load("cifar10_dvs", zipped, cache_dir=tmp_path / "cache", params={"frames": 4})
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    assert not list((tmp_path / "cache").glob("*unzip*")), "temporary extraction removed"
    for split in ("train", "test"):
        assert all(
            torch.equal(u, v) for u, v in zip(a._splits[split], b._splits[split], strict=True)
        )


@pytest.mark.parametrize("frames", [4, 20])  # 64 events per file: 20 frames leave 4 over
def test_dvs_readers_agree(dvs_root: Path, tmp_path: Path, frames: int):
    cache = tmp_path / "cache"
    tonic = data.load("cifar10_dvs", dvs_root, cache_dir=cache, params={"frames": frames})
    before = set(cache.iterdir())
    sj = data.load(
        "cifar10_dvs", dvs_root, cache_dir=cache,
        params={"frames": frames, "dvs_reader": "spikingjelly"})
    assert len(before) == 1 and len(set(cache.iterdir()) - before) == 1, "one cache per reader"
    (tonic_file,), (sj_file,) = before, set(cache.iterdir()) - before
    a, b = (torch.load(f, weights_only=True) for f in (tonic_file, sj_file))
    assert a["x"].dtype == torch.float16 and a["x"].shape == (33, frames, 2, 48, 48)
    assert a["x"].sum() > 0
    for k in ("x", "y", "pos"):
        assert torch.equal(a[k], b[k]), k
    assert a["key"] != b["key"]
    assert tonic.info.preprocessing.startswith("tonic reader")
    assert sj.info.preprocessing.startswith("spikingjelly reader")
    for split in ("train", "test"):
        assert torch.equal(next(tonic.batches(split, 64, augment=False, shuffle=False))[0],
                           next(sj.batches(split, 64, augment=False, shuffle=False))[0])


def test_dvs_readers_agree_on_random_recordings(tmp_path: Path):
    """Every address bit pattern (unused high bits set too), 20,011 events (N mod 20 = 11)."""
    rng = np.random.default_rng(0)
    n = 20_011
    addr = rng.integers(0, 2**32, n, dtype=np.uint64)
    t = np.sort(rng.integers(0, 2**31, n, dtype=np.uint64))
    words = np.stack([addr, t], 1).astype(">u4")
    path = tmp_path / "random.aedat"
    path.write_bytes(b"#!AER-DAT2.0\r\n# tick 1 us\r\n" + words.tobytes())
    for frames in (1, 20, 7):
        a = dvs._dvs_frames(path, frames, "tonic")
        b = dvs._dvs_frames(path, frames, "spikingjelly")
        assert torch.equal(a, b) and a.shape == (frames, 2, 48, 48)
        counts = data.DVS_READERS["tonic"](path, frames)
        assert counts.sum() == n and counts[-1].sum() == n // frames + n % frames


def test_dvs_tonic_int16_overflow_is_an_error(tmp_path: Path):
    path = tmp_path / "hot.aedat"
    n = 2**15 + 1  # one pixel (sensor row 64, column 64), one frame: one more than int16 holds
    words = np.stack([np.full(n, (63 << 8) | (63 << 1)), np.arange(n)], 1).astype(">u4")
    path.write_bytes(b"#!AER-DAT2.0\r\n" + words.tobytes())
    assert dvs._dvs_frames(path, 2, "tonic").sum() > 0  # 2 frames: 16,384 events per pixel
    assert data.DVS_READERS["spikingjelly"](path, 1).max() == n
    with pytest.raises(DataError) as err:
        dvs._dvs_frames(path, 1, "tonic")
    assert str(path) in str(err.value) and "dvs_reader=spikingjelly" in str(err.value)


def test_dvs_events_np_layout_reads_like_aedat(dvs_root: Path, tmp_path: Path):
    from spikingjelly.datasets.cifar10_dvs import _load_origin_data

    converted = tmp_path / "converted"
    for name in DVS_CLASSES:
        (converted / "events_np" / name).mkdir(parents=True)
        for f in (dvs_root / "extract" / name).iterdir():
            np.savez(converted / "events_np" / name / f"{f.stem}.npz", **_load_origin_data(f))
    cache = tmp_path / "cache"
    ref = data.load("cifar10_dvs", dvs_root, cache_dir=cache, params={"frames": 4})
    for reader in data.DVS_READERS:
        ds = data.load("cifar10_dvs", converted, cache_dir=cache,
                       params={"frames": 4, "dvs_reader": reader})
        assert ds.info.source.endswith("events_np")
        for split in ("train", "test"):
            assert all(torch.equal(u, v) for u, v in zip(ref._splits[split], ds._splits[split],
                                                          strict=True))


def test_dvs_bin_edges(tmp_path: Path):
    """Frame i holds events [i * (N // T), (i + 1) * (N // T)), the last frame up to N (the
    official code's edges); tonic's own n_event_bins drops the last N mod T events."""
    from tonic.transforms import ToFrame

    path = tmp_path / "e.aedat"
    write_aedat(path, 8, 20, repeats=5)  # N = 80; T = 3: 26, 26, 28
    for reader in data.DVS_READERS:
        counts = data.DVS_READERS[reader](path, 3)
        assert counts.shape == (3, 2, 128, 128)
        assert [int(f.sum()) for f in counts] == [26, 26, 28], reader
        assert counts[2, 1].sum() == 28  # events 40-79 are OFF (channel 1), 0-39 ON
        assert [int(f.sum()) for f in data.DVS_READERS[reader](path, 100)] == [0] * 99 + [80]
    raw = ToFrame(sensor_size=(128, 128, 2), n_event_bins=3)(dvs._tonic_events(path))
    assert [int(f.sum()) for f in raw] == [26, 26, 26]


def write_bad_dvs(folder: Path, damage: str) -> Path:
    """One good and one damaged recording of class airplane; returns the damaged one."""
    folder.mkdir(parents=True, exist_ok=True)
    write_aedat(folder / "cifar10_airplane_0.aedat", 0, 0)
    bad = folder / "cifar10_airplane_1.aedat"
    header = b"#!AER-DAT2.0\r\n"
    bad.write_bytes({
        "odd-word-count": header + struct.pack(">3I", 1, 2, 3),
        "truncated-event": header + struct.pack(">4I", 1, 2, 3, 4)[:13],
        "garbage": b"\xff" * 7,
        "no-events": header + b"# tick 1 us\r\n",
    }[damage])
    return bad


@pytest.mark.parametrize("reader", ["tonic", "spikingjelly"])
@pytest.mark.parametrize("damage", ["odd-word-count", "truncated-event", "garbage", "no-events"])
def test_dvs_malformed_file_names_the_file(tmp_path: Path, reader: str, damage: str):
    cache = tmp_path / "cache"
    root = tmp_path / "dvs"
    (root / "extract" / "bird").mkdir(parents=True)
    write_aedat(root / "extract" / "bird" / "cifar10_bird_0.aedat", 0, 0)
    data.load("cifar10_dvs", root, cache_dir=cache, params={"frames": 4, "dvs_reader": reader})
    cached = {f: f.read_bytes() for f in cache.iterdir()}
    bad = write_bad_dvs(root / "extract" / "airplane", damage)
    with pytest.raises(DataError) as err:
        data.load("cifar10_dvs", root, cache_dir=cache, params={"frames": 4, "dvs_reader": reader})
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg
    if damage == "no-events":
        assert "holds no events" in msg and "remove it" in msg
    else:
        assert "cannot read event file" in msg and "re-extract it" in msg
    assert {f: f.read_bytes() for f in cache.iterdir()} == cached, "the cache is untouched"


def test_dvs_empty_class_folder(tmp_path: Path):
    root = tmp_path / "dvs"
    for name in DVS_CLASSES:
        (root / "extract" / name).mkdir(parents=True)
        write_aedat(root / "extract" / name / f"cifar10_{name}_0.aedat", 0, 0)
    (root / "extract" / "cat").mkdir()
    with pytest.raises(DataError) as err:
        data.load("cifar10_dvs", root, cache_dir=tmp_path / "cache", params={"frames": 4})
    msg = str(err.value)
    assert "\n" not in msg and f"class folder {root / 'extract' / 'cat'} holds no .aedat" in msg
    assert "remove it or restore its files" in msg
    assert not (tmp_path / "cache").exists()


def test_dvs_bad_reader_name(dvs_root: Path, tmp_path: Path):
    with pytest.raises(DataError, match="dvs_reader must be one of tonic, spikingjelly"):
        data.load("cifar10_dvs", dvs_root, cache_dir=tmp_path / "cache",
                  params={"dvs_reader": "aedat"})


def test_dvs_bad_split_name(dvs_root: Path, tmp_path: Path):
    with pytest.raises(DataError, match="first900"):
        data.load("cifar10_dvs", dvs_root, cache_dir=tmp_path / "cache",
                  params={"dvs_split": "random"})


# ---- ImageNet (streamed) -----------------------------------------------------------------------


@pytest.fixture
def imagenet_root(tmp_path: Path) -> Path:
    root = tmp_path / "imagenet"
    ramp = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))  # [30, 40], left to right
    for split, n in (("train", 3), ("val", 2)):
        for c, wnid in enumerate(("n01440764", "n01443537")):
            (root / split / wnid).mkdir(parents=True)
            for i in range(n):
                rgb = np.zeros((30, 40, 3), np.uint8)
                rgb[..., c] = ramp  # class 0 red ramp, class 1 green ramp
                Image.fromarray(rgb).save(root / split / wnid / f"{wnid}_{i}.JPEG", quality=95)
    return root


def test_imagenet_stream(imagenet_root: Path):
    ds = data.load("imagenet", imagenet_root, workers=0)
    info = ds.info
    assert (info.num_classes, info.image_size, info.train_size, info.test_size) == (2, 224, 6, 4)
    x, y = next(ds.batches("test", 4))
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [0, 0, 1, 1]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in data.IMAGENET_STATS)
    px = (x * std + mean).mean((2, 3))  # [B, 3] in 0..1
    assert (px.argmax(1) == y).all()

    a = list(ds.batches("train", 4, epoch=1, seed=3))
    b = list(ds.batches("train", 4, epoch=1, seed=3))
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b, strict=True))
    c = list(ds.batches("train", 4, epoch=2, seed=3))
    assert not torch.equal(torch.cat([x for x, _ in a]).sum(0), torch.cat([x for x, _ in c]).sum(0))
    shards = [list(ds.batches("train", 4, epoch=1, seed=3, rank=r, world_size=2)) for r in range(2)]
    for step, (x, y) in enumerate(a):
        for r in range(2):
            assert torch.allclose(shards[r][step][0], x[r::2]) and torch.equal(
                shards[r][step][1], y[r::2]
            )
    sub = ds.with_subset("train", 2)
    assert sub.info.train_size == 2 and sorted(next(sub.batches("train", 2))[1].tolist()) == [0, 1]


def test_imagenet_missing_val(imagenet_root: Path):
    import shutil

    shutil.rmtree(imagenet_root / "val")
    with pytest.raises(DataError) as err:
        data.load("imagenet", imagenet_root, workers=0)
    assert str(imagenet_root / "val") in str(err.value) and "\n" not in str(err.value)


# ---- the real CIFAR-10 JPEG copy ---------------------------------------------------------------


@pytest.mark.slow
def test_real_cifar10_jpeg_copy():
    shared = shared_data_root()
    if shared is None or not (shared / "cifar10-jpeg.tar.gz").is_file():
        pytest.skip("real CIFAR-10 JPEG copy not found at ../shared/data/cifar10-jpeg.tar.gz")
    root = ensure_cifar10_jpeg(REPO_ROOT / "data" / "cifar10")
    ds = data.load("cifar10", root)
    assert (ds.info.train_size, ds.info.test_size, ds.info.num_classes) == (50_000, 10_000, 10)
    x, y = next(ds.batches("train", 50_000, shuffle=False, augment=False))
    assert torch.bincount(y).tolist() == [5000] * 10
    assert torch.bincount(next(ds.batches("test", 10_000))[1]).tolist() == [1000] * 10
    # JPEG re-encodings keep the published per-channel means of the training set
    means = unnormalise(x).mean((0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor(data.CIFAR10_STATS[0]), atol=0.01)
    sub = data.load("cifar10", root, train_subset=10_000)
    assert torch.bincount(sub._splits["train"][1]).tolist() == [1000] * 10


def test_batches_from_a_step_equal_the_rest_of_the_epoch():
    """A run resumed mid-epoch (dsr.harness.checkpoint) asks for the epoch from step k: the batches,
    and their random crops and flips, equal those an uninterrupted epoch yields from step k."""
    info = DataInfo(name="t", num_classes=4, in_channels=3, image_size=8, sequence=False,
                    frames=None, split=None, train_size=40, test_size=4, source="t",
                    preprocessing="t")
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=gen)
    y = torch.arange(40) % 4
    data = Dataset(info, {"train": (x, y), "test": (x[:4], y[:4])}, scale=1 / 255,
                   mean=(0.5,) * 3, std=(0.25,) * 3, pad=2, flip=True)
    whole = list(data.batches("train", 6, epoch=3, seed=5))
    for start in (0, 1, 4, 7):
        rest = list(data.batches("train", 6, epoch=3, seed=5, start=start))
        assert len(rest) == len(whole) - start
        for (xa, ya), (xb, yb) in zip(rest, whole[start:], strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
