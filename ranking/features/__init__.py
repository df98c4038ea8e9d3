"""Ranking features: one definition for batch training and online scoring.

Two paths produce the same *raw counts*, then one definition derives the features:

* **batch** (:func:`training_frame`, :mod:`ranking.features.training`): over an
  impressions log, daily counts per key are cumulated and joined backwards onto
  each impression;
* **online** (:func:`candidate_features`, :mod:`ranking.features.online`):
  candidate rows are joined with the :class:`dwellrank_logs.protocol.HistoryTables`
  a ranker receives, through lookup indexes kept with the snapshot
  (:mod:`ranking.features.lookup`) where they answer.

:mod:`ranking.features.catalogue` defines the features and the versioned
feature sets (and documents the column prefixes), :mod:`ranking.features.evaluate`
evaluates the definitions, :mod:`ranking.features.validate` checks given
feature matrices.
"""

from __future__ import annotations

from ranking.features.catalogue import FEATURE_SETS
from ranking.features.catalogue import PROFILE_COLUMNS
from ranking.features.catalogue import FeatureSet
from ranking.features.catalogue import IncompatibleModelError
from ranking.features.catalogue import get_feature_set
from ranking.features.catalogue import member_profiles
from ranking.features.online import candidate_features
from ranking.features.online import history_from_logs
from ranking.features.training import training_frame
from ranking.features.validate import validate_feature_matrix

__all__ = [
    "FEATURE_SETS",
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
