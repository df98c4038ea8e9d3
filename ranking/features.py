"""Ranking features: one definition for batch training and online scoring.

Every feature of a candidate row (a member, an update, a request time) is
computed from impressions of *earlier UTC days* than the request (offline
features refreshed daily, as the simulator's state and production feature
stores are), plus static profile columns and the request context.

Two paths produce the same *raw counts*, then one function derives features:

* **batch** (:func:`training_frame`): over an impressions log, daily counts per
  key are cumulated and joined backwards (``join_asof``, strictly earlier day)
  onto each impression; one pass, no per-day recomputation;
* **online** (:func:`candidate_features`): candidate rows are joined with the
  :class:`dwellrank_logs.history.HistoryTables` a ranker receives (the simulator's
  incrementally maintained counters, or :func:`history_from_logs`).

``_DEFS`` defines every feature from the raw counts, profile and context
columns; :func:`_derive` evaluates it with polars (both paths), and
:func:`_derive_rows` with numpy for the rows of one online request, so a
feature is defined once.  Feature sets are named and versioned; a model directory records
the set it was trained on and loading refuses another version.

The *day* of a row is the UTC day of its request (the session start), the day
on which the simulator served it; impressions of day ``d`` enter the counts
from day ``d + 1`` on.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import polars as pl

from dwellrank_logs.errors import DwellrankError, SchemaError
from dwellrank_logs.history import history_tables
from dwellrank_logs.protocol import CANDIDATE_COLUMNS, HistoryTables, any_action_expr, not_skipped_expr
from dwellrank_logs.schema import ACTION_COLUMNS, CLIENTS, UPDATE_TYPES, VIRAL_COLUMNS
from ranking.tskip import skip_label_expr

__all__ = [
    "FEATURE_SETS",
    "LABELS",
    "PROFILE_COLUMNS",
    "FeatureSet",
    "IncompatibleModelError",
    "candidate_features",
    "get_feature_set",
    "history_from_logs",
    "member_profiles",
    "training_frame",
    "validate_feature_matrix",
]

_T = TypeVar("_T")


class IncompatibleModelError(DwellrankError, ValueError):
    """A model directory was built for another feature-set version or is incomplete."""


#: Static member profile columns taken from the ``members`` table.
PROFILE_COLUMNS: tuple[str, ...] = ("connections", "tenure_days", "seniority", "is_premium")
#: Binary labels of the heads, as ``name -> description``; ``skip`` depends on T_skip.
LABELS: dict[str, str] = {
    "click": "clicked",
    "react": "reacted",
    "comment": "commented",
    "share": "shared",
    "skip": "dwell_s < T_skip and no click/viral action",
    "long_dwell": "dwell_s > T_long",
}

# Raw count columns (history strictly before the request's day), by history table.
_RAW = {
    "updates": (("update_id",), {"n_impressions": "u_imp", "n_clicks": "u_clk", "n_virals": "u_vir", "n_not_skipped": "u_ns"}),
    "member_types": (("member_id", "update_type"), {"n_impressions": "mt_imp", "n_not_skipped": "mt_ns", "n_actions": "mt_act"}),
    "member_authors": (("member_id", "author_id"), {"n_impressions": "ma_imp", "n_actions": "ma_act"}),
    "member_topics": (("member_id", "topic"), {"n_impressions": "mp_imp", "n_not_skipped": "mp_ns", "n_actions": "mp_act"}),
    "members": (("member_id",), {"n_impressions": "m_imp", "n_not_skipped": "m_ns", "n_actions": "m_act"}),
}
# Smoothed rates: (successes + k * prior) / (trials + k); part of the feature-set version.
_PRIOR_K = 5.0
_PRIOR = {"click": 0.06, "viral": 0.07, "action": 0.10, "not_skipped": 0.25}

_BASE: tuple[str, ...] = (
    # member side
    "connections",
    "tenure_days",
    "seniority",
    "is_premium",
    "m_impressions",
    "m_action_rate",
    # update side
    "age_h",
    *(f"type_{t}" for t in UPDATE_TYPES),
    "u_impressions",
    "u_clicks",
    "u_virals",
    "u_click_rate",
    "u_viral_rate",
    # member x update
    "mt_impressions",
    "mt_action_rate",
    "ma_impressions",
    "ma_actions",
    "ma_action_rate",
    "mp_impressions",
    "mp_action_rate",
    # context
    "hour",
    *(f"client_{c}" for c in CLIENTS),
    "position",
)
_DWELL: tuple[str, ...] = (
    "u_not_skipped",
    "u_not_skipped_rate",
    "mt_not_skipped",
    "mt_not_skipped_rate",
    "m_not_skipped_rate",
    "mp_not_skipped",
    "mp_not_skipped_rate",
)


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned list of feature columns.

    Parameters
    ----------
    name : str
        ``"base"`` (no dwell features) or ``"dwell"`` (base + not-skipped counts and rates).
    version : int
        Bumped whenever a definition in the set changes; models record it.
    columns : tuple of str
        Feature columns in the order of the model's input matrix.
    """

    name: str
    version: int
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise SchemaError("FeatureSet.name must be non-empty")
        if len(set(self.columns)) != len(self.columns):
            raise SchemaError(f"feature set '{self.name}' lists a column twice: {self.columns}")

    @property
    def uses_dwell(self) -> bool:
        """Whether any not-skipped (T_skip-dependent) feature is in the set."""
        return any(c in _DWELL for c in self.columns)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "columns": list(self.columns)}


