"""Shared fixtures: small simulated worlds, built once per test session."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

from simulate import SimulationResult, WorldConfig, simulate

# Property tests draw the same examples on every run: CI must not flake on a new random draw.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")


def pytest_configure(config: pytest.Config) -> None:
    """Native scoring off unless a test turns it on (:func:`native_scoring`), its cache in a temporary folder.

    Each model a ranker serves natively is compiled once (seconds); the suite trains hundreds of throwaway
    models whose scores the numpy forest gives equally (to 1e-12, tests/ranking/test_native.py).  The
    tests of the native path and the end-to-end runs turn it on.  ``DWELLRANK_NATIVE=1 pytest`` serves
    every test natively; the user's own cache is never touched.
    """
    os.environ.setdefault("DWELLRANK_NATIVE", "0")
    os.environ.setdefault("DWELLRANK_NATIVE_CACHE", tempfile.mkdtemp(prefix="dwellrank-native-tests-"))


@pytest.fixture
def native_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rankers in this test score natively where the [fast] extra is installed (as outside the tests)."""
    monkeypatch.setenv("DWELLRANK_NATIVE", "1")


@pytest.fixture(scope="session")
def small_world() -> SimulationResult:
    """1,500 members x 21 days, seed 7 (about 250K impressions)."""
    return simulate(WorldConfig(n_members=1500, n_days=21), seed=7)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one ``local[2]`` SparkSession of the whole run (:func:`dwellrank_logs.spark.local_session`); skips without pyspark."""
    pytest.importorskip("pyspark")
    from dwellrank_logs.spark import local_session

    # C1-only JIT and the serial collector: half the JVM's start-up and first-query time on small test data.
    # The catalog's warehouse in a temporary folder: by default Spark creates spark-warehouse/ in the working directory.
    conf = {
        "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("spark-warehouse")),
    }
    session = local_session("dwellrank-tests", threads=2, driver_memory="1g", conf=conf)
    yield session
    session.stop()
