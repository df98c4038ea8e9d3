"""Batch ranking on Spark against the polars engine (``rank_candidates_file``) on the same simulated logs.

Reference: the polars engine's output on the same model and candidates (issue 14's parity rule): every
prediction and the score within 1e-12, identical ranks and top-k rows, the same output columns and types,
and the same one-line errors for bad input.  Features are equal bit for bit (the history joins and the
feature definitions); the scores differ by at most a few ulps because the heads' linear part is a BLAS
matrix-vector product whose rounding depends on the batch (polars scores the whole table at once, Spark per
Arrow batch).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dwellrank_logs.errors import ConfigError, OutputExistsError, SchemaError
from dwellrank_logs.io import open_parquet, scan_logs, table_path
from dwellrank_logs.protocol import CANDIDATE_COLUMNS
from dwellrank_logs.schema import ACTIONS
from dwellrank_pipeline.demo import last_day_candidates
from ranking import TrainConfig, ValueWeights, rank_candidates_file, train_ranker
from ranking.features import candidate_features, history_from_logs, member_profiles
from ranking.model import RankerModel
from simulate import WorldConfig
from simulate.output import simulate_to

pytestmark = pytest.mark.spark

KEYS = ["request_id", "update_id"]


@dataclass(frozen=True)
class World:
    root: Path
    model: RankerModel

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"


def _recent_candidates(logs: Path, n_days: int) -> pl.DataFrame:
    """As dwellrank_pipeline.demo.last_day_candidates, for the sessions of the last ``n_days`` days."""
    ses = pl.scan_parquet(table_path(logs, "sessions"))
    last = ses.select(pl.col("start_ts").max().dt.truncate("1d")).collect().item()
    day_sessions = ses.filter(pl.col("start_ts") >= last - dt.timedelta(days=n_days - 1))
    return (
        pl.scan_parquet(table_path(logs, "impressions"))
        .select("session_id", "member_id", "update_id")
        .join(day_sessions.select("session_id", pl.col("start_ts").alias("request_ts"), "client"), on="session_id")
        .join(
            pl.scan_parquet(table_path(logs, "updates")).select("update_id", "update_type", "author_id", "topic", "created_ts"),
            on="update_id",
        )
        .rename({"session_id": "request_id"})
        .select(*CANDIDATE_COLUMNS)
        .sort("request_id", "update_id")
        .collect()
    )


def _with_features(cand: pl.DataFrame, logs: Path, model: RankerModel) -> pl.DataFrame:
    """Keys, the model's features (from the polars engine) and a logged ``position`` that both engines ignore."""
    tables = scan_logs(logs, ("impressions", "sessions", "updates", "members"))
    day = cand["request_ts"].dt.date()[0]
    history = history_from_logs(tables["impressions"], tables["sessions"], tables["updates"], day, model.t_skip_s)
    feats = candidate_features(cand, history, member_profiles(tables["members"]), model.feature_set).drop("position")
    position = pl.Series("position", np.arange(cand.height, dtype=np.int32) % 7)
    return pl.concat([cand.select("request_id", "member_id", "update_id"), feats], how="horizontal").with_columns(position)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("spark_rank")
    result = simulate_to(root / "logs", WorldConfig(n_members=400, n_days=6), seed=3)
    model = train_ranker(result, config=TrainConfig(feature_set="dwell", t_skip_s=2.5, seed=0, baselines=False, skip_lift=False))
    model.save(root / "model")
    last = last_day_candidates(root / "logs")
    last.write_parquet(root / "last_day.parquet")
    _recent_candidates(root / "logs", 3).write_parquet(root / "three_days.parquet")
    _with_features(last, root / "logs", model).write_parquet(root / "features.parquet")
    return World(root, model)


def _assert_same(expected: pl.DataFrame, spark_dir: Path) -> None:
    got = open_parquet(spark_dir, "ranked candidates").collect()  # the project's reader: a clean dataset directory
    assert got.schema == expected.schema
    assert got.height == expected.height
    a, b = expected.sort(KEYS), got.sort(KEYS)
    assert a.select(*KEYS, "member_id", "rank").equals(b.select(*KEYS, "member_id", "rank"))
    floats = [c for c, t in expected.schema.items() if t == pl.Float64]
    assert "score" in floats and "p_skip" in floats
    worst = max(float(np.max(np.abs(a[c].to_numpy() - b[c].to_numpy()))) for c in floats)
    assert worst <= 1e-12, worst


def test_features_given_match_polars(spark, world, tmp_path):
    from ranking.spark_rank import rank_candidates_spark

    src = world.root / "features.parquet"
    expected = rank_candidates_file(world.model_dir, src, tmp_path / "polars.parquet")
    ranked = rank_candidates_spark(world.model_dir, src, tmp_path / "spark", spark)
    _assert_same(expected, tmp_path / "spark")
    assert (ranked.rows, ranked.requests) == (expected.height, expected["request_id"].n_unique())
    assert ranked.mean_score == pytest.approx(float(expected["score"].mean()), abs=1e-12)