FEATURE_SETS: dict[str, FeatureSet] = {
    # Version 2: member x topic counts (the member's affinity to the update's topic) and ``topic`` in candidates.
    "base": FeatureSet("base", 2, _BASE),
    "dwell": FeatureSet("dwell", 2, _BASE + _DWELL),
}


def get_feature_set(name: str | FeatureSet) -> FeatureSet:
    """The registered feature set called ``name`` (a :class:`FeatureSet` passes through)."""
    if isinstance(name, FeatureSet):
        return name
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise SchemaError(f"feature_set must be one of {', '.join(FEATURE_SETS)}, got {name!r}") from None


# --------------------------------------------------------------------------- the one definition


# Every feature, read by both evaluators below (polars expressions for tables of any size, numpy
# for the rows of one online request), so that a feature is still defined in one place:
#   ("col", c)           column c as Float64
#   ("rate", x, n, p)    smoothed rate (x + k p) / (n + k), k = _PRIOR_K
#   ("is", c, v)         1.0 where column c equals v, else 0.0
#   ("age_h",)           hours from created_ts to request_ts
#   ("hour",)            hour of request_ts, 0..23, in its time zone (the logs' is UTC)
_DEFS: dict[str, tuple[Any, ...]] = {
    "connections": ("col", "connections"),
    "tenure_days": ("col", "tenure_days"),
    "seniority": ("col", "seniority"),
    "is_premium": ("col", "is_premium"),
    "m_impressions": ("col", "m_imp"),
    "m_action_rate": ("rate", "m_act", "m_imp", _PRIOR["action"]),
    "age_h": ("age_h",),
    **{f"type_{t}": ("is", "update_type", t) for t in UPDATE_TYPES},
    "u_impressions": ("col", "u_imp"),
    "u_clicks": ("col", "u_clk"),
    "u_virals": ("col", "u_vir"),
    "u_click_rate": ("rate", "u_clk", "u_imp", _PRIOR["click"]),
    "u_viral_rate": ("rate", "u_vir", "u_imp", _PRIOR["viral"]),
    "mt_impressions": ("col", "mt_imp"),
    "mt_action_rate": ("rate", "mt_act", "mt_imp", _PRIOR["action"]),
    "ma_impressions": ("col", "ma_imp"),
    "ma_actions": ("col", "ma_act"),
    "ma_action_rate": ("rate", "ma_act", "ma_imp", _PRIOR["action"]),
    "mp_impressions": ("col", "mp_imp"),
    "mp_action_rate": ("rate", "mp_act", "mp_imp", _PRIOR["action"]),
    "hour": ("hour",),
    **{f"client_{c}": ("is", "client", c) for c in CLIENTS},
    "position": ("col", "position"),
    "u_not_skipped": ("col", "u_ns"),
    "u_not_skipped_rate": ("rate", "u_ns", "u_imp", _PRIOR["not_skipped"]),
    "mt_not_skipped": ("col", "mt_ns"),
    "mt_not_skipped_rate": ("rate", "mt_ns", "mt_imp", _PRIOR["not_skipped"]),
    "m_not_skipped_rate": ("rate", "m_ns", "m_imp", _PRIOR["not_skipped"]),
    "mp_not_skipped": ("col", "mp_ns"),
    "mp_not_skipped_rate": ("rate", "mp_ns", "mp_imp", _PRIOR["not_skipped"]),
}


# A product, not a quotient: polars divides a column by a scalar as a product with the
# reciprocal, numpy divides, and the two differ in the last bit for some values.
_HOURS_PER_US = 1.0 / 3.6e9


def _expr(d: tuple[Any, ...]) -> pl.Expr:
    kind = d[0]
    if kind == "col":
        return pl.col(d[1])
    if kind == "rate":
        return (pl.col(d[1]) + _PRIOR_K * d[3]) / (pl.col(d[2]) + _PRIOR_K)
    if kind == "is":
        return pl.col(d[1]) == d[2]
    if kind == "age_h":
        return (pl.col("request_ts") - pl.col("created_ts")).dt.total_microseconds() * _HOURS_PER_US
    return pl.col("request_ts").dt.hour()


