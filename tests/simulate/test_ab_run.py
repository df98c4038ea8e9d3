"""End-to-end A/B runs in small worlds: A/A calibration, a known effect, outputs and atomicity."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from dwellrank_logs.errors import ConfigError, OutputExistsError
from simulate import PopularityRanker, RandomRanker, WorldConfig
from simulate.ab import ARMS, METRICS, ABConfig, SmallExperimentWarning, assign_arms, run_ab
from simulate.ab_report import format_ab_table, write_ab
from simulate.truth import OracleRanker, world_members

SMALL = WorldConfig(n_members=400, n_days=5)


def _run(cfg: ABConfig, control, treatment):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallExperimentWarning)
        return run_ab(cfg, control, treatment)


@pytest.fixture(scope="module")
def aa_runs():
    """A/A tests (popularity in both arms), 400 members x (2 + 5) days, seeds 0..19."""
    out = []
    for seed in range(20):
        ranker = PopularityRanker()
        out.append(_run(ABConfig(world=SMALL, pre_days=2, seed=seed), ranker, ranker))
    return out


def test_aa_false_positive_rate(aa_runs):
    """Under the null each test rejects with probability 0.05: 0-3 of 20 on the primary metric
    (P(X > 3) = 0.016 for Binomial(20, 0.05)), and over all 11 metrics x 20 seeds at most 24 of 220
    (the 99.9% quantile of Binomial(220, 0.05) is 22; metrics are correlated, so we allow a little more)."""
    primary = [r.effect("click_rate")["p_value"] for r in aa_runs]
    assert sum(p < 0.05 for p in primary) <= 3
    every = [p for r in aa_runs for p in r.effects["p_value"].to_list()]
    assert len(every) == 20 * len(METRICS)
    assert sum(p < 0.05 for p in every) <= 24
    assert stats.binom.ppf(0.999, 220, 0.05) == 22
    # The A/A runs pass the SRM check (p < 0.001 would flag a broken assignment).
    assert not any(r.srm["mismatch"] for r in aa_runs)


def test_aa_intervals_cover_zero(aa_runs):
    covered = [r.effect(m.name)["ci_low"] <= 0 <= r.effect(m.name)["ci_high"] for r in aa_runs for m in METRICS]
    assert np.mean(covered) >= 0.9


@pytest.fixture(scope="module")
def oracle_vs_random():
    cfg = ABConfig(world=SMALL, pre_days=2, seed=11)
    oracle = OracleRanker(cfg.simulation, world_members(cfg.simulation, cfg.seed))
    return _run(cfg, RandomRanker(), oracle)


def test_known_effect_is_detected(oracle_vs_random):
    """Ranking by the true engagement probability beats random order on every quality metric."""
    r = oracle_vs_random
    skip, click, well = r.effect("skip_rate"), r.effect("click_rate"), r.effect("time_well_spent_s_per_day")
    assert skip["ci_high"] < 0 and skip["p_value"] < 1e-6
    assert click["ci_low"] > 0 and click["p_value"] < 1e-6
    assert well["ci_low"] > 0 and well["p_value"] < 1e-3
    assert r.effect("viral_rate")["ci_low"] > 0


def test_measured_skip_rates_match_the_simulators_truth(oracle_vs_random):
    """Per arm, the mean of members' skip rates is within 4 standard errors of its expectation
    under the true response model given the impressions shown (simulate.truth.arm_truth), and the
    true P(engage) is higher in the oracle arm."""
    r = oracle_vs_random
    for arm in ARMS:
        assert r.truth[arm]["true_skip_rate"] == pytest.approx(
            r.effect("skip_rate")["mean_control" if arm == "control" else "mean_treatment"], abs=0.03
        )
    assert r.truth["treatment"]["true_engage_rate"] > r.truth["control"]["true_engage_rate"] + 0.1


def test_popularity_beats_random_on_skips_and_clicks():
    cfg = ABConfig(world=WorldConfig(n_members=1000, n_days=7), pre_days=2, seed=1)
    r = _run(cfg, RandomRanker(), PopularityRanker())
    assert r.effect("skip_rate")["ci_high"] < 0
    assert r.effect("click_rate")["ci_low"] > 0


def test_arms_are_the_hashed_assignment(oracle_vs_random):
    r = oracle_vs_random
    expected = assign_arms(r.members["member_id"].to_numpy(), 0.5, 11)
    np.testing.assert_array_equal(r.members["arm"].to_numpy(), expected)
    assert r.srm["n_control"] + r.srm["n_treatment"] == SMALL.n_members
    assert set(r.daily["arm"].unique()) == set(ARMS)
    assert r.daily.height == 2 * (SMALL.n_days + 2)


def test_same_seed_same_result():
    cfg = ABConfig(world=WorldConfig(n_members=300, n_days=3), pre_days=1, seed=5)
    a = _run(cfg, RandomRanker(), PopularityRanker())
    b = _run(cfg, RandomRanker(), PopularityRanker())
    assert a.effects.equals(b.effects)
    for col in a.members.columns:
        assert a.members[col].equals(b.members[col]), (col, a.members[col].head(), b.members[col].head())


def test_no_pre_period_means_no_cuped():
    cfg = ABConfig(world=WorldConfig(n_members=300, n_days=3), pre_days=0, seed=5)
    r = _run(cfg, RandomRanker(), PopularityRanker())
    e = r.effect("click_rate")
    assert math.isnan(e["theta"]) and e["p_value"] == e["raw_p_value"]
    assert not any(c.startswith("pre_") for c in r.members.columns)


def test_too_few_members_refused_before_simulating():
    cfg = ABConfig(world=WorldConfig(n_members=30, n_days=2), seed=0)

    class Boom:
        def rank(self, *a):  # pragma: no cover - must not be called
            raise AssertionError("simulated despite too few members")

    with pytest.raises(ConfigError, match=r"members: 30 members .* too few for a meaningful test"):
        run_ab(cfg, Boom(), Boom())


def test_small_experiment_warns_with_the_mde():
    cfg = ABConfig(world=WorldConfig(n_members=200, n_days=2), pre_days=0, seed=0)
    with pytest.warns(SmallExperimentWarning, match=r"can only detect effects of 0.\d\d standard deviations"):
        r = run_ab(cfg, RandomRanker(), RandomRanker())
    assert any("standard deviations" in w for w in r.warnings)


def test_bad_ranker_is_refused():
    with pytest.raises(ConfigError, match="treatment ranker must have a rank"):
        run_ab(ABConfig(world=SMALL), RandomRanker(), object())


def test_write_ab_outputs(tmp_path: Path, oracle_vs_random):
    out = write_ab(oracle_vs_random, tmp_path / "ab")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["daily.parquet", "effects.parquet", "members.parquet", "report.json", "report.png", "report.txt"]
    report = json.loads((out / "report.json").read_text())
    assert [e["metric"] for e in report["effects"]] == [m.name for m in METRICS]
    assert report["srm"]["n_control"] + report["srm"]["n_treatment"] == 400
    members = pl.read_parquet(out / "members.parquet")
    assert members.height == 400 and {"arm", "skip_rate", "pre_skip_rate", "n_impressions"} <= set(members.columns)
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_ab_table(oracle_vs_random)
    assert len(table.splitlines()) <= 24 and "skip_rate" in table and "CUPED" in table


def test_write_ab_is_atomic(tmp_path: Path, oracle_vs_random, monkeypatch):
    import simulate.ab_report as rep

    def broken(*a, **k):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(rep, "plot_report", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_ab(oracle_vs_random, tmp_path / "ab")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not empty"):
        write_ab(oracle_vs_random, tmp_path / "full")
