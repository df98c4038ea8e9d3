"""Plackett-Luce exploration over a base ranker: the simulator's stochastic logging ranker.

It logs exact step propensities, so its logs support off-policy evaluation
(:mod:`simulate.ope`), and it explores a base ranker's neighbourhood for
warm-up runs that trained rankers learn from.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dwellrank_logs.protocol import (
    HistoryTables,
    Ranker,
    RankerBase,
    RankOutput,
    forward_candidate_columns,
    ranker_description,
    ranker_t_skip_s,
)
from simulate.checks import check_positive_number
from simulate.rankers import plackett_luce

__all__ = ["ExplorationRanker"]


class ExplorationRanker(RankerBase):
    """Plackett-Luce sampling over a base ranker's per-request standardised scores.

    Standardising makes ``temperature`` mean the same for any base ranker:
    1 is moderate exploration, 0.1 nearly the base order.  Logs exact step
    propensities (see :func:`simulate.rankers.plackett_luce`).  Each call
    draws the base ranker's randomness first, then one Gumbel number per
    candidate row.

    Parameters
    ----------
    base : Ranker
    temperature : float > 0

    Attributes
    ----------
    last_base_scores : ndarray, shape (n_rows,), optional
        The base ranker's scores of the latest call (None before the first):
        :class:`simulate.ope.OPERecorder` reuses them when the base is also a target.
    """

    def __init__(self, base: Ranker, temperature: float = 1.0) -> None:
        check_positive_number("temperature", temperature)
        self.base = base
        self.temperature = float(temperature)
        self.t_skip_s = ranker_t_skip_s(base)
        self.candidate_columns = forward_candidate_columns(base)
        self.description = f"explore({ranker_description(base)}, T={temperature:g})"
        self.last_base_scores: np.ndarray | None = None

    def rank(self, candidates: pl.DataFrame, history: HistoryTables, rng: np.random.Generator) -> RankOutput:
        s = np.asarray(self.base.rank(candidates, history, rng).scores, dtype=np.float64)
        self.last_base_scores = s
        req = candidates["request_id"].to_numpy()
        return plackett_luce(_standardise(s, req), req, self.temperature, rng)


def _standardise(s: np.ndarray, request_id: np.ndarray) -> np.ndarray:
    """Per-request z-scores (0 where a request's scores are all equal); rows of a request contiguous.

    numpy's bincount sums in row order, so the result is the same on every run.
    """
    if s.size == 0:
        return s
    grp = np.cumsum(np.r_[0, request_id[1:] != request_id[:-1]])
    count = np.bincount(grp).astype(float)
    mean = np.bincount(grp, weights=s) / count
    dev = s - mean[grp]
    sd = np.sqrt(np.bincount(grp, weights=dev * dev) / count)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = dev / sd[grp]
    return np.where(sd[grp] > 0, z, 0.0)
