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
from ranking.features.evaluate import _derive, _derive_rows

RAW = [v for _, (_, cols) in _RAW.items() for v in cols.values()]
_STRING = pl.String()


def _columns(n: int, seed: int, ts_unit: str = "us", tz: str | None = "UTC", types: pl.DataType = _STRING) -> dict[str, pl.Series]:
    rng = np.random.default_rng(seed)
    created = [dt.datetime(2026, 1, 5) + dt.timedelta(seconds=int(x)) for x in rng.integers(0, 10**7, n)]
    req = [c + dt.timedelta(microseconds=int(x)) for c, x in zip(created, rng.integers(0, 10**11, n), strict=True)]

    def ts(name: str, values: list) -> pl.Series:
        s = pl.Series(name, values).dt.cast_time_unit(ts_unit)
        # Local time zones by conversion from UTC: every instant exists (no DST gap).
        return s if tz is None else s.dt.replace_time_zone("UTC").dt.convert_time_zone(tz)

    cols = {
        "update_type": pl.Series("update_type", rng.choice(UPDATE_TYPES, n)).cast(types),
        "client": pl.Series("client", rng.choice(CLIENTS, n)),
        "created_ts": ts("created_ts", created),
        "request_ts": ts("request_ts", req),
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


def test_nulls_and_strings_are_left_to_polars():
    fs = get_feature_set("dwell")
    cols = _columns(50, 4)
    nulls = {**cols, "client": cols["client"].scatter(3, None)}
    assert _derive_rows(nulls, fs) is None
    text = {**cols, "connections": cols["connections"].cast(pl.String)}
    assert _derive_rows(text, fs) is None


def test_one_row():
    cols = _columns(1, 5)
    fs = get_feature_set("dwell")
    assert_frame_equal(_derive_rows(cols, fs), _derive(pl.DataFrame(cols), fs).collect(), check_exact=True)
