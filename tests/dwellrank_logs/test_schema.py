"""Schema validation and atomic I/O of the shared ``dwellrank_logs`` package."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from dwellrank_logs import TABLE_NAMES, TABLES, SchemaError, atomic_dir, scan_table, validate_frame, write_parquet
from dwellrank_logs.errors import OutputExistsError


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_simulated_tables_match_schema_exactly(small_world, table):
    frame = small_world.tables[table]
    expected = {c.name: c.dtype for c in TABLES[table].columns}
    assert dict(frame.schema) == expected
    validate_frame(frame, table).collect()


def _events(**overrides):
    data = {
        "member_id": [1, 2],
        "session_id": [10, 11],
        "ts": [dt.datetime(2026, 1, 5, 8), dt.datetime(2026, 1, 5, 9)],
        "event_type": ["feed", "jobs"],
    }
    data.update(overrides)
    return pl.DataFrame(data)


def test_validate_casts_widths_and_naive_timestamps():
    frame = _events(member_id=pl.Series([1, 2], dtype=pl.Int32))
    out = validate_frame(frame, "events").collect()
    assert out.schema["member_id"] == pl.Int64
    assert out.schema["ts"] == pl.Datetime("us", "UTC")
    assert out["ts"][0] == dt.datetime(2026, 1, 5, 8, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("frame", "pattern"),
    [
        (_events().drop("event_type"), r"missing column\(s\) 'event_type'"),
        (_events(member_id=["a", "b"]), r"column 'member_id' must be an integer type.*got String"),
        (_events(ts=[1.0, 2.0]), r"column 'ts' must be a Datetime type"),
        (_events(event_type=["feed", "dance"]), r"column 'event_type' has unknown value\(s\) \['dance'\]"),
        (_events(session_id=[None, None]), r"column 'session_id' is entirely null"),
    ],
)
def test_validate_rejects_bad_tables(frame, pattern):
    with pytest.raises(SchemaError, match=pattern):
        validate_frame(frame, "events", source="events.parquet").collect()


def test_validate_unknown_table():
    with pytest.raises(SchemaError, match="unknown table 'clicks'"):
        validate_frame(_events(), "clicks")


def test_scan_table_file_errors(tmp_path: Path):
    with pytest.raises(SchemaError, match="no such file"):
        scan_table(tmp_path / "nope.parquet", "events")
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(SchemaError, match=r"empty.parquet: file is empty"):
        scan_table(empty, "events")
    junk = tmp_path / "junk.parquet"
    junk.write_text("member_id,ts\n1,2\n")
    with pytest.raises(SchemaError, match=r"junk.parquet: not a readable Parquet file"):
        scan_table(junk, "events")
    good = tmp_path / "events.parquet"
    write_parquet(_events(), good)
    assert scan_table(good, "events").collect().height == 2


def test_atomic_dir_leaves_nothing_on_failure(tmp_path: Path):
    out = tmp_path / "out"

    def fail_midway() -> None:
        with atomic_dir(out) as tmp:
            (tmp / "half.parquet").write_text("x")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_midway()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_non_empty_without_overwrite(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="not empty"), atomic_dir(out):
        pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_docs_schema_is_generated_from_code():
    from dwellrank_logs.schema_doc import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
    assert doc.read_text() == render(), "regenerate with: python -m dwellrank_logs.schema_doc > docs/schema.md"


def _members(**overrides):
    data = {
        "member_id": [1, 2, 3, 4],
        "connections": [10, 20, 30, 40],
        "tenure_days": [5, 6, 7, 8],
        "client": ["ios", "web", "web", "android"],
        "arm": [None, None, "control", None],
        "industry": [1, 2, 3, 4],
        "seniority": [0, 1, 2, 3],
        "is_premium": [False, True, False, False],
    }
    data.update(overrides)
    return pl.DataFrame(data)


@pytest.mark.parametrize(
    ("table", "frame", "pattern"),
    [
        (
            "members",
            _members(connections=[1, None, None, 4]),
            r"members\.parquet: column 'connections' has 2 null value\(s\) in 4 rows \(50\.0%\)",
        ),
        (
            "members",
            _members(member_id=[1, 2, 2, 1]),
            r"column 'member_id' is the key of the members table, but 2 of 4 rows repeat a value \(e\.g\. member_id 1 appears 2 times\)",
        ),
        ("members", _members(member_id=[1, None, 3, 4]), r"column 'member_id' has 1 null value\(s\)"),
        (
            "members",
            _members(connections=[None, 2, 3, 4], client=[None, None, "ios", "ios"]),
            r"column 'connections' has 1 null value\(s\) .*; also null: 'client' \(2\)",
        ),
        (
            "events",
            _events(event_type=["feed", None]),
            r"column 'event_type' has 1 null value\(s\) in 2 rows \(50\.0%\); the events schema allows none",
        ),
        ("events", _events(session_id=[10, None]), r"column 'session_id' has 1 null value\(s\)"),
        ("events", _events(ts=[dt.datetime(2026, 1, 5), None]), r"column 'ts' has 1 null value\(s\)"),
        (
            "sessions",
            pl.DataFrame(
                {
                    "member_id": [1, 1],
                    "session_id": [7, 7],
                    "start_ts": [dt.datetime(2026, 1, 5)] * 2,
                    "duration_s": [1.0, 2.0],
                    "client": ["ios"] * 2,
                }
            ),
            r"column 'session_id' is the key of the sessions table, but 1 of 2 rows",
        ),
        (
            "updates",
            pl.DataFrame(
                {
                    "update_id": [5, 5, 6],
                    "author_id": [1, 2, 3],
                    "update_type": ["text"] * 3,
                    "created_ts": [dt.datetime(2026, 1, 5)] * 3,
                    "topic": [1, 2, 3],
                }
            ),
            r"'update_id' is the key of the updates table, but 1 of 3 rows repeat a value \(e\.g\. update_id 5 appears 2 times\)",
        ),
    ],
)
def test_validate_rejects_nulls_and_repeated_keys(table, frame, pattern):
    for f in (frame, frame.lazy()):
        with pytest.raises(SchemaError, match=pattern):
            validate_frame(f, table, source=f"{table}.parquet")


def test_nullable_columns_and_events_may_repeat():
    validate_frame(_members(arm=[None] * 4), "members").collect()  # arm is nullable
    validate_frame(pl.concat([_events(), _events()]), "events").collect()  # events have no key
    validate_frame(_events().clear(), "events").collect()  # no rows, nothing at fault


def test_value_checks_off_checks_the_schema_only():
    frame = _members(member_id=[1, 1, None, 4], connections=[None] * 3 + [1])
    assert validate_frame(frame, "members", check_domains=False).collect().height == 4
    # A stage validating a subset checks only those columns: the key is checked only when asked for.
    assert validate_frame(_members(member_id=[1, 1, 2, 2]), "members", columns=("connections",)).collect().height == 4


def test_scan_table_refuses_nulls_of_a_file(tmp_path: Path):
    p = tmp_path / "members.parquet"
    _members(connections=[1, None, 3, 4]).write_parquet(p)
    with pytest.raises(SchemaError, match=r"members\.parquet: column 'connections' has 1 null value\(s\) in 4 rows \(25\.0%\)"):
        scan_table(p, "members")
