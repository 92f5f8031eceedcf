"""Tutorial: a dataset written as an out-of-tree plug-in.

`bars`: 8 x 8 grey images of one bar, horizontal, vertical, diagonal or anti-diagonal (the
class), at a random position, over uniform noise. It is generated from a fixed seed, so it needs
no download, and stands in for a real source: a plug-in for recorded data would read its files
in `build` instead (see examples/nmnist_plugin.py). The harness batches, normalises, shards and
subsets what `load` returns.

    python -m dsr.run --plugin-path docs/tutorials --dataset-plugin bars=bars:Bars \
        --dataset bars --method dsr-if --time-steps 4 --out results/tutorial/bars/metrics.json
"""

from __future__ import annotations

from pathlib import Path

import torch

from dsr.data import DataInfo, Dataset, LoadOptions, cached

SIZE = 8  # pixels per side
CLASSES = ("horizontal", "vertical", "diagonal", "anti-diagonal")
SPLITS = {"train": 1000, "test": 400}  # images per split
SEED = 0  # the generator's seed: part of the data, not of a run


def bar(kind: int, offset: int) -> torch.Tensor:
    """A [SIZE, SIZE] mask of one bar of class `kind`, shifted by `offset` pixels."""
    mask = torch.zeros(SIZE, SIZE)
    idx = torch.arange(SIZE)
    if kind == 0:
        mask[offset, :] = 1
    elif kind == 1:
        mask[:, offset] = 1
    else:
        cols = (idx + offset) % SIZE if kind == 2 else (SIZE - 1 - idx + offset) % SIZE
        mask[idx, cols] = 1
    return mask


def generate(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n images (uint8, [n, 1, SIZE, SIZE]) and their labels (int64, [n]), classes balanced."""
    y = torch.arange(n) % len(CLASSES)
    offsets = torch.randint(0, SIZE, (n,), generator=gen)
    noise = torch.rand(n, SIZE, SIZE, generator=gen) * 0.4  # background in [0, 0.4)
    bars = torch.stack([bar(int(c), int(o)) for c, o in zip(y, offsets, strict=True)])
    x = torch.maximum(noise, bars * 0.9)  # bar at 0.9 of full scale
    return (x * 255).round().to(torch.uint8).unsqueeze(1), y


class Bars:
    key = "bars"  # must equal the key it is registered under
    # run defaults, as dsr.config.DATASET_DEFAULTS gives the built-ins: arch plus TrainConfig
    # fields (without an arch here, --arch would be required)
    defaults = dict(arch="preact_resnet8", epochs=5, batch_size=64, optimizer="sgd", lr=0.1,
                    warmup_iters=20)

    def load(self, root: Path | None, options: LoadOptions) -> Dataset:
        """Both splits in memory; `root` (data_root) is unused: nothing is read from disk."""

        def build() -> dict:  # decoded once, then read from options.cache_dir
            gen = torch.Generator().manual_seed(SEED)
            out = {}
            for split, n in SPLITS.items():
                out[f"{split}_x"], out[f"{split}_y"] = generate(n, gen)
            return out

        content = cached("bars", {"size": SIZE, "splits": SPLITS, "seed": SEED},
                         options.cache_dir, build)
        splits = {s: (content[f"{s}_x"], content[f"{s}_y"]) for s in SPLITS}
        pixels = splits["train"][0].float() / 255
        info = DataInfo(
            name="bars", num_classes=len(CLASSES), in_channels=1, image_size=SIZE,
            sequence=False, frames=None, split=None, train_size=SPLITS["train"],
            test_size=SPLITS["test"], source="generated (seed 0)",
            preprocessing="scale /255, normalise (train mean/std), no augmentation")
        return Dataset(info, splits, scale=1 / 255, mean=(pixels.mean().item(),),
                       std=(pixels.std().item(),), pad=0, flip=False)
