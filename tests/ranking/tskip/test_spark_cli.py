"""``dwellrank estimate-tskip --engine spark``: the same JSON as the polars engine, and the same one-line errors.

Run as a subprocess: the command builds and stops its own SparkSession, which must not be the
test run's shared one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from simulate import WorldConfig, simulate, write_simulation

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=Path(__file__).parents[3])


@pytest.fixture(scope="module")
def impressions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logs = write_simulation(simulate(WorldConfig(n_members=600, n_days=5), seed=2), tmp_path_factory.mktemp("logs"))
    return Path(logs) / "impressions.parquet"


def test_spark_engine_writes_the_polars_json(impressions: Path, tmp_path: Path):
    spark_out, polars_out = tmp_path / "spark.json", tmp_path / "polars.json"
    res = _cli("estimate-tskip", "--engine", "spark", "--impressions", str(impressions), "--out", str(spark_out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert _cli("estimate-tskip", "--impressions", str(impressions), "--out", str(polars_out), "--quiet").returncode == 0
    assert spark_out.read_bytes() == polars_out.read_bytes()


def test_spark_engine_bad_input_is_one_line_and_writes_nothing(impressions: Path, tmp_path: Path):
    bad = tmp_path / "bad.parquet"
    pl.read_parquet(impressions).drop("dwell_s").write_parquet(bad)
    out = tmp_path / "t.json"
    res = _cli("estimate-tskip", "--engine", "spark", "--impressions", str(bad), "--out", str(out))
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing column(s) 'dwell_s'" in errors[0], res.stderr
    assert "Traceback" not in res.stderr and "at org.apache" not in res.stderr
    assert not out.exists()
