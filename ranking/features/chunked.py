"""The training frame in bounded memory: the same rows as :func:`~ranking.features.training_frame`, a few days at a time.

:func:`raw_chunks` reads the impressions of a few request days at a time
(sessions of those days first, so that only their impressions are joined)
and keeps, per history table, the running totals of the days already done:
the counts before an impression are those totals plus the within-chunk
cumulative counts of :func:`~ranking.features.training._cumulative_before`.
A chunk holds the *raw* columns in narrow dtypes (counts as UInt32, types and
clients as categorical codes); :func:`frame_from_raw` derives the features and
labels from them with the one definition of each (:mod:`ranking.features.evaluate`,
``_label_exprs``), so a caller can sample rows before paying for 40 Float64 columns.

Invariant: the chunks, in order, through :func:`frame_from_raw`, equal
:func:`~ranking.features.training_frame` exactly (every column; tested).  The
counts are integers, so the Float64 sums of the original and the UInt32 sums
here agree whatever the grouping.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import polars as pl

from dwellrank_logs.errors import SchemaError
from dwellrank_logs.protocol import skip_label_expr
from dwellrank_logs.schema import ACTION_COLUMN, ACTIONS
from ranking.features.catalogue import _RAW, FeatureSet, get_feature_set, member_profiles
from ranking.features.evaluate import _derive
from ranking.features.training import (
    _EVENT_COLUMNS,
    _check_inputs,
    _cumulative_before,
    _joined_impressions,
    _label_exprs,
    _raw_sums,
    training_frame,
)
from ranking.features.validate import _check_profiles

__all__ = [
    "IMPRESSION_BYTES",
    "RAW_WIDTHS",
    "check_orphans",
    "day_counts",
    "frame_from_raw",
    "hour_counts",
    "plan_chunks",
    "raw_chunks",
    "training_frame_chunked",
]

_COUNT_TYPE = pl.UInt32
_RAW_COUNTS: tuple[str, ...] = tuple(v for _, cols in _RAW.values() for v in cols.values())
#: Bytes per row of a raw chunk's columns (what one kept row costs): ids and times 8, counts 4, codes 4, flags 1.
RAW_WIDTHS: dict[str, int] = {
    **{c: 8 for c in ("session_id", "member_id", "update_id", "ts", "created_ts", "request_ts", "dwell_s", "upstream_value")},
    "day": 4,
    "position": 4,
    **{ACTION_COLUMN[a]: 1 for a in ACTIONS},
    "downstream_clicks": 4,
    "downstream_virals": 4,
    **{c: 4 for c in _RAW_COUNTS},
    "connections": 4,
    "tenure_days": 4,
    "seniority": 1,
    "is_premium": 1,
    "update_type": 4,
    "client": 4,
}


#: The impression columns the frame reads.
_IMPRESSION_COLUMNS: tuple[str, ...] = (
    "member_id",
    "update_id",
    "update_type",
    "session_id",
    "ts",
    "position",
    "dwell_s",
    *(ACTION_COLUMN[a] for a in ACTIONS),
    "downstream_clicks",
    "downstream_virals",
    "upstream_value",
)
#: Bytes per impression that :func:`raw_chunks` holds with ``hold=True`` (its day included).
IMPRESSION_BYTES = 8 * 6 + 4 * 5 + len(ACTIONS)


def day_counts(tables: Mapping[str, pl.DataFrame | pl.LazyFrame], t_skip_s: float, t_long_s: float) -> pl.DataFrame:
    """Impressions and label positives per request day, in one streamed aggregation (nothing per row is kept).

    Returns
    -------
    polars.DataFrame, sorted by ``day``
        ``day`` (Int32, days since 1970-01-01; null for impressions whose
        session is missing, see :func:`check_orphans`), ``rows`` and, per label
        of the training frame (``click`` .. ``share``, ``skip``, ``long_dwell``), its positives.
    """
    _check_inputs(tables, t_skip_s, t_long_s)
    actions = [ACTION_COLUMN[a] for a in ACTIONS]
    return (
        tables["impressions"]
        .lazy()
        .select("session_id", "dwell_s", *actions)
        .join(tables["sessions"].lazy().select("session_id", "start_ts"), on="session_id", how="left")
        .group_by(pl.col("start_ts").dt.epoch("d").cast(pl.Int32).alias("day"))
        .agg(
            pl.len().alias("rows"),
            *[pl.col(ACTION_COLUMN[a]).sum().alias(a) for a in ACTIONS],
            skip_label_expr(t_skip_s).sum().alias("skip"),
            (pl.col("dwell_s") > t_long_s).sum().alias("long_dwell"),
        )
        .sort("day")
        .collect(engine="streaming")
    )


def check_orphans(days: pl.DataFrame) -> None:
    """Refuse impressions without a session (a null ``day`` in :func:`day_counts`): a chunk of days cannot hold them."""
    orphans = days.filter(pl.col("day").is_null())
    if orphans.height:
        raise SchemaError(
            f"impressions: {int(orphans['rows'][0]):,} row(s) have a session_id that the sessions table lacks; "
            "each impression needs its session (the request day)"
        )


#: A chunk of :func:`raw_chunks`: days ``(first, last)``, or the hour buckets ``lo .. hi`` of one day ``(day, day, lo, hi)``.
Chunk = tuple[int, ...]
_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000


def _hour_bucket(day: pl.Expr) -> pl.Expr:
    """Whole hours from the start of the request ``day`` to the impression's ``ts`` (past 23 for a session that runs past midnight)."""
    return (pl.col("ts").dt.epoch("us") - day.cast(pl.Int64) * _DAY_US).floordiv(_HOUR_US)


