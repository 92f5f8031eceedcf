"""An out-of-tree dataset: N-MNIST (Orchard et al. 2015) read and binned by tonic.

    python -m dsr.run --dataset nmnist --dataset-plugin nmnist=examples.nmnist_plugin:NMNIST \
        --method dsr-if --time-steps 10 --set frames=10 --out results/nmnist/metrics.json

Layout: <root>/Train/<digit>/*.bin and <root>/Test/<digit>/*.bin, as Train.zip and Test.zip of
the release extract; root defaults to data/nmnist. Each .bin file holds 40-bit events (x, y,
polarity and a 23-bit timestamp), decoded by tonic.io.read_mnist_file; each recording becomes
`frames` frames of equal duration on the 34 x 34 sensor (tonic's ToFrame n_time_bins: frame i
counts events with t0 + i·w <= t < t0 + (i+1)·w, w = (t_last - t0) // frames, so the last
event is not counted), both polarities, raw counts, cached as float16 through dsr.data.cached.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tonic import datasets as tonic_datasets
from tonic.io import read_mnist_file
from tonic.transforms import ToFrame

from dsr.config import ConfigError
from dsr.data import DataError, DataInfo, Dataset, LoadOptions, cached

SENSOR = tonic_datasets.NMNIST.sensor_size  # (34, 34, 2): width, height, polarities
SPLITS = {"train": "Train", "test": "Test"}


def frames_of(path: Path, frames: int) -> np.ndarray:
    """One recording -> [T, 2, 34, 34] event counts; a one-line DataError if it is damaged."""
    if path.stat().st_size % 5:
        raise DataError(f"nmnist: event file {path} is truncated (not a whole number of 5-byte "
                        "events); extract it again")
    events = read_mnist_file(str(path), dtype=tonic_datasets.NMNIST.dtype)
    if len(events) == 0:
        raise DataError(f"nmnist: event file {path} holds no events; extract it again or remove it")
    if events["x"].max() >= SENSOR[0] or events["y"].max() >= SENSOR[1]:
        raise DataError(f"nmnist: event file {path} has events outside the 34 x 34 sensor; it is "
                        "not an N-MNIST recording")
    return ToFrame(sensor_size=SENSOR, n_time_bins=frames)(events)


@dataclass(frozen=True)
class NMNISTParams:
    frames: int = 20  # time bins per recording (`--set frames=10`)

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ConfigError(f"frames must be >= 1, got {self.frames}")


class NMNIST:
    key, Params = "nmnist", NMNISTParams
    # run defaults (not tuned): a small network, as for the embedded digits set
    defaults = dict(arch="preact_resnet8", epochs=20, batch_size=64, optimizer="sgd", lr=0.1,
                    warmup_iters=20)

    def load(self, root: Path | None, options: LoadOptions) -> Dataset:
        root = Path(root) if root is not None else Path("data") / "nmnist"
        files = {}
        for split, folder in SPLITS.items():
            classes = sorted(p for p in (root / folder).glob("*") if p.is_dir())
            if not classes:
                raise DataError(f"nmnist: no class folders in {root / folder}; expected "
                                f"{root}/Train/<digit>/*.bin and {root}/Test/<digit>/*.bin; set "
                                "data_root")
            files[split] = {c.name: sorted(c.glob("*.bin")) for c in classes}
            for c, paths in files[split].items():
                if not paths:
                    raise DataError(f"nmnist: class folder {root / folder / c} holds no .bin "
                                    "files; remove it or restore its files")
        if list(files["train"]) != list(files["test"]):
            raise DataError(f"nmnist: {root}/Train and {root}/Test hold different class folders")
        listing = "\n".join(f"{p.relative_to(root)} {p.stat().st_size}"
                            for by_class in files.values() for ps in by_class.values()
                            for p in ps)
        key = {"source": str(root.resolve()), "frames": options.params.frames,
               "files": hashlib.sha1(listing.encode()).hexdigest()}

        def build() -> dict:
            out: dict = {"classes": list(files["train"])}
            for split, by_class in files.items():
                x = [frames_of(p, options.params.frames) for ps in by_class.values() for p in ps]
                out[f"{split}_x"] = torch.from_numpy(np.stack(x)).half()  # [N, T, 2, 34, 34]
                out[f"{split}_y"] = torch.tensor(
                    [c for c, ps in enumerate(by_class.values()) for _ in ps])
            return out

        content = cached("nmnist", key, options.cache_dir, build)
        splits = {s: (content[f"{s}_x"], content[f"{s}_y"]) for s in SPLITS}
        info = DataInfo(
            name="nmnist",
            num_classes=len(content["classes"]),
            in_channels=2,
            image_size=SENSOR[0],
            sequence=True,
            frames=options.params.frames,
            split=None,
            train_size=len(splits["train"][1]),
            test_size=len(splits["test"][1]),
            source=str(root),
            preprocessing=f"tonic ToFrame n_time_bins={options.params.frames}, raw event counts",
        )
        return Dataset(info, splits, scale=1.0, mean=(0.0, 0.0), std=(1.0, 1.0), pad=0,
                       flip=False)
