"""Latent intents: distributions over the 10 event types, with their engagement.

With the default seven intents the profiles follow the basic intents of the
DIGMN paper's Figure 2 (networking, job seeking, reading news, checking
notifications, messaging, building a profile, sharing content).  For other
counts they are drawn at random.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dwellrank_logs.schema import CONTENTS, EVENT_TYPES

__all__ = ["DEFAULT_LIFECYCLE", "IntentSet", "make_intents"]

_E = {e: i for i, e in enumerate(EVENT_TYPES)}
# (name, {event: weight}, sessions/day when fully in this intent,
#  delivery content it finds relevant, prior popularity, chance to start a phase)
_DEFAULT = (
    ("networking", {"pymk": 0.42, "view_profile": 0.30, "search": 0.10, "message": 0.08, "follow": 0.06}, 0.9, "pymk", 0.15, 0.20),
    ("job_seeking", {"jobs": 0.52, "search": 0.22, "view_profile": 0.10, "edit_profile": 0.08, "message": 0.04}, 2.4, "jobs", 0.10, 0.40),
    ("news_reading", {"feed": 0.74, "follow": 0.10, "share_content": 0.04, "notification": 0.06}, 1.6, "feed", 0.25, 0.05),
    ("notifications", {"notification": 0.62, "feed": 0.16, "view_profile": 0.08, "message": 0.08}, 1.9, "other", 0.20, 0.02),
    ("messaging", {"message": 0.66, "notification": 0.14, "view_profile": 0.10, "search": 0.04}, 1.4, "message", 0.12, 0.10),
    ("profile_building", {"edit_profile": 0.52, "view_profile": 0.22, "follow": 0.10, "pymk": 0.08}, 0.7, "other", 0.08, 0.13),
    ("content_sharing", {"share_content": 0.44, "feed": 0.32, "follow": 0.10, "notification": 0.08}, 1.1, "feed", 0.10, 0.10),
)
_FLOOR = 0.01

# The life-cycle of each default intent (simulate.lifecycle): mean phase length, days; engagement
# trend over the phase ("flat", "ramp": rising from `floor` x the rate towards it with time
# constant `trend_days`, "fade": falling from the rate towards `floor` x it); and where a phase
# goes next (the transition row, zero on the diagonal, normalised in simulate.lifecycle).
# Order of the transition rows' columns: the order of _DEFAULT.
DEFAULT_LIFECYCLE = (
    # name, mean days, trend, floor, trend_days, next: networking job news notif msg profile sharing
    ("networking", 10.0, "flat", 1.0, 1.0, (0.00, 0.10, 0.35, 0.10, 0.20, 0.10, 0.15)),
    ("job_seeking", 18.0, "ramp", 0.35, 4.0, (0.45, 0.00, 0.15, 0.05, 0.10, 0.25, 0.00)),
    ("news_reading", 30.0, "flat", 1.0, 1.0, (0.20, 0.10, 0.00, 0.25, 0.10, 0.10, 0.25)),
    ("notifications", 9.0, "fade", 0.30, 4.0, (0.20, 0.10, 0.40, 0.00, 0.20, 0.05, 0.05)),
    ("messaging", 7.0, "flat", 1.0, 1.0, (0.30, 0.10, 0.30, 0.20, 0.00, 0.05, 0.05)),
    ("profile_building", 5.0, "flat", 1.0, 1.0, (0.40, 0.30, 0.20, 0.00, 0.00, 0.00, 0.10)),
    ("content_sharing", 8.0, "flat", 1.0, 1.0, (0.30, 0.00, 0.40, 0.15, 0.15, 0.00, 0.00)),
)


@dataclass(frozen=True)
class IntentSet:
    """K latent intents.

    Attributes
    ----------
    names : tuple of str, length K
    profiles : ndarray, shape (K, 10)
        Row k is P(event type | intent k); rows sum to 1.
    session_rate : ndarray, shape (K,)
        Expected sessions per day of a member wholly in intent k.
    relevant_content : ndarray of int, shape (K,)
        Index into ``CONTENTS`` of the delivery content this intent welcomes.
    popularity : ndarray, shape (K,)
        Prior share of the intent in members' base mixtures.
    phase_probs : ndarray, shape (K,)
        Which intent a drift phase (e.g. a job search) moves towards.
    """

    names: tuple[str, ...]
    profiles: np.ndarray
    session_rate: np.ndarray
    relevant_content: np.ndarray
    popularity: np.ndarray
    phase_probs: np.ndarray

    @property
    def k(self) -> int:
        return len(self.names)


def make_intents(n_intents: int, rng: np.random.Generator) -> IntentSet:
    """Build ``n_intents`` intents; the default 7 are fixed, others drawn from ``rng``."""
    if n_intents == len(_DEFAULT):
        profiles = np.full((n_intents, len(EVENT_TYPES)), _FLOOR)
        for k, (_, weights, *_rest) in enumerate(_DEFAULT):
            for e, w in weights.items():
                profiles[k, _E[e]] += w
        profiles /= profiles.sum(axis=1, keepdims=True)
        return IntentSet(
            names=tuple(d[0] for d in _DEFAULT),
            profiles=profiles,
            session_rate=np.array([d[2] for d in _DEFAULT]),
            relevant_content=np.array([CONTENTS.index(d[3]) for d in _DEFAULT]),
            popularity=_norm(np.array([d[4] for d in _DEFAULT])),
            phase_probs=_norm(np.array([d[5] for d in _DEFAULT])),
        )
    profiles = rng.dirichlet(np.full(len(EVENT_TYPES), 0.3), size=n_intents) + _FLOOR
    profiles /= profiles.sum(axis=1, keepdims=True)
    return IntentSet(
        names=tuple(f"intent_{k}" for k in range(n_intents)),
        profiles=profiles,
        session_rate=rng.lognormal(np.log(1.3), 0.4, size=n_intents),
        relevant_content=rng.integers(0, len(CONTENTS), size=n_intents),
        popularity=np.full(n_intents, 1.0 / n_intents),
        phase_probs=_norm(rng.dirichlet(np.ones(n_intents))),
    )


def _norm(x: np.ndarray) -> np.ndarray:
    return x / x.sum()