def hour_counts(tables: Mapping[str, pl.DataFrame | pl.LazyFrame], days: list[int]) -> pl.DataFrame:
    """Impressions per (request ``day``, hour ``bucket`` of their ``ts``) of the given days, in one streamed aggregation.

    The hours of a day too large for one chunk: :func:`plan_chunks` splits it at hour boundaries, so that
    impressions with equal ``ts`` stay in one part (their order is the log's within a part).
    """
    day = pl.col("start_ts").dt.epoch("d").cast(pl.Int32)
    sessions = tables["sessions"].lazy().select("session_id", day.alias("day")).filter(pl.col("day").is_in(days))
    return (
        tables["impressions"]
        .lazy()
        .select("session_id", "ts")
        .join(sessions, on="session_id", how="inner")
        .group_by("day", _hour_bucket(pl.col("day")).alias("bucket"))
        .agg(pl.len().alias("rows"))
        .sort("day", "bucket")
        .collect(engine="streaming")
    )


def plan_chunks(days: pl.DataFrame, max_rows: int, hours: pl.DataFrame | None = None, part_rows: int | None = None) -> list[Chunk]:
    """Consecutive day ranges ``(first, last)`` of at most ``max_rows`` impressions each (one day at least).

    ``days`` is :func:`day_counts`' table.  A day holding more than ``max_rows``
    forms a range of its own (the caller checks that a day fits), unless
    ``hours`` (:func:`hour_counts` of such days) and ``part_rows`` are given:
    then a day of more than ``part_rows`` impressions is split into parts
    ``(day, day, lo, hi)`` of consecutive hour buckets of at most
    ``part_rows`` each (one bucket at least).
    """
    out: list[Chunk] = []
    run: list[tuple[int, int]] = []  # whole days waiting to be grouped
    for day, rows in zip(days["day"].to_list(), days["rows"].to_list(), strict=True):
        if hours is not None and part_rows is not None and rows > part_rows:
            out.extend(_ranges(run, max_rows))
            run = []
            out.extend(_day_parts(day, hours.filter(pl.col("day") == day), part_rows))
        else:
            run.append((day, rows))
    return out + _ranges(run, max_rows)


def _ranges(sizes: list[tuple[int, int]], limit: int) -> list[Chunk]:
    """Greedy consecutive ranges ``(first key, last key)`` of ``(key, size)`` pairs summing to at most ``limit`` (one pair at least)."""
    out: list[Chunk] = []
    for key, size in sizes:
        if out and out[-1][2] + size <= limit:
            out[-1] = (out[-1][0], key, out[-1][2] + size)
        else:
            out.append((key, key, size))
    return [(a, b) for a, b, _ in out]


