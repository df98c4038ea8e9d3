"""``estimate-tskip``, ``train`` and ``rank`` with ``--engine spark`` on tables of the Spark catalog (``hive:...``).

The reference is the polars engine on the files the catalog's views were read from: the T_skip JSON is
identical apart from its ``source`` field; every file of the model directory is byte-identical apart
from ``metadata.json`` (engine, frame size) and the manifest that hashes it; the ranks are identical and
the scores within 1e-12.  The commands run in this
process on the test run's session (``--spark-master local[2]``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli import main

pytest.importorskip("pyspark")
pytestmark = pytest.mark.spark

SPARK = ["--engine", "spark", "--spark-master", "local[2]"]
TABLES = ("members", "sessions", "updates", "impressions")


def _ok(*args: str) -> None:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Iterator[Path]:
    """200 members x 16 days (seed 3), its tables also as global views ``global_temp.cl_<table>``."""
    from simulate import WorldConfig, simulate_to

    out = tmp_path_factory.mktemp("spark_logs") / "logs"
    simulate_to(out, WorldConfig(n_members=200, n_days=16), seed=3, keep_tables=False)
    for t in TABLES:
        spark.read.parquet(str(out / f"{t}.parquet")).createOrReplaceGlobalTempView(f"cl_{t}")
    yield out
    for t in TABLES:
        spark.catalog.dropGlobalTempView(f"cl_{t}")


def test_estimate_tskip_from_a_catalog_table(logs: Path, tmp_path: Path):
    polars_json, spark_json = tmp_path / "polars.json", tmp_path / "spark.json"
    _ok("estimate-tskip", "--impressions", str(logs / "impressions.parquet"), "--out", str(polars_json), "--quiet")
    _ok("estimate-tskip", "--impressions", "hive:global_temp.cl_impressions", "--out", spark_json.as_uri(), "--quiet", *SPARK)
    want, got = (json.loads(p.read_text()) for p in (polars_json, spark_json))
    assert got.pop("source") == "hive:global_temp.cl_impressions" and want.pop("source") == str(logs / "impressions.parquet")
    assert got == want and want["t_skip_s"] is not None


@pytest.fixture(scope="module")
def polars_model(logs: Path) -> Path:
    out = logs.parent / "polars_model"
    _ok("train", "--logs", str(logs), "--out", str(out), "--no-baselines", "--quiet")
    return out


@pytest.mark.slow
def test_train_from_catalog_tables_writes_the_polars_model(logs: Path, polars_model: Path, tmp_path: Path):
    spark_model = tmp_path / "spark"
    _ok("train", "--logs", "hive:global_temp.cl", "--out", str(spark_model), "--no-baselines", "--quiet", *SPARK)  # T_skip estimated too
    files = sorted(str(p.relative_to(polars_model)) for p in polars_model.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(spark_model)) for p in spark_model.rglob("*") if p.is_file())
    assert len(files) > 20
    differ = [f for f in files if (polars_model / f).read_bytes() != (spark_model / f).read_bytes()]
    assert differ == ["manifest.json", "metadata.json"]
    meta = json.loads((spark_model / "metadata.json").read_text())
    assert meta["data"]["engine"] == "spark"


@pytest.mark.slow
def test_rank_catalog_candidates_with_catalog_logs(logs: Path, polars_model: Path, tmp_path: Path, spark: Any):
    import numpy as np
    import polars as pl

    from dwellrank_logs.io import open_parquet
    from dwellrank_pipeline.demo import last_day_candidates

    cands = tmp_path / "cands.parquet"
    last_day_candidates(logs).write_parquet(cands)
    spark.read.parquet(str(cands)).createOrReplaceTempView("cl_cands")
    want, got = tmp_path / "polars.parquet", tmp_path / "spark"
    common = ["--model", str(polars_model), "--top-k", "5", "--quiet"]
    _ok("rank", *common, "--candidates", str(cands), "--logs", str(logs), "--out", str(want))
    _ok("rank", *common, "--candidates", "hive:cl_cands", "--logs", "hive:global_temp.cl", "--out", got.as_uri(), *SPARK)
    keys = ["request_id", "update_id"]
    a, b = pl.read_parquet(want).sort(keys), open_parquet(got, "ranked").collect().sort(keys)
    assert a.height > 100 and a.schema == b.schema
    assert a.select(*keys, "rank").equals(b.select(*keys, "rank"))
    floats = [c for c, t in a.schema.items() if t == pl.Float64]
    assert "score" in floats
    assert max(float(np.max(np.abs(a[c].to_numpy() - b[c].to_numpy()))) for c in floats) <= 1e-12
