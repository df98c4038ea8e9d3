"""Intent life-cycles: each member lives a chain of intent phases, each with its own length and trend.

The ``intent_dynamics="lifecycle"`` world (docs/world.md).  A member is always
in one phase of one intent; the phase lasts a gamma-distributed number of days
(shape ``phase_shape`` > 1: a phase that has run long is more likely to end
soon, unlike the memoryless drift world) and is followed by another intent
drawn from its intent's transition row (a job search is often followed by
networking and profile edits).  During a phase the member's mixture moves a
share ``phase_strength`` towards the phase's intent and that share's session
rate follows the intent's trend (a job search ramps up; notification checking
fades).  New members ramp up and settle (:func:`onboarding_multiplier`);
disengagement is a state the feed's satisfaction drives from inside the day
loop (:class:`Disengagement`).

Everything is vectorised over members; the loops run over a member's j-th
phase or over days.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from simulate.config import WorldConfig
from simulate.intents import DEFAULT_LIFECYCLE, IntentSet

__all__ = [
    "TRENDS",
    "Disengagement",
    "Lifecycle",
    "LifecycleParams",
    "lifecycle_params",
    "onboarding_multiplier",
    "sample_lifecycle",
    "trend_multiplier",
]

#: Engagement trends a phase can follow (codes are indices).
TRENDS = ("flat", "ramp", "fade")
#: Days simulated before day 0 so that day 0 finds every member mid-phase, as a real platform would.
_BURN_IN_DAYS = 120


@dataclass(frozen=True)
class LifecycleParams:
    """Per-intent life-cycle parameters, shape (K,) each, and the (K, K) transition matrix."""

    mean_days: np.ndarray
    trend: np.ndarray  # int index into TRENDS
    floor: np.ndarray
    trend_days: np.ndarray
    transitions: np.ndarray  # rows sum to 1, zero diagonal

    def describe(self, k: int) -> dict[str, object]:
        """Intent ``k``'s parameters as ``truth.json`` records them."""
        return {
            "phase_mean_days": float(self.mean_days[k]),
            "trend": TRENDS[int(self.trend[k])],
            "trend_floor": float(self.floor[k]),
            "trend_days": float(self.trend_days[k]),
            "next": self.transitions[k].round(6).tolist(),
        }


def lifecycle_params(intents: IntentSet, rng: np.random.Generator) -> LifecycleParams:
    """The default seven intents' life-cycles (intents.DEFAULT_LIFECYCLE); for other intent sets, drawn from ``rng``."""
    k = intents.k
    if intents.names == tuple(row[0] for row in DEFAULT_LIFECYCLE):
        t = np.array([row[5] for row in DEFAULT_LIFECYCLE], dtype=np.float64)
        return LifecycleParams(
            mean_days=np.array([row[1] for row in DEFAULT_LIFECYCLE]),
            trend=np.array([TRENDS.index(row[2]) for row in DEFAULT_LIFECYCLE]),
            floor=np.array([row[3] for row in DEFAULT_LIFECYCLE]),
            trend_days=np.array([row[4] for row in DEFAULT_LIFECYCLE]),
            transitions=t / t.sum(axis=1, keepdims=True),
        )
    trend = rng.integers(0, len(TRENDS), k)
    t = rng.dirichlet(np.ones(k), size=k) * (1.0 - np.eye(k))
    return LifecycleParams(
        mean_days=rng.lognormal(np.log(10.0), 0.5, k),
        trend=trend,
        floor=np.where(trend == 0, 1.0, rng.uniform(0.3, 0.6, k)),
        trend_days=rng.uniform(2.0, 6.0, k),
        transitions=t / t.sum(axis=1, keepdims=True),
    )


