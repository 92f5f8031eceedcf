"""Shared fixtures: one CPU thread (small shared machines) and seeded random number generators."""

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
