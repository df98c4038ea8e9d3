"""The A/B run: one population, two arms, one closed loop, then the statistics.

Members are randomised by a hash of their id and the seed; each arm's feeds
are ranked by its ranker for the whole horizon while the closed loop runs
(feed quality -> satisfaction -> return rate -> sessions; viral feedback ->
authors post more).  An optional pre-period, in which everyone gets the
control ranker, provides the CUPED covariate.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import polars as pl

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.protocol import HistoryTables, Ranker, RankerBase, RankOutput, ranker_description, ranker_t_skip_s
from simulate.ab.aggregates import daily_trajectories, member_aggregates
from simulate.ab.analysis import arm_effects, member_table
from simulate.ab.assign import assign_arms
from simulate.ab.config import ARMS, ABConfig
from simulate.ab.power import SmallExperimentWarning, check_size, minimum_detectable_effect
from simulate.ab.result import ABResult
from simulate.config import DAY_US
from simulate.engine import SimulationResult, simulate
from simulate.ope import OPEConfig, run_ope
from simulate.output import write_simulation
from simulate.truth import arm_truth

__all__ = ["run_ab"]


class _Phased(RankerBase):
    """Ranks with ``pre`` before ``switch_us`` (request time) and with ``post`` from then on.

    The simulator calls a ranker once per day with that day's requests, so
    one call never straddles the switch.
    """

    def __init__(self, pre: Ranker, post: Ranker, switch_us: int) -> None:
        self.pre, self.post, self.switch_us = pre, post, switch_us
        self.t_skip_s = ranker_t_skip_s(post) or ranker_t_skip_s(pre)

    def rank(self, candidates: pl.DataFrame, history: HistoryTables, rng: np.random.Generator) -> RankOutput:
        first = cast("int | None", candidates["request_ts"].dt.epoch("us").min())
        ranker = self.post if first is None or first >= self.switch_us else self.pre
        return ranker.rank(candidates, history, rng)


def run_ab(
    config: ABConfig,
    control: Ranker,
    treatment: Ranker,
    progress: Callable[[int], None] | None = None,
    names: dict[str, str] | None = None,
    logs_out: str | os.PathLike[str] | None = None,
) -> ABResult:
    """Simulate one population with two arms in a closed loop and compare them.

    Parameters
    ----------
    config : ABConfig
    control, treatment : Ranker
        The arms' rankers (the same object in both arms makes an A/A test).
    progress : callable, optional
        Called with the number of simulated days completed.
    names : dict, optional
        Arm -> label for the report (default: the rankers' descriptions).
    logs_out : path-like, optional
        Also write the simulation's logs here (:func:`simulate.write_simulation`: the
        six tables, ``members.arm`` filled, and the truth), as an online experiment
        would log them: the input of :func:`simulate.ab.logged_ab_report`.

    Raises
    ------
    ConfigError
        Too few members for a meaningful test (see :func:`simulate.ab.check_size`), or a bad ranker.
    """
    for arm_name, r in zip(ARMS, (control, treatment), strict=True):
        if not hasattr(r, "rank"):
            raise ConfigError(f"{arm_name} ranker must have a rank(candidates, history, rng) method, got {type(r).__name__}")
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", SmallExperimentWarning)
        d_expected = check_size(config.world.n_members, config.split, config.alpha, config.power, config.max_mde_sd, config.warn_mde_sd)
    for item in w:
        caught.append(str(item.message))
        warnings.warn(item.message, SmallExperimentWarning, stacklevel=2)

    # 1. Assign members to arms; the treatment arm gets the control ranker until the pre-period ends.
    sim_cfg = config.simulation
    arm = assign_arms(np.arange(sim_cfg.n_members), config.split, config.seed)
    switch_us = sim_cfg.start_us + config.pre_days * DAY_US
    rankers = {
        ARMS[0]: control,
        ARMS[1]: _Phased(control, treatment, switch_us) if config.pre_days else treatment,
    }
    # 2. Simulate both arms in one closed loop.
    t0 = time.perf_counter()
    sim = simulate(sim_cfg, seed=config.seed, ranker=rankers, member_arm=arm, progress=progress)
    t_sim = time.perf_counter() - t0
    if logs_out is not None:
        write_simulation(sim, logs_out)

    # 3. Per-member metrics, their comparison, the sample-ratio check, daily trajectories and the truth.
    t0 = time.perf_counter()
    t_skip = config.resolved_t_skip_s
    members = _member_table(sim, config, t_skip)
    effects, srm, srm_warning = arm_effects(members, config.split, config.alpha, config.power, cuped=config.pre_days > 0)
    caught += srm_warning
    n_t = srm["n_treatment"]
    n_c = srm["n_control"]
    daily = daily_trajectories(sim.tables, sim_cfg, t_skip)
    truth = _truth_by_arm(arm_truth(sim.tables, sim.truth_tables["impressions"], sim_cfg, t_skip, config.pre_days))
    power = {
        "alpha": config.alpha,
        "power": config.power,
        "mde_sd_expected": d_expected,
        "mde_sd": minimum_detectable_effect(n_c, n_t, config.alpha, config.power),
    }
    labels = names or {}
    t_analyse = time.perf_counter() - t0

    # 4. Optionally, off-policy evaluation of both rankers from an exploring control's logs.
    t0 = time.perf_counter()
    ope = None
    if config.ope:
        ope_cfg = OPEConfig(
            world=config.world,
            seed=config.seed,
            reward=config.ope_reward,
            temperature=config.ope_temperature,
            alpha=config.alpha,
            feed_k=config.ope_k,
        )
        ope = run_ope(ope_cfg, control, {ARMS[0]: control, ARMS[1]: treatment})
        for name, t in ope["targets"].items():
            if t["ess"] < 100:
                caught.append(f"OPE of {name}: effective sample size {t['ess']:.0f} < 100, its normal intervals are unreliable")
    summary = {
        "simulation": sim.summary,
        "member_days": sim_cfg.n_members * sim_cfg.n_days,
        "simulate_s": round(t_sim, 3),
        "analyse_s": round(t_analyse, 3),
        "ope_s": round(time.perf_counter() - t0, 3),
    }
    return ABResult(
        config=config,
        members=members,
        effects=effects,
        daily=daily,
        srm=srm,
        power=power,
        rankers={
            ARMS[0]: labels.get(ARMS[0], ranker_description(control)),
            ARMS[1]: labels.get(ARMS[1], ranker_description(treatment)),
        },
        truth=truth,
        ope=ope,
        summary=summary,
        warnings=caught,
    )


def _member_table(sim: SimulationResult, config: ABConfig, t_skip_s: float) -> pl.DataFrame:
    """Per member, sorted by member_id: arm, experiment-period aggregates and metrics, ``pre_<metric>`` covariates."""
    sim_cfg = config.simulation
    agg = member_aggregates(sim.tables, sim_cfg, t_skip_s, config.pre_days, sim_cfg.n_days)
    pre = member_aggregates(sim.tables, sim_cfg, t_skip_s, 0, config.pre_days) if config.pre_days else None
    return member_table(sim.tables["members"].select("member_id", "arm"), agg, pre, config.world.n_days, config.pre_days)


def _truth_by_arm(truth_members: pl.DataFrame) -> dict[str, Any]:
    """Per arm: means over members of :func:`simulate.truth.arm_truth`'s true skip and engage rates."""
    truth: dict[str, Any] = {
        arm_name: {
            "true_skip_rate": float(np.mean(g["true_skip_rate"].to_numpy())),
            "true_engage_rate": float(np.mean(g["true_engage_rate"].to_numpy())),
        }
        for arm_name in ARMS
        for g in [truth_members.filter(pl.col("arm") == arm_name).drop_nulls("true_skip_rate")]
    }
    truth["note"] = "means over members with impressions in the experiment period; true_skip_rate is the expectation of skip_rate"
    return truth
