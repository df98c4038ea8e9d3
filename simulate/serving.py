"""Serving: the day's candidate table, the rankers' scores and each request's feed order.

Every session with a feed event requests a feed.  Each request gets
``candidates_per_request`` recent updates; all of a day's requests go to the
ranker in one candidate table (one table per arm), and each request's feed is
its candidates by descending score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.errors import ConfigError, first_line
from dwellrank_logs.protocol import CANDIDATE_COLUMNS, HistoryTables, Ranker, ranker_candidate_columns
from dwellrank_logs.schema import CLIENTS
from simulate.config import WorldConfig
from simulate.rankers import PopularityRanker
from simulate.state import HistoryState
from simulate.tables import labels, timestamps

__all__ = ["Feeds", "resolve_arms", "serve_feeds"]

#: Random permutations of the live pool that candidate windows are cut from.
_N_PERMUTATIONS = 8


@dataclass(frozen=True)
class Feeds:
    """The ranked feeds of one day's requests: R requests, C candidates each, feeds of length L.

    Attributes
    ----------
    requests : ndarray of int, shape (R,)
        Row of each requesting session in the day's sessions.
    member : ndarray of int, shape (R,)
        The requesting member.
    candidates : ndarray of int, shape (R * C,)
        Candidate update ids, C consecutive ones per request.
    n_candidates : int
        C.
    order : ndarray of int, shape (R, L)
        Each feed: indices (0 .. C - 1) into its request's candidates, best first.
    propensity : ndarray of float, shape (R * C,)
        The rankers' step propensity of each candidate, NaN from deterministic rankers.
    """

    requests: np.ndarray
    member: np.ndarray
    candidates: np.ndarray
    n_candidates: int
    order: np.ndarray
    propensity: np.ndarray


def resolve_arms(
    cfg: WorldConfig, ranker: Ranker | Mapping[str, Ranker] | None, member_arm: np.ndarray | None
) -> tuple[list[Ranker], np.ndarray | None, list[str] | None]:
    """The rankers, each member's arm (an index into them) and the arm names; arms are None for one ranker.

    Raises
    ------
    ConfigError
        A mapping without an arm for each member, an arm with no ranker, or a ranker without ``rank``.
    """
    if ranker is None:
        ranker = PopularityRanker()
    if isinstance(ranker, Mapping):
        names = list(ranker)
        if member_arm is None or len(member_arm) != cfg.n_members:
            raise ConfigError("member_arm must give an arm for each of the n_members members when ranker is a mapping")
        lookup = {n: i for i, n in enumerate(names)}
        unknown = sorted(set(np.unique(member_arm)) - set(lookup))
        if unknown:
            raise ConfigError(f"member_arm has arm(s) {unknown} with no ranker; rankers given for {names}")
        return [ranker[n] for n in names], np.array([lookup[a] for a in member_arm]), names
    if not hasattr(ranker, "rank"):
        raise ConfigError(f"ranker must have a rank(candidates, history, rng) method, got {type(ranker).__name__}")
    return [ranker], None, None


def serve_feeds(
    cfg: WorldConfig,
    sess: dict[str, np.ndarray],
    pool: dict[str, np.ndarray],
    day: int,
    history: HistoryState,
    rankers: list[Ranker],
    arm_idx: np.ndarray | None,
    needed: frozenset[str],
    rng: np.random.Generator,
) -> Feeds | None:
    """Candidates for every feed request of ``day``, ranked in one batch per arm.

    Candidates are the updates of the ``pool_days`` days before ``day``; a
    small world may have fewer of them than ``candidates_per_request``.

    Parameters
    ----------
    sess : dict of str to ndarray
        The day's sessions (:func:`simulate.sessions.start_sessions`).
    pool : dict of str to ndarray
        Every update so far (:meth:`simulate.posts.UpdatePool.arrays`).
    history : HistoryState
        Counts of the impressions before ``day``, given to the rankers.
    needed : frozenset of str
        The candidate columns the rankers read; only those are built.

    Returns
    -------
    Feeds or None
        None (and no random draws) when there is no request or no live update.
    """
    req = np.flatnonzero(sess["n_feed"] > 0)
    live = np.flatnonzero((pool["day"] < day) & (pool["day"] >= day - cfg.pool_days))
    r, c = req.size, min(cfg.candidates_per_request, live.size)
    length = min(cfg.feed_length, c)
    if r == 0 or c == 0:
        return None
    cand = _candidates(live, r, c, rng).ravel()
    member = sess["member"][req]
    frame = _candidate_table(cfg, sess, pool, req, member, cand, c, needed)
    scores, propensity = _rank(frame, history.tables(), rankers, arm_idx, member, c, needed, rng)
    order = _feed_order(scores.reshape(r, c))[:, :length]
    return Feeds(requests=req, member=member, candidates=cand, n_candidates=c, order=order, propensity=propensity)


def _candidates(live: np.ndarray, r: int, c: int, rng: np.random.Generator) -> np.ndarray:
    """Candidate update ids, shape (r, c): for each request a window of c consecutive updates.

    Windows are cut from one of a few random permutations of the live updates,
    so each holds distinct updates.
    """
    perms = np.stack([rng.permutation(live) for _ in range(_N_PERMUTATIONS)])
    which = rng.integers(0, _N_PERMUTATIONS, r)
    offs = rng.integers(0, live.size, r)
    # Each permutation continued by its first c ids, so a window that wraps around is a plain slice.
    windows = np.lib.stride_tricks.sliding_window_view(np.concatenate([perms, perms[:, :c]], axis=1), c, axis=1)
    return windows[which, offs]


def _candidate_table(
    cfg: WorldConfig,
    sess: dict[str, np.ndarray],
    pool: dict[str, np.ndarray],
    req: np.ndarray,
    member: np.ndarray,
    cand: np.ndarray,
    c: int,
    needed: frozenset[str],
) -> pl.DataFrame:
    """The candidate table of :data:`~dwellrank_logs.protocol.CANDIDATE_COLUMNS`, only the ``needed`` columns.

    A day's table has ``c`` rows per request: columns no ranker reads are not built.
    """
    columns: dict[str, Callable[[], Any]] = {
        "request_id": lambda: np.repeat(sess["session_id"][req], c),
        "member_id": lambda: np.repeat(member, c).astype(np.int64, copy=False),
        "update_id": lambda: cand.astype(np.int64, copy=False),
        "update_type": lambda: labels(cfg.update_types, pool["utype"][cand]),
        "author_id": lambda: pool["author"][cand].astype(np.int64, copy=False),
        "topic": lambda: pool["topic"][cand].astype(np.int16),
        "created_ts": lambda: timestamps(pool["created_us"][cand]),
        "request_ts": lambda: timestamps(np.repeat(sess["start_us"][req], c)),
        "client": lambda: labels(CLIENTS, np.repeat(sess["client"][req], c)),
    }
    return pl.DataFrame({name: build() for name, build in columns.items() if name in needed})


def _rank(
    frame: pl.DataFrame,
    history: HistoryTables,
    rankers: list[Ranker],
    arm_idx: np.ndarray | None,
    member: np.ndarray,
    c: int,
    needed: frozenset[str],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and propensities (NaN where a ranker gives none) of every candidate row, shape (R * C,) each.

    Each arm's ranker gets the rows of its members' requests in one call.

    Raises
    ------
    ConfigError
        A ranker read a candidate column it did not list in ``candidate_columns``.
    ValueError
        A ranker returned the wrong number of scores.
    """
    r = member.size
    scores = np.empty(r * c)
    propensity = np.full(r * c, np.nan)
    groups = [np.arange(r)] if arm_idx is None else [np.flatnonzero(arm_idx[member] == a) for a in range(len(rankers))]
    for ranker, rows in zip(rankers, groups, strict=True):
        if rows.size == 0:
            continue
        flat_rows = (rows[:, None] * c + np.arange(c)[None, :]).ravel()
        try:
            out = ranker.rank(frame[flat_rows] if rows.size < r else frame, history, rng)
        except pl.exceptions.ColumnNotFoundError as err:
            if len(needed) == len(CANDIDATE_COLUMNS):
                raise
            raise ConfigError(
                f"ranker {type(ranker).__name__} read a candidate column it did not list in candidate_columns "
                f"{ranker_candidate_columns(ranker)!r} ({first_line(err)}); list every column it reads, or set None"
            ) from err
        if out.scores.shape != (flat_rows.size,):
            raise ValueError(f"ranker {type(ranker).__name__} returned {out.scores.shape} scores for {flat_rows.size} candidates")
        scores[flat_rows] = out.scores
        if out.propensity is not None:
            propensity[flat_rows] = out.propensity
    return scores, propensity


def _feed_order(scores: np.ndarray) -> np.ndarray:
    """Per row, candidate indices by descending score; equal scores keep candidate order.

    Invariant: the same order as a stable argsort of ``-scores``.  An unstable
    argsort (several times faster on rows of 50) sorts every row; rows with a
    tie (or NaN) are sorted again stably, so the result never depends on the
    unstable sort's tie handling.
    """
    neg = -scores
    order = np.argsort(neg, axis=1)
    r, c = neg.shape
    srt = neg.ravel()[order + (np.arange(r) * c)[:, None]]  # take_along_axis, without its index broadcasting
    tied = ~(srt[:, 1:] > srt[:, :-1]).all(axis=1)
    if tied.any():
        order[tied] = np.argsort(neg[tied], axis=1, kind="stable")
    return order
