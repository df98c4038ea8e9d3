"""Logs for the Spark engine given as URIs Spark resolves or as tables of the Spark catalog (``hive:DB[.PREFIX]``).

References: the names of :func:`catalog_names` are the documented rule written out by hand; the data read
through a ``file://`` URI or the catalog is compared with the polars engine's reading of the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dwellrank_logs.errors import ConfigError, OutputError, SchemaError
from dwellrank_logs.spark_sources import catalog_names, driver_path, table_uri
from engagement.dataset import NEEDED_COLUMNS as NEEDED

TABLES = tuple(NEEDED)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("hive:feed", ["feed.members", "feed.sessions"]),
        ("hive:feed.dwell", ["feed.dwell_members", "feed.dwell_sessions"]),
        ("hive:cat.feed.dwell", ["cat.feed.dwell_members", "cat.feed.dwell_sessions"]),
        ("hive:cat.feed.", ["cat.feed.members", "cat.feed.sessions"]),
        ("hive:global_temp.t1", ["global_temp.t1_members", "global_temp.t1_sessions"]),
    ],
)
def test_catalog_names_follow_the_documented_rule(spec: str, expected: list[str]):
    assert list(catalog_names(spec, ("members", "sessions")).values()) == expected


@pytest.mark.parametrize("spec", ["hive:", "hive:.feed", "hive:feed..x", "hive:my feed", "feed"])
def test_bad_catalog_names_are_one_line_errors(spec: str):
    with pytest.raises(ConfigError, match=r"catalog tables are named hive:DB \(DB.members, ...\) or hive:DB.PREFIX") as info:
        catalog_names(spec, ("members",))
    assert repr(spec) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("logs", "expected"),
    [
        ("hdfs://nn:8020/warehouse/feed/", "hdfs://nn:8020/warehouse/feed/impressions.parquet"),
        ("s3a://bucket/feed", "s3a://bucket/feed/impressions.parquet"),
        ("file:///data/logs", "file:///data/logs/impressions.parquet"),
        ("runs/logs", "runs/logs/impressions.parquet"),
    ],
)
def test_table_uri_keeps_the_authority_of_a_uri(logs: str, expected: str):
    assert table_uri(logs, "impressions") == expected


def test_driver_outputs_take_local_paths_and_file_uris_only():
    assert driver_path("file:///tmp/model", "--out") == "/tmp/model"
    assert driver_path("runs/model", "--out") == "runs/model"
    with pytest.raises(OutputError, match=r"^--out s3a://b/m: written by the driver, which writes local paths and file:// URIs only"):
        driver_path("s3a://b/m", "--out")


# --- on Spark: the same data through a URI and through the catalog ------------------------------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from simulate import WorldConfig, simulate_to

    out = tmp_path_factory.mktemp("spark_sources") / "logs"
    simulate_to(out, WorldConfig(n_members=200, n_days=16), seed=3, keep_tables=False)
    return out


def _assert_polars_equal(logs: Path, got: dict[str, Any]) -> None:
    """Each table Spark read equals polars' reading of the same file (the columns read, rows in one order)."""
    import polars as pl
    from polars.testing import assert_frame_equal

    assert set(got) == set(TABLES)
    for t, frame in got.items():
        want = pl.read_parquet(logs / f"{t}.parquet", columns=list(NEEDED[t]))
        assert want.height > 100  # a real table: not two empty frames compared
        read = pl.from_arrow(frame.select(*NEEDED[t]).toArrow())
        assert isinstance(read, pl.DataFrame)
        assert_frame_equal(read.sort(read.columns), want.sort(want.columns))


@pytest.mark.spark
@pytest.mark.slow  # its first Spark query warms up the JVM: 10.7 s alone
def test_file_uri_logs_read_as_the_directory(logs: Path, spark: Any):
    from dwellrank_logs.spark_tables import read_tables_spark

    tables, sources = read_tables_spark(logs.absolute().as_uri(), NEEDED, spark)
    assert sources["members"] == str(logs.absolute() / "members.parquet")
    _assert_polars_equal(logs, tables)


@pytest.mark.spark
def test_catalog_tables_of_a_database_and_with_a_prefix(logs: Path, tmp_path: Path, spark: Any):
    from dwellrank_logs.spark_tables import read_tables_spark

    db = "dwellrank_test_sources"
    spark.sql(f"CREATE DATABASE {db} LOCATION '{(tmp_path / 'warehouse').as_uri()}'")
    try:
        for t in TABLES:
            frame = spark.read.parquet(str(logs / f"{t}.parquet"))
            frame.write.saveAsTable(f"{db}.{t}")  # hive:DB
            frame.createOrReplaceGlobalTempView(f"p3_{t}")  # hive:global_temp.p3 (a prefix)
        tables, sources = read_tables_spark(f"hive:{db}", NEEDED, spark)
        assert sources == {t: f"hive:{db}.{t}" for t in TABLES}
        _assert_polars_equal(logs, tables)
        _assert_polars_equal(logs, read_tables_spark("hive:global_temp.p3", NEEDED, spark)[0])
        spark.sql(f"DROP TABLE {db}.events")
        with pytest.raises(
            SchemaError, match=rf"^hive:{db}.events: cannot read the events table from the Spark catalog \(\[TABLE_OR_VIEW_NOT_FOUND\]"
        ):
            read_tables_spark(f"hive:{db}", NEEDED, spark)
    finally:
        spark.sql(f"DROP DATABASE IF EXISTS {db} CASCADE")
        for t in TABLES:
            spark.catalog.dropGlobalTempView(f"p3_{t}")