def trend_multiplier(params: LifecycleParams, intent: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The intent's rate multiplier on day ``t`` (0 = first day) of its phase.

    ``ramp``: ``floor + (1 - floor) (1 - exp(-(t + 1) / trend_days))``, rising;
    ``fade``: ``floor + (1 - floor) exp(-t / trend_days)``, falling; ``flat``: 1.
    """
    f, tau, kind = params.floor[intent], params.trend_days[intent], params.trend[intent]
    ramp = f + (1.0 - f) * (1.0 - np.exp(-(t + 1.0) / tau))
    fade = f + (1.0 - f) * np.exp(-t / tau)
    return np.where(kind == 1, ramp, np.where(kind == 2, fade, 1.0))


def onboarding_multiplier(cfg: WorldConfig, age_days: np.ndarray) -> np.ndarray:
    """Rate multiplier of a member ``age_days`` after joining (0 = the day they joined); tends to 1."""
    a = np.asarray(age_days, dtype=np.float64)
    rise = 1.0 - np.exp(-(a + 1.0) / cfg.onboarding_rise_days)
    return cfg.onboarding_floor + (1.0 - cfg.onboarding_floor) * rise * (
        1.0 + cfg.onboarding_boost * np.exp(-a / cfg.onboarding_settle_days)
    )


@dataclass(frozen=True)
class Lifecycle:
    """A run's sampled life-cycles.

    Attributes
    ----------
    paths : ndarray, shape (N, D, K)
        Each member's intent mixture on each day.
    expected_rate : ndarray, shape (N, D)
        Sessions/day a member of activity 1 would start from intents, their trends and
        onboarding, before satisfaction, deliveries, fatigue and disengagement.
    phases : ndarray of int, shape (P, 4)
        member_id, intent, first day, last day (clipped to the simulated days).
    transitions : ndarray of int, shape (Q, 4)
        member_id, from-intent, to-intent, the to-phase's first day (inside the simulated days).
    params : LifecycleParams
        The parameters they were drawn with.
    """

    paths: np.ndarray
    expected_rate: np.ndarray
    phases: np.ndarray
    transitions: np.ndarray
    params: LifecycleParams


def _gamma_days(shape: float, mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whole days ``ceil(X)``, ``X ~ Gamma(shape, mean / shape)``: P(length <= l) = F_gamma(l)."""
    return np.maximum(np.ceil(rng.gamma(shape, mean / shape)), 1.0).astype(np.int64)


def _categorical_rows(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw from each row of ``p`` (n, k)."""
    u = np.asarray(rng.random(p.shape[0]))[:, None]
    return np.minimum((u > np.cumsum(p, axis=1)).sum(axis=1), p.shape[1] - 1)


def sample_lifecycle(
    cfg: WorldConfig,
    intents: IntentSet,
    params: LifecycleParams,
    base_mixture: np.ndarray,
    tenure_days: np.ndarray,
    rng: np.random.Generator,
) -> Lifecycle:
    """Every member's chain of intent phases over ``cfg.n_days`` days, and what it implies.

    The chain starts ``_BURN_IN_DAYS`` before day 0 from an intent drawn from the
    member's base mixture, so day 0 sees the chain's steady state.

    Parameters
    ----------
    base_mixture : ndarray, shape (N, K)
        The members' habitual mixture; a phase moves it a share ``phase_strength`` towards its intent.
    tenure_days : ndarray of int, shape (N,)
        Days since each member joined, on day 0 (the onboarding age).
    """
    n, d, k = base_mixture.shape[0], cfg.n_days, intents.k
    start = np.full(n, -_BURN_IN_DAYS, dtype=np.int64)
    cur = _categorical_rows(base_mixture, rng)
    prev = np.full(n, -1, dtype=np.int64)
    ph: list[np.ndarray] = []
    tr: list[np.ndarray] = []
    idx = np.arange(n)
    while idx.size:  # the j-th phase of every member still short of the last day
        s, c = start[idx], cur[idx]
        e = s + _gamma_days(cfg.phase_shape, params.mean_days[c], rng) - 1
        ph.append(np.stack([idx, c, s, e], axis=1))
        had = prev[idx] >= 0
        tr.append(np.stack([idx[had], prev[idx][had], c[had], s[had]], axis=1))
        prev[idx], cur[idx], start[idx] = c, _categorical_rows(params.transitions[c], rng), e + 1
        idx = idx[start[idx] < d]
    phases = np.concatenate(ph)
    phases = phases[(phases[:, 3] >= 0) & (phases[:, 2] < d)]
    trans = np.concatenate(tr)
    trans = trans[(trans[:, 3] >= 0) & (trans[:, 3] < d)]

    # The phases tile each member's days: expand them to (member, day) cells without a loop.
    first, last = np.maximum(phases[:, 2], 0), np.minimum(phases[:, 3], d - 1)
    span = last - first + 1
    row = np.repeat(np.arange(phases.shape[0]), span)
    day = first[row] + (np.arange(row.size) - np.repeat(np.cumsum(span) - span, span))
    member, intent = phases[row, 0], phases[row, 1]
    t = (day - phases[row, 2]).astype(np.float64)  # days since the phase's true start, before day 0 too
    w = cfg.phase_strength
    paths = np.broadcast_to((1.0 - w) * base_mixture[:, None, :], (n, d, k)).copy()
    paths.reshape(-1, k)[member * d + day, intent] += w
    rate = np.empty((n, d))
    rate.reshape(-1)[member * d + day] = w * intents.session_rate[intent] * trend_multiplier(params, intent, t)
    rate += ((1.0 - w) * base_mixture @ intents.session_rate)[:, None]
    rate *= onboarding_multiplier(cfg, tenure_days[:, None] + np.arange(d)[None, :])
    order = np.lexsort((phases[:, 2], phases[:, 0]))
    phases = np.column_stack([phases[:, :2], first, last])[order]
    return Lifecycle(
        paths=paths, expected_rate=rate, phases=phases, transitions=trans[np.lexsort((trans[:, 3], trans[:, 0]))], params=params
    )


@dataclass
class Disengagement:
    """Members' disengagement spells, advanced once a day from their feed satisfaction.

    A member not disengaged enters a spell with daily hazard
    ``disengage_hazard * exp(disengage_satisfaction_coef * (disengage_satisfaction_ref - satisfaction))``;
    a spell lasts ``ceil(Gamma(phase_shape, disengage_mean_days / phase_shape))`` days, during
    which the member's rate is ``floor + (1 - floor) exp(-t / disengage_decay_days)`` times
    its usual (``t`` days into the spell).  Day 0 starts from the steady state at the reference
    satisfaction.
    """

    since: np.ndarray  # (N,) first day of the current spell, or a large negative number
    until: np.ndarray  # (N,) last day of the current spell
    rows: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def initial(cls, cfg: WorldConfig, rng: np.random.Generator) -> Disengagement:
        """Spells already under way on day 0, as a stationary renewal process would have them."""
        n, m = cfg.n_members, cfg.disengage_mean_days
        p = cfg.disengage_hazard * m / (1.0 + cfg.disengage_hazard * m)  # long-run share disengaged
        on = np.flatnonzero(rng.random(n) < p)
        # The spell covering a fixed day is length-biased: Gamma(shape + 1), with the day uniform inside it.
        length = np.maximum(np.ceil(rng.gamma(cfg.phase_shape + 1.0, m / cfg.phase_shape, on.size)), 1.0).astype(np.int64)
        elapsed = np.floor(rng.random(on.size) * length).astype(np.int64)
        since = np.full(n, np.iinfo(np.int64).min // 2)
        until = np.full(n, -1, dtype=np.int64)
        since[on], until[on] = -elapsed, length - elapsed - 1
        return cls(since=since, until=until, rows=[np.stack([on, np.zeros_like(on), until[on]], axis=1)])

    def step(self, cfg: WorldConfig, satisfaction: np.ndarray, day: int, rng: np.random.Generator) -> np.ndarray:
        """Start today's spells; today's rate multiplier of every member, shape (N,)."""
        free = self.until < day
        hazard = cfg.disengage_hazard * np.exp(cfg.disengage_satisfaction_coef * (cfg.disengage_satisfaction_ref - satisfaction))
        enter = np.flatnonzero(free & (rng.random(free.size) < -np.expm1(-hazard)))
        length = _gamma_days(cfg.phase_shape, np.full(enter.size, cfg.disengage_mean_days), rng)
        self.since[enter], self.until[enter] = day, day + length - 1
        self.rows.append(np.stack([enter, np.full(enter.size, day), self.until[enter]], axis=1))
        on = self.until >= day
        t = np.where(on, day - self.since, 0).astype(np.float64)
        return np.where(on, cfg.disengage_floor + (1.0 - cfg.disengage_floor) * np.exp(-t / cfg.disengage_decay_days), 1.0)

    def table(self, cfg: WorldConfig) -> pl.DataFrame:
        """``truth/disengagement``: member_id, first_day, last_day (clipped to the simulated days), by member."""
        r = np.concatenate(self.rows) if self.rows else np.zeros((0, 3), dtype=np.int64)
        r = r[np.lexsort((r[:, 1], r[:, 0]))]
        return pl.DataFrame(
            {
                "member_id": r[:, 0].astype(np.int64),
                "first_day": r[:, 1].astype(np.int32),
                "last_day": np.minimum(r[:, 2], cfg.n_days - 1).astype(np.int32),
            }
        )
