"""The ranker protocol: where the simulator meets ranking code, and the one skip label.

The simulator (``simulate``) calls :meth:`Ranker.rank` once per simulated day
with *all* feed requests of that day as one candidate table and ranks each
request by descending score (ties by candidate order); ``ranking.FeedRanker``
answers the same call.  Neither side imports the other: both import this module.

A candidate table has the columns of :data:`CANDIDATE_COLUMNS` (documented in
``docs/schema.md``); :func:`validate_candidates` checks a table from a file and
casts it to the canonical types.  A ranker that reads only some columns lists
them in ``candidate_columns`` and the simulator builds only those (a day's table
has ``candidates_per_request`` rows per request, so unused string and timestamp
columns are a real cost).

The skip label of the post, ``dwell < T_skip and no click or viral action``, is
defined once here (:func:`not_skipped`), for polars expressions and numpy
arrays alike; every stage that labels skips calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import polars as pl

from dwellrank_logs.checks import require_columns
from dwellrank_logs.errors import ConfigError, SchemaError
from dwellrank_logs.schema import ACTION_COLUMNS

__all__ = [
    "CANDIDATE_COLUMNS",
    "CANDIDATE_DOCS",
    "HistoryTables",
    "RankOutput",
    "Ranker",
    "RankerBase",
    "any_action_expr",
    "candidate_columns",
    "candidate_kind",
    "forward_candidate_columns",
    "not_skipped",
    "not_skipped_expr",
    "ranker_candidate_columns",
    "ranker_description",
    "ranker_t_skip_s",
    "skip_label_expr",
    "validate_candidates",
]

_T = TypeVar("_T")
_A = TypeVar("_A", pl.Expr, pl.Series, np.ndarray)


# --------------------------------------------------------------------------- the skip label


def not_skipped(dwell_s: _A, action: _A, t_skip_s: float) -> _A:
    """True where an impression is *not* skipped: dwell >= T_skip, or a click/viral action.

    The one definition of the skip label (skipped = ``~not_skipped``).  Works on
    polars expressions or Series and on numpy arrays: ``dwell_s`` in seconds,
    ``action`` Boolean.  Defined for real dwell times only: a NaN dwell compares
    differently in numpy (below everything) and polars (above everything), so
    readers drop or refuse NaN dwell before labelling (``ranking.tskip`` does).
    """
    return (dwell_s >= t_skip_s) | action


def any_action_expr(columns: Sequence[str] = ACTION_COLUMNS) -> pl.Expr:
    """True where any of ``columns`` (click and viral actions by default) is true."""
    return pl.any_horizontal([pl.col(c) for c in columns])


def not_skipped_expr(t_skip_s: float, dwell_col: str = "dwell_s", action_cols: Sequence[str] = ACTION_COLUMNS) -> pl.Expr:
    """:func:`not_skipped` over columns of an impressions table."""
    return not_skipped(pl.col(dwell_col), any_action_expr(action_cols), t_skip_s)


def skip_label_expr(t_skip_s: float, dwell_col: str = "dwell_s", action_cols: Sequence[str] = ACTION_COLUMNS) -> pl.Expr:
    """The skip label over columns of an impressions table: ``~not_skipped_expr``."""
    return ~not_skipped_expr(t_skip_s, dwell_col, action_cols)


# --------------------------------------------------------------------------- history


class HistoryTables:
    """Counts of past impressions, keyed for joining onto candidate rows.

    Each table is computed on first access (a ranker that needs only update
    counts never pays for the member x author table).  Row order is not
    specified; join on the keys.  Built in batch from logs by
    :func:`dwellrank_logs.history.history_tables` and online by the simulator.

    Attributes
    ----------
    updates : DataFrame
        update_id, n_impressions, n_clicks, n_virals, n_not_skipped
    member_types : DataFrame
        member_id, update_type, n_impressions, n_not_skipped, n_actions
    member_authors : DataFrame
        member_id, author_id, n_impressions, n_actions
    member_topics : DataFrame
        member_id, topic (Int64), n_impressions, n_not_skipped, n_actions
    members : DataFrame
        member_id, n_impressions, n_not_skipped, n_actions
    t_skip_s : float
        Dwell threshold of the not-skipped counts, seconds.
    """

    _NAMES = ("updates", "member_types", "member_authors", "member_topics", "members")

    def __init__(
        self,
        updates: pl.DataFrame | Callable[[], pl.DataFrame],
        member_types: pl.DataFrame | Callable[[], pl.DataFrame],
        member_authors: pl.DataFrame | Callable[[], pl.DataFrame],
        member_topics: pl.DataFrame | Callable[[], pl.DataFrame],
        members: pl.DataFrame | Callable[[], pl.DataFrame],
        t_skip_s: float,
    ) -> None:
        self._src = dict(zip(self._NAMES, (updates, member_types, member_authors, member_topics, members), strict=True))
        self._cache: dict[str, pl.DataFrame] = {}
        self._derived: dict[str, Any] = {}
        self.t_skip_s = float(t_skip_s)

    def _get(self, name: str) -> pl.DataFrame:
        if name not in self._cache:
            src = self._src[name]
            self._cache[name] = src if isinstance(src, pl.DataFrame) else src()
        return self._cache[name]

    def derived(self, key: str, build: Callable[[], _T]) -> _T:
        """``build()``, computed on the first call for ``key`` and kept with this snapshot.

        For structures consumers derive from the tables (ranking's lookup indexes): the
        tables never change, so they stay valid for every later request, and they are freed
        with the snapshot.  ``key`` should name the consumer (``"module.name"``).
        """
        try:
            return self._derived[key]
        except KeyError:
            # Two threads may both build; the first stored result is the one every caller gets.
            return self._derived.setdefault(key, build())

    @property
    def updates(self) -> pl.DataFrame:
        return self._get("updates")

    @property
    def member_types(self) -> pl.DataFrame:
        return self._get("member_types")

    @property
    def member_authors(self) -> pl.DataFrame:
        return self._get("member_authors")

    @property
    def member_topics(self) -> pl.DataFrame:
        return self._get("member_topics")

    @property
    def members(self) -> pl.DataFrame:
        return self._get("members")


# --------------------------------------------------------------------------- rankers


#: Every column of a candidate table, in order.
CANDIDATE_COLUMNS: tuple[str, ...] = (
    "request_id",
    "member_id",
    "update_id",
    "update_type",
    "author_id",
    "topic",
    "created_ts",
    "request_ts",
    "client",
)


@dataclass(frozen=True)
class RankOutput:
    """A ranker's answer for a candidate table.

    Attributes
    ----------
    scores : ndarray, shape (n_rows,)
        Higher is shown first.
    propensity : ndarray, shape (n_rows,), optional
        For stochastic rankers: the probability of the row taking the position
        it ends at, given the rows placed above it (one Plackett-Luce step).
        The product over the top positions is the probability of that order.
    """

    scores: np.ndarray
    propensity: np.ndarray | None = None


@runtime_checkable
class Ranker(Protocol):
    """Anything with ``rank(candidates, history, rng) -> RankOutput``.

    ``history`` holds counts of impressions before the current day; rankers
    must not look at anything else about the past.  The optional attributes
    are those of :class:`RankerBase`; a ranker without them gets its defaults.
    """

    def rank(self, candidates: pl.DataFrame, history: HistoryTables, rng: np.random.Generator) -> RankOutput: ...


class RankerBase:
    """The optional attributes of a :class:`Ranker`, declared with their defaults.

    Attributes
    ----------
    candidate_columns : tuple of str, optional
        Candidate columns the ranker reads (``None``: all of them).  A subclass that
        reads more columns than its parent must widen it (or set it to None).
    t_skip_s : float, optional
        Dwell threshold, seconds, for the not-skipped counts of the history it
        is given (``None``: the world's).
    description : str, optional
        A human-readable name for reports (``None``: the class name).
    """

    candidate_columns: tuple[str, ...] | None = None
    t_skip_s: float | None = None
    description: str | None = None


def _attr(ranker: object, name: str) -> Any:
    # The one place optional attributes are read: a duck-typed ranker need not derive from RankerBase.
    return getattr(ranker, name, getattr(RankerBase, name))


def ranker_t_skip_s(ranker: object) -> float | None:
    """``ranker.t_skip_s``, or None when it does not set one."""
    value = _attr(ranker, "t_skip_s")
    return None if value is None else float(value)


def ranker_candidate_columns(ranker: object) -> tuple[str, ...] | None:
    """``ranker.candidate_columns``, or None (all columns) when it does not list them."""
    cols = _attr(ranker, "candidate_columns")
    return None if cols is None else tuple(cols) if not isinstance(cols, str) else cols  # type: ignore[return-value]


def ranker_description(ranker: object) -> str:
    """``ranker.description``, or its class name."""
    return str(_attr(ranker, "description") or type(ranker).__name__)


def forward_candidate_columns(base: object) -> tuple[str, ...] | None:
    """``candidate_columns`` for a wrapper that reads ``request_id`` and whatever its ``base`` reads."""
    cols = ranker_candidate_columns(base)
    return None if cols is None else ("request_id", *cols)


def candidate_columns(rankers: Sequence[object]) -> frozenset[str]:
    """The candidate columns that ``rankers`` read together.

    A ranker without ``candidate_columns`` (or with ``None``) reads all of them;
    listed names must be candidate columns.
    """
    needed = {"request_id"}
    for ranker in rankers:
        cols = ranker_candidate_columns(ranker)
        if cols is None:
            return frozenset(CANDIDATE_COLUMNS)
        if isinstance(cols, str):
            raise ConfigError(f"{type(ranker).__name__}.candidate_columns must be a tuple of column names, got the string {cols!r}")
        unknown = sorted(set(cols) - set(CANDIDATE_COLUMNS))
        if unknown:
            raise ConfigError(
                f"{type(ranker).__name__}.candidate_columns names {unknown}, which are not candidate columns {list(CANDIDATE_COLUMNS)}"
            )
        needed.update(cols)
    return frozenset(needed)


def _is_string(d: pl.DataType) -> bool:
    return d in (pl.String, pl.Categorical) or isinstance(d, pl.Enum)


_CANDIDATE_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "request_id": ("an integer type", lambda d: d.is_integer()),
    "member_id": ("an integer type", lambda d: d.is_integer()),
    "update_id": ("an integer type", lambda d: d.is_integer()),
    "author_id": ("an integer type", lambda d: d.is_integer()),
    "topic": ("an integer type", lambda d: d.is_integer()),
    "update_type": ("a string type", _is_string),
    "client": ("a string type", _is_string),
    "created_ts": ("a Datetime type", lambda d: isinstance(d, pl.Datetime)),
    "request_ts": ("a Datetime type", lambda d: isinstance(d, pl.Datetime)),
}


#: What each candidate column holds (rendered into ``docs/schema.md``).
CANDIDATE_DOCS: dict[str, str] = {
    "request_id": "one feed request (the simulator uses the session id); rows of a request are ranked together",
    "member_id": "member the feed is for",
    "update_id": "candidate update",
    "update_type": "the update's type (article, image, job, text, video in the simulator)",
    "author_id": "member who posted the update",
    "topic": "the update's topic id",
    "created_ts": "when the update was posted (UTC)",
    "request_ts": "when the feed was requested (UTC); features use only history before this request's UTC day",
    "client": "client of the request (web, ios, android)",
}


def candidate_kind(column: str) -> str:
    """The type rule of a candidate column in words (``"an integer type"``, ...)."""
    return _CANDIDATE_KINDS[column][0]


def validate_candidates(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Check the columns of a candidate table and cast them to canonical types.

    Integers become Int64, strings String, timestamps UTC microseconds
    (timestamps without a time zone are read as UTC).  Extra columns pass through.

    Raises
    ------
    SchemaError
        Naming ``source`` and the column: a missing column, a wrong type or nulls.
    """
    require_columns(frame.columns, CANDIDATE_COLUMNS, "candidate table", source)
    casts = []
    for c in CANDIDATE_COLUMNS:
        word, ok = _CANDIDATE_KINDS[c]
        dtype = frame.schema[c]
        if not ok(dtype):
            raise SchemaError(f"{source}: candidate column '{c}' must be {word}, got {dtype}")
        if frame[c].null_count():
            raise SchemaError(f"{source}: candidate column '{c}' has {frame[c].null_count()} null value(s)")
        if isinstance(dtype, pl.Datetime):
            e = pl.col(c) if dtype.time_zone else pl.col(c).dt.replace_time_zone("UTC")
            casts.append(e.dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
        elif c in ("update_type", "client"):
            casts.append(pl.col(c).cast(pl.String))
        else:
            casts.append(pl.col(c).cast(pl.Int64))
    return frame.with_columns(casts)
