"""Dwell embeddings: member, author and topic vectors from not-skipped dwell, strictly from earlier days.

Two matrices are factorised, both over the not-skipped impressions (dwell >=
T_skip or a click/viral action) of the days before a row's day:

* member x author: entry ``log1p(sum of dwell_s)`` of the member's not-skipped
  impressions of the author's updates (``value="log_count"``: of their count);
* member x topic: the same per topic.

Each is factorised by a truncated SVD (scikit-learn's
:func:`sklearn.utils.extmath.randomized_svd`, seeded, on a
:class:`scipy.sparse.csr_matrix`, one BLAS thread so that the bytes do not
depend on the machine): ``M ~ U S V^T``, member vectors ``U S^(1/2)``, author
(topic) vectors ``V S^(1/2)``, so that their dot product is the rank-k
reconstruction of the member's entry.  Update ids are too sparse to embed
alone (most updates live a day or two); authors and topics carry over.

The features (:data:`~ranking.features.catalogue.EMBEDDING_COLUMNS`) are the
member . author and member . topic affinities and the member's and author's
vector norms: all invariant to the factorisation's signs and rotations, so
that the daily refits of training and the served tables mean the same.

Strictly past: a training row of day ``d`` reads vectors fitted on the
events of days ``< d`` only (a refit per day; events are sorted by day so
each fit reads a prefix, and each day's matrix is summed from scratch by
``np.bincount`` in log order, so a later day cannot change an earlier fit's
bytes).  The matrices' shapes (the id universes) come from the static
tables: members from ``members``, authors and topics from ``updates``.  A
model serves the vectors fitted on every day of its logs, as the history
counts it serves are those of every earlier day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd
from threadpoolctl import threadpool_limits

from dwellrank_logs.checks import check_int
from dwellrank_logs.errors import ConfigError, SchemaError
from ranking.features.catalogue import EMBEDDING_COLUMNS
from ranking.features.training import _joined_impressions

__all__ = [
    "EMBEDDING_VALUES",
    "KEY_COLUMNS",
    "MATRICES",
    "DwellEmbeddings",
    "EmbeddingConfig",
    "EmbeddingEvents",
    "Factors",
    "embedding_events",
    "embedding_matrix",
    "fit_embeddings",
    "fit_factors",
    "past_embedding_features",
]

#: The factorised matrices: name -> (row key, column key) of the events.
MATRICES: dict[str, tuple[str, str]] = {"member_author": ("member_id", "author_id"), "member_topic": ("member_id", "topic")}
#: The candidate columns the served features read.
KEY_COLUMNS: tuple[str, ...] = ("member_id", "author_id", "topic")
#: What a matrix entry sums over a (member, author or topic) pair's not-skipped impressions, then log1p.
EMBEDDING_VALUES: tuple[str, ...] = ("log_dwell", "log_count")


@dataclass(frozen=True)
class EmbeddingConfig:
    """How the dwell embeddings are fitted.

    Parameters
    ----------
    author_rank, topic_rank : int
        Rank of the member x author and member x topic factorisations (>= 1;
        clipped to the matrix's smaller side).
    value : {"log_dwell", "log_count"}
        Entry of a (member, author/topic) pair: ``log1p`` of the summed dwell
        seconds, or of the count, of its not-skipped impressions.
    n_oversamples, n_iter : int
        :func:`~sklearn.utils.extmath.randomized_svd`'s extra random vectors
        and power iterations (more: closer to the exact SVD).
    """

    author_rank: int = 16
    topic_rank: int = 4
    value: str = "log_dwell"
    n_oversamples: int = 10
    n_iter: int = 7

    def __post_init__(self) -> None:
        for name in ("author_rank", "topic_rank", "n_oversamples"):
            check_int(name, getattr(self, name), 1)
        check_int("n_iter", self.n_iter, 0)
        if self.value not in EMBEDDING_VALUES:
            raise ConfigError(f"value must be one of {', '.join(EMBEDDING_VALUES)}, got {self.value!r}")

    def rank(self, matrix: str) -> int:
        """The configured rank of ``matrix`` (a name of :data:`MATRICES`)."""
        return self.author_rank if matrix == "member_author" else self.topic_rank


@dataclass(frozen=True)
class Factors:
    """One factorised matrix: ``rows[i] . cols[j]`` is the rank-k reconstruction of entry (row_ids[i], col_ids[j]).

    Attributes
    ----------
    row_ids, col_ids : ndarray of int64, ascending, unique
    rows : ndarray, shape (len(row_ids), k)
        ``U S^(1/2)``.
    cols : ndarray, shape (len(col_ids), k)
        ``V S^(1/2)``.
    singular_values : ndarray, shape (k,)
    nnz : int
        Nonzero entries of the factorised matrix.
    """

    row_ids: np.ndarray
    rows: np.ndarray
    col_ids: np.ndarray
    cols: np.ndarray
    singular_values: np.ndarray
    nnz: int

    @property
    def rank(self) -> int:
        """k, the vectors' length."""
        return int(self.rows.shape[1])


def fit_factors(matrix: sp.csr_matrix, rank: int, seed: int, config: EmbeddingConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row vectors ``U S^(1/2)``, column vectors ``V S^(1/2)`` and ``S`` of a rank-``rank`` truncated SVD of ``matrix``.

    ``rank`` is clipped to the matrix's smaller side; an all-zero matrix gives zero vectors.
    """
    n_rows, n_cols = matrix.shape
    k = max(1, min(rank, n_rows, n_cols))
    if matrix.nnz == 0:
        return np.zeros((n_rows, k)), np.zeros((n_cols, k)), np.zeros(k)
    with threadpool_limits(1):  # the same bytes on every machine: one BLAS thread for the QR steps and products
        u, s, vt = randomized_svd(matrix, k, n_oversamples=config.n_oversamples, n_iter=config.n_iter, random_state=seed, flip_sign=True)
    root = np.sqrt(s)
    return u * root, vt.T * root, s


@dataclass(frozen=True)
class EmbeddingEvents:
    """The not-skipped impressions the matrices sum, sorted by day (then log order), and the id universes.

    ``index[m]`` holds each event's (row, column) cell of matrix ``m`` as one
    integer key into ``keys[m]`` (the distinct cells, ascending); ``weight``
    is what an event adds to its cell before the log.
    """

    day: np.ndarray
    weight: np.ndarray
    universes: dict[str, np.ndarray]
    keys: dict[str, np.ndarray]
    index: dict[str, np.ndarray]

    def before(self, day: int) -> int:
        """How many events fall on days before ``day`` (a prefix: the events are sorted by day)."""
        return int(np.searchsorted(self.day, day, side="left"))

    def matrix(self, name: str, n_events: int) -> sp.csr_matrix:
        """Matrix ``name`` of the first ``n_events`` events: ``log1p`` of each cell's summed weight, zero cells dropped."""
        rows_key, cols_key = MATRICES[name]
        n_cols = self.universes[cols_key].size
        sums = np.bincount(self.index[name][:n_events], weights=self.weight[:n_events], minlength=self.keys[name].size)
        keep = sums != 0  # cells of later events only: not in this matrix at all
        cells = self.keys[name][keep]
        shape = (self.universes[rows_key].size, n_cols)
        return sp.csr_matrix((np.log1p(sums[keep]), (cells // n_cols, cells % n_cols)), shape=shape)


def embedding_events(tables: Mapping[str, pl.DataFrame | pl.LazyFrame], t_skip_s: float, value: str) -> EmbeddingEvents:
    """The :class:`EmbeddingEvents` of logs (``impressions``, ``sessions``, ``updates``, ``members``).

    An impression's day is its request's (session start) UTC day, as in the
    training frame.  Impressions of updates unknown to ``updates`` are dropped.
    """
    ev = (
        _joined_impressions(tables, t_skip_s)
        .filter((pl.col("_ns") == 1) & pl.col("author_id").is_not_null() & pl.col("topic").is_not_null() & pl.col("day").is_not_null())
        .select("_row", "day", "member_id", "author_id", "topic", pl.col("dwell_s").cast(pl.Float64).fill_null(0.0).clip(0.0))
        .sort("day", "_row")
        .collect()
    )
    upd = tables["updates"].lazy().select("author_id", pl.col("topic").cast(pl.Int64)).collect()
    universes = {
        "member_id": np.unique(tables["members"].lazy().select("member_id").collect()["member_id"].to_numpy().astype(np.int64)),
        "author_id": np.unique(upd["author_id"].drop_nulls().to_numpy().astype(np.int64)),
        "topic": np.unique(upd["topic"].drop_nulls().to_numpy().astype(np.int64)),
    }
    keys, index = {}, {}
    for name, (r, c) in MATRICES.items():
        ri = _positions(universes[r], ev[r].to_numpy().astype(np.int64))
        ci = _positions(universes[c], ev[c].to_numpy().astype(np.int64))
        if (ri < 0).any():
            raise SchemaError(f"impressions: member_id {int(ev[r].to_numpy()[ri < 0][0])} is not in the members table")
        keys[name], index[name] = np.unique(ri * universes[c].size + ci, return_inverse=True)
    weight = ev["dwell_s"].to_numpy() if value == "log_dwell" else np.ones(ev.height)
    return EmbeddingEvents(ev["day"].to_numpy().astype(np.int64), weight, universes, keys, index)


def _positions(universe: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Each id's position in the ascending ``universe``; -1 where absent."""
    pos = np.searchsorted(universe, ids)
    clipped = np.minimum(pos, max(universe.size - 1, 0))
    found = (pos < universe.size) & (universe[clipped] == ids) if universe.size else np.zeros(ids.size, dtype=bool)
    return np.where(found, pos, -1)


class DwellEmbeddings:
    """Fitted member x author and member x topic factors, served as the ``emb_*`` features of candidate rows.

    Parameters
    ----------
    factors : mapping of matrix name to Factors
        ``member_author`` and ``member_topic`` (:data:`MATRICES`), with the same member ids.
    record : dict
        How they were fitted (``metadata.json``'s ``embeddings`` entry).
    """

    def __init__(self, factors: Mapping[str, Factors], record: dict[str, object]) -> None:
        missing = [m for m in MATRICES if m not in factors]
        if missing:
            raise ConfigError(f"dwell embeddings need the factors of {list(MATRICES)}; missing {missing}")
        self.factors = {m: factors[m] for m in MATRICES}
        if not np.array_equal(self.factors["member_author"].row_ids, self.factors["member_topic"].row_ids):
            raise ConfigError("dwell embeddings: the member_author and member_topic factors must have the same member ids")
        self.record = record
        # A zero row after each table: ids the fit never saw gather it (no history: affinity and norm 0).
        self._padded = {m: (_pad(f.rows), _pad(f.cols)) for m, f in self.factors.items()}
        ma, mp = self.factors["member_author"], self.factors["member_topic"]
        self._index = {"member": _Index(ma.row_ids), "author": _Index(ma.col_ids), "topic": _Index(mp.col_ids)}

    @property
    def world(self) -> str | None:
        """The world fingerprint of the members the vectors were fitted on (None if unknown)."""
        w = self.record.get("world")
        return w if isinstance(w, str) else None

    def rows_features(self, rows: pl.DataFrame, source: str = "candidates") -> np.ndarray:
        """:meth:`features` of a frame's ``member_id``, ``author_id`` and ``topic`` columns (a missing one: SchemaError)."""
        missing = [c for c in KEY_COLUMNS if c not in rows.columns]
        if missing:
            raise SchemaError(f"{source}: missing column(s) {missing}; the model's dwell embeddings read {', '.join(KEY_COLUMNS)}")
        if any(rows[c].null_count() for c in KEY_COLUMNS):
            bad = [c for c in KEY_COLUMNS if rows[c].null_count()]
            raise SchemaError(f"{source}: column(s) {bad} hold nulls; the dwell embeddings need every row's {', '.join(KEY_COLUMNS)}")
        member, author, topic = (rows[c].cast(pl.Int64).to_numpy() for c in KEY_COLUMNS)
        return self.features(member, author, topic)

    def features(self, member_ids: np.ndarray, author_ids: np.ndarray, topics: np.ndarray) -> np.ndarray:
        """The :data:`EMBEDDING_COLUMNS` of rows, shape (n_rows, 4), from their member, author and topic ids."""
        member_ids, author_ids, topics = (np.asarray(a).astype(np.int64, copy=False) for a in (member_ids, author_ids, topics))
        if not (member_ids.shape == author_ids.shape == topics.shape and member_ids.ndim == 1):
            raise SchemaError(
                f"dwell embeddings: member_id, author_id and topic must be 1-d and row-aligned, got shapes "
                f"{member_ids.shape}, {author_ids.shape}, {topics.shape}"
            )
        member = self._index["member"](member_ids)  # the two matrices share their member ids (checked above)
        (member_a, author), (member_p, topic) = self._padded["member_author"], self._padded["member_topic"]
        return embedding_matrix(
            member_a[member], author[self._index["author"](author_ids)], member_p[member], topic[self._index["topic"](topics)]
        )


def embedding_matrix(member_a: np.ndarray, author: np.ndarray, member_p: np.ndarray, topic: np.ndarray) -> np.ndarray:
    """The four features from gathered vectors (one row per candidate): the one definition of training and serving."""
    out = np.empty((member_a.shape[0], len(EMBEDDING_COLUMNS)))
    out[:, 0] = np.einsum("ij,ij->i", member_a, author)
    out[:, 1] = np.einsum("ij,ij->i", member_p, topic)
    out[:, 2] = np.sqrt(np.einsum("ij,ij->i", member_a, member_a))
    out[:, 3] = np.sqrt(np.einsum("ij,ij->i", author, author))
    return out


def _pad(table: np.ndarray) -> np.ndarray:
    return np.vstack([table, np.zeros((1, table.shape[1]))])


class _Index:
    """Row of each wanted id in a padded table of ascending ``ids``; the zero row (``len(ids)``) where absent.

    Ids without gaps (a simulated world's 0..N-1) are found by subtraction, others by binary search: the
    subtraction is about 4x faster on a request's 1,000 random authors.
    """

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self.lo = int(ids[0]) if ids.size else 0
        self.dense = bool(ids.size and int(ids[-1]) - self.lo + 1 == ids.size)

    def __call__(self, wanted: np.ndarray) -> np.ndarray:
        n = self.ids.size
        if self.dense:
            pos = wanted - self.lo
            return np.where((pos >= 0) & (pos < n), pos, n)
        pos = _positions(self.ids, wanted)
        return np.where(pos >= 0, pos, n)


def _fit_all(events: EmbeddingEvents, n_events: int, config: EmbeddingConfig, seeds: Mapping[str, int]) -> dict[str, Factors]:
    """Both matrices of the first ``n_events`` events, factorised."""
    out = {}
    for name, (r, c) in MATRICES.items():
        m = events.matrix(name, n_events)
        rows, cols, s = fit_factors(m, config.rank(name), seeds[name], config)
        out[name] = Factors(events.universes[r], rows, events.universes[c], cols, s, int(m.nnz))
    return out


def fit_embeddings(
    events: EmbeddingEvents, config: EmbeddingConfig, seeds: Mapping[str, int], record: dict[str, object]
) -> DwellEmbeddings:
    """The served embeddings: both matrices of every event, factorised (``record``: how, for the model's metadata)."""
    return DwellEmbeddings(_fit_all(events, events.day.size, config, seeds), record)


def past_embedding_features(
    day: np.ndarray,
    member_ids: np.ndarray,
    author_ids: np.ndarray,
    topics: np.ndarray,
    events: EmbeddingEvents,
    config: EmbeddingConfig,
    seeds: Mapping[str, int],
) -> np.ndarray:
    """The embedding features of rows, each from factors fitted on the events of days before its own, shape (n_rows, 4).

    One refit per distinct row day (a Python loop over days, not rows); rows
    of days with the same number of earlier events share a fit.
    """
    out = np.zeros((day.size, len(EMBEDDING_COLUMNS)))
    order = np.argsort(day, kind="stable")
    days, starts = np.unique(day[order], return_index=True)
    bounds = [*starts.tolist(), day.size]
    fitted: dict[int, DwellEmbeddings] = {}
    for i, d in enumerate(days.tolist()):
        n = events.before(int(d))
        if n not in fitted:
            fitted = {n: DwellEmbeddings(_fit_all(events, n, config, seeds), {})}  # only the latest is needed again
        rows = order[bounds[i] : bounds[i + 1]]
        out[rows] = fitted[n].features(member_ids[rows], author_ids[rows], topics[rows])
    return out
