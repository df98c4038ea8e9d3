"""Figures of the T_skip estimate in the style of the post.

One row per panel (all impressions, then one per group): on the left the
empirical dwell CDFs of impressions with a click/viral action and without
one; on the right P(action | dwell) per bin with its confidence band and the
chosen T_skip marked.  Uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from dwellrank_logs.io import atomic_file
from ranking.tskip.curve import BayesCurve
from ranking.tskip.result import TskipResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_tskip"]


def plot_tskip(result: TskipResult, path: str | os.PathLike[str], max_dwell_s: float | None = None, dpi: int = 100) -> None:
    """Write the CDF and P(action | dwell) panels of ``result`` as a PNG, atomically.

    Parameters
    ----------
    result : TskipResult
    path : path-like
        Output PNG; untouched if drawing fails.
    max_dwell_s : float, optional, seconds
        Right end of the x axes; default ``max(10, 4 T_skip)`` capped at the
        last bin edge.
    dpi : int
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    panels: list[tuple[str, BayesCurve, float | None]] = [("all impressions", result.curve, result.t_skip_s)]
    for g, c in result.group_curves.items():
        panels.append((f"{result.config.by} = {g}", c, result.groups[g].threshold_s))
    xmax = max_dwell_s if max_dwell_s is not None else min(max(10.0, 4 * result.t_skip_s), float(result.curve.edges[-1]))
    fig: Figure = plt.figure(figsize=(10, 2.6 * len(panels)))
    try:
        axes = fig.subplots(len(panels), 2, squeeze=False)
        for (title, c, thr), (ax_cdf, ax_p) in zip(panels, axes, strict=True):
            _cdf_panel(ax_cdf, c, title, xmax)
            _prob_panel(ax_p, c, title, xmax, result.t_skip_s, thr)
        fig.suptitle(
            f"T_skip = {result.t_skip_s:.2f} s by Bayes' rule ({result.n_rows:,} impressions, bin {result.config.bin_width_s:g} s)",
            fontsize=11,
        )
        fig.tight_layout(rect=(0, 0, 1, 0.98))
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)


def _cdf_panel(ax: Axes, c: BayesCurve, title: str, xmax: float) -> None:
    m = c.edges <= xmax + 1e-9
    ax.plot(c.edges[m], c.cdf_action[m], color="tab:blue", label="click/viral action")
    ax.plot(c.edges[m], c.cdf_no_action[m], color="tab:green", label="no action")
    ax.plot(c.edges[m], c.cdf_all[m], color="0.5", lw=0.8, ls="--", label="all")
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("dwell time per update (s)")
    ax.set_ylabel("P(dwell < T)")
    ax.set_title(f"Empirical CDFs: {title}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def _prob_panel(ax: Axes, c: BayesCurve, title: str, xmax: float, t_skip: float, thr: float | None) -> None:
    mid = 0.5 * (c.edges[:-1] + c.edges[1:])
    m = (mid <= xmax) & np.isfinite(c.probability)
    ax.fill_between(
        mid[m], c.ci_low[m], c.ci_high[m], color="tab:blue", alpha=0.2, lw=0, label="95% interval" if c.alpha == 0.05 else "interval"
    )
    ax.plot(mid[m], c.probability[m], color="tab:blue", label="P(action | dwell)")
    ax.axvline(t_skip, color="tab:red", lw=1.2, label=f"T_skip = {t_skip:.2f} s")
    if thr is not None and abs(thr - t_skip) > 1e-9:
        ax.axvline(thr, color="tab:orange", lw=1, ls=":", label=f"own threshold {thr:.2f} s")
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, None)
    ax.set_xlabel("dwell time T (s)")
    ax.set_ylabel("P(action | dwell = T)")
    ax.set_title(f"P(action | dwell): {title}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
