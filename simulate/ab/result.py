"""What an A/B run produced, and its JSON form (``report.json``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from simulate.ab.config import ABConfig
from simulate.ab.logged_config import LoggedABConfig

__all__ = ["ABResult"]


@dataclass
class ABResult:
    """Everything an A/B run produced.

    Attributes
    ----------
    config : ABConfig or LoggedABConfig
        The simulated test's settings, or a logged experiment's (:func:`simulate.ab.logged_ab_report`).
    members : DataFrame
        Per member: member_id, arm, experiment-period aggregates and metrics,
        and ``pre_<metric>`` covariates when there is a pre-period.
    effects : DataFrame
        One row per metric: see :func:`simulate.ab.compare_arms`, plus metric, description, better.
    daily : DataFrame
        :func:`simulate.ab.daily_trajectories` (day counts from the start of the pre-period).
    srm : dict
        :func:`simulate.ab.srm_test`.
    power : dict
        Standardised MDE at the realised arm sizes, alpha, power.
    rankers : dict
        Arm -> description of its ranker.
    truth : dict
        The simulator's truth per arm: mean over members of the expected skip
        rate given the impressions shown (compare ``skip_rate``), and mean
        true P(engage) of the impressions; see :func:`simulate.truth.arm_truth`.
    ope : dict, optional
        Off-policy evaluation (:func:`simulate.ope.run_ope`) when requested.
    summary : dict
        Simulation summary, timing.
    warnings : list of str
    """

    config: ABConfig | LoggedABConfig
    members: pl.DataFrame
    effects: pl.DataFrame
    daily: pl.DataFrame
    srm: dict[str, Any]
    power: dict[str, Any]
    rankers: dict[str, str]
    truth: dict[str, Any] = field(default_factory=dict)
    ope: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def effect(self, metric: str) -> dict[str, Any]:
        """The row of ``effects`` for one metric, as a dict."""
        rows = self.effects.filter(pl.col("metric") == metric)
        if rows.height != 1:
            raise KeyError(f"metric {metric!r} not in effects; have {self.effects['metric'].to_list()}")
        return rows.row(0, named=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (``report.json``); non-finite numbers of effects and daily rows become null."""
        return {
            "config": self.config.to_dict(),
            "rankers": self.rankers,
            "srm": self.srm,
            "power": self.power,
            "truth": self.truth,
            "effects": [_finite_or_none(r) for r in self.effects.iter_rows(named=True)],
            "daily": [_finite_or_none(r) for r in self.daily.iter_rows(named=True)],
            "ope": self.ope,
            "summary": self.summary,
            "warnings": self.warnings,
        }


def _finite_or_none(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with NaN and infinite floats replaced by None (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