def _derive(frame: pl.DataFrame | pl.LazyFrame, fs: FeatureSet) -> pl.LazyFrame:
    """Feature columns of ``fs`` from raw counts, profile and context columns.

    ``frame`` holds the raw count columns of ``_RAW`` (null = no history, read
    as 0), :data:`PROFILE_COLUMNS`, ``update_type``, ``client``,
    ``created_ts``, ``request_ts`` and ``position``.  Returns only the feature
    columns, as Float64, in the order of ``fs.columns``.
    """
    raw = [v for _, (_, cols) in _RAW.items() for v in cols.values()]
    lf = frame.lazy().with_columns(pl.col(raw).fill_null(0).cast(pl.Float64))
    return lf.select([_expr(_DEFS[c]).cast(pl.Float64).alias(c) for c in fs.columns])


def _derive_rows(columns: dict[str, pl.Series], fs: FeatureSet) -> pl.DataFrame | None:
    """:func:`_derive` of one request's rows with numpy: the same values, without a query plan.

    ``columns`` holds the null-free columns :func:`_derive` reads (raw counts
    already 0 where there is no history).  A polars query costs about a
    millisecond and a half whatever the rows, most of a request's features.
    None when a column has nulls (polars' null semantics then apply).
    """
    if any(s.null_count() for s in columns.values()):
        return None
    numeric = {c for d in (_DEFS[f] for f in fs.columns) if d[0] in ("col", "rate") for c in d[1:3]}
    if any(not (columns[c].dtype.is_numeric() or columns[c].dtype == pl.Boolean) for c in numeric):
        return None  # polars' cast decides what a string column means
    arrays: dict[str, np.ndarray] = {}

    def col(c: str) -> np.ndarray:
        if c not in arrays:
            # Equal to polars' cast to Float64: booleans 0/1, integers rounded to nearest.
            arrays[c] = columns[c].to_numpy().astype(np.float64, copy=False)
        return arrays[c]

    out: dict[str, np.ndarray] = {}
    for c in fs.columns:
        d = _DEFS[c]
        if d[0] == "col":
            out[c] = col(d[1])
        elif d[0] == "rate":
            # The operations and their order of the polars expression, so the bits agree.
            out[c] = (col(d[1]) + _PRIOR_K * d[3]) / (col(d[2]) + _PRIOR_K)
        elif d[0] == "is":
            out[c] = (columns[d[1]] == d[2]).to_numpy().astype(np.float64)
        elif d[0] == "age_h":
            us = (columns["request_ts"] - columns["created_ts"]).dt.total_microseconds()
            out[c] = us.to_numpy().astype(np.float64) * _HOURS_PER_US
        else:
            out[c] = columns["request_ts"].dt.hour().to_numpy().astype(np.float64)
    return pl.DataFrame([pl.Series(c, out[c]) for c in fs.columns])


# --------------------------------------------------------------------------- online path


def _require(frame: pl.DataFrame, columns: tuple[str, ...], what: str, source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{source}: {what} is missing column(s) {', '.join(repr(m) for m in missing)}; found {', '.join(frame.columns) or 'no columns'}"
        )


