"""The Spark engine of T_skip against the polars engine on the same rows: equal results, equal messages.

Reference: the polars engine (``estimate_tskip_file``, ``estimate_tskip``,
``bin_counts``), itself checked against numpy's ``floor(d / w)`` and the
simulator's true T_skip in ``test_counts.py`` and ``test_estimate.py``.  Both
engines hand integer counts to the same shared code, so results are compared
exactly (``to_dict()`` equality, floats included), not approximately.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

pytest.importorskip("pyspark")

from dwellrank_logs.errors import DwellrankError, SchemaError
from dwellrank_logs.schema import ACTION_COLUMNS
from ranking.tskip import (
    DwellDataWarning,
    InsufficientDataError,
    TskipConfig,
    bin_counts,
    bin_counts_spark,
    estimate_tskip,
    estimate_tskip_file,
    estimate_tskip_spark,
)
from simulate import WorldConfig, simulate, write_simulation

# One Spark session start (7-20 s on 2 busy cores) and about 30 small jobs.
pytestmark = [pytest.mark.slow, pytest.mark.spark]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 members x 5 days, seed 2 (about 23K impressions), written as the simulator writes its logs."""
    return write_simulation(simulate(WorldConfig(n_members=600, n_days=5), seed=2), tmp_path_factory.mktemp("spark") / "logs")


@pytest.fixture(scope="module")
def impressions(logs: Path) -> pl.DataFrame:
    return pl.read_parquet(logs / "impressions.parquet")


def _run(fn: Callable[[], Any]) -> tuple[Any, list[str]]:
    """``fn()`` and the messages of the DwellDataWarnings it raised; an error is returned, not raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = fn()
        except DwellrankError as exc:
            out = exc
    return out, [str(w.message) for w in caught if issubclass(w.category, DwellDataWarning)]


def _same(polars_fn: Callable[[], Any], spark_fn: Callable[[], Any]) -> Any:
    """Both engines give the same result dict (or the same error) and the same warnings; returns polars'."""
    (a, warn_a), (b, warn_b) = _run(polars_fn), _run(spark_fn)
    assert warn_a == warn_b
    if isinstance(a, Exception) or isinstance(b, Exception):
        assert (type(a), str(a)) == (type(b), str(b))
        return a
    assert a.to_dict() == b.to_dict()
    return a


@pytest.mark.parametrize("by", ["update_type", None])
@pytest.mark.parametrize("bin_width_s", [0.25, 0.5])
def test_simulated_file_pooled_and_by_type(spark, logs: Path, by: str | None, bin_width_s: float):
    path = logs / "impressions.parquet"
    cfg = TskipConfig(by=by, bin_width_s=bin_width_s)
    res = _same(lambda: estimate_tskip_file(path, cfg), lambda: estimate_tskip_spark(path, cfg, spark=spark))
    assert res.n_rows > 20_000 and res.source == str(path)
    assert (len(res.groups) == 5) == (by is not None)


def _with_bad_values(imp: pl.DataFrame) -> pl.DataFrame:
    """Rows 0-11 get 3 null, 3 NaN, 3 negative and 3 infinite dwells; row 12 a null action (no other action true)."""
    bad = [None] * 3 + [float("nan")] * 3 + [-1.0, -1e-9, -0.5] + [float("inf")] * 2 + [float("-inf")]
    d = imp["dwell_s"].to_list()
    d[: len(bad)] = bad
    i = pl.int_range(pl.len())
    return imp.with_columns(
        pl.Series("dwell_s", d, dtype=pl.Float64),
        pl.when(i == 12).then(None).otherwise(pl.col("shared")).alias("shared"),
        *(pl.when(i == 12).then(False).otherwise(pl.col(c)).alias(c) for c in ("clicked", "reacted", "commented")),
    )


def test_unusable_values_dropped_alike_and_refused_alike_in_strict_mode(spark, impressions: pl.DataFrame, tmp_path: Path):
    path = tmp_path / "bad.parquet"
    _with_bad_values(impressions).write_parquet(path)
    res = _same(lambda: estimate_tskip_file(path), lambda: estimate_tskip_spark(path, spark=spark))
    assert res.dropped == {"null": 3, "NaN": 3, "infinite": 3, "negative": 3, "null action": 1}
    strict = TskipConfig(strict=True)
    err = _same(lambda: estimate_tskip_file(path, strict), lambda: estimate_tskip_spark(path, strict, spark=spark))
    assert isinstance(err, SchemaError) and "(3 null, 3 NaN, 3 infinite, 3 negative, 1 null action)" in str(err)


