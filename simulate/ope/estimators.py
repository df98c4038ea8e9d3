"""Off-policy estimators of a target's value from logged rewards and importance weights.

Pure functions of arrays, in the spirit of Open Bandit Pipeline's ``ope``
module, each with a normal-approximation interval:

* :func:`ips` -- inverse propensity scoring, ``mean(w r)``, ``w = pi(a|x) / mu(a|x)``;
* :func:`snips` -- self-normalised IPS, ``sum(w r) / sum(w)`` (delta-method interval);
* :func:`doubly_robust` -- ``mean(q(x, pi) + w (r - q(x, a)))`` with a reward model q.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

from dwellrank_logs.errors import ConfigError

__all__ = ["OPEEstimate", "doubly_robust", "ips", "snips"]


@dataclass(frozen=True)
class OPEEstimate:
    """A point estimate with its standard error and two-sided ``1 - alpha`` interval."""

    estimator: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    n: int

    def covers(self, truth: float) -> bool:
        """Whether the interval contains ``truth``."""
        return bool(self.ci_low <= truth <= self.ci_high)


def _check_arrays(**arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    out = [np.asarray(a, dtype=np.float64) for a in arrays.values()]
    n = out[0].shape
    for name, a in zip(arrays, out, strict=True):
        if a.ndim != 1 or a.shape != n:
            raise ConfigError(f"{name} must be a 1-d array of the same length as the others ({n[0]}), got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ConfigError(f"{name} must be finite, got {int((~np.isfinite(a)).sum())} non-finite value(s)")
    if n[0] < 2:
        raise ConfigError(f"need at least 2 logged samples for an estimate and its interval, got {n[0]}")
    if "weight" in arrays and (out[list(arrays).index("weight")] < 0).any():
        raise ConfigError("weight must be >= 0 (importance weights pi(a|x) / mu(a|x))")
    return tuple(out)


def _normal(name: str, value: float, se: float, n: int, alpha: float) -> OPEEstimate:
    z = statistics.NormalDist().inv_cdf(1 - alpha / 2)
    return OPEEstimate(name, float(value), float(se), float(value - z * se), float(value + z * se), int(n))


def ips(reward: np.ndarray, weight: np.ndarray, alpha: float = 0.05) -> OPEEstimate:
    """Inverse propensity scoring: ``mean(w r)``; unbiased when the propensities are exact.

    Parameters
    ----------
    reward : ndarray, shape (n,)
        Observed reward of the logged action.
    weight : ndarray, shape (n,)
        ``pi(a_i | x_i) / mu(a_i | x_i)`` for the logged action a_i.
    alpha : float
        Two-sided level of the normal interval.
    """
    r, w = _check_arrays(reward=reward, weight=weight)
    t = w * r
    return _normal("ips", t.mean(), t.std(ddof=1) / math.sqrt(t.size), t.size, alpha)


def snips(reward: np.ndarray, weight: np.ndarray, alpha: float = 0.05) -> OPEEstimate:
    """Self-normalised IPS: ``sum(w r) / sum(w)``, interval by the delta method.

    Always within the range of the observed rewards.  With no weight at all
    (the target never agrees with the log) the estimate is NaN.
    """
    r, w = _check_arrays(reward=reward, weight=weight)
    s = w.sum()
    if s <= 0:
        return OPEEstimate("snips", math.nan, math.nan, math.nan, math.nan, int(r.size))
    v = float(((w / s) * r).sum())  # normalise first: w * r underflows for subnormal weights
    infl = w * (r - v) / w.mean()  # influence function of the ratio estimator
    return _normal("snips", v, infl.std(ddof=1) / math.sqrt(r.size), r.size, alpha)


def doubly_robust(reward: np.ndarray, weight: np.ndarray, q_logged: np.ndarray, q_target: np.ndarray, alpha: float = 0.05) -> OPEEstimate:
    """Doubly robust: ``mean(q_target + w (r - q_logged))``.

    Parameters
    ----------
    reward, weight : ndarray, shape (n,)
        As in :func:`ips`.
    q_logged : ndarray, shape (n,)
        Reward model's prediction for the logged action.
    q_target : ndarray, shape (n,)
        Reward model's expected reward under the target, ``sum_a pi(a|x) q(x, a)``.

    Unbiased when either the propensities or the reward model are right; the
    propensities here are exact, the reward model only reduces variance.
    """
    r, w, ql, qt = _check_arrays(reward=reward, weight=weight, q_logged=q_logged, q_target=q_target)
    t = qt + w * (r - ql)
    return _normal("dr", t.mean(), t.std(ddof=1) / math.sqrt(t.size), t.size, alpha)
