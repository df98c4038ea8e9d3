"""Top-slot estimators beside :mod:`simulate.ope.estimators`: direct method, self-normalised DR and Switch-DR.

Same inputs as :func:`simulate.ope.estimators.doubly_robust` (one row per
request: the reward and weight of the item at position 0, a reward model's
prediction for it and its expectation under the target), with a stochastic
target's ``q_target = sum_a pi_0(a | x) q(x, a)``
(:func:`simulate.ope.slate_propensity.expected_under`).  Intervals as in
:mod:`simulate.ope.slate` (normal or bootstrap over requests).
"""

from __future__ import annotations

import numpy as np

from dwellrank_logs.checks import is_finite_number
from dwellrank_logs.errors import ConfigError
from simulate.ope.estimators import OPEEstimate
from simulate.ope.slate import _as_1d, _estimate

__all__ = ["direct_method", "self_normalised_dr", "switch_dr"]


def _inputs(n_from: np.ndarray, **arrays: np.ndarray) -> list[np.ndarray]:
    n = np.asarray(n_from).shape[0] if np.ndim(n_from) else 0
    if n < 2:
        raise ConfigError(f"need at least 2 logged requests for an estimate and its interval, got {n}")
    out = [_as_1d(name, a, n) for name, a in arrays.items()]
    if "weight" in arrays and (out[list(arrays).index("weight")] < 0).any():
        raise ConfigError("weight must be >= 0 (importance weights pi(a|x) / mu(a|x))")
    return out


def direct_method(
    q_target: np.ndarray, *, alpha: float = 0.05, interval: str = "normal", n_boot: int = 1000, rng: int | np.random.Generator | None = None
) -> OPEEstimate:
    """Direct method: ``mean(q_target)``; its interval covers only the sampling noise of the requests, not the model's bias."""
    (qt,) = _inputs(q_target, q_target=q_target)
    return _estimate("dm", qt[:, None], None, alpha, interval, n_boot, rng)


def self_normalised_dr(
    reward: np.ndarray,
    weight: np.ndarray,
    q_logged: np.ndarray,
    q_target: np.ndarray,
    *,
    alpha: float = 0.05,
    interval: str = "normal",
    n_boot: int = 1000,
    rng: int | np.random.Generator | None = None,
) -> OPEEstimate:
    """Self-normalised DR: ``mean(q_target) + sum(w (r - q_logged)) / sum(w)``."""
    r, w, ql, qt = _inputs(reward, reward=reward, weight=weight, q_logged=q_logged, q_target=q_target)
    num = np.column_stack([qt, w * (r - ql)])
    return _estimate("sndr", num, np.column_stack([np.ones_like(w), w]), alpha, interval, n_boot, rng)


def switch_dr(
    reward: np.ndarray,
    weight: np.ndarray,
    q_logged: np.ndarray,
    q_target: np.ndarray,
    tau: float,
    *,
    alpha: float = 0.05,
    interval: str = "normal",
    n_boot: int = 1000,
    rng: int | np.random.Generator | None = None,
) -> OPEEstimate:
    """Switch-DR (Wang et al., ICML 2017, in Open Bandit Pipeline's form): ``mean(q_target + w 1{w <= tau} (r - q_logged))``.

    Requests whose weight exceeds ``tau`` keep only the model's value: less
    variance, a bias where the model is wrong.  ``tau = inf`` is DR, ``tau = 0``
    the direct method.
    """
    if not (is_finite_number(tau) or tau == float("inf")) or tau < 0:
        raise ConfigError(f"tau must be a number >= 0 (a weight threshold; inf for DR), got {tau!r}")
    r, w, ql, qt = _inputs(reward, reward=reward, weight=weight, q_logged=q_logged, q_target=q_target)
    t = qt + np.where(w <= tau, w, 0.0) * (r - ql)
    return _estimate(f"switch_dr(tau={tau:g})", t[:, None], None, alpha, interval, n_boot, rng)
