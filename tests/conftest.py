"""Shared fixtures: small simulated worlds, built once per test session."""

from __future__ import annotations

import pytest
from hypothesis import settings

from simulate import SimulationResult, WorldConfig, simulate

# Property tests draw the same examples on every run: CI must not flake on a new random draw.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")


@pytest.fixture(scope="session")
def small_world() -> SimulationResult:
    """1,500 members x 21 days, seed 7 (about 250K impressions)."""
    return simulate(WorldConfig(n_members=1500, n_days=21), seed=7)
