"""The ranker protocol of the shared layer: the skip label, candidate columns and validation, optional attributes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from dwellrank_logs.errors import ConfigError, SchemaError
from dwellrank_logs.protocol import (
    CANDIDATE_COLUMNS,
    CANDIDATE_DOCS,
    RankerBase,
    RankOutput,
    candidate_columns,
    forward_candidate_columns,
    not_skipped,
    not_skipped_expr,
    ranker_description,
    ranker_t_skip_s,
    skip_label_expr,
    validate_candidates,
)

_DWELL = np.array([0.0, 1.0, 2.49, 2.5, 2.51, 9.0, 1.0, 0.2, 0.0])
_CLICK = np.array([False, False, False, False, False, False, True, False, False])
_SHARE = np.array([False, False, False, False, False, False, False, True, True])


def _reference_skipped(dwell: float, action: bool, t_skip_s: float) -> bool:
    # The post's definition, written out per row: dwell below T_skip and no action.
    return dwell < t_skip_s and not action


def test_skip_label_numpy_and_polars_agree_with_the_definition():
    expected = np.array([_reference_skipped(d, c or s, 2.5) for d, c, s in zip(_DWELL, _CLICK, _SHARE, strict=True)])
    action = _CLICK | _SHARE
    assert (~not_skipped(_DWELL, action, 2.5) == expected).all()
    frame = pl.DataFrame({"dwell_s": _DWELL, "clicked": _CLICK, "reacted": False, "commented": False, "shared": _SHARE})
    labels = frame.select(skip_label_expr(2.5).alias("s"), not_skipped_expr(2.5).alias("n"))
    assert labels["s"].to_list() == expected.tolist()
    assert (labels["n"].to_numpy() == ~expected).all()
    series = not_skipped(frame["dwell_s"], frame["clicked"] | frame["shared"], 2.5)
    assert (series.to_numpy() == ~expected).all()


def test_skip_label_custom_action_columns():
    frame = pl.DataFrame({"d": [1.0, 1.0, 3.0], "liked": [True, False, False]})
    assert frame.select(skip_label_expr(2.0, "d", ("liked",)))["d"].to_list() == [False, True, False]


class _Duck:
    def rank(self, candidates, history, rng):
        return RankOutput(scores=np.zeros(candidates.height))


class _Listing(RankerBase):
    candidate_columns = ("member_id", "topic")
    t_skip_s = 3.0
    description = "listing"


def test_optional_attributes_default_for_duck_typed_rankers():
    assert ranker_t_skip_s(_Duck()) is None
    assert ranker_description(_Duck()) == "_Duck"
    assert forward_candidate_columns(_Duck()) is None
    assert candidate_columns([_Duck()]) == frozenset(CANDIDATE_COLUMNS)
    assert ranker_t_skip_s(_Listing()) == 3.0
    assert ranker_description(_Listing()) == "listing"
    assert forward_candidate_columns(_Listing()) == ("request_id", "member_id", "topic")
    assert candidate_columns([_Listing()]) == {"request_id", "member_id", "topic"}


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ("member_id", "must be a tuple of column names, got the string 'member_id'"),
        (("member_id", "dwell_s"), r"names \['dwell_s'\], which are not candidate columns"),
    ],
)
def test_candidate_columns_errors(columns, message):
    ranker = _Listing()
    ranker.candidate_columns = columns
    with pytest.raises(ConfigError, match=message):
        candidate_columns([ranker])


def _cands() -> pl.DataFrame:
    ts = dt.datetime(2026, 1, 5, 12)
    return pl.DataFrame(
        {
            "request_id": pl.Series([1, 1], dtype=pl.Int32),
            "member_id": [7, 7],
            "update_id": [3, 4],
            "update_type": pl.Series(["text", "video"], dtype=pl.Categorical),
            "author_id": [9, 8],
            "topic": pl.Series([0, 2], dtype=pl.UInt8),
            "created_ts": [ts, ts],
            "request_ts": [ts, ts],
            "client": ["web", "ios"],
            "extra": [0.5, 0.25],
        }
    )


def test_validate_candidates_casts_to_canonical_types():
    out = validate_candidates(_cands(), "c.parquet")
    utc = pl.Datetime("us", "UTC")
    assert out.schema["request_id"] == pl.Int64 and out.schema["topic"] == pl.Int64
    assert out.schema["update_type"] == pl.String and out.schema["created_ts"] == utc
    assert out["request_ts"][0] == dt.datetime(2026, 1, 5, 12, tzinfo=dt.timezone.utc)
    assert out["extra"].to_list() == [0.5, 0.25]
    assert set(CANDIDATE_DOCS) == set(CANDIDATE_COLUMNS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop("topic"), r"c.parquet: candidate table is missing column\(s\) 'topic'; found request_id"),
        (lambda f: f.with_columns(pl.col("member_id").cast(pl.String)), "candidate column 'member_id' must be an integer type, got String"),
        (lambda f: f.with_columns(pl.col("client").cast(pl.Categorical).to_physical()), "candidate column 'client' must be a string type"),
        (lambda f: f.with_columns(request_ts=pl.lit("2026-01-05")), "candidate column 'request_ts' must be a Datetime type, got String"),
        (lambda f: f.with_columns(update_id=pl.lit(None, pl.Int64)), r"candidate column 'update_id' has 2 null value\(s\)"),
    ],
)
def test_validate_candidates_errors(change, message):
    with pytest.raises(SchemaError, match=message):
        validate_candidates(change(_cands()), "c.parquet")
