"""The training frame on Spark against the polars engine on the same logs: equal values, equal messages.

Reference: :func:`ranking.features.training_frame` (the polars batch path),
itself checked against the simulator's online features in
``test_batch_online.py``.  Rows are matched by (request_id, update_id);
counts, profiles, one-hots, labels and targets must be equal exactly, the
derived floats (rates, ages) within 1e-12 (the engines apply the same IEEE
operations in the same order, so they are in fact equal bit for bit).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

pytest.importorskip("pyspark")

from dwellrank_logs.errors import DwellrankError, SchemaError
from dwellrank_logs.io import scan_logs
from ranking.features import FEATURE_SETS, training_frame
from ranking.features.catalogue import _DEFS
from ranking.features.frame_file import read_training_frame
from ranking.features.spark_tables import read_logs_spark
from ranking.features.spark_training import _spark_feature, training_frame_spark
from ranking.heads import HeadConfig
from ranking.regressors import RegressorConfig
from ranking.train import TrainConfig, train_ranker
from ranking.train_spark import train_ranker_spark
from simulate import WorldConfig, simulate, write_simulation

# One Spark session start (shared) and about a dozen small jobs.
pytestmark = [pytest.mark.slow, pytest.mark.spark]

_TABLES = ("impressions", "sessions", "updates", "members")
_T_SKIP = 2.5
# Few trees and no baselines: the tests compare engines, not models.
_FAST = TrainConfig(
    t_skip_s=_T_SKIP, seed=4, baselines=False, skip_lift=False, head=HeadConfig(n_trees=4), regressor=RegressorConfig(n_trees=2)
)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 members x 6 days, seed 3 (about 20K impressions), written as the simulator writes its logs."""
    return write_simulation(simulate(WorldConfig(n_members=400, n_days=6), seed=3), tmp_path_factory.mktemp("spark_features") / "logs")


@pytest.fixture(scope="module")
def polars_frames(logs: Path) -> dict[str, pl.DataFrame]:
    return {name: training_frame(scan_logs(logs, _TABLES), name, _T_SKIP) for name in FEATURE_SETS}


def _assert_same(expected: pl.DataFrame, got: pl.DataFrame) -> None:
    """Same columns and types; rows matched by (request_id, update_id): exact, derived floats within 1e-12."""
    assert got.schema == expected.schema
    assert got.height == expected.height
    keys = ["request_id", "update_id"]
    assert not expected.select(keys).is_duplicated().any()
    both = expected.join(got, on=keys, how="inner", suffix="_spark")
    assert both.height == expected.height  # every row has its match
    for c in expected.columns:
        if c in keys:
            continue
        a, b = both[c], both[f"{c}_spark"]
        if c in _DEFS and _DEFS[c][0] in ("rate", "age_h"):
            assert a.is_null().equals(b.is_null()), c
            assert (a - b).abs().fill_null(0.0).max() <= 1e-12, c  # type: ignore[operator]
        else:
            assert a.equals(b), c


def test_every_feature_of_every_set_has_a_spark_rendering(spark):
    from pyspark.sql import Column

    for fs in FEATURE_SETS.values():
        for c in fs.columns:
            assert isinstance(_spark_feature(_DEFS[c]), Column), c
    with pytest.raises(SchemaError, match="no Spark rendering"):
        _spark_feature(("median", "u_imp"))


def test_base_frame_equals_polars(spark, logs: Path, polars_frames: dict[str, pl.DataFrame]):
    frame = training_frame_spark(read_logs_spark(logs, spark), "base", _T_SKIP)
    _assert_same(polars_frames["base"], pl.DataFrame(pl.from_arrow(frame.toArrow())))


def test_dwell_frame_written_by_spark_equals_polars_and_trains_the_same_model(
    spark, logs: Path, polars_frames: dict[str, pl.DataFrame], tmp_path: Path
):
    expected = polars_frames["dwell"]
    frame_dir = tmp_path / "frame"
    sampled = train_ranker_spark(logs, _FAST, spark, max_rows=4000, frame_dir=frame_dir)
    full, info = read_training_frame(frame_dir, "dwell", _T_SKIP, _FAST.t_long_s)
    _assert_same(expected, full)
    # The parts hold the rows in the polars frame's order (no two impressions share a (day, ts) here).
    assert full.equals(expected)
    assert info == {"engine": "spark", "frame_rows": expected.height, "sample_rows": None}
    assert {k: sampled.metadata["data"][k] for k in ("engine", "frame_rows", "sample_rows", "sample_seed", "n_rows")} == {
        "engine": "spark",
        "frame_rows": expected.height,
        "sample_rows": 4000,
        "sample_seed": _FAST.seed,
        "n_rows": 4000,
    }
    # The sample: seeded, distinct rows of the frame, in its order.
    a, _ = read_training_frame(frame_dir, "dwell", _T_SKIP, _FAST.t_long_s, max_rows=4000, rng=1)
    b, _ = read_training_frame(frame_dir, "dwell", _T_SKIP, _FAST.t_long_s, max_rows=4000, rng=1)
    assert a.equals(b) and a.height == 4000
    assert a.join(expected, on=list(expected.columns), how="semi").height == 4000
    assert a.select("day", "ts").equals(a.select("day", "ts").sort("day", "ts"))
    # A frame of other thresholds or another feature set is refused, naming both.
    with pytest.raises(SchemaError, match=r"built with feature set 'dwell' v2, t_skip_s=2.5, .*asks for 'dwell' v2, t_skip_s=3.0"):
        read_training_frame(frame_dir, "dwell", 3.0, _FAST.t_long_s)
    with pytest.raises(SchemaError, match=r"asks for 'base' v2"):
        read_training_frame(frame_dir, "base", _T_SKIP, _FAST.t_long_s)
    # From the whole frame, the same model as the polars engine's.
    on_polars = train_ranker(logs, config=_FAST)
    on_frame = train_ranker(logs, config=_FAST, frame=frame_dir)
    assert on_frame.report == on_polars.report
    assert on_frame.weights.to_dict() == on_polars.weights.to_dict()
    assert on_frame.metadata["data"]["engine"] == "spark" and on_polars.metadata["data"]["engine"] == "polars"


