"""The forecasting dataset: the log tables read, windowed and filtered into :class:`EngagementData`.

Everything is vectorised: polars for the joins and group-bys, numpy for the
arrays (:mod:`engagement.features`).  Definitions follow the paper
(sections 3.1 and 6.1.1):

* a *valid session* has at least one event of the 10 types of Table 1;
* an *active day* has at least one valid session;
* members with fewer than ``min_history_sessions`` valid sessions in the
  history window are dropped; labels are :mod:`engagement.labels`.

Days are UTC calendar days counted from the window start.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from dwellrank_logs.errors import DroppedRowsWarning, DwellrankError, SchemaError
from dwellrank_logs.io import scan_table, table_path
from dwellrank_logs.read import open_parquet
from dwellrank_logs.schema import EVENT_TYPES, TABLES, validate_frame
from engagement.config import WindowConfig, check_task
from engagement.features import (
    CONTEXT_NAMES,
    DELIVERY_NAMES,
    MEMBER_COLUMNS,
    RECENT_DAYS,
    delivery_features,
    macro_features,
    macro_names,
    member_feature_columns,
    sequence_inputs,
)
from engagement.labels import day_label, session_label
from engagement.transitions import member_day_transitions, session_transitions, transition_array

__all__ = [
    "NEEDED_COLUMNS",
    "EngagementData",
    "assemble_members",
    "build_dataset",
    "check_feature_nulls",
    "check_kept",
    "check_member_columns",
    "read_logs",
]

_US_PER_DAY = 86_400 * 1_000_000
#: The columns each table must have for this stage.  Of the members table only the key: its other
#: numeric and boolean columns are the macroscopic features (:func:`engagement.features.member_feature_columns`),
#: and the schema's columns among them are validated when present.
NEEDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "members": ("member_id",),
    "sessions": ("member_id", "session_id", "start_ts", "duration_s", "client"),
    "events": ("session_id", "ts", "event_type"),
    "deliveries": ("member_id", "ts", "channel", "content"),
}


@dataclass(frozen=True)
class EngagementData:
    """Model inputs and labels of the members that pass the filter.

    Attributes
    ----------
    member_id : ndarray of int64, shape (N,)
    n_sessions : ndarray of int64, shape (N, 2)
        Valid sessions in the history and the future window.
    active_days : ndarray of int64, shape (N, 2)
        Active days in the history and the future window.
    y_day : ndarray of int64, shape (N,)
        Day-level label in {-1, 0, 1}.
    y_session : ndarray of int64, shape (N,)
        Session-level label in {0, 1}.
    nu : ndarray of float32, shape (N, T, 10)
        Event frequency vector of each history session (rows sum to 1), the
        most recent ``max_sessions`` sessions in time order, zero-padded.
    ctx : ndarray of float32, shape (N, T, len(CONTEXT_NAMES))
        Session context c, zero-padded.
    lengths : ndarray of int64, shape (N,)
        Number of valid steps in ``nu``/``ctx`` (>= 1).
    macro : ndarray of float32, shape (N, F)
        Macroscopic features M (names in ``macro_names``), unscaled.
    member_columns : tuple of str
        The members-table columns M was built from.
    delivery : ndarray of float32, shape (N, G)
        Latest platform delivery D in the history window (names in ``delivery_names``).
    activity : ndarray of float32, shape (N, history_days, 10)
        Daily event counts (the Activity LSTM input, the paper's A transposed).
    transitions : ndarray of float32, shape (N, history_days, 10, 10)
        Daily action graphs: ``[i, t, a, b]`` counts event type ``b`` directly
        following type ``a`` in a session started on day ``t``
        (:mod:`engagement.transitions`; the Temporal GCN-LSTM input).
    session_counts : ndarray of int64, shape (S, 10)
        Event counts of every valid history-window session of every member
        (before the filter): the LDA corpus.  Uses no future-window data.
    window : WindowConfig
    start : datetime.datetime
        UTC start of history day 0.
    """

    member_id: np.ndarray
    n_sessions: np.ndarray
    active_days: np.ndarray
    y_day: np.ndarray
    y_session: np.ndarray
    nu: np.ndarray
    ctx: np.ndarray
    lengths: np.ndarray
    macro: np.ndarray
    delivery: np.ndarray
    activity: np.ndarray
    transitions: np.ndarray
    session_counts: np.ndarray
    window: WindowConfig
    start: dt.datetime
    member_columns: tuple[str, ...] = MEMBER_COLUMNS
    macro_names: tuple[str, ...] = macro_names(MEMBER_COLUMNS)
    delivery_names: tuple[str, ...] = DELIVERY_NAMES
    context_names: tuple[str, ...] = CONTEXT_NAMES

    @property
    def n_members(self) -> int:
        return int(self.member_id.size)

    def labels(self, task: str) -> np.ndarray:
        """Class indices for ``task``: day -> ``y_day + 1`` in {0, 1, 2}; session -> ``y_session``."""
        check_task(task)
        return self.y_day + 1 if task == "day" else self.y_session

    def subset(self, rows: np.ndarray) -> EngagementData:
        """The members at positions ``rows`` (all per-member arrays indexed; corpus kept)."""
        per_member = (
            "member_id",
            "n_sessions",
            "active_days",
            "y_day",
            "y_session",
            "nu",
            "ctx",
            "lengths",
            "macro",
            "delivery",
            "activity",
            "transitions",
        )
        return dataclasses.replace(self, **{k: getattr(self, k)[rows] for k in per_member})


def read_logs(logs_dir: str | os.PathLike[str]) -> dict[str, pl.LazyFrame]:
    """Scan and validate the four tables this stage reads (members, sessions, events, deliveries).

    Raises
    ------
    SchemaError
        ``logs_dir`` is not a directory, a table file is missing or unreadable,
        or a needed column is missing or of the wrong type.
    """
    d = Path(logs_dir)
    if not d.is_dir():
        raise SchemaError(f"{d}: not a directory of log tables")
    out = {t: scan_table(table_path(d, t), t, columns=cols) for t, cols in NEEDED_COLUMNS.items() if t != "members"}
    path = table_path(d, "members")
    return {"members": validate_frame(open_parquet(path, "members"), "members", str(path), _present(open_parquet(path, "members"))), **out}


def _present(frame: pl.LazyFrame | pl.DataFrame) -> tuple[str, ...]:
    """The members table's key and every other schema column it has (validated as the schema says)."""
    try:
        names = set(frame.lazy().collect_schema().names())
    except Exception:  # unreadable: validate_frame names the file and the reason
        return NEEDED_COLUMNS["members"]
    return (*NEEDED_COLUMNS["members"], *(c for c in TABLES["members"].names if c in names and c not in NEEDED_COLUMNS["members"]))


def check_member_columns(
    schema: pl.Schema | dict[str, pl.DataType], wanted: tuple[str, ...], source: str, model: str | None = None
) -> None:
    """Refuse a members table that lacks a column the model's macroscopic features came from.

    Raises
    ------
    SchemaError
        One line naming ``source``, the missing column(s) and what ``model`` expects,
        or a column named as one the dataset adds (``row``, ``n_h``, ...).
    """
    taken = sorted(set(wanted) & {"row", "n_h", "n_f", "a_h", "a_f", "n_h7", "a_h7"})
    if taken:
        raise SchemaError(
            f"{source}: members column(s) {', '.join(repr(c) for c in taken)} share a name with the dataset's own per-member "
            "counts; rename them"
        )
    missing = [c for c in wanted if c not in schema]
    if missing:
        raise SchemaError(
            f"{source}: the members table has no column {', '.join(repr(c) for c in missing)}; "
            + (f"the model {model} was trained with" if model else "asked for")
            + f" macroscopic features from members columns {', '.join(wanted)}"
        )


def _as_lazy(tables: Mapping[str, pl.LazyFrame | pl.DataFrame]) -> dict[str, pl.LazyFrame]:
    out = {}
    for t, cols in NEEDED_COLUMNS.items():
        if t not in tables:
            raise SchemaError(f"the {t} table is missing; build_dataset needs {', '.join(NEEDED_COLUMNS)}")
        frame = tables[t]
        cols = _present(frame) if t == "members" else cols
        out[t] = frame if isinstance(frame, pl.LazyFrame) else validate_frame(frame, t, source=f"<{t} table>", columns=cols)
    return out


def check_feature_nulls(nulls: Mapping[str, int]) -> None:
    """Refuse macroscopic feature columns with null or NaN values (``nulls``: how many per column).

    Raises
    ------
    SchemaError
        One line naming each such column and its count.
    """
    bad = {c: n for c, n in nulls.items() if n > 0}
    if bad:
        raise SchemaError(
            f"<members table>: macroscopic feature column(s) {', '.join(f'{c!r} ({n} null or NaN)' for c, n in bad.items())} "
            "must have a value for every member"
        )


def build_dataset(
    tables: Mapping[str, pl.LazyFrame | pl.DataFrame], window: WindowConfig | None = None, member_columns: tuple[str, ...] | None = None
) -> EngagementData:
    """Windows, labels and padded model inputs for every member that passes the filter.

    Parameters
    ----------
    tables : mapping of table name to polars frame
        ``members``, ``sessions``, ``events`` and ``deliveries`` (as returned by
        :func:`read_logs`, or in-memory DataFrames, validated here).
    window : WindowConfig, optional
    member_columns : tuple of str, optional
        The members-table columns of the macroscopic features (a trained
        model's); default every feature column the table has
        (:func:`engagement.features.member_feature_columns`).

    Returns
    -------
    EngagementData

    Raises
    ------
    SchemaError
        A table is missing or breaks the schema; the members table lacks one of
        ``member_columns``, or a feature column that is not in the schema holds nulls.
    DwellrankError
        No member table rows, no valid session, logs shorter than the two
        windows, or no member left after the ``min_history_sessions`` filter.
    """
    w = window if window is not None else WindowConfig()
    lf = _as_lazy(tables)
    H, F = w.history_days, w.future_days

    schema = lf["members"].collect_schema()
    mcols = member_feature_columns(schema) if member_columns is None else tuple(member_columns)
    check_member_columns(schema, mcols, "<members table>")
    members = lf["members"].select(*NEEDED_COLUMNS["members"], *mcols).collect()
    check_feature_nulls(
        {c: members[c].null_count() + (int(members[c].is_nan().sum()) if members[c].dtype.is_float() else 0) for c in mcols}
    )
    if members.height == 0:
        raise DwellrankError("members table has no rows; nothing to forecast")
    per_session = (
        lf["events"]
        .with_columns(type=pl.col("event_type").replace_strict(list(EVENT_TYPES), list(range(len(EVENT_TYPES))), return_dtype=pl.Int64))
        .group_by("session_id", "type")
        .agg(n=pl.len())
        .collect()
    )
    # A valid session has at least one event of the 10 types: inner join on sessions seen in events.
    valid_ids = per_session.select(pl.col("session_id").unique())
    sessions = lf["sessions"].select(NEEDED_COLUMNS["sessions"]).collect().join(valid_ids, on="session_id", how="semi")
    if sessions.height == 0:
        raise DwellrankError("sessions table has no valid session (a session with at least one event in the events table)")

    start = _window_start(sessions, w)
    start_lit = pl.lit(start).cast(sessions.schema["start_ts"])
    sessions = sessions.with_columns(
        t_days=(pl.col("start_ts") - start_lit).dt.total_microseconds() / _US_PER_DAY,
    ).with_columns(day=pl.col("t_days").floor().cast(pl.Int64))
    last_day = int(sessions["day"].max())  # type: ignore[arg-type]
    if last_day < H + F - 1:
        raise DwellrankError(
            f"sessions.start_ts covers days 0..{last_day} from {start.date()}; history_days + future_days = {H + F} "
            f"needs sessions up to day {H + F - 1} (shorten the windows or pass longer logs)"
        )
    sessions = sessions.filter((pl.col("day") >= 0) & (pl.col("day") < H + F))
    is_h = pl.col("day") < H
    stats = sessions.group_by("member_id").agg(
        n_h=is_h.sum(),
        n_f=(~is_h).sum(),
        a_h=pl.col("day").filter(is_h).n_unique(),
        a_f=pl.col("day").filter(~is_h).n_unique(),
        n_h7=(is_h & (pl.col("day") >= H - RECENT_DAYS)).sum(),
        a_h7=pl.col("day").filter(is_h & (pl.col("day") >= H - RECENT_DAYS)).n_unique(),
    )
    kept = (
        members.join(stats, on="member_id", how="left")
        .with_columns(pl.col("n_h", "n_f", "a_h", "a_f", "n_h7", "a_h7").fill_null(0).cast(pl.Int64))
        .filter(pl.col("n_h") >= max(w.min_history_sessions, 1))
        .sort("member_id")
        .with_row_index("row")
    )
    check_kept(members.height, kept.height, w, start)

    # The LDA corpus: every valid history session, all members, in time order.
    hist = sessions.filter(is_h).sort("member_id", "start_ts", "session_id").with_row_index("sidx")
    counts = np.zeros((hist.height, len(EVENT_TYPES)), dtype=np.int64)
    pc = per_session.join(hist.select("session_id", "sidx"), on="session_id", how="inner")
    counts[pc["sidx"].to_numpy(), pc["type"].to_numpy()] = pc["n"].to_numpy()

    delivery = delivery_features(lf["deliveries"].select(NEEDED_COLUMNS["deliveries"]), kept, start, w)
    transitions = member_day_transitions(session_transitions(lf["events"]).collect(), hist)
    return assemble_members(hist, kept, counts, delivery, w, start, mcols, transitions=transitions)


def check_kept(n_members: int, n_kept: int, w: WindowConfig, start: dt.datetime) -> None:
    """Refuse logs where no member passes the ``min_history_sessions`` filter; count those it leaves out.

    Raises
    ------
    DwellrankError
        No member is kept.

    Warns
    -----
    DroppedRowsWarning
        Some members are left out (``--strict`` makes it an error).
    """
    rule = f"at least min_history_sessions = {w.min_history_sessions} valid sessions in the {w.history_days}-day history window from {start.date()}"
    if n_kept == 0:
        raise DwellrankError(f"no member has {rule} ({n_members} members in the members table)")
    if n_kept < n_members:
        warnings.warn(
            f"{n_members - n_kept:,} of {n_members:,} members of the members table are left out: they do not have {rule}",
            DroppedRowsWarning,
            stacklevel=3,
        )


def assemble_members(
    hist: pl.DataFrame,
    kept: pl.DataFrame,
    counts: np.ndarray,
    delivery: np.ndarray,
    w: WindowConfig,
    start: dt.datetime,
    member_columns: tuple[str, ...] = MEMBER_COLUMNS,
    *,
    transitions: pl.DataFrame,
) -> EngagementData:
    """The model inputs of the kept members, from the engine-neutral per-member and per-session tables.

    Shared by both engines (``build_dataset`` and the Spark reduction).

    Parameters
    ----------
    hist : DataFrame
        Valid history sessions in time order: ``member_id``, ``sidx`` (row of
        ``counts``), ``day`` (history day), ``t_days`` and the context columns.
    kept : DataFrame
        One row per kept member: ``member_id``, ``row``, the session and active-day
        counts (``n_h``, ``n_f``, ``a_h``, ``a_f``, ...) and the profile columns.
    counts : ndarray, int64, shape (n_sessions, n_event_types)
        Event-type counts of each history session (the LDA corpus).
    delivery : ndarray, float32, shape (n_kept, n_delivery_features)
    member_columns : tuple of str
        The columns of ``kept`` the macroscopic features come from.
    transitions : DataFrame
        Per-(member, day) transition counts (:data:`engagement.transitions.TRANSITION_COLUMNS`).
    """
    H, F = w.history_days, w.future_days
    seq = sequence_inputs(hist, kept, counts, w)
    activity = np.zeros((kept.height, H, len(EVENT_TYPES)), dtype=np.float32)
    hk = hist.join(kept.select("member_id", "row"), on="member_id", how="inner")
    np.add.at(activity, (hk["row"].to_numpy(), hk["day"].to_numpy()), counts[hk["sidx"].to_numpy()].astype(np.float32))

    n_s = kept.select("n_h", "n_f").to_numpy()
    a_d = kept.select("a_h", "a_f").to_numpy()
    return EngagementData(
        member_id=kept["member_id"].to_numpy(),
        n_sessions=n_s,
        active_days=a_d,
        y_day=day_label(a_d[:, 0], a_d[:, 1], H, F),
        y_session=session_label(n_s[:, 0], n_s[:, 1], H, F),
        nu=seq["nu"],
        ctx=seq["ctx"],
        lengths=seq["lengths"],
        macro=macro_features(kept, hk, counts, w, member_columns),
        delivery=delivery,
        activity=activity,
        transitions=transition_array(transitions, kept, H),
        session_counts=counts,
        window=w,
        start=start,
        member_columns=tuple(member_columns),
        macro_names=macro_names(tuple(member_columns)),
    )


def _window_start(sessions: pl.DataFrame, w: WindowConfig) -> dt.datetime:
    if w.start_date is not None:
        return dt.datetime.combine(dt.date.fromisoformat(w.start_date), dt.time(), tzinfo=dt.timezone.utc)
    first = sessions["start_ts"].min()
    return dt.datetime.combine(first.date(), dt.time(), tzinfo=dt.timezone.utc)  # type: ignore[union-attr]
