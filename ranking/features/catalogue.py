"""The feature catalogue: every feature's definition, the named and versioned feature sets.

Every feature of a candidate row (a member, an update, a request time) is
computed from impressions of *earlier UTC days* than the request (offline
features refreshed daily, as the simulator's state and production feature
stores are), plus static profile columns and the request context.

Column prefixes name what a count is keyed by:

* ``m_*``: the member (all their impressions);
* ``u_*``: the update;
* ``mt_*``: member x update *type* (the member's impressions of updates of that type);
* ``ma_*``: member x *author*;
* ``mp_*``: member x topic (the member's affinity to the update's topic; ``t`` is taken by type);
* ``type_*``, ``client_*``: one-hot update type and request client;
* ``emb_*``: dwell embeddings (:mod:`ranking.features.embeddings`): read from
  member, author and topic vectors a model fits on earlier days' not-skipped
  dwell and keeps in its directory, not from the history counts.

The prefixes are part of the feature-set version: a model directory records
its columns by name, so renaming one would orphan every trained model.

``_RAW`` names the raw count columns each history table contributes;
``_DEFS`` defines every feature from those raw counts, the profile and the
context columns (:mod:`ranking.features.evaluate` evaluates it).  Feature sets
are named and versioned; a model directory records the set it was trained on
and loading refuses another version.

The *day* of a row is the UTC day of its request (the session start), the day
on which the simulator served it; impressions of day ``d`` enter the counts
from day ``d + 1`` on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import polars as pl

from dwellrank_logs.errors import DwellrankError, SchemaError
from dwellrank_logs.schema import CLIENTS, UPDATE_TYPES

__all__ = [
    "EMBEDDING_COLUMNS",
    "EMBEDDING_FEATURE_SETS",
    "FEATURE_SETS",
    "MODEL_FEATURE_SETS",
    "PROFILE_COLUMNS",
    "FeatureSet",
    "IncompatibleModelError",
    "get_feature_set",
    "member_profiles",
]


class IncompatibleModelError(DwellrankError, ValueError):
    """A model directory was built for another feature-set version or is incomplete."""


#: Static member profile columns taken from the ``members`` table.
PROFILE_COLUMNS: tuple[str, ...] = ("connections", "tenure_days", "seniority", "is_premium")

# Raw count columns (history strictly before the request's day), by history table: its key
# columns and ``history count column -> raw column``.
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
#: The dwell-embedding features, in matrix order: member . author and member . topic affinities (the rank-k
#: reconstructions of the member x author and member x topic log-dwell matrices), the member's and the author's
#: vector norms.  All four are invariant to the factorisation's rotations and signs, so refits agree in meaning.
EMBEDDING_COLUMNS: tuple[str, ...] = ("emb_ma_affinity", "emb_mp_affinity", "emb_m_norm", "emb_a_norm")


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

    @property
    def embedding_columns(self) -> tuple[str, ...]:
        """The set's dwell-embedding columns (:data:`EMBEDDING_COLUMNS`), which a model's fitted tables supply."""
        return tuple(c for c in self.columns if c in EMBEDDING_COLUMNS)

    @cached_property  # read on every request of a set with embeddings: built once
    def history_set(self) -> FeatureSet:
        """The set without its embedding columns: what the history counts and the context give (itself if it has none)."""
        if not self.embedding_columns:
            return self
        return FeatureSet(self.name, self.version, tuple(c for c in self.columns if c not in EMBEDDING_COLUMNS))

    def to_dict(self) -> dict[str, object]:
        """``name``, ``version`` and ``columns``, as a model directory's metadata records them."""
        return {"name": self.name, "version": self.version, "columns": list(self.columns)}


FEATURE_SETS: dict[str, FeatureSet] = {
    # Both sets hold the member x topic counts (mp_*), so candidates carry ``topic``.
    "base": FeatureSet("base", 2, _BASE),
    "dwell": FeatureSet("dwell", 2, _BASE + _DWELL),
}
#: Sets whose last columns come from tables a model fits (``train --dwell-embeddings``), not from history alone:
#: apart from :data:`FEATURE_SETS`, which names what a training frame or the Spark engine can build by itself.
EMBEDDING_FEATURE_SETS: dict[str, FeatureSet] = {
    # The dwell embeddings must sit after every history column: the matrix is the history part, then these.
    "dwell_emb": FeatureSet("dwell_emb", 1, _BASE + _DWELL + EMBEDDING_COLUMNS),
}
#: Every set a model directory may record.
MODEL_FEATURE_SETS: dict[str, FeatureSet] = {**FEATURE_SETS, **EMBEDDING_FEATURE_SETS}


def get_feature_set(name: str | FeatureSet) -> FeatureSet:
    """The registered feature set called ``name`` (a :class:`FeatureSet` passes through), of :data:`FEATURE_SETS`."""
    if isinstance(name, FeatureSet):
        return name
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise SchemaError(f"feature_set must be one of {', '.join(FEATURE_SETS)}, got {name!r}") from None


def member_profiles(members: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The static profile columns of the ``members`` table, keyed by member_id."""
    return members.lazy().select("member_id", *PROFILE_COLUMNS).collect()


# --------------------------------------------------------------------------- the one definition


# Every feature, read by both evaluators of ranking.features.evaluate (polars expressions for
# tables of any size, numpy for the rows of one online request), so that a feature is defined
# in one place:
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