def _drop(column: str) -> Callable[[pl.DataFrame], pl.DataFrame]:
    return lambda f: f.drop(column)


def _as_string(column: str) -> Callable[[pl.DataFrame], pl.DataFrame]:
    return lambda f: f.with_columns(pl.col(column).cast(pl.String))


# (table, change, message): the same one-line SchemaError from both engines.
BAD_INPUT = [
    ("impressions", _drop("position"), r"impressions table is missing column\(s\) 'position'"),
    ("impressions", _as_string("dwell_s"), r"column 'dwell_s' must be a numeric type .*, got String"),
    ("sessions", _as_string("start_ts"), r"column 'start_ts' must be a Datetime type .*, got String"),
    ("members", lambda f: f.with_columns(pl.col("connections").cast(pl.Float64)), r"column 'connections' must be an integer type"),
    ("members", lambda f: f.filter(pl.col("member_id") % 7 != 0), r"impressions: \d+ member_id\(s\) have no profile .*first: \[0, "),
]


def _error(fn: Callable[[], Any]) -> tuple[type, str]:
    with pytest.raises(DwellrankError) as info:
        fn()
    return type(info.value), str(info.value)


@pytest.mark.parametrize(("table", "change", "message"), BAD_INPUT)
def test_bad_input_gets_the_polars_message(spark, logs: Path, tmp_path: Path, table: str, change: Any, message: str):
    bad = tmp_path / "logs"
    bad.mkdir()
    for name in _TABLES:
        shutil.copy(logs / f"{name}.parquet", bad / f"{name}.parquet")
    change(pl.read_parquet(logs / f"{table}.parquet")).write_parquet(bad / f"{table}.parquet")
    on_polars = _error(lambda: training_frame(scan_logs(bad, _TABLES), "dwell", _T_SKIP))
    on_spark = _error(lambda: training_frame_spark(read_logs_spark(bad, spark), "dwell", _T_SKIP))
    assert on_spark == on_polars
    assert on_spark[0] is SchemaError and "\n" not in on_spark[1]
    assert re.search(message, on_spark[1])


def test_a_spark_frame_without_a_column_gets_a_one_line_error(spark, logs: Path):
    tables = read_logs_spark(logs, spark)
    tables["updates"] = tables["updates"].drop("topic")
    kind, text = _error(lambda: training_frame_spark(tables, "base", _T_SKIP))
    assert kind is SchemaError and "\n" not in text
    assert text.startswith("<updates>: updates table is missing column(s) 'topic'")


def test_large_logs_get_more_shuffle_partitions_and_the_same_frame(
    spark, logs: Path, polars_frames: dict[str, pl.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Past ROWS_PER_PARTITION impressions per shuffle partition the job raises the count for itself (restored after):
    more part files, the same rows (the reduction does not depend on the partitioning)."""
    import ranking.features.spark_training as st

    before = spark.conf.get("spark.sql.shuffle.partitions")
    n = polars_frames["dwell"].height
    monkeypatch.setattr(st, "ROWS_PER_PARTITION", max(n // (3 * int(before)), 1))
    coalesce = "spark.sql.adaptive.coalescePartitions.enabled"  # off here, so that the part files show the count
    spark.conf.set(coalesce, "false")
    try:
        meta = st.write_training_frame_spark(read_logs_spark(logs, spark), tmp_path / "frame", "dwell", _T_SKIP)
    finally:
        spark.conf.unset(coalesce)
    assert spark.conf.get("spark.sql.shuffle.partitions") == before
    assert meta["n_rows"] == n
    assert len(list((tmp_path / "frame").glob("part-*.parquet"))) >= 3 * int(before)
    full, _ = read_training_frame(tmp_path / "frame", "dwell", _T_SKIP, 10.0)
    assert full.equals(polars_frames["dwell"])
