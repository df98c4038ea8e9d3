"""A/B statistics against independent references: closed forms, scipy, a pure-Python splitmix64.

No test here compares the code with its own earlier output.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest
from scipy import stats

from dwellrank_logs.errors import ConfigError
from simulate import WorldConfig, simulate
from simulate.ab import (
    ABConfig,
    SmallExperimentWarning,
    assign_arms,
    assignment_units,
    check_size,
    compare_arms,
    member_aggregates,
    member_metrics,
    minimum_detectable_effect,
    splitmix64,
    srm_test,
)

_MASK = (1 << 64) - 1


def _splitmix64_reference(x: int) -> int:
    """Steele, Lea & Flood (2014), as in Vigna's reference C code, in Python integers."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def test_splitmix64_matches_reference_and_known_vector():
    # Known vector: the first output of a splitmix64 generator seeded with 0 is 0xE220A8397B1DCDAF.
    assert int(splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF
    xs = [0, 1, 2, 12345, 2**32 + 7, 2**63 + 11, _MASK]
    got = splitmix64(np.array(xs, dtype=np.uint64))
    assert [int(v) for v in got] == [_splitmix64_reference(x) for x in xs]


def test_assignment_units_formula_and_order_independence():
    ids = np.arange(1000)
    u = assignment_units(ids, seed=42)
    key = _splitmix64_reference(42)
    ref = np.array([(_splitmix64_reference(int(i) ^ key) >> 11) * 2.0**-53 for i in ids])
    np.testing.assert_array_equal(u, ref)
    perm = np.random.default_rng(0).permutation(ids)
    np.testing.assert_array_equal(assignment_units(perm, 42), u[perm])
    assert (u >= 0).all() and (u < 1).all()


def test_assignment_is_uniform_nested_and_reseeded():
    ids = np.arange(20_000)
    for split in (0.1, 0.5, 0.8):
        arm = assign_arms(ids, split, seed=3)
        n_t = int((arm == "treatment").sum())
        # Binomial(20000, split): the realised share is within 4 sd.
        assert abs(n_t - split * ids.size) < 4 * math.sqrt(ids.size * split * (1 - split))
    small = assign_arms(ids, 0.3, seed=3) == "treatment"
    large = assign_arms(ids, 0.6, seed=3) == "treatment"
    assert (large | ~small).all()  # raising the split only moves members into treatment
    other = assign_arms(ids, 0.5, seed=4) == "treatment"
    same = assign_arms(ids, 0.5, seed=3) == "treatment"
    assert 0.45 < (other == same).mean() < 0.55  # a new seed re-randomises
    # Uniform in 20 buckets (chi-square goodness of fit, scipy as reference).
    counts = np.bincount((assignment_units(ids, 9) * 20).astype(int), minlength=20)
    assert stats.chisquare(counts).pvalue > 0.001


def _welch_reference(yt: np.ndarray, yc: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """Welch-Satterthwaite CI and scipy's p-value."""
    vt, vc = yt.var(ddof=1) / yt.size, yc.var(ddof=1) / yc.size
    df = (vt + vc) ** 2 / (vt**2 / (yt.size - 1) + vc**2 / (yc.size - 1))
    half = stats.t.ppf(1 - alpha / 2, df) * math.sqrt(vt + vc)
    diff = yt.mean() - yc.mean()
    return diff - half, diff + half, stats.ttest_ind(yt, yc, equal_var=False).pvalue


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_compare_arms_welch_matches_scipy_and_closed_form(alpha):
    rng = np.random.default_rng(1)
    yc = rng.gamma(2.0, 1.0, 300)
    yt = rng.gamma(2.0, 1.1, 250)
    out = compare_arms(yc, yt, alpha)
    lo, hi, p = _welch_reference(yt, yc, alpha)
    assert out["diff"] == pytest.approx(yt.mean() - yc.mean(), rel=1e-12)
    assert out["ci_low"] == pytest.approx(lo, rel=1e-9) and out["ci_high"] == pytest.approx(hi, rel=1e-9)
    assert out["p_value"] == pytest.approx(p, rel=1e-9)
    assert out["raw_p_value"] == out["p_value"] and math.isnan(out["theta"])
    assert out["rel_diff"] == pytest.approx(out["diff"] / yc.mean())
    assert (out["n_control"], out["n_treatment"]) == (300, 250)


def test_compare_arms_drops_missing_values():
    yc = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    yt = np.array([np.nan, 3.0, 4.0, 6.0])
    out = compare_arms(yc, yt)
    lo, hi, p = _welch_reference(np.array([3.0, 4.0, 6.0]), np.array([1.0, 2.0, 4.0, 5.0]), 0.05)
    assert (out["n_control"], out["n_treatment"]) == (4, 3)
    assert out["p_value"] == pytest.approx(p) and out["ci_low"] == pytest.approx(lo)


def test_cuped_closed_form_and_variance_reduction():
    """CUPED (Deng et al. 2013): y - theta (x - mean x), theta = cov(x, y) / var(x) pooled.

    The adjusted difference equals raw diff - theta (mean x_t - mean x_c), and the
    variance reduction equals the squared correlation of x and y.
    """
    rng = np.random.default_rng(5)
    n = 4000
    x = rng.normal(10, 3, n)
    y = 2.0 + 0.8 * x + rng.normal(0, 1.5, n)
    t = rng.random(n) < 0.5
    y = y + 0.1 * t
    out = compare_arms(y[~t], y[t], 0.05, x[~t], x[t])
    theta = np.cov(x, y, ddof=0)[0, 1] / x.var()
    assert out["theta"] == pytest.approx(theta, rel=1e-10)
    raw = y[t].mean() - y[~t].mean()
    assert out["raw_diff"] == pytest.approx(raw, rel=1e-12)
    assert out["diff"] == pytest.approx(raw - theta * (x[t].mean() - x[~t].mean()), rel=1e-10)
    assert out["variance_reduction"] == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-10)
    # The adjusted interval is narrower by about sqrt(1 - rho^2) and covers the true 0.1.
    width, raw_width = out["ci_high"] - out["ci_low"], out["raw_ci_high"] - out["raw_ci_low"]
    assert width / raw_width == pytest.approx(math.sqrt(1 - out["variance_reduction"]), rel=0.05)
    assert out["ci_low"] < 0.1 < out["ci_high"]


def test_cuped_fills_missing_covariate_with_pooled_mean():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, 200)
    y = x + rng.normal(0, 0.1, 200)
    xm = x.copy()
    xm[:10] = np.nan
    out = compare_arms(y[:100], y[100:], 0.05, xm[:100], xm[100:])
    filled = np.where(np.isnan(xm), np.nanmean(xm), xm)
    ref = compare_arms(y[:100], y[100:], 0.05, filled[:100], filled[100:])
    assert out["diff"] == pytest.approx(ref["diff"]) and out["theta"] == pytest.approx(ref["theta"])


