"""Top-slot estimators beside :mod:`simulate.ope.estimators`: direct method, self-normalised DR and Switch-DR.

Same inputs as :func:`simulate.ope.estimators.doubly_robust` (one row per
request: the reward and weight of the item at position 0, a reward model's
prediction for it and its expectation under the target), with a stochastic
target's ``q_target = sum_a pi_0(a | x) q(x, a)``
(:func:`simulate.ope.slate_propensity.expected_under`).  Intervals as in
:mod:`simulate.ope.slate` (normal or bootstrap over requests), with the
reward model held fixed; :func:`refit_bootstrap` resamples the requests and
refits the model in each resample, so its interval also holds the model's own
estimation noise (the honest interval of the direct method).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

import numpy as np

from dwellrank_logs.checks import is_finite_number, is_integer
from dwellrank_logs.errors import ConfigError
from simulate.ope.estimators import OPEEstimate
from simulate.ope.slate import _as_1d, _estimate

__all__ = ["direct_method", "refit_bootstrap", "self_normalised_dr", "switch_dr"]


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
    """Direct method: ``mean(q_target)``; its interval covers only the sampling noise of the requests, the model held fixed.

    For an interval that also holds the reward model's estimation noise, refit
    the model per resample with :func:`refit_bootstrap`.
    """
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


def refit_bootstrap(
    estimate: Callable[[np.ndarray], float],
    n: int,
    *,
    name: str = "dm_refit",
    alpha: float = 0.05,
    n_boot: int = 50,
    interval: str = "normal",
    rng: int | np.random.Generator | None = None,
) -> OPEEstimate:
    """A request bootstrap of a whole estimation pipeline, model fitting included.

    ``estimate(idx)`` runs the pipeline (fit the reward model, predict, average)
    on the requests ``idx`` (with repeats); the value is ``estimate(arange(n))``
    and each of ``n_boot`` resamples draws ``n`` requests with replacement.  For
    the direct method this is the interval the plain one lacks: the model's
    coefficients vary with the resample, so their noise reaches the interval.
    It still cannot hold a bias the model shares across resamples (a wrong
    functional form, or the shrinkage of its penalty).

    Parameters
    ----------
    estimate : callable, int array of shape (n,) -> float
    n : int >= 2
        Logged requests.
    name : str
        The estimate's name.
    alpha : float in (0, 1)
    n_boot : int >= 2
        Resamples; each refits the model, so few (tens) are affordable.
    interval : {'normal', 'percentile'}
        ``normal``: value +- z times the resamples' standard deviation (stable with
        tens of resamples; Efron and Tibshirani 1993, section 6.4, find 25-200
        enough for a standard error); ``percentile``: the resamples' quantiles
        (needs hundreds or more for the tails).
    rng : int or numpy.random.Generator, optional
        Seed of the resamples.
    """
    if not (is_integer(n) and n >= 2):
        raise ConfigError(f"n must be an integer >= 2 (logged requests), got {n!r}")
    if not (is_integer(n_boot) and n_boot >= 2):
        raise ConfigError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    if not (is_finite_number(alpha) and 0 < alpha < 1):
        raise ConfigError(f"alpha must be in the open interval (0, 1), got {alpha!r}")
    if interval not in ("normal", "percentile"):
        raise ConfigError(f"interval must be 'normal' or 'percentile', got {interval!r}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    value = float(estimate(np.arange(n)))
    reps = np.array([float(estimate(gen.integers(0, n, size=n))) for _ in range(n_boot)])  # one model fit each
    reps = reps[np.isfinite(reps)]
    if reps.size < 2:
        return OPEEstimate(name, value, math.nan, math.nan, math.nan, n)
    se = float(reps.std(ddof=1))
    if interval == "normal":
        z = statistics.NormalDist().inv_cdf(1 - alpha / 2)
        return OPEEstimate(name, value, se, value - z * se, value + z * se, n)
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return OPEEstimate(name, value, se, float(lo), float(hi), n)
