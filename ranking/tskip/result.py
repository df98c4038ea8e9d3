"""What an estimate returns: the overall T_skip, each group's threshold, the curves, and their report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from ranking.tskip.config import TskipConfig
from ranking.tskip.curve import BayesCurve

__all__ = ["GroupThreshold", "TskipResult"]


def _json_scalar(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass(frozen=True)
class GroupThreshold:
    """One group's threshold and how the overall T_skip fits it.

    Attributes
    ----------
    group : str
    threshold_s : float or None, seconds
        The group's own threshold by the same rule (None: no bin qualified).
    n : int
        Valid impressions in the group.
    n_action : int
    n_below : int
        Impressions with dwell < overall T_skip.
    n_action_below : int
        Of those, with an action (ideally 0: the overall T_skip fits).
    rate_below_ci_high : float
        Upper confidence bound of P(action | dwell < T_skip) in the group.
    fits : bool
        ``|threshold_s - T_skip| <= tolerance`` (False when no threshold).
    """

    group: str
    threshold_s: float | None
    n: int
    n_action: int
    n_below: int
    n_action_below: int
    rate_below_ci_high: float
    fits: bool

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (NaN becomes null)."""
        return {f.name: _json_scalar(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class TskipResult:
    """Outcome of :func:`~ranking.tskip.estimate_tskip`.

    Attributes
    ----------
    t_skip_s : float, seconds
        Overall T_skip (threshold of the pooled curve).
    curve : BayesCurve
        The pooled curve.
    groups : dict of str to GroupThreshold
        Per-group thresholds (empty without ``by``).
    group_curves : dict of str to BayesCurve
    spread_s : float or None, seconds
        max - min of the groups' thresholds (None when fewer than one found).
    max_deviation_s : float or None, seconds
        Largest ``|threshold - T_skip|`` over groups.
    consistent : bool
        One T_skip fits all groups: every group has a threshold within
        ``tolerance_s`` of T_skip.
    config : TskipConfig
    n_rows : int
        Valid impressions used.
    dropped : dict
        Rows dropped per reason.
    source : str
    """

    t_skip_s: float
    curve: BayesCurve
    groups: dict[str, GroupThreshold]
    group_curves: dict[str, BayesCurve]
    spread_s: float | None
    max_deviation_s: float | None
    consistent: bool
    config: TskipConfig
    n_rows: int
    dropped: dict[str, int] = field(default_factory=dict)
    source: str = "<frame>"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: T_skip, per-group thresholds, curves, config."""
        return {
            "t_skip_s": self.t_skip_s,
            "source": self.source,
            "n_rows": self.n_rows,
            "dropped": dict(self.dropped),
            "by": self.config.by,
            "per_group": {g: t.to_dict() for g, t in self.groups.items()},
            "single_tskip": {
                "consistent": self.consistent,
                "spread_s": self.spread_s,
                "max_deviation_s": self.max_deviation_s,
                "tolerance_s": self.config.tolerance,
            },
            "rule": {
                "text": "lower edge of the first bin with n >= min_bin_count whose lower CI bound > eps, "
                "followed by persist - 1 informative bins that also have lower CI bound > eps",
                "eps": self.config.eps,
                "persist": self.config.persist,
                "min_bin_count": self.config.min_bin_count,
                "bin_width_s": self.config.bin_width_s,
            },
            "curve": self.curve.to_dict(),
            "group_curves": {g: c.to_dict() for g, c in self.group_curves.items()},
            "config": self.config.to_dict(),
        }

    def summary(self) -> str:
        """A one-screen text summary."""
        c = self.config
        lines = [
            f"T_skip = {self.t_skip_s:.2f} s  ({self.source}, {self.n_rows:,} impressions, "
            f"P(action) = {self.curve.p_action:.4f}, bin {c.bin_width_s:g} s, eps {c.eps:g}, persist {c.persist})",
        ]
        if self.dropped:
            lines.append("  dropped: " + ", ".join(f"{v:,} {k}" for k, v in self.dropped.items()))
        if self.groups:
            lines.append(f"  {c.by:<14} {'threshold s':>11} {'impressions':>12} {'P(action)':>9} {'actions<T':>9} {'fits':>5}")
            for g, t in self.groups.items():
                thr = "-" if t.threshold_s is None else f"{t.threshold_s:.2f}"
                lines.append(
                    f"  {g:<14} {thr:>11} {t.n:>12,} {t.n_action / t.n if t.n else float('nan'):>9.4f} "
                    f"{t.n_action_below:>9,} {'yes' if t.fits else 'no':>5}"
                )
            spread = "-" if self.spread_s is None else f"{self.spread_s:.2f} s"
            verdict = "one T_skip fits every group" if self.consistent else "one T_skip does NOT fit every group"
            lines.append(f"  spread {spread}, tolerance {c.tolerance:g} s: {verdict}")
        return "\n".join(lines)
