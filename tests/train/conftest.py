"""Fixtures for trainer tests: tiny models and data, one torch thread (the CI box is shared)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Two intra-op threads on a loaded 2-core machine are >10x slower than one for these tiny
    # models (spin-waiting); one thread also makes timings stable.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _keep_global_rng():
    """Trainer.fit seeds torch's global RNG: give it back as it was after each test."""
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)
