"""Logs of a small simulated A/B test, and the bad-input cases that both engines of ``logged_ab_report`` must refuse alike."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import polars as pl

from simulate import PopularityRanker, RandomRanker, WorldConfig
from simulate.ab import ABConfig, ABResult, LoggedABConfig, run_ab

#: 600 members, 2 pre-period days + 3 experiment days, seed 4: about 30K impressions.
AB = ABConfig(world=WorldConfig(n_members=600, n_days=3), pre_days=2, seed=4)


class ABLogs(NamedTuple):
    result: ABResult
    logs: Path


def simulated_ab_logs(base: Path) -> ABLogs:
    """run_ab (random vs popularity) with its logs written: the in-memory result is the reference for the logged analysis."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small experiment's MDE warning
        result = run_ab(AB, RandomRanker(), PopularityRanker(), logs_out=base / "logs")
    return ABLogs(result, base / "logs")


def config(**changes: object) -> LoggedABConfig:
    return LoggedABConfig(**{"t_skip_s": AB.resolved_t_skip_s, "pre_days": AB.pre_days, **changes})  # type: ignore[arg-type]


def _members(change: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[Path], None]:
    def apply(logs: Path) -> None:
        p = logs / "members.parquet"
        change(pl.read_parquet(p)).write_parquet(p)

    return apply


def _sessions(change: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[Path], None]:
    def apply(logs: Path) -> None:
        p = logs / "sessions.parquet"
        change(pl.read_parquet(p)).write_parquet(p)

    return apply


def _empty(table: str) -> Callable[[Path], None]:
    def apply(logs: Path) -> None:
        p = logs / f"{table}.parquet"
        pl.read_parquet(p).clear().write_parquet(p)

    return apply


def _remove(table: str) -> Callable[[Path], None]:
    return lambda logs: (logs / f"{table}.parquet").unlink()


class Bad(NamedTuple):
    id: str
    change: Callable[[Path], None] | None
    config: dict[str, object]
    pattern: str


BAD: list[Bad] = [
    Bad("no-arm-column", _members(lambda m: m.drop("arm")), {}, r"members\.parquet: members table is missing column\(s\) 'arm'"),
    Bad(
        "all-arms-null",
        _members(lambda m: m.with_columns(pl.lit(None, pl.String).alias("arm"))),
        {},
        r"members\.parquet: column 'arm' is null for all 600 members: nobody is in the experiment",
    ),
    Bad(
        "one-arm-only",
        _members(lambda m: m.with_columns(pl.lit("treatment").alias("arm"))),
        {},
        r"members\.parquet: column 'arm' has only 'treatment' \(600 members\); the A/B analysis needs both 'control' \(control\)",
    ),
    Bad(
        "unknown-arm-labels",
        _members(lambda m: m.with_columns(pl.when(pl.col("member_id") < 3).then(pl.lit("beta")).otherwise(pl.col("arm")).alias("arm"))),
        {},
        r"members\.parquet: column 'arm' has unknown value\(s\) \['beta'\]; expected 'control' \(control\), 'treatment' \(treatment\) or null",
    ),
    Bad("labels-not-given", None, {"arms": ("A", "B")}, r"column 'arm' has unknown value\(s\) \['control', 'treatment'\]; expected 'A'"),
    Bad("arm-not-string", _members(lambda m: m.with_columns(pl.col("member_id").alias("arm"))), {}, r"column 'arm' must be a string type"),
    Bad("members-missing", _remove("members"), {}, r"members\.parquet: no such file \(expected the members table as Parquet\)"),
    Bad("sessions-missing", _remove("sessions"), {}, r"sessions\.parquet: no such file"),
    Bad("impressions-missing", _remove("impressions"), {}, r"impressions\.parquet: no such file"),
    Bad(
        "sessions-repeated-id",
        _sessions(lambda s: pl.concat([s, s.head(3).with_columns(pl.col("start_ts") + pl.duration(hours=1))])),
        {},
        r"sessions\.parquet: column 'session_id' is the key of the sessions table, but 3 of [\d,]+ rows repeat a value",
    ),
    Bad(
        "sessions-null-start",
        _sessions(
            lambda s: s.with_columns(pl.when(pl.col("session_id") % 7 == 0).then(None).otherwise(pl.col("start_ts")).alias("start_ts"))
        ),
        {},
        r"sessions\.parquet: column 'start_ts' has [\d,]+ null value\(s\)",
    ),
    Bad("members-empty", _empty("members"), {}, r"members\.parquet: the members table has no rows"),
    Bad("sessions-empty", _empty("sessions"), {}, r"sessions\.parquet: no sessions; the A/B metrics count impressions"),
    Bad(
        "impressions-empty",
        _empty("impressions"),
        {},
        r"impressions\.parquet: no impression of the 600 experiment members in the experiment period \(2026-01-07 \.\. 2026-01-09",
    ),
    Bad(
        "pre-days-too-many",
        None,
        {"pre_days": 5},
        r"pre_days 5 leaves no experiment day: the logs' sessions span 5 day\(s\), 2026-01-05 \.\. 2026-01-09",
    ),
    Bad("start-outside", None, {"pre_days": 0, "experiment_start": "2026-01-05"}, r"experiment_start 2026-01-05 must be after the first"),
    Bad("start-disagrees", None, {"pre_days": 1, "experiment_start": "2026-01-08"}, r"pre_days 1 and experiment_start 2026-01-08 disagree"),
]


def bad_logs(base: Path, logs: Path, case: Bad) -> Path:
    """A copy of ``logs`` with the case's change applied (the logs themselves when it has none)."""
    if case.change is None:
        return logs
    out = base / case.id
    if not out.exists():
        shutil.copytree(logs, out)
        case.change(out)
    return out
