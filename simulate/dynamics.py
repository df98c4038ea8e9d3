"""Member dynamics: what members carry from one day to the next, and how it moves.

Three per-member quantities link the days: feed satisfaction (the share of
recently seen updates a member engaged with), delivery fatigue (irrelevant
messages, decaying) and, for authors, the feedback their posts earned.  The
day loop in :mod:`simulate.engine` reads them to set each day's return rate
and updates them from each day's impressions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulate.config import WorldConfig
from simulate.intents import IntentSet
from simulate.world import Members

__all__ = ["MemberState", "accumulate_fatigue", "return_rate", "update_feedback", "update_satisfaction"]

#: The most sessions a member is expected to start in one day.
_MAX_SESSIONS_PER_DAY = 24.0


@dataclass
class MemberState:
    """The dynamic state of every member, shape (n_members,) each.

    Attributes
    ----------
    satisfaction : ndarray of float, in [0, 1]
        Exponentially smoothed share of seen updates the member engaged with.
    fatigue : ndarray of float
        Decayed count of irrelevant deliveries.
    feedback : ndarray of float
        Exponentially smoothed upstream value the member's posts earned as an author.
    """

    satisfaction: np.ndarray
    fatigue: np.ndarray
    feedback: np.ndarray

    @classmethod
    def initial(cls, cfg: WorldConfig) -> MemberState:
        """Baseline satisfaction, no fatigue and no feedback.

        The life-cycle world starts members where a platform that has run for a while
        finds them: satisfaction at the level its feeds settle at (``disengage_satisfaction_ref``)
        and fatigue at its expected steady state, ``delivery_rate (1 - delivery_relevant_prob) /
        (1 - fatigue_decay)``.  The drift world starts both at their baselines, so every
        member's return rate falls over the first two weeks (about a fifth at the defaults).
        """
        life = cfg.intent_dynamics == "lifecycle"
        start = cfg.disengage_satisfaction_ref if life else cfg.satisfaction_baseline
        tired = (
            cfg.delivery_rate * (1.0 - cfg.delivery_relevant_prob) / (1.0 - cfg.fatigue_decay) if life and cfg.fatigue_decay < 1 else 0.0
        )
        return cls(
            satisfaction=np.full(cfg.n_members, start),
            fatigue=np.full(cfg.n_members, tired),
            feedback=np.zeros(cfg.n_members),
        )


def accumulate_fatigue(cfg: WorldConfig, state: MemberState, n_irrelevant: np.ndarray) -> None:
    """Decay fatigue by ``fatigue_decay`` and add today's irrelevant deliveries, shape (n_members,)."""
    state.fatigue = cfg.fatigue_decay * state.fatigue + n_irrelevant


def return_rate(
    cfg: WorldConfig,
    members: Members,
    intents: IntentSet,
    mix: np.ndarray,
    state: MemberState,
    n_relevant: np.ndarray,
    intent_rate: np.ndarray | None = None,
) -> np.ndarray:
    """Expected sessions of each member today, shape (n_members,), capped at 24.

    ``activity * (mix @ session_rate) * exp(satisfaction_effect * (satisfaction - baseline))
    * (1 + delivery_boost * n_relevant) * exp(-fatigue_cost * fatigue)``: a member's
    intents set the base rate, a satisfying feed and relevant deliveries lift it,
    fatigue lowers it.

    Parameters
    ----------
    mix : ndarray, shape (n_members, n_intents)
        Today's intent mixture of each member.
    n_relevant : ndarray, shape (n_members,)
        Today's relevant deliveries per member.
    intent_rate : ndarray, shape (n_members,), optional
        Today's intent-implied sessions/day in place of ``mix @ session_rate``: the
        life-cycle world's, with the phases' trends, onboarding and disengagement.
    """
    rate = (
        members.activity
        * (mix @ intents.session_rate if intent_rate is None else intent_rate)
        * np.exp(cfg.satisfaction_effect * (state.satisfaction - cfg.satisfaction_baseline))
        * (1.0 + cfg.delivery_boost * n_relevant)
        * np.exp(-cfg.fatigue_cost * state.fatigue)
    )
    return np.minimum(rate, _MAX_SESSIONS_PER_DAY)


def update_satisfaction(cfg: WorldConfig, state: MemberState, member: np.ndarray, engaged: np.ndarray) -> None:
    """Move the satisfaction of members who saw updates today towards the share they engaged with.

    Parameters
    ----------
    member : ndarray of int, shape (n_impressions,)
        The member of each of today's impressions.
    engaged : ndarray of bool, shape (n_impressions,)
        Whether the member engaged (did not skip by their own decision).
    """
    seen = np.bincount(member, minlength=cfg.n_members)
    liked = np.bincount(member, weights=engaged, minlength=cfg.n_members)
    has = seen > 0
    s = state.satisfaction
    s[has] = (1 - cfg.satisfaction_memory) * s[has] + cfg.satisfaction_memory * liked[has] / seen[has]


def update_feedback(cfg: WorldConfig, state: MemberState, author: np.ndarray, upstream_value: np.ndarray) -> None:
    """Smooth each author's feedback with the upstream value of today's impressions of their posts.

    Parameters
    ----------
    author : ndarray of int, shape (n_impressions,)
        The author of each of today's impressions.
    upstream_value : ndarray of float, shape (n_impressions,)
        Value of the impression's viral actions to its author.
    """
    received = np.bincount(author, weights=upstream_value, minlength=cfg.n_members)
    state.feedback = (1 - cfg.upstream_memory) * state.feedback + cfg.upstream_memory * received
