"""FeedRanker: scores candidate rows with a trained model; plugs into the simulator.

``FeedRanker.rank(candidates, history, rng)`` is the ranker protocol the
simulator calls (:class:`dwellrank_logs.protocol.Ranker`): features of every candidate come
from the history snapshot (:func:`ranking.features.candidate_features`, with
position 0 since it is unknown before ranking), the heads and regressions
predict, and the value function scores.  :meth:`FeedRanker.rank_frame` returns
every prediction, the score and the 1-based rank per request.

Two presets for A/B tests (:func:`preset_rankers`):

* ``engagement_only``: base features (no dwell), click/viral weights, lambda = 0;
* ``with_pskip``: dwell features and the default skip penalty lambda > 0.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.errors import ConfigError, SchemaError, first_line
from dwellrank_logs.io import scan_logs, write_parquet
from dwellrank_logs.protocol import HistoryTables, RankerBase, RankOutput, validate_candidates
from ranking.embeddings_fit import fit_served_embeddings
from ranking.features import (
    FeatureSet,
    IncompatibleModelError,
    candidate_features,
    history_from_logs,
    member_profiles,
    validate_feature_matrix,
)
from ranking.features.online import _candidate_matrix
from ranking.glmix import GlmixWorldError
from ranking.glmix_pskip import PskipGlmixConfig, fit_pskip_glmix, profiles_fingerprint
from ranking.model import BACKENDS, RankerModel
from ranking.model_io import load_model
from ranking.train import TrainConfig, TrainingLogs, load_training_tables, train_ranker
from ranking.value import ValueWeights, value_function

__all__ = ["FeedRanker", "preset_rankers", "rank_candidates_file", "rank_within_requests", "with_dwell_embeddings", "with_pskip_glmix"]

#: The candidate columns GLMix P(skip) reads besides the feature matrix.
GLMIX_COLUMNS = ("member_id", "update_id", "topic")


def rank_within_requests(scores: pl.DataFrame, top_k: int | None = None, key: str = "request_id") -> pl.DataFrame:
    """Add ``rank`` (1 = best, by descending ``score``, ties by row order) within each ``key``.

    Keeps only ranks <= ``top_k`` when given; row order is otherwise kept.
    Without a ``key`` column all rows form one request.
    """
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k must be an integer >= 1, got {top_k!r}")
    rank = pl.col("score").rank("ordinal", descending=True)
    rank = rank.over(key) if key in scores.columns else rank
    out = scores.with_columns(rank.cast(pl.Int32).alias("rank"))
    return out.filter(pl.col("rank") <= top_k) if top_k is not None else out


class FeedRanker(RankerBase):
    """Scores (member, candidate update) rows with a :class:`~ranking.model.RankerModel`.

    Parameters
    ----------
    model : RankerModel
    weights : ValueWeights, optional
        Value-function weights; default: the model's (its ``weights.json``).
    profiles : polars.DataFrame, optional
        member_id + profile columns; default: the snapshot in the model.
    num_threads : int
        Scoring threads (0, the default: every CPU this process may use,
        :func:`ranking.native.available_cpus`).  Native code splits only
        batches of 32K+ rows (two threads), so requests stay on one thread.
    backend : {"auto", "numpy"}, optional
        Sets the model's :attr:`~ranking.model.RankerModel.backend`: "auto"
        scores with native code where it builds (:mod:`ranking.native`),
        "numpy" never does; default: leave the model's as it is.
    full : bool
        Compile the native code for every prediction (what :meth:`rank_frame`
        and :meth:`score_frame` write) instead of just the score's (what
        :meth:`rank`, the simulator's slot, needs); it serves both.

    Attributes
    ----------
    t_skip_s : float or None
        The model's T_skip when its features use dwell, so that the simulator
        counts not-skipped impressions with the threshold the model learned
        on; None otherwise.
    """

    def __init__(
        self,
        model: RankerModel,
        weights: ValueWeights | None = None,
        profiles: pl.DataFrame | None = None,
        num_threads: int = 0,
        backend: str | None = None,
        full: bool = False,
    ) -> None:
        if backend is not None:
            if backend not in BACKENDS:
                raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
            model.backend = backend
        self.model = model
        self.weights = weights or model.weights
        self.profiles = profiles if profiles is not None else model.profiles
        self.num_threads = num_threads
        self.t_skip_s = model.t_skip_s if model.feature_set.uses_dwell else None
        self.world = profiles_fingerprint(self.profiles) if model.glmix is not None else None
        fitted = model.glmix.model.world_ if model.glmix is not None else None
        if self.world is not None and fitted is not None and self.world != fitted:
            raise GlmixWorldError(
                f"the model's GLMix P(skip) random effects were fitted on world {fitted!r}, the member profiles served are of "
                f"world {self.world!r}: serve this world's profiles, or refit the random effects on its logs"
            )
        emb = model.embeddings
        served = profiles_fingerprint(self.profiles) if emb is not None else None
        if emb is not None and served is not None and emb.world is not None and served != emb.world:
            raise IncompatibleModelError(
                f"the model's dwell embeddings were fitted on the members of world {emb.world!r}, the member profiles served are of "
                f"world {served!r}: serve this world's profiles, or refit the embeddings on its logs (with_dwell_embeddings)"
            )
        model.prepare(self.weights, full=full)  # so that the first request does not pay for it

    @classmethod
    def load(cls, directory: str | os.PathLike[str], **kwargs: Any) -> FeedRanker:
        """A ranker over the model directory ``directory`` (keyword arguments as in the constructor)."""
        return cls(load_model(directory), **kwargs)

    @property
    def feature_set(self) -> FeatureSet:
        """The feature set of the model (its input columns)."""
        return self.model.feature_set

    def features(self, candidates: pl.DataFrame, history: HistoryTables, source: str = "candidates") -> np.ndarray:
        """Feature matrix, shape (n_rows, n_features), position 0 for every row."""
        if self.t_skip_s is not None and abs(history.t_skip_s - self.t_skip_s) > 1e-9:
            raise ConfigError(
                f"history counts not-skipped impressions at {history.t_skip_s} s but the model's dwell "
                f"features were trained at T_skip = {self.t_skip_s} s"
            )
        # The matrix path: numpy from the snapshot's indexes to the C-order matrix the model reads, no polars frame.
        return _candidate_matrix(
            candidates, history, self.profiles, self.model.feature_set, position=0, source=source, embeddings=self.model.embeddings
        )

    def skip_offset(self, rows: pl.DataFrame, X: np.ndarray, source: str = "candidates") -> np.ndarray | None:
        """The GLMix random-effect logit of P(skip) of ``rows`` (row-aligned with ``X``); None when the model has no GLMix."""
        if self.model.glmix is None:
            return None
        missing = [c for c in GLMIX_COLUMNS if c not in rows.columns]
        if missing:
            raise SchemaError(f"{source}: missing column(s) {missing}; the model's GLMix P(skip) reads {', '.join(GLMIX_COLUMNS)}")
        member, update, topic = (rows[c].cast(pl.Int64).to_numpy() for c in GLMIX_COLUMNS)
        return self.model.skip_offset(X, member, update, topic, world=self.world)

    def predict_features(self, X: np.ndarray, skip_offset: np.ndarray | None = None) -> pl.DataFrame:
        """Every prediction and the score for a feature matrix (columns as ``feature_set.columns``; ``skip_offset``: GLMix's logit)."""
        preds = self.model.predict(X, self.num_threads, skip_offset=skip_offset)
        score = value_function(preds, self.weights)
        return pl.DataFrame({**preds, "score": score})

    def score_frame(self, frame: pl.DataFrame, source: str = "candidates") -> pl.DataFrame:
        """Predictions and score for a frame that already holds the feature columns.

        A missing ``position`` column is read as 0.  Raises :class:`SchemaError`
        naming a missing, non-numeric or non-finite feature.
        """
        fs = self.model.feature_set
        if "position" not in frame.columns:
            frame = frame.with_columns(pl.lit(0, pl.Int32).alias("position"))
        emb = self.model.embeddings
        if emb is not None and any(c not in frame.columns for c in fs.embedding_columns):
            # The history features given, the embedding ones from the model's vectors (by member, author, topic).
            E = emb.rows_features(frame, source)
            frame = frame.with_columns(pl.Series(c, E[:, i]) for i, c in enumerate(fs.embedding_columns))
        validate_feature_matrix(frame, fs, source)
        X = frame.select([pl.col(c).cast(pl.Float64) for c in fs.columns]).to_numpy()
        return self.predict_features(X, self.skip_offset(frame, X, source))

    def predict(self, candidates: pl.DataFrame, history: HistoryTables) -> pl.DataFrame:
        """Predictions and score of candidate rows (row-aligned)."""
        X = self.features(candidates, history)
        return self.predict_features(X, self.skip_offset(candidates, X))

    def rank_frame(self, candidates: pl.DataFrame, history: HistoryTables, top_k: int | None = None) -> pl.DataFrame:
        """request_id, member_id, update_id, every prediction, score and rank per request."""
        preds = self.predict(candidates, history)
        keys = candidates.select([c for c in ("request_id", "member_id", "update_id") if c in candidates.columns])
        return rank_within_requests(pl.concat([keys, preds], how="horizontal"), top_k)

    def predict_from_logs(self, candidates: pl.DataFrame, logs_dir: str | os.PathLike[str], source: str = "candidates") -> pl.DataFrame:
        """Predictions and score of candidate rows, with history counted from a logs directory.

        Each request sees impressions of days before its own (UTC) day, dated
        by session start, exactly as in training and in the simulator.
        Member profiles come from the logs' members table.
        """
        cand = validate_candidates(candidates, source).with_row_index("_row")
        tables = scan_logs(logs_dir, ("impressions", "sessions", "updates", "members"))
        profiles = member_profiles(tables["members"])
        days = cand.select(pl.col("request_ts").dt.date().unique().sort()).to_series().to_list()
        parts = []
        for day in days:  # one history snapshot per request day (a handful), not per row
            rows = cand.filter(pl.col("request_ts").dt.date() == day)
            history = history_from_logs(tables["impressions"], tables["sessions"], tables["updates"], day, self.model.t_skip_s)
            feats = candidate_features(
                rows, history, profiles, self.model.feature_set, position=0, source=source, embeddings=self.model.embeddings
            )
            parts.append(pl.concat([rows.select("_row"), feats], how="horizontal"))
        frame = pl.concat(parts).sort("_row").drop("_row")
        X = frame.to_numpy()
        return self.predict_features(X, self.skip_offset(cand, X, source))

    def rank(self, candidates: pl.DataFrame, history: HistoryTables, rng: np.random.Generator) -> RankOutput:
        """The ranker protocol (:class:`dwellrank_logs.protocol.Ranker`): scores of candidate rows (higher first)."""
        X = self.features(candidates, history)
        return RankOutput(scores=self.model.score(X, self.weights, self.num_threads, self.skip_offset(candidates, X)))


def preset_rankers(
    logs: TrainingLogs,
    *,
    t_skip_s: float = 2.5,
    seed: int = 0,
    config: TrainConfig | None = None,
) -> dict[str, FeedRanker]:
    """The two A/B arms of the post, trained on the same logs.

    Returns
    -------
    dict
        ``engagement_only``: base features, the model's click/viral weights,
        skip penalty 0.  ``with_pskip``: dwell features, default weights
        including lambda > 0.  Both use ``t_skip_s`` for their labels.
    """
    base_cfg = config or TrainConfig(t_skip_s=t_skip_s, seed=seed, baselines=False, skip_lift=False)
    base = train_ranker(logs, config=replace(base_cfg, feature_set="base"))
    dwell = train_ranker(logs, config=replace(base_cfg, feature_set="dwell"))
    return {
        "engagement_only": FeedRanker(base, weights=base.weights.engagement_only()),
        "with_pskip": FeedRanker(dwell),
    }


def with_pskip_glmix(
    model: RankerModel, logs: TrainingLogs, *, holdout_days: int = 3, config: PskipGlmixConfig | None = None
) -> RankerModel:
    """A copy of ``model`` whose P(skip) adds GLMix random effects fitted on ``logs``, over its own skip head.

    The heads, regressions and weights stay ``model``'s; the random effects
    (:func:`ranking.glmix_pskip.fit_pskip_glmix`) are fitted on the days of
    ``logs`` before its last ``holdout_days`` (the variances chosen on the
    last ``config.valid_days`` of those) and scored on the last ones, which
    ``metadata["pskip"]`` records.  ``logs`` may be other logs than the heads'
    (the members to be served), which is what the ``with-pskip-glmix`` preset does.
    """
    from ranking.features import training_frame

    tables = load_training_tables(logs)
    fs = model.feature_set
    if fs.embedding_columns:
        raise ConfigError(f"with_pskip_glmix: a model on feature set '{fs.name}' (dwell embeddings) is not supported; use the 'dwell' set")
    frame = training_frame(tables, fs, model.t_skip_s, float(model.metadata.get("t_long_s", TrainConfig().t_long_s)))
    if frame.height == 0:
        raise SchemaError("logs: the impressions table has no rows; nothing to fit GLMix P(skip) on")
    last = int(frame["day"].max())  # type: ignore[arg-type]
    train, test = frame.filter(pl.col("day") <= last - holdout_days), frame.filter(pl.col("day") > last - holdout_days)
    skip = model.heads["skip"]
    glmix, record = fit_pskip_glmix(
        train,
        skip.decision_function(train.select(fs.columns).to_numpy()),
        test,
        skip.decision_function(test.select(fs.columns).to_numpy()),
        tables["updates"],
        tables["members"],
        fs,
        config,
        seed=model.metadata.get("seed"),
    )
    out = RankerModel(fs, model.t_skip_s, model.heads, model.regressors, model.weights, model.profiles, dict(model.metadata), model.report)
    out.metadata["pskip"] = record
    out.glmix, out.backend, out.fingerprint_ = glmix, model.backend, model.fingerprint_
    return out


def with_dwell_embeddings(model: RankerModel, logs: TrainingLogs, *, seed: int | None = None) -> RankerModel:
    """A copy of ``model`` serving dwell embeddings refitted on every day of ``logs``, and those logs' member profiles.

    The heads, regressions and weights stay ``model``'s (trained on its own
    strictly-past embedding features); the vectors are those of the members
    to be served, since vectors are keyed by member and author id and another
    run's members are other people with the same ids (the
    ``with-dwell-embeddings`` preset).  The ranks, entry and T_skip are the
    model's; ``seed`` (default the model's) seeds the randomized SVD.
    """
    if model.embeddings is None:
        raise ConfigError("with_dwell_embeddings: the model has no dwell embeddings (train it with dwell_embeddings=True)")
    tables = load_training_tables(logs)
    cfg = TrainConfig(**{k: v for k, v in model.metadata["train_config"].items() if k.startswith("embedding_")})
    s = int(model.metadata.get("seed", 0) if seed is None else seed)
    emb = fit_served_embeddings(tables, model.t_skip_s, cfg.embedding_config, np.random.default_rng(s))
    profiles = member_profiles(tables["members"])
    meta = {**model.metadata, "embeddings": {**emb.record, "refit": "on other logs than the heads' (with_dwell_embeddings)"}}
    out = RankerModel(model.feature_set, model.t_skip_s, model.heads, model.regressors, model.weights, profiles, meta, model.report)
    out.embeddings, out.glmix, out.backend, out.fingerprint_ = emb, model.glmix, model.backend, model.fingerprint_
    return out


def _read_candidates(path: str | os.PathLike[str]) -> pl.DataFrame:
    p = Path(path)
    if not p.exists():
        raise SchemaError(f"{p}: no such candidates file (expected Parquet)")
    if p.is_dir():
        raise SchemaError(f"{p}: is a directory, expected the candidates as one Parquet file")
    try:
        empty = p.stat().st_size == 0
        frame = None if empty else pl.read_parquet(p)
    except OSError as exc:  # no permission, a file removed meanwhile
        raise SchemaError(f"{p}: cannot read the candidates file ({exc.strerror})") from None
    except Exception as exc:  # polars raises several types for unreadable input
        raise SchemaError(f"{p}: not a readable Parquet file ({first_line(exc)})") from None
    if frame is None:
        raise SchemaError(f"{p}: candidates file is empty, expected Parquet")
    if frame.height == 0:
        raise SchemaError(f"{p}: candidates file has no rows")
    return frame


def rank_candidates_file(
    model_dir: str | os.PathLike[str],
    candidates: str | os.PathLike[str],
    out: str | os.PathLike[str],
    top_k: int | None = None,
    logs_dir: str | os.PathLike[str] | None = None,
    weights: ValueWeights | None = None,
    overwrite: bool = False,
) -> pl.DataFrame:
    """Score a Parquet candidate file and write every prediction, score and rank.

    The candidate file either holds the model's feature columns (a
    ``position`` column is ignored: every row is scored at slot 0, since the
    position is unknown before ranking), or the candidate key columns
    (:data:`dwellrank_logs.protocol.CANDIDATE_COLUMNS`) and ``logs_dir`` is given to
    compute features from the history before each request's day.

    Output: request_id, member_id, update_id (those present), ``p_*``,
    ``down_*``, ``up_*``, ``score``, ``rank`` (1 = best within request_id),
    only ranks <= ``top_k`` when given; written atomically, nothing on error.
    An existing ``out`` is replaced only with ``overwrite`` (checked before any
    work and again at the final rename); ``out`` must not be one of the inputs.

    Raises
    ------
    OutputExistsError
        ``out`` exists and ``overwrite`` is false, or is a directory.
    OutputError
        ``out`` is one of the inputs, or cannot be written (the system's reason).
    """
    from dwellrank_logs.io import check_not_input, check_output_file

    if top_k is not None:
        rank_within_requests(pl.DataFrame({"score": [0.0]}), top_k)  # validates top_k before any work
    check_output_file(out, "out", overwrite=overwrite)
    check_not_input(out, {"candidates": candidates, "model": model_dir, "logs": logs_dir}, "out")
    ranker = FeedRanker.load(model_dir, weights=weights, full=True)  # every prediction is written
    frame = _read_candidates(candidates)
    source = str(candidates)
    fs = ranker.feature_set
    # The embedding columns, when absent, come from the model's vectors (score_frame): the history ones decide.
    has_features = all(c in frame.columns for c in fs.history_set.columns if c != "position")
    if has_features or logs_dir is None:
        # Position is unknown before ranking: score every row at slot 0, as the simulator path does.
        preds = ranker.score_frame(frame.drop("position", strict=False), source=source)
    else:
        preds = ranker.predict_from_logs(frame, logs_dir, source=source)
    keys = frame.select([c for c in ("request_id", "member_id", "update_id") if c in frame.columns])
    result = rank_within_requests(pl.concat([keys, preds], how="horizontal"), top_k)
    write_parquet(result, out, overwrite=overwrite)
    return result
