"""Fixtures of the engagement tests: one small simulated world written to disk, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from engagement import EngagementData, build_dataset, read_logs
from simulate import SimulationResult, WorldConfig, simulate, write_simulation


@pytest.fixture(scope="session")
def eng_world() -> SimulationResult:
    """1,500 members x 28 days, seed 11 (14 history + 14 future days)."""
    return simulate(WorldConfig(n_members=1500, n_days=28), seed=11)


@pytest.fixture(scope="session")
def eng_logs(eng_world: SimulationResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eng") / "logs"
    write_simulation(eng_world, out)
    return out


@pytest.fixture(scope="session")
def eng_data(eng_logs: Path) -> EngagementData:
    return build_dataset(read_logs(eng_logs))
