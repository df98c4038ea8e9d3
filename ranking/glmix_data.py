"""GLMix designs from a training frame, and the world fingerprint its files record.

The member block gives each member coefficients on update-side features: the
update type (``type_*``, one-hot, already in the frame) and the update's
topic (``topic_<t>``, one-hot, from the updates table), so a member's fitted
P(skip) logit can move per type and per topic.  The update block gives each
update coefficients on member-side features: an intercept (the update's own
skip tendency beyond what the global head sees) and any further frame columns
asked for.  Both one-hot groups sum to 1 within a row, so the member block
carries the member's intercept implicitly; the Gaussian prior resolves the
redundancy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import polars as pl

from dwellrank_logs.checks import require_columns
from dwellrank_logs.errors import SchemaError
from dwellrank_logs.schema import UPDATE_TYPES
from ranking.glmix import EffectDesign

__all__ = ["MEMBER_TYPE_FEATURES", "glmix_designs", "topic_features", "world_fingerprint"]

#: The member block's update-type columns (one-hot, from the training frame).
MEMBER_TYPE_FEATURES: tuple[str, ...] = tuple(f"type_{t}" for t in UPDATE_TYPES)


def topic_features(topics: Sequence[int]) -> tuple[str, ...]:
    """Names of the member block's topic columns, ``topic_<t>`` for each topic id."""
    return tuple(f"topic_{int(t)}" for t in topics)


def glmix_designs(
    frame: pl.DataFrame, updates: pl.DataFrame, topics: Sequence[int], update_features: Sequence[str] = ("intercept",)
) -> list[EffectDesign]:
    """The member and update blocks of the rows of a training frame.

    Parameters
    ----------
    frame : polars.DataFrame
        Rows of :func:`ranking.features.training_frame` (``member_id``,
        ``update_id``, the ``type_*`` columns and any of ``update_features``).
    updates : polars.DataFrame
        The updates table (``update_id``, ``topic``).
    topics : sequence of int
        The topic ids of the member block's columns (the same list at training
        and scoring time; an update of another topic gets all-zero topic columns).
    update_features : sequence of str
        The update block's columns: ``"intercept"`` (a column of ones) or frame columns.

    Returns
    -------
    list of EffectDesign
        ``member`` (keyed by ``member_id``) then ``update`` (keyed by ``update_id``).
    """
    require_columns(frame.columns, ("member_id", "update_id", *MEMBER_TYPE_FEATURES), "training frame", "glmix_designs")
    require_columns(updates.columns, ("update_id", "topic"), "updates table", "glmix_designs")
    require_columns(frame.columns, [c for c in update_features if c != "intercept"], "training frame", "glmix_designs")
    if len(set(int(t) for t in topics)) != len(topics):
        raise SchemaError(f"glmix_designs: topics must be distinct, got {list(topics)}")
    topic = (
        frame.select("update_id")
        .join(updates.select("update_id", pl.col("topic").cast(pl.Int64)), on="update_id", how="left", maintain_order="left")["topic"]
        .fill_null(-1)
        .to_numpy()
    )
    one_hot = (topic[:, None] == np.asarray([int(t) for t in topics], dtype=np.int64)[None, :]).astype(np.float64)  # (n, T)
    member_X = np.hstack([frame.select(MEMBER_TYPE_FEATURES).to_numpy().astype(np.float64), one_hot])
    n = frame.height
    update_X = np.column_stack(
        [np.ones(n) if c == "intercept" else frame[c].cast(pl.Float64).to_numpy() for c in update_features] or [np.zeros((n, 0))]
    )
    return [
        EffectDesign(
            "member", "member_id", frame["member_id"].to_numpy().astype(np.int64), member_X, MEMBER_TYPE_FEATURES + topic_features(topics)
        ),
        EffectDesign("update", "update_id", frame["update_id"].to_numpy().astype(np.int64), update_X, tuple(update_features)),
    ]


def world_fingerprint(members: pl.DataFrame | pl.LazyFrame) -> str:
    """A short hash of the members table's ids and static profile columns.

    Two simulated worlds share member ids (0..N-1) but not their members'
    connections and tenure, so a model fitted on one and scored on another is
    caught by comparing fingerprints (:meth:`ranking.glmix.GlmixModel.random_effect`).
    """
    cols = ("member_id", "connections", "tenure_days")
    m = members.lazy().select(*cols).sort("member_id").collect()
    h = hashlib.sha256()
    for c in cols:
        h.update(m[c].cast(pl.Int64).to_numpy().tobytes())
    return h.hexdigest()[:16]
