"""Engagement-trend forecasting (DIGMN and baselines) from session logs.

Pipeline: :func:`read_logs` -> :func:`build_dataset` (windows, labels, padded
sessions) -> :func:`mine_intents` (LDA) -> :class:`DIGMN` trained by
:func:`train_forecaster`, or every method of the paper's tables by
:func:`compare`.
"""

from engagement.baselines import MLP, ActivityLSTM, DeepMultiChannel
from engagement.config import TASKS, DigmnConfig, LdaConfig, TrainConfig, WindowConfig
from engagement.digmn import DIGMN, FCD, intent_cosine_torch, orthogonality
from engagement.forecaster import Forecaster, train_forecaster
from engagement.intents import Intents, intent_cosine, match_intents, mine_intents
from engagement.protocol import MODELS, compare, run_model
from engagement.report import format_table
from engagement.sessions import EngagementData, build_dataset, day_label, read_logs, session_label
from engagement.train import evaluate, fit_class_offsets, split_members

__all__ = [
    "DIGMN",
    "FCD",
    "MLP",
    "MODELS",
    "TASKS",
    "ActivityLSTM",
    "DeepMultiChannel",
    "DigmnConfig",
    "EngagementData",
    "Forecaster",
    "Intents",
    "LdaConfig",
    "TrainConfig",
    "WindowConfig",
    "build_dataset",
    "compare",
    "day_label",
    "evaluate",
    "fit_class_offsets",
    "format_table",
    "intent_cosine",
    "intent_cosine_torch",
    "match_intents",
    "mine_intents",
    "orthogonality",
    "read_logs",
    "run_model",
    "session_label",
    "split_members",
    "train_forecaster",
]
