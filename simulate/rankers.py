"""The simulator's built-in rankers: random, popularity, and Plackett-Luce exploration.

They answer :class:`dwellrank_logs.protocol.Ranker`, the protocol every ranker
the simulator calls implements.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dwellrank_logs.protocol import HistoryTables, RankerBase, RankOutput

__all__ = [
    "PopularityRanker",
    "RandomRanker",
    "plackett_luce",
]


class RandomRanker(RankerBase):
    """Uniformly random order; logs exact propensities (for off-policy evaluation)."""

    candidate_columns: tuple[str, ...] | None = ("request_id",)

    def rank(self, candidates: pl.DataFrame, history: HistoryTables, rng: np.random.Generator) -> RankOutput:
        return plackett_luce(np.zeros(candidates.height), candidates["request_id"].to_numpy(), 1.0, rng)


class PopularityRanker(RankerBase):
    """Orders by past click + viral counts per impression (smoothed), newest first on ties."""

    candidate_columns: tuple[str, ...] | None = ("update_id", "created_ts")

    def __init__(self, prior_impressions: float = 20.0) -> None:
        self.prior_impressions = prior_impressions

    def rank(self, candidates: pl.DataFrame, history: HistoryTables, rng: np.random.Generator) -> RankOutput:
        uid = candidates["update_id"].to_numpy()
        past = history.updates
        # Dense lookup by update_id (ids are small non-negative integers) instead of a join.
        size = int(max(uid.max(initial=-1), past["update_id"].max() if past.height else -1)) + 1
        engaged = np.zeros(size)
        shown = np.zeros(size)
        ids = past["update_id"].to_numpy()
        engaged[ids] = past["n_clicks"].to_numpy() + past["n_virals"].to_numpy().astype(np.float64)
        shown[ids] = past["n_impressions"].to_numpy()
        score = ((engaged + 1.0) / (shown + self.prior_impressions))[uid]  # per update, then gathered
        # Whole seconds since the epoch from the physical microseconds (cheaper than .dt.epoch on 10^6 rows).
        created = candidates["created_ts"]
        if not isinstance(created.dtype, pl.Datetime) or created.dtype.time_unit != "us":
            created = created.dt.cast_time_unit("us")
        age_tiebreak = (created.to_physical().to_numpy() // 1_000_000) * 1e-12
        return RankOutput(scores=score + age_tiebreak)


def plackett_luce(scores: np.ndarray, request_id: np.ndarray, temperature: float, rng: np.random.Generator) -> RankOutput:
    """Sample one Plackett-Luce order per request with the Gumbel-max trick.

    Rows of one request must be contiguous.  Returns scores that sort into the
    sampled order and each row's step propensity
    ``exp(s_i/T) / sum_{j not yet placed} exp(s_j/T)``, computed in log space
    so that tiny temperatures do not underflow.
    """
    logits = np.asarray(scores, dtype=np.float64) / temperature
    n = logits.size
    perturbed = logits + rng.gumbel(size=n)
    if n == 0:
        return RankOutput(scores=perturbed, propensity=np.zeros(0))
    starts = _starts(np.asarray(request_id))
    counts = np.diff(np.r_[starts, n])
    # Pad requests into a (G, max_count) grid; padding is -inf, neutral for logaddexp.
    width = int(counts.max())
    col = np.arange(n) - np.repeat(starts, counts)
    grp = np.repeat(np.arange(starts.size), counts)
    pert = np.full((starts.size, width), -np.inf)
    pert[grp, col] = perturbed
    lg = np.full((starts.size, width), -np.inf)
    lg[grp, col] = logits
    order = np.argsort(-pert, axis=1, kind="stable")  # (G, W) sampled order; padding last
    lg_sorted = np.take_along_axis(lg, order, axis=1)
    # log of the total weight still unplaced at each step: reverse cumulative logaddexp.
    with np.errstate(invalid="ignore"):
        remaining = np.logaddexp.accumulate(lg_sorted[:, ::-1], axis=1)[:, ::-1]
    step = np.exp(lg_sorted - remaining)  # (G, W)
    prop_grid = np.empty_like(step)
    np.put_along_axis(prop_grid, order, step, axis=1)
    return RankOutput(scores=perturbed, propensity=prop_grid[grp, col])


def _starts(keys: np.ndarray) -> np.ndarray:
    return np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
