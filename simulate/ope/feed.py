"""Whole-feed off-policy evaluation in the simulator: per-position propensities of the logged feeds and every slate estimator.

The estimand of :func:`simulate.ope.run_ope` with ``feed_k = K`` is the
**feed value** of a deterministic target ranker: the expected reward summed
over the first ``K`` positions of its feed (clicks, viral actions or
not-skipped views), with the simulator's own position effect and viewing
depth (:func:`simulate.truth.feed_truth`).  In the simulator every position's
reward depends only on the update there (viewing depth is drawn before and
independently of the feed), so the reward is additive over (update, position)
pairs: standard slate IPS, independent IPS, cascade IPS and cascade DR are all
unbiased; so is the pseudoinverse with the exact Plackett-Luce ``Gamma``
(reported as ``pseudoinverse`` where the candidate sets are small enough to
enumerate), while the factorised weight (``pseudoinverse_factorised``, always
reported) is exact only for logging independent across positions, and
Plackett-Luce is not.

* :func:`top_k_rows` -- the row of each request's candidate at each of the first ``K`` positions;
* :func:`pl_marginals_at` -- exact ``P(logged item at its position)`` of a Plackett-Luce ranker, only for the
  first ``K`` positions (cheaper than :func:`simulate.ope.slate_propensity.pl_position_marginals`);
* :func:`exact_pseudoinverse_weight` -- the pseudoinverse weight with the exact Plackett-Luce ``Gamma`` of each
  request, for candidate sets small enough to enumerate (:func:`exact_pseudoinverse_feasible`);
* :func:`feed_estimates` -- every estimator of :mod:`simulate.ope.slate` for a deterministic target (normal or
  bootstrap intervals).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from dwellrank_logs.checks import is_integer
from dwellrank_logs.errors import ConfigError
from simulate.ope.estimators import OPEEstimate
from simulate.ope.slate import slate_cascade_dr, slate_cascade_ips, slate_independent_ips, slate_pseudoinverse, slate_standard_ips
from simulate.ope.slate_propensity import (
    MAX_PREFIXES,
    factorised_pseudoinverse_weight,
    n_prefixes,
    pl_pair_marginals,
    prefix_product,
    pseudoinverse_weight,
)

__all__ = [
    "EXACT_PI_MAX_CELLS",
    "exact_pseudoinverse_feasible",
    "exact_pseudoinverse_weight",
    "feed_estimates",
    "pl_marginals_at",
    "top_k_rows",
]

# The exponential-race quadrature of simulate.ope.slate_propensity (trapezoid in log time, ~1e-12).
_STEP = 0.1
_LOG_T_LOW = -34.0
_MIN_WEIGHT = 1e-30
_CHUNK_CELLS = 4_000_000  # requests x grid x positions x items per chunk
EXACT_PI_MAX_CELLS = 64  # m K at most for the exact pseudoinverse: an (m K)^3 pseudoinverse per request (~1 ms at 64)


def top_k_rows(scores: np.ndarray, request_id: np.ndarray, k: int) -> np.ndarray:
    """Row index of each request's candidate at positions ``0 .. k-1``, shape (n_requests, k).

    The simulator's order (descending score, ties by candidate order, as
    :func:`simulate.ope.recorder.top_rows`); requests in order of first
    appearance, rows of one request contiguous.

    Raises
    ------
    ConfigError
        A request has fewer than ``k`` candidates.
    """
    if not (is_integer(k) and k >= 1):
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    rid = np.asarray(request_id)
    n = rid.size
    if n == 0:
        return np.zeros((0, k), dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(rid[1:] != rid[:-1]) + 1]
    counts = np.diff(np.r_[starts, n])
    if counts.min() < k:
        raise ConfigError(f"feed_k = {k} exceeds the candidates of request {rid[starts[counts.argmin()]].item()!r} ({counts.min()})")
    grp = np.repeat(np.arange(starts.size), counts)
    order = np.lexsort((np.arange(n), -np.asarray(scores, dtype=np.float64), grp))  # grouped, best first
    return order[starts[:, None] + np.arange(k)[None, :]]


def pl_marginals_at(logits: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Exact ``P(item[i, k] is placed at position k | x_i)`` of a Plackett-Luce ranker, shape (n, K).

    The exponential race of :func:`simulate.ope.slate_propensity.pl_position_marginals`
    (item j arrives at ``T_j ~ Exp(w_j)``), but only the ``K`` cells asked for:
    ``P(j at k) = int w_j e^{-w_j t} P(exactly k others arrived by t) dt``, the
    Poisson-binomial of the others truncated at degree ``K - 1`` (products
    only, no deconvolution).  Cost ``O(n G (m K + K^3))``.

    Parameters
    ----------
    logits : ndarray, shape (n, m)
        Scores divided by the temperature; ``-inf`` marks a padded, absent item.
    item : ndarray of int, shape (n, K)
        Distinct items of each row (indices into ``logits``' columns, finite logits).

    Returns
    -------
    ndarray, shape (n, K), probabilities
    """
    s = np.asarray(logits, dtype=np.float64)
    a = np.asarray(item)
    if s.ndim != 2 or a.ndim != 2 or a.shape[0] != s.shape[0] or np.isnan(s).any() or (s == np.inf).any():
        raise ConfigError(f"need logits (n, m) without NaN or +inf and item (n, K), got {s.shape} and {a.shape}")
    n, k = a.shape
    if n == 0:
        return np.zeros((0, k))
    rows = np.arange(n)[:, None]
    if not np.isfinite(s[rows, a]).all():
        raise ConfigError("item must index finite logits (a present item)")
    w = np.exp(s - s.max(axis=1, keepdims=True))
    w = np.where(w > 0, np.maximum(w, _MIN_WEIGHT), 0.0)
    w /= w.sum(axis=1, keepdims=True)
    rest = w.copy()
    rest[rows, a] = 0.0  # the others outside the K logged items
    w_item = w[rows, a]  # (n, K)
    out = np.empty((n, k))
    chunk = max(1, _CHUNK_CELLS // (1000 * k * s.shape[1]))
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        wc = w[sl]
        hi = float(np.log(40.0 / wc[wc > 0].min())) + 1.0  # e^{-w t} < e^-40 beyond: every item has arrived
        t = np.exp(np.arange(_LOG_T_LOW, hi + _STEP, _STEP))
        out[sl] = _race_at(rest[sl], w_item[sl], t)
    return np.clip(out, 0.0, 1.0)


def _race_at(rest: np.ndarray, w_item: np.ndarray, t: np.ndarray) -> np.ndarray:
    """:func:`pl_marginals_at` for a chunk: weights of the others (c, m) (0 for logged or absent), logged (c, K), grid t (G,)."""
    k = w_item.shape[1]
    coef = np.zeros((rest.shape[0], t.size, k))  # P(exactly r of the rest arrived by t), r < K
    coef[..., 0] = 1.0
    for j in np.flatnonzero((rest > 0).any(axis=0)):
        p = -np.expm1(-rest[:, j, None] * t[None, :])[..., None]  # (c, G, 1)
        coef[..., 1:] = coef[..., 1:] * (1 - p) + coef[..., :-1] * p
        coef[..., :1] *= 1 - p
    p_item = -np.expm1(-w_item[:, None, :] * t[None, :, None])  # (c, G, K)
    dens = w_item[:, None, :] * t[None, :, None] * np.exp(-w_item[:, None, :] * t[None, :, None])  # dt = t dlog t
    out = np.empty(w_item.shape)
    for pos in range(k):
        c = coef.copy()
        for other in range(k):  # the other logged items join the race
            if other != pos:
                p = p_item[..., other : other + 1]
                c[..., 1:] = c[..., 1:] * (1 - p) + c[..., :-1] * p
                c[..., :1] *= 1 - p
        f = c[..., pos] * dens[..., pos]  # (c, G)
        out[:, pos] = _STEP * (f.sum(axis=1) - 0.5 * (f[:, 0] + f[:, -1]))
    return out


def exact_pseudoinverse_feasible(n_candidates: int, k: int) -> bool:
    """Whether :func:`exact_pseudoinverse_weight` fits: ``m! / (m - K)! <= MAX_PREFIXES`` and ``m K <= EXACT_PI_MAX_CELLS``."""
    return n_prefixes(n_candidates, k) <= MAX_PREFIXES and n_candidates * k <= EXACT_PI_MAX_CELLS


def exact_pseudoinverse_weight(logits: np.ndarray, n_candidates: np.ndarray, logged: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``g_i = 1_{t_i}^T Gamma(x_i)^+ 1_{s_i}`` for deterministic targets, with each request's exact Plackett-Luce ``Gamma``.

    ``Gamma(x_i)`` by :func:`simulate.ope.slate_propensity.pl_pair_marginals`
    (enumeration), its pseudoinverse once per request and shared by the targets.
    It is singular by construction (rank ``m K - K + 1`` for ``m > K``: each
    position holds exactly one item); rounding leaves its null directions at
    ~1e-16 of the largest eigenvalue, cut at 1e-10.

    Parameters
    ----------
    logits : ndarray, shape (n, max candidates)
        The logging ranker's logits, request ``i``'s in its first ``n_candidates[i]`` columns.
    n_candidates : ndarray of int, shape (n,)
    logged : ndarray of int, shape (n, K)
        Column (candidate) index of the logged item at each position.
    target : ndarray of int, shape (n, K) or (T, n, K)
        The same for one target's feed, or for ``T`` targets.

    Returns
    -------
    ndarray, shape (n,) or (T, n)

    Raises
    ------
    ConfigError
        :func:`exact_pseudoinverse_feasible` is false for some request.
    """
    s = np.asarray(logits, dtype=np.float64)
    m_all = np.asarray(n_candidates)
    a, t = np.asarray(logged), np.asarray(target)
    ts = t[None] if t.ndim == 2 else t
    k = a.shape[1]
    out = np.empty((ts.shape[0], a.shape[0]))
    if a.shape[0] == 0:
        return out[0] if t.ndim == 2 else out
    m_max = int(m_all.max())
    if not exact_pseudoinverse_feasible(m_max, k):
        raise ConfigError(
            f"exact Gamma for {m_max} candidates and K = {k} needs {n_prefixes(m_max, k):,} prefixes (at most {MAX_PREFIXES:,}) "
            f"and a {m_max * k} x {m_max * k} pseudoinverse per request (m K at most {EXACT_PI_MAX_CELLS})"
        )
    for m in np.unique(m_all):  # one Gamma size per candidate count
        rows = np.flatnonzero(m_all == m)
        for start in range(0, rows.size, 256):  # bounds the (chunk, mK, mK) stack
            sel = rows[start : start + 256]
            # Thousands of small eigendecompositions: BLAS threads only add synchronisation (measured 9x slower
            # with 2 OpenBLAS threads than with 1 for 1,400 30 x 30 matrices).
            with threadpool_limits(1, user_api="blas"):
                gp = np.linalg.pinv(pl_pair_marginals(s[sel, :m], k), rcond=1e-10, hermitian=True)
            for j, tj in enumerate(ts):
                dist = np.zeros((sel.size, int(m), k))
                dist[np.arange(sel.size)[:, None], tj[sel], np.arange(k)[None, :]] = 1.0  # a deterministic target's slate
                out[j, sel] = pseudoinverse_weight(a[sel], dist, gp)
    return out[0] if t.ndim == 2 else out


def feed_estimates(
    reward: np.ndarray,
    logged: np.ndarray,
    target: np.ndarray,
    logging_step: np.ndarray,
    logging_marginal: np.ndarray,
    q_logged: np.ndarray,
    q_target: np.ndarray,
    alpha: float = 0.05,
    *,
    interval: str = "normal",
    n_boot: int = 1000,
    rng: int | np.random.Generator | None = None,
    pi_weight: np.ndarray | None = None,
) -> dict[str, OPEEstimate]:
    """Every slate estimator, plain and self-normalised, of a deterministic target's feed value.

    Parameters
    ----------
    reward : ndarray, shape (n, K)
        Observed reward at each of the first ``K`` positions (0 where not viewed).
    logged, target : ndarray of int, shape (n, K)
        Update at each position of the logged feed and of the target's feed.
    logging_step : ndarray, shape (n, K)
        The logging ranker's Plackett-Luce step propensity of each logged update.
    logging_marginal : ndarray, shape (n, K)
        ``P(logged update at its position)`` under the logging ranker; read only
        where the target puts the same update there (NaN elsewhere is fine).
    q_logged, q_target : ndarray, shape (n, K)
        A reward model of each position at the logged and at the target's update.
    alpha : float in (0, 1)
    interval : {'normal', 'bootstrap'}
        As in :mod:`simulate.ope.slate`: the bootstrap resamples requests and
        re-normalises the self-normalised estimators in each resample.
    n_boot : int >= 2
        Bootstrap resamples (``interval='bootstrap'`` only).
    rng : int or numpy.random.Generator, optional
        Seed of the bootstrap, normalised once; the estimators, in the order of
        the returned dict, draw from its children ``rng.spawn(12)``, so each
        estimate equals its :mod:`simulate.ope.slate` function called with
        ``rng=child`` (the reward model stays fixed across resamples).
    pi_weight : ndarray, shape (n,), optional
        The pseudoinverse weight with the exact ``Gamma`` (:func:`exact_pseudoinverse_weight`);
        adds ``pseudoinverse`` and ``sn_pseudoinverse``.

    Returns
    -------
    dict of name to OPEEstimate
        ``slate_ips``, ``independent_ips``, ``cascade_ips``, ``cascade_dr``,
        ``pseudoinverse_factorised`` and their ``sn_`` versions, in that order,
        then ``pseudoinverse`` and ``sn_pseudoinverse`` when ``pi_weight`` is given.
    """
    same = np.asarray(logged) == np.asarray(target)
    target_marginal = same.astype(np.float64)
    target_prefix = np.cumprod(same, axis=1).astype(np.float64)
    logging_prefix = prefix_product(logging_step)
    # The target puts probability 0 on a mismatched cell: its weight is 0 whatever mu is there.
    mu = np.where(same, np.asarray(logging_marginal, dtype=np.float64), 1.0)
    g = factorised_pseudoinverse_weight(mu, target_marginal)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    children = iter(gen.spawn(12)) if interval == "bootstrap" else iter([None] * 12)
    out: dict[str, OPEEstimate] = {}
    for sn in (False, True):
        ests = [
            slate_standard_ips(
                reward, logging_prefix[:, -1], target_prefix[:, -1], self_normalised=sn, **_opts(alpha, interval, n_boot, children)
            ),
            slate_independent_ips(reward, mu, target_marginal, self_normalised=sn, **_opts(alpha, interval, n_boot, children)),
            slate_cascade_ips(reward, logging_prefix, target_prefix, self_normalised=sn, **_opts(alpha, interval, n_boot, children)),
            slate_cascade_dr(
                reward, logging_prefix, target_prefix, q_logged, q_target, self_normalised=sn, **_opts(alpha, interval, n_boot, children)
            ),
        ]
        pi = slate_pseudoinverse(reward, g, self_normalised=sn, **_opts(alpha, interval, n_boot, children))
        out.update({e.estimator: e for e in ests})
        out[pi.estimator.replace("pseudoinverse", "pseudoinverse_factorised")] = OPEEstimate(
            pi.estimator.replace("pseudoinverse", "pseudoinverse_factorised"), pi.value, pi.se, pi.ci_low, pi.ci_high, pi.n
        )
    if pi_weight is not None:
        for sn in (False, True):
            e = slate_pseudoinverse(reward, pi_weight, self_normalised=sn, **_opts(alpha, interval, n_boot, children))
            out[e.estimator] = e
    return out


def _opts(alpha: float, interval: str, n_boot: int, children: Iterator[np.random.Generator | None]) -> dict[str, Any]:
    """One estimator's interval options: the next bootstrap child Generator (None for normal intervals)."""
    return {"alpha": alpha, "interval": interval, "n_boot": n_boot, "rng": next(children)}