def test_compare_arms_degenerate_inputs():
    same = compare_arms(np.zeros(5), np.zeros(5))
    assert same["diff"] == 0 and same["p_value"] == 1.0
    tiny = compare_arms(np.array([1.0]), np.array([2.0, 3.0]))
    assert math.isnan(tiny["p_value"]) and tiny["diff"] == pytest.approx(1.5)


@pytest.mark.parametrize(("n_c", "n_t", "split"), [(500, 500, 0.5), (520, 480, 0.5), (700, 300, 0.3), (560, 440, 0.5)])
def test_srm_matches_closed_form_chi_square(n_c, n_t, split):
    n = n_c + n_t
    e_c, e_t = n * (1 - split), n * split
    chi2 = (n_c - e_c) ** 2 / e_c + (n_t - e_t) ** 2 / e_t
    p = math.erfc(math.sqrt(chi2 / 2))  # survival function of chi-square with 1 df
    out = srm_test(n_c, n_t, split)
    assert out["chi2"] == pytest.approx(chi2, rel=1e-12) and out["p_value"] == pytest.approx(p, rel=1e-9)
    assert out["mismatch"] == (p < 0.001)


@pytest.mark.parametrize(("n_c", "n_t", "alpha", "power"), [(2500, 2500, 0.05, 0.8), (4000, 1000, 0.05, 0.9), (2000, 2000, 0.01, 0.8)])
def test_mde_matches_normal_approximation(n_c, n_t, alpha, power):
    """For large n the t-test MDE is (z_{1-alpha/2} + z_power) sqrt(1/n_c + 1/n_t) standard deviations."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    ref = z * math.sqrt(1 / n_c + 1 / n_t)
    assert minimum_detectable_effect(n_c, n_t, alpha, power) == pytest.approx(ref, rel=0.005)


def test_mde_gives_the_requested_power_by_simulation():
    """At the MDE, a Welch test on normal data rejects with about the requested power."""
    d = minimum_detectable_effect(200, 200, 0.05, 0.8)
    rng = np.random.default_rng(11)
    rejections = sum(stats.ttest_ind(rng.normal(d, 1, 200), rng.normal(0, 1, 200)).pvalue < 0.05 for _ in range(800))
    assert abs(rejections / 800 - 0.8) < 4 * math.sqrt(0.8 * 0.2 / 800)


def test_check_size_refuses_warns_and_passes():
    with pytest.raises(
        ConfigError, match=r"members: 40 members at split 0.5 .* minimum detectable effect would be .* use at least \d+ members"
    ):
        check_size(40, 0.5, 0.05, 0.8, 0.5, 0.2)
    with pytest.warns(SmallExperimentWarning, match="can only detect effects of 0.28 standard deviations"):
        assert check_size(400, 0.5, 0.05, 0.8, 0.5, 0.2) == pytest.approx(0.28, abs=0.005)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_size(5000, 0.5, 0.05, 0.8, 0.5, 0.2)


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"split": 0.0}, r"split \(the expected share .*\) must be in the open interval \(0, 1\), got 0.0"),
        ({"split": 1.0}, r"split .* got 1.0"),
        ({"split": 1.5}, r"split .* got 1.5"),
        ({"split": float("nan")}, r"split .* got nan"),
        ({"split": "half"}, r"split .* got 'half'"),
        ({"alpha": 0.0}, r"alpha .* got 0.0"),
        ({"power": 1.0}, r"power .* got 1.0"),
        ({"seed": -1}, r"seed must be a non-negative integer, got -1"),
        ({"pre_days": 1.5}, r"pre_days must be a non-negative integer, got 1.5"),
        ({"max_mde_sd": 0}, r"max_mde_sd must be a number > 0, got 0"),
        ({"t_skip_s": -2.0}, r"t_skip_s must be a number > 0 \(seconds\), got -2.0"),
        ({"ope_reward": "dwell"}, r"ope_reward must be one of \['click', 'viral', 'not_skipped'\], got 'dwell'"),
        ({"ope_temperature": 0.0}, r"ope_temperature must be a number > 0, got 0.0"),
        ({"world": {"n_members": 10}}, r"world must be a WorldConfig, got dict"),
    ],
)
def test_ab_config_rejects_bad_values(changes, pattern):
    with pytest.raises(ConfigError, match=pattern):
        ABConfig(**changes)


def test_assign_arms_rejects_bad_split():
    with pytest.raises(ConfigError, match=r"split .* must be in the open interval \(0, 1\), got -0.1"):
        assign_arms(np.arange(3), -0.1, 0)


def test_member_aggregates_match_a_numpy_reference():
    """Per-member sums recomputed with numpy bincount straight from the log tables."""
    cfg = WorldConfig(n_members=150, n_days=4)
    res = simulate(cfg, seed=2)
    t = res.tables
    t_skip = 2.5
    agg = member_aggregates(t, cfg, t_skip, 1, 3)
    start = int(cfg.start.timestamp())
    sess = t["sessions"]
    day = (sess["start_ts"].dt.epoch("s").to_numpy() - start) // 86400
    in_period = (day >= 1) & (day < 3)
    sid = sess["session_id"].to_numpy()[in_period]
    smem = sess["member_id"].to_numpy()[in_period]
    imp = t["impressions"]
    keep = np.isin(imp["session_id"].to_numpy(), sid)
    mem = imp["member_id"].to_numpy()[keep]
    dwell = imp["dwell_s"].to_numpy()[keep]
    clicked = imp["clicked"].to_numpy()[keep]
    virals = np.stack([imp[c].to_numpy()[keep] for c in ("reacted", "commented", "shared")])
    cd = np.nan_to_num(imp["click_dwell_s"].to_numpy().astype(float))[keep]
    skipped = (dwell < t_skip) & ~clicked & ~virals.any(axis=0)
    n = cfg.n_members

    def bc(w=None, m=mem):
        return np.bincount(m, weights=w, minlength=n)

    np.testing.assert_array_equal(agg["n_impressions"].to_numpy(), bc())
    np.testing.assert_array_equal(agg["n_skipped"].to_numpy(), bc(skipped))
    np.testing.assert_array_equal(agg["n_clicked"].to_numpy(), bc(clicked))
    np.testing.assert_array_equal(agg["n_viral_impressions"].to_numpy(), bc(virals.any(axis=0)))
    np.testing.assert_array_equal(agg["n_virals"].to_numpy(), bc(virals.sum(axis=0)))
    np.testing.assert_allclose(agg["feed_dwell_s"].to_numpy(), bc(dwell))
    np.testing.assert_allclose(agg["time_spent_s"].to_numpy(), bc(dwell + cd))
    np.testing.assert_allclose(agg["time_well_spent_s"].to_numpy(), bc((dwell + cd) * ~skipped))
    np.testing.assert_array_equal(agg["n_sessions"].to_numpy(), np.bincount(smem, minlength=n))
    active = np.zeros(n, int)
    for d in (1, 2):
        active += np.bincount(np.unique(smem[day[in_period] == d]), minlength=n) > 0
    np.testing.assert_array_equal(agg["active_days"].to_numpy(), active)
    m = member_metrics(agg, 2)
    imps = agg["n_impressions"].to_numpy()
    np.testing.assert_allclose(m["skip_rate"].to_numpy()[imps > 0], (bc(skipped) / np.maximum(imps, 1))[imps > 0])
    assert m["skip_rate"].is_null().to_numpy()[imps == 0].all()
    np.testing.assert_allclose(m["sessions_per_day"].to_numpy(), agg["n_sessions"].to_numpy() / 2)
    assert isinstance(m, pl.DataFrame) and m.height == n
