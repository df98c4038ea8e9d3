"""A/B statistics on per-member values: Welch t-tests, CUPED variance reduction, the sample-ratio check.

Computed on one row per member, which respects that one member's impressions
are correlated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulate.ab.power import minimum_detectable_effect

__all__ = ["compare_arms", "srm_test"]


def _welch(y_t: np.ndarray, y_c: np.ndarray, alpha: float) -> tuple[float, float, float, float]:
    """Difference of means (treatment - control), its CI and the Welch p-value."""
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    diff = float(y_t.mean() - y_c.mean())
    if y_t.size < 2 or y_c.size < 2:
        return diff, math.nan, math.nan, math.nan
    if y_t.var() == 0 and y_c.var() == 0:
        return diff, diff, diff, 1.0 if diff == 0 else 0.0
    cm = CompareMeans(DescrStatsW(y_t), DescrStatsW(y_c))
    _, p, _ = cm.ttest_ind(usevar="unequal")
    lo, hi = cm.tconfint_diff(alpha=alpha, usevar="unequal")
    return diff, float(lo), float(hi), float(p)


def compare_arms(
    y_control: np.ndarray,
    y_treatment: np.ndarray,
    alpha: float = 0.05,
    x_control: np.ndarray | None = None,
    x_treatment: np.ndarray | None = None,
    power: float = 0.8,
) -> dict[str, float]:
    """Two-sample comparison of per-member values, optionally CUPED-adjusted.

    Parameters
    ----------
    y_control, y_treatment : ndarray, shape (n_c,), (n_t,)
        Per-member metric values; NaN (no value) are dropped with their covariate.
    alpha : float
        Two-sided level; intervals have confidence ``1 - alpha``.
    x_control, x_treatment : ndarray, optional
        Pre-period covariate of the same members (NaN filled with the pooled mean).
        With them the headline numbers are CUPED-adjusted: ``y - theta (x - mean x)``
        with ``theta = cov(y, x) / var(x)`` pooled over both arms (Deng et al. 2013).
    power : float
        For the MDE in the metric's units.

    Returns
    -------
    dict
        ``mean_control, mean_treatment, diff, ci_low, ci_high, p_value`` (headline,
        CUPED when covariates are given), ``rel_diff, rel_ci_low, rel_ci_high``
        (relative to the control mean, which is treated as known), ``raw_diff,
        raw_ci_low, raw_ci_high, raw_p_value`` (plain Welch), ``theta,
        variance_reduction, n_control, n_treatment, mde, rel_mde``.
    """
    yc, yt = np.asarray(y_control, float), np.asarray(y_treatment, float)
    keep_c, keep_t = ~np.isnan(yc), ~np.isnan(yt)
    yc, yt = yc[keep_c], yt[keep_t]
    out: dict[str, float] = {"n_control": int(yc.size), "n_treatment": int(yt.size)}
    out["mean_control"] = float(yc.mean()) if yc.size else math.nan
    out["mean_treatment"] = float(yt.mean()) if yt.size else math.nan
    raw = _welch(yt, yc, alpha) if yc.size and yt.size else (math.nan,) * 4
    out.update(zip(("raw_diff", "raw_ci_low", "raw_ci_high", "raw_p_value"), raw, strict=True))
    ac, at = yc, yt
    theta, reduction = math.nan, math.nan
    if x_control is not None and x_treatment is not None and yc.size and yt.size:
        xc = np.asarray(x_control, float)[keep_c]
        xt = np.asarray(x_treatment, float)[keep_t]
        x = np.r_[xc, xt]
        fill = np.nanmean(x) if np.isfinite(x).any() else 0.0
        xc, xt, x = (np.where(np.isnan(a), fill, a) for a in (xc, xt, x))
        y = np.r_[yc, yt]
        vx = x.var()
        theta = float(np.mean((x - x.mean()) * (y - y.mean())) / vx) if vx > 0 else 0.0
        ac, at = yc - theta * (xc - x.mean()), yt - theta * (xt - x.mean())
        vy = np.r_[ac, at].var()
        reduction = float(1.0 - vy / y.var()) if y.var() > 0 else 0.0
        headline = _welch(at, ac, alpha)
    else:
        headline = raw
    out.update(zip(("diff", "ci_low", "ci_high", "p_value"), headline, strict=True))
    out["theta"], out["variance_reduction"] = theta, reduction
    base = out["mean_control"]
    for k in ("diff", "ci_low", "ci_high"):
        out["rel_" + k] = out[k] / base if base not in (0.0,) and np.isfinite(base) else math.nan
    sd = float(np.sqrt(0.5 * (ac.var(ddof=1) + at.var(ddof=1)))) if ac.size > 1 and at.size > 1 else math.nan
    out["mde"] = minimum_detectable_effect(ac.size, at.size, alpha, power) * sd
    out["rel_mde"] = out["mde"] / base if base not in (0.0,) and np.isfinite(base) else math.nan
    return out


def srm_test(n_control: int, n_treatment: int, split: float, threshold: float = 0.001) -> dict[str, Any]:
    """Sample-ratio-mismatch check: chi-square goodness of fit of arm sizes to the split.

    Returns ``n_control, n_treatment, expected_treatment_share, observed_treatment_share,
    chi2, p_value, mismatch`` (mismatch: p < ``threshold``).
    """
    from scipy import stats

    n = n_control + n_treatment
    expected = [n * (1 - split), n * split]
    chi2, p = stats.chisquare([n_control, n_treatment], f_exp=expected)
    return {
        "n_control": int(n_control),
        "n_treatment": int(n_treatment),
        "expected_treatment_share": float(split),
        "observed_treatment_share": n_treatment / n if n else math.nan,
        "chi2": float(chi2),
        "p_value": float(p),
        "mismatch": bool(p < threshold),
    }
