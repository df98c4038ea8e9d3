"""The static world and the per-impression response model.

Everything here is a pure function of a config, some arrays and a
``numpy.random.Generator``; the day loop in :mod:`simulate.engine` wires them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dwellrank_logs.schema import CLIENTS
from simulate.config import WorldConfig
from simulate.intents import IntentSet

__all__ = [
    "Members",
    "Responses",
    "action_probabilities",
    "engage_probability",
    "respond",
    "sample_intent_paths",
    "sample_members",
]


@dataclass(frozen=True)
class Members:
    """Observed and latent member attributes (index = member_id)."""

    connections: np.ndarray  # (N,) int
    tenure_days: np.ndarray  # (N,) int
    client: np.ndarray  # (N,) int index into CLIENTS
    industry: np.ndarray  # (N,) int
    seniority: np.ndarray  # (N,) int
    is_premium: np.ndarray  # (N,) bool
    topic_interest: np.ndarray  # (N, n_topics), rows sum to 1 (latent)
    type_pref: np.ndarray  # (N, n_types) additive engagement logit (latent)
    activity: np.ndarray  # (N,) multiplier on session rate (latent)
    post_rate: np.ndarray  # (N,) base posts per day as an author (latent)
    author_quality: np.ndarray  # (N,) mean quality of the member's posts (latent)
    author_sensitivity: np.ndarray  # (N,) how much feedback is worth to the author (latent)
    base_mixture: np.ndarray  # (N, K) intent mixture outside drift phases (latent)


def sample_members(cfg: WorldConfig, intents: IntentSet, rng: np.random.Generator) -> Members:
    """Draw ``cfg.n_members`` members."""
    n = cfg.n_members
    activity = rng.lognormal(-0.5 * cfg.base_activity_sigma**2, cfg.base_activity_sigma, n)
    # Active members tend to have larger networks; the correlation is what makes
    # connections a useful macroscopic feature.
    connections = np.round(rng.lognormal(np.log(250) + 0.5 * np.log(activity), 0.9, n)).astype(np.int64) + 1
    alpha = cfg.intent_concentration * intents.k * intents.popularity
    members = Members(
        connections=connections,
        tenure_days=rng.integers(30, 365 * 12, n),
        client=rng.choice(len(CLIENTS), size=n, p=[0.4, 0.35, 0.25]),
        industry=rng.integers(0, 20, n),
        seniority=rng.integers(0, 6, n),
        is_premium=rng.random(n) < 0.1,
        topic_interest=rng.dirichlet(np.full(cfg.n_topics, 0.4), size=n),
        type_pref=rng.normal(0.0, 0.5, size=(n, len(cfg.update_types))),
        activity=activity,
        post_rate=cfg.post_rate_mean * rng.lognormal(-0.5 * cfg.post_rate_sigma**2, cfg.post_rate_sigma, n),
        author_quality=rng.normal(0.0, 0.5, n),
        author_sensitivity=rng.lognormal(0.0, 0.4, n),
        base_mixture=rng.dirichlet(alpha, size=n),
    )
    if cfg.intent_dynamics == "lifecycle":
        # New members: drawn after everything else so the other traits are the drift world's.
        new = rng.random(n) < cfg.onboarding_share
        tenure = np.where(new, rng.integers(0, cfg.onboarding_max_tenure_days, n), members.tenure_days)
        members = dataclasses.replace(members, tenure_days=tenure)
    return members


def sample_intent_paths(
    cfg: WorldConfig, intents: IntentSet, base_mixture: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Daily intent mixtures with drift phases.

    A member enters a phase (say, a job search) at a random day; for its
    duration the mixture moves a share ``phase_strength`` towards that intent,
    then returns to the base mixture.

    Returns
    -------
    paths : ndarray, shape (N, D, K)
        Intent mixture of each member on each day.
    phases : ndarray, shape (P, 4) int
        One row per phase: member_id, intent, first day, last day (inclusive).
    """
    n, d, k = base_mixture.shape[0], cfg.n_days, intents.k
    paths = np.broadcast_to(base_mixture[:, None, :], (n, d, k)).copy()
    n_phases = rng.poisson(cfg.phase_rate * d / 28.0, n)
    member = np.repeat(np.arange(n), n_phases)
    intent = rng.choice(k, size=member.size, p=intents.phase_probs)
    start = rng.integers(-int(cfg.phase_mean_days), d, member.size)
    if cfg.phase_length == "fixed":
        length = np.full(member.size, max(int(round(cfg.phase_mean_days)), 1))  # noqa: RUF046 (a NumPy float rounds to a float)
    else:
        length = rng.geometric(1.0 / cfg.phase_mean_days, member.size)
    end = np.minimum(start + length - 1, d - 1)
    start = np.maximum(start, 0)
    keep = end >= start
    member, intent, start, end = member[keep], intent[keep], start[keep], end[keep]
    days = np.arange(d)
    # Overlapping phases of one member compound; apply them in phase order.
    w = cfg.phase_strength
    order = np.argsort(start, kind="stable")
    rank = _rank_within(member[order])
    for j in range(int(rank.max(initial=-1)) + 1):
        # j-th phase of every member at once.
        sel = order[rank == j]
        m, t = member[sel], intent[sel]
        on = (days[None, :] >= start[sel, None]) & (days[None, :] <= end[sel, None])  # (S, D)
        target = np.zeros((sel.size, k))
        target[np.arange(sel.size), t] = 1.0
        cur = paths[m]  # (S, D, K)
        paths[m] = np.where(on[:, :, None], (1 - w) * cur + w * target[:, None, :], cur)
    phases = np.stack([member, intent, start, end], axis=1).astype(np.int64)
    return paths, phases[np.lexsort((phases[:, 2], phases[:, 0]))]


