"""The lookup path of online features: indexes of a history snapshot's tables, gathered with numpy.

:func:`_raw_counts_by_lookup` answers a request by gathering from indexes of
the history tables and of the profiles.  Building them scans whole tables
(most of a request's time when done per request), while a snapshot's tables
never change, so each index is built on the snapshot's first request and kept
on the snapshot (:meth:`dwellrank_logs.protocol.HistoryTables.derived`): later
requests only compute their keys and gather, and the indexes are freed with
the snapshot.  Whether a request takes the lookups depends on its own keys
too (their range, codes the table lacks), so those checks run per request.

Invariant: wherever the lookups answer, they return exactly the raw count and
profile columns of the left joins of :func:`ranking.features.online.candidate_features`
(missing history -> 0, counts as Float64, profiles in their own dtypes).  They
decline (return None, and the joins answer) every input on which they could
differ: keys that are not dense non-negative integers, keys a table holds twice
(a join would repeat the row), nulls, non-numeric counts, and members without a
profile (the joins then raise the documented error).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from dwellrank_logs.protocol import HistoryTables
from ranking.features.catalogue import _RAW, PROFILE_COLUMNS

__all__: list[str] = []

_T = TypeVar("_T")

#: Largest dense key range (entries) the lookup path allocates; sparser keys use the joins.
_DENSE_MAX = 1 << 26
#: Profiles tables whose lookup index one snapshot keeps: A/B arms share a snapshot, each ranker its own profiles.
_PROFILE_TABLES_KEPT = 4


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
    pos: np.ndarray = np.full(hi + 1, -1, dtype=np.int32 if keys.size <= np.iinfo(np.int32).max else np.int64)
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

    def gather(self, rows: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Float64 counts at ``rows``, 0 where the row is -1 (no history)."""
        none = rows < 0
        out = []
        for name, v in zip(self.names, self.values, strict=True):
            # Converted per request (a thousand values) rather than whole tables per snapshot.
            got = v[rows].astype(np.float64) if v.size else np.zeros(rows.shape)
            got[none] = 0.0
            out.append((name, got))
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

    def gather_columns(self, rows: np.ndarray) -> list[tuple[str, np.ndarray | pl.Series]]:
        """The profile columns at ``rows`` (all >= 0), in their own dtypes (numpy where :func:`_numpy_column` allows)."""
        # numpy takes a fraction of a polars gather on a small request.
        return [(c, col[rows] if isinstance(col, np.ndarray) else col.gather(rows)) for c, col in self.columns]


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
    label_values: pa.Array | None = None  # the labels as arrow strings, for arrow's index_in

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
    values = None if labels is None else pa.array(labels.categories.to_list(), pa.large_string())
    return _ByPair(pos, width, top_member, top_code, labels, counts, values)


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
    assert index.labels is not None and index.label_values is not None
    if index.pos.size == 0:  # an empty table matches nothing
        return _at(index.pos, member)
    # A type's code is its position among the table's sorted labels (its Enum code), NaN where the table
    # lacks it: one arrow call (a polars cast and physical view cost tens of microseconds each).
    phys = pc.index_in(ctypes.to_arrow(), value_set=index.label_values).to_numpy(zero_copy_only=False)
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
    """The raw count and profile columns of candidate rows by numpy lookups (dense keys), as polars Series.

    Profile columns first (in :data:`PROFILE_COLUMNS` order), then each
    history table's raw counts in ``_RAW`` order, row-aligned with
    ``candidates``; None where the joins must answer (the module's invariant).
    """
    got = _raw_arrays_by_lookup(candidates, history, profiles)
    if got is None:
        return None
    return [v if isinstance(v, pl.Series) else pl.Series(name, v) for name, v in got.items()]


def _raw_arrays_by_lookup(
    candidates: pl.DataFrame, history: HistoryTables, profiles: pl.DataFrame
) -> dict[str, np.ndarray | pl.Series] | None:
    """:func:`_raw_counts_by_lookup` without building Series: counts as float64 numpy, profiles as
    numpy in their own dtypes (polars Series for the dtypes numpy would change), in the same order.
    """
    member = _int_keys(candidates["member_id"])
    update = _int_keys(candidates["update_id"])
    author = _int_keys(candidates["author_id"])
    topic = _int_keys(candidates["topic"])
    if member is None or update is None or author is None or topic is None or candidates.height == 0:
        return None
    # Profiles (static) first: an unknown member sends us to the joins and their error message.
    pindex = _profile_index(history, profiles)
    if pindex is None:
        return None
    pidx = pindex.rows(member)
    if pidx is None or (pidx < 0).any():
        return None
    out: dict[str, np.ndarray | pl.Series] = dict(pindex.gather_columns(pidx))
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
        out.update(index.counts.gather(rows))
    return out
