"""Engagement-trend forecasting (DIGMN and baselines) from session logs.

Pipeline: :func:`read_logs` -> :func:`build_dataset` (windows, labels, padded
sessions) -> :func:`mine_intents` (LDA) -> :class:`DIGMN` trained by
:func:`train_forecaster`, or every method of the paper's tables by
:func:`compare`.
"""

from engagement.baselines import MLP
from engagement.baselines import ActivityLSTM
from engagement.baselines import DeepMultiChannel
from engagement.config import TASKS
from engagement.config import DigmnConfig
from engagement.config import LdaConfig
from engagement.config import TrainConfig
from engagement.config import WindowConfig
from engagement.digmn import DIGMN
from engagement.digmn import FCD
from engagement.digmn import intent_cosine_torch
from engagement.digmn import orthogonality
from engagement.forecaster import Forecaster
from engagement.forecaster import train_forecaster
from engagement.intents import Intents
from engagement.intents import intent_cosine
from engagement.intents import match_intents
from engagement.intents import mine_intents
from engagement.protocol import MODELS
from engagement.protocol import compare
from engagement.protocol import run_model
from engagement.report import format_table
from engagement.sessions import EngagementData
from engagement.sessions import build_dataset
from engagement.sessions import day_label
from engagement.sessions import read_logs
from engagement.sessions import session_label
from engagement.train import evaluate, fit_class_offsets
from engagement.train import split_members

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
