"""The day loop: members return, see ranked feeds, respond, and the world reacts.

Read :func:`simulate` top to bottom as the story of one simulated day; the
vectorised work lives in the functions it calls.  All randomness comes from
one ``numpy.random.Generator`` created from the seed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.errors import ConfigError, first_line
from dwellrank_logs.protocol import CANDIDATE_COLUMNS, Ranker, candidate_columns, ranker_candidate_columns, ranker_t_skip_s
from dwellrank_logs.schema import CHANNELS, CLIENTS, CONTENTS, EVENT_TYPES, TABLE_NAMES, TABLES, TIME_UNIT, TIME_ZONE
from simulate.config import WorldConfig
from simulate.intents import IntentSet, make_intents
from simulate.rankers import PopularityRanker
from simulate.state import HistoryState
from simulate.world import Members, respond, sample_intent_paths, sample_members

__all__ = ["DAILY_TABLES", "SimulationResult", "simulate", "summarize"]

#: The log tables a simulation produces day by day (members and updates exist whole at the end).
DAILY_TABLES = ("impressions", "sessions", "events", "deliveries")

_DAY_S = 86_400.0
_US = 1_000_000
# Share of sessions starting in each hour of the day (UTC): morning, lunch and evening peaks.
_DIURNAL = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 3.5, 3.2, 2.6, 2.6, 3.0, 2.8, 2.4, 2.3, 2.4, 2.8, 3.2, 3.6, 3.8, 3.2, 2.4, 1.6])
_DIURNAL = _DIURNAL / _DIURNAL.sum()


@dataclass
class SimulationResult:
    """The six log tables, the ground truth and a summary of one run.

    A run with ``keep_tables=False`` holds only ``members`` and ``updates``
    (and the updates' truth): its other tables went to a sink.
    """

    config: WorldConfig
    seed: int
    tables: dict[str, pl.DataFrame]
    truth: dict[str, Any]
    truth_tables: dict[str, pl.DataFrame]
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Pool:
    """All updates created so far (index = update_id)."""

    author: list[np.ndarray] = field(default_factory=list)
    utype: list[np.ndarray] = field(default_factory=list)
    topic: list[np.ndarray] = field(default_factory=list)
    quality: list[np.ndarray] = field(default_factory=list)
    created_us: list[np.ndarray] = field(default_factory=list)
    day: list[np.ndarray] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(getattr(self, k)) for k in ("author", "utype", "topic", "quality", "created_us", "day")}


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
        (schema types), ``"truth/sessions"`` and ``"truth/impressions"``.
        An exception it raises stops the simulation.
        :func:`simulate.output.simulate_to` uses it to write Parquet as the
        days come.
    keep_tables : bool
        False (with a ``sink``) drops each day's tables once the sink has
        them: the result then holds only ``members`` and ``updates`` (and the
        updates' truth; the other truth tables went to the sink too).  Memory
        then holds 8 bytes per impression (dwell, for the summary's median)
        instead of the tables.  The summary is complete either way.
    """
    cfg = config if config is not None else WorldConfig()
    if isinstance(seed, np.random.Generator):
        rng, seed_value = seed, -1
    else:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        rng, seed_value = np.random.default_rng(int(seed)), int(seed)
    if not keep_tables and sink is None:
        raise ConfigError("keep_tables=False needs a sink to hand the daily tables to; they would be lost")
    rankers, arm_idx, arm_names = _arms(cfg, ranker, member_arm)
    threshold = next((t for r in rankers if (t := ranker_t_skip_s(r))), cfg.t_skip_s)
    needed = candidate_columns(rankers)

    # The static world: intents, members, their intent paths, warm-up posts.
    intents = make_intents(cfg.n_intents, rng)
    members = sample_members(cfg, intents, rng)
    paths, phases = sample_intent_paths(cfg, intents, members.base_mixture, rng)
    start_us = int(cfg.start.timestamp()) * _US
    pool = _Pool()
    feedback = np.zeros(cfg.n_members)
    for d in range(-cfg.pool_days, 0):
        _post(cfg, members, feedback, d, start_us, pool, rng)
    n_updates = sum(a.size for a in pool.author)

    history = HistoryState(cfg.n_members, cfg.update_types, cfg.n_topics, threshold)
    satisfaction = np.full(cfg.n_members, cfg.satisfaction_baseline)
    fatigue = np.zeros(cfg.n_members)
    days: list[Future[_Day]] = []
    next_session = 0

    static_truth = _static_truth(members, paths, phases)
    stopped = threading.Event()
    to_sink = _guarded(sink, stopped) if sink is not None else None
    # The day's log tables are typed (and handed to the sink) on a second thread while the next day runs.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dwellrank-day-tables") as logger:
        behind = [logger.submit(to_sink, {f"truth/{n}": f for n, f in static_truth.items()})] if to_sink is not None else []
        try:
            for day in range(cfg.n_days):
                day_us = start_us + day * _DAY_S * _US
                mix = paths[:, day, :]  # (N, K)

                # 1. The platform delivers messages; relevant ones lift today's return, irrelevant ones build fatigue.
                deliveries, n_relevant, n_irrelevant = _deliver(cfg, intents, mix, day_us, rng)
                fatigue = cfg.fatigue_decay * fatigue + n_irrelevant

                # 2. Members return: the hazard depends on intent, recent feed satisfaction and deliveries.
                rate = (
                    members.activity
                    * (mix @ intents.session_rate)
                    * np.exp(cfg.satisfaction_effect * (satisfaction - cfg.satisfaction_baseline))
                    * (1.0 + cfg.delivery_boost * n_relevant)
                    * np.exp(-cfg.fatigue_cost * fatigue)
                )
                n_sess = rng.poisson(np.minimum(rate, 24.0))

                # 3. Each session follows one intent drawn from today's mixture and emits events.
                sess, events, sess_intent = _sessions(cfg, intents, members, mix, n_sess, day_us, next_session, rng)
                next_session += sess["session_id"].size

                # 4. Sessions with feed events request a feed: candidates from recent posts, ranked in one batch per arm.
                pool_arrays = {k: np.concatenate(v) for k, v in pool.__dict__.items()}
                imp = _serve_feeds(cfg, members, sess, events, pool_arrays, day, history, rankers, arm_idx, needed, rng)

                # 5. Session durations cover their events and their feed time.
                feed_end = np.zeros(sess["session_id"].size)
                if imp["member"].size:
                    np.maximum.at(feed_end, imp["session_row"], (imp["ts_us"] - sess["start_us"][imp["session_row"]]) / _US + imp["time_s"])
                sess["duration_s"] = np.maximum(sess["events_span_s"], feed_end) + rng.exponential(20.0, feed_end.size)
                arrays = _DayArrays(imp, sess, events, deliveries, sess_intent, day)
                days.append(logger.submit(_finish_day, cfg, arrays, to_sink, keep_tables))
                # At most one earlier day still in the worker: memory stays bounded when the sink is slow,
                # and a failed sink stops the run within a day.
                for f in behind:
                    f.result()
                behind = [days[-1]]

                # 5. The world reacts: counters, satisfaction (skips lower it), authors' feedback (upstream effect).
                viral = imp["reacted"] | imp["commented"] | imp["shared"]
                history.add(
                    imp["member"],
                    imp["update"],
                    imp["utype"],
                    pool_arrays["topic"][imp["update"]],
                    imp["author"],
                    imp["dwell_s"],
                    imp["clicked"],
                    viral,
                )
                seen = np.bincount(imp["member"], minlength=cfg.n_members)
                liked = np.bincount(imp["member"], weights=imp["engaged"], minlength=cfg.n_members)
                has = seen > 0
                satisfaction[has] = (1 - cfg.satisfaction_memory) * satisfaction[has] + cfg.satisfaction_memory * liked[has] / seen[has]
                received = np.bincount(imp["author"], weights=imp["upstream_value"], minlength=cfg.n_members)
                feedback = (1 - cfg.upstream_memory) * feedback + cfg.upstream_memory * received

                # 6. Authors post; new updates join the candidate pool tomorrow.
                _post(cfg, members, feedback, day, start_us, pool, rng)
                if progress is not None:
                    progress(day + 1)
            for f in behind:
                f.result()
        except BaseException:
            stopped.set()  # queued days skip the sink; those not started are dropped
            for f in days:
                f.cancel()
            raise

    finished = [d.result() for d in days]
    day_tables = [f.tables for f in finished if f.tables is not None]
    tables = _tables(cfg, members, pool, day_tables, arm_names, arm_idx)
    truth, truth_tables = _truth(cfg, seed_value, intents, pool, static_truth, day_tables, n_updates, keep_tables)
    result = SimulationResult(config=cfg, seed=seed_value, tables=tables, truth=truth, truth_tables=truth_tables)
    result.summary = _summary(cfg, seed_value, {"members": tables["members"].height, "updates": tables["updates"].height}, finished)
    return result


def _arms(
    cfg: WorldConfig, ranker: Ranker | Mapping[str, Ranker] | None, member_arm: np.ndarray | None
) -> tuple[list[Ranker], np.ndarray | None, list[str] | None]:
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


def _post(cfg: WorldConfig, members: Members, feedback: np.ndarray, day: int, start_us: int, pool: _Pool, rng: np.random.Generator) -> None:
    rate = members.post_rate * (1.0 + cfg.upstream_gain * np.log1p(feedback))
    n = rng.poisson(rate)
    author = np.repeat(np.arange(cfg.n_members), n)
    m = author.size
    own_topic = members.topic_interest[author].argmax(axis=1) if m else np.zeros(0, dtype=np.int64)
    topic = np.where(rng.random(m) < 0.7, own_topic, rng.integers(0, cfg.n_topics, m))
    pool.author.append(author)
    pool.utype.append(rng.choice(len(cfg.update_types), size=m, p=cfg.update_type_probs))
    pool.topic.append(topic)
    pool.quality.append(members.author_quality[author] + rng.normal(0.0, 0.5, m))
    pool.created_us.append(start_us + day * int(_DAY_S) * _US + rng.integers(0, int(_DAY_S) * _US, m))
    pool.day.append(np.full(m, day))


def _deliver(
    cfg: WorldConfig, intents: IntentSet, mix: np.ndarray, day_us: float, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    n = rng.poisson(cfg.delivery_rate, mix.shape[0])
    member = np.repeat(np.arange(mix.shape[0]), n)
    wanted = intents.relevant_content[mix.argmax(axis=1)][member]
    relevant = rng.random(member.size) < cfg.delivery_relevant_prob
    # Irrelevant content: any other content type, uniformly.
    other = (wanted + rng.integers(1, len(CONTENTS), member.size)) % len(CONTENTS)
    content = np.where(relevant, wanted, other)
    channel = rng.choice(len(CHANNELS), size=member.size, p=[0.5, 0.15, 0.35])
    ts = day_us + rng.integers(0, int(_DAY_S * _US), member.size)
    order = np.lexsort((member, ts))  # the deliveries table's order: by time, then member
    n_rel = np.bincount(member, weights=relevant, minlength=mix.shape[0])
    n_irr = np.bincount(member, weights=~relevant, minlength=mix.shape[0])
    return {"member": member[order], "ts_us": ts[order], "channel": channel[order], "content": content[order]}, n_rel, n_irr


def _categorical(table: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw from row ``rows[i]`` of a (g, k) probability table, for each i.

    The cumulative sums are taken once per table row and compared one category
    at a time: the same floats and comparisons as summing each gathered row,
    without the (n, k) temporaries (events draw from a handful of intent rows).
    """
    cdf = np.ascontiguousarray(np.cumsum(table, axis=1).T)  # (k, g)
    u = rng.random(rows.size) * cdf[-1][rows]
    draw = np.zeros(rows.size, dtype=np.int64)
    for column in cdf:  # a loop over the k categories, not over rows
        draw += u >= column[rows]
    return np.minimum(draw, table.shape[1] - 1)


def _sessions(
    cfg: WorldConfig,
    intents: IntentSet,
    members: Members,
    mix: np.ndarray,
    n_sess: np.ndarray,
    day_us: float,
    first_id: int,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    member = np.repeat(np.arange(mix.shape[0]), n_sess)
    s = member.size
    hour = rng.choice(24, size=s, p=_DIURNAL)
    start = (day_us + (hour * 3600 + rng.random(s) * 3600) * _US).astype(np.int64)
    order = np.lexsort((member, start))
    member, start = member[order], start[order]
    z = _categorical(mix, member, rng)
    client = np.where(rng.random(s) < 0.8, members.client[member], rng.integers(0, len(CLIENTS), s))
    n_ev = 1 + rng.poisson(cfg.events_per_session_mean - 1.0, s) if cfg.events_per_session_mean > 1 else np.ones(s, np.int64)
    ev_sess = np.repeat(np.arange(s), n_ev)
    ev_type = _categorical(intents.profiles, z[ev_sess], rng)
    gaps = rng.exponential(30.0, ev_sess.size)
    # Offsets within each session: exclusive cumulative sum of gaps.
    csum = np.cumsum(gaps)
    first = np.r_[0, np.cumsum(n_ev)[:-1]]
    base = np.repeat(csum[first] - gaps[first], n_ev)
    offset = csum - gaps - base
    span = np.zeros(s)
    np.maximum.at(span, ev_sess, offset)
    session_id = first_id + np.arange(s, dtype=np.int64)
    sess = {
        "session_id": session_id,
        "member": member,
        "start_us": start,
        "client": client,
        "events_span_s": span,
        "n_feed": np.bincount(ev_sess, weights=ev_type == 0, minlength=s).astype(np.int64),
        "first_feed_s": _first_feed_offset(ev_sess, ev_type, offset, s),
    }
    events = {
        "session_id": session_id[ev_sess],
        "member": member[ev_sess],
        "ts_us": start[ev_sess] + (offset * _US).astype(np.int64),
        "event_type": ev_type,
    }
    return sess, events, z


def _first_feed_offset(ev_sess: np.ndarray, ev_type: np.ndarray, offset: np.ndarray, s: int) -> np.ndarray:
    out = np.full(s, np.inf)
    feed = ev_type == 0
    np.minimum.at(out, ev_sess[feed], offset[feed])
    return np.where(np.isfinite(out), out, 0.0)


def _serve_feeds(
    cfg: WorldConfig,
    members: Members,
    sess: dict[str, np.ndarray],
    events: dict[str, np.ndarray],
    pool: dict[str, np.ndarray],
    day: int,
    history: HistoryState,
    rankers: list[Ranker],
    arm_idx: np.ndarray | None,
    needed: frozenset[str],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    req = np.flatnonzero(sess["n_feed"] > 0)  # session rows with a feed request
    live = np.flatnonzero((pool["day"] < day) & (pool["day"] >= day - cfg.pool_days))
    # A small world may have fewer live posts than candidates_per_request.
    r, c = req.size, min(cfg.candidates_per_request, live.size)
    length = min(cfg.feed_length, c)
    if r == 0 or c == 0:
        return _empty_impressions()
    # Candidate generation: each request takes a window of c consecutive updates
    # from one of a few random permutations of the pool; windows hold distinct updates.
    n_perm = 8
    perms = np.stack([rng.permutation(live) for _ in range(n_perm)])
    which = rng.integers(0, n_perm, r)
    offs = rng.integers(0, live.size, r)
    # Each permutation continued by its first c ids, so a window that wraps around is a plain slice.
    windows = np.lib.stride_tricks.sliding_window_view(np.concatenate([perms, perms[:, :c]], axis=1), c, axis=1)
    cand = windows[which, offs]  # (R, C) update ids
    member = sess["member"][req]
    cand_flat = cand.ravel()
    columns: dict[str, Callable[[], Any]] = {
        "request_id": lambda: np.repeat(sess["session_id"][req], c),
        "member_id": lambda: np.repeat(member, c).astype(np.int64, copy=False),
        "update_id": lambda: cand_flat.astype(np.int64, copy=False),
        "update_type": lambda: _labels(cfg.update_types, pool["utype"][cand_flat]),
        "author_id": lambda: pool["author"][cand_flat].astype(np.int64, copy=False),
        "topic": lambda: pool["topic"][cand_flat].astype(np.int16),
        "created_ts": lambda: _ts(pool["created_us"][cand_flat]),
        "request_ts": lambda: _ts(np.repeat(sess["start_us"][req], c)),
        "client": lambda: _labels(CLIENTS, np.repeat(sess["client"][req], c)),
    }
    frame = pl.DataFrame({name: build() for name, build in columns.items() if name in needed})
    tables = history.tables()
    scores = np.empty(r * c)
    propensity = np.full(r * c, np.nan)
    groups = [np.arange(r)] if arm_idx is None else [np.flatnonzero(arm_idx[member] == a) for a in range(len(rankers))]
    for ranker, rows in zip(rankers, groups):
        if rows.size == 0:
            continue
        flat_rows = (rows[:, None] * c + np.arange(c)[None, :]).ravel()
        try:
            out = ranker.rank(frame[flat_rows] if rows.size < r else frame, tables, rng)
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
    order = _feed_order(scores.reshape(r, c))[:, :length]  # (R, L)
    n_view = np.minimum(1 + rng.poisson(np.maximum(cfg.views_per_feed_event * sess["n_feed"][req] - 1, 0)), length)
    pos = np.arange(length)
    viewed = pos[None, :] < n_view[:, None]  # (R, L)
    req_rows, pos_v = np.nonzero(viewed)
    flat_idx = req_rows * c + order[req_rows, pos_v]
    upd = cand_flat[flat_idx]
    mem = member[req_rows]
    utype = pool["utype"][upd]
    author = pool["author"][upd]
    res = respond(cfg, members, mem, utype, pool["topic"][upd], pool["quality"][upd], author, pos_v, rng)
    # Impressions follow one another: each starts when the previous one (and its click-through) ends.
    time_s = res.dwell_s + np.nan_to_num(res.click_dwell_s)
    csum = np.cumsum(time_s)
    starts = np.r_[0, np.cumsum(n_view)[:-1]]
    before = csum - time_s - np.repeat(csum[starts] - time_s[starts], n_view)
    s_row = req[req_rows]
    ts_us = sess["start_us"][s_row] + ((sess["first_feed_s"][s_row] + before) * _US).astype(np.int64)
    return {
        "member": mem,
        "update": upd,
        "utype": utype,
        "author": author,
        "session_row": s_row,
        "session_id": sess["session_id"][s_row],
        "ts_us": ts_us,
        "position": pos_v.astype(np.int32),
        "dwell_s": res.dwell_s,
        "clicked": res.clicked,
        "reacted": res.reacted,
        "commented": res.commented,
        "shared": res.shared,
        "click_dwell_s": res.click_dwell_s,
        "downstream_clicks": res.downstream_clicks,
        "downstream_virals": res.downstream_virals,
        "upstream_value": res.upstream_value,
        "propensity": propensity[flat_idx],
        "engaged": res.engaged,
        "relevance": res.relevance,
        "time_s": time_s,
    }


def _feed_order(scores: np.ndarray) -> np.ndarray:
    """Per row, candidate indices by descending score; equal scores keep candidate order.

    The same order as a stable argsort of ``-scores``, at the cost of an unstable
    one (several times faster on rows of 50): rows with a tie (or NaN) are
    re-sorted stably, so the result never depends on the sort's tie handling.
    """
    neg = -scores
    order = np.argsort(neg, axis=1)
    r, c = neg.shape
    srt = neg.ravel()[order + (np.arange(r) * c)[:, None]]  # take_along_axis, without its index broadcasting
    tied = ~(srt[:, 1:] > srt[:, :-1]).all(axis=1)
    if tied.any():
        order[tied] = np.argsort(neg[tied], axis=1, kind="stable")
    return order


def _empty_impressions() -> dict[str, np.ndarray]:
    i, f, b = np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
    return {
        "member": i,
        "update": i,
        "utype": i,
        "author": i,
        "session_row": i,
        "session_id": i,
        "ts_us": i,
        "position": i.astype(np.int32),
        "dwell_s": f,
        "clicked": b,
        "reacted": b,
        "commented": b,
        "shared": b,
        "click_dwell_s": f,
        "downstream_clicks": i.astype(np.int32),
        "downstream_virals": i.astype(np.int32),
        "upstream_value": f,
        "propensity": f,
        "engaged": b,
        "relevance": f,
        "time_s": f,
    }


def _labels(categories: tuple[str, ...], codes: np.ndarray | pl.Series) -> pl.Series:
    """Strings for integer codes, gathered in polars (numpy unicode arrays are slow)."""
    return pl.Series(list(categories), dtype=pl.String).gather(
        codes.cast(pl.Int64) if isinstance(codes, pl.Series) else codes.astype(np.int64)
    )


def _ts(us: np.ndarray | pl.Series) -> pl.Series:
    s = us if isinstance(us, pl.Series) else pl.Series(np.asarray(us, dtype=np.int64))
    return s.cast(pl.Int64).cast(pl.Datetime(TIME_UNIT, TIME_ZONE))


def _cast(table: str, data: dict[str, Any]) -> pl.DataFrame:
    """``data`` as ``table``'s columns, in schema order and types.

    Column by column: a ``select`` of casts goes through polars' thread pool,
    whose start-up cost (~0.25 ms) dominated the day's small tables.
    """
    columns = []
    for c in TABLES[table].columns:
        col = data[c.name]
        col = col.alias(c.name) if isinstance(col, pl.Series) else pl.Series(c.name, col)
        columns.append(col if col.dtype == c.dtype else col.cast(c.dtype))
    return pl.DataFrame(columns)


def _tables(
    cfg: WorldConfig,
    members: Members,
    pool: _Pool,
    days: list[dict[str, pl.DataFrame]],
    arm_names: list[str] | None,
    arm_idx: np.ndarray | None,
) -> dict[str, pl.DataFrame]:
    """Members and updates, and the daily log tables end to end when they were kept.

    The daily frames are concatenated without a copy, so a table keeps one
    chunk per day; a contiguous copy of every column cost 10^5 fresh memory
    pages (a fifth of a default run) and nothing downstream needs it.
    """
    n = cfg.n_members
    arm = [None] * n if arm_idx is None else np.asarray(arm_names)[arm_idx].tolist()
    out = {
        "members": _cast(
            "members",
            {
                "member_id": np.arange(n),
                "connections": members.connections,
                "tenure_days": members.tenure_days,
                "client": _labels(CLIENTS, members.client),
                "arm": pl.Series(arm, dtype=pl.String),
                "industry": members.industry,
                "seniority": members.seniority,
                "is_premium": members.is_premium,
            },
        )
    }
    u = pool.arrays()
    out["updates"] = _cast(
        "updates",
        {
            "update_id": np.arange(u["author"].size),
            "author_id": u["author"],
            "update_type": _labels(cfg.update_types, u["utype"]),
            "created_ts": _ts(u["created_us"]),
            "topic": u["topic"],
        },
    )
    if days:  # empty when the daily tables were handed to a sink and dropped
        for name in DAILY_TABLES:
            out[name] = pl.concat([d[name] for d in days], rechunk=False)
    return out


def _guarded(sink: Callable[[dict[str, pl.DataFrame]], None], stopped: threading.Event) -> Callable[[dict[str, pl.DataFrame]], None]:
    """``sink`` that is not called again once it raised or the run stopped."""

    def call(tables: dict[str, pl.DataFrame]) -> None:
        if stopped.is_set():
            return
        try:
            sink(tables)
        except BaseException:
            stopped.set()
            raise

    return call


@dataclass(frozen=True)
class _DayArrays:
    """One simulated day's arrays, handed to the worker thread (the day loop no longer writes to them)."""

    imp: dict[str, np.ndarray]
    sess: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    deliveries: dict[str, np.ndarray]
    intent: np.ndarray  # each session's intent
    day: int


@dataclass
class _Day:
    """What the day loop keeps of a finished day: its tables (unless dropped) and what the summary needs."""

    tables: dict[str, pl.DataFrame] | None
    rows: dict[str, int]
    counts: dict[str, int]
    dwell_s: np.ndarray


#: Impressions counted per day for the summary, and the summary's name for their share.
_COUNTED = {"skipped": "skip_rate", "clicked": "click_rate", "reacted": "react_rate", "commented": "comment_rate", "shared": "share_rate"}


def _finish_day(cfg: WorldConfig, arrays: _DayArrays, sink: Callable[[dict[str, pl.DataFrame]], None] | None, keep: bool) -> _Day:
    """Type the day's tables, hand them to ``sink``, count what the summary needs."""
    tables = _day_tables(cfg, arrays)
    imp = arrays.imp
    if sink is not None:
        sink(tables)
    action = imp["clicked"] | imp["reacted"] | imp["commented"] | imp["shared"]
    counts = {
        "skipped": int(np.count_nonzero((imp["dwell_s"] < cfg.t_skip_s) & ~action)),
        **{c: int(np.count_nonzero(imp[c])) for c in ("clicked", "reacted", "commented", "shared")},
    }
    rows = {name: tables[name].height for name in DAILY_TABLES}
    return _Day(tables=tables if keep else None, rows=rows, counts=counts, dwell_s=imp["dwell_s"])


def _day_tables(cfg: WorldConfig, arrays: _DayArrays) -> dict[str, pl.DataFrame]:
    """One day's rows of the four daily log tables (schema types) and of the truth's sessions and impressions.

    Runs on a worker thread while the next day is simulated: it reads the
    day's arrays and never writes to them, and the day loop never writes to
    them after handing them over.
    """
    imp, sess, events, deliveries, intent = arrays.imp, arrays.sess, arrays.events, arrays.deliveries, arrays.intent
    tables = {
        "impressions": _cast(
            "impressions",
            {
                "member_id": imp["member"],
                "update_id": imp["update"],
                "update_type": _labels(cfg.update_types, imp["utype"]),
                "session_id": imp["session_id"],
                "ts": _ts(imp["ts_us"]),
                "position": imp["position"],
                "dwell_s": imp["dwell_s"],
                "clicked": imp["clicked"],
                "reacted": imp["reacted"],
                "commented": imp["commented"],
                "shared": imp["shared"],
                "click_dwell_s": pl.Series(imp["click_dwell_s"]).fill_nan(None),
                "downstream_clicks": imp["downstream_clicks"],
                "downstream_virals": imp["downstream_virals"],
                "upstream_value": imp["upstream_value"],
                "propensity": pl.Series(imp["propensity"]).fill_nan(None),
            },
        ),
        "sessions": _cast(
            "sessions",
            {
                "member_id": sess["member"],
                "session_id": sess["session_id"],
                "start_ts": _ts(sess["start_us"]),
                "duration_s": sess["duration_s"],
                "client": _labels(CLIENTS, sess["client"]),
            },
        ),
        "events": _cast(
            "events",
            {
                "member_id": events["member"],
                "session_id": events["session_id"],
                "ts": _ts(events["ts_us"]),
                "event_type": _labels(EVENT_TYPES, events["event_type"]),
            },
        ),
        # Each day's deliveries come sorted by time and fall inside their day, so the table is sorted.
        "deliveries": _cast(
            "deliveries",
            {
                "member_id": deliveries["member"],
                "ts": _ts(deliveries["ts_us"]),
                "channel": _labels(CHANNELS, deliveries["channel"]),
                "content": _labels(CONTENTS, deliveries["content"]),
            },
        ),
    }
    tables["truth/sessions"] = pl.DataFrame(
        {"session_id": sess["session_id"], "intent": intent.astype(np.int32), "day": np.full(intent.size, arrays.day, dtype=np.int32)}
    )
    tables["truth/impressions"] = pl.DataFrame(
        {"session_id": imp["session_id"], "position": imp["position"], "engaged": imp["engaged"], "p_engage": imp["relevance"]}
    )
    return tables


def _static_truth(members: Members, paths: np.ndarray, phases: np.ndarray) -> dict[str, pl.DataFrame]:
    """The truth tables known before day 0: intent paths, drift phases, members' latent traits."""
    n, d, k = paths.shape
    return {
        "intent_paths": pl.DataFrame(
            {
                "member_id": np.repeat(np.arange(n), d),
                "day": np.tile(np.arange(d), n).astype(np.int32),
                **{f"intent_{i}": paths[:, :, i].ravel() for i in range(k)},
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
    }


def _truth(
    cfg: WorldConfig,
    seed: int,
    intents: IntentSet,
    pool: _Pool,
    static: dict[str, pl.DataFrame],
    days: list[dict[str, pl.DataFrame]],
    n_warmup_updates: int,
    keep: bool,
) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
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
            }
            for i, name in enumerate(intents.names)
        ],
        "n_warmup_updates": n_warmup_updates,
        "config": cfg.to_dict(),
    }
    u = pool.arrays()
    updates = pl.DataFrame({"update_id": np.arange(u["author"].size), "quality": u["quality"]})
    if not keep:  # the other truth tables were handed to a sink and dropped
        return truth, {"updates": updates}
    tables = {
        "intent_paths": static["intent_paths"],
        "phases": static["phases"],
        "sessions": pl.concat([d["truth/sessions"] for d in days], rechunk=False),
        "impressions": pl.concat([d["truth/impressions"] for d in days], rechunk=False),
        "updates": updates,
        "members": static["members"],
    }
    return truth, tables


def _summary(cfg: WorldConfig, seed: int, rows: dict[str, int], days: list[_Day]) -> dict[str, Any]:
    """:func:`summarize` from the per-day counts (the tables may be gone)."""
    rows = {**rows, **{name: sum(d.rows[name] for d in days) for name in DAILY_TABLES}}
    n_imp = rows["impressions"]
    rates: dict[str, Any] = {}
    if n_imp:
        total = {c: sum(d.counts[c] for d in days) for c in _COUNTED}
        rates = {rate: total[c] / n_imp for c, rate in _COUNTED.items()}
        rates["median_dwell_s"] = pl.Series(np.concatenate([d.dwell_s for d in days])).median()
    return _summary_dict(cfg, seed, {name: rows[name] for name in TABLE_NAMES}, rates)


def _summary_dict(cfg: WorldConfig, seed: int, rows: dict[str, int], rates: dict[str, Any]) -> dict[str, Any]:
    return {
        "seed": seed,
        "members": cfg.n_members,
        "days": cfg.n_days,
        "rows": rows,
        **{k: (None if v is None else round(float(v), 6)) for k, v in rates.items()},
        "sessions_per_member_day": round(rows["sessions"] / (cfg.n_members * cfg.n_days), 6),
        "impressions_per_session": round(rows["impressions"] / max(rows["sessions"], 1), 6),
        "t_skip_s_truth": cfg.t_skip_s,
    }


def _require_tables(result: SimulationResult, what: str) -> None:
    missing = [n for n in TABLE_NAMES if n not in result.tables]
    if missing:
        raise ConfigError(
            f"{what} needs all six log tables, but this result has no {', '.join(missing)}: it was produced with "
            "keep_tables=False, so those tables are in the files its sink wrote (its summary is result.summary)"
        )


def summarize(result: SimulationResult) -> dict[str, Any]:
    """Rows per table, skip and action rates, sessions per member-day."""
    _require_tables(result, "summarize")
    t = result.tables
    cfg = result.config
    imp = t["impressions"]
    rates = (
        imp.select(
            skip_rate=((pl.col("dwell_s") < cfg.t_skip_s) & ~pl.any_horizontal("clicked", "reacted", "commented", "shared")).mean(),
            click_rate=pl.col("clicked").mean(),
            react_rate=pl.col("reacted").mean(),
            comment_rate=pl.col("commented").mean(),
            share_rate=pl.col("shared").mean(),
        ).row(0, named=True)
        if imp.height
        else {}
    )
    if imp.height:
        # One contiguous column first: polars' median over a table's per-day chunks is 7x slower.
        rates["median_dwell_s"] = imp["dwell_s"].rechunk().median()
    return _summary_dict(cfg, result.seed, {name: df.height for name, df in t.items()}, rates)
