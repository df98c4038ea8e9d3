"""Configuration of the A/B analysis of logged experiments, and its period: which UTC days are pre-period and experiment."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from dwellrank_logs.errors import ConfigError, SchemaError
from simulate.ab.config import ARMS, check_split
from simulate.checks import check_non_negative_int, check_open_unit, check_positive_number
from simulate.config import DAY_US

__all__ = ["LoggedABConfig", "Period", "resolve_period"]

_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class LoggedABConfig:
    """The A/B analysis of logs whose ``members.arm`` says each member's arm.

    Attributes
    ----------
    t_skip_s : float > 0, seconds
        Dwell threshold of the skip metrics.
    pre_days : int >= 0
        The logs' first days, before the experiment: their per-member metrics are the
        CUPED covariates (0: no CUPED).
    experiment_start : str, optional
        ISO date (UTC) of the experiment's first day; the logged days before it are the
        pre-period.  With ``pre_days`` too, the two must agree.
    split : float in (0, 1)
        Expected share of the treatment arm, for the sample-ratio check.
    alpha, power : float in (0, 1)
        Two-sided level of tests and intervals; power of the minimum detectable effect.
    arms : (str, str)
        The labels of the control and treatment arms in ``members.arm``; members whose
        arm is null are outside the experiment.
    """

    t_skip_s: float
    pre_days: int = 0
    experiment_start: str | None = None
    split: float = 0.5
    alpha: float = 0.05
    power: float = 0.8
    arms: tuple[str, str] = ARMS

    def __post_init__(self) -> None:
        check_positive_number("t_skip_s", self.t_skip_s, " (seconds)")
        check_non_negative_int("pre_days", self.pre_days)
        if self.experiment_start is not None:
            _parse_date("experiment_start", self.experiment_start)
        check_split(self.split)
        check_open_unit("alpha", self.alpha, "the two-sided significance level")
        check_open_unit("power", self.power, "the power of the minimum detectable effect")
        arms = tuple(self.arms)
        if len(arms) != 2 or not all(isinstance(a, str) and a for a in arms) or arms[0] == arms[1]:
            raise ConfigError(f"arms must be two different non-empty labels (control, treatment), got {self.arms!r}")
        object.__setattr__(self, "arms", arms)

    @property
    def resolved_t_skip_s(self) -> float:
        """Dwell threshold of the skip metrics, seconds (the name :class:`simulate.ab.ABConfig` gives it)."""
        return float(self.t_skip_s)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (``report.json``'s ``config``)."""
        return {
            "t_skip_s": float(self.t_skip_s),
            "pre_days": int(self.pre_days),
            "experiment_start": self.experiment_start,
            "split": self.split,
            "alpha": self.alpha,
            "power": self.power,
            "arms": list(self.arms),
        }


@dataclass(frozen=True)
class Period:
    """The logged days: ``pre_days`` pre-period days from ``start_us``, then ``n_days`` experiment days.

    Attributes
    ----------
    start_us : int
        UTC midnight of the logs' first day, microseconds since the epoch.
    pre_days, n_days : int
    """

    start_us: int
    pre_days: int
    n_days: int

    @property
    def experiment_us(self) -> tuple[int, int]:
        """The experiment period, ``[start, end)`` in microseconds."""
        lo = self.start_us + self.pre_days * DAY_US
        return lo, lo + self.n_days * DAY_US

    @property
    def pre_us(self) -> tuple[int, int]:
        """The pre-period, ``[start, end)`` in microseconds (empty without one)."""
        return self.start_us, self.start_us + self.pre_days * DAY_US

    def date(self, day: int) -> str:
        """ISO date of day ``day`` from the start."""
        return (_EPOCH + dt.timedelta(days=self.start_us // DAY_US + day)).isoformat()

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_day": self.date(0),
            "experiment_start": self.date(self.pre_days),
            "last_day": self.date(self.pre_days + self.n_days - 1),
            "pre_days": self.pre_days,
            "days": self.n_days,
        }


def resolve_period(first_us: int | None, last_us: int | None, config: LoggedABConfig, source: str) -> Period:
    """The period of logs whose sessions start from ``first_us`` to ``last_us`` (microseconds; None: no sessions).

    Days are UTC days, from the first session's to the last session's.

    Raises
    ------
    SchemaError
        No session (``source`` names the sessions table).
    ConfigError
        The pre-period or ``experiment_start`` leaves no experiment day, or lies outside the logs,
        or the two disagree.
    """
    if first_us is None or last_us is None:
        raise SchemaError(f"{source}: no sessions; the A/B metrics count impressions towards their session's day")
    first_day, last_day = first_us // DAY_US, last_us // DAY_US
    total = int(last_day - first_day + 1)
    span = f"the logs' sessions span {total} day(s), {_iso(first_day)} .. {_iso(last_day)}"
    pre = config.pre_days
    if config.experiment_start is not None:
        start = (_parse_date("experiment_start", config.experiment_start) - _EPOCH).days
        if not first_day < start <= last_day:
            raise ConfigError(
                f"experiment_start {config.experiment_start} must be after the first and on or before the last logged day: {span}"
            )
        if pre and pre != start - first_day:
            raise ConfigError(
                f"pre_days {pre} and experiment_start {config.experiment_start} disagree: {span}, so the experiment "
                f"starting then has {start - first_day} pre-period day(s); give one of them"
            )
        pre = int(start - first_day)
    if pre >= total:
        raise ConfigError(f"pre_days {pre} leaves no experiment day: {span}")
    return Period(start_us=int(first_day * DAY_US), pre_days=pre, n_days=total - pre)


def _iso(day: int) -> str:
    return (_EPOCH + dt.timedelta(days=int(day))).isoformat()


def _parse_date(name: str, value: object) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{name} must be an ISO date YYYY-MM-DD, got {value!r}") from None
