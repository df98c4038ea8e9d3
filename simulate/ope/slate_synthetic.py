"""Synthetic ranked feeds with a known reward model, to check the slate estimators against an exact truth.

Each request has one of ``n_contexts`` context types; a type fixes the
attractiveness ``q_j`` of its ``n_items`` candidate items.  The logging ranker
is Plackett-Luce on ``0.5 logit(q)`` (or uniform), the target Plackett-Luce on
``2 logit(q)`` (greedier and better); each request shows the first
``n_positions`` (``K``) items of the sampled order.  Rewards per position
(:data:`SLATE_REWARDS`):

* ``independent`` -- ``r_k ~ Bernoulli(q_{a_k})``: the item alone;
* ``position_based`` -- ``r_k ~ Bernoulli(theta_k q_{a_k})``, ``theta_k = (k + 1)^-0.7``;
* ``cascade`` -- the user scans down and clicks the first item that attracts
  her (probability ``q_{a_k}``), then stops: ``r_k`` depends on items ``1..k``;
* ``lookahead`` -- ``r_k ~ Bernoulli(q_{a_k} (1 - q_{a_{k+1}} / 2))``: the next
  item competes, so position ``k`` depends on an item below it (neither
  independence nor the cascade assumption holds; only standard slate IPS is unbiased).

The truth is the target's expected value of ``sum_k r_k`` given each request's
context type: exact from the Plackett-Luce marginals for the first two, by
Monte Carlo over target orders (``truth_samples`` per type, error ~1e-3) for the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dwellrank_logs.checks import is_integer
from dwellrank_logs.errors import ConfigError
from simulate.ope.estimators import OPEEstimate
from simulate.ope.slate import slate_cascade_dr, slate_cascade_ips, slate_independent_ips, slate_pseudoinverse, slate_standard_ips
from simulate.ope.slate_propensity import (
    MAX_PREFIXES,
    expected_under,
    n_prefixes,
    pl_conditionals,
    pl_pair_marginals,
    pl_pair_marginals_mc,
    pl_position_marginals,
    pl_prefix_steps,
    prefix_product,
    pseudoinverse_weight,
    take_logged,
    uniform_ranking_gamma,
)

__all__ = ["SLATE_REWARDS", "estimate_slates", "synthetic_slates"]

SLATE_REWARDS = ("independent", "position_based", "cascade", "lookahead")
_DECAY = 0.7


def _logit(q: np.ndarray) -> np.ndarray:
    return np.log(q / (1 - q))


def _sample_orders(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Plackett-Luce orders by the Gumbel-max trick, shape (n, m) -> (n, m) item indices."""
    return np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=1, kind="stable")


def _expected_rewards(q_slate: np.ndarray, q_next: np.ndarray, reward: str, k: int) -> np.ndarray:
    """Expected reward per position of slates with attractiveness ``q_slate`` (.., K); ``q_next`` is the item after each."""
    if reward == "independent":
        return q_slate
    if reward == "position_based":
        return q_slate * (np.arange(k) + 1.0) ** -_DECAY
    if reward == "cascade":
        survive = np.cumprod(np.concatenate([np.ones((*q_slate.shape[:-1], 1)), 1 - q_slate[..., :-1]], axis=-1), axis=-1)
        return survive * q_slate
    return q_slate * (1 - q_next / 2)


