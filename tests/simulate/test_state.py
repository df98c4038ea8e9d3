"""The simulator's online history state against the batch history of the shared layer."""

from __future__ import annotations

import numpy as np
import polars as pl

from dwellrank_logs.history import history_tables
from simulate import HistoryState


def test_online_history_equals_batch_history(small_world):
    """Counters kept incrementally by the simulator equal polars counts over the logs."""
    t = small_world.tables
    imp = t["impressions"]
    authors = t["updates"].select("update_id", "author_id", "topic")
    cfg = small_world.config
    st = HistoryState(cfg.n_members, cfg.update_types, cfg.n_topics, cfg.t_skip_s)
    j = imp.join(authors, on="update_id")
    for day in range(3):  # several batches, as in the day loop
        part = j.filter(pl.col("session_id") % 3 == day)
        st.add(
            part["member_id"].to_numpy(),
            part["update_id"].to_numpy(),
            part["update_type"].replace_strict(list(cfg.update_types), list(range(len(cfg.update_types)))).to_numpy(),
            part["topic"].to_numpy(),
            part["author_id"].to_numpy(),
            part["dwell_s"].to_numpy(),
            part["clicked"].to_numpy(),
            (part["reacted"] | part["commented"] | part["shared"]).to_numpy(),
        )
    online = st.tables()
    batch = history_tables(imp, t["updates"], None, cfg.t_skip_s)
    keys = {
        "updates": ["update_id"],
        "member_types": ["member_id", "update_type"],
        "member_authors": ["member_id", "author_id"],
        "member_topics": ["member_id", "topic"],
        "members": ["member_id"],
    }
    for name, k in keys.items():
        a = getattr(online, name).sort(k)
        b = getattr(batch, name).sort(k)
        assert a.equals(b), name


def test_history_counts_accept_integer_masks():
    """0/1 integer click and viral arrays count like booleans (they must not be taken as row indices)."""
    rng = np.random.default_rng(0)
    n = 500
    args = dict(
        member=rng.integers(0, 40, n),
        update=rng.integers(0, 90, n),
        utype=rng.integers(0, 5, n),
        topic=rng.integers(0, 12, n),
        author=rng.integers(0, 40, n),
        dwell_s=rng.exponential(3.0, n),
    )
    clicked, viral = rng.random(n) < 0.2, rng.random(n) < 0.1
    a, b = (HistoryState(40, ("text", "image", "video", "article", "job"), 12, 2.5) for _ in range(2))
    a.add(**args, clicked=clicked, viral=viral)
    b.add(**args, clicked=clicked.astype(np.int8), viral=viral.astype(np.int8))
    ta, tb = a.tables(), b.tables()
    assert ta.updates.equals(tb.updates) and ta.member_types.equals(tb.member_types)
    assert int(ta.updates["n_clicks"].sum()) == int(clicked.sum())