def _rank_within(sorted_keys_in_order: np.ndarray) -> np.ndarray:
    """0-based occurrence index of each element among equal keys, in array order."""
    keys = sorted_keys_in_order
    idx = np.argsort(keys, kind="stable")
    ks = keys[idx]
    first = np.r_[0, np.flatnonzero(ks[1:] != ks[:-1]) + 1]
    counts = np.diff(np.r_[first, ks.size])
    run_start = np.repeat(first, counts)
    out = np.empty_like(idx)
    out[idx] = np.arange(ks.size) - run_start
    return out


@dataclass(frozen=True)
class Responses:
    """What a member did with each viewed update (arrays of one length)."""

    engaged: np.ndarray  # latent: not skipped by the member's own decision
    dwell_s: np.ndarray
    clicked: np.ndarray
    reacted: np.ndarray
    commented: np.ndarray
    shared: np.ndarray
    click_dwell_s: np.ndarray  # NaN without a click
    downstream_clicks: np.ndarray
    downstream_virals: np.ndarray
    upstream_value: np.ndarray
    relevance: np.ndarray  # latent P(engage)


def engage_probability(
    cfg: WorldConfig,
    members: Members,
    member: np.ndarray,
    utype: np.ndarray,
    topic: np.ndarray,
    quality: np.ndarray,
    position: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """True P(engage) of members with updates at positions, and the affinity behind it.

    ``P(engage) = sigmoid(intercept + a*affinity + b*quality - c*log1p(position))``
    where affinity is the log of the member's relative interest in the topic
    (clipped to [-3, 2]) plus the member's preference for the update type.

    Returns
    -------
    p_engage, affinity : ndarray, shape (n,)
    """
    affinity = np.clip(np.log(cfg.n_topics * members.topic_interest[member, topic] + 1e-9), -3.0, 2.0)
    affinity = affinity + members.type_pref[member, utype]
    logit = (
        cfg.engage_intercept
        + cfg.engage_affinity_coef * affinity
        + cfg.engage_quality_coef * quality
        - cfg.position_decay * np.log1p(position)
    )
    return _sigmoid(logit), affinity


def action_probabilities(cfg: WorldConfig, affinity: np.ndarray, utype: np.ndarray) -> np.ndarray:
    """True P(click, react, comment, share | engaged), shape (4, n)."""
    lift = 0.5 + _sigmoid(affinity)
    return np.stack(
        [np.minimum(np.asarray(p)[utype] * lift, 0.95) for p in (cfg.click_prob, cfg.react_prob, cfg.comment_prob, cfg.share_prob)]
    )


def respond(
    cfg: WorldConfig,
    members: Members,
    member: np.ndarray,
    utype: np.ndarray,
    topic: np.ndarray,
    quality: np.ndarray,
    author: np.ndarray,
    position: np.ndarray,
    rng: np.random.Generator,
) -> Responses:
    """Sample dwell and actions for viewed updates (all arrays of one length).

    The member first decides to skip or engage with :func:`engage_probability`.
    Skipped dwell is log-normal per type and may exceed ``t_skip_s``; engaged
    dwell is ``t_skip_s`` plus a Gamma draw, so click and viral actions, which
    only engaged members take, never happen below ``t_skip_s``.
    """
    n = member.size
    p_engage, affinity = engage_probability(cfg, members, member, utype, topic, quality, position)
    engaged = rng.random(n) < p_engage
    e = np.flatnonzero(engaged)  # draws below are made only for the rows that need them
    s = np.flatnonzero(~engaged)

    dwell = np.empty(n)
    dwell[s] = np.asarray(cfg.skip_dwell_median_s)[utype[s]] * np.exp(cfg.skip_dwell_sigma * rng.standard_normal(s.size))
    eng_scale = np.asarray(cfg.engaged_dwell_scale_s)[utype[e]] * np.exp(0.25 * np.clip(affinity[e], -2, 2))
    dwell[e] = cfg.t_skip_s + rng.gamma(cfg.engaged_dwell_shape, 1.0, e.size) * eng_scale

    acts = np.zeros((4, n), dtype=bool)
    acts[:, e] = rng.random((4, e.size)) < action_probabilities(cfg, affinity[e], utype[e])
    clicked, reacted, commented, shared = acts

    c = np.flatnonzero(clicked)
    click_dwell = np.full(n, np.nan)
    bounce = rng.random(c.size) < np.clip(cfg.click_bounce_prob * (1.5 - _sigmoid(affinity[c])), 0.0, 1.0)
    click_dwell[c] = np.where(
        bounce,
        cfg.click_bounce_median_s * np.exp(0.4 * rng.standard_normal(c.size)),
        np.asarray(cfg.click_dwell_median_s)[utype[c]] * np.exp(0.7 * rng.standard_normal(c.size)),
    )

    v = np.flatnonzero(reacted | commented | shared)
    conn = members.connections[member[v]].astype(np.float64)
    lam = conn * (
        cfg.downstream_share_per_conn * shared[v] * (0.5 + _sigmoid(quality[v]))
        + cfg.downstream_viral_per_conn * (reacted[v].astype(float) + commented[v])
    )
    ds_clicks = np.zeros(n, dtype=np.int32)
    ds_virals = np.zeros(n, dtype=np.int32)
    ds_clicks[v] = rng.poisson(lam)
    ds_virals[v] = rng.binomial(ds_clicks[v], cfg.downstream_viral_ratio)
    upstream = np.zeros(n)
    upstream[v] = members.author_sensitivity[author[v]] * (
        cfg.upstream_react * reacted[v] + cfg.upstream_comment * commented[v] + cfg.upstream_share * shared[v]
    )
    return Responses(
        engaged=engaged,
        dwell_s=dwell,
        clicked=clicked,
        reacted=reacted,
        commented=commented,
        shared=shared,
        click_dwell_s=click_dwell,
        downstream_clicks=ds_clicks,
        downstream_virals=ds_virals,
        upstream_value=upstream,
        relevance=p_engage,
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
