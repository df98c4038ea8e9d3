"""The statistics of an A/B test from its per-member aggregates: the one path simulated and logged experiments share.

:func:`member_table` joins each member's arm, aggregates and metrics (and
the pre-period metrics, the CUPED covariates); :func:`arm_effects` compares
the arms metric by metric and checks the sample ratio.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from simulate.ab.config import ARMS
from simulate.ab.metrics import METRICS, member_metrics
from simulate.ab.stats import compare_arms, srm_test

__all__ = ["arm_effects", "member_table"]


def member_table(arms: pl.DataFrame, experiment: pl.DataFrame, pre: pl.DataFrame | None, n_days: int, pre_days: int) -> pl.DataFrame:
    """Per member, sorted by member_id: arm, experiment-period aggregates and metrics, ``pre_<metric>`` covariates.

    Parameters
    ----------
    arms : DataFrame
        member_id, arm (one of :data:`simulate.ab.ARMS`) of the members in the experiment.
    experiment, pre : DataFrame
        :func:`simulate.ab.window_aggregates` of the experiment period and of the
        pre-period (None: no pre-period).
    n_days, pre_days : int
        Lengths of the two periods (the denominators of per-day metrics).
    """
    metrics = member_metrics(experiment, n_days)
    members = arms.join(experiment, on="member_id").join(metrics, on="member_id")
    if pre is not None:
        pre_metrics = member_metrics(pre, pre_days)
        members = members.join(pre_metrics.rename({m.name: f"pre_{m.name}" for m in METRICS}), on="member_id")
    # Joins do not promise an order; sums (and any resampling) must see the same one on every machine.
    return members.sort("member_id")


def arm_effects(
    members: pl.DataFrame, split: float, alpha: float, power: float, cuped: bool
) -> tuple[pl.DataFrame, dict[str, Any], list[str]]:
    """One row per metric (:func:`simulate.ab.compare_arms`, metric, description, better), the SRM check and its warning.

    Parameters
    ----------
    members : DataFrame
        :func:`member_table`.
    split : float
        Expected treatment share, for :func:`simulate.ab.srm_test`.
    alpha, power : float
    cuped : bool
        Adjust on the ``pre_<metric>`` columns.

    Returns
    -------
    effects : DataFrame
    srm : dict
    warnings : list of str
        A sample-ratio-mismatch line when the check fails.
    """
    is_t = members["arm"].to_numpy() == ARMS[1]
    rows = []
    for m in METRICS:
        y = members[m.name].to_numpy().astype(float)
        x = members[f"pre_{m.name}"].to_numpy().astype(float) if cuped else None
        res = compare_arms(y[~is_t], y[is_t], alpha, None if x is None else x[~is_t], None if x is None else x[is_t], power)
        rows.append({"metric": m.name, "description": m.description, "better": m.better, **res})
    n_t = int(is_t.sum())
    n_c = int(is_t.size - n_t)
    srm = srm_test(n_c, n_t, split)
    caught = []
    if srm["mismatch"]:
        caught.append(f"sample ratio mismatch: {n_c} control / {n_t} treatment (chi-square p = {srm['p_value']:.2g})")
    return pl.DataFrame(rows), srm, caught
