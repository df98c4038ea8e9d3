"""The life-cycle world (``intent_dynamics="lifecycle"``) against its configuration.

Phase lengths against the configured gamma, transitions against the configured
matrix, and the engagement the simulated sessions show: a job search ramps up,
notification checking fades, news reading stays flat, new members rise and
settle, disengagement follows its hazard and its decay, and a better ranker
keeps more members.  References are closed forms of the configuration
(scipy's gamma, the trend formulas written out here), not the code's output.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from simulate import WorldConfig, simulate
from simulate.intents import DEFAULT_LIFECYCLE, make_intents
from simulate.lifecycle import lifecycle_params, sample_lifecycle
from simulate.rankers import RandomRanker
from simulate.truth import OracleRanker, world_members

LIFE = WorldConfig(n_members=3000, n_days=28, intent_dynamics="lifecycle")
NAMES = [row[0] for row in DEFAULT_LIFECYCLE]


@pytest.fixture(scope="module")
def long_chain():
    """Phases and transitions of 2,000 members over 400 days (no day loop)."""
    cfg = WorldConfig(n_members=2000, n_days=400, intent_dynamics="lifecycle")
    rng = np.random.default_rng(11)
    intents = make_intents(cfg.n_intents, rng)
    base = rng.dirichlet(np.ones(intents.k), size=cfg.n_members)
    params = lifecycle_params(intents, rng)
    return cfg, sample_lifecycle(cfg, intents, params, base, np.full(cfg.n_members, 1000), rng)


@pytest.fixture(scope="module")
def life_world():
    """3,000 members x 28 days of the life-cycle world, seed 5."""
    return simulate(LIFE, seed=5)


def test_phase_lengths_follow_the_configured_gamma(long_chain):
    """Whole-day lengths are ceil(Gamma(shape, mean / shape)): P(L <= l) = F(l) at every integer l.

    Only phases starting on day 1 .. 200 of 400: none is cut by the window, and a renewal
    phase's length does not depend on when it starts.  The continuous KS critical value is
    conservative for this discrete statistic.
    """
    cfg, life = long_chain
    ph = life.phases
    inner = ph[(ph[:, 2] >= 1) & (ph[:, 2] <= 200)]
    assert inner[:, 3].max() < cfg.n_days - 1
    for k, (name, mean, *_rest) in enumerate(DEFAULT_LIFECYCLE):
        length = inner[inner[:, 1] == k, 3] - inner[inner[:, 1] == k, 2] + 1
        assert length.size > 400, name
        g = stats.gamma(cfg.phase_shape, scale=mean / cfg.phase_shape)
        grid = np.arange(1, int(length.max()) + 1)
        ecdf = np.searchsorted(np.sort(length), grid, side="right") / length.size
        assert np.abs(ecdf - g.cdf(grid)).max() < 1.63 / math.sqrt(length.size), name  # 1% level
        # E[ceil X] = sum_{l >= 0} P(X > l); the sample mean within 4 standard errors.
        expected = g.sf(np.arange(0, 10 * int(mean))).sum()
        assert abs(length.mean() - expected) < 4 * length.std() / math.sqrt(length.size), name
    # Not memoryless: the chance a news phase ends on its next day grows with its age.
    news = inner[inner[:, 1] == NAMES.index("news_reading")]
    length = news[:, 3] - news[:, 2] + 1
    hazard = [(length == a + 1).sum() / (length > a).sum() for a in (5, 30)]
    assert hazard[1] > 2 * hazard[0]


def test_transitions_follow_the_configured_matrix(long_chain):
    """Per from-intent, the to-intent counts fit the configured row (chi-square, 0.1% level); zero cells stay zero."""
    _, life = long_chain
    tr = life.transitions
    for k, row in enumerate(DEFAULT_LIFECYCLE):
        p = np.array(row[5]) / sum(row[5])
        counts = np.bincount(tr[tr[:, 1] == k, 2], minlength=len(NAMES))
        assert counts[p == 0].sum() == 0, row[0]
        pos = p > 0
        res = stats.chisquare(counts[pos], counts.sum() * p[pos])
        assert res.pvalue > 1e-3, (row[0], counts, res)
    # The paper's example: most job searches end in networking or profile building.
    job = tr[tr[:, 1] == NAMES.index("job_seeking"), 2]
    assert np.isin(job, [NAMES.index("networking"), NAMES.index("profile_building")]).mean() > 0.6


def _mean(s: pl.Series) -> float:
    return float(s.cast(pl.Float64).mean())  # type: ignore[arg-type]  # polars types mean() as any scalar


def _sessions_by_phase_day(world, intent: str, min_days: int) -> pl.DataFrame:
    """Sessions per member-day on each day since the start of the member's phases of ``intent``
    that start on day 0 or later and last at least ``min_days`` days inside the window."""
    cfg = world.config
    k = NAMES.index(intent)
    ph = world.truth_tables["phases"].filter(
        (pl.col("intent") == k) & (pl.col("first_day") >= 1) & (pl.col("last_day") - pl.col("first_day") + 1 >= min_days)
    )
    days = ph.with_columns(day=pl.int_ranges("first_day", pl.col("first_day") + min_days)).explode("day")
    days = days.with_columns(t=pl.col("day") - pl.col("first_day"))
    per_day = world.tables["sessions"].group_by("member_id", cfg.day_index("start_ts").alias("day")).agg(n=pl.len())
    return days.join(per_day, on=["member_id", "day"], how="left").with_columns(pl.col("n").fill_null(0))


def _predicted(world, intent: str, t: np.ndarray, members: np.ndarray) -> float:
    """Mean intent-implied rate of ``members`` on phase day ``t``, from the configuration's trend formula."""
    cfg = world.config
    k = NAMES.index(intent)
    _, _, trend, floor, tau, _ = DEFAULT_LIFECYCLE[k]
    rates = np.array([i["session_rate"] for i in world.truth["intents"]])
    base = world.truth_tables["members"].sort("member_id").select([f"base_intent_{j}" for j in range(len(NAMES))]).to_numpy()
    shape = {"flat": np.ones_like(t, dtype=float), "ramp": floor + (1 - floor) * (1 - np.exp(-(t + 1) / tau))}
    shape["fade"] = floor + (1 - floor) * np.exp(-t / tau)
    w = cfg.phase_strength
    return float(np.mean((1 - w) * base[members] @ rates + w * rates[k] * shape[trend]))


