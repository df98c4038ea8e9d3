"""Statistical properties of simulated logs, checked against the config and the ground truth."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from dwellrank_logs import ACTION_COLUMNS
from dwellrank_logs.protocol import skip_label_expr
from simulate import WorldConfig, simulate
from simulate.intents import make_intents
from simulate.world import sample_intent_paths


def _joined(world):
    imp = world.tables["impressions"]
    truth = world.truth_tables["impressions"]
    return imp.join(truth, on=["session_id", "position"], how="left")


def test_no_action_below_true_t_skip_and_actions_above(small_world):
    t = small_world.config.t_skip_s
    imp = small_world.tables["impressions"].with_columns(action=pl.any_horizontal(ACTION_COLUMNS))
    below = imp.filter(pl.col("dwell_s") < t)
    above = imp.filter(pl.col("dwell_s").is_between(t, t + 1.0))
    assert below.height > 10_000
    assert below["action"].sum() == 0
    assert above["action"].mean() > 0.05


def test_skip_share_matches_closed_form(small_world):
    """Measured share of dwell < T_skip equals E[(1 - p_engage) * Phi(ln(T/median_type)/sigma)].

    Engaged dwell is T_skip + Gamma, never below T_skip; skipped dwell is
    log-normal with the configured per-type median, so the expectation over the
    simulator's true per-impression p_engage is a closed form.
    """
    cfg = small_world.config
    df = _joined(small_world)
    med = pl.col("update_type").replace_strict(list(cfg.update_types), list(cfg.skip_dwell_median_s))
    z = (math.log(cfg.t_skip_s) - med.log()) / cfg.skip_dwell_sigma
    expected = df.select(p=(1 - pl.col("p_engage")) * z.map_batches(lambda s: pl.Series(stats.norm.cdf(s.to_numpy())))).mean().item()
    measured = (df["dwell_s"] < cfg.t_skip_s).mean()
    se = math.sqrt(expected * (1 - expected) / df.height)
    assert abs(measured - expected) < 5 * se


def test_type_dwell_medians_follow_config(small_world):
    cfg = small_world.config
    df = _joined(small_world)
    skipped = df.filter(~pl.col("engaged")).group_by("update_type").agg(pl.col("dwell_s").median())
    for utype, median in skipped.iter_rows():
        configured = cfg.skip_dwell_median_s[cfg.update_types.index(utype)]
        assert median == pytest.approx(configured, rel=0.05)
    engaged = df.filter(pl.col("engaged")).group_by("update_type").agg(pl.col("dwell_s").median()).sort("dwell_s")
    by_scale = sorted(cfg.update_types, key=lambda u: cfg.engaged_dwell_scale_s[cfg.update_types.index(u)])
    assert engaged["update_type"].to_list() == by_scale


def test_skipped_feeds_lower_next_day_return(small_world):
    """Within a member, days after mostly-skipped feeds are followed by fewer sessions."""
    cfg = small_world.config
    t = small_world.tables
    skip = (
        t["impressions"]
        .with_columns(cfg.day_index("ts").alias("day"))
        .group_by("member_id", "day")
        .agg(skip=skip_label_expr(cfg.t_skip_s).mean(), n=pl.len())
        .filter(pl.col("n") >= 3)
    )
    nxt = t["sessions"].with_columns((cfg.day_index("start_ts") - 1).alias("day")).group_by("member_id", "day").agg(sessions=pl.len())
    df = skip.join(nxt, on=["member_id", "day"], how="left").with_columns(pl.col("sessions").fill_null(0))
    df = df.filter(pl.col("day") < cfg.n_days - 1)
    df = df.with_columns((pl.col(c) - pl.col(c).mean().over("member_id")).alias(f"{c}_dm") for c in ("skip", "sessions"))
    res = stats.linregress(df["skip_dm"].to_numpy(), df["sessions_dm"].to_numpy())
    assert res.slope < 0
    assert res.slope / res.stderr < -3


def test_intent_drift_shows_in_event_mix(small_world):
    """During a member's job-seeking phase (truth), the share of 'jobs' events rises."""
    job = small_world.truth["intents"].index(next(i for i in small_world.truth["intents"] if i["name"] == "job_seeking"))
    cfg = small_world.config
    phases = small_world.truth_tables["phases"].filter(pl.col("intent") == job)
    ev = small_world.tables["events"].with_columns(cfg.day_index("ts").alias("day"))
    ev = ev.join(phases, on="member_id", how="inner").with_columns(
        in_phase=pl.col("day").is_between(pl.col("first_day"), pl.col("last_day"))
    )
    share = ev.group_by("in_phase").agg((pl.col("event_type") == "jobs").mean().alias("jobs_share"))
    s = dict(share.iter_rows())
    assert s[True] > 2 * s[False]


def test_different_seeds_differ_and_same_seed_repeats():
    cfg = WorldConfig(n_members=200, n_days=5)
    a, b, c = simulate(cfg, seed=1), simulate(cfg, seed=1), simulate(cfg, seed=2)
    for name in a.tables:
        assert a.tables[name].equals(b.tables[name])
    assert not a.tables["impressions"].equals(c.tables["impressions"])


def test_sessions_per_member_day_and_valid_sessions(small_world):
    t = small_world.tables
    # Every session has at least one event (all sessions are valid sessions).
    assert t["events"]["session_id"].n_unique() == t["sessions"].height
    assert small_world.summary["sessions_per_member_day"] > 0.5
    # Impressions happen inside their session.
    j = t["impressions"].join(t["sessions"], on="session_id")
    assert (j["member_id"] == j["member_id_right"]).all()
    inside = j.select(
        (pl.col("ts") >= pl.col("start_ts"))
        & (pl.col("ts") <= pl.col("start_ts") + pl.duration(microseconds=(pl.col("duration_s") * 1e6).cast(pl.Int64)))
    )
    assert inside.to_series().all()


def test_upstream_feedback_raises_posting():
    """Authors post more when they receive feedback: turning the gain off lowers post counts."""
    base = WorldConfig(n_members=1500, n_days=10)
    with_gain = simulate(base.replace(upstream_gain=1.5), seed=4).tables["updates"].height
    without = simulate(base.replace(upstream_gain=0.0), seed=4).tables["updates"].height
    assert with_gain > 1.05 * without


def test_fixed_phase_length_option():
    """phase_length="fixed": every phase not cut by the world's edges lasts round(phase_mean_days) days;
    the default (geometric, memoryless) gives many lengths."""
    cfg = WorldConfig(n_members=300, n_days=28, phase_length="fixed", phase_mean_days=6.0)
    rng = np.random.default_rng(0)
    intents = make_intents(cfg.n_intents, rng)
    base = rng.dirichlet(np.ones(intents.k), size=cfg.n_members)
    _, phases = sample_intent_paths(cfg, intents, base, rng)
    inner = phases[(phases[:, 2] > 0) & (phases[:, 3] < cfg.n_days - 1)]
    assert inner.shape[0] > 50 and np.all(inner[:, 3] - inner[:, 2] + 1 == 6)
    _, geo = sample_intent_paths(cfg.replace(phase_length="geometric"), intents, base, rng)
    inner = geo[(geo[:, 2] > 0) & (geo[:, 3] < cfg.n_days - 1)]
    assert np.unique(inner[:, 3] - inner[:, 2]).size > 5
