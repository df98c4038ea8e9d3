"""The curve of the post: empirical dwell CDFs and P(action | dwell) per bin by Bayes' rule.

Over dwell bins ``[a, b)``, with F_A and F the empirical CDFs of dwell for
impressions with an action and for all of them,

    P(action | dwell in [a, b)) = P(action) * (F_A(b) - F_A(a)) / (F(b) - F(a)),

with a binomial confidence interval (Wilson by default) on each bin's counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ranking.tskip.config import DEFAULT_CONFIG, TskipConfig
from ranking.tskip.counts import BinnedCounts

__all__ = ["BayesCurve", "bayes_curve", "bayes_curves", "binomial_interval", "empirical_cdfs"]


def binomial_interval(count: np.ndarray | int, nobs: np.ndarray | int, alpha: float, method: str) -> tuple[Any, Any]:
    """``statsmodels.stats.proportion.proportion_confint``: the ``1 - alpha`` interval of ``count / nobs``."""
    # Imported here: statsmodels (and scipy behind it) take about a second to import.
    from statsmodels.stats.proportion import proportion_confint

    return proportion_confint(count, nobs, alpha=alpha, method=method)


def _json_list(a: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(a, dtype=np.float64)]


@dataclass(frozen=True)
class BayesCurve:
    """Empirical CDFs and the binned P(action | dwell) of one group.

    Attributes
    ----------
    group : str
    edges : ndarray, shape (K + 1,), seconds
    n : ndarray, shape (K,), int
        Impressions per bin ``[edges[k], edges[k+1])``.
    n_action : ndarray, shape (K,), int
        Impressions with an action per bin.
    cdf_all, cdf_action, cdf_no_action : ndarray, shape (K + 1,)
        F, F_A and F_N at the edges (over all valid rows, overflow included).
    p_action : float
        P(action) over all valid rows.
    probability : ndarray, shape (K,)
        ``p_action * (F_A(b) - F_A(a)) / (F(b) - F(a))``; NaN for empty bins.
    ci_low, ci_high : ndarray, shape (K,)
        Binomial ``1 - alpha`` interval per bin; NaN for empty bins.
    n_total, n_action_total, n_overflow : int
    """

    group: str
    edges: np.ndarray
    n: np.ndarray
    n_action: np.ndarray
    cdf_all: np.ndarray
    cdf_action: np.ndarray
    cdf_no_action: np.ndarray
    p_action: float
    probability: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_total: int
    n_action_total: int
    n_overflow: int
    alpha: float = 0.05
    ci_method: str = "wilson"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists (NaN becomes null)."""
        return {
            "group": self.group,
            "n_total": self.n_total,
            "n_action_total": self.n_action_total,
            "n_overflow": self.n_overflow,
            "p_action": self.p_action,
            "ci": {"alpha": self.alpha, "method": self.ci_method},
            "edges_s": _json_list(self.edges),
            "counts": self.n.tolist(),
            "action_counts": self.n_action.tolist(),
            "probability": _json_list(self.probability),
            "ci_low": _json_list(self.ci_low),
            "ci_high": _json_list(self.ci_high),
            "cdf_all": _json_list(self.cdf_all),
            "cdf_action": _json_list(self.cdf_action),
            "cdf_no_action": _json_list(self.cdf_no_action),
        }


def empirical_cdfs(counts: BinnedCounts, group: str | None = None) -> dict[str, np.ndarray]:
    """Empirical dwell CDFs at the bin edges, with and without an action.

    Parameters
    ----------
    counts : BinnedCounts
    group : str, optional
        One group's CDFs; default: all groups pooled.

    Returns
    -------
    dict
        ``edges`` (seconds, shape (K + 1,)) and ``all``, ``action``,
        ``no_action``: P(dwell < edge) within each population.  Dwell at or
        above the last edge counts in the totals, so the CDFs may end below 1.
    """
    c = counts.total() if group is None else counts.group(group)
    n, x = c.n[0], c.x[0]
    return {
        "edges": counts.edges.copy(),
        "all": _cdf(n),
        "action": _cdf(x),
        "no_action": _cdf(n - x),
    }


def _cdf(counts: np.ndarray) -> np.ndarray:
    tot = counts.sum()
    cum = np.concatenate([[0], np.cumsum(counts[:-1])]).astype(np.float64)  # last column is overflow
    return cum / tot if tot > 0 else np.full(cum.shape, np.nan)


def bayes_curve(counts: BinnedCounts, group: str | None = None, config: TskipConfig = DEFAULT_CONFIG) -> BayesCurve:
    """P(action | dwell in [a, b)) by Bayes' rule from the empirical CDFs.

    ``P(action) * (F_A(b) - F_A(a)) / (F(b) - F(a))`` per bin, with the
    binomial interval of ``statsmodels.stats.proportion.proportion_confint``
    (``config.ci_method`` at level ``1 - config.alpha``) on the bin's counts.

    Parameters
    ----------
    counts : BinnedCounts
    group : str, optional
        One group's curve; default: all groups pooled.
    config : TskipConfig
        Only ``alpha`` and ``ci_method`` are used.
    """
    c = counts.total() if group is None else counts.group(group)
    return bayes_curves(c.groups, c.n, c.x, counts.edges, config)[0]


def bayes_curves(labels: Sequence[str], n_all: np.ndarray, x_all: np.ndarray, edges: np.ndarray, config: TskipConfig) -> list[BayesCurve]:
    """:func:`bayes_curve` of several rows of counts (shape (G, K + 1)) at once.

    One ``proportion_confint`` call for all of them: each call costs a fraction
    of a millisecond whatever its size, a visible share of a small estimate.
    """
    n_all = np.asarray(n_all, dtype=np.int64)
    x_all = np.asarray(x_all, dtype=np.int64)
    N, X = n_all.sum(1), x_all.sum(1)
    n, x = n_all[:, :-1], x_all[:, :-1]  # the last column is overflow
    m = n > 0
    lo = np.full(n.shape, np.nan)
    hi = np.full(n.shape, np.nan)
    if m.any():
        lo[m], hi[m] = binomial_interval(x[m], n[m], config.alpha, config.ci_method)
    curves = []
    for i, label in enumerate(labels):
        F, FA, FN = _cdf(n_all[i]), _cdf(x_all[i]), _cdf(n_all[i] - x_all[i])
        p_a = int(X[i]) / int(N[i]) if N[i] else float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            dF = np.diff(F)
            dFA = np.diff(FA) if X[i] else np.zeros_like(dF)
            prob = np.where(m[i], p_a * dFA / dF, np.nan)
        # Roundoff can move p a hair outside its own interval; the interval is what the rule uses.
        prob = np.where(m[i], np.clip(prob, 0.0, 1.0), np.nan)
        curves.append(
            BayesCurve(
                group=label,
                edges=edges.copy(),
                n=n[i].copy(),
                n_action=x[i].copy(),
                cdf_all=F,
                cdf_action=FA,
                cdf_no_action=FN,
                p_action=p_a,
                probability=prob,
                ci_low=np.clip(lo[i], 0.0, 1.0),
                ci_high=np.clip(hi[i], 0.0, 1.0),
                n_total=int(N[i]),
                n_action_total=int(X[i]),
                n_overflow=int(n_all[i, -1]),
                alpha=config.alpha,
                ci_method=config.ci_method,
            )
        )
    return curves