@pytest.mark.parametrize(
    ("intent", "early", "late"), [("job_seeking", (0, 1), (8, 12)), ("notifications", (0, 1), (6, 9)), ("news_reading", (0, 2), (10, 14))]
)
def test_each_intent_shows_its_engagement_trend(life_world, intent, early, late):
    """Sessions/day late in a phase over early in it, for the same phases, match the configured trend (within 15%)."""
    df = _sessions_by_phase_day(life_world, intent, late[1] + 1)
    a = df.filter(pl.col("t").is_between(*early))
    b = df.filter(pl.col("t").is_between(*late))
    assert a.height > 300, intent
    measured = _mean(b["n"]) / _mean(a["n"])
    predicted = _predicted(life_world, intent, b["t"].to_numpy(), b["member_id"].to_numpy()) / _predicted(
        life_world, intent, a["t"].to_numpy(), a["member_id"].to_numpy()
    )
    assert measured == pytest.approx(predicted, rel=0.15), (intent, measured, predicted)
    if intent == "job_seeking":
        assert measured > 1.3  # the search ramps up
    elif intent == "notifications":
        assert measured < 0.8  # checking fades


def test_new_members_ramp_up_and_settle(life_world):
    """New members' sessions/day relative to long-standing members' rise over the first days, then settle towards 1."""
    cfg = life_world.config
    members = life_world.tables["members"].select("member_id", "tenure_days")
    new = members.filter(pl.col("tenure_days") < cfg.onboarding_max_tenure_days)
    assert new.height == pytest.approx(cfg.onboarding_share * cfg.n_members, rel=0.2)
    per_day = life_world.tables["sessions"].group_by("member_id", cfg.day_index("start_ts").alias("day")).agg(n=pl.len())
    grid = members.join(pl.DataFrame({"day": np.arange(cfg.n_days, dtype=np.int32)}), how="cross")
    grid = grid.join(per_day, on=["member_id", "day"], how="left").with_columns(
        pl.col("n").fill_null(0), age=pl.col("tenure_days") + pl.col("day")
    )
    old_rate = grid.filter(pl.col("tenure_days") >= 365).group_by("day").agg(old=pl.col("n").mean())
    rel = grid.filter(pl.col("tenure_days") < cfg.onboarding_max_tenure_days).join(old_rate, on="day")

    def ratio(lo: int, hi: int) -> float:
        r = rel.filter(pl.col("age").is_between(lo, hi))
        return _mean(r["n"]) / _mean(r["old"])

    def formula(age: np.ndarray) -> float:
        rise = 1 - np.exp(-(age + 1) / cfg.onboarding_rise_days)
        return float(
            np.mean(
                cfg.onboarding_floor
                + (1 - cfg.onboarding_floor) * rise * (1 + cfg.onboarding_boost * np.exp(-age / cfg.onboarding_settle_days))
            )
        )

    first, peak, settled = ratio(0, 1), ratio(5, 10), ratio(30, 47)
    assert first < peak and settled < peak
    # Against the configured curve: activity and intents differ between the groups only by sampling.
    for (lo, hi), got in (((0, 1), first), ((5, 10), peak), ((30, 47), settled)):
        assert got == pytest.approx(formula(np.arange(lo, hi + 1)), rel=0.25), (lo, hi, got)


