"""Datasets end to end through the CLI: CIFAR10-DVS with either event reader, and an
out-of-tree dataset plug-in (N-MNIST events written in N-MNIST's on-disk format)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_data import DVS_CLASSES, DVS_FILES, dvs_block, write_aedat

from dsr import data
from dsr import run as cli
from dsr.config import ConfigError
from dsr.data import DataError

TINY = ["--method", "dsr-if", "--time-steps", "2", "--epochs", "1", "--device", "cpu",
        "--arch", "preact_resnet8", "--set", "base_width=2", "--set", "frames=2",
        "--set", "batch_size=16", "--set", "latency_batches=1"]


# dsr.harness.train.run switches deterministic algorithms on; keep other test files unaffected
pytestmark = pytest.mark.usefixtures("restore_determinism_flags")


@pytest.fixture(scope="module")
def dvs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar10_dvs")
    for c, name in enumerate(DVS_CLASSES):
        (root / name).mkdir()
        for k in range(DVS_FILES):
            write_aedat(root / name / f"cifar10_{name}_{k}.aedat", *dvs_block(c, k))
    return root


@pytest.mark.parametrize("reader", ["tonic", "spikingjelly"])
def test_cli_cifar10_dvs_with_either_reader(dvs_root: Path, tmp_path: Path, reader: str,
                                            monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("dsr.data.core.REPO_ROOT", tmp_path)  # the default cache folder
    out = tmp_path / "metrics.json"
    code = cli.main([*TINY, "--dataset", "cifar10_dvs", "--set", f"data_root={dvs_root}",
                     "--set", f"dvs_reader={reader}", "--out", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["config"]["data_params"]["dvs_reader"] == reader
    assert metrics["data"]["preprocessing"].startswith(f"{reader} reader, 2 frames")
    assert (metrics["data"]["train_size"], metrics["data"]["test_size"]) == (30, 3)
    assert len(list((tmp_path / ".cache" / "data").glob("cifar10_dvs-*.pt"))) == 1


def test_dvs_reader_is_part_of_a_dvs_run_identity():
    def run_hash(dataset: str, reader: str) -> str:
        args = cli.parser().parse_args([*TINY, "--dataset", dataset, "--set",
                                        f"dvs_reader={reader}", "--out", "m.json"])
        return cli.resolve_args(args)[0].hash

    assert run_hash("cifar10_dvs", "tonic") != run_hash("cifar10_dvs", "spikingjelly")
    # the reader is CIFAR10-DVS's setting (its Params): another dataset refuses it
    with pytest.raises(ConfigError, match=r"unknown key\(s\) dvs_reader, frames for --set"):
        run_hash("digits", "tonic")


# ---- an out-of-tree dataset: N-MNIST through tonic --------------------------------------------

REPO = Path(__file__).resolve().parents[1]
NMNIST_PLUGIN = "nmnist=examples.nmnist_plugin:NMNIST"


def write_nmnist(path: Path, events: list[tuple[int, int, int, int]]) -> None:
    """N-MNIST's on-disk format: 40 bits per event, big-endian fields: x (8 bits), y (8),
    polarity (1), timestamp in us (23)."""
    raw = bytearray()
    for x, y, p, t in events:
        raw += bytes([x, y, (p << 7) | (t >> 16) & 0x7F, (t >> 8) & 0xFF, t & 0xFF])
    path.write_bytes(bytes(raw))


def digit_events(c: int, k: int) -> list[tuple[int, int, int, int]]:
    """A short saccade: class c lights a 3 x 3 block at row 4 + 9c, sample k shifts it by k."""
    return [(5 + k + e % 3, 4 + 9 * c + (e // 3) % 3, e % 2, 500 * e) for e in range(36)]


@pytest.fixture(scope="module")
def nmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nmnist")
    for folder, n in (("Train", 4), ("Test", 2)):
        for c in range(3):
            (root / folder / str(c)).mkdir(parents=True)
            for k in range(n):
                write_nmnist(root / folder / str(c) / f"{k:05d}.bin", digit_events(c, k))
    return root


def dsr_run(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dsr.run", *args], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, "DSR_CACHE_DIR": str(cache)},
                          timeout=300)


def test_nmnist_plugin_decodes_its_format(nmnist_root: Path, tmp_path: Path):
    ds = data.load("nmnist", nmnist_root, cache_dir=tmp_path, params={"frames": 3},
                   plugins=dict([NMNIST_PLUGIN.split("=")]))
    info = ds.info
    assert (info.num_classes, info.in_channels, info.image_size, info.frames) == (3, 2, 34, 3)
    assert (info.train_size, info.test_size, info.sequence) == (12, 6, True)
    x, y = next(ds.batches("train", 12, shuffle=False, augment=False))
    assert x.shape == (3, 12, 2, 34, 34) and y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # class 1, sample 1: rows 13-15, columns 6-8, polarity alternating 0/1; tonic's time bins
    # are half-open, so the last event (polarity 1, at the end of the last bin) is not counted
    sample = x[:, 5]
    assert sample.sum() == 35 and sample[:, :, 13:16, 6:9].sum() == 35
    assert (sample[:, 0].sum(), sample[:, 1].sum()) == (18, 17)
    assert [int(f.sum()) for f in sample] == [12, 12, 11]


def test_out_of_tree_dataset_trains_through_the_cli(nmnist_root: Path, tmp_path: Path):
    out = tmp_path / "metrics.json"
    run = dsr_run(*TINY, "--dataset", "nmnist", "--dataset-plugin", NMNIST_PLUGIN,
                  "--set", f"data_root={nmnist_root}", "--out", str(out), cache=tmp_path / "c")
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads(out.read_text())
    assert metrics["dataset"] == "nmnist" and metrics["config"]["dataset"] == "nmnist"
    assert metrics["data"]["preprocessing"] == "tonic ToFrame n_time_bins=2, raw event counts"
    assert (metrics["data"]["train_size"], metrics["data"]["test_size"]) == (12, 6)
    assert len(list((tmp_path / "c").glob("nmnist-*.pt"))) == 1


@pytest.mark.parametrize("argv, fragments", [
    (["--dataset", "mnist"], ["unknown dataset 'mnist'", "cifar10_dvs", "digits",
                              "--dataset-plugin"]),
    (["--dataset", "nmnist", "--dataset-plugin", "nmnist=examples.nowhere:NMNIST"],
     ["dataset 'nmnist' points at 'examples.nowhere:NMNIST', which does not import"]),
    (["--dataset", "mnist", "--dataset-plugin", "mnist=examples.nmnist_plugin:NMNIST"],
     ["declares key 'nmnist' but is registered as 'mnist'"]),
    (["--dataset", "nmnist", "--dataset-plugin", "nmnist"], ["expected KEY=module:Class"]),
])
def test_bad_dataset_is_one_line(argv: list[str], fragments: list[str], tmp_path: Path,
                                 capsys: pytest.CaptureFixture):
    code = cli.main([*TINY, *argv, "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert all(f in err for f in fragments), err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("damage", ["truncated", "no-events", "empty-class"])
def test_nmnist_bad_input_names_the_file(nmnist_root: Path, tmp_path: Path, damage: str):
    root = tmp_path / "nmnist"
    shutil.copytree(nmnist_root, root)
    cache = tmp_path / "cache"
    plugins = dict([NMNIST_PLUGIN.split("=")])
    data.load("nmnist", root, cache_dir=cache, params={"frames": 2}, plugins=plugins)
    before = {f: f.read_bytes() for f in cache.iterdir()}
    bad = root / "Train" / "1" / "00001.bin"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:-2])
    elif damage == "no-events":
        bad.write_bytes(b"")
    else:
        bad = root / "Train" / "3"
        bad.mkdir()
    with pytest.raises(DataError) as err:
        data.load("nmnist", root, cache_dir=cache, params={"frames": 2}, plugins=plugins)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert {f: f.read_bytes() for f in cache.iterdir()} == before
