"""Off-policy estimators of a whole ranked feed's value: pure functions over per-position arrays.

The estimand is the **feed value** of a (possibly stochastic) target ranker pi,
``V(pi) = E_x[ sum_k alpha_k E_pi[r_k | x] ]`` over the first ``K`` positions,
with position weights ``alpha`` (ones by default).

Input format (one row per logged feed request, one column per position)
------------------------------------------------------------------------
A platform's long log of ``(request, position, item, logging propensity,
reward)`` rows maps onto dense arrays of shape ``(n, K)`` with
:func:`simulate.ope.slate_propensity.slate_arrays`:

* ``reward[i, k]`` -- observed reward at position ``k`` of request ``i``;
* ``logging_marginal[i, k]`` -- ``mu(item at k | x_i)``, the probability that the
  logging ranker puts the logged item at position ``k`` (:func:`slate_independent_ips`);
* ``logging_prefix[i, k]`` -- ``mu(a_1, ..., a_k | x_i)``, the probability of the
  whole logged prefix up to ``k``: the product of the Plackett-Luce step
  propensities (:func:`slate_cascade_ips`, :func:`slate_cascade_dr`); its last
  column is the whole-slate probability of :func:`slate_standard_ips`.

The ``target_*`` arrays are the target's probabilities of the same logged
items, prefixes or slates, e.g. from an action distribution per position
(:mod:`simulate.ope.slate_propensity`).  Every estimator returns
:class:`simulate.ope.estimators.OPEEstimate` with a normal interval
(``interval="normal"``, delta method for the self-normalised ones) or a
percentile bootstrap over requests (``interval="bootstrap"``, each resample
re-normalised).

Which estimator is unbiased when (exact propensities assumed):

* standard slate IPS -- any reward, but the weight is a product over ``K`` positions;
* independent IPS -- rewards at each position depend only on the item there (position-based model);
* cascade (reward-interaction) IPS and cascade DR -- the reward at ``k`` depends only on items ``1..k``;
* pseudoinverse -- the slate reward is additive over (item, position) pairs.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from dwellrank_logs.checks import is_finite_number, is_integer
from dwellrank_logs.errors import ConfigError
from simulate.ope.estimators import OPEEstimate

__all__ = [
    "slate_cascade_dr",
    "slate_cascade_ips",
    "slate_independent_ips",
    "slate_pseudoinverse",
    "slate_standard_ips",
]

_BOOT_CHUNK = 128  # resamples per matrix product: bounds the (chunk, n) count matrix


def _as_2d(name: str, a: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    out = np.asarray(a, dtype=np.float64)
    if out.ndim != 2 or (shape is not None and out.shape != shape):
        want = "(n, K)" if shape is None else f"{shape}"
        raise ConfigError(f"{name} must be a 2-d array of shape {want} (requests x positions), got shape {out.shape}")
    if not np.isfinite(out).all():
        raise ConfigError(f"{name} must be finite, got {int((~np.isfinite(out)).sum())} non-finite value(s)")
    return out


def _as_1d(name: str, a: np.ndarray, n: int) -> np.ndarray:
    out = np.asarray(a, dtype=np.float64)
    if out.shape != (n,):
        raise ConfigError(f"{name} must be a 1-d array of length {n} (one per request), got shape {out.shape}")
    if not np.isfinite(out).all():
        raise ConfigError(f"{name} must be finite, got {int((~np.isfinite(out)).sum())} non-finite value(s)")
    return out


def _check_probability(name: str, p: np.ndarray, logging: bool) -> None:
    if logging and not ((p > 0) & (p <= 1)).all():
        bad = p[~((p > 0) & (p <= 1))][0]
        raise ConfigError(f"{name} must be in (0, 1] (a logged item has positive logging probability), got {bad!r}")
    if not logging and not ((p >= 0) & (p <= 1 + 1e-12)).all():
        bad = p[~((p >= 0) & (p <= 1 + 1e-12))][0]
        raise ConfigError(f"{name} must be in [0, 1] (target probabilities), got {bad!r}")


def _reward(reward: np.ndarray, position_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    r = _as_2d("reward", reward, None)
    if r.shape[0] < 2:
        raise ConfigError(f"need at least 2 logged requests for an estimate and its interval, got {r.shape[0]}")
    k = r.shape[1]
    if position_weight is None:
        return r, np.ones(k)
    a = np.asarray(position_weight, dtype=np.float64)
    if a.shape != (k,) or not np.isfinite(a).all():
        raise ConfigError(f"position_weight must be a finite 1-d array of length K = {k}, got shape {a.shape}")
    return r, a


def _prefix_weight(logging_prefix: np.ndarray, target_prefix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mu = _as_2d("logging_prefix", logging_prefix, shape)
    pi = _as_2d("target_prefix", target_prefix, shape)
    _check_probability("logging_prefix", mu, logging=True)
    _check_probability("target_prefix", pi, logging=False)
    if (np.diff(mu, axis=1) > 1e-12).any():
        raise ConfigError("logging_prefix must not increase along positions (it is a product over the prefix: mu(a_1..a_k | x))")
    return pi / mu


def _estimate(
    name: str, num: np.ndarray, den: np.ndarray | None, alpha: float, interval: str, n_boot: int, rng: int | np.random.Generator | None
) -> OPEEstimate:
    """``sum_c sum_i num[i, c] / sum_i den[i, c]`` (``den`` None: ones, a plain mean), with its interval.

    Every estimator here is a sum of ratio (or plain) means over components
    ``c``; the normal interval uses the ratio's influence function
    ``sum_c (num - v_c den) / mean(den_c)``, the bootstrap resamples requests.
    """
    if not (is_finite_number(alpha) and 0 < alpha < 1):
        raise ConfigError(f"alpha must be in the open interval (0, 1), got {alpha!r}")
    if interval not in ("normal", "bootstrap"):
        raise ConfigError(f"interval must be 'normal' or 'bootstrap', got {interval!r}")
    n = num.shape[0]
    d = np.ones_like(num) if den is None else den
    dsum = d.sum(axis=0)
    if (dsum <= 0).any():  # the target never agrees with the log at some position
        return OPEEstimate(name, math.nan, math.nan, math.nan, math.nan, n)
    v_c = num.sum(axis=0) / dsum
    value = float(v_c.sum())
    if interval == "normal":
        infl = ((num - v_c * d) / (dsum / n)).sum(axis=1)
        se = float(infl.std(ddof=1) / math.sqrt(n))
        z = statistics.NormalDist().inv_cdf(1 - alpha / 2)
        return OPEEstimate(name, value, se, value - z * se, value + z * se, n)
    if not (is_integer(n_boot) and n_boot >= 2):
        raise ConfigError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    reps = np.empty(n_boot)
    for start in range(0, n_boot, _BOOT_CHUNK):
        b = min(_BOOT_CHUNK, n_boot - start)
        idx = gen.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps[start : start + b] = (counts @ num / (counts @ d)).sum(axis=1)
    reps = reps[np.isfinite(reps)]  # a resample without weight at a position has no self-normalised value
    if reps.size < 2:
        return OPEEstimate(name, value, math.nan, math.nan, math.nan, n)
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return OPEEstimate(name, value, float(reps.std(ddof=1)), float(lo), float(hi), n)


def slate_standard_ips(
    reward: np.ndarray,
    logging_slate: np.ndarray,
    target_slate: np.ndarray,
    *,
    position_weight: np.ndarray | None = None,
    self_normalised: bool = False,
    alpha: float = 0.05,
    interval: str = "normal",
    n_boot: int = 1000,
    rng: int | np.random.Generator | None = None,
) -> OPEEstimate:
    """Standard slate IPS: ``mean(pi(s|x) / mu(s|x) * sum_k alpha_k r_k)``; unbiased for any reward.

    Parameters
    ----------
    reward : ndarray, shape (n, K)
        Observed rewards per request and position.
    logging_slate, target_slate : ndarray, shape (n,)
        Logging and target probability of the whole logged slate (the prefix
        probability at the last position).
    position_weight : ndarray, shape (K,), optional
        ``alpha_k``; ones by default.
    self_normalised : bool
        Divide by ``sum(w)`` instead of ``n``.
    alpha : float in (0, 1)
        Two-sided level of the interval.
    interval : {'normal', 'bootstrap'}
    n_boot : int >= 2
        Bootstrap resamples of the requests.
    rng : int or numpy.random.Generator, optional
        Seed of the bootstrap.
    """
    r, a = _reward(reward, position_weight)
    mu = _as_1d("logging_slate", logging_slate, r.shape[0])
    pi = _as_1d("target_slate", target_slate, r.shape[0])
    _check_probability("logging_slate", mu, logging=True)
    _check_probability("target_slate", pi, logging=False)
    w = (pi / mu)[:, None]
    num = w * (r @ a)[:, None]
    name = "sn_slate_ips" if self_normalised else "slate_ips"
    return _estimate(name, num, w if self_normalised else None, alpha, interval, n_boot, rng)


def slate_independent_ips(
    reward: np.ndarray,
    logging_marginal: np.ndarray,
    target_marginal: np.ndarray,
    *,
    position_weight: np.ndarray | None = None,
    self_normalised: bool = False,
    alpha: float = 0.05,
    interval: str = "normal",
    n_boot: int = 1000,
    rng: int | np.random.Generator | None = None,
) -> OPEEstimate:
    """Independent (position-wise) IPS: ``sum_k alpha_k mean(pi_k(a_k|x) / mu_k(a_k|x) r_k)``.

    Unbiased when the reward at a position depends only on the item there
    (and the context).  Self-normalised: each position divides by its own
    ``sum_i w_ik``.  OBP calls the plain version IPW and the normalised one SNIPW.

    Parameters
    ----------
    reward : ndarray, shape (n, K)
    logging_marginal, target_marginal : ndarray, shape (n, K)
        Probability that the logging / target ranker puts the logged item at its position.
    position_weight, self_normalised, alpha, interval, n_boot, rng
        As in :func:`slate_standard_ips`.
    """
    r, a = _reward(reward, position_weight)
    mu = _as_2d("logging_marginal", logging_marginal, r.shape)
    pi = _as_2d("target_marginal", target_marginal, r.shape)
    _check_probability("logging_marginal", mu, logging=True)
    _check_probability("target_marginal", pi, logging=False)
    w = pi / mu
    name = "sn_independent_ips" if self_normalised else "independent_ips"
    return _estimate(name, w * r * a, w if self_normalised else None, alpha, interval, n_boot, rng)


def slate_cascade_ips(
    reward: np.ndarray,
    logging_prefix: np.ndarray,
    target_prefix: np.ndarray,
    *,
    position_weight: np.ndarray | None = None,
    self_normalised: bool = False,
    alpha: float = 0.05,
    interval: str = "normal",
    n_boot: int = 1000,
    rng: int | np.random.Generator | None = None,
) -> OPEEstimate:
    """Reward-interaction (cascade) IPS: ``sum_k alpha_k mean(pi(a_1..a_k|x) / mu(a_1..a_k|x) r_k)``.

    Unbiased when the reward at ``k`` depends only on the items at positions
    ``1..k`` (the cascade model; McInerney et al., KDD 2020).

    Parameters
    ----------
    reward : ndarray, shape (n, K)
    logging_prefix, target_prefix : ndarray, shape (n, K)
        Probability of the logged prefix ``a_1..a_k`` under the logging / target ranker.
    position_weight, self_normalised, alpha, interval, n_boot, rng
        As in :func:`slate_standard_ips`.
    """
    r, a = _reward(reward, position_weight)
    w = _prefix_weight(logging_prefix, target_prefix, r.shape)
    name = "sn_cascade_ips" if self_normalised else "cascade_ips"
    return _estimate(name, w * r * a, w if self_normalised else None, alpha, interval, n_boot, rng)


def slate_cascade_dr(
    reward: np.ndarray,
    logging_prefix: np.ndarray,
    target_prefix: np.ndarray,
    q_logged: np.ndarray,
    q_target: np.ndarray,
    *,
    position_weight: np.ndarray | None = None,
    self_normalised: bool = False,
    alpha: float = 0.05,
    interval: str = "normal",
    n_boot: int = 1000,
    rng: int | np.random.Generator | None = None,
) -> OPEEstimate:
    """Cascade doubly robust (Kiyohara et al., WSDM 2022).

    ``sum_k mean( w_{1:k} (alpha_k r_k - Q_k(x, a_{1:k})) + w_{1:k-1} E_{a ~ pi(.|x, a_{1:k-1})}[Q_k(x, a_{1:k-1}, a)] )``
    with ``w_{1:k}`` the prefix weight (``w_{1:0} = 1``).  ``Q_k`` models the
    position-weighted reward from position ``k`` on; unbiased under the
    cascade model for any ``Q`` when ``q_target`` is the target's exact
    expectation of ``Q`` (the model only reduces variance).  Self-normalised:
    ``w_{1:k}`` and ``w_{1:k-1}`` each divided by their mean.

    Parameters
    ----------
    reward, logging_prefix, target_prefix : ndarray, shape (n, K)
        As in :func:`slate_cascade_ips`.
    q_logged : ndarray, shape (n, K)
        ``Q_k(x, a_{1:k})`` at the logged prefix.
    q_target : ndarray, shape (n, K)
        ``E_{a ~ pi(.|x, a_{1:k-1})} Q_k(x, a_{1:k-1}, a)``; its column 0 is the model's value of the whole target feed.
    position_weight, self_normalised, alpha, interval, n_boot, rng
        As in :func:`slate_standard_ips`.
    """
    r, a = _reward(reward, position_weight)
    w = _prefix_weight(logging_prefix, target_prefix, r.shape)
    ql = _as_2d("q_logged", q_logged, r.shape)
    qt = _as_2d("q_target", q_target, r.shape)
    w_prev = np.column_stack([np.ones(r.shape[0]), w[:, :-1]])
    num = np.column_stack([w * (r * a - ql), w_prev * qt])
    name = "sn_cascade_dr" if self_normalised else "cascade_dr"
    return _estimate(name, num, np.column_stack([w, w_prev]) if self_normalised else None, alpha, interval, n_boot, rng)


def slate_pseudoinverse(
    reward: np.ndarray,
    pi_weight: np.ndarray,
    *,
    position_weight: np.ndarray | None = None,
    self_normalised: bool = False,
    alpha: float = 0.05,
    interval: str = "normal",
    n_boot: int = 1000,
    rng: int | np.random.Generator | None = None,
) -> OPEEstimate:
    """Pseudoinverse estimator (Swaminathan et al., NeurIPS 2017): ``mean(g_i sum_k alpha_k r_ik)``.

    ``g_i = q_pi(x_i)^T Gamma_mu(x_i)^+ 1_{s_i}`` (may be negative) from
    :func:`simulate.ope.slate_propensity.pseudoinverse_weight` (any logging
    ranker whose pair marginals ``Gamma`` are known: uniform in closed form,
    Plackett-Luce exactly by :func:`~simulate.ope.slate_propensity.pl_pair_marginals`
    for small candidate sets or by Monte Carlo) or
    :func:`~simulate.ope.slate_propensity.factorised_pseudoinverse_weight`
    (logging independent across positions: ``sum_k w_k - K + 1``).
    Unbiased when the slate reward is additive over (item, position) pairs.
    Self-normalised: divided by ``sum(g)`` (the weighted PI).

    Parameters
    ----------
    reward : ndarray, shape (n, K)
    pi_weight : ndarray, shape (n,)
    position_weight, self_normalised, alpha, interval, n_boot, rng
        As in :func:`slate_standard_ips`.
    """
    r, a = _reward(reward, position_weight)
    g = _as_1d("pi_weight", pi_weight, r.shape[0])[:, None]
    name = "sn_pseudoinverse" if self_normalised else "pseudoinverse"
    return _estimate(name, g * (r @ a)[:, None], g if self_normalised else None, alpha, interval, n_boot, rng)