def member_profiles(members: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The static profile columns of the ``members`` table, keyed by member_id."""
    return members.lazy().select("member_id", *PROFILE_COLUMNS).collect()


def candidate_features(
    candidates: pl.DataFrame,
    history: HistoryTables,
    profiles: pl.DataFrame,
    feature_set: str | FeatureSet,
    position: int | np.ndarray | pl.Series | None = 0,
    source: str = "candidates",
) -> pl.DataFrame:
    """Features of candidate rows from a history snapshot (the online path).

    Parameters
    ----------
    candidates : polars.DataFrame, shape (n_rows, ...)
        At least :data:`CANDIDATE_COLUMNS` (the simulator's candidate layout).
    history : HistoryTables
        Counts of impressions before the day of every candidate's request.
    profiles : polars.DataFrame
        ``member_id`` and :data:`PROFILE_COLUMNS` (see :func:`member_profiles`).
    feature_set : str or FeatureSet
    position : int, array of shape (n_rows,) or None
        Feed slot; unknown before ranking, so scoring uses 0 (the default).
        ``None`` takes it from a ``position`` column of ``candidates``.
    source : str
        Named in error messages.

    Returns
    -------
    polars.DataFrame, shape (n_rows, len(feature_set.columns))
        Float64 features, row-aligned with ``candidates``.

    Raises
    ------
    SchemaError
        A required candidate column is missing, or a candidate's member has no profile.

    Notes
    -----
    Lookup indexes of ``history``'s tables and of ``profiles`` are built on the
    first request against a snapshot and kept with it for the next ones
    (:meth:`dwellrank_logs.history.HistoryTables.derived`), so neither may be modified in
    place after that (polars' ``extend``, item assignment); build a new snapshot
    or profiles table instead.
    """
    fs = get_feature_set(feature_set)
    _require(candidates, CANDIDATE_COLUMNS + (("position",) if position is None else ()), "candidate table", source)
    if position is None:
        pos = pl.col("position")
    elif isinstance(position, (int, np.integer)):
        pos = pl.lit(int(position))
    else:
        pos = pl.lit(pl.Series("position", np.asarray(position)))
    fast = _raw_counts_by_lookup(candidates, history, profiles)
    if fast is not None:
        # Same raw counts as the joins below, gathered with numpy (row-aligned, 0 = no history).
        if isinstance(position, (int, np.integer)):
            posc = pl.Series("position", np.full(candidates.height, int(position), dtype=np.int32))
        else:
            posc = candidates.select(pos.cast(pl.Int32).alias("position")).to_series()
        columns = {c: candidates[c] for c in ("update_type", "client", "created_ts", "request_ts")}
        columns.update({s.name: s for s in fast}, position=posc)
        rows = _derive_rows(columns, fs)
        if rows is not None:
            return rows
        frame = candidates.select("update_type", "client", "created_ts", "request_ts", pos.cast(pl.Int32).alias("position"))
        return _derive(frame.with_columns(fast), fs).collect()
    lf = (
        candidates.lazy()
        .select(*CANDIDATE_COLUMNS, pos.cast(pl.Int32).alias("position"))
        .with_columns(pl.col("topic").cast(pl.Int64))
        .with_row_index("_row")
    )
    wanted = {k: candidates[k].unique().implode() for k in ("member_id", "update_id")}
    for name, (keys, cols) in _RAW.items():
        # Keep only the candidates' members/updates first: a filter scan is far cheaper than
        # hashing a large table (member x author grows with the log) for a small request.
        table = (
            getattr(history, name)
            .lazy()
            .filter(pl.col(keys[0]).is_in(wanted[keys[0]]))
            .select(*keys, *[pl.col(k).alias(v) for k, v in cols.items()])
        )
        lf = lf.join(table, on=list(keys), how="left", maintain_order="left")
    lf = lf.join(profiles.lazy(), on="member_id", how="left", maintain_order="left")
    frame = lf.sort("_row").collect()
    _check_profiles(frame, source)
    return _derive(frame, fs).collect()


#: Largest dense key range (entries) the lookup path allocates; sparser keys use the joins.
_DENSE_MAX = 1 << 26
#: Profiles tables whose lookup index one snapshot keeps: A/B arms share a snapshot, each ranker its own profiles.
_PROFILE_TABLES_KEPT = 4

# The lookup path answers a request by gathering from indexes of the history tables and the
# profiles.  Building them scans whole tables (most of a request's time when done per request),
# while a snapshot's tables never change, so each index is built on the snapshot's first request
# and kept on the snapshot (HistoryTables.derived): later requests only compute their keys and
# gather, and the indexes are freed with the snapshot.  Whether a request takes the lookups or
# the joins is decided as when the indexes were rebuilt per request: checks that involve the
# request's keys (their range, codes the table lacks) run per request.


def _int_keys(series: pl.Series) -> np.ndarray | None:
    """``series`` as int64 numpy keys when it is an integer column without nulls, else None."""
    if not series.dtype.is_integer() or series.null_count():
        return None
    return series.to_numpy().astype(np.int64, copy=False)


def _dense_positions(keys: np.ndarray) -> np.ndarray | None:
    """``pos`` with ``pos[k]`` the row holding key ``k`` (-1 where none), for keys 0 .. max.

    None when the keys are negative, spread too widely or not unique (the joins handle those).
    Rows fit int32 (half the memory of a dense array kept with the snapshot).
    """
    if keys.size == 0:
        return np.empty(0, dtype=np.int32)
    lo, hi = int(keys.min()), int(keys.max())
    if lo < 0 or hi >= _DENSE_MAX:
        return None
    pos = np.full(hi + 1, -1, dtype=np.int32 if keys.size <= np.iinfo(np.int32).max else np.int64)
    pos[keys] = np.arange(keys.size)
    if np.count_nonzero(pos >= 0) != keys.size:  # duplicated keys: a join would repeat rows
        return None
    return pos


def _at(pos: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``pos[query]``, -1 for queries outside ``pos`` (keys the table does not hold)."""
    if pos.size == 0:
        return np.full(query.shape, -1, dtype=pos.dtype)
    inside = (query >= 0) & (query < pos.size)
    return np.where(inside, pos[np.where(inside, query, 0)], -1)


@dataclass(frozen=True)
class _Counts:
    """Count columns of a history table as numpy arrays (zero-copy from the table where polars allows)."""

    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]

    def gather(self, rows: np.ndarray) -> list[pl.Series]:
        """Float64 counts at ``rows``, 0 where the row is -1 (no history)."""
        none = rows < 0
        out = []
        for name, v in zip(self.names, self.values):
            # Converted per request (a thousand values) rather than whole tables per snapshot.
            got = v[rows].astype(np.float64) if v.size else np.zeros(rows.shape)
            got[none] = 0.0
            out.append(pl.Series(name, got))
        return out


def _counts(table: pl.DataFrame, cols: dict[str, str], fill_nulls: bool = False) -> _Counts | None:
    """The ``cols`` of ``table`` renamed, or None for a non-numeric column or nulls (the joins handle those).

    ``fill_nulls`` reads nulls as 0 instead, as the joins do (the member x author lookup always has).
    """
    values = []
    for k in cols:
        col = table[k]
        if not col.dtype.is_numeric() or (col.null_count() and not fill_nulls):
            return None
        values.append((col.fill_null(0) if col.null_count() else col).to_numpy())
    return _Counts(tuple(cols.values()), tuple(values))


@dataclass(frozen=True)
class _ByKey:
    """A table keyed by one id (updates, members, profiles): dense rows and what to gather from them."""

    pos: np.ndarray
    counts: _Counts | None  # count tables
    columns: tuple[tuple[str, np.ndarray | pl.Series], ...] = ()  # profiles: numeric columns as numpy

    def rows(self, query: np.ndarray) -> np.ndarray | None:
        """Row of each ``query`` id (-1: none), or None for ids outside 0 .. _DENSE_MAX - 1 (the joins' range)."""
        if self.pos.size == 0:  # an empty table matches nothing, whatever the ids
            return _at(self.pos, query)
        if int(query.min()) < 0 or int(query.max()) >= _DENSE_MAX:
            return None
        return _at(self.pos, query)

    def gather_columns(self, rows: np.ndarray) -> list[pl.Series]:
        """The profile columns at ``rows`` (all >= 0), in their own dtypes."""
        # numpy takes a fraction of a polars gather on a small request (see _numpy_column for the dtypes).
        return [pl.Series(c, col[rows]) if isinstance(col, np.ndarray) else col.gather(rows) for c, col in self.columns]


def _by_key(table: pl.DataFrame, key: str, cols: dict[str, str]) -> _ByKey | None:
    keys = _int_keys(table[key])
    pos = None if keys is None else _dense_positions(keys)
    counts = _counts(table, cols)
    return None if pos is None or counts is None else _ByKey(pos, counts)


def _by_profile(profiles: pl.DataFrame) -> _ByKey | None:
    """Rows of the profiles by member_id; None when a column is missing or has nulls (the joins report it)."""
    if "member_id" not in profiles.columns or any(c not in profiles.columns or profiles[c].null_count() for c in PROFILE_COLUMNS):
        return None
    keys = _int_keys(profiles["member_id"])
    pos = None if keys is None else _dense_positions(keys)
    if pos is None:
        return None
    return _ByKey(pos, None, tuple((c, _numpy_column(profiles[c])) for c in PROFILE_COLUMNS))


def _numpy_column(col: pl.Series) -> np.ndarray | pl.Series:
    """``col`` as numpy where a series built back from it has ``col``'s dtype (numbers, Booleans), else as is."""
    if not (col.dtype.is_numeric() or col.dtype == pl.Boolean):
        return col
    arr = col.to_numpy()
    return arr if pl.Series(arr[:0]).dtype == col.dtype else col


@dataclass(frozen=True)
class _ByPair:
    """A (member_id, code) table by dense key ``member * width + code``, code in 0 .. width - 1.

    Codes are topics, or for update types their rank among the table's sorted ``labels``.
    A request with codes the table lacks (a new type, a higher topic) lays its pairs out as
    ``member * n + code`` with n > width, where the table's largest key is the one of
    (``top_member``, ``top_code``): kept to bound that wider key range without a scan.
    """

    pos: np.ndarray
    width: int
    top_member: int
    top_code: int
    labels: pl.Enum | None
    counts: _Counts

    def rows(self, member: np.ndarray, code: np.ndarray, seen: np.ndarray, n: int, wide: np.ndarray, wide_top: int) -> np.ndarray | None:
        """Row of each pair (-1: none) of a non-empty table, or None where the request's key range leaves the dense one.

        ``code`` is the table's code of each row where ``seen``; ``wide`` the request's keys in its own
        layout ``member * n + code`` and ``wide_top`` the code of (top_member, top_code) in it.
        """
        if int(member.min()) < 0 or max(self.top_member * n + wide_top, int(wide.max())) >= _DENSE_MAX:
            return None
        return _at(self.pos, np.where(seen, member * self.width + code, -1))


def _by_pair(
    table: pl.DataFrame, member: np.ndarray, code: np.ndarray, width: int, labels: pl.Enum | None, cols: dict[str, str]
) -> _ByPair | None:
    counts = _counts(table, cols)
    pos = _dense_positions(member * width + code)
    if pos is None or counts is None:
        return None
    top_member = int(member.max(initial=-1))
    top_code = int(code[member == top_member].max(initial=0))
    return _ByPair(pos, width, top_member, top_code, labels, counts)


def _member_types_index(table: pl.DataFrame, cols: dict[str, str]) -> _ByPair | None:
    types, member = table["update_type"].cast(pl.String), _int_keys(table["member_id"])
    if types.null_count() or member is None:
        return None
    labels = pl.Enum(types.unique().sort())
    code = types.cast(labels).to_physical().cast(pl.Int64).to_numpy()
    return _by_pair(table, member, code, labels.categories.len(), labels, cols)


def _member_topics_index(table: pl.DataFrame, cols: dict[str, str]) -> _ByPair | None:
    member, topic = _int_keys(table["member_id"]), _int_keys(table["topic"])
    if member is None or topic is None or topic.min(initial=0) < 0:
        return None
    return _by_pair(table, member, topic, int(topic.max(initial=0)) + 1, None, cols)


def _member_type_rows(index: _ByPair, member: np.ndarray, ctypes: pl.Series) -> np.ndarray | None:
    assert index.labels is not None
    if index.pos.size == 0:  # an empty table matches nothing
        return _at(index.pos, member)
    # One cast and one conversion (each polars call costs tens of microseconds); types the table lacks come back NaN.
    phys = ctypes.cast(index.labels, strict=False).to_physical().to_numpy()
    seen = ~np.isnan(phys) if phys.dtype.kind == "f" else np.ones(phys.shape, dtype=bool)
    code = np.where(seen, phys, 0).astype(np.int64)
    if seen.all():
        return index.rows(member, code, seen, index.width, member * index.width + code, index.top_code)
    # New types widen the layout: a type's code is then its rank among the labels of table and request.
    labels = pl.concat([index.labels.categories, ctypes.unique()]).unique().sort()
    wide = ctypes.cast(pl.Enum(labels)).to_physical().cast(pl.Int64).to_numpy()
    wide_top = labels.to_list().index(index.labels.categories[index.top_code])
    return index.rows(member, code, seen, labels.len(), member * labels.len() + wide, wide_top)


def _member_topic_rows(index: _ByPair, member: np.ndarray, topic: np.ndarray) -> np.ndarray | None:
    if int(topic.min()) < 0:
        return None
    if index.pos.size == 0:  # an empty table matches nothing
        return _at(index.pos, member)
    n = max(index.width, int(topic.max()) + 1)  # topics above the table's widen the layout
    return index.rows(member, topic, topic < index.width, n, member * n + topic, index.top_code)


@dataclass(frozen=True)
class _ByAuthorPair:
    """The member x author table: sparse pairs, as sorted int64 keys ``member << 32 | author``."""

    keys: np.ndarray
    order: np.ndarray | None  # table row of each sorted key; None: the table was sorted already
    counts: _Counts

    def rows(self, member: np.ndarray, author: np.ndarray) -> np.ndarray | None:
        """Row of each pair (-1: none); None for ids outside 0 .. 2**31 - 1 or a pair held twice (a join would repeat the row)."""
        if min(member.min(), author.min()) < 0 or max(member.max(), author.max()) >= 1 << 31:
            return None
        if self.keys.size == 0:
            return np.full(member.shape, -1, dtype=np.int64)
        query = (member << 32) | author
        first = np.searchsorted(self.keys, query)
        nxt = np.minimum(first + 1, self.keys.size - 1)
        if ((self.keys[nxt] == query) & (nxt > first)).any():
            return None
        at = np.minimum(first, self.keys.size - 1)
        return np.where(self.keys[at] == query, at if self.order is None else self.order[at], -1)


def _member_authors_index(table: pl.DataFrame, cols: dict[str, str]) -> _ByAuthorPair | None:
    member, author = _int_keys(table["member_id"]), _int_keys(table["author_id"])
    if member is None or author is None:
        return None
    if min(member.min(initial=0), author.min(initial=0)) < 0 or max(member.max(initial=0), author.max(initial=0)) >= 1 << 31:
        return None
    counts = _counts(table, cols, fill_nulls=True)
    if counts is None:
        return None
    keys = (member << 32) | author
    if (keys[1:] >= keys[:-1]).all():  # history_tables sorts by (member, author): no copy then
        return _ByAuthorPair(keys, None, counts)
    order = np.argsort(keys, kind="stable")
    return _ByAuthorPair(keys[order], order, counts)


_INDEX_BUILDERS: dict[str, Callable[[pl.DataFrame, dict[str, str]], object]] = {
    "updates": lambda table, cols: _by_key(table, "update_id", cols),
    "member_types": _member_types_index,
    "member_authors": _member_authors_index,
    "member_topics": _member_topics_index,
    "members": lambda table, cols: _by_key(table, "member_id", cols),
}


def _kept(history: HistoryTables, name: str, build: Callable[[], _T]) -> _T:
    """``build()`` once per snapshot, kept on it; built afresh for history objects of other types."""
    if isinstance(history, HistoryTables):
        return history.derived(f"ranking.features.{name}", build)
    return build()


def _table_index(history: HistoryTables, name: str) -> Any:
    """The lookup index of history table ``name`` (None: that table needs the joins)."""
    return _kept(history, name, lambda: _INDEX_BUILDERS[name](getattr(history, name), _RAW[name][1]))


def _profile_index(history: HistoryTables, profiles: pl.DataFrame) -> _ByKey | None:
    """The lookup index of ``profiles``, kept on the snapshot for the last few profiles tables.

    Keyed by ``id(profiles)``, the entry holding the table itself: while the entry lives no
    other table can take that id, and it is freed with the snapshot.
    """
    held: dict[int, tuple[pl.DataFrame, _ByKey | None]] = _kept(history, "profiles", dict)
    entry = held.get(id(profiles))
    if entry is None:
        if len(held) >= _PROFILE_TABLES_KEPT:
            held.pop(next(iter(held)), None)  # the oldest
        entry = held[id(profiles)] = (profiles, _by_profile(profiles))
    return entry[1]


def _raw_counts_by_lookup(candidates: pl.DataFrame, history: HistoryTables, profiles: pl.DataFrame) -> list[pl.Series] | None:
    """The raw count and profile columns of candidate rows by numpy lookups (dense keys).

    Returns the same values as the left joins of :func:`candidate_features`
    (missing history -> 0, counts as Float64, profiles in their own dtypes),
    or None where that path must be taken: keys that are not dense
    non-negative integers, duplicated keys, nulls, or members without a
    profile (the joins then raise the documented error).  The indexes are
    built on a snapshot's first request and reused by the next ones.
    """
    member = _int_keys(candidates["member_id"])
    update = _int_keys(candidates["update_id"])
    author = _int_keys(candidates["author_id"])
    topic = _int_keys(candidates["topic"])
    if member is None or update is None or author is None or topic is None or candidates.height == 0:
        return None
    out: list[pl.Series] = []
    # Profiles (static) first: an unknown member sends us to the joins and their error message.
    pindex = _profile_index(history, profiles)
    pidx = None if pindex is None else pindex.rows(member)
    if pidx is None or (pidx < 0).any():
        return None
    out.extend(pindex.gather_columns(pidx))
    for name in _RAW:
        index = _table_index(history, name)
        if index is None:
            return None
        if name == "member_types":
            ctypes = candidates["update_type"].cast(pl.String)
            rows = None if ctypes.null_count() else _member_type_rows(index, member, ctypes)
        elif name == "member_topics":
            rows = _member_topic_rows(index, member, topic)
        elif name == "member_authors":
            rows = index.rows(member, author)
        else:
            rows = index.rows(update if name == "updates" else member)
        if rows is None:
            return None
        out.extend(index.counts.gather(rows))
    return out


def _check_profiles(frame: pl.DataFrame, source: str) -> None:
    unknown = frame.filter(pl.col("connections").is_null())["member_id"].unique().sort()
    if unknown.len():
        raise SchemaError(
            f"{source}: {unknown.len()} member_id(s) have no profile in the members table "
            f"(first: {unknown.head(5).to_list()}); member-side features need connections, tenure_days, ..."
        )


def history_from_logs(
    impressions: pl.LazyFrame | pl.DataFrame,
    sessions: pl.LazyFrame | pl.DataFrame,
    updates: pl.LazyFrame | pl.DataFrame,
    day: dt.date,
    t_skip_s: float,
) -> HistoryTables:
    """History counts from logs as a ranker would see them at the start of ``day``.

    Impressions are dated by their session's start (the request), as the
    simulator's daily state update does, then counted with
    :func:`dwellrank_logs.history.history_tables` before midnight UTC of ``day``.
    """
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
    imp = (
        impressions.lazy()
        .drop("ts")
        .join(sessions.lazy().select("session_id", pl.col("start_ts").alias("ts")), on="session_id", how="left")
    )
    return history_tables(imp, updates, before=start, t_skip_s=t_skip_s)


# --------------------------------------------------------------------------- batch path


def _cumulative_before(rows: pl.LazyFrame, events: pl.LazyFrame, keys: tuple[str, ...], sums: dict[str, pl.Expr]) -> pl.LazyFrame:
    """Attach, to every row, sums over events of the same key on strictly earlier days.

    ``events`` has ``day`` (Int32) and ``keys``; daily sums are cumulated per
    key and joined backwards on ``day`` with exact matches excluded.
    """
    daily = (
        events.group_by(*keys, "day")
        .agg(*[e.alias(n) for n, e in sums.items()])
        .sort(*keys, "day")
        .with_columns(pl.col(list(sums)).cum_sum().over(list(keys)))
        .sort("day")
    )
    return rows.sort("day").join_asof(
        daily, on="day", by=list(keys), strategy="backward", allow_exact_matches=False, check_sortedness=False
    )


def training_frame(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
    feature_set: str | FeatureSet,
    t_skip_s: float,
    t_long_s: float = 10.0,
) -> pl.DataFrame:
    """Features and labels for every impression of a log (the batch path).

    Parameters
    ----------
    tables : mapping of table name to frame
        ``impressions``, ``sessions``, ``updates`` and ``members`` in the
        documented schema (validated frames, e.g. from :func:`dwellrank_logs.io.scan_logs`).
    feature_set : str or FeatureSet
    t_skip_s : float, seconds
        Threshold of the not-skipped counts and of the ``skip`` label.
    t_long_s : float, seconds
        Threshold of the ``long_dwell`` label (dwell_s > t_long_s).

    Returns
    -------
    polars.DataFrame, one row per impression, sorted by (day, ts)
        ``session_id`` (= request_id), ``member_id``, ``update_id``, ``ts``,
        ``day`` (days since 1970-01-01 of the request), the feature columns
        (Float64, position as logged), the labels ``click``, ``react``,
        ``comment``, ``share``, ``skip``, ``long_dwell`` (Boolean) and the
        regression targets ``downstream`` (downstream clicks + virals),
        ``upstream`` (value, >= 0) and ``dwell`` (on-feed dwell, seconds).
    """
    fs = get_feature_set(feature_set)
    for name, v in (("t_skip_s", t_skip_s), ("t_long_s", t_long_s)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise SchemaError(f"{name} must be a finite number > 0 seconds, got {v!r}")
    for name in ("impressions", "sessions", "updates", "members"):
        if name not in tables:
            raise SchemaError(f"training needs the {name} table; got tables {', '.join(tables) or 'none'}")
    imp = (
        tables["impressions"]
        .lazy()
        # Numbered before any join: polars' left joins do not promise to keep row order, and ties in
        # (day, ts) are broken by this log order so the output is the same on every machine.
        .with_row_index("_row")
        .join(
            tables["sessions"].lazy().select("session_id", pl.col("start_ts").alias("request_ts"), "client"),
            on="session_id",
            how="left",
            maintain_order="left",
        )
        .join(
            tables["updates"].lazy().select("update_id", "author_id", pl.col("topic").cast(pl.Int64), "created_ts"),
            on="update_id",
            how="left",
            maintain_order="left",
        )
        .with_columns(
            pl.col("request_ts").dt.epoch("d").cast(pl.Int32).alias("day"),
            any_action_expr().cast(pl.UInt32).alias("_action"),
            any_action_expr(VIRAL_COLUMNS).cast(pl.UInt32).alias("_viral"),
            not_skipped_expr(t_skip_s).cast(pl.UInt32).alias("_ns"),
        )
    )
    events = imp.select("day", "member_id", "update_id", "update_type", "author_id", "topic", "clicked", "_action", "_viral", "_ns")
    n = pl.len().cast(pl.Float64)
    sums = {
        "updates": {"u_imp": n, "u_clk": pl.col("clicked").cast(pl.Float64).sum(), "u_vir": pl.sum("_viral"), "u_ns": pl.sum("_ns")},
        "member_types": {"mt_imp": n, "mt_ns": pl.sum("_ns"), "mt_act": pl.sum("_action")},
        "member_authors": {"ma_imp": n, "ma_act": pl.sum("_action")},
        "member_topics": {"mp_imp": n, "mp_ns": pl.sum("_ns"), "mp_act": pl.sum("_action")},
        "members": {"m_imp": n, "m_ns": pl.sum("_ns"), "m_act": pl.sum("_action")},
    }
    rows = imp
    for name, (keys, _) in _RAW.items():
        rows = _cumulative_before(rows, events, keys, sums[name])
    rows = rows.join(member_profiles(tables["members"]).lazy(), on="member_id", how="left").sort("_row")
    frame = rows.collect()
    _check_profiles(frame, "impressions")
    feats = _derive(frame, fs).collect()
    labels = frame.select(
        pl.col("session_id").alias("request_id"),
        "member_id",
        "update_id",
        "ts",
        "day",
        *[pl.col(c).alias(k) for k, c in zip(("click", "react", "comment", "share"), ACTION_COLUMNS)],
        skip_label_expr(t_skip_s).alias("skip"),
        (pl.col("dwell_s") > t_long_s).alias("long_dwell"),
        pl.col("dwell_s").cast(pl.Float64).alias("dwell"),
        (pl.col("downstream_clicks") + pl.col("downstream_virals")).cast(pl.Float64).alias("downstream"),
        pl.col("upstream_value").cast(pl.Float64).alias("upstream"),
    )
    return pl.concat([labels, feats], how="horizontal").sort("day", "ts", maintain_order=True)


# --------------------------------------------------------------------------- validation


def validate_feature_matrix(frame: pl.DataFrame, fs: FeatureSet, source: str, skip: tuple[str, ...] = ()) -> None:
    """Check that ``frame`` holds every feature of ``fs`` as finite numbers.

    Raises
    ------
    SchemaError
        Naming ``source``, the column, and what arrived: a missing feature, a
        non-numeric column, or null/NaN/infinite values.
    """
    need = [c for c in fs.columns if c not in skip]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{source}: missing feature column(s) {', '.join(repr(m) for m in missing)} needed by feature set "
            f"'{fs.name}' v{fs.version} (or give the candidate key columns and --logs to compute them)"
        )
    for c in need:
        dtype = frame.schema[c]
        if not (dtype.is_numeric() or dtype == pl.Boolean):
            raise SchemaError(f"{source}: feature column '{c}' must be numeric, got {dtype}")
    bad = frame.select([(pl.col(c).cast(pl.Float64).is_null() | ~pl.col(c).cast(pl.Float64).is_finite()).sum().alias(c) for c in need]).row(
        0, named=True
    )
    for c in need:
        if bad[c]:
            raise SchemaError(f"{source}: feature column '{c}' has {bad[c]} null/NaN/infinite value(s); the model needs finite values")
