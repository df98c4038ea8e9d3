"""Bad input to the T_skip estimator: one row per error path, (input, exception, message regex)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dwellrank_logs.errors import ConfigError, DwellrankError, SchemaError
from ranking import DwellDataWarning, InsufficientDataError, TskipConfig, TskipEstimator, estimate_tskip, estimate_tskip_file

N = 4000


def _good(n: int = N, seed: int = 0) -> pl.DataFrame:
    """Two types, jump at 2.0 s, enough rows for the default min_rows_per_group."""
    rng = np.random.default_rng(seed)
    eng = rng.random(n) < 0.4
    dwell = np.where(eng, 2.0 + rng.exponential(5.0, n), rng.lognormal(np.log(0.9), 0.5, n))
    act = eng & (rng.random(n) < 0.5)
    z = np.zeros(n, bool)
    return pl.DataFrame(
        {
            "update_type": np.where(np.arange(n) % 2 == 0, "text", "image"),
            "dwell_s": dwell,
            "clicked": act,
            "reacted": z,
            "commented": z,
            "shared": z,
        }
    )


def _with_dwell(values: list[float | None]) -> pl.DataFrame:
    g = _good()
    d = g["dwell_s"].to_list()
    d[: len(values)] = values
    return g.with_columns(pl.Series("dwell_s", d, dtype=pl.Float64))


FRAME_CASES: list[tuple[str, Callable[[], pl.DataFrame], TskipConfig, type[Exception], str]] = [
    (
        "missing dwell",
        lambda: _good().drop("dwell_s"),
        TskipConfig(),
        SchemaError,
        r"<frame>: impressions table is missing column\(s\) 'dwell_s'; found update_type",
    ),
    ("missing action", lambda: _good().drop("shared"), TskipConfig(), SchemaError, r"missing column\(s\) 'shared'"),
    ("missing custom action", _good, TskipConfig(action_cols=("clicked", "liked")), SchemaError, r"missing column\(s\) 'liked'"),
    ("missing by", lambda: _good().drop("update_type"), TskipConfig(), SchemaError, r"missing column\(s\) 'update_type'"),
    (
        "string dwell",
        lambda: _good().with_columns(pl.col("dwell_s").cast(pl.String)),
        TskipConfig(),
        SchemaError,
        r"column 'dwell_s' must be numeric \(dwell, seconds\), got String",
    ),
    (
        "string action",
        lambda: _good().with_columns(pl.col("clicked").cast(pl.String)),
        TskipConfig(),
        SchemaError,
        r"column 'clicked' must be Boolean .*got String",
    ),
    (
        "float by",
        lambda: _good().with_columns(pl.col("dwell_s").alias("update_type")),
        TskipConfig(),
        SchemaError,
        r"column 'update_type' must be a string or integer group label, got Float64",
    ),
    (
        "NaN strict",
        lambda: _with_dwell([float("nan")] * 3),
        TskipConfig(strict=True),
        SchemaError,
        r"column 'dwell_s' has unusable values \(3 NaN\).*strict",
    ),
    (
        "negative strict",
        lambda: _with_dwell([-1.0, -0.5]),
        TskipConfig(strict=True),
        SchemaError,
        r"'dwell_s' has unusable values \(2 negative\)",
    ),
    ("inf strict", lambda: _with_dwell([float("inf"), float("-inf")]), TskipConfig(strict=True), SchemaError, r"\(2 infinite\)"),
    ("null strict", lambda: _with_dwell([None]), TskipConfig(strict=True), SchemaError, r"\(1 null\)"),
    (
        "mixed strict",
        lambda: _with_dwell([None, float("nan"), -2.0, float("inf")]),
        TskipConfig(strict=True),
        SchemaError,
        r"\(1 null, 1 NaN, 1 infinite, 1 negative\)",
    ),
    (
        "null action strict",
        # Row 0: no action known (shared null, the others false); row 1: shared null but clicked
        # true, so an action is known to have happened (Kleene OR) and the row is usable.
        lambda: _good().with_columns(
            pl.when(pl.int_range(pl.len()) < 2).then(None).otherwise(pl.col("shared")).alias("shared"),
            *(
                pl.when(pl.int_range(pl.len()) < 2).then(pl.int_range(pl.len()) == 1).otherwise(pl.col(c)).alias(c)
                for c in ("clicked", "reacted", "commented")
            ),
        ),
        TskipConfig(strict=True),
        SchemaError,
        r"'dwell_s' / 'clicked', 'reacted', 'commented', 'shared' has unusable values \(1 null action\)",
    ),
    (
        "no rows",
        lambda: _good().head(0),
        TskipConfig(),
        InsufficientDataError,
        r"<frame>: no impressions with a usable 'dwell_s' \(table is empty",
    ),
    (
        "all dropped",
        lambda: _good().with_columns(pl.lit(float("nan")).alias("dwell_s")),
        TskipConfig(),
        InsufficientDataError,
        r"no impressions with a usable 'dwell_s'",
    ),
    (
        "no actions",
        lambda: _good().with_columns(pl.lit(False).alias("clicked")),
        TskipConfig(),
        InsufficientDataError,
        r"the table has no actions at all \(none of 'clicked', 'reacted', 'commented', 'shared' is true\)",
    ),
    (
        "no actions in one type",
        lambda: _good().with_columns((pl.col("clicked") & (pl.col("update_type") == "text")).alias("clicked")),
        TskipConfig(),
        InsufficientDataError,
        r"update_type 'image' has no actions at all",
    ),
    (
        "too few rows in one type",
        lambda: pl.concat([_good(), _good(50, 1).with_columns(pl.lit("video").alias("update_type"))]),
        TskipConfig(),
        InsufficientDataError,
        r"update_type 'video' has 50 impressions with usable 'dwell_s', fewer than min_rows_per_group=1,000",
    ),
    (
        "too few rows overall",
        lambda: _good(300),
        TskipConfig(by=None),
        InsufficientDataError,
        r"the table has 300 impressions .*min_rows_per_group=1,000",
    ),
    (
        "no threshold",
        lambda: _good().with_columns((pl.int_range(pl.len()) % 2000 == 0).alias("clicked")),
        TskipConfig(),
        InsufficientDataError,
        r"no dwell bin where P\(action \| dwell\) stays above eps=0.002 for 3 informative bins",
    ),
]


@pytest.mark.parametrize(("name", "make", "cfg", "exc", "pattern"), FRAME_CASES, ids=[c[0] for c in FRAME_CASES])
def test_bad_frames(name, make, cfg, exc, pattern):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DwellDataWarning)
        with pytest.raises(exc, match=pattern) as info:
            estimate_tskip(make(), cfg)
    assert isinstance(info.value, DwellrankError)
    assert "\n" not in str(info.value)


def _corrupt(p: Path) -> None:
    """Valid footer, garbage in the middle of the column chunks."""
    _good(200_000).write_parquet(p, compression="zstd")
    b = bytearray(p.read_bytes())
    for i in range(len(b) // 4, len(b) // 2, 7):
        b[i] ^= 0x5A
    p.write_bytes(bytes(b))


FILE_CASES: list[tuple[str, Callable[[Path], object], type[Exception], str]] = [
    ("missing file", lambda p: None, SchemaError, r"imp\.parquet: no such file"),
    ("empty file", lambda p: p.write_bytes(b""), SchemaError, r"imp\.parquet: file is empty"),
    ("not parquet", lambda p: p.write_bytes(b"dwell_s,clicked\n1.0,true\n"), SchemaError, r"imp\.parquet: not a readable Parquet file"),
    (
        "truncated parquet",
        lambda p: (_good().write_parquet(p), p.write_bytes(p.read_bytes()[:200])),
        SchemaError,
        r"imp\.parquet: not a readable Parquet file",
    ),
    ("corrupt data pages", lambda p: _corrupt(p), SchemaError, r"imp\.parquet: cannot read impressions \("),
    ("directory without parts", lambda p: p.mkdir(), SchemaError, r"imp\.parquet: directory holds no \*\.parquet files"),
    (
        "zero rows",
        lambda p: _good().head(0).write_parquet(p),
        InsufficientDataError,
        r"imp\.parquet: no impressions with a usable 'dwell_s'",
    ),
    (
        "missing column",
        lambda p: _good().drop("commented").write_parquet(p),
        SchemaError,
        r"imp\.parquet: impressions table is missing column\(s\) 'commented'",
    ),
    (
        "string dwell",
        lambda p: _good().with_columns(pl.col("dwell_s").cast(pl.String)).write_parquet(p),
        SchemaError,
        r"imp\.parquet: column 'dwell_s' must be a numeric type",
    ),
    (
        "no actions",
        lambda p: _good().with_columns(pl.lit(False).alias("clicked")).write_parquet(p),
        InsufficientDataError,
        r"imp\.parquet: the table has no actions at all",
    ),
]


@pytest.mark.parametrize(("name", "make", "exc", "pattern"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_files(tmp_path: Path, name, make, exc, pattern):
    p = tmp_path / "imp.parquet"
    make(p)
    with pytest.raises(exc, match=pattern) as info:
        estimate_tskip_file(p)
    assert "\n" not in str(info.value)


def test_unusable_dwell_is_counted_dropped_and_warned():
    bad = _with_dwell([float("nan"), float("nan"), -1.0, float("inf"), None])
    with pytest.warns(
        DwellDataWarning, match=r"dropped 5 row\(s\) with unusable values in column 'dwell_s' \(1 null, 2 NaN, 1 infinite, 1 negative\)"
    ):
        res = estimate_tskip(bad)
    ref = estimate_tskip(_good().slice(5))  # the same rows, never there
    assert res.dropped == {"null": 1, "NaN": 2, "infinite": 1, "negative": 1}
    assert res.n_rows == N - 5 and res.t_skip_s == ref.t_skip_s
    np.testing.assert_array_equal(res.curve.n, ref.curve.n)


def test_clean_input_gives_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate_tskip(_good())


CONFIG_CASES = [
    ({"bin_width_s": 0}, r"bin_width_s must be a finite number > 0, got 0"),
    ({"bin_width_s": -0.5}, r"bin_width_s must be a finite number > 0, got -0.5"),
    ({"bin_width_s": float("nan")}, r"bin_width_s must be a finite number > 0, got nan"),
    ({"max_dwell_s": 0.0}, r"max_dwell_s must be a finite number > 0"),
    ({"bin_width_s": 1e-9}, r"max_dwell_s / bin_width_s must be <= 1e6 bins"),
    ({"eps": 1.5}, r"eps must be in \[0, 1\), got 1.5"),
    ({"eps": -0.1}, r"eps must be in \[0, 1\)"),
    ({"alpha": 0.0}, r"alpha must be in \(0, 1\), got 0.0"),
    ({"ci_method": "exact"}, r"ci_method must be one of wilson, .*got 'exact'"),
    ({"persist": 0}, r"persist must be a positive integer, got 0"),
    ({"persist": 2.5}, r"persist must be a positive integer, got 2.5"),
    ({"min_bin_count": 0}, r"min_bin_count must be a positive integer"),
    ({"min_rows_per_group": -1}, r"min_rows_per_group must be a positive integer, got -1"),
    ({"action_cols": ()}, r"action_cols must name at least one column"),
    ({"action_cols": "clicked"}, r"action_cols must be a tuple of column names, got 'clicked'"),
    ({"action_cols": ("clicked", "clicked")}, r"action_cols must be distinct"),
    ({"action_cols": ("clicked", "")}, r"action_cols must be a non-empty column name, got ''"),
    ({"dwell_col": ""}, r"dwell_col must be a non-empty column name"),
    ({"by": "dwell_s"}, r"by must differ from the dwell and action columns, got 'dwell_s'"),
    ({"dwell_col": "clicked"}, r"dwell_col 'clicked' must not be one of action_cols"),
    ({"tolerance_s": -1.0}, r"tolerance_s must be a finite number >= 0, got -1.0"),
    ({"strict": "yes"}, r"strict must be True or False, got 'yes'"),
]


@pytest.mark.parametrize(("kwargs", "pattern"), CONFIG_CASES)
def test_bad_config(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        TskipConfig(**kwargs)


def test_label_before_fit_and_bad_threshold():
    with pytest.raises(ConfigError, match=r"not fitted; call fit"):
        TskipEstimator().label(_good())
    from ranking import skip_label_expr

    with pytest.raises(ConfigError, match=r"t_skip_s must be a finite number > 0, got -1"):
        skip_label_expr(-1)
