"""The day loop: members return, see ranked feeds, respond, and the world reacts.

Read :func:`simulate` top to bottom as the story of one simulated day
(user -> recommender -> response -> state update); the vectorised work lives
in the functions it calls.  All randomness comes from one
``numpy.random.Generator`` created from the seed, drawn in the order of the
story's steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import polars as pl

from dwellrank_logs.checks import is_integer
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.protocol import Ranker, candidate_columns, ranker_t_skip_s
from simulate.config import DAY_US, WorldConfig
from simulate.deliveries import deliver
from simulate.dynamics import MemberState, accumulate_fatigue, return_rate, update_feedback, update_satisfaction
from simulate.impressions import view_feeds
from simulate.intents import IntentSet, make_intents
from simulate.lifecycle import Disengagement, Lifecycle, lifecycle_params, sample_lifecycle
from simulate.posts import UpdatePool, post
from simulate.result import DAILY_TABLES, SimulationResult
from simulate.serving import resolve_arms, serve_feeds
from simulate.sessions import session_durations, start_sessions
from simulate.state import HistoryState
from simulate.summary import summarize, summary_of_days
from simulate.tables import log_tables
from simulate.truth_tables import run_truth, static_truth
from simulate.world import Members, sample_intent_paths, sample_members
from simulate.writer import DayArrays, DayWriter

__all__ = ["DAILY_TABLES", "SimulationResult", "simulate", "summarize"]


def simulate(
    config: WorldConfig | None = None,
    seed: int | np.random.Generator = 0,
    ranker: Ranker | Mapping[str, Ranker] | None = None,
    member_arm: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    sink: Callable[[dict[str, pl.DataFrame]], None] | None = None,
    keep_tables: bool = True,
) -> SimulationResult:
    """Simulate ``config.n_days`` days of a feed and return logs plus ground truth.

    Parameters
    ----------
    config : WorldConfig, optional
        The world; defaults to ``WorldConfig()``.
    seed : int or numpy.random.Generator
        Source of all randomness; the same seed gives identical tables.
    ranker : Ranker or mapping of arm name to Ranker, optional
        Ranks each day's feed requests in one batch.  Default:
        :class:`~simulate.rankers.PopularityRanker`.  With a mapping, pass
        ``member_arm`` too.
    member_arm : ndarray of str, shape (n_members,), optional
        Arm of each member (keys of ``ranker``); written to ``members.arm``.
    progress : callable, optional
        Called with the number of days completed after each day.
    sink : callable, optional
        Called on a worker thread, while the simulation goes on, with pieces
        of the result's tables in order (name -> DataFrame): first the truth
        tables known before day 0 (``"truth/intent_paths"``,
        ``"truth/phases"``, ``"truth/members"``), then for each day its rows
        of ``"impressions"``, ``"sessions"``, ``"events"``, ``"deliveries"``
        (schema types), ``"truth/sessions"`` and ``"truth/impressions"``;
        in the life-cycle world, after the last day and from the calling
        thread, ``"truth/disengagement"`` (and the first piece holds
        ``"truth/transitions"`` too).  An exception it raises stops the simulation.
        :func:`simulate.output.simulate_to` uses it to write Parquet as the
        days come.
    keep_tables : bool
        False (with a ``sink``) drops each day's tables once the sink has
        them: the result then holds only ``members`` and ``updates`` (and the
        updates' truth; the other truth tables went to the sink too).  Memory
        then holds 8 bytes per impression (dwell, for the summary's median)
        instead of the tables.  The summary is complete either way.

    Raises
    ------
    ConfigError
        A seed that is not a non-negative integer, ``keep_tables=False`` without
        a sink, or rankers and arms that do not fit (:func:`simulate.serving.resolve_arms`).
    """
    cfg = config if config is not None else WorldConfig()
    rng, seed_value = _generator(seed)
    if not keep_tables and sink is None:
        raise ConfigError("keep_tables=False needs a sink to hand the daily tables to; they would be lost")
    rankers, arm_idx, arm_names = resolve_arms(cfg, ranker, member_arm)
    # The history's not-skipped counts use the first threshold a ranker asks for, else the world's.
    threshold = next((t for r in rankers if (t := ranker_t_skip_s(r))), cfg.t_skip_s)
    needed = candidate_columns(rankers)

    # The static world: intents, members, their daily intent paths, warm-up posts.
    intents = make_intents(cfg.n_intents, rng)
    members = sample_members(cfg, intents, rng)
    life, disengagement = _life_cycles(cfg, intents, members, rng)
    if life is None:
        paths, phases = sample_intent_paths(cfg, intents, members.base_mixture, rng)
    else:
        paths, phases = life.paths, life.phases
    state = MemberState.initial(cfg)
    pool = UpdatePool()
    for d in range(-cfg.pool_days, 0):
        post(cfg, members, state.feedback, d, pool, rng)
    n_warmup_updates = pool.n_updates
    history = HistoryState(cfg.n_members, cfg.update_types, cfg.n_topics, threshold)
    static = static_truth(members, paths, phases, life)
    next_session = 0

    with DayWriter(cfg, sink, keep_tables) as writer:
        writer.start(static)
        for day in range(cfg.n_days):
            day_us = cfg.start_us + float(day * DAY_US)  # float: the day's times are drawn as offsets in float
            mix = paths[:, day, :]  # (N, K) today's intent mixtures

            # 1. The platform delivers messages: relevant ones lift today's return, irrelevant ones build fatigue.
            deliveries, n_relevant, n_irrelevant = deliver(cfg, intents, mix, day_us, rng)
            accumulate_fatigue(cfg, state, n_irrelevant)

            # 2. Members return: the hazard depends on intent, recent feed satisfaction, deliveries and fatigue.
            #    In the life-cycle world the phase's trend, onboarding and disengagement (satisfaction's hazard) set it too.
            rate = (
                None
                if life is None or disengagement is None
                else life.expected_rate[:, day] * disengagement.step(cfg, state.satisfaction, day, rng)
            )
            n_sess = rng.poisson(return_rate(cfg, members, intents, mix, state, n_relevant, rate))

            # 3. Each session follows one intent drawn from today's mixture and emits events.
            sess, events, sess_intent = start_sessions(cfg, intents, members, mix, n_sess, day_us, next_session, rng)
            next_session += sess["session_id"].size

            # 4. The recommender: sessions with feed events request a feed; recent posts are ranked in one batch per arm.
            updates = pool.arrays()
            feeds = serve_feeds(cfg, sess, updates, day, history, rankers, arm_idx, needed, rng)

            # 5. The response: members scroll their feeds and respond to what they see.
            imp = view_feeds(cfg, members, sess, updates, feeds, rng)

            # 6. Sessions end after their events and their feed time.
            sess["duration_s"] = session_durations(sess, imp, rng)

            # 7. The day's logs go to the writer thread, typed there while the next day runs.
            writer.submit(DayArrays(imp, sess, events, deliveries, sess_intent, day))

            # 8. The world reacts: the rankers' history, satisfaction (skips lower it), authors' feedback (upstream effect).
            _remember(history, imp, updates["topic"])
            update_satisfaction(cfg, state, imp["member"], imp["engaged"])
            update_feedback(cfg, state, imp["author"], imp["upstream_value"])

            # 9. Authors post; new updates join the candidate pool tomorrow.
            post(cfg, members, state.feedback, day, pool, rng)
            if progress is not None:
                progress(day + 1)
        finished = writer.finish()

    # Disengagement spells are known only now; the sink gets them last, from this thread.
    ended = {} if disengagement is None else {"disengagement": disengagement.table(cfg)}
    if sink is not None and ended:
        sink({f"truth/{name}": frame for name, frame in ended.items()})
    day_tables = [f.tables for f in finished if f.tables is not None]
    tables = log_tables(cfg, members, pool, day_tables, arm_names, arm_idx)
    params = None if life is None else life.params
    truth, truth_tables = run_truth(cfg, seed_value, intents, pool, static, day_tables, n_warmup_updates, keep_tables, ended, params)
    result = SimulationResult(config=cfg, seed=seed_value, tables=tables, truth=truth, truth_tables=truth_tables)
    rows = {"members": tables["members"].height, "updates": tables["updates"].height}
    result.summary = summary_of_days(cfg, seed_value, rows, [f.counts for f in finished])
    return result


def _life_cycles(
    cfg: WorldConfig, intents: IntentSet, members: Members, rng: np.random.Generator
) -> tuple[Lifecycle | None, Disengagement | None]:
    """The life-cycle world's phases and disengagement state; (None, None) in the drift world (no draws)."""
    if cfg.intent_dynamics != "lifecycle":
        return None, None
    life = sample_lifecycle(cfg, intents, lifecycle_params(intents, rng), members.base_mixture, members.tenure_days, rng)
    return life, Disengagement.initial(cfg, rng)


def _generator(seed: int | np.random.Generator) -> tuple[np.random.Generator, int]:
    """The run's Generator and the seed to record (-1 for a Generator given by the caller)."""
    if isinstance(seed, np.random.Generator):
        return seed, -1
    if not is_integer(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(int(seed)), int(seed)


def _remember(history: HistoryState, imp: dict[str, np.ndarray], topic: np.ndarray) -> None:
    """Add the day's impressions to the history the rankers see from tomorrow on.

    ``topic`` is the topic of every update so far, indexed by update_id.
    """
    viral = imp["reacted"] | imp["commented"] | imp["shared"]
    history.add(imp["member"], imp["update"], imp["utype"], topic[imp["update"]], imp["author"], imp["dwell_s"], imp["clicked"], viral)
