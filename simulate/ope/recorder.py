"""Recording, per logged feed request, what the logging ranker and each target put first (and, for the feed value, in the first K positions)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.protocol import HistoryTables, Ranker, RankerBase, RankOutput, ranker_t_skip_s
from simulate.exploration import _standardise
from simulate.ope.feed import exact_pseudoinverse_feasible, exact_pseudoinverse_weight, pl_marginals_at, top_k_rows
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
    feed_k : int >= 1, optional
        Also record the first ``feed_k`` positions of each feed (:meth:`records`'
        ``feed_*`` keys); needs an :class:`simulate.exploration.ExplorationRanker`
        logging ranker, whose Plackett-Luce logits give the position marginals.
    max_candidates : int, optional
        Candidates per request at most (``WorldConfig.candidates_per_request``):
        where :func:`simulate.ope.feed.exact_pseudoinverse_feasible` holds for it
        and ``feed_k``, each target also gets ``feed_{name}_pi_weight``, the
        pseudoinverse weight with the exact Plackett-Luce ``Gamma``.
    """

    def __init__(
        self,
        logging: Ranker,
        targets: Mapping[str, Ranker],
        update_types: tuple[str, ...],
        rng: np.random.Generator,
        feed_k: int | None = None,
        max_candidates: int | None = None,
    ) -> None:
        if feed_k is not None and not (hasattr(logging, "last_base_scores") and hasattr(logging, "temperature")):
            raise ConfigError(f"feed_k needs an ExplorationRanker logging ranker (its Plackett-Luce logits), got {type(logging).__name__}")
        self.feed_k = feed_k
        self.max_candidates = max_candidates
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
        scores = {name: self._target_scores(t, candidates, history) for name, t in self.targets.items()}
        picks = {name: top_rows(sc, req) for name, sc in scores.items()}
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
        if self.feed_k is not None:
            part.update(self._feed_part(candidates, history, out, scores, req, upd))
        self._parts.append(part)
        return out

    def _feed_part(
        self,
        candidates: pl.DataFrame,
        history: HistoryTables,
        out: RankOutput,
        scores: dict[str, np.ndarray],
        req: np.ndarray,
        upd: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """The first ``feed_k`` positions: logged and target updates, PL steps and marginals, reward-model features."""
        k = int(self.feed_k or 0)
        step = np.asarray(out.propensity)
        logged = top_k_rows(out.scores, req, k)  # (n, K) rows
        targets = {name: top_k_rows(sc, req, k) for name, sc in scores.items()}
        # The logits ExplorationRanker sampled from: its base scores standardised per request, over the temperature.
        base: np.ndarray = self.logging.last_base_scores  # type: ignore[attr-defined]
        logits = _standardise(base, req) / float(self.logging.temperature)  # type: ignore[attr-defined]
        starts = np.r_[0, np.flatnonzero(req[1:] != req[:-1]) + 1]
        counts = np.diff(np.r_[starts, req.size])
        grid = np.full((starts.size, int(counts.max())), -np.inf)  # (n, max candidates), -inf pads absent items
        col = np.arange(req.size) - np.repeat(starts, counts)
        grid[np.repeat(np.arange(starts.size), counts), col] = logits
        _check_steps(grid, col[logged], step[logged])
        # Only cells where some target agrees with the log need the logging marginal (elsewhere the target's weight is 0).
        need = np.zeros(logged.shape, dtype=bool)
        for rows in targets.values():
            need |= rows == logged
        marginal = np.full(logged.shape, np.nan)
        any_need = need.any(axis=1)
        if any_need.any():
            marginal[any_need] = pl_marginals_at(grid[any_need], col[logged[any_need]])
        n = logged.shape[0]
        feats = reward_features(
            candidates[np.concatenate([logged.ravel(), *(r.ravel() for r in targets.values())])], history, self.update_types
        )
        feats = feats.reshape(1 + len(targets), n, k, feats.shape[1])
        part: dict[str, np.ndarray] = {
            "feed_logged_update": upd[logged],
            "feed_logged_step": step[logged],
            "feed_logged_marginal": marginal,
            "feed_logged_x": feats[0],
            "feed_n_candidates": counts,
        }
        for j, (name, rows) in enumerate(targets.items(), start=1):
            part[f"feed_{name}_update"] = upd[rows]
            part[f"feed_{name}_x"] = feats[j]
        # The exact pseudoinverse needs each request's whole Gamma: only for small candidate sets (decided on
        # the configured candidate count, so every day's batch records the same keys).
        if self.max_candidates is not None and exact_pseudoinverse_feasible(self.max_candidates, k):
            pi = exact_pseudoinverse_weight(grid, counts, col[logged], np.stack([col[r] for r in targets.values()]))
            part.update({f"feed_{name}_pi_weight": w for name, w in zip(targets, pi, strict=True)})
        return part

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


def _check_steps(logits: np.ndarray, item: np.ndarray, step: np.ndarray) -> None:
    """Raise unless the logged step propensities are those of Plackett-Luce on ``logits`` (the marginals' source)."""
    rows = np.arange(logits.shape[0])
    rest = logits.copy()
    for k in range(item.shape[1]):
        top = rest.max(axis=1)
        p = np.exp(logits[rows, item[:, k]] - top - np.log(np.exp(rest - top[:, None]).sum(axis=1)))
        if not np.allclose(p, step[:, k], rtol=1e-9, atol=1e-12):
            raise RuntimeError("the logging ranker's step propensities are not Plackett-Luce on its standardised scores")
        rest[rows, item[:, k]] = -np.inf