def _day_parts(day: int, hours: pl.DataFrame, part_rows: int) -> list[Chunk]:
    parts: list[Chunk] = [
        (day, day, lo, hi) for lo, hi in _ranges(list(zip(hours["bucket"].to_list(), hours["rows"].to_list(), strict=True)), part_rows)
    ]
    # The first and last parts reach to any hour: the buckets cover the day's rows, and a range open at both
    # ends cannot lose one whose bucket the count did not see.
    if parts:
        parts[0] = (day, day, -(1 << 62), parts[0][3])
        parts[-1] = (day, day, parts[-1][2], 1 << 62)
    return parts


def raw_chunks(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame], t_skip_s: float, chunks: list[Chunk], hold: bool = True
) -> Iterator[pl.DataFrame]:
    """The raw columns of the training frame's rows, one chunk of request days at a time, in the frame's order.

    Parameters
    ----------
    tables : mapping of table name to frame
        ``impressions``, ``sessions``, ``updates``, ``members``.
    t_skip_s : float, seconds
        Threshold of the not-skipped counts.
    chunks : list of (int, int) or (int, int, int, int)
        Ascending, non-overlapping day ranges (inclusive), e.g. :func:`plan_chunks`'; a
        4-tuple ``(day, day, lo, hi)`` is the impressions of one day whose hour bucket
        (:func:`hour_counts`) is in ``lo .. hi``.  The parts of a day follow each other: each
        sees the totals of the earlier days only, and the day enters the totals after its last part.
    hold : bool
        Read the impression columns the frame needs once and keep them
        (:data:`IMPRESSION_BYTES` per row) rather than scanning the table again for each chunk.

    Yields
    ------
    polars.DataFrame
        One chunk's rows sorted by (day, ts, log order): the impression
        columns the labels read, ``day``, ``request_ts``, ``client``,
        ``created_ts``, the raw counts of ``_RAW`` (UInt32, 0 without history)
        and the profile columns; ``update_type`` and ``client`` categorical.
    """
    profiles = member_profiles(tables["members"]).lazy()
    sums = _raw_sums()
    state: dict[str, pl.DataFrame | None] = dict.fromkeys(_RAW)
    imp = tables["impressions"].lazy().select(*_IMPRESSION_COLUMNS)
    day = pl.col("start_ts").dt.epoch("d").cast(pl.Int32)
    held = None
    if hold:
        days_of = tables["sessions"].lazy().select("session_id", day.alias("_day"))
        held = (
            imp.join(days_of, on="session_id", how="left", maintain_order="left")
            .with_columns(pl.col("update_type").cast(pl.Categorical))  # a 4-byte code instead of a string per row
            .collect()
        )
    pending: dict[str, pl.DataFrame] = {}  # the totals of the parts of a day done so far
    for i, chunk in enumerate(chunks):
        first, last = chunk[0], chunk[1]
        hours = None if len(chunk) == 2 else pl.lit(first).cast(pl.Int32)
        sessions = tables["sessions"].lazy().filter(day.is_between(first, last))
        if held is not None:  # a filter keeps the rows' log order, all that the tie-break needs
            part_imp = held.lazy().filter(pl.col("_day").is_between(first, last))
            if hours is not None:
                part_imp = part_imp.filter(_hour_bucket(hours).is_between(chunk[2], chunk[3]))
            part_imp = part_imp.drop("_day")
        else:
            part_imp = imp.with_row_index("_log").join(sessions.select("session_id"), on="session_id", how="semi")
            if hours is not None:
                part_imp = part_imp.filter(_hour_bucket(hours).is_between(chunk[2], chunk[3]))
            part_imp = part_imp.sort("_log").drop("_log")
        part = _joined_impressions({**tables, "impressions": part_imp, "sessions": sessions}, t_skip_s, how="inner").collect()
        events = part.lazy().select(*_EVENT_COLUMNS)
        rows = part.lazy()
        totals: dict[str, pl.LazyFrame] = {}
        for name, (keys, cols) in _RAW.items():
            names = list(cols.values())
            if first == last:  # one day: nothing of the chunk itself is earlier
                rows = rows.with_columns([pl.lit(0, _COUNT_TYPE).alias(c) for c in names])
            else:
                rows = _cumulative_before(rows, events, keys, sums[name]).with_columns(pl.col(names).fill_null(0).cast(_COUNT_TYPE))
            before = state[name]
            if before is not None:  # add the days of earlier chunks
                rows = rows.join(before.lazy(), on=list(keys), how="left", suffix="_before").with_columns(
                    [(pl.col(c) + pl.col(f"{c}_before").fill_null(0)).alias(c) for c in names]
                )
                rows = rows.drop([f"{c}_before" for c in names])
            totals[name] = events.group_by(*keys).agg(*[e.cast(_COUNT_TYPE).alias(n) for n, e in sums[name].items()])
        out = (
            rows.join(profiles, on="member_id", how="left")
            .sort("day", "ts", "_row")
            .select(*RAW_WIDTHS)
            .with_columns(pl.col("update_type", "client").cast(pl.Categorical))
            .collect()
        )
        _check_profiles(out, "impressions")
        day_done = i + 1 == len(chunks) or chunks[i + 1][0] != last or len(chunk) == 2
        for name, (keys, _) in _RAW.items():
            new = totals[name].collect()
            if name in pending:
                new = _add_totals(pending.pop(name), new, keys)
            if not day_done:  # later parts of this day must not see it
                pending[name] = new
                continue
            before = state[name]
            state[name] = new if before is None else _add_totals(before, new, keys)
            del before
        del part, events, rows
        yield out


