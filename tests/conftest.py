"""Shared fixtures. Keep this small: most tests build what they need themselves."""

from __future__ import annotations

import pytest
import torch

import blocks


@pytest.fixture(scope="session")
def bundled_names() -> list[str]:
    return sorted(blocks.bundled_recipes())


@pytest.fixture
def seed_recipe() -> blocks.Recipe:
    return blocks.load_recipe("seed_cnn")


@pytest.fixture
def torch_seed():
    """Seed torch's global RNG for the test and restore its state afterwards."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)
