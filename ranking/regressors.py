"""Downstream and upstream regressions: E[target | action, features].

For each click/viral action ``a`` (click, react, comment, share) and each
target (``downstream``: clicks + viral actions by the viewer's network caused
by the viewer; ``upstream``: feedback value to the author), a LightGBM
regression with a Poisson objective (targets are non-negative, counts or
count-like) is fitted on the impressions where ``a`` happened.  Its
prediction is the conditional expectation the value function multiplies by
P(a).  With too few rows where ``a`` happened, the model is the mean target of
those rows (a constant; 0 when there are none).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import lightgbm as lgb
import numpy as np

from dwellrank_logs.errors import ConfigError
from ranking.heads import HeadConfig, fit_trees

__all__ = ["ActionRegressor", "RegressorConfig", "poisson_deviance"]


@dataclass(frozen=True)
class RegressorConfig:
    """Hyper-parameters of the conditional regressions.

    Parameters
    ----------
    n_trees, num_leaves, learning_rate, min_child_samples
        As in :class:`ranking.heads.HeadConfig`.  Few trees: eight regressions
        are evaluated per candidate, and serving latency is paid per tree.
    min_rows : int
        Fewer rows with the action than this: fit a constant (the mean).
    objective : {"poisson", "tweedie"}
    """

    n_trees: int = 10
    num_leaves: int = 8
    learning_rate: float = 0.2
    min_child_samples: int = 50
    min_rows: int = 200
    objective: str = "poisson"

    def __post_init__(self) -> None:
        if self.objective not in ("poisson", "tweedie"):
            raise ConfigError(f"objective must be 'poisson' or 'tweedie', got {self.objective!r}")
        if isinstance(self.min_rows, bool) or not isinstance(self.min_rows, int) or self.min_rows < 1:
            raise ConfigError(f"min_rows must be an integer >= 1, got {self.min_rows!r}")
        self.trees()  # validates the shared fields

    def trees(self) -> HeadConfig:
        return HeadConfig(
            n_trees=self.n_trees,
            num_leaves=self.num_leaves,
            learning_rate=self.learning_rate,
            min_child_samples=self.min_child_samples,
        )


class ActionRegressor:
    """E[target | action happened, features] for one (action, target) pair.

    Fitted attributes
    -----------------
    booster_ : lightgbm.Booster or None
        None when the constant was fitted.
    constant_ : float
        Mean target over the fitting rows (the prediction when ``booster_`` is None).
    n_rows_ : int
    """

    def __init__(self, config: RegressorConfig | None = None) -> None:
        self.config = config or RegressorConfig()

    def fit(self, X: np.ndarray, y: np.ndarray, seed: int | np.random.Generator = 0, target: str = "y") -> ActionRegressor:
        """Fit on rows where the action happened.

        Parameters
        ----------
        X : ndarray, shape (n_rows, n_features)
        y : ndarray, shape (n_rows,), >= 0
        seed : int or numpy.random.Generator
        target : str
            The target's name (a column of the training frame), for error messages.
        """
        y = np.asarray(y, dtype=np.float64)
        finite = np.isfinite(y)
        if not finite.all() or (y[finite] < 0).any():
            bad = int((~finite).sum()), int((y[finite] < 0).sum())
            low = f", min {float(y[finite].min()):g}" if bad[1] else ""
            raise ConfigError(
                f"regression target {target!r} must be finite and >= 0: {bad[0]:,} non-finite and {bad[1]:,} negative "
                f"of {y.size:,} rows{low}"
            )
        self.n_rows_ = int(y.size)
        self.constant_ = float(y.mean()) if y.size else 0.0
        self.booster_ = None
        if y.size >= self.config.min_rows and y.max() > 0:
            self.booster_ = fit_trees(X, y, self.config.trees(), seed, objective=self.config.objective)
        return self

    def predict(self, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Expected target, shape (n_rows,), >= 0."""
        if self.booster_ is None:
            return np.full(X.shape[0], self.constant_)
        return cast(np.ndarray, self.booster_.predict(np.ascontiguousarray(X, dtype=np.float64), num_threads=num_threads))

    def save(self, directory: Path, name: str) -> None:
        """Write ``<name>.json`` and, when trees were fitted, ``<name>.trees.txt``."""
        if self.booster_ is not None:
            self.booster_.save_model(str(directory / f"{name}.trees.txt"))
        doc = {"config": asdict(self.config), "constant": self.constant_, "n_rows": self.n_rows_, "trees": self.booster_ is not None}
        (directory / f"{name}.json").write_text(json.dumps(doc))

    @classmethod
    def load(cls, directory: Path, name: str) -> ActionRegressor:
        doc = json.loads((directory / f"{name}.json").read_text())
        reg = cls(RegressorConfig(**doc["config"]))
        reg.constant_, reg.n_rows_ = float(doc["constant"]), int(doc["n_rows"])
        reg.booster_ = lgb.Booster(model_file=str(directory / f"{name}.trees.txt")) if doc["trees"] else None
        return reg


def poisson_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    """Mean Poisson deviance ``2 * mean(y log(y/mu) - (y - mu))`` (lower is better)."""
    y = np.asarray(y, dtype=np.float64)
    mu = np.maximum(np.asarray(mu, dtype=np.float64), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return float(2.0 * np.mean(term - (y - mu))) if y.size else math.nan
