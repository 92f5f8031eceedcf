"""CIFAR10-DVS as the official code prepares it (supp. C.1): 20 frames of equal event count,
bilinear resize to 48, pad-4 crop, no flip, raw counts, cached as float16 [N, T, 2, 48, 48].

Events are read and binned by tonic or by SpikingJelly (`dvs_reader`; the two agree exactly);
deviation: SpikingJelly 2.0's AEDAT reader orients frames as x = 127 - y_raw, y = 127 - x_raw,
the official (older SpikingJelly) reader as x = 127 - x_raw; the tonic path decodes addresses the
same way. Training split: per class the first 900 files by index (first900) or the last 900
(last900); the other tenth is the test split.
"""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dsr.config import ConfigError
from dsr.data.cache import cached
from dsr.data.core import DataError, DataInfo, Dataset, LoadOptions, builtin, one_line, where
from dsr.data.files import class_files, listing_digest, map_threads, natural_key

DVS_SPLITS = ("first900", "last900")
DVS_SENSOR = 128  # CIFAR10-DVS events live on a 128 x 128 DVS
DVS_SIZE = 48


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
            f"({one_line(err)}); re-extract it"
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

    map_threads(fill, list(range(len(paths))))
    return {
        "classes": list(files),
        "x": x,  # [N, T, 2, 48, 48]
        "y": torch.tensor([c for c, fs in enumerate(files.values()) for _ in fs]),
        "pos": torch.tensor([i for fs in files.values() for i in range(len(fs))]),  # file index
    }


@dataclass(frozen=True)
class DVSParams:
    """CIFAR10-DVS's settings (`--set` like a method's; a run records them as `data_params`)."""

    frames: int = 20  # frames per sample, split by event count (supplement C.1)
    dvs_split: str = "first900"  # first900 (paper) | last900 (many later papers)
    dvs_reader: str = "tonic"  # events read and binned by tonic | spikingjelly (they agree)

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ConfigError(f"frames must be >= 1, got {self.frames}")
        if self.dvs_split not in DVS_SPLITS:
            raise ConfigError(f"dvs_split must be one of {', '.join(DVS_SPLITS)}, got "
                              f"{self.dvs_split!r}")
        if self.dvs_reader not in DVS_READERS:
            raise ConfigError(f"dvs_reader must be one of {', '.join(DVS_READERS)}, got "
                              f"{self.dvs_reader!r}")


def _load_cifar10_dvs(root: Path, opt: LoadOptions) -> Dataset:
    p: DVSParams = opt.params
    found = _dvs_source(root)
    if found is None and opt.download:
        from spikingjelly.datasets.cifar10_dvs import CIFAR10DVS

        try:  # downloads to root/download, extracts, converts to root/events_np
            CIFAR10DVS(str(root), data_type="event")
        except Exception as err:
            raise DataError(f"cifar10_dvs: download to {root} failed ({one_line(err)})") from None
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
        files = class_files("cifar10_dvs", folder, suffixes)
        fingerprint = listing_digest(files, folder)

    def build() -> dict:
        if layout != "zip":
            return _decode_dvs(files, p.frames, p.dvs_reader)
        opt.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=opt.cache_dir, prefix="cifar10_dvs-unzip-") as tmp:
            by_class = {}
            for z in zips:  # <class>.zip holds <class>/*.aedat (or the files at its top)
                try:
                    with zipfile.ZipFile(z) as archive:
                        archive.extractall(Path(tmp) / z.stem)
                except (zipfile.BadZipFile, OSError) as err:
                    raise DataError(
                        f"cifar10_dvs: cannot extract {z} ({one_line(err)}); download it again"
                    ) from None
                aedat = sorted((Path(tmp) / z.stem).rglob("*.aedat"), key=natural_key)
                if not aedat:
                    raise DataError(f"cifar10_dvs: {z} holds no .aedat files; download it again")
                by_class[z.stem] = aedat
            return _decode_dvs(by_class, p.frames, p.dvs_reader)

    key = {"source": str(folder.resolve()), "files": fingerprint, "frames": p.frames}
    if p.dvs_reader != "spikingjelly":  # one cache file per reader; SpikingJelly's keeps its
        key["reader"] = p.dvs_reader  # earlier key, so caches built before stay valid
    content = cached("cifar10_dvs", key, opt.cache_dir, build)
    test = _dvs_split(content["y"], content["pos"], p.dvs_split)
    x, y = content["x"], content["y"]
    splits = {"train": (x[~test], y[~test]), "test": (x[test], y[test])}
    info = DataInfo(
        name="cifar10_dvs",
        num_classes=len(content["classes"]),
        in_channels=2,
        image_size=DVS_SIZE,
        sequence=True,
        frames=p.frames,
        split=p.dvs_split,
        train_size=int((~test).sum()),
        test_size=int(test.sum()),
        source=where(folder),
        preprocessing=f"{p.dvs_reader} reader, {p.frames} frames split_by=number, resize 48 "
        "bilinear, crop48 pad4, "
        "no flip, raw event counts (no normalisation)",
    )
    return Dataset(info, splits, scale=1.0, mean=(0.0, 0.0), std=(1.0, 1.0), pad=4, flip=False)


CIFAR10DVS = builtin("cifar10_dvs", _load_cifar10_dvs, DVSParams)
