"""The numpy evaluator of one request's features against the polars one, value for value.

Both read the same feature definitions (``ranking.features.catalogue._DEFS``); the polars
evaluator is the one training uses, so the reference here is what a model was
trained on.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dwellrank_logs.schema import CLIENTS, UPDATE_TYPES
from ranking.features import get_feature_set
from ranking.features.catalogue import _RAW
from ranking.features.evaluate import _derive, _derive_matrix, _derive_rows

RAW = [v for _, (_, cols) in _RAW.items() for v in cols.values()]
_STRING = pl.String()


def _columns(
    n: int,
    seed: int,
    ts_unit: str = "us",
    tz: str | None = "UTC",
    types: pl.DataType = _STRING,
    clients: pl.DataType = _STRING,
    created_unit: str | None = None,
    unknown: bool = False,
    signed: bool = False,
) -> dict[str, pl.Series]:
    """Random inputs of both evaluators.

    ``created_unit``: created_ts in another time unit than request_ts; ``unknown``: update types and
    clients outside the one-hot values too; ``signed``: instants from 1960 on and requests before
    their update's creation (negative ages: floor vs truncation of the units).
    """
    rng = np.random.default_rng(seed)
    start = dt.datetime(1960, 1, 1) if signed else dt.datetime(2026, 1, 5)
    created = [
        start + dt.timedelta(seconds=int(x), microseconds=int(u))
        for x, u in zip(rng.integers(0, 10**9 if signed else 10**7, n), rng.integers(0, 10**6, n), strict=True)
    ]
    shift = rng.integers(-(10**11) if signed else 0, 10**11, n)
    req = [c + dt.timedelta(microseconds=int(x)) for c, x in zip(created, shift, strict=True)]

    def ts(name: str, values: list, unit: str) -> pl.Series:
        s = pl.Series(name, values).dt.cast_time_unit(unit)
        if unit == "ns":  # sub-microsecond parts, so that truncating and flooring the ages differ
            s = (s.to_physical() + rng.integers(0, 1000, len(values))).cast(pl.Datetime("ns")).alias(name)
        # Local time zones by conversion from UTC: every instant exists (no DST gap).
        return s if tz is None else s.dt.replace_time_zone("UTC").dt.convert_time_zone(tz)

    type_values = (*UPDATE_TYPES, "zzz", "Text") if unknown else UPDATE_TYPES
    client_values = (*CLIENTS, "ios ", "") if unknown else CLIENTS
    cols = {
        "update_type": pl.Series("update_type", rng.choice(type_values, n)).cast(types),
        "client": pl.Series("client", rng.choice(client_values, n)).cast(clients),
        "created_ts": ts("created_ts", created, created_unit or ts_unit),
        "request_ts": ts("request_ts", req, ts_unit),
        "position": pl.Series("position", rng.integers(0, 30, n), dtype=pl.Int32),
        "connections": pl.Series("connections", rng.integers(0, 5000, n), dtype=pl.Int32),
        "tenure_days": pl.Series("tenure_days", rng.integers(0, 4000, n), dtype=pl.Int64),
        "seniority": pl.Series("seniority", rng.integers(0, 6, n), dtype=pl.Int8),
        "is_premium": pl.Series("is_premium", rng.random(n) < 0.2),
    }
    for c in RAW:
        # Counts of every size, zeros (no history) included: the rates' divisions must agree bit for bit.
        cols[c] = pl.Series(c, np.where(rng.random(n) < 0.3, 0, rng.integers(0, 10**6, n)).astype(np.float64))
    return cols


def _bits(X: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(X, dtype=np.float64).view(np.int64)


def _assert_matrix_equals_polars(cols: dict[str, pl.Series], fs) -> None:
    """The numpy evaluator's matrix equals the polars evaluator's frame bit for bit, in ``fs.columns`` order."""
    ref = _derive(pl.DataFrame(cols), fs).collect()
    assert ref.columns == list(fs.columns)
    X = _derive_matrix(cols, fs)
    assert X is not None and X.dtype == np.float64 and X.flags.c_contiguous and X.shape == ref.shape
    np.testing.assert_array_equal(_bits(X), _bits(ref.to_numpy()))


@pytest.mark.parametrize("feature_set", ["base", "dwell"])
@pytest.mark.parametrize(
    ("seed", "unit", "tz", "types"),
    [
        (0, "us", "UTC", pl.String()),
        (1, "ns", "UTC", pl.String()),
        (2, "ms", None, pl.Categorical()),
        (3, "us", "Europe/Paris", pl.Enum(UPDATE_TYPES)),
    ],
)
def test_numpy_evaluator_equals_polars(feature_set, seed, unit, tz, types):
    cols = _columns(1000, seed, unit, tz, types)
    fs = get_feature_set(feature_set)
    ours = _derive_rows(cols, fs)
    ref = _derive(pl.DataFrame(cols), fs).collect()
    assert ours is not None
    assert_frame_equal(ours, ref, check_exact=True)
    _assert_matrix_equals_polars(cols, fs)


@pytest.mark.parametrize(
    "kwargs",
    [
        # One-hot of strings by codes: categorical and Enum clients, values outside the one-hot set
        # (case, trailing space, empty), an Enum whose categories hold more than the one-hot values.
        {"clients": pl.Categorical(), "unknown": True},
        {"types": pl.Enum(["zzz", "Text", *UPDATE_TYPES[::-1]]), "clients": pl.Enum(["", "ios ", *CLIENTS]), "unknown": True},
        {"types": pl.Categorical(), "unknown": True},
        # Negative ages and instants before 1970: truncation of ns to us, floor of the hours.
        {"unit": "ns", "tz": "UTC", "signed": True},
        {"unit": "ms", "tz": None, "signed": True},
        {"unit": "us", "tz": None, "signed": True},
        # Mixed time units (polars' subtraction decides the unit), a half-hour zone's hours, a local zone before 1970.
        {"unit": "ms", "created_unit": "ns", "tz": "UTC"},
        {"unit": "us", "created_unit": "ms", "tz": None, "signed": True},
        {"unit": "us", "tz": "Asia/Kolkata"},
        {"unit": "ns", "tz": "America/New_York", "signed": True},
    ],
    ids=[
        "cat_client",
        "enum_both",
        "cat_type",
        "ns_signed",
        "ms_naive_signed",
        "us_naive_signed",
        "mixed_units",
        "mixed_signed",
        "kolkata",
        "new_york",
    ],
)
def test_numpy_matrix_reads_strings_and_timestamps_as_polars(kwargs):
    kw = dict(kwargs)
    cols = _columns(2000, 7, kw.pop("unit", "us"), kw.pop("tz", "UTC"), **kw)
    for fs in ("base", "dwell"):
        _assert_matrix_equals_polars(cols, get_feature_set(fs))


def test_numpy_matrix_takes_numpy_inputs_in_their_dtypes():
    """The lookups hand over numpy arrays: unsigned, narrow and Boolean profiles, large counts, int32 positions."""
    cols = _columns(500, 8)
    rng = np.random.default_rng(8)
    arrays: dict[str, pl.Series | np.ndarray] = dict(cols)
    arrays.update(
        connections=rng.integers(0, 2**32, 500).astype(np.uint32),
        tenure_days=rng.integers(-(2**62), 2**62, 500),  # past 2**53: rounded to nearest, as polars' cast
        seniority=rng.integers(0, 6, 500).astype(np.int8),
        is_premium=rng.random(500) < 0.5,
        position=np.zeros(500, np.int32),
        u_imp=rng.integers(0, 2**32, 500).astype(np.uint32),
    )
    ref_cols = {c: v if isinstance(v, pl.Series) else pl.Series(c, v) for c, v in arrays.items()}
    fs = get_feature_set("dwell")
    X = _derive_matrix(arrays, fs)
    ref = _derive(pl.DataFrame(ref_cols), fs).collect()
    assert X is not None
    np.testing.assert_array_equal(_bits(X), _bits(ref.to_numpy()))


def test_nulls_and_strings_are_left_to_polars():
    fs = get_feature_set("dwell")
    cols = _columns(50, 4)
    nulls = {**cols, "client": cols["client"].scatter(3, None)}
    assert _derive_rows(nulls, fs) is None
    assert _derive_matrix(nulls, fs) is None
    text = {**cols, "connections": cols["connections"].cast(pl.String)}
    assert _derive_rows(text, fs) is None
    assert _derive_matrix(text, fs) is None
    assert _derive_matrix({**cols, "u_imp": np.array(["1"] * 50, dtype=object)}, fs) is None


def test_one_row():
    cols = _columns(1, 5)
    fs = get_feature_set("dwell")
    assert_frame_equal(_derive_rows(cols, fs), _derive(pl.DataFrame(cols), fs).collect(), check_exact=True)
    _assert_matrix_equals_polars(cols, fs)
