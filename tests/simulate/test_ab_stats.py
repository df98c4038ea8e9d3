"""A/B statistics against independent references: scipy's Welch test, closed forms of CUPED and the chi-square SRM check.

No test here compares the code with its own earlier output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from simulate.ab import compare_arms, srm_test


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
    lo, _hi, p = _welch_reference(np.array([3.0, 4.0, 6.0]), np.array([1.0, 2.0, 4.0, 5.0]), 0.05)
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
