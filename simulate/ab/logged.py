"""A/B analysis of logged experiments: per-member metrics by arm from any logs whose ``members.arm`` is filled.

A platform's own online experiment, its logs mapped onto the schema
(``docs/schema.md``), gets the statistics of the simulated A/B test: the same
per-member aggregates and metrics, Welch tests, CUPED on a pre-period, the
sample-ratio check and report.  Only the reduction of the logs to per-member
aggregates depends on the engine: :func:`reduce_logs` here (polars, lazy) or
:func:`simulate.ab.logged_spark.reduce_logs_spark`; both return a
:class:`LogReduction`, checked and analysed by the shared code below.

Members whose arm is null are outside the experiment: they are counted in the
report and left out of every sum.  Impressions count towards the UTC day their
session started; the logs' days run from the first session's to the last's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from dwellrank_logs.engine import check_engine
from dwellrank_logs.errors import SchemaError
from dwellrank_logs.read import scan_table, table_path
from simulate.ab.aggregates import arm_daily, window_aggregates
from simulate.ab.analysis import arm_effects, member_table
from simulate.ab.config import ARMS
from simulate.ab.logged_config import LoggedABConfig, Period, resolve_period
from simulate.ab.power import minimum_detectable_effect
from simulate.ab.result import ABResult

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["NEEDED_COLUMNS", "LogReduction", "analyse_reduction", "experiment_members", "logged_ab_report", "reduce_logs"]

#: The columns the analysis reads, per table, in the order the tables are read and checked.
NEEDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "members": ("member_id", "arm"),
    "sessions": ("member_id", "session_id", "start_ts"),
    "impressions": (
        "member_id",
        "session_id",
        "dwell_s",
        "clicked",
        "reacted",
        "commented",
        "shared",
        "click_dwell_s",
        "downstream_virals",
    ),
}

# Above this many standard deviations the experiment can detect only large effects (ABConfig's warn_mde_sd).
_WARN_MDE_SD = 0.2


@dataclass(frozen=True)
class LogReduction:
    """What an engine reduces the logs to: per-member aggregates by arm, and per-arm daily sums.

    Attributes
    ----------
    arms : DataFrame
        member_id (sorted), arm (:data:`simulate.ab.ARMS`) of the members in the experiment.
    experiment, pre : DataFrame
        :func:`simulate.ab.window_aggregates` of the experiment period and of the pre-period
        (None without one), row for row with ``arms``.
    daily : DataFrame
        :func:`simulate.ab.arm_daily` over the logged days.
    period : Period
    n_outside : int
        Members whose arm is null.
    sources : dict of str to str
        Each table's name in messages (its path).
    """

    arms: pl.DataFrame
    experiment: pl.DataFrame
    pre: pl.DataFrame | None
    daily: pl.DataFrame
    period: Period
    n_outside: int
    sources: dict[str, str]


def logged_ab_report(
    logs: str | os.PathLike[str] | Mapping[str, Any],
    config: LoggedABConfig,
    engine: str = "polars",
    spark: SparkSession | None = None,
) -> ABResult:
    """The A/B report of a logged experiment: per-member metrics by arm, effects (CUPED with a pre-period), SRM.

    Parameters
    ----------
    logs : path-like or mapping of table name to Spark DataFrame
        A logs directory (``members``, ``sessions``, ``impressions``); with
        ``engine='spark'`` also a URI Spark resolves or the tables as Spark DataFrames.
    config : LoggedABConfig
    engine : {'polars', 'spark'}
    spark : SparkSession, optional
        The caller's session, for ``engine='spark'`` (default: the active one).

    Returns
    -------
    ABResult
        As :func:`simulate.ab.run_ab` returns it, with ``config`` the resolved
        :class:`LoggedABConfig` (``pre_days`` and ``experiment_start`` both set), no
        truth or OPE, and ``summary`` holding the period, the engine and the counts.

    Raises
    ------
    SchemaError
        A table is missing or breaks the schema; ``members.arm`` holds an unknown
        label, or not both arms; no session, or no impression of an experiment
        member in the experiment period.
    ConfigError
        The pre-period does not fit the logs.
    """
    check_engine(engine)
    t0 = time.perf_counter()
    if engine == "spark":
        from simulate.ab.logged_spark import reduce_logs_spark

        red = reduce_logs_spark(logs, config, spark)
    else:
        if isinstance(logs, Mapping):
            raise SchemaError("the polars engine reads a logs directory; pass a path (Spark DataFrames need engine='spark')")
        red = reduce_logs(logs, config)
    t_reduce = time.perf_counter() - t0
    where = "<tables>" if isinstance(logs, Mapping) else os.fspath(logs)
    return analyse_reduction(red, config, {"engine": engine, "logs": str(where), "reduce_s": round(t_reduce, 3)})


def reduce_logs(logs: str | os.PathLike[str], config: LoggedABConfig) -> LogReduction:
    """The reduction on polars: tables scanned lazily, only the needed columns read.

    Raises
    ------
    SchemaError, ConfigError
        As :func:`logged_ab_report`.
    """
    d = Path(logs)
    if not d.is_dir():
        raise SchemaError(f"{d}: not a directory of log tables")
    sources = {t: str(table_path(d, t)) for t in NEEDED_COLUMNS}
    tables = {t: scan_table(table_path(d, t), t, columns=cols) for t, cols in NEEDED_COLUMNS.items()}
    arms, n_outside = experiment_members(tables["members"].select("member_id", "arm").collect(), config, sources["members"])
    span = tables["sessions"].select(
        pl.col("start_ts").dt.epoch("us").min().alias("lo"), pl.col("start_ts").dt.epoch("us").max().alias("hi")
    )
    lo, hi = span.collect().row(0)
    period = resolve_period(lo, hi, config, sources["sessions"])
    ids = arms["member_id"].to_numpy()
    windows = [period.experiment_us] + ([period.pre_us] if period.pre_days else [])
    aggs = window_aggregates(tables, config.t_skip_s, windows, member_ids=ids)
    exp_tables = {**tables, "members": arms.lazy()}
    daily = arm_daily(exp_tables, config.t_skip_s, period.start_us, period.pre_days + period.n_days)
    return LogReduction(
        arms=arms,
        experiment=aggs[0],
        pre=aggs[1] if period.pre_days else None,
        daily=daily,
        period=period,
        n_outside=n_outside,
        sources=sources,
    )


def experiment_members(members: pl.DataFrame, config: LoggedABConfig, source: str) -> tuple[pl.DataFrame, int]:
    """The members in the experiment (member_id sorted, arm as :data:`simulate.ab.ARMS`) and the number outside it.

    Parameters
    ----------
    members : DataFrame
        member_id, arm (String, null outside the experiment) of every member.
    config : LoggedABConfig
        ``arms``: the labels of control and treatment.
    source : str
        The members table's name in messages.

    Raises
    ------
    SchemaError
        No members; an arm label other than the two (or null); no member with an arm;
        members in one arm only.
    """
    control, treatment = config.arms
    expected = f"{control!r} (control), {treatment!r} (treatment) or null (outside the experiment)"
    if members.height == 0:
        raise SchemaError(f"{source}: the members table has no rows; the A/B analysis needs members in both arms")
    labels = members["arm"].cast(pl.String)
    bad = sorted(set(labels.drop_nulls().unique().to_list()) - {control, treatment})
    if bad:
        raise SchemaError(f"{source}: column 'arm' has unknown value(s) {bad[:5]}; expected {expected}")
    n_arm = {a: int((labels == a).sum()) for a in config.arms}
    if not any(n_arm.values()):
        raise SchemaError(
            f"{source}: column 'arm' is null for all {members.height:,} members: nobody is in the experiment (expected {expected})"
        )
    if not all(n_arm.values()):
        only = control if n_arm[control] else treatment
        raise SchemaError(
            f"{source}: column 'arm' has only {only!r} ({n_arm[only]:,} members); the A/B analysis needs both "
            f"{control!r} (control) and {treatment!r} (treatment)"
        )
    inside = members.select(
        pl.col("member_id").cast(pl.Int64),
        pl.when(labels == control).then(pl.lit(ARMS[0])).when(labels == treatment).then(pl.lit(ARMS[1])).alias("arm"),
    ).filter(pl.col("arm").is_not_null())
    return inside.sort("member_id"), members.height - inside.height


def analyse_reduction(red: LogReduction, config: LoggedABConfig, summary: dict[str, Any] | None = None) -> ABResult:
    """The statistics and the report of a :class:`LogReduction`: the shared code after either engine.

    Raises
    ------
    SchemaError
        No impression of an experiment member in the experiment period.
    """
    t0 = time.perf_counter()
    p = red.period
    n_imp = int(red.experiment["n_impressions"].sum())
    if n_imp == 0:
        raise SchemaError(
            f"{red.sources['impressions']}: no impression of the {red.arms.height:,} experiment members in the experiment period "
            f"({p.date(p.pre_days)} .. {p.date(p.pre_days + p.n_days - 1)}, by their session's day); the A/B metrics need some"
        )
    members = member_table(red.arms, red.experiment, red.pre, p.n_days, p.pre_days)
    effects, srm, caught = arm_effects(members, config.split, config.alpha, config.power, cuped=p.pre_days > 0)
    mde = minimum_detectable_effect(srm["n_control"], srm["n_treatment"], config.alpha, config.power)
    if mde > _WARN_MDE_SD:
        caught.insert(
            0,
            f"{srm['n_control']:,} control / {srm['n_treatment']:,} treatment members detect only effects of {mde:.2f} standard "
            f"deviations or more (alpha {config.alpha}, power {config.power})",
        )
    resolved = LoggedABConfig(
        t_skip_s=config.t_skip_s,
        pre_days=p.pre_days,
        experiment_start=p.date(p.pre_days),
        split=config.split,
        alpha=config.alpha,
        power=config.power,
        arms=config.arms,
    )
    counts = {
        "members": red.arms.height + red.n_outside,
        "members_in_experiment": red.arms.height,
        "members_outside": red.n_outside,
        "impressions_in_experiment_period": n_imp,
    }
    return ABResult(
        config=resolved,
        members=members,
        effects=effects,
        daily=red.daily,
        srm=srm,
        power={"alpha": config.alpha, "power": config.power, "mde_sd": mde},
        rankers={ARMS[0]: f"arm {config.arms[0]!r}", ARMS[1]: f"arm {config.arms[1]!r}"},
        summary={**(summary or {}), "period": p.to_dict(), **counts, "analyse_s": round(time.perf_counter() - t0, 3)},
        warnings=caught,
    )
