"""Dwell-time-aware feed ranking: T_skip estimation, P(skip) and the value function."""

from ranking.tskip import BayesCurve
from ranking.tskip import BinnedCounts
from ranking.tskip import DwellDataWarning
from ranking.tskip import GroupThreshold
from ranking.tskip import InsufficientDataError
from ranking.tskip import TskipConfig
from ranking.tskip import TskipEstimator
from ranking.tskip import TskipResult
from ranking.tskip import add_skip_label
from ranking.tskip import bayes_curve
from ranking.tskip import bin_counts
from ranking.tskip import empirical_cdfs
from ranking.tskip import estimate_tskip
from ranking.tskip import estimate_tskip_file
from ranking.tskip import skip_label_expr
from ranking.tskip import threshold_from_curve
from ranking.tskip_plot import plot_tskip

# Ranking engine (features, heads, regressors, value function, FeedRanker, training)
from ranking.features import FEATURE_SETS
from ranking.features import FeatureSet
from ranking.features import IncompatibleModelError
from ranking.features import candidate_features
from ranking.features import history_from_logs
from ranking.features import training_frame
from ranking.heads import GBDTLRHead
from ranking.heads import HeadConfig
from ranking.heads import LogisticHead
from ranking.heads import binary_metrics
from ranking.heads import compare_heads
from ranking.heads import normalized_entropy
from ranking.ranker import FeedRanker
from ranking.ranker import preset_rankers
from ranking.ranker import rank_candidates_file
from ranking.ranker import rank_within_requests
from ranking.regressors import ActionRegressor
from ranking.regressors import RegressorConfig
from ranking.train import RankerModel
from ranking.train import TrainConfig
from ranking.train import load_model
from ranking.train import train_ranker
from ranking.value import ValueWeights
from ranking.value import default_weights
from ranking.value import load_weights
from ranking.value import needed_predictions
from ranking.value import save_weights
from ranking.value import value_function

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