def synthetic_slates(
    n_requests: int,
    n_positions: int,
    rng: np.random.Generator,
    *,
    n_items: int | None = None,
    n_contexts: int = 10,
    logging: str = "pl",
    truth_samples: int = 20_000,
    gamma_samples: int = 0,
) -> dict[str, Any]:
    """Logged feeds of a Plackett-Luce (or uniform) logging ranker, with every propensity the estimators need.

    Parameters
    ----------
    n_requests : int >= 2
    n_positions : int >= 1
        ``K``, the feed length evaluated.
    rng : numpy.random.Generator
    n_items : int >= n_positions, optional
        Candidates per request; ``K + 5`` by default (the target's choice of items then matters).
    n_contexts : int >= 1
        Context types (the exact marginals are computed once per type).
    logging : {'pl', 'uniform'}
        Both get the pseudoinverse weight: uniform from :func:`uniform_ranking_gamma`,
        Plackett-Luce from its exact pair marginals (:func:`pl_pair_marginals`)
        where ``m! / (m - K)!`` is at most ``MAX_PREFIXES``, else from
        ``gamma_samples`` Monte Carlo orders per context type (0: no weight).
    truth_samples : int >= 1
        Target orders per context type for the Monte Carlo truths.
    gamma_samples : int >= 0
        Orders per context type for :func:`pl_pair_marginals_mc` when the exact
        ``Gamma`` is too costly (drawn after everything else, so the other
        outputs do not depend on it).

    Returns
    -------
    dict
        ``item`` (n, K); ``logging_marginal``, ``target_marginal``, ``logging_prefix``,
        ``target_prefix``, ``q_logged``, ``q_target`` (n, K); ``pi_weight`` (n,) or None
        and ``pi_gamma`` (how its ``Gamma`` was had: 'uniform', 'exact', 'monte carlo (N orders)' or None);
        ``reward`` and ``truth``: per reward structure, (n, K) observed rewards and the target's value.
    """
    m = n_positions + 5 if n_items is None else n_items
    for name, v, low in (
        ("n_requests", n_requests, 2),
        ("n_positions", n_positions, 1),
        ("n_contexts", n_contexts, 1),
        ("truth_samples", truth_samples, 1),
        ("gamma_samples", gamma_samples, 0),
    ):
        if not (is_integer(v) and v >= low):
            raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")
    if not (is_integer(m) and m >= n_positions):
        raise ConfigError(f"n_items must be an integer >= n_positions ({n_positions}), got {m!r}")
    if logging not in ("pl", "uniform"):
        raise ConfigError(f"logging must be 'pl' or 'uniform', got {logging!r}")
    k = n_positions
    q_type = rng.beta(1.0, 4.0, size=(n_contexts, m)) * 0.9 + 0.02  # attractiveness, mean ~0.2
    log_type = np.zeros_like(q_type) if logging == "uniform" else 0.5 * _logit(q_type)
    tgt_type = 2.0 * _logit(q_type)
    marg_log, marg_tgt = pl_position_marginals(log_type), pl_position_marginals(tgt_type)  # (C, m, m)

    ctx = rng.integers(0, n_contexts, size=n_requests)
    order = _sample_orders(log_type[ctx], rng)
    item = order[:, :k]
    q = np.take_along_axis(q_type[ctx], item, axis=1)
    q_all = np.concatenate([np.take_along_axis(q_type[ctx], order, axis=1), np.zeros((n_requests, 1))], axis=1)
    q_next = q_all[:, 1 : k + 1]  # the item below each position (0 below the last candidate)
    out: dict[str, Any] = {
        "item": item,
        "context": ctx,
        "logging_marginal": take_logged(marg_log[ctx][:, :, :k], item),
        "target_marginal": take_logged(marg_tgt[ctx][:, :, :k], item),
        "logging_prefix": prefix_product(pl_prefix_steps(log_type[ctx], item)),
        "target_prefix": prefix_product(pl_prefix_steps(tgt_type[ctx], item)),
        "pi_weight": None,
        "pi_gamma": None,
    }
    # DR's model: position-based means theta_k q (exact for that structure, an approximation for the others).
    theta = (np.arange(k) + 1.0) ** -_DECAY
    out["q_logged"] = q * theta
    cond = pl_conditionals(tgt_type[ctx], item)  # (n, K, m): target's next item given the logged prefix
    out["q_target"] = expected_under(cond, np.broadcast_to(q_type[ctx][:, None, :], cond.shape)) * theta
    if logging == "uniform":
        gp = np.linalg.pinv(uniform_ranking_gamma(m, k))
        out["pi_weight"] = pseudoinverse_weight(item, marg_tgt[ctx][:, :, :k], gp)
        out["pi_gamma"] = "uniform"

    # Monte Carlo target orders per type for the truths that have no closed form.
    samples = _sample_orders(np.repeat(tgt_type, truth_samples, axis=0), rng).reshape(n_contexts, truth_samples, m)
    qs = np.take_along_axis(np.repeat(q_type[:, None, :], truth_samples, axis=1), samples, axis=2)
    qs_next = np.concatenate([qs, np.zeros((n_contexts, truth_samples, 1))], axis=2)[:, :, 1 : k + 1]
    out["reward"], out["truth"] = {}, {}
    u = rng.random((n_requests, k))
    for reward in SLATE_REWARDS:
        if reward in ("independent", "position_based"):
            w = np.ones(k) if reward == "independent" else theta
            v_type = ((marg_tgt[:, :, :k] * w).sum(axis=2) * q_type).sum(axis=1)
        else:
            v_type = _expected_rewards(qs[:, :, :k], qs_next, reward, k).sum(axis=2).mean(axis=1)
        out["truth"][reward] = float(v_type[ctx].mean())
        p = _expected_rewards(q, q_next, reward, k)
        # Cascade: one uniform per position scans down; u < q / survive clicks at the first attractive item.
        out["reward"][reward] = (u < p).astype(float) if reward != "cascade" else _cascade_clicks(q, u)
    if logging == "pl":
        # Last, so that the Monte Carlo Gamma's draws leave every other output as without it.
        if n_prefixes(m, k) <= MAX_PREFIXES:
            gamma, out["pi_gamma"] = pl_pair_marginals(log_type, k), "exact"
        elif gamma_samples:
            gamma = pl_pair_marginals_mc(log_type, k, gamma_samples, rng)[0]
            out["pi_gamma"] = f"monte carlo ({gamma_samples} orders)"
        if out["pi_gamma"] is not None:
            out["pi_weight"] = _pl_pseudoinverse_weight(item, ctx, marg_tgt[:, :, :k], gamma)
    return out


