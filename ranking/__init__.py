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
    "plot_tskip": "ranking.tskip_plot",
    "FEATURE_SETS": "ranking.features",
    "FeatureSet": "ranking.features",
    "IncompatibleModelError": "ranking.features",
    "candidate_features": "ranking.features",
    "history_from_logs": "ranking.features",
    "training_frame": "ranking.features",
    "GBDTLRHead": "ranking.heads",
    "HeadConfig": "ranking.heads",
    "LogisticHead": "ranking.heads",
    "binary_metrics": "ranking.heads",
    "compare_heads": "ranking.heads",
    "normalized_entropy": "ranking.heads",
    "FeedRanker": "ranking.ranker",
    "preset_rankers": "ranking.ranker",
    "rank_candidates_file": "ranking.ranker",
    "rank_within_requests": "ranking.ranker",
    "ActionRegressor": "ranking.regressors",
    "RegressorConfig": "ranking.regressors",
    "RankerModel": "ranking.train",
    "TrainConfig": "ranking.train",
    "load_model": "ranking.train",
    "train_ranker": "ranking.train",
    "ValueWeights": "ranking.value",
    "default_weights": "ranking.value",
    "load_weights": "ranking.value",
    "needed_predictions": "ranking.value",
    "save_weights": "ranking.value",
    "value_function": "ranking.value",
}

__all__ = [
    # T_skip (ranking.tskip, ranking.tskip_plot)
    "BayesCurve",
    "BinnedCounts",
    "DwellDataWarning",
    "GroupThreshold",
    "InsufficientDataError",
    "TskipConfig",
    "TskipEstimator",
    "TskipResult",
    "add_skip_label",
    "bayes_curve",
    "bin_counts",
    "empirical_cdfs",
    "estimate_tskip",
    "estimate_tskip_file",
    "skip_label_expr",
    "threshold_from_curve",
    "plot_tskip",
    # ranking engine (features, heads, regressors, value, ranker, train)
    "FEATURE_SETS",
    "ActionRegressor",
    "FeatureSet",
    "FeedRanker",
    "GBDTLRHead",
    "HeadConfig",
    "IncompatibleModelError",
    "LogisticHead",
    "RankerModel",
    "RegressorConfig",
    "TrainConfig",
    "ValueWeights",
    "binary_metrics",
    "candidate_features",
    "compare_heads",
    "default_weights",
    "history_from_logs",
    "load_model",
    "load_weights",
    "needed_predictions",
    "normalized_entropy",
    "preset_rankers",
    "rank_candidates_file",
    "rank_within_requests",
    "save_weights",
    "train_ranker",
    "training_frame",
    "value_function",
]


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        # ``ranking.features`` etc. worked without an explicit import when everything was eager.
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module 'ranking' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