def test_disengagement_hazard_and_decay_follow_the_config():
    """With the satisfaction coefficient at 0 the daily hazard is disengage_hazard exactly; during
    a spell the member's sessions decay as floor + (1 - floor) exp(-t / decay_days)."""
    cfg = LIFE.replace(n_members=4000, disengage_satisfaction_coef=0.0, disengage_hazard=0.03)
    world = simulate(cfg, seed=2)
    sp = world.truth_tables["disengagement"]
    started = sp.filter(pl.col("first_day") >= 1)
    # Member-days at risk from day 1 on: those outside spells, and the first day of each spell begun then.
    covered = sp.with_columns(
        c=(pl.col("last_day").clip(upper_bound=cfg.n_days - 1) - pl.col("first_day").clip(lower_bound=1) + 1).clip(lower_bound=0)
    )
    free = cfg.n_members * (cfg.n_days - 1) - int(covered["c"].sum()) + started.height
    p = -math.expm1(-cfg.disengage_hazard)
    assert started.height == pytest.approx(free * p, abs=4 * math.sqrt(free * p))
    spells = started.filter(pl.col("last_day") - pl.col("first_day") >= 10)
    days = (
        spells.with_columns(day=pl.int_ranges("first_day", pl.col("first_day") + 11))
        .explode("day")
        .with_columns(t=pl.col("day") - pl.col("first_day"))
    )
    per_day = world.tables["sessions"].group_by("member_id", cfg.day_index("start_ts").alias("day")).agg(n=pl.len())
    days = days.join(per_day, on=["member_id", "day"], how="left").with_columns(pl.col("n").fill_null(0))
    measured = _mean(days.filter(pl.col("t") >= 7)["n"]) / _mean(days.filter(pl.col("t") <= 1)["n"])
    decay = lambda t: cfg.disengage_floor + (1 - cfg.disengage_floor) * np.exp(-np.asarray(t) / cfg.disengage_decay_days)  # noqa: E731
    predicted = decay(np.arange(7, 11)).mean() / decay(np.arange(0, 2)).mean()
    assert measured == pytest.approx(predicted, rel=0.25), (measured, predicted)


def test_a_better_ranker_keeps_more_members():
    """Satisfying feeds lower the disengagement hazard: the oracle ranker's world has fewer spells and more sessions than random feeds'."""
    cfg = LIFE.replace(n_members=1500, n_days=21)
    oracle = simulate(cfg, seed=3, ranker=OracleRanker(cfg, world_members(cfg, 3)))
    random = simulate(cfg, seed=3, ranker=RandomRanker())
    spells = [w.truth_tables["disengagement"].filter(pl.col("first_day") >= 1).height for w in (oracle, random)]
    assert spells[0] < 0.6 * spells[1]
    assert oracle.tables["sessions"].height > random.tables["sessions"].height


def test_lifecycle_truth_tables_and_same_seed_same_tables():
    cfg = LIFE.replace(n_members=300, n_days=10)
    a, b = simulate(cfg, seed=1), simulate(cfg, seed=1)
    for name in a.truth_tables:
        assert a.truth_tables[name].equals(b.truth_tables[name]), name
    for name in a.tables:
        assert a.tables[name].equals(b.tables[name]), name
    t = a.truth_tables
    # Phases tile every member's days: one phase per member and day.
    ph = t["phases"]
    assert (ph["last_day"] - ph["first_day"] + 1).sum() == cfg.n_members * cfg.n_days
    # Each transition starts the phase that follows: its day is a phase's first day, its to-intent that phase's.
    tr = t["transitions"].join(ph, left_on=["member_id", "day"], right_on=["member_id", "first_day"], how="left")
    assert (tr["to_intent"] == tr["intent"]).all()
    assert set(t["intent_paths"].columns) >= {"expected_rate"} and (t["intent_paths"]["expected_rate"] > 0).all()
    assert {"phase_mean_days", "trend", "next"} <= set(a.truth["intents"][0])


def test_streamed_run_writes_the_lifecycle_truth(tmp_path):
    """simulate_to writes transitions (before day 0) and disengagement (after the last day) as the in-memory run holds them."""
    from simulate import simulate_to

    cfg = LIFE.replace(n_members=200, n_days=6)
    streamed = simulate_to(tmp_path / "o", cfg, seed=4, keep_tables=False)
    in_memory = simulate(cfg, seed=4)
    assert set(streamed.truth_tables) == {"updates"}
    for name in ("phases", "transitions", "disengagement", "intent_paths"):
        assert pl.read_parquet(tmp_path / "o" / "truth" / f"{name}.parquet").equals(in_memory.truth_tables[name]), name
