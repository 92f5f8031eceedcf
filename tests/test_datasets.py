"""Datasets end to end through the CLI: CIFAR10-DVS with either event reader, and an
out-of-tree dataset plug-in (N-MNIST events written in N-MNIST's on-disk format)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_data import DVS_CLASSES, DVS_FILES, dvs_block, write_aedat

from dsr import run as cli

TINY = ["--method", "dsr-if", "--time-steps", "2", "--epochs", "1", "--device", "cpu",
        "--arch", "preact_resnet8", "--set", "base_width=2", "--set", "frames=2",
        "--set", "batch_size=16", "--set", "latency_batches=1"]


@pytest.fixture(autouse=True)
def _restore_determinism_flags():
    # dsr.train.run switches deterministic algorithms on; keep other test files unaffected
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


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
    monkeypatch.setattr("dsr.data.REPO_ROOT", tmp_path)  # the default cache folder
    out = tmp_path / "metrics.json"
    code = cli.main([*TINY, "--dataset", "cifar10_dvs", "--set", f"data_root={dvs_root}",
                     "--set", f"dvs_reader={reader}", "--out", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["config"]["train"]["dvs_reader"] == reader
    assert metrics["data"]["preprocessing"].startswith(f"{reader} reader, 2 frames")
    assert (metrics["data"]["train_size"], metrics["data"]["test_size"]) == (30, 3)
    assert len(list((tmp_path / ".cache" / "data").glob("cifar10_dvs-*.pt"))) == 1


def test_dvs_reader_is_part_of_a_dvs_run_identity():
    def run_hash(dataset: str, reader: str) -> str:
        args = cli.parser().parse_args([*TINY, "--dataset", dataset, "--set",
                                        f"dvs_reader={reader}", "--out", "m.json"])
        return cli.resolve(args)[0].hash

    assert run_hash("cifar10_dvs", "tonic") != run_hash("cifar10_dvs", "spikingjelly")
    # other datasets ignore the reader, so their identities (and results) are unchanged
    assert run_hash("digits", "tonic") == run_hash("digits", "spikingjelly")
