"""The log schema: table names, column names, Arrow/polars types and domains.

This module is the single owner of the column layout that every stage reads
and writes (see ``docs/schema.md``).  Real platform logs mapped onto these
tables run through every later stage unchanged.

Validation is by *kind* (integer, float, boolean, string, datetime) so that,
say, an ``int32`` ``position`` from a warehouse export is accepted and cast to
the canonical ``int32``/``int64`` type instead of being rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from dwellrank_logs.checks import require_columns
from dwellrank_logs.errors import SchemaError, first_line

__all__ = [
    "ACTIONS",
    "ACTION_COLUMN",
    "ACTION_COLUMNS",
    "CHANNELS",
    "CLIENTS",
    "CONTENTS",
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "TABLES",
    "TABLE_NAMES",
    "TIME_UNIT",
    "TIME_ZONE",
    "UPDATE_TYPES",
    "VIRAL_COLUMNS",
    "Column",
    "TableSchema",
    "empty_frame",
    "validate_frame",
]

SCHEMA_VERSION = "1.0"
TIME_UNIT: Literal["us"] = "us"
TIME_ZONE = "UTC"
_TS = pl.Datetime(TIME_UNIT, TIME_ZONE)

#: The ten event types of the DIGMN paper's Table 1, in its order.
EVENT_TYPES: tuple[str, ...] = (
    "feed",
    "search",
    "view_profile",
    "jobs",
    "pymk",
    "notification",
    "message",
    "edit_profile",
    "share_content",
    "follow",
)
#: Update types the simulator produces; real logs may carry others.
UPDATE_TYPES: tuple[str, ...] = ("text", "image", "video", "article", "job")
CHANNELS: tuple[str, ...] = ("email", "sms", "push")
CONTENTS: tuple[str, ...] = ("feed", "jobs", "pymk", "message", "other")
CLIENTS: tuple[str, ...] = ("ios", "android", "web")
#: Click and viral actions (the post's "click/viral action" set).
ACTION_COLUMNS: tuple[str, ...] = ("clicked", "reacted", "commented", "shared")
VIRAL_COLUMNS: tuple[str, ...] = ("reacted", "commented", "shared")
#: The action names of the post's value function (heads, weights, regressions), one per column of
#: :data:`ACTION_COLUMNS`, in the same order: ``ACTION_COLUMN[action]`` is the log column.
ACTIONS: tuple[str, ...] = ("click", "react", "comment", "share")
ACTION_COLUMN: dict[str, str] = dict(zip(ACTIONS, ACTION_COLUMNS, strict=True))

_KIND_CHECK = {
    "int": lambda d: d.is_integer(),
    "float": lambda d: d.is_numeric(),
    "bool": lambda d: d == pl.Boolean,
    "str": lambda d: d in (pl.String, pl.Categorical) or isinstance(d, pl.Enum),
    "datetime": lambda d: isinstance(d, pl.Datetime),
}
_KIND_WORD = {
    "int": "an integer type",
    "float": "a numeric type",
    "bool": "Boolean",
    "str": "a string type",
    "datetime": "a Datetime type",
}


@dataclass(frozen=True)
class Column:
    """One column of a log table.

    Parameters
    ----------
    name : str
        Column name.
    kind : {"int", "float", "bool", "str", "datetime"}
        What an input column must be; any width of that kind is accepted.
    dtype : polars.DataType
        The canonical type the column is cast to after validation.
    nullable : bool
        Whether nulls are allowed.
    domain : tuple of str, optional
        Allowed values for string columns; ``None`` means any string.
    doc : str
        Meaning and unit, rendered in ``docs/schema.md``.
    """

    name: str
    kind: str
    dtype: pl.DataType
    nullable: bool = False
    domain: tuple[str, ...] | None = None
    doc: str = ""


@dataclass(frozen=True)
class TableSchema:
    """Required columns of one table; extra columns are kept as they are.

    ``key`` names the column whose values identify a row (each appears once),
    or is None for a table of events that may repeat.
    """

    name: str
    columns: tuple[Column, ...]
    doc: str = ""
    key: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def polars_schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}


def _c(name: str, kind: str, dtype: pl.DataType, doc: str, **kw: object) -> Column:
    return Column(name=name, kind=kind, dtype=dtype, doc=doc, **kw)  # type: ignore[arg-type]


TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (
        TableSchema(
            "members",
            (
                _c("member_id", "int", pl.Int64(), "member key"),
                _c("connections", "int", pl.Int32(), "number of first-degree connections"),
                _c("tenure_days", "int", pl.Int32(), "days since sign-up at the start of the log"),
                _c("client", "str", pl.String(), "main client (ios, android, web, ...)"),
                _c("arm", "str", pl.String(), "A/B arm; null outside an experiment", nullable=True),
                _c("industry", "int", pl.Int16(), "industry code (macroscopic feature)"),
                _c("seniority", "int", pl.Int8(), "seniority level 0..5 (macroscopic feature)"),
                _c("is_premium", "bool", pl.Boolean(), "premium subscriber (macroscopic feature)"),
            ),
            "one row per member; macroscopic features of the DIGMN paper",
            key="member_id",
        ),
        TableSchema(
            "updates",
            (
                _c("update_id", "int", pl.Int64(), "update key"),
                _c("author_id", "int", pl.Int64(), "member_id of the author"),
                _c("update_type", "str", pl.String(), "text, image, video, article, job, ..."),
                _c("created_ts", "datetime", _TS, "creation time (UTC)"),
                _c("topic", "int", pl.Int16(), "topic id from the content classifier"),
            ),
            "one row per feed update",
            key="update_id",
        ),
        TableSchema(
            "impressions",
            (
                _c("member_id", "int", pl.Int64(), "viewer"),
                _c("update_id", "int", pl.Int64(), "update shown"),
                _c("update_type", "str", pl.String(), "denormalised from updates"),
                _c("session_id", "int", pl.Int64(), "session (one feed request per session)"),
                _c("ts", "datetime", _TS, "time the update became visible (UTC)"),
                _c("position", "int", pl.Int32(), "0-based slot in the ranked feed"),
                _c("dwell_s", "float", pl.Float64(), "on-feed dwell, seconds (>= 0)"),
                _c("clicked", "bool", pl.Boolean(), "clicked through"),
                _c("reacted", "bool", pl.Boolean(), "reacted (like, celebrate, ...)"),
                _c("commented", "bool", pl.Boolean(), "commented"),
                _c("shared", "bool", pl.Boolean(), "re-shared"),
                _c(
                    "click_dwell_s",
                    "float",
                    pl.Float64(),
                    "after-click dwell, seconds; null without a click",
                    nullable=True,
                ),
                _c("downstream_clicks", "int", pl.Int32(), "clicks by the viewer's network caused by the viewer's actions"),
                _c("downstream_virals", "int", pl.Int32(), "viral actions by the viewer's network caused by the viewer's actions"),
                _c("upstream_value", "float", pl.Float64(), "feedback value to the author (>= 0)"),
                _c(
                    "propensity",
                    "float",
                    pl.Float64(),
                    "logging ranker's probability of placing this update at this position "
                    "given the updates above it (Plackett-Luce step); null for deterministic rankers",
                    nullable=True,
                ),
            ),
            "one row per update viewed on the feed",
        ),
        TableSchema(
            "sessions",
            (
                _c("member_id", "int", pl.Int64(), "member"),
                _c("session_id", "int", pl.Int64(), "session key"),
                _c("start_ts", "datetime", _TS, "session start (UTC)"),
                _c("duration_s", "float", pl.Float64(), "session duration, seconds"),
                _c("client", "str", pl.String(), "client used"),
            ),
            "one row per session",
            key="session_id",
        ),
        TableSchema(
            "events",
            (
                _c("member_id", "int", pl.Int64(), "member"),
                _c("session_id", "int", pl.Int64(), "session the event belongs to"),
                _c("ts", "datetime", _TS, "event time (UTC)"),
                _c("event_type", "str", pl.String(), "one of the 10 types of DIGMN Table 1", domain=EVENT_TYPES),
            ),
            "one row per user event",
        ),
        TableSchema(
            "deliveries",
            (
                _c("member_id", "int", pl.Int64(), "member the message went to"),
                _c("ts", "datetime", _TS, "delivery time (UTC)"),
                _c("channel", "str", pl.String(), "email, sms or push", domain=CHANNELS),
                _c("content", "str", pl.String(), "feed, jobs, pymk, message or other", domain=CONTENTS),
            ),
            "one row per platform delivery message",
        ),
    )
}
TABLE_NAMES: tuple[str, ...] = tuple(TABLES)


def empty_frame(table: str) -> pl.DataFrame:
    """An empty DataFrame with the canonical columns and types of ``table``."""
    return pl.DataFrame(schema=_table(table).polars_schema())


def _table(table: str) -> TableSchema:
    try:
        return TABLES[table]
    except KeyError:
        raise SchemaError(f"unknown table '{table}', expected one of {', '.join(TABLE_NAMES)}") from None


def validate_frame(
    frame: pl.DataFrame | pl.LazyFrame,
    table: str,
    source: str = "<frame>",
    columns: tuple[str, ...] | None = None,
    check_domains: bool = True,
) -> pl.LazyFrame:
    """Check a frame against the schema of ``table`` and cast it to canonical types.

    Parameters
    ----------
    frame : polars.DataFrame or polars.LazyFrame
        The table as read.  Its schema is inspected first; the values are then
        checked in one aggregation pass (no rows are materialised).
    table : str
        One of :data:`TABLE_NAMES`.
    source : str
        Where the frame came from (a file path); every message starts with it.
    columns : tuple of str, optional
        Validate only these schema columns (a stage that needs a subset of a
        table should not reject logs lacking the others).  Default: all.
    check_domains : bool
        Whether to check the values: no nulls in the columns the schema says
        are non-null, each value of the table's key (``member_id`` of members,
        ``update_id`` of updates, ``session_id`` of sessions) once, and string
        columns with a fixed domain within it.  False checks the schema only,
        for a stage that treats unusable values itself (and counts them).

    Returns
    -------
    polars.LazyFrame
        The frame with required columns cast to their canonical dtypes; extra
        columns are passed through untouched.

    Raises
    ------
    SchemaError
        A required column is missing or has the wrong kind of type; with
        ``check_domains``, a non-null column holds nulls, a key repeats, or a
        domain column holds values outside the allowed set.  Each message
        names ``source``, the column and how many rows are at fault.
    """
    spec = _table(table)
    lf = frame.lazy()
    try:
        schema = lf.collect_schema()
    except Exception as exc:  # polars raises several types for unreadable input
        raise SchemaError(f"{source}: cannot read the {table} table: {first_line(exc)}") from exc
    wanted = spec.columns if columns is None else tuple(spec.column(n) for n in columns)
    require_columns(schema.names(), [c.name for c in wanted], f"{table} table", source)
    casts = []
    for col in wanted:
        got = schema[col.name]
        if got == pl.Null:
            # An all-null column carries no type; accept it only where nulls are allowed.
            if not col.nullable:
                raise SchemaError(f"{source}: column '{col.name}' is entirely null; expected {_KIND_WORD[col.kind]}")
        elif not _KIND_CHECK[col.kind](got):
            raise SchemaError(f"{source}: column '{col.name}' must be {_KIND_WORD[col.kind]} ({col.doc}), got {got}")
        if col.kind == "datetime" and isinstance(got, pl.Datetime):
            expr = pl.col(col.name)
            if got.time_zone is None:
                expr = expr.dt.replace_time_zone(TIME_ZONE)
            casts.append(expr.dt.cast_time_unit(TIME_UNIT).dt.convert_time_zone(TIME_ZONE))
        else:
            casts.append(pl.col(col.name).cast(col.dtype))
    if check_domains:
        _check_values(lf, spec, wanted, source)
    return lf.with_columns(casts)


def _check_values(lf: pl.LazyFrame, spec: TableSchema, wanted: tuple[Column, ...], source: str) -> None:
    """Nulls in non-null columns, repeated keys and out-of-domain strings, in one aggregation pass over ``lf``.

    The pass reads the uncast columns (a null count or a distinct count does
    not need the canonical type); only a failing check looks at the rows again,
    to quote an example.
    """
    non_null = [c.name for c in wanted if not c.nullable]
    key = spec.key if spec.key is not None and spec.key in {c.name for c in wanted} else None
    domain_cols = [c for c in wanted if c.domain is not None]
    aggs = [pl.len().alias("_rows")]
    aggs += [pl.col(c).null_count().alias(f"null:{c}") for c in non_null]
    if key is not None:
        aggs.append((pl.len() - pl.col(key).n_unique()).alias("repeats"))
    aggs += [
        pl.col(c.name)
        .cast(pl.String)
        .filter(~pl.col(c.name).cast(pl.String).is_in(list(c.domain or ())) & pl.col(c.name).is_not_null())
        .unique()
        .sort()
        .head(5)
        .implode()
        .alias(f"domain:{c.name}")
        for c in domain_cols
    ]
    try:
        got = lf.select(aggs).collect().row(0, named=True)
    except Exception as exc:  # a part that breaks while read, a cast that fails
        raise SchemaError(f"{source}: cannot read the {spec.name} table: {first_line(exc)}") from exc
    rows = got["_rows"]
    nulls = {c: got[f"null:{c}"] for c in non_null if got[f"null:{c}"]}
    if nulls:
        (first, n), *others = nulls.items()
        also = f"; also null: {', '.join(f'{c!r} ({k:,})' for c, k in others)}" if others else ""
        raise SchemaError(
            f"{source}: column '{first}' has {n:,} null value(s) in {rows:,} rows ({_share(n, rows)}); "
            f"the {spec.name} schema allows none{also}"
        )
    if key is not None and got["repeats"]:
        example = lf.group_by(key).agg(pl.len().alias("n")).filter(pl.col("n") > 1).sort(key).head(1).collect().row(0, named=True)
        raise SchemaError(
            f"{source}: column '{key}' is the key of the {spec.name} table, but {got['repeats']:,} of {rows:,} rows repeat "
            f"a value (e.g. {key} {example[key]} appears {example['n']:,} times); each {key} must appear once"
        )
    for c in domain_cols:
        if got[f"domain:{c.name}"]:
            raise SchemaError(
                f"{source}: column '{c.name}' has unknown value(s) {got[f'domain:{c.name}']}; expected one of {', '.join(c.domain or ())}"
            )


def _share(n: int, rows: int) -> str:
    pct = 100 * n / rows if rows else 0.0
    return f"{pct:.1f}%" if pct >= 0.1 else "<0.1%"