def _add_totals(before: pl.DataFrame, new: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """The per-key sums of both tables (integer counts: exact in any order; the rows' order is not kept).

    A full join hashes the day's keys (the smaller side) and streams the running totals past them, so
    the merge holds the totals about twice (in and out); concatenating both and grouping held them
    three to four times: 200,000 x 28 peaked at 7.95 GiB in that merge under an 8G budget.
    """
    counts = [c for c in new.columns if c not in keys]
    return (
        before.join(new, on=list(keys), how="full", coalesce=True, suffix="_new")
        .with_columns([(pl.col(c).fill_null(0) + pl.col(f"{c}_new").fill_null(0)).cast(_COUNT_TYPE).alias(c) for c in counts])
        .select(*keys, *counts)
    )


def frame_from_raw(raw: pl.DataFrame, feature_set: str | FeatureSet, t_skip_s: float, t_long_s: float) -> pl.DataFrame:
    """The training frame's columns (keys, labels, targets, Float64 features) of raw rows of :func:`raw_chunks`."""
    fs = get_feature_set(feature_set)
    labels = raw.select(*_label_exprs(t_skip_s, t_long_s))
    return pl.concat([labels, _derive(raw, fs).collect()], how="horizontal")


def training_frame_chunked(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
    feature_set: str | FeatureSet,
    t_skip_s: float,
    t_long_s: float = 10.0,
    max_chunk_rows: int = 1 << 22,
    hold: bool = True,
    part_rows: int | None = None,
) -> pl.DataFrame:
    """:func:`~ranking.features.training_frame` built chunk by chunk (equal to it; see the module's invariant).

    ``max_chunk_rows``, ``part_rows`` and ``hold``: those of :func:`plan_chunks` and :func:`raw_chunks`
    (with ``part_rows``, days of more impressions are built in parts of whole hours).
    """
    _check_inputs(tables, t_skip_s, t_long_s)
    days = day_counts(tables, t_skip_s, t_long_s)
    check_orphans(days)
    big = [] if part_rows is None else days.filter(pl.col("rows") > part_rows)["day"].to_list()
    chunks = plan_chunks(days, max_chunk_rows, hour_counts(tables, big) if big else None, part_rows)
    parts = [frame_from_raw(raw, feature_set, t_skip_s, t_long_s) for raw in raw_chunks(tables, t_skip_s, chunks, hold)]
    if not parts:
        return training_frame(tables, feature_set, t_skip_s, t_long_s)  # no rows: the same empty frame
    return pl.concat(parts)