def _pl_pseudoinverse_weight(item: np.ndarray, ctx: np.ndarray, target_dist: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """The pseudoinverse weight with one ``Gamma`` per context type (C, mK, mK), computed type by type to bound memory."""
    # Gamma is singular (each item's and each position's indicators sum to known totals); rounding
    # leaves its null directions at ~1e-16 of the largest eigenvalue, cut at 1e-10.
    gp = np.linalg.pinv(gamma, rcond=1e-10, hermitian=True)
    g = np.empty(item.shape[0])
    for c in np.unique(ctx):
        rows = ctx == c
        g[rows] = pseudoinverse_weight(item[rows], target_dist[c][None], gp[c])
    return g


def _cascade_clicks(q: np.ndarray, u: np.ndarray) -> np.ndarray:
    """First position where ``u_k < q_k`` gets the click, the rest none: ``P(r_k = 1) = prod_{l<k}(1 - q_l) q_k``."""
    hit = u < q
    first = np.argmax(hit, axis=1)
    r = np.zeros_like(q)
    any_hit = hit.any(axis=1)
    r[np.flatnonzero(any_hit), first[any_hit]] = 1.0
    return r


def estimate_slates(data: dict[str, Any], reward: str, **interval: Any) -> dict[str, OPEEstimate]:
    """Every slate estimator (plain and self-normalised) on :func:`synthetic_slates`' data for one reward structure.

    ``interval`` goes to each estimator (``interval``, ``n_boot``, ``rng``, ``alpha``).
    The pseudoinverse is included when the data carry its weight (``pi_weight`` not None).
    """
    if reward not in SLATE_REWARDS:
        raise ConfigError(f"reward must be one of {list(SLATE_REWARDS)}, got {reward!r}")
    r = data["reward"][reward]
    out: dict[str, OPEEstimate] = {}
    for sn in (False, True):
        ests = [
            slate_standard_ips(r, data["logging_prefix"][:, -1], data["target_prefix"][:, -1], self_normalised=sn, **interval),
            slate_independent_ips(r, data["logging_marginal"], data["target_marginal"], self_normalised=sn, **interval),
            slate_cascade_ips(r, data["logging_prefix"], data["target_prefix"], self_normalised=sn, **interval),
            slate_cascade_dr(
                r, data["logging_prefix"], data["target_prefix"], data["q_logged"], data["q_target"], self_normalised=sn, **interval
            ),
        ]
        if data["pi_weight"] is not None:
            ests.append(slate_pseudoinverse(r, data["pi_weight"], self_normalised=sn, **interval))
        out.update({e.estimator: e for e in ests})
    return out
