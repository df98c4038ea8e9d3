"""Dwell-time-aware feed ranking: T_skip estimation, P(skip) and the value function."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

# Names are resolved on first use (PEP 562): ``dwellrank estimate-tskip`` or ``from ranking import
# estimate_tskip`` should not pay for importing LightGBM, scikit-learn and matplotlib.
_SOURCES: dict[str, str] = {
    "BayesCurve": "ranking.tskip",
    "BinnedCounts": "ranking.tskip",
    "DwellDataWarning": "ranking.tskip",
    "GroupThreshold": "ranking.tskip",
    "InsufficientDataError": "ranking.tskip",
    "TskipConfig": "ranking.tskip",
    "TskipEstimator": "ranking.tskip",
    "TskipResult": "ranking.tskip",
    "add_skip_label": "ranking.tskip",
    "bayes_curve": "ranking.tskip",
    "bin_counts": "ranking.tskip",
    "empirical_cdfs": "ranking.tskip",
    "estimate_tskip": "ranking.tskip",
    "estimate_tskip_file": "ranking.tskip",
    "skip_label_expr": "ranking.tskip",
    "threshold_from_curve": "ranking.tskip",
    "plot_tskip": "ranking.tskip",
    "FEATURE_SETS": "ranking.features",
    "FeatureSet": "ranking.features",
    "IncompatibleModelError": "ranking.features",
    "candidate_features": "ranking.features",
    "history_from_logs": "ranking.features",
    "training_frame": "ranking.features",
    "GBDTLRHead": "ranking.heads",
    "HeadConfig": "ranking.heads",
    "LogisticHead": "ranking.heads",
    "binary_metrics": "ranking.metrics",
    "compare_heads": "ranking.metrics",
    "normalized_entropy": "ranking.metrics",
    "FeedRanker": "ranking.ranker",
    "preset_rankers": "ranking.ranker",
    "rank_candidates_file": "ranking.ranker",
    "rank_within_requests": "ranking.ranker",
    "ActionRegressor": "ranking.regressors",
    "RegressorConfig": "ranking.regressors",
    "RankerModel": "ranking.model",
    "load_model": "ranking.model",
    "TrainConfig": "ranking.train",
    "train_ranker": "ranking.train",
    "ValueWeights": "ranking.value",
    "default_weights": "ranking.value",
    "load_weights": "ranking.value",
    "needed_predictions": "ranking.value",
    "save_weights": "ranking.value",
    "value_function": "ranking.value",
}

# Sorted; _SOURCES says which module defines each name.
__all__ = [
    "FEATURE_SETS",
    "ActionRegressor",
    "BayesCurve",
    "BinnedCounts",
    "DwellDataWarning",
    "FeatureSet",
    "FeedRanker",
    "GBDTLRHead",
    "GroupThreshold",
    "HeadConfig",
    "IncompatibleModelError",
    "InsufficientDataError",
    "LogisticHead",
    "RankerModel",
    "RegressorConfig",
    "TrainConfig",
    "TskipConfig",
    "TskipEstimator",
    "TskipResult",
    "ValueWeights",
    "add_skip_label",
    "bayes_curve",
    "bin_counts",
    "binary_metrics",
    "candidate_features",
    "compare_heads",
    "default_weights",
    "empirical_cdfs",
    "estimate_tskip",
    "estimate_tskip_file",
    "history_from_logs",
    "load_model",
    "load_weights",
    "needed_predictions",
    "normalized_entropy",
    "plot_tskip",
    "preset_rankers",
    "rank_candidates_file",
    "rank_within_requests",
    "save_weights",
    "skip_label_expr",
    "threshold_from_curve",
    "train_ranker",
    "training_frame",
    "value_function",
]


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        # Submodules resolve as attributes too (``ranking.features``), as after an explicit import.
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module 'ranking' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
