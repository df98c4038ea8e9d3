"""Recording, per logged feed request, what the logging ranker and each target put first."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.protocol import HistoryTables, Ranker, RankerBase, RankOutput, ranker_t_skip_s
from simulate.ope.reward_model import reward_features

__all__ = ["OPERecorder", "top_rows"]


def top_rows(scores: np.ndarray, request_id: np.ndarray) -> np.ndarray:
    """Row index of the first-placed candidate of each request (in order of first appearance).

    The simulator sorts by descending score with ties broken by candidate
    order; this picks the same row.  Rows of one request must be contiguous.
    """
    rid = np.asarray(request_id)
    n = rid.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(rid[1:] != rid[:-1]) + 1]
    grp = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, n]))
    order = np.lexsort((np.arange(n), -np.asarray(scores, dtype=np.float64), grp))
    first = np.r_[True, grp[order][1:] != grp[order][:-1]]
    return order[first]


class OPERecorder(RankerBase):
    """Wraps a logging ranker and records, per request, its first update and each target's.

    The targets rank the same candidates with the same history but their own
    random generator, so recording does not change the simulated world.

    Parameters
    ----------
    logging : Ranker
        Must log propensities (e.g. :class:`simulate.exploration.ExplorationRanker`).
    targets : mapping of name to Ranker
        Deterministic rankers to evaluate (their first update is the action).
    update_types : tuple of str
    rng : numpy.random.Generator
        For the targets' ``rank`` calls.
    """

    def __init__(self, logging: Ranker, targets: Mapping[str, Ranker], update_types: tuple[str, ...], rng: np.random.Generator) -> None:
        self.logging = logging
        self.targets = dict(targets)
        self.update_types = update_types
        self.t_skip_s = ranker_t_skip_s(logging)
        self._rng = rng
        self._parts: list[dict[str, np.ndarray]] = []

    def rank(self, candidates: pl.DataFrame, history: HistoryTables, rng: np.random.Generator) -> RankOutput:
        out = self.logging.rank(candidates, history, rng)
        if out.propensity is None:
            raise ConfigError(f"logging ranker {type(self.logging).__name__} must log propensities for off-policy evaluation")
        req = candidates["request_id"].to_numpy()
        upd = candidates["update_id"].to_numpy()
        logged = top_rows(out.scores, req)
        picks = {name: top_rows(self._target_scores(t, candidates, history), req) for name, t in self.targets.items()}
        rows = np.concatenate([logged, *picks.values()])
        feats = reward_features(candidates[rows], history, self.update_types)
        k = logged.size
        part: dict[str, np.ndarray] = {
            "request_id": req[logged],
            "member_id": candidates["member_id"].to_numpy()[logged],
            "logged_update": upd[logged],
            "logged_propensity": out.propensity[logged],
            "logged_x": feats[:k],
        }
        for j, (name, p) in enumerate(picks.items(), start=1):
            part[f"{name}_update"] = upd[p]
            part[f"{name}_x"] = feats[j * k : (j + 1) * k]
        self._parts.append(part)
        return out

    def _target_scores(self, target: Ranker, candidates: pl.DataFrame, history: HistoryTables) -> np.ndarray:
        # A deterministic base ranker that is also a target need not score the same candidates twice.
        base_scores: np.ndarray | None = getattr(self.logging, "last_base_scores", None)
        if target is getattr(self.logging, "base", None) and base_scores is not None:
            return base_scores
        return np.asarray(target.rank(candidates, history, self._rng).scores)

    def records(self) -> dict[str, np.ndarray]:
        """All recorded requests: arrays keyed as in :meth:`rank` (``*_x`` are feature matrices)."""
        if not self._parts:
            return {}
        return {key: np.concatenate([p[key] for p in self._parts]) for key in self._parts[0]}
