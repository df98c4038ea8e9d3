"""Online features: candidate rows of one request and a history snapshot.

:func:`candidate_features` joins candidate rows with the
:class:`dwellrank_logs.protocol.HistoryTables` a ranker receives (the
simulator's incrementally maintained counters, or :func:`history_from_logs`)
and derives the features with :mod:`ranking.features.evaluate`.  The raw
counts come from the lookup indexes kept with the snapshot
(:mod:`ranking.features.lookup`) where they answer, else from the joins below.

:func:`_candidate_matrix` is the path :class:`ranking.ranker.FeedRanker`
scores from: where the lookups and the numpy evaluator answer, numpy gathers
straight into the float64 matrix the model reads, with no polars frame or
query per request; :func:`candidate_features` returns the same values as a
frame.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from dwellrank_logs.checks import require_columns
from dwellrank_logs.errors import SchemaError
from dwellrank_logs.history import history_tables
from dwellrank_logs.protocol import CANDIDATE_COLUMNS, HistoryTables
from ranking.features.catalogue import _RAW, EMBEDDING_COLUMNS, FeatureSet, get_feature_set
from ranking.features.embeddings import DwellEmbeddings
from ranking.features.evaluate import _derive, _derive_matrix
from ranking.features.lookup import _raw_arrays_by_lookup
from ranking.features.validate import _check_profiles

__all__ = ["candidate_features", "history_from_logs"]


def candidate_features(
    candidates: pl.DataFrame,
    history: HistoryTables,
    profiles: pl.DataFrame,
    feature_set: str | FeatureSet,
    position: int | np.ndarray | pl.Series | None = 0,
    source: str = "candidates",
    embeddings: DwellEmbeddings | None = None,
) -> pl.DataFrame:
    """Features of candidate rows from a history snapshot (the online path).

    Parameters
    ----------
    candidates : polars.DataFrame, shape (n_rows, ...)
        At least :data:`CANDIDATE_COLUMNS` (the simulator's candidate layout).
    history : HistoryTables
        Counts of impressions before the day of every candidate's request.
    profiles : polars.DataFrame
        ``member_id`` and :data:`~ranking.features.catalogue.PROFILE_COLUMNS`
        (see :func:`~ranking.features.catalogue.member_profiles`).
    feature_set : str or FeatureSet
    position : int, array of shape (n_rows,) or None
        Feed slot; unknown before ranking, so scoring uses 0 (the default).
        ``None`` takes it from a ``position`` column of ``candidates``.
    source : str
        Named in error messages.
    embeddings : DwellEmbeddings, optional
        The model's fitted vectors: needed (only) by a set with ``emb_*``
        columns (``dwell_emb``), whose last columns they give.

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
    (:meth:`dwellrank_logs.protocol.HistoryTables.derived`), so neither may be modified in
    place after that (polars' ``extend``, item assignment); build a new snapshot
    or profiles table instead.
    """
    fs = get_feature_set(feature_set)
    require_columns(candidates.columns, CANDIDATE_COLUMNS + (("position",) if position is None else ()), "candidate table", source)
    got = _features(candidates, history, profiles, fs, position, source, embeddings)
    return pl.DataFrame(got, schema=list(fs.columns), orient="row") if isinstance(got, np.ndarray) else got


def _candidate_matrix(
    candidates: pl.DataFrame,
    history: HistoryTables,
    profiles: pl.DataFrame,
    feature_set: str | FeatureSet,
    position: int | np.ndarray | pl.Series | None = 0,
    source: str = "candidates",
    embeddings: DwellEmbeddings | None = None,
) -> np.ndarray:
    """:func:`candidate_features` as the C-order float64 matrix a model scores, shape (n_rows, n_features).

    Where the lookups and the numpy evaluator answer (a request against a
    snapshot), numpy end to end: no polars frame or query between the
    snapshot's indexes and the scorer.  Values equal :func:`candidate_features`'
    (the invariants of :mod:`ranking.features.lookup` and
    :mod:`ranking.features.evaluate`).
    """
    fs = get_feature_set(feature_set)
    require_columns(candidates.columns, CANDIDATE_COLUMNS + (("position",) if position is None else ()), "candidate table", source)
    got = _features(candidates, history, profiles, fs, position, source, embeddings)
    return got if isinstance(got, np.ndarray) else got.to_numpy(order="c")


def _features(
    candidates: pl.DataFrame,
    history: HistoryTables,
    profiles: pl.DataFrame,
    fs: FeatureSet,
    position: int | np.ndarray | pl.Series | None,
    source: str,
    embeddings: DwellEmbeddings | None = None,
) -> np.ndarray | pl.DataFrame:
    """The features as the numpy evaluator's matrix where the lookups and it answer, else as a polars frame.

    A set with embedding columns: the history part from the snapshot, then the
    embedding columns from ``embeddings`` (its last columns, in order).
    """
    hist = fs.history_set
    got = _by_lookup(candidates, history, profiles, hist, position)
    if not isinstance(got, np.ndarray):
        got = _derive(got, hist).collect() if got is not None else _by_joins(candidates, history, profiles, hist, position, source)
    if hist is fs:
        return got
    if embeddings is None:
        raise SchemaError(f"{source}: feature set '{fs.name}' reads dwell embeddings; pass the model's (RankerModel.embeddings)")
    if fs.columns[len(hist.columns) :] != EMBEDDING_COLUMNS:
        raise SchemaError(f"feature set '{fs.name}': the embedding columns must come last, as {EMBEDDING_COLUMNS}")
    emb = embeddings.rows_features(candidates, source)
    if isinstance(got, np.ndarray):
        return np.hstack([got, emb])
    return got.with_columns(pl.Series(c, emb[:, i]) for i, c in enumerate(EMBEDDING_COLUMNS))


def _position_expr(position: int | np.ndarray | pl.Series | None) -> pl.Expr:
    if position is None:
        return pl.col("position")
    if isinstance(position, (int, np.integer)):
        return pl.lit(int(position))
    return pl.lit(pl.Series("position", np.asarray(position)))


def _by_lookup(
    candidates: pl.DataFrame,
    history: HistoryTables,
    profiles: pl.DataFrame,
    fs: FeatureSet,
    position: int | np.ndarray | pl.Series | None,
) -> np.ndarray | pl.DataFrame | None:
    """The features by the lookups: the numpy evaluator's matrix, else a frame of the raw columns for
    :func:`_derive` (the evaluator declined), else None (the lookups declined: the joins answer).
    """
    fast = _raw_arrays_by_lookup(candidates, history, profiles)
    if fast is None:
        return None
    # The joins' raw counts (the invariant of ranking.features.lookup), row-aligned, 0 = no history.
    posc: np.ndarray | pl.Series
    if isinstance(position, (int, np.integer)):
        posc = np.full(candidates.height, int(position), dtype=np.int32)
    else:
        posc = candidates.select(_position_expr(position).cast(pl.Int32).alias("position")).to_series()
    columns: dict[str, np.ndarray | pl.Series] = {c: candidates[c] for c in ("update_type", "client", "created_ts", "request_ts")}
    columns.update(fast, position=posc)
    X = _derive_matrix(columns, fs)
    if X is not None:
        return X
    return pl.DataFrame([v if isinstance(v, pl.Series) else pl.Series(c, v) for c, v in columns.items()])


def _by_joins(
    candidates: pl.DataFrame,
    history: HistoryTables,
    profiles: pl.DataFrame,
    fs: FeatureSet,
    position: int | np.ndarray | pl.Series | None,
    source: str,
) -> pl.DataFrame:
    """The features by left joins of the candidates with the history tables and the profiles."""
    lf = (
        candidates.lazy()
        .select(*CANDIDATE_COLUMNS, _position_expr(position).cast(pl.Int32).alias("position"))
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
