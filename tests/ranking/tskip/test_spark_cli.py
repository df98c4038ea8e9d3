"""``dwellrank estimate-tskip --engine spark``: the same JSON as the polars engine, and the same one-line errors.

The parity run reuses the test run's shared session in-process (the command leaves a running session
running); the bad-input run is a subprocess, where the command builds and stops its own SparkSession
and its stderr shows whether a Java stack trace leaks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_spark_engine_writes_the_polars_json(impressions: Path, tmp_path: Path, spark: Any):
    from click.testing import CliRunner

    from cli import main

    spark_out, polars_out = tmp_path / "spark.json", tmp_path / "polars.json"
    for engine, out in (("spark", spark_out), ("polars", polars_out)):
        res = CliRunner().invoke(
            main, ["estimate-tskip", "--engine", engine, "--impressions", str(impressions), "--out", str(out), "--quiet"]
        )
        assert res.exit_code == 0, res.output
    assert spark_out.read_bytes() == polars_out.read_bytes()
    assert not spark.sparkContext._jsc.sc().isStopped()  # the shared session was used and left running


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
