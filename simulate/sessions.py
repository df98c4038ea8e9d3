"""Sessions: when members come, which intent each session follows, its events and its length."""

from __future__ import annotations

import numpy as np

from dwellrank_logs.schema import CLIENTS
from simulate.config import WorldConfig
from simulate.intents import IntentSet
from simulate.world import Members

__all__ = ["session_durations", "start_sessions"]

_US = 1_000_000  # microseconds per second
# Share of sessions starting in each hour of the day (UTC): morning, lunch and evening peaks.
_DIURNAL = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 3.5, 3.2, 2.6, 2.6, 3.0, 2.8, 2.4, 2.3, 2.4, 2.8, 3.2, 3.6, 3.8, 3.2, 2.4, 1.6])
_DIURNAL = _DIURNAL / _DIURNAL.sum()


def start_sessions(
    cfg: WorldConfig,
    intents: IntentSet,
    members: Members,
    mix: np.ndarray,
    n_sess: np.ndarray,
    day_us: float,
    first_id: int,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Today's sessions and their events: each session follows one intent drawn from today's mixture.

    Parameters
    ----------
    mix : ndarray, shape (n_members, n_intents)
        Today's intent mixture of each member.
    n_sess : ndarray of int, shape (n_members,)
        Sessions of each member today.
    day_us : float
        Start of the day, microseconds since the Unix epoch.
    first_id : int
        session_id of the first session.

    Returns
    -------
    sessions : dict of str to ndarray, shape (n_sessions,)
        ``session_id``, ``member``, ``start_us``, ``client`` (index into CLIENTS),
        ``events_span_s`` (seconds from the first to the last event), ``n_feed``
        (feed events) and ``first_feed_s`` (seconds to the first feed event, 0
        without one); sorted by start time, then member.
    events : dict of str to ndarray, shape (n_events,)
        ``session_id``, ``member``, ``ts_us``, ``event_type`` (index into EVENT_TYPES).
    intent : ndarray of int, shape (n_sessions,)
        The intent of each session (latent).
    """
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


def session_durations(sess: dict[str, np.ndarray], imp: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Session lengths, seconds, shape (n_sessions,): they cover their events and their feed time.

    ``imp`` holds the sessions' impressions (:func:`simulate.impressions.view_feeds`);
    each session ends an exponential 20 s (mean) after its last event or impression.
    """
    feed_end = np.zeros(sess["session_id"].size)
    if imp["member"].size:
        np.maximum.at(feed_end, imp["session_row"], (imp["ts_us"] - sess["start_us"][imp["session_row"]]) / _US + imp["time_s"])
    return np.maximum(sess["events_span_s"], feed_end) + rng.exponential(20.0, feed_end.size)


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


def _first_feed_offset(ev_sess: np.ndarray, ev_type: np.ndarray, offset: np.ndarray, s: int) -> np.ndarray:
    out = np.full(s, np.inf)
    feed = ev_type == 0
    np.minimum.at(out, ev_sess[feed], offset[feed])
    return np.where(np.isfinite(out), out, 0.0)