def test_spark_dataframe_input(spark, impressions: pl.DataFrame, tmp_path: Path):
    """A Spark DataFrame (here read from Parquet; Float32 dwell, integer 0/1 actions) against the same polars frame."""
    frame = _with_bad_values(impressions).with_columns(pl.col("clicked").cast(pl.Int8), pl.col("dwell_s").cast(pl.Float32))
    frame.write_parquet(tmp_path / "frame.parquet")
    sdf = spark.read.parquet(str(tmp_path / "frame.parquet"))
    res = _same(lambda: estimate_tskip(frame), lambda: estimate_tskip_spark(sdf))
    assert res.source == "<frame>" and res.dropped["null action"] == 1


def test_directory_of_part_files(spark, impressions: pl.DataFrame, tmp_path: Path):
    d = tmp_path / "parts"
    d.mkdir()
    for i, chunk in enumerate(impressions.iter_slices(6000)):
        chunk.write_parquet(d / f"part-{i:05d}.parquet")
    (d / "_SUCCESS").write_bytes(b"")  # Spark's marker: skipped by both readers
    res = _same(lambda: estimate_tskip_file(d), lambda: estimate_tskip_spark(d, spark=spark))
    assert res.n_rows == impressions.height


def test_hive_layout_with_the_group_as_partition_key(spark, impressions: pl.DataFrame, tmp_path: Path):
    d = tmp_path / "hive"
    for (t,), part in impressions.group_by("update_type"):
        (d / f"update_type={t}").mkdir(parents=True)
        part.drop("update_type").write_parquet(d / f"update_type={t}" / "part-00000.parquet")
    res = _same(lambda: estimate_tskip_file(d), lambda: estimate_tskip_spark(str(d), spark=spark))
    assert set(res.groups) == set(impressions["update_type"].unique())


def _edge_frame(w: float, max_dwell_s: float) -> pl.DataFrame:
    """Dwell on and next to bin edges, 0 and -0.0, the last edge, far-out and overflowing values, every unusable kind."""
    K = TskipConfig(bin_width_s=w, max_dwell_s=max_dwell_s).n_bins
    edge = K * w
    rng = np.random.default_rng(5)
    good = [
        *np.arange(0, edge + 3 * w, w / 2),  # multiples of w built by repeated addition (not exact for 0.1)
        *(k * w for k in range(K + 3)),  # exact products
        *(0.1 * k for k in range(30)),
        # Edges written as decimals (0.3, 4.3): 0.3 / 0.1 is 2.9999999999999996, so 0.3 is in bin 2, while 0.3 * 10 is 3.0.
        *(float(f"{k * w:.10g}") for k in range(K + 3)),
        *(k / 10 for k in range(100)),
        0.0,
        -0.0,
        5e-324,
        np.nextafter(w, 0.0),
        np.nextafter(edge, 0.0),
        edge,
        np.nextafter(edge, np.inf),
        1e12,
        9.3e18 * w,  # floor(d / w) past the 64-bit integers
        3.7e300,
        *rng.exponential(2.0, 300),
    ]
    bad = [None, float("nan"), float("inf"), float("-inf"), -1e-300, -5.0, 1.7e308]  # 1.7e308 / w overflows to inf for w <= 0.5
    d = [float(v) if v is not None else None for v in good + bad]
    n = len(d)
    labels = ["c", "c\x00", "C", None]
    return pl.DataFrame(
        {
            "dwell_s": pl.Series(d, dtype=pl.Float64),
            "clicked": rng.random(n) < 0.3,
            "reacted": pl.Series([None if i % 17 == 0 else bool(i % 5 == 0) for i in range(n)], dtype=pl.Boolean),
            "grp": [labels[i % 4] for i in range(n)],
            "slot": pl.Series([i % 3 for i in range(n)], dtype=pl.Int32),
            "flag": [i % 7 == 0 for i in range(n)],
        }
    )


