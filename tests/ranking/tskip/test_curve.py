"""The Bayes curve, the empirical CDFs and the per-bin intervals against independent references.

References: direct counts with numpy/pandas (``np.mean(dwell < edge)``,
groupby ratios), the Wilson interval written out, and closed forms from
scipy.stats CDFs for dwell drawn from known mixtures.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dwellrank_logs.schema import ACTION_COLUMNS
from ranking import TskipConfig, bayes_curve, bin_counts, empirical_cdfs, threshold_from_curve
from tests.ranking.tskip.tskip_worlds import world


def test_bayes_curve_equals_direct_counts_per_type():
    """Reference: pandas groupby of floor(dwell / w) -> mean of any-action (the same quantity, computed directly)."""
    imp, _ = world(2.5, 2)
    cfg = TskipConfig()
    counts = bin_counts(imp, cfg)
    pdf = imp.select("update_type", "dwell_s", *ACTION_COLUMNS).to_pandas()
    pdf["k"] = np.minimum(np.floor(pdf["dwell_s"] / cfg.bin_width_s), cfg.n_bins).astype(int)
    pdf["a"] = pdf[list(ACTION_COLUMNS)].any(axis=1)
    for g in counts.groups:
        sub = pdf[pdf["update_type"] == g]
        ref = sub.groupby("k")["a"].agg(["size", "mean"])
        curve = bayes_curve(counts, g, cfg)
        ks = ref.index.to_numpy()
        ks = ks[ks < cfg.n_bins]
        np.testing.assert_array_equal(curve.n[ks], ref.loc[ks, "size"].to_numpy())
        np.testing.assert_allclose(curve.probability[ks], ref.loc[ks, "mean"].to_numpy(), rtol=1e-9, atol=1e-12)
        assert curve.p_action == pytest.approx(sub["a"].mean())
        empty = np.setdiff1d(np.arange(cfg.n_bins), ks)
        assert np.isnan(curve.probability[empty]).all()


def test_empirical_cdfs_match_numpy_ecdf():
    """Reference: F(e) = mean(dwell < e) within each population, by numpy."""
    imp, _ = world(1.0, 1)
    cfg = TskipConfig(by=None)
    cdfs = empirical_cdfs(bin_counts(imp, cfg))
    d = imp["dwell_s"].to_numpy()
    a = imp.select(pl.any_horizontal(ACTION_COLUMNS)).to_series().to_numpy()
    e = cdfs["edges"][::7]
    np.testing.assert_allclose(cdfs["all"][::7], [(d < x).mean() for x in e], atol=1e-12)
    np.testing.assert_allclose(cdfs["action"][::7], [(d[a] < x).mean() for x in e], atol=1e-12)
    np.testing.assert_allclose(cdfs["no_action"][::7], [(d[~a] < x).mean() for x in e], atol=1e-12)


def test_wilson_interval_matches_closed_form():
    """Reference: the Wilson score interval written out (Wilson 1927), z = 1.959964."""
    imp, _ = world(2.5, 0)
    c = bayes_curve(bin_counts(imp, TskipConfig(by=None)))
    m = c.n > 0
    n, p = c.n[m].astype(float), c.n_action[m] / c.n[m]
    z = stats.norm.ppf(0.975)
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    np.testing.assert_allclose(c.ci_low[m], np.clip(centre - half, 0, 1), atol=1e-9)
    np.testing.assert_allclose(c.ci_high[m], np.clip(centre + half, 0, 1), atol=1e-9)


def _mixture(n: int, seed: int, t0: float, pi: float) -> tuple[pl.DataFrame, stats.rv_continuous, stats.rv_continuous]:
    """Action dwell = t0 + Gamma(2, 3 s); no-action dwell = LogNormal(median 1.2 s, sigma 0.6)."""
    rng = np.random.default_rng(seed)
    act = rng.random(n) < pi
    dist_a = stats.gamma(a=2.0, loc=t0, scale=3.0)
    dist_n = stats.lognorm(s=0.6, scale=1.2)
    dwell = np.where(act, dist_a.rvs(n, random_state=rng), dist_n.rvs(n, random_state=rng))
    frame = pl.DataFrame(
        {"dwell_s": dwell, "clicked": act, "reacted": np.zeros(n, bool), "commented": np.zeros(n, bool), "shared": np.zeros(n, bool)}
    )
    return frame, dist_a, dist_n


def test_bayes_curve_matches_closed_form_within_its_intervals():
    """Closed form: P(A | a <= D < b) = pi dF_A / (pi dF_A + (1 - pi) dF_N) with scipy.stats CDFs."""
    t0, pi = 1.5, 0.3
    frame, dist_a, dist_n = _mixture(400_000, 3, t0, pi)
    cfg = TskipConfig(by=None, max_dwell_s=20.0)
    c = bayes_curve(bin_counts(frame, cfg), None, cfg)
    a, b = c.edges[:-1], c.edges[1:]
    fa, fn = dist_a.cdf(b) - dist_a.cdf(a), dist_n.cdf(b) - dist_n.cdf(a)
    with np.errstate(invalid="ignore"):
        exact = pi * fa / (pi * fa + (1 - pi) * fn)
    m = c.n >= 100
    assert m.sum() > 50
    inside = (c.ci_low[m] - 1e-12 <= exact[m]) & (exact[m] <= c.ci_high[m] + 1e-12)
    assert inside.mean() >= 0.9  # 95 % intervals: about 95 % coverage expected
    # Where the exact curve is 0 (below t0) the estimate is exactly 0, and the threshold is t0.
    assert np.all(c.probability[(b <= t0) & (c.n > 0)] == 0)
    assert threshold_from_curve(c, cfg.eps, cfg.persist, cfg.min_bin_count) == pytest.approx(t0)


def test_closed_form_tail_below_eps_is_not_a_threshold():
    """An action density that only becomes 'non-zero' slowly: P(A | D) stays below eps up to ~2 s."""
    frame, dist_a, dist_n = _mixture(200_000, 4, 0.0, 0.0005)
    cfg = TskipConfig(by=None, max_dwell_s=20.0, min_rows_per_group=10)
    c = bayes_curve(bin_counts(frame, cfg), None, cfg)
    thr = threshold_from_curve(c, cfg.eps, cfg.persist, cfg.min_bin_count)
    # Closed form: first edge where P(A | bin) > eps, give or take sampling noise of a few bins.
    a, b = c.edges[:-1], c.edges[1:]
    fa, fn = dist_a.cdf(b) - dist_a.cdf(a), dist_n.cdf(b) - dist_n.cdf(a)
    exact = 0.0005 * fa / (0.0005 * fa + 0.9995 * fn)
    first_exact = a[np.argmax(exact > cfg.eps)]
    assert thr is not None and thr >= first_exact - cfg.bin_width_s


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 400),
    seed=st.integers(0, 2**32 - 1),
    rate=st.floats(0.0, 1.0),
    w=st.sampled_from([0.1, 0.25, 0.5]),
)
def test_curve_bounds_and_monotone_cdfs(n: int, seed: int, rate: float, w: float):
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({"dwell_s": rng.exponential(3.0, n), "clicked": rng.random(n) < rate})
    cfg = TskipConfig(by=None, action_cols=("clicked",), bin_width_s=w, max_dwell_s=15.0)
    counts = bin_counts(frame, cfg)
    c = bayes_curve(counts, None, cfg)
    assert c.n.sum() + c.n_overflow == n
    m = c.n > 0
    assert np.all((c.ci_low[m] <= c.probability[m] + 1e-12) & (c.probability[m] <= c.ci_high[m] + 1e-12))
    assert np.all((c.ci_low[m] >= 0) & (c.ci_high[m] <= 1))
    for f in (c.cdf_all, c.cdf_action, c.cdf_no_action):
        ok = f[np.isfinite(f)]
        assert np.all(np.diff(ok) >= -1e-12) and (ok.size == 0 or (ok[0] == 0 and ok[-1] <= 1 + 1e-12))
    assert math.isclose(c.p_action, float(np.mean(frame["clicked"].to_numpy())))
