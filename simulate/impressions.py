"""The members' response to their feeds: how far each scrolls, what it does, and when.

One impression per viewed feed position; the response model itself is
:func:`simulate.world.respond`.
"""

from __future__ import annotations

import numpy as np

from simulate.config import WorldConfig
from simulate.serving import Feeds
from simulate.world import Members, respond

__all__ = ["empty_impressions", "view_feeds"]

_US = 1_000_000  # microseconds per second


def view_feeds(
    cfg: WorldConfig,
    members: Members,
    sess: dict[str, np.ndarray],
    pool: dict[str, np.ndarray],
    feeds: Feeds | None,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The day's impressions: each requesting member scrolls the top of their feed and responds.

    A session with ``n_feed`` feed events views ``1 + Poisson(views_per_feed_event * n_feed - 1)``
    positions (at most the feed's length).  Impressions follow one another from
    the session's first feed event: each starts when the previous one (and its
    click-through) ends.

    Parameters
    ----------
    sess : dict of str to ndarray
        The day's sessions (:func:`simulate.sessions.start_sessions`).
    pool : dict of str to ndarray
        Every update so far (:meth:`simulate.posts.UpdatePool.arrays`).
    feeds : Feeds or None
        :func:`simulate.serving.serve_feeds`; None gives no impressions and no random draws.

    Returns
    -------
    dict of str to ndarray, shape (n_impressions,)
        Keys of :func:`empty_impressions`, ordered by request, then position:
        ids (``member``, ``update``, ``utype``, ``author``, ``session_id``),
        ``session_row`` (row in ``sess``), ``ts_us``, ``position``, the
        responses of :class:`simulate.world.Responses` (``engaged`` and
        ``relevance`` latent), the ranker's ``propensity`` (NaN if none) and
        ``time_s``, seconds the impression took, click-through included.
    """
    if feeds is None:
        return empty_impressions()
    req, c, order = feeds.requests, feeds.n_candidates, feeds.order
    length = order.shape[1]
    n_view = np.minimum(1 + rng.poisson(np.maximum(cfg.views_per_feed_event * sess["n_feed"][req] - 1, 0)), length)
    pos = np.arange(length)
    viewed = pos[None, :] < n_view[:, None]  # (R, L)
    req_rows, pos_v = np.nonzero(viewed)
    flat_idx = req_rows * c + order[req_rows, pos_v]
    upd = feeds.candidates[flat_idx]
    mem = feeds.member[req_rows]
    utype = pool["utype"][upd]
    author = pool["author"][upd]
    res = respond(cfg, members, mem, utype, pool["topic"][upd], pool["quality"][upd], author, pos_v, rng)
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
        "propensity": feeds.propensity[flat_idx],
        "engaged": res.engaged,
        "relevance": res.relevance,
        "time_s": time_s,
    }


def empty_impressions() -> dict[str, np.ndarray]:
    """A day without impressions, in the layout of :func:`view_feeds`."""
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