def test_features_from_logs_match_polars_over_several_request_days(spark, world, tmp_path):
    """The demo's last-day candidates and those of the two days before: one history per request day."""
    from ranking.spark_rank import rank_candidates_spark

    src = world.root / "three_days.parquet"
    days = pl.read_parquet(src)["request_ts"].dt.date()
    assert days.n_unique() == 3
    last = pl.read_parquet(world.root / "last_day.parquet")
    assert last.height == (days == days.max()).sum()
    expected = rank_candidates_file(world.model_dir, src, tmp_path / "polars.parquet", top_k=5, logs_dir=world.logs)
    rank_candidates_spark(world.model_dir, src, tmp_path / "spark", spark, top_k=5, logs=world.logs)
    _assert_same(expected, tmp_path / "spark")


def test_ties_are_ranked_by_row_order_as_in_polars(spark, world, tmp_path):
    """All-zero weights score every row 0: both engines then rank each request in row order (a Spark frame, top 3)."""
    from ranking.spark_rank import rank_candidates_spark

    zero = {a: 0.0 for a in ACTIONS}
    weights = ValueWeights(w=zero, alpha=zero, beta=zero, skip_penalty=0.0)
    src = tmp_path / "shuffled.parquet"
    pl.read_parquet(world.root / "features.parquet").sample(fraction=1.0, shuffle=True, seed=0).write_parquet(src)
    expected = rank_candidates_file(world.model_dir, src, tmp_path / "polars.parquet", weights=weights)
    assert (expected["score"] == 0.0).all()
    rank_candidates_spark(
        world.model_dir, spark.read.parquet(str(src)), tmp_path / "spark", spark, weights=weights
    )  # one partition, in file order
    _assert_same(expected, tmp_path / "spark")


def _drop(c):
    return lambda f: f.drop(c)


def _nulls(c, n):
    return lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) < n).then(None).otherwise(pl.col(c)).alias(c))


BAD = [
    # (source file, with logs, change, message regex)
    ("last_day", True, _drop("client"), r"candidate table is missing column\(s\) 'client'"),
    (
        "last_day",
        True,
        lambda f: f.with_columns(pl.col("topic").cast(pl.String)),
        r"candidate column 'topic' must be an integer type, got String",
    ),
    ("last_day", True, _nulls("member_id", 2), r"candidate column 'member_id' has 2 null value\(s\)"),
    ("last_day", True, _nulls("request_ts", 1), r"candidate column 'request_ts' has 1 null value\(s\)"),
    ("last_day", True, lambda f: f.head(0), r"candidates file has no rows"),
    ("last_day", True, lambda f: f.with_columns(pl.lit(10**9, pl.Int64).alias("member_id")), r"1 member_id\(s\) have no profile"),
    ("features", False, _drop("u_clicks"), r"missing feature column\(s\) 'u_clicks' needed by feature set 'dwell'"),
    ("features", False, lambda f: f.with_columns(pl.col("age_h").cast(pl.String)), r"feature column 'age_h' must be numeric, got String"),
    (
        "features",
        False,
        lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) < 3).then(float("nan")).otherwise(pl.col("age_h")).alias("age_h")),
        r"feature column 'age_h' has 3 null/NaN/infinite value\(s\)",
    ),
]


@pytest.mark.parametrize(("name", "with_logs", "change", "message"), BAD, ids=[b[3][:40] for b in BAD])
def test_bad_input_gets_the_polars_engines_one_line_error(spark, world, tmp_path, name, with_logs, change, message):
    from ranking.spark_rank import rank_candidates_spark

    src = tmp_path / "bad.parquet"
    change(pl.read_parquet(world.root / f"{name}.parquet")).write_parquet(src)
    logs = world.logs if with_logs else None
    with pytest.raises(SchemaError, match=message) as polars_err:
        rank_candidates_file(world.model_dir, src, tmp_path / "polars.parquet", logs_dir=logs)
    # The log tables as Spark frames (Hive tables would come as spark.table(name)); the parity tests read the directory.
    tables = {t: spark.read.parquet(str(table_path(world.logs, t))) for t in ("impressions", "sessions", "updates", "members")}
    with pytest.raises(SchemaError, match=message) as spark_err:
        rank_candidates_spark(world.model_dir, src, tmp_path / "spark", spark, logs=tables if with_logs else None)
    assert str(spark_err.value) == str(polars_err.value)
    assert "\n" not in str(spark_err.value)
    assert not (tmp_path / "spark").exists()


def test_checks_before_any_work(spark, world, tmp_path):
    from ranking.spark_rank import rank_candidates_spark

    missing = tmp_path / "nope.parquet"
    with pytest.raises(SchemaError) as polars_err:
        rank_candidates_file(world.model_dir, missing, tmp_path / "p.parquet")
    with pytest.raises(SchemaError) as spark_err:
        rank_candidates_spark(world.model_dir, missing, tmp_path / "spark", spark)
    assert str(spark_err.value) == str(polars_err.value)
    with pytest.raises(ConfigError, match="top_k must be an integer >= 1, got 0"):
        rank_candidates_spark(world.model_dir, world.root / "features.parquet", tmp_path / "spark", spark, top_k=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        rank_candidates_spark(world.model_dir, world.root / "features.parquet", tmp_path / "full", spark)
    assert (tmp_path / "full" / "keep.txt").exists()
