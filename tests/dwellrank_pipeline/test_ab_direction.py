"""The post's experiment in the simulator: with-pskip vs engagement-only moves the metrics the post reports.

Both arms are the ranking engine's trained presets (warm-up 1,000 members x 10 days), one
population of 4,000 members x 14 days + 7 pre-period days, CUPED-adjusted per-member Welch tests.
Measured over seeds 0-4 at this size (polars 2.1, LightGBM 4.7, numpy 2.4): skip rate -4.9% to
-5.3% (p <= 2.4e-12), click rate +6.1% to +8.8% (p <= 0.00018), viral rate +5.4% to +8.3%
(p <= 0.00057), time well spent +4.5% to +11.9% (p <= 0.006 in 4 of 5, 0.12 in the fifth).
At 2,000 members the click effect is too small to detect in every seed (seed 0: +0.0%, p 0.99),
so this size is the smallest that gives the tests below their margin.
"""

from __future__ import annotations

import warnings

import pytest

from dwellrank_pipeline.presets import PresetContext, resolve_ranker
from simulate import WorldConfig
from simulate.ab import ABConfig, run_ab

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def effects() -> dict[str, dict[str, float]]:
    world = WorldConfig(n_members=4000, n_days=14)
    ctx = PresetContext(world=world, seed=0, warmup_members=1000, warmup_days=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        control, treatment = resolve_ranker("engagement-only", ctx), resolve_ranker("with-pskip", ctx)
        r = run_ab(ABConfig(world=world, pre_days=7, seed=0), control, treatment)
    return {row["metric"]: row for row in r.effects.iter_rows(named=True)}


def test_fewer_skips_significant(effects):
    e = effects["skip_rate"]
    assert e["diff"] < 0 and e["ci_high"] < 0 and e["p_value"] < 0.01, e


@pytest.mark.parametrize("metric", ["click_rate", "viral_rate"])
def test_more_clicks_and_virals_significant(effects, metric):
    e = effects[metric]
    assert e["diff"] > 0 and e["ci_low"] > 0 and e["p_value"] < 0.05, e


def test_more_time_well_spent(effects):
    """Direction only: positive in 5 of 5 seeds at this size, significant in 4."""
    e = effects["time_well_spent_s_per_day"]
    assert e["diff"] > 0, e
