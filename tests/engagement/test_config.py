"""Configuration errors: one row per rule, the message names the argument and what arrived."""

from __future__ import annotations

import pytest

from dwellrank_logs.errors import ConfigError
from engagement import DigmnConfig, ForecastTrainConfig, LdaConfig, WindowConfig
from engagement.config import check_task


@pytest.mark.parametrize(
    ("cls", "kwargs", "pattern"),
    [
        (WindowConfig, {"history_days": 0}, "history_days must be a positive integer, got 0"),
        (WindowConfig, {"future_days": 2.5}, "future_days must be a positive integer, got 2.5"),
        (WindowConfig, {"min_history_sessions": -1}, "min_history_sessions must be an integer >= 0, got -1"),
        (WindowConfig, {"max_sessions": True}, "max_sessions must be a positive integer, got True"),
        (WindowConfig, {"start_date": "2026-13-01"}, "start_date must be an ISO date"),
        (LdaConfig, {"k_min": 1}, "2 <= k_min <= k_max, got 1 and 10"),
        (LdaConfig, {"k_min": 8, "k_max": 7}, "2 <= k_min <= k_max, got 8 and 7"),
        (LdaConfig, {"holdout": 0.7}, r"holdout must be in \(0, 0.5\), got 0.7"),
        (LdaConfig, {"restarts": 0}, "restarts must be a positive integer, got 0"),
        (LdaConfig, {"doc_topic_prior": -1.0}, "doc_topic_prior must be a finite number > 0, got -1.0"),
        (LdaConfig, {"n_jobs": 0}, "n_jobs must be a positive integer, got 0"),
        (LdaConfig, {"search_sessions": 10}, "search_sessions must be an integer >= 1000, got 10"),
        (DigmnConfig, {"hidden": (64, 0)}, r"hidden must be a tuple of positive integers, got \(64, 0\)"),
        (DigmnConfig, {"hidden": [64, 32]}, r"hidden must be a tuple of positive integers, got \[64, 32\]"),
        (DigmnConfig, {"n_bases": 0}, "n_bases must be a positive integer, got 0"),
        (DigmnConfig, {"beta": -0.1}, "beta must be a finite number >= 0, got -0.1"),
        (DigmnConfig, {"beta": float("nan")}, "beta must be a finite number >= 0, got nan"),
        (DigmnConfig, {"predictor": "meta"}, "predictor must be 'dynamic' or 'static', got 'meta'"),
        (DigmnConfig, {"intents": "lda"}, "intents must be 'prior' or 'learned', got 'lda'"),
        (DigmnConfig, {"activity_channel": "yes"}, "activity_channel must be true or false, got 'yes'"),
        (ForecastTrainConfig, {"lr": 0}, "lr must be a finite number > 0, got 0"),
        (ForecastTrainConfig, {"batch_size": -5}, "batch_size must be a positive integer, got -5"),
        (ForecastTrainConfig, {"weight_decay": -1e-5}, "weight_decay must be >= 0, got -1e-05"),
        (ForecastTrainConfig, {"device": "tpu"}, "device must be 'cpu', 'auto' or 'cuda\\[:N\\]', got 'tpu'"),
    ],
)
def test_config_errors(cls, kwargs, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern):
        cls(**kwargs)


def test_defaults_are_the_papers() -> None:
    d, t, w, lda = DigmnConfig(), ForecastTrainConfig(), WindowConfig(), LdaConfig()
    assert (d.hidden, d.n_bases, d.beta, d.lstm_hidden, d.meta_hidden) == ((64, 32), 4, 1e-2, 32, 32)
    assert (t.lr, t.lr_halving_epochs, t.weight_decay) == (1e-3, 20, 1e-5)
    assert (w.history_days, w.future_days, w.min_history_sessions) == (14, 14, 7)
    assert (lda.k_min, lda.k_max) == (2, 10)


def test_unknown_task() -> None:
    with pytest.raises(ConfigError, match="task must be one of day, session, got 'week'"):
        check_task("week")
