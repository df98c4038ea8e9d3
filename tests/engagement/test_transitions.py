"""The Temporal GCN-LSTM channel: daily transition counts on a hand-written log, the GCN's propagation in closed form.

References: the transition counts below are counted by hand from the events table of :func:`_logs`
(consecutive events of a session in time order, ties by event-type index); the propagation matrix is
Kipf & Welling's ``D^-1/2 (A + I) D^-1/2`` written out for a two-edge graph.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import torch

from dwellrank_logs.schema import EVENT_TYPES
from engagement import WindowConfig, build_dataset
from engagement.baselines import DeepMultiChannel, GCNLSTMBaseline
from engagement.gcn import TemporalGCNLSTM, gcn_propagation, node_features

E = {t: i for i, t in enumerate(EVENT_TYPES)}
START = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)


def _logs() -> dict[str, pl.DataFrame]:
    """Two members, 2 history days + 1 future day; events as (seconds after the session start, type).

    member 1, day 0: session 10: feed, feed, jobs, feed       -> feed>feed, feed>jobs, jobs>feed
                     session 11: jobs                         -> none (one event)
              day 1: session 12: message@5, search@1, notification@9 (rows out of time order)
                                                              -> search>message, message>notification
                     session 13: pymk@0, feed@0 (a tie), pymk@3 -> feed>pymk, pymk>pymk (tie by type index)
              day 2: session 14 (future window)               -> not counted
    member 2, day 0: session 20: feed, feed                   -> feed>feed
    """
    sess = [  # member, session, day, [(offset s, type)]
        (1, 10, 0.2, [(0, "feed"), (10, "feed"), (20, "jobs"), (30, "feed")]),
        (1, 11, 0.6, [(0, "jobs")]),
        (1, 12, 1.3, [(5, "message"), (1, "search"), (9, "notification")]),
        (1, 13, 1.7, [(0, "pymk"), (0, "feed"), (3, "pymk")]),
        (1, 14, 2.5, [(0, "feed"), (1, "jobs")]),
        (2, 20, 0.5, [(0, "feed"), (2, "feed")]),
        (2, 21, 2.5, [(0, "feed")]),
    ]
    t0 = [START + dt.timedelta(days=s[2]) for s in sess]
    sessions = pl.DataFrame(
        {
            "member_id": [s[0] for s in sess],
            "session_id": [s[1] for s in sess],
            "start_ts": t0,
            "duration_s": [60.0] * len(sess),
            "client": ["ios"] * len(sess),
        }
    )
    ev = [(s[0], s[1], t + dt.timedelta(seconds=o), e) for s, t in zip(sess, t0, strict=True) for o, e in s[3]]
    events = pl.DataFrame(
        {"member_id": [e[0] for e in ev], "session_id": [e[1] for e in ev], "ts": [e[2] for e in ev], "event_type": [e[3] for e in ev]}
    )
    members = pl.DataFrame({"member_id": [1, 2], "connections": [10, 20]})
    deliveries = pl.DataFrame(
        {"member_id": [1], "ts": [START], "channel": ["email"], "content": ["feed"]},
        schema={"member_id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "channel": pl.String, "content": pl.String},
    )
    return {"members": members, "sessions": sessions, "events": events, "deliveries": deliveries}


def _hand_counts() -> np.ndarray:
    want = np.zeros((2, 2, 10, 10), dtype=np.float32)
    for member, day, a, b in [
        (0, 0, "feed", "feed"),
        (0, 0, "feed", "jobs"),
        (0, 0, "jobs", "feed"),
        (0, 1, "search", "message"),
        (0, 1, "message", "notification"),
        (0, 1, "feed", "pymk"),
        (0, 1, "pymk", "pymk"),
        (1, 0, "feed", "feed"),
    ]:
        want[member, day, E[a], E[b]] += 1
    return want


WINDOW = WindowConfig(history_days=2, future_days=1, min_history_sessions=1)


def test_transition_counts_equal_a_hand_counted_log() -> None:
    data = build_dataset(_logs(), WINDOW)
    assert data.member_id.tolist() == [1, 2]
    assert data.transitions.shape == (2, 2, 10, 10) and data.transitions.dtype == np.float32
    np.testing.assert_array_equal(data.transitions, _hand_counts())
    # n - 1 transitions per session of n events: 3 + 0 on day 0, 2 + 2 on day 1.
    assert data.transitions[0].sum(axis=(1, 2)).tolist() == [3, 4]


def test_transition_counts_do_not_depend_on_the_row_order_of_the_events() -> None:
    logs = _logs()
    logs["events"] = logs["events"].sample(fraction=1.0, shuffle=True, seed=3)
    np.testing.assert_array_equal(build_dataset(logs, WINDOW).transitions, _hand_counts())


def test_propagation_of_a_two_edge_graph_in_closed_form() -> None:
    # feed -> jobs twice and jobs -> feed never: W = log1p(2) on (feed, jobs); symmetrised with the self-loops,
    # S = [[1, w], [w, 1]] on the two nodes and 1 on the isolated ones, D = 1 + w on both.
    counts = torch.zeros(10, 10)
    counts[E["feed"], E["jobs"]] = 2.0
    w = float(np.log1p(2.0))
    want = np.eye(10)
    f, j = E["feed"], E["jobs"]
    want[f, f] = want[j, j] = 1 / (1 + w)
    want[f, j] = want[j, f] = w / (1 + w)
    np.testing.assert_allclose(gcn_propagation(counts).numpy(), want, atol=1e-6)
    x = node_features(counts)
    assert x.shape == (10, 13)
    np.testing.assert_allclose(x[f, 10:].numpy(), [w, 0.0, 0.0], atol=1e-6)  # out-, in-, self-strength
    np.testing.assert_allclose(x[j, 10:].numpy(), [0.0, w, 0.0], atol=1e-6)
    np.testing.assert_allclose(gcn_propagation(torch.zeros(3, 10, 10)).numpy(), np.broadcast_to(np.eye(10), (3, 10, 10)))


def test_graph_channel_shapes_and_the_ablation_is_the_channel_alone() -> None:
    torch.manual_seed(0)
    b, days = 5, 4
    trans = torch.poisson(torch.full((b, days, 10, 10), 0.3))
    ch = TemporalGCNLSTM(10, lstm_hidden=32)
    assert ch(trans).shape == (b, 32)
    assert GCNLSTMBaseline(10, 6, 3)(trans, torch.zeros(b, 6)).shape == (b, 3)
    with_gcn, without = DeepMultiChannel(10, 4, 6, 2), DeepMultiChannel(10, 4, 6, 2, gcn=False)
    assert with_gcn.inputs == ("activity", "transitions", "macro", "delivery")
    assert without.inputs == ("activity", "macro", "delivery")
    n_gcn = sum(p.numel() for p in ch.parameters())
    n_with, n_without = (sum(p.numel() for p in m.parameters()) for m in (with_gcn, without))
    assert n_with - n_without == n_gcn + 32 * 64  # the channel and the head's wider first layer
    act = torch.randn(b, days, 10)
    logits = with_gcn(act, trans, torch.zeros(b, 4), torch.zeros(b, 6))
    logits.sum().backward()
    assert logits.shape == (b, 2) and with_gcn.gcn is not None and with_gcn.gcn.gcn1.weight.grad is not None
    assert without(act, torch.zeros(b, 4), torch.zeros(b, 6)).shape == (b, 2)
