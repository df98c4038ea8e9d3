"""Frozen, validated configuration of the engagement-forecasting stage.

One dataclass per concern: the observation windows and filter
(:class:`WindowConfig`), intent mining (:class:`LdaConfig`), the DIGMN
architecture (:class:`DigmnConfig`) and the optimiser schedule
(:class:`ForecastTrainConfig`).  Every value is checked in ``__post_init__``
with :mod:`dwellrank_logs.checks`; messages name the argument, the rule and
what arrived.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from dwellrank_logs.checks import check_int, check_number, check_positive_int
from dwellrank_logs.errors import ConfigError

__all__ = ["TASKS", "DigmnConfig", "ForecastTrainConfig", "LdaConfig", "WindowConfig", "check_task"]

#: The two forecasting tasks of the paper's section 3.2.
TASKS: tuple[str, ...] = ("day", "session")


def check_task(task: str) -> str:
    """Return ``task`` if it is one of :data:`TASKS`, else raise :class:`ConfigError`."""
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


@dataclass(frozen=True)
class WindowConfig:
    """History and future windows, and the member filter.

    Parameters
    ----------
    history_days : int, days
        Length of the history window (paper: 14).
    future_days : int, days
        Length of the future window whose engagement is the label (paper: 14).
    min_history_sessions : int
        Members with fewer valid sessions in the history window are dropped
        (paper: 7, the median).
    max_sessions : int
        Longest session sequence kept per member (the most recent ones).
    start_date : str, optional
        ISO date (UTC) of the first history day; default the day of the
        earliest session in the logs.
    """

    history_days: int = 14
    future_days: int = 14
    min_history_sessions: int = 7
    max_sessions: int = 64
    start_date: str | None = None

    def __post_init__(self) -> None:
        for name in ("history_days", "future_days", "max_sessions"):
            check_positive_int(name, getattr(self, name))
        check_int("min_history_sessions", self.min_history_sessions, 0)
        if self.start_date is not None:
            try:
                dt.date.fromisoformat(self.start_date)
            except (TypeError, ValueError):
                raise ConfigError(f"start_date must be an ISO date YYYY-MM-DD, got {self.start_date!r}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LdaConfig:
    """Intent mining by LDA (sessions are documents, event types are words).

    Parameters
    ----------
    k_min, k_max : int
        Range of the number of intents searched by held-out perplexity (paper: 2..10).
    holdout : float
        Share of sessions held out to score perplexity.
    max_iter : int
        Batch variational EM iterations per fit.
    tol : float
        Stop when the largest relative change of the topic-word parameters is below it.
    doc_iter, doc_tol : int, float
        Per-document E-step iterations and mean-change tolerance (scikit-learn's
        ``max_doc_update_iter`` and ``mean_change_tol``).
    restarts : int
        Restarts per K, each from its own child Generator (the first from
        scikit-learn's random start, the others from
        :func:`engagement.lda.seeded_topics`); each is scored on the held-out
        sessions, and the chosen K's restart of lowest training perplexity is kept.
    k_rule : {"best_restart", "one_se", "argmin"}
        How K is chosen from the restarts' held-out perplexities
        (:func:`engagement.intents.choose_k`).
    doc_topic_prior, topic_word_prior : float, optional
        alpha and eta; default 1 / K (scikit-learn's defaults).
    search_sessions : int or None
        Sessions the K search uses, drawn without replacement when there are
        more (``None``: all; at least 1,000).  The chosen K is refitted on all
        sessions.  A million sessions pin the perplexity of every K far below
        the differences between K; the paper's 6M would make the search six
        times slower.
    n_jobs : int
        Threads for the E-step; results do not depend on it.
    """

    k_min: int = 2
    k_max: int = 10
    holdout: float = 0.1
    max_iter: int = 100
    tol: float = 1e-3
    doc_iter: int = 100
    doc_tol: float = 1e-3
    restarts: int = 2
    k_rule: str = "best_restart"
    doc_topic_prior: float | None = None
    topic_word_prior: float | None = None
    search_sessions: int | None = 1_000_000
    n_jobs: int = 2

    def __post_init__(self) -> None:
        for name in ("k_min", "k_max", "max_iter", "doc_iter", "restarts", "n_jobs"):
            check_positive_int(name, getattr(self, name))
        if self.search_sessions is not None:
            check_int("search_sessions", self.search_sessions, 1000)
        for name in ("doc_topic_prior", "topic_word_prior"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name))
        if self.k_min < 2 or self.k_max < self.k_min:
            raise ConfigError(f"k_min and k_max must satisfy 2 <= k_min <= k_max, got {self.k_min} and {self.k_max}")
        if not 0.0 < self.holdout < 0.5:
            raise ConfigError(f"holdout must be in (0, 0.5), got {self.holdout!r}")
        if self.k_rule not in ("best_restart", "one_se", "argmin"):
            raise ConfigError(f"k_rule must be 'best_restart', 'one_se' or 'argmin', got {self.k_rule!r}")
        check_number("tol", self.tol)
        check_number("doc_tol", self.doc_tol)


@dataclass(frozen=True)
class DigmnConfig:
    """The DIGMN architecture (paper sections 5.1-5.3 and 6.1.4).

    Parameters
    ----------
    hidden : tuple of int
        Hidden units of the predictor; ``len(hidden) + 1`` layers in all
        (paper: L = 3 with {64, 32}).
    n_bases : int
        d, the number of basic parameters per FC-D layer (paper: 4).
    beta : float
        Weight of the soft orthogonality term (paper: 1e-2).
    lstm_hidden : int
        Hidden units of the behaviour and intent LSTMs (paper: 32).
    meta_hidden : int
        Hidden units of the meta network (paper: 32).
    predictor : {"dynamic", "static"}
        FC-D layers (DIGMN) or plain FC layers (DIGMN (Static), Table 4).
    intents : {"prior", "learned"}
        Cosine similarity to LDA intents (paper) or ``tanh(W nu + b)`` (Table 6).
    activity_channel : bool
        Not in the paper: also feed the 14 x 10 daily event counts through a
        two-layer LSTM, as Deep Multi-channel does, into the predictor's input
        ("DIGMN (+activity)").  Off by default.
    mapping_activation : {"none", "relu"}
        What follows the linear mapping layer (section 6.1.4 gives its width,
        half the input, but no activation): ``"none"`` feeds its output to the
        first predictor layer as it is (today's default), ``"relu"`` applies a
        ReLU first (docs/digmn_audit.md).
    """

    hidden: tuple[int, ...] = (64, 32)
    n_bases: int = 4
    beta: float = 1e-2
    lstm_hidden: int = 32
    meta_hidden: int = 32
    predictor: str = "dynamic"
    intents: str = "prior"
    activity_channel: bool = False
    mapping_activation: str = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.hidden, tuple) or any(isinstance(h, bool) or not isinstance(h, int) or h <= 0 for h in self.hidden):
            raise ConfigError(f"hidden must be a tuple of positive integers, got {self.hidden!r}")
        for name in ("n_bases", "lstm_hidden", "meta_hidden"):
            check_positive_int(name, getattr(self, name))
        check_number("beta", self.beta, allow_zero=True)
        if self.predictor not in ("dynamic", "static"):
            raise ConfigError(f"predictor must be 'dynamic' or 'static', got {self.predictor!r}")
        if self.intents not in ("prior", "learned"):
            raise ConfigError(f"intents must be 'prior' or 'learned', got {self.intents!r}")
        if not isinstance(self.activity_channel, bool):
            raise ConfigError(f"activity_channel must be true or false, got {self.activity_channel!r}")
        if self.mapping_activation not in ("none", "relu"):
            raise ConfigError(f"mapping_activation must be 'none' or 'relu', got {self.mapping_activation!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass(frozen=True)
class ForecastTrainConfig:
    """Optimiser and early stopping of the forecasting models (paper section 6.1.4).

    Parameters
    ----------
    max_epochs : int
        Upper bound on epochs; early stopping usually ends sooner.
    batch_size : int
    lr : float
        Initial Adam learning rate (paper: 1e-3).
    lr_halving_epochs : int
        The learning rate halves every this many epochs (paper: 20).
    weight_decay : float
        L2 decay on every parameter except the FC-D bases (paper: 1e-5).
    patience : int
        Epochs without a better validation loss before stopping.
    device : str
        torch device ("cpu", "cuda", "auto" = cuda when available).
    class_weight : {"none", "balanced"}
        Cross-entropy class weights: ``"none"`` is the paper's plain
        cross-entropy (eq. 10); ``"balanced"`` weighs class c by
        ``n / (n_classes * n_c)`` of the training members, in the training and
        the early-stopping loss alike (docs/digmn_audit.md).
    """

    max_epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    lr_halving_epochs: int = 20
    weight_decay: float = 1e-5
    patience: int = 6
    device: str = "cpu"
    class_weight: str = "none"

    def __post_init__(self) -> None:
        for name in ("max_epochs", "batch_size", "lr_halving_epochs", "patience"):
            check_positive_int(name, getattr(self, name))
        check_number("lr", self.lr)
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not isinstance(self.device, str) or not (self.device in ("cpu", "auto") or self.device.startswith("cuda")):
            raise ConfigError(f"device must be 'cpu', 'auto' or 'cuda[:N]', got {self.device!r}")
        if self.class_weight not in ("none", "balanced"):
            raise ConfigError(f"class_weight must be 'none' or 'balanced', got {self.class_weight!r}")
