"""Engagement-trend forecasting (DIGMN and baselines) from session logs.

Pipeline: :func:`read_logs` -> :func:`build_dataset` (windows, labels, padded
sessions) -> :func:`mine_intents` (LDA) -> :class:`DIGMN` trained by
:func:`train_forecaster`, or every method of the paper's tables by
:func:`compare`.  :func:`train_on_logs`, :func:`score_logs` and
:func:`compare_on_logs` run each ``dwellrank forecast`` verb end to end.
"""

from __future__ import annotations

from dwellrank_logs.lazy import lazy_exports

# Names are resolved on first use (PEP 562), as in ``ranking``: ``from engagement.config import
# WindowConfig`` (the CLI's option defaults) should not pay for importing torch.
_SOURCES: dict[str, str] = {
    "MLP": "engagement.baselines",
    "ActivityLSTM": "engagement.baselines",
    "DeepMultiChannel": "engagement.baselines",
    "GCNLSTMBaseline": "engagement.baselines",
    "TemporalGCNLSTM": "engagement.gcn",
    "TASKS": "engagement.config",
    "DigmnConfig": "engagement.config",
    "ForecastTrainConfig": "engagement.config",
    "LdaConfig": "engagement.config",
    "WindowConfig": "engagement.config",
    "EngagementData": "engagement.dataset",
    "build_dataset": "engagement.dataset",
    "read_logs": "engagement.dataset",
    "DIGMN": "engagement.digmn",
    "FCD": "engagement.digmn",
    "intent_cosine_torch": "engagement.digmn",
    "orthogonality": "engagement.digmn",
    "MODELS": "engagement.experiment",
    "compare": "engagement.experiment",
    "run_model": "engagement.experiment",
    "Forecaster": "engagement.forecaster",
    "train_forecaster": "engagement.forecaster",
    "write_scores": "engagement.forecaster",
    "split_members": "engagement.inputs",
    "Intents": "engagement.intents",
    "intent_cosine": "engagement.intents",
    "match_intents": "engagement.intents",
    "mine_intents": "engagement.intents",
    "day_label": "engagement.labels",
    "session_label": "engagement.labels",
    "evaluate": "engagement.metrics",
    "fit_class_offsets": "engagement.metrics",
    "format_comparison_table": "engagement.report",
    "write_comparison": "engagement.report",
    "compare_on_logs": "engagement.workflows",
    "score_logs": "engagement.workflows",
    "train_on_logs": "engagement.workflows",
    "build_dataset_spark": "engagement.spark_dataset",
    "mine_intents_spark": "engagement.spark_lda",
    "compare_on_logs_spark": "engagement.spark_workflows",
    "score_logs_spark": "engagement.spark_workflows",
    "train_on_logs_spark": "engagement.spark_workflows",
}

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
    "ForecastTrainConfig",
    "Forecaster",
    "GCNLSTMBaseline",
    "Intents",
    "LdaConfig",
    "TemporalGCNLSTM",
    "WindowConfig",
    "build_dataset",
    "build_dataset_spark",
    "compare",
    "compare_on_logs",
    "compare_on_logs_spark",
    "day_label",
    "evaluate",
    "fit_class_offsets",
    "format_comparison_table",
    "intent_cosine",
    "intent_cosine_torch",
    "match_intents",
    "mine_intents",
    "mine_intents_spark",
    "orthogonality",
    "read_logs",
    "run_model",
    "score_logs",
    "score_logs_spark",
    "session_label",
    "split_members",
    "train_forecaster",
    "train_on_logs",
    "train_on_logs_spark",
    "write_comparison",
    "write_scores",
]

__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, __all__)
