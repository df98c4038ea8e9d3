"""``dwellrank forecast train / score --engine spark``: the polars engine's datasets, so the same split and scores.

The reference is the polars engine on the same logs: ``forecast score`` of a model over the logs read by
Spark (catalog tables ``hive:global_temp.fc``) equals polars' scores; a model trained with ``--engine spark``
on the logs' ``file://`` URI has the polars model's members and split (its intents come from Spark's LDA, so
its weights differ).  The commands run in this process on the test run's session
(``--spark-master local[2]``, the fixture's), which they use and leave running.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from cli import main

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.spark, pytest.mark.slow]

FAST = ["--epochs", "1", "--k-min", "7", "--k-max", "7", "--history-days", "8", "--future-days", "7", "--min-sessions", "2", "--quiet"]
SPARK = ["--engine", "spark", "--spark-master", "local[2]"]


def _ok(*args: str) -> None:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from simulate import WorldConfig, simulate_to

    out = tmp_path_factory.mktemp("fc_spark") / "logs"
    simulate_to(out, WorldConfig(n_members=200, n_days=16), seed=3, keep_tables=False)
    return out


def test_forecast_train_and_score_on_spark_match_polars(logs: Path, tmp_path: Path, spark: Any):
    polars_model, spark_model = tmp_path / "polars_model", tmp_path / "spark_model"
    _ok("forecast", "train", "--logs", str(logs), "--task", "session", "--out", str(polars_model), *FAST)
    _ok("forecast", "train", "--logs", logs.absolute().as_uri(), "--task", "session", "--out", str(spark_model), *FAST, *SPARK)
    pm, sm = (json.loads((d / "meta.json").read_text()) for d in (polars_model, spark_model))
    assert sm["engine"] == "spark" and "engine" not in pm
    assert (sm["n_members"], sm["split_sizes"], sm["intents"]["k"]) == (pm["n_members"], pm["split_sizes"], 7)
    assert {p.name for p in spark_model.iterdir()} == {p.name for p in polars_model.iterdir()}

    for t in ("members", "sessions", "events", "deliveries"):
        spark.read.parquet(str(logs / f"{t}.parquet")).createOrReplaceGlobalTempView(f"fc_{t}")
    want, got = tmp_path / "polars.parquet", tmp_path / "spark.parquet"
    try:
        _ok("forecast", "score", "--model", str(polars_model), "--logs", str(logs), "--out", str(want), "--quiet")
        _ok("forecast", "score", "--model", str(polars_model), "--logs", "hive:global_temp.fc", "--out", got.as_uri(), "--quiet", *SPARK)
    finally:
        for t in ("members", "sessions", "events", "deliveries"):
            spark.catalog.dropGlobalTempView(f"fc_{t}")
    expected = pl.read_parquet(want)
    assert expected.height == pm["n_members"] > 100
    assert_frame_equal(pl.read_parquet(got), expected, check_exact=False, rel_tol=0, abs_tol=1e-9)
    assert spark.range(2).count() == 2  # the commands left the session running


def test_forecast_compare_on_spark_matches_polars_where_the_intents_do_not_enter(logs: Path, tmp_path: Path, spark: Any):
    """``forecast compare --engine spark`` end to end: the same members, split and intent-free baselines as polars.

    LR and LightGBM read the dataset's arrays only, which the Spark reduction gives equal to polars'
    (tests/engagement/test_spark_dataset.py), so their metrics are equal; DIGMN reads the intents,
    which come from Spark's LDA here, so only its presence and a valid AUROC are checked.
    """
    models = ["--models", "LR,LightGBM,DIGMN", "--seeds", "1"]
    polars_out, spark_out = tmp_path / "polars_cmp", tmp_path / "spark_cmp"
    _ok("forecast", "compare", "--logs", str(logs), "--task", "session", "--out", str(polars_out), *models, *FAST)
    _ok("forecast", "compare", "--logs", logs.absolute().as_uri(), "--task", "session", "--out", str(spark_out), *models, *FAST, *SPARK)
    want, got = (json.loads((d / "comparison.json").read_text()) for d in (polars_out, spark_out))
    assert {p.name for p in spark_out.iterdir()} == {p.name for p in polars_out.iterdir()} >= {"comparison.json", "table.txt"}
    assert (got["n_members"], got["split_sizes"], got["n_intents"]) == (want["n_members"], want["split_sizes"], 7)
    runs = {(r["model"], r["seed"]): r for r in got["runs"]}
    for r in want["runs"]:
        g = runs[(r["model"], r["seed"])]
        if r["model"] == "DIGMN":
            assert 0.0 <= g["auroc"] <= 1.0
            continue
        for metric in ("auroc", "macro_f1", "accuracy"):
            assert g[metric] == pytest.approx(r[metric], abs=1e-12), (r["model"], metric)
    assert spark.range(2).count() == 2
