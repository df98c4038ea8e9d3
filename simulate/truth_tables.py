"""The ground truth a run records beside its logs: ``truth.json`` and the ``truth/*.parquet`` tables.

Estimators never read it; tests compare their estimates with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.schema import CONTENTS, EVENT_TYPES
from simulate.config import WorldConfig
from simulate.intents import IntentSet
from simulate.lifecycle import Lifecycle, LifecycleParams
from simulate.posts import UpdatePool
from simulate.world import Members

__all__ = ["day_truth_tables", "run_truth", "static_truth"]


def static_truth(members: Members, paths: np.ndarray, phases: np.ndarray, life: Lifecycle | None = None) -> dict[str, pl.DataFrame]:
    """The truth tables known before day 0: intent paths, phases, members' latent traits (and transitions).

    Parameters
    ----------
    paths : ndarray, shape (n_members, n_days, n_intents)
        Each member's intent mixture on each day.
    phases : ndarray of int, shape (n_phases, 4)
        member_id, intent, first day, last day of each phase.
    life : Lifecycle, optional
        The life-cycle world's (``intent_dynamics="lifecycle"``): adds ``intent_paths.expected_rate``
        and the ``transitions`` table.  The drift world's tables stay as they were.
    """
    n, d, k = paths.shape
    rate = {} if life is None else {"expected_rate": life.expected_rate.ravel()}
    transitions = (
        {}
        if life is None
        else {
            "transitions": pl.DataFrame(
                {
                    "member_id": life.transitions[:, 0],
                    "from_intent": life.transitions[:, 1].astype(np.int32),
                    "to_intent": life.transitions[:, 2].astype(np.int32),
                    "day": life.transitions[:, 3].astype(np.int32),
                }
            )
        }
    )
    return {
        "intent_paths": pl.DataFrame(
            {
                "member_id": np.repeat(np.arange(n), d),
                "day": np.tile(np.arange(d), n).astype(np.int32),
                **{f"intent_{i}": paths[:, :, i].ravel() for i in range(k)},
                **rate,
            }
        ),
        "phases": pl.DataFrame(
            {
                "member_id": phases[:, 0],
                "intent": phases[:, 1].astype(np.int32),
                "first_day": phases[:, 2].astype(np.int32),
                "last_day": phases[:, 3].astype(np.int32),
            }
        ),
        "members": pl.DataFrame(
            {
                "member_id": np.arange(n),
                "activity": members.activity,
                "post_rate": members.post_rate,
                "author_quality": members.author_quality,
                "top_topic": members.topic_interest.argmax(axis=1).astype(np.int32),
                **{f"base_intent_{i}": members.base_mixture[:, i] for i in range(k)},
            }
        ),
        **transitions,
    }


def day_truth_tables(imp: dict[str, np.ndarray], sess: dict[str, np.ndarray], intent: np.ndarray, day: int) -> dict[str, pl.DataFrame]:
    """One day's rows of ``truth/sessions`` (each session's intent) and ``truth/impressions`` (P(engage)).

    ``truth/impressions`` is row-aligned with the day's impressions table.
    """
    return {
        "truth/sessions": pl.DataFrame(
            {"session_id": sess["session_id"], "intent": intent.astype(np.int32), "day": np.full(intent.size, day, dtype=np.int32)}
        ),
        "truth/impressions": pl.DataFrame(
            {"session_id": imp["session_id"], "position": imp["position"], "engaged": imp["engaged"], "p_engage": imp["relevance"]}
        ),
    }


def run_truth(
    cfg: WorldConfig,
    seed: int,
    intents: IntentSet,
    pool: UpdatePool,
    static: dict[str, pl.DataFrame],
    days: list[dict[str, pl.DataFrame]],
    n_warmup_updates: int,
    keep: bool,
    ended: dict[str, pl.DataFrame] | None = None,
    lifecycle: LifecycleParams | None = None,
) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """``truth.json``'s contents and the truth tables of a finished run.

    Parameters
    ----------
    static : dict of str to DataFrame
        :func:`static_truth`.
    days : list of dict of str to DataFrame
        Each day's tables, holding :func:`day_truth_tables`' (unused when ``keep`` is false).
    n_warmup_updates : int
        Updates posted before day 0.
    keep : bool
        False: the daily and static truth tables went to a sink and were dropped;
        only ``updates`` (known at the end) is returned; ``ended`` went to the sink too.
    ended : dict of str to DataFrame, optional
        Further truth tables known only at the end (the life-cycle world's ``disengagement``).
    lifecycle : LifecycleParams, optional
        The life-cycle world's parameters: each intent's entry in ``truth.json`` gets its
        phase length, trend and transition row.
    """
    truth = {
        "seed": seed,
        "t_skip_s": cfg.t_skip_s,
        "update_types": list(cfg.update_types),
        "event_types": list(EVENT_TYPES),
        "intents": [
            {
                "name": name,
                "profile": intents.profiles[i].round(6).tolist(),
                "session_rate": float(intents.session_rate[i]),
                "relevant_content": CONTENTS[int(intents.relevant_content[i])],
                **({} if lifecycle is None else lifecycle.describe(i)),
            }
            for i, name in enumerate(intents.names)
        ],
        "n_warmup_updates": n_warmup_updates,
        "config": cfg.to_dict(),
    }
    u = pool.arrays()
    updates = pl.DataFrame({"update_id": np.arange(u["author"].size), "quality": u["quality"]})
    if not keep:
        return truth, {"updates": updates}
    tables = {
        "intent_paths": static["intent_paths"],
        "phases": static["phases"],
        "sessions": pl.concat([d["truth/sessions"] for d in days], rechunk=False),
        "impressions": pl.concat([d["truth/impressions"] for d in days], rechunk=False),
        "updates": updates,
        "members": static["members"],
        **{name: static[name] for name in static if name not in ("intent_paths", "phases", "members")},
        **(ended or {}),
    }
    return truth, tables
