"""Dwell embeddings of a ranking model: the training frame's strictly-past ``emb_*`` columns and the served vectors.

:func:`with_embedding_features` adds to a training frame, row by row, the
features of :mod:`ranking.features.embeddings` from factors refitted on the
days before the row's day, and fits the vectors the model serves on every day
of the logs; :func:`embedding_record` is what ``metadata.json`` records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import polars as pl
import scipy
import sklearn

from ranking.embeddings_io import EMBEDDING_DIR
from ranking.features.catalogue import EMBEDDING_COLUMNS
from ranking.features.embeddings import (
    MATRICES,
    DwellEmbeddings,
    EmbeddingConfig,
    EmbeddingEvents,
    embedding_events,
    fit_embeddings,
    past_embedding_features,
)
from ranking.glmix_data import world_fingerprint

__all__ = ["embedding_record", "embedding_seeds", "fit_served_embeddings", "with_embedding_features"]

_ENTRY = {
    "log_dwell": "log1p(sum of dwell_s over the pair's not-skipped impressions)",
    "log_count": "log1p(count of the pair's not-skipped impressions)",
}


def embedding_seeds(rng: np.random.Generator) -> dict[str, int]:
    """One randomized-SVD seed per matrix, drawn once: every daily refit of a matrix uses its seed."""
    drawn = rng.integers(0, 2**31 - 1, size=len(MATRICES))
    return {name: int(s) for name, s in zip(MATRICES, drawn, strict=True)}


def _iso(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day))).isoformat()


def embedding_record(
    events: EmbeddingEvents, config: EmbeddingConfig, seeds: Mapping[str, int], world: str, t_skip_s: float
) -> dict[str, Any]:
    """``metadata.json``'s ``embeddings`` entry: method, library, matrices, ranks, the fit window, world and seeds."""
    window = [_iso(int(events.day[0])), _iso(int(events.day[-1]))] if events.day.size else None
    return {
        "model": "dwell_embeddings",
        "method": "truncated SVD (sklearn.utils.extmath.randomized_svd, one BLAS thread); member vectors U S^1/2, "
        "author and topic vectors V S^1/2",
        "library": f"scikit-learn {sklearn.__version__}, scipy {scipy.__version__}",
        "directory": EMBEDDING_DIR,
        "matrices": {name: f"{r} x {c}: {_ENTRY[config.value]}" for name, (r, c) in MATRICES.items()},
        "ranks": {name: config.rank(name) for name in MATRICES},
        "t_skip_s": t_skip_s,
        "features": list(EMBEDDING_COLUMNS),
        "fit_window": {
            "served": window,
            "n_events": int(events.day.size),
            "training_rows": "each row's features from a refit on the not-skipped impressions of the days before its own day",
        },
        "config": asdict(config),
        "seeds": dict(seeds),
        "world": world,
    }


def fit_served_embeddings(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame], t_skip_s: float, config: EmbeddingConfig, rng: np.random.Generator
) -> DwellEmbeddings:
    """The vectors a model serves, fitted on every day of ``tables`` (no training-frame columns)."""
    events = embedding_events(tables, t_skip_s, config.value)
    seeds = embedding_seeds(rng)
    return fit_embeddings(events, config, seeds, embedding_record(events, config, seeds, world_fingerprint(tables["members"]), t_skip_s))


def with_embedding_features(
    frame: pl.DataFrame,
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
    t_skip_s: float,
    config: EmbeddingConfig,
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, DwellEmbeddings]:
    """``frame`` with the :data:`EMBEDDING_COLUMNS` appended (strictly past), and the served embeddings.

    Parameters
    ----------
    frame : polars.DataFrame
        A training frame (``day``, ``member_id``, ``update_id``) of ``tables``.
    tables : mapping of table name to frame
        The logs the frame was built from.
    t_skip_s : float, seconds
        The not-skipped threshold (the model's T_skip).
    config : EmbeddingConfig
    rng : numpy.random.Generator
        Draws the randomized SVD's seeds (:func:`embedding_seeds`).
    """
    events = embedding_events(tables, t_skip_s, config.value)
    seeds = embedding_seeds(rng)
    keys = frame.select("update_id").join(
        tables["updates"].lazy().select("update_id", "author_id", pl.col("topic").cast(pl.Int64)).collect(),
        on="update_id",
        how="left",
        maintain_order="left",
    )
    feats = past_embedding_features(
        frame["day"].to_numpy().astype(np.int64),
        frame["member_id"].to_numpy().astype(np.int64),
        keys["author_id"].fill_null(-1).to_numpy().astype(np.int64),
        keys["topic"].fill_null(-1).to_numpy().astype(np.int64),
        events,
        config,
        seeds,
    )
    out = frame.with_columns(pl.Series(c, feats[:, i]) for i, c in enumerate(EMBEDDING_COLUMNS))
    served = fit_embeddings(events, config, seeds, embedding_record(events, config, seeds, world_fingerprint(tables["members"]), t_skip_s))
    return out, served
