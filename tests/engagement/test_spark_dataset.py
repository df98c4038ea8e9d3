"""The forecasting dataset on Spark equals the polars engine's, array for array, with the same one-line errors.

Reference: :func:`engagement.build_dataset` on the same logs (simulated, 400 members x 30 days, seed 0:
the default 14 + 14-day windows fit with two days to spare).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from dwellrank_logs.errors import DwellrankError
from engagement import EngagementData, WindowConfig, build_dataset, read_logs
from engagement.transitions import transition_array
from simulate import WorldConfig, simulate_to
from tests.engagement.test_transitions import _hand_counts
from tests.engagement.test_transitions import _logs as transition_logs

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.spark, pytest.mark.slow]

from engagement.spark_dataset import build_dataset_spark, session_documents_spark  # noqa: E402

INT_FIELDS = ("member_id", "n_sessions", "active_days", "y_day", "y_session", "lengths", "session_counts")
FLOAT_FIELDS = ("nu", "ctx", "macro", "delivery", "activity", "transitions")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spark_eng") / "logs"
    simulate_to(out, WorldConfig(n_members=400, n_days=30), seed=0, keep_tables=False)
    return out


def assert_same(a: EngagementData, b: EngagementData) -> None:
    for f in INT_FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape, f
        np.testing.assert_array_equal(x, y, err_msg=f)
    for f in FLOAT_FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape, f
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12, err_msg=f)
    assert (a.start, a.window, a.macro_names, a.delivery_names, a.context_names) == (
        b.start,
        b.window,
        b.macro_names,
        b.delivery_names,
        b.context_names,
    )


def test_spark_dataset_equals_polars_on_a_logs_directory(logs: Path, spark: Any):
    polars_data = build_dataset(read_logs(logs))
    assert polars_data.n_members > 300 and polars_data.delivery[:, 0].sum() > 0  # members kept, deliveries seen
    assert_same(polars_data, build_dataset_spark(logs, spark=spark))


def test_spark_dataset_equals_polars_on_dataframes_with_other_windows(logs: Path, tmp_path: Path, spark: Any):
    # Spark DataFrames as input (Hive tables arrive so), timestamps without a time zone (read as UTC by both
    # engines; Spark reads them as TIMESTAMP_NTZ), a later start, a short sequence cap and another filter.
    naive = tmp_path / "naive"
    shutil.copytree(logs, naive, ignore=shutil.ignore_patterns("impressions.parquet", "updates.parquet", "truth*"))
    for table, column in (("sessions", "start_ts"), ("deliveries", "ts"), ("events", "ts")):
        path = naive / f"{table}.parquet"
        pl.read_parquet(path).with_columns(pl.col(column).dt.replace_time_zone(None)).write_parquet(path)
    w = WindowConfig(history_days=10, future_days=7, min_history_sessions=3, max_sessions=8, start_date="2026-01-06")
    tables = {t: spark.read.parquet(str(naive / f"{t}.parquet")) for t in ("members", "sessions", "events", "deliveries")}
    assert tables["sessions"].schema["start_ts"].dataType.typeName() == "timestamp_ntz"
    polars_data = build_dataset(read_logs(naive), w)
    assert polars_data.lengths.max() == 8
    assert_same(polars_data, build_dataset_spark(tables, w, spark))


def test_session_documents_are_the_lda_corpus(logs: Path, spark: Any):
    data = build_dataset(read_logs(logs))
    tables = {t: spark.read.parquet(str(logs / f"{t}.parquet")) for t in ("members", "sessions", "events", "deliveries")}
    docs = pl.DataFrame(pl.from_arrow(session_documents_spark(tables, data.start, data.window).drop("session_id").toArrow())).to_numpy()
    got = np.unique(docs, axis=0, return_counts=True)
    want = np.unique(data.session_counts, axis=0, return_counts=True)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def _rewrite(table: str, change: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[Path, Path], None]:
    def apply(src: Path, dst: Path) -> None:
        change(pl.read_parquet(src / f"{table}.parquet")).write_parquet(dst / f"{table}.parquet")

    return apply


def _remove(table: str) -> Callable[[Path, Path], None]:
    def apply(src: Path, dst: Path) -> None:
        (dst / f"{table}.parquet").unlink()

    return apply


# (bad logs, window): each engine must raise the same exception type with the same one-line message.
BAD_LOGS: list[Any] = [
    pytest.param(_remove("events"), None, id="missing-table-file"),
    pytest.param(_rewrite("sessions", lambda f: f.drop("duration_s")), None, id="missing-column"),
    pytest.param(_rewrite("sessions", lambda f: f.with_columns(pl.col("duration_s").cast(pl.String))), None, id="wrong-type-float"),
    pytest.param(_rewrite("members", lambda f: f.with_columns(pl.col("is_premium").cast(pl.Int8))), None, id="wrong-type-bool"),
    pytest.param(_rewrite("sessions", lambda f: f.with_columns(start_ts=pl.col("start_ts").cast(pl.Date))), None, id="wrong-type-datetime"),
    pytest.param(
        _rewrite(
            "events",
            lambda f: f.with_columns(event_type=pl.when(pl.int_range(pl.len()) % 97 == 0).then(pl.lit("swipe")).otherwise("event_type")),
        ),
        None,
        id="unknown-event-type",
    ),
    pytest.param(
        _rewrite(
            "deliveries", lambda f: f.with_columns(channel=pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("fax")).otherwise("channel"))
        ),
        None,
        id="unknown-channel",
    ),
    pytest.param(
        _rewrite("sessions", lambda f: f.with_columns(client=pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise("client"))),
        None,
        id="null-value",
    ),
    pytest.param(_rewrite("sessions", lambda f: pl.concat([f, f.head(2)])), None, id="repeated-key"),
    pytest.param(_rewrite("members", lambda f: f.head(0)), None, id="empty-members"),
    pytest.param(None, WindowConfig(history_days=20, future_days=20), id="logs-too-short"),
    pytest.param(None, WindowConfig(min_history_sessions=10_000), id="no-member-kept"),
]


@pytest.mark.parametrize(("mutate", "window"), BAD_LOGS)
def test_bad_input_gets_the_polars_message(logs: Path, tmp_path: Path, spark: Any, mutate: Any, window: WindowConfig | None):
    bad = tmp_path / "logs"
    shutil.copytree(logs, bad, ignore=shutil.ignore_patterns("impressions.parquet", "updates.parquet", "truth*"))
    if mutate is not None:
        mutate(logs, bad)
    with pytest.raises(DwellrankError) as polars_error:
        build_dataset(read_logs(bad), window)
    with pytest.raises(DwellrankError) as spark_error:
        build_dataset_spark(bad, window, spark)
    assert type(spark_error.value) is type(polars_error.value)
    assert str(spark_error.value) == str(polars_error.value)
    assert "\n" not in str(spark_error.value) and "at org.apache" not in str(spark_error.value)


@pytest.mark.parametrize(
    "members",
    [
        lambda m: m.select("member_id"),
        # A platform's own columns, one named as a column of the reduction's own ("n").
        lambda m: m.select("member_id", "seniority", "client").with_columns(
            n=(pl.col("member_id") % 3).cast(pl.Int32), score=pl.col("member_id") / 7.0, verified=pl.col("member_id") % 2 == 0
        ),
    ],
    ids=["member_id-only", "own-columns"],
)
def test_spark_dataset_equals_polars_on_a_reduced_members_table(
    logs: Path, tmp_path: Path, spark: Any, members: Callable[[pl.DataFrame], pl.DataFrame]
):
    out = tmp_path / "logs"
    shutil.copytree(logs, out)
    members(pl.read_parquet(logs / "members.parquet")).write_parquet(out / "members.parquet")
    polars_data = build_dataset(read_logs(out))
    spark_data = build_dataset_spark(out, spark=spark)
    assert_same(polars_data, spark_data)
    assert polars_data.member_columns == spark_data.member_columns


def test_null_feature_column_is_the_same_error_on_both_engines(logs: Path, tmp_path: Path, spark: Any):
    out = tmp_path / "logs"
    shutil.copytree(logs, out)
    m = pl.read_parquet(logs / "members.parquet").select("member_id")
    m.with_columns(score=pl.when(pl.col("member_id") % 100 == 0).then(None).otherwise(1.0)).write_parquet(out / "members.parquet")
    messages = []
    for build in (lambda: build_dataset(read_logs(out)), lambda: build_dataset_spark(out, spark=spark)):
        with pytest.raises(DwellrankError, match=r"macroscopic feature column\(s\) 'score' \(\d+ null or NaN\)") as err:
            build()
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_spark_transitions_equal_the_hand_counted_log(tmp_path: Path, spark: Any):
    # The hand-written log of test_transitions: events out of row order and a tie in time (broken by type
    # index). One Spark job, the transition step alone, on the history sessions (member, session, day).
    from engagement.spark_dataset import _day_transitions

    logs = transition_logs()
    hist = logs["sessions"].select("member_id", "session_id", day=pl.col("start_ts").dt.day() - 5).filter(pl.col("day") < 2)
    for name, frame in (("events", logs["events"]), ("hist", hist)):
        frame.write_parquet(tmp_path / f"{name}.parquet")
    got = pl.from_arrow(
        _day_transitions(spark.read.parquet(str(tmp_path / "events.parquet")), spark.read.parquet(str(tmp_path / "hist.parquet"))).toArrow()
    )
    kept = pl.DataFrame({"member_id": [1, 2], "row": [0, 1]})
    np.testing.assert_array_equal(transition_array(got, kept, 2), _hand_counts())  # type: ignore[arg-type]
