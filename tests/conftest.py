"""Shared fixtures: one CPU thread (small shared machines), seeded random number generators, and
the determinism flags restored after tests that train through the CLI."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(0)  # model initialisation and dropout masks are reproducible per test


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh CPU generator seeded with 0, for test data."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def restore_determinism_flags():
    """Put torch's deterministic-algorithms flags back as they were once the test is done."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slurm tests run last (a stable sort keeps the rest in order): they install Slurm's client
    tools, and once those exist without a running controller every later `snakemake` start
    waits about 9 s in the Slurm executor plugin's import-time probe (`scontrol show config`,
    whatever the executor), which adds minutes to the workflow tests."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)
