"""Ground-truth helpers: the true expected reward of showing an update, and an oracle ranker.

Estimators never import this module; tests and the A/B harness use it to
compare estimates with what the simulated world really does.  Everything is
a closed form of the response model in :mod:`simulate.world`
(:func:`~simulate.world.engage_probability` and
:func:`~simulate.world.action_probabilities`), so the truth has no Monte
Carlo noise.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dwellrank_logs.checks import is_integer
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.protocol import HistoryTables, RankerBase, RankOutput
from simulate.config import WorldConfig
from simulate.intents import make_intents
from simulate.tables import nan_to_null
from simulate.world import Members, action_probabilities, engage_probability, sample_members

__all__ = ["REWARDS", "OracleRanker", "arm_truth", "expected_reward", "feed_truth", "view_probability", "world_members"]

#: Rewards with a closed-form truth: observable ones (click, viral, not_skipped) and the latent ``engaged``.
REWARDS = ("click", "viral", "not_skipped", "engaged")


def world_members(config: WorldConfig, seed: int) -> Members:
    """The latent members of the world that ``simulate(config, seed)`` builds.

    :func:`simulate.engine.simulate` draws the intents and then the members
    first from ``numpy.random.default_rng(seed)``; this replays exactly those
    draws.  Tests check the replay against ``truth_tables['impressions']``.

    Raises
    ------
    ConfigError
        ``seed`` is not a non-negative integer (a Generator cannot be replayed).
    """
    if not is_integer(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer to replay the world, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    intents = make_intents(config.n_intents, rng)
    return sample_members(config, intents, rng)


def expected_reward(
    config: WorldConfig,
    members: Members,
    member: np.ndarray,
    utype: np.ndarray,
    topic: np.ndarray,
    quality: np.ndarray,
    position: np.ndarray | int,
    reward: str = "click",
) -> np.ndarray:
    """True expected reward of showing each update to each member at a position.

    Parameters
    ----------
    config : WorldConfig
    members : Members
        From :func:`world_members`.
    member, utype, topic : ndarray of int, shape (n,)
        Member index, update-type code (index into ``config.update_types``), topic.
    quality : ndarray of float, shape (n,)
        The update's latent quality (``truth_tables['updates'].quality``).
    position : int or ndarray of int
        0-based feed position.
    reward : {'click', 'viral', 'not_skipped', 'engaged'}
        ``click``: P(click); ``viral``: P(react or comment or share);
        ``not_skipped``: P(dwell >= t_skip or an action); ``engaged``: P(engage).

    Returns
    -------
    ndarray of float, shape (n,), probabilities
    """
    if reward not in REWARDS:
        raise ConfigError(f"reward must be one of {list(REWARDS)}, got {reward!r}")
    member = np.asarray(member, dtype=np.int64)
    utype = np.asarray(utype, dtype=np.int64)
    pos = np.broadcast_to(np.asarray(position), member.shape)
    p_engage, affinity = engage_probability(config, members, member, utype, np.asarray(topic), np.asarray(quality, float), pos)
    if reward == "engaged":
        return p_engage
    if reward == "not_skipped":
        from scipy.special import ndtr

        # Engaged dwell is always >= t_skip; skipped dwell is log-normal(median, sigma) per type.
        median = np.asarray(config.skip_dwell_median_s)[utype]
        p_long = 1.0 - ndtr((np.log(config.t_skip_s) - np.log(median)) / config.skip_dwell_sigma)
        return p_engage + (1.0 - p_engage) * p_long
    probs = action_probabilities(config, affinity, utype)  # (4, n): click, react, comment, share | engaged
    if reward == "click":
        return p_engage * probs[0]
    # The three viral draws are independent given engagement.
    return p_engage * (1.0 - np.prod(1.0 - probs[1:], axis=0))


class OracleRanker(RankerBase):
    """Ranks by the true engagement logit, knowing members' latent tastes.

    A ranker no real system could build: it uses each member's true topic
    interest and type preference and each author's mean quality (the update's
    own quality noise is unknown to it).  It is the "clearly better" arm for
    checking that the A/B harness detects a known effect.

    Parameters
    ----------
    config : WorldConfig
    members : Members
        From :func:`world_members` for the same config and seed as the simulation.
    """

    candidate_columns = ("member_id", "update_type", "author_id", "topic")

    def __init__(self, config: WorldConfig, members: Members) -> None:
        self.config = config
        self.members = members
        self._type_code = {t: i for i, t in enumerate(config.update_types)}

    def rank(self, candidates: pl.DataFrame, history: HistoryTables, rng: np.random.Generator) -> RankOutput:
        utype = candidates["update_type"].replace_strict(self._type_code, return_dtype=pl.Int64).to_numpy()
        author = candidates["author_id"].to_numpy()
        p, _ = engage_probability(
            self.config,
            self.members,
            candidates["member_id"].to_numpy(),
            utype,
            candidates["topic"].to_numpy().astype(np.int64),
            self.members.author_quality[author],
            np.zeros(candidates.height, dtype=np.int64),
        )
        return RankOutput(scores=p)


def arm_truth(
    tables: dict[str, pl.DataFrame], truth_impressions: pl.DataFrame, config: WorldConfig, t_skip_s: float, first_day: int
) -> pl.DataFrame:
    """The simulator's truth per member over days ``first_day ..``: expected skips and P(engage).

    ``truth_impressions`` is ``SimulationResult.truth_tables['impressions']``,
    row-aligned with ``tables['impressions']``; impressions count towards the
    day their session started, as in :func:`simulate.ab.member_aggregates`.

    For each impression, ``E[skipped] = (1 - p_engage) * P(skip dwell < t_skip_s)``
    where skipped dwell is log-normal per update type; summed per member and
    divided by its impressions, it is the expectation of the member's
    measured skip rate given the impressions shown.

    Returns
    -------
    DataFrame
        member_id, arm, true_skip_rate, true_engage_rate (mean P(engage) of its impressions).
    """
    from scipy.special import ndtr

    imp = tables["impressions"]
    if truth_impressions.height != imp.height or not (truth_impressions["session_id"] == imp["session_id"]).all():
        raise ValueError("truth impressions are not row-aligned with the impressions table")
    codes = imp["update_type"].replace_strict({t: i for i, t in enumerate(config.update_types)}, return_dtype=pl.Int64).to_numpy()
    median = np.asarray(config.skip_dwell_median_s)[codes]
    p_short = ndtr((np.log(t_skip_s) - np.log(median)) / config.skip_dwell_sigma)
    p_e = truth_impressions["p_engage"].to_numpy()
    members = tables["members"].sort("member_id")
    ids = members["member_id"].to_numpy()
    sess = tables["sessions"].select("session_id", config.day_index("start_ts").alias("day"))
    day = imp.select("session_id").join(sess, on="session_id", how="left", maintain_order="left")["day"].fill_null(-1).to_numpy()
    keep = day >= first_day
    m = np.searchsorted(ids, imp["member_id"].to_numpy()[keep])
    count = np.bincount(m, minlength=ids.size).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        skip = np.bincount(m, weights=((1 - p_e) * p_short)[keep], minlength=ids.size) / count
        engage = np.bincount(m, weights=p_e[keep], minlength=ids.size) / count
    # Members without impressions since first_day have no rate (0 / 0).
    return pl.DataFrame({"member_id": ids, "arm": members["arm"], "true_skip_rate": skip, "true_engage_rate": engage}).with_columns(
        nan_to_null(pl.col("true_skip_rate", "true_engage_rate"))
    )


def view_probability(config: WorldConfig, n_feed: np.ndarray, n_positions: int, feed_length: int | np.ndarray | None = None) -> np.ndarray:
    """P(the member views position k) of each feed request, for positions ``0 .. n_positions - 1``.

    The simulator's scrolling (:func:`simulate.impressions.view_feeds`): a
    session with ``n_feed`` feed events views ``min(1 + Poisson(lam), L)``
    positions, ``lam = max(views_per_feed_event * n_feed - 1, 0)``, drawn
    before and independently of what the feed shows.  So position ``k < L`` is
    viewed with probability ``P(Poisson(lam) >= k)`` (1 at the top), and
    positions ``>= L`` never.

    Parameters
    ----------
    config : WorldConfig
    n_feed : ndarray of int, shape (n,)
        Feed events of each requesting session (>= 1).
    n_positions : int >= 1
        ``K``.
    feed_length : int or ndarray of int, shape (n,), optional
        ``L`` per request (``min(feed_length, candidates)``); ``config.feed_length`` by default.

    Returns
    -------
    ndarray of float, shape (n, K), probabilities
    """
    from scipy.stats import poisson

    if not (is_integer(n_positions) and n_positions >= 1):
        raise ConfigError(f"n_positions must be an integer >= 1, got {n_positions!r}")
    lam = np.maximum(config.views_per_feed_event * np.asarray(n_feed, dtype=np.float64) - 1.0, 0.0)
    k = np.arange(n_positions)
    p = poisson.sf(k[None, :] - 1, lam[:, None])  # P(Poisson >= k) = sf(k - 1); sf(-1) = 1
    length = np.broadcast_to(np.asarray(config.feed_length if feed_length is None else feed_length), lam.shape)
    return np.where(k[None, :] < length[:, None], p, 0.0)


def feed_truth(
    config: WorldConfig,
    members: Members,
    member: np.ndarray,
    utype: np.ndarray,
    topic: np.ndarray,
    quality: np.ndarray,
    n_feed: np.ndarray,
    reward: str = "click",
    feed_length: int | np.ndarray | None = None,
) -> np.ndarray:
    """True expected whole-feed reward of each request: ``sum_k P(view k) E[r | update at k, position k]``.

    Viewing depth is exogenous (:func:`view_probability`) and each impression
    responds independently given its position (:func:`simulate.world.respond`),
    so the expected reward summed over the first ``K`` positions is this sum
    of closed forms (:func:`expected_reward`); an unviewed position counts 0.

    Parameters
    ----------
    config, members
        As in :func:`expected_reward`.
    member : ndarray of int, shape (n,)
    utype, topic : ndarray of int, shape (n, K)
        Update type code and topic of the update at each of the first ``K`` positions.
    quality : ndarray of float, shape (n, K)
    n_feed : ndarray of int, shape (n,)
        Feed events of each requesting session.
    reward : {'click', 'viral', 'not_skipped', 'engaged'}
    feed_length : int or ndarray, optional
        As in :func:`view_probability`.

    Returns
    -------
    ndarray of float, shape (n,), expected reward count over the first K positions
    """
    ut = np.asarray(utype, dtype=np.int64)
    if ut.ndim != 2 or ut.shape[0] != np.asarray(member).shape[0]:
        raise ConfigError(f"utype must have shape (n, K) with n = len(member) = {np.asarray(member).shape[0]}, got {ut.shape}")
    n, k = ut.shape
    pos = np.broadcast_to(np.arange(k), (n, k))
    mem = np.broadcast_to(np.asarray(member, dtype=np.int64)[:, None], (n, k))
    per = expected_reward(
        config, members, mem.ravel(), ut.ravel(), np.asarray(topic).ravel(), np.asarray(quality, float).ravel(), pos.ravel(), reward
    ).reshape(n, k)
    return (view_probability(config, n_feed, k, feed_length) * per).sum(axis=1)