@pytest.mark.parametrize(("w", "max_dwell_s", "by"), [(0.1, 2.0, "grp"), (0.25, 3.0, "slot"), (0.5, 60.0, None), (0.7, 5.0, "flag")])
def test_bin_edges_overflow_and_labels_equal_counts(spark, tmp_path: Path, w: float, max_dwell_s: float, by: str | None):
    frame = _edge_frame(w, max_dwell_s)
    frame.write_parquet(tmp_path / "edges.parquet")
    sdf = spark.read.parquet(str(tmp_path / "edges.parquet"))
    cfg = TskipConfig(bin_width_s=w, max_dwell_s=max_dwell_s, by=by, action_cols=("clicked", "reacted"))
    (a, warn_a), (b, warn_b) = _run(lambda: bin_counts(frame, cfg)), _run(lambda: bin_counts_spark(sdf, cfg))
    assert warn_a == warn_b and len(warn_a) == 1
    assert (a.groups, a.dropped, a.source) == (b.groups, b.dropped, b.source)
    for field in ("edges", "n", "x"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.n.sum() + sum(a.dropped.values()) == frame.height
    assert a.n[:, -1].sum() > 0 and a.dropped["infinite"] == 3  # +-inf, and 1.7e308 / w
    if by == "grp":
        assert a.groups == ("<null>", "C", "c", "c\x00")
    if by == "flag":
        assert a.groups == ("false", "true")


def test_decimal_edges_are_binned_as_polars_bins_them(spark):
    """0.3 s with w = 0.1: polars' ``dwell / w`` is ``dwell * (1 / w)`` = 3.0 (bin 3), not IEEE 0.3 / 0.1 = 2.99... (bin 2)."""
    d = [0.3, 0.6, 0.7, 1.2, 1.4, 0.2, 0.5]
    cfg = TskipConfig(bin_width_s=0.1, max_dwell_s=2.0, by=None, action_cols=("clicked",))
    frame = pl.DataFrame({"dwell_s": d, "clicked": [True] * len(d)})
    sdf = spark.createDataFrame([(v, True) for v in d], "dwell_s double, clicked boolean")
    a, b = bin_counts(frame, cfg), bin_counts_spark(sdf, cfg)
    np.testing.assert_array_equal(a.n, b.n)
    assert np.flatnonzero(a.n[0]).tolist() == [2, 3, 5, 6, 7, 12, 14]


def _good(imp: pl.DataFrame) -> pl.DataFrame:
    return imp.select("dwell_s", *ACTION_COLUMNS, "update_type")


ERROR_CASES: list[tuple[str, Callable[[pl.DataFrame], pl.DataFrame], TskipConfig]] = [
    ("missing dwell", lambda f: f.drop("dwell_s"), TskipConfig()),
    ("missing action and by", lambda f: f.drop("shared", "update_type"), TskipConfig()),
    ("missing custom action", lambda f: f, TskipConfig(action_cols=("clicked", "liked"))),
    ("string dwell", lambda f: f.with_columns(pl.col("dwell_s").cast(pl.String)), TskipConfig()),
    ("string action", lambda f: f.with_columns(pl.col("clicked").cast(pl.String)), TskipConfig()),
    ("float by", lambda f: f.with_columns(pl.col("dwell_s").alias("update_type")), TskipConfig()),
    ("float custom by", lambda f: f.with_columns(pl.col("dwell_s").alias("g")), TskipConfig(by="g")),
    ("empty table", lambda f: f.head(0), TskipConfig()),
    ("no actions", lambda f: f.with_columns(pl.lit(False).alias(c) for c in ACTION_COLUMNS), TskipConfig()),
    ("small group", lambda f: f, TskipConfig(min_rows_per_group=5000)),
]


@pytest.mark.parametrize(("name", "make", "cfg"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_bad_input_gets_the_same_one_line_error(spark, impressions: pl.DataFrame, tmp_path: Path, name, make, cfg):
    frame = make(_good(impressions))
    path = tmp_path / "imp.parquet"
    frame.write_parquet(path)
    on_file = _same(lambda: estimate_tskip_file(path, cfg), lambda: estimate_tskip_spark(path, cfg, spark=spark))
    sdf = spark.read.parquet(str(path))
    on_frame = _same(lambda: estimate_tskip(frame, cfg), lambda: estimate_tskip_spark(sdf, cfg))
    for err in (on_file, on_frame):
        assert isinstance(err, (SchemaError, InsufficientDataError)) and "\n" not in str(err)
    assert str(on_file).startswith(str(path)) and str(on_frame).startswith("<frame>")


def test_file_errors_name_the_file_without_a_java_trace(spark, tmp_path: Path):
    missing = tmp_path / "nope.parquet"
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    for p in (missing, empty):
        _same(lambda p=p: estimate_tskip_file(p), lambda p=p: estimate_tskip_spark(p, spark=spark))
    with pytest.raises(SchemaError, match=r"^/no/such/dir/x\.parquet: no such file"):
        estimate_tskip_spark("file:///no/such/dir/x.parquet", spark=spark)


def test_unreadable_data_is_one_line_naming_the_file(spark, impressions: pl.DataFrame, tmp_path: Path):
    """zstd pages with flipped bytes: each engine quotes its reader's error after the same prefix, with the root cause."""
    p = tmp_path / "corrupt.parquet"
    _good(impressions).write_parquet(p, compression="zstd")
    b = bytearray(p.read_bytes())
    for i in range(len(b) // 4, len(b) // 2, 7):
        b[i] ^= 0x5A
    p.write_bytes(bytes(b))
    for run in (lambda: estimate_tskip_file(p), lambda: estimate_tskip_spark(p, spark=spark)):
        with pytest.raises(SchemaError, match=rf"^{re.escape(str(p))}: cannot read impressions \(.*(corrupt|decompress)") as info:
            run()
        assert "\n" not in str(info.value)
