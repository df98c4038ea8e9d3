"""Offline A/B tests in the simulator: one population, two arms, one closed loop.

Members are randomised by a hash of their id and the seed; each arm's feeds
are ranked by its ranker for the whole horizon while the closed loop runs
(feed quality -> satisfaction -> return rate -> sessions; viral feedback ->
authors post more).  An optional pre-period, in which everyone gets the
control ranker, provides the CUPED covariate.

Statistics are computed on per-member aggregates (one row per member), which
respects that one member's impressions are correlated: Welch two-sample
t-tests with statsmodels, CUPED variance reduction, a chi-square
sample-ratio-mismatch check and the minimum detectable effect at the chosen
size.

The work is done by pure functions (:func:`assign_arms`,
:func:`member_aggregates`, :func:`compare_arms`, :func:`srm_test`,
:func:`minimum_detectable_effect`); :func:`run_ab` wires them.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.checks import is_finite_number
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.protocol import HistoryTables, Ranker, RankerBase, RankOutput, ranker_description, ranker_t_skip_s
from dwellrank_logs.schema import VIRAL_COLUMNS
from simulate.config import WorldConfig
from simulate.engine import simulate
from simulate.ope import OPE_REWARDS, OPEConfig, run_ope
from simulate.truth import arm_truth

__all__ = [
    "ARMS",
    "METRICS",
    "ABConfig",
    "ABResult",
    "Metric",
    "SmallExperimentWarning",
    "assign_arms",
    "assignment_units",
    "check_size",
    "compare_arms",
    "daily_trajectories",
    "member_aggregates",
    "member_metrics",
    "minimum_detectable_effect",
    "run_ab",
    "splitmix64",
    "srm_test",
]

#: Arm names, in report order.
ARMS = ("control", "treatment")
_DAY_US = 86_400 * 1_000_000


class SmallExperimentWarning(UserWarning):
    """The experiment can only detect large effects at this size."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ABConfig:
    """An offline A/B test: the world, the split and the statistics.

    Attributes
    ----------
    world : WorldConfig
        The simulated world; ``world.n_days`` is the length of the experiment
        period (the pre-period comes on top).
    split : float in (0, 1)
        Expected share of members in the treatment arm.
    seed : int >= 0
        Seeds the world and the arm assignment hash.
    pre_days : int >= 0
        Days before the experiment with the control ranker for everyone; their
        per-member metrics are the CUPED covariates.  0 turns CUPED off.
    alpha : float in (0, 1)
        Two-sided significance level of tests and intervals (1 - confidence).
    power : float in (0, 1)
        Power for the minimum detectable effect.
    max_mde_sd : float > 0
        Refuse to run when the minimum detectable effect at the expected arm
        sizes exceeds this many standard deviations of a metric.
    warn_mde_sd : float > 0
        Warn (:class:`SmallExperimentWarning`) above this many standard deviations.
    t_skip_s : float > 0, seconds, optional
        Dwell threshold of the skip metrics; default ``world.t_skip_s``.
    ope : bool
        Also run off-policy evaluation (:func:`simulate.ope.run_ope`): the
        control ranker with exploration logs a separate run of the same world
        (same seed, no pre-period), and both arms' rankers are evaluated on it.
    ope_reward : {'click', 'viral', 'not_skipped'}
        Top-slot reward of the off-policy evaluation.
    ope_temperature : float > 0
        Exploration temperature of the logging ranker.
    """

    world: WorldConfig = field(default_factory=WorldConfig)
    split: float = 0.5
    seed: int = 0
    pre_days: int = 7
    alpha: float = 0.05
    power: float = 0.8
    max_mde_sd: float = 0.5
    warn_mde_sd: float = 0.2
    t_skip_s: float | None = None
    ope: bool = False
    ope_reward: str = "click"
    ope_temperature: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.world, WorldConfig):
            raise ConfigError(f"world must be a WorldConfig, got {type(self.world).__name__}")
        _open_unit(self.split, "split", "the expected share of members in the treatment arm")
        _open_unit(self.alpha, "alpha", "the two-sided significance level")
        _open_unit(self.power, "power", "the power of the minimum detectable effect")
        for name in ("seed", "pre_days"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")
        for name in ("max_mde_sd", "warn_mde_sd"):
            v = getattr(self, name)
            if not is_finite_number(v) or v <= 0:
                raise ConfigError(f"{name} must be a number > 0, got {v!r}")
        if self.t_skip_s is not None and (not is_finite_number(self.t_skip_s) or self.t_skip_s <= 0):
            raise ConfigError(f"t_skip_s must be a number > 0 (seconds), got {self.t_skip_s!r}")
        if self.ope_reward not in OPE_REWARDS:
            raise ConfigError(f"ope_reward must be one of {list(OPE_REWARDS)}, got {self.ope_reward!r}")
        if not is_finite_number(self.ope_temperature) or self.ope_temperature <= 0:
            raise ConfigError(f"ope_temperature must be a number > 0, got {self.ope_temperature!r}")

    @property
    def resolved_t_skip_s(self) -> float:
        """Dwell threshold of the skip metrics, seconds."""
        return float(self.t_skip_s if self.t_skip_s is not None else self.world.t_skip_s)

    @property
    def simulation(self) -> WorldConfig:
        """The world actually simulated: pre-period plus experiment period."""
        return self.world.replace(n_days=self.pre_days + self.world.n_days)

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "seed": int(self.seed),
            "pre_days": int(self.pre_days),
            "alpha": self.alpha,
            "power": self.power,
            "max_mde_sd": self.max_mde_sd,
            "warn_mde_sd": self.warn_mde_sd,
            "t_skip_s": self.resolved_t_skip_s,
            "ope": self.ope,
            "ope_reward": self.ope_reward,
            "ope_temperature": self.ope_temperature,
            "world": self.world.to_dict(),
        }


def _open_unit(v: Any, name: str, what: str) -> None:
    if not is_finite_number(v) or not 0 < v < 1:
        raise ConfigError(f"{name} ({what}) must be in the open interval (0, 1), got {v!r}")


# --------------------------------------------------------------------------- randomisation

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele, Lea & Flood 2014) applied elementwise to uint64."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def assignment_units(member_id: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per member: ``splitmix64(splitmix64(seed) xor member_id)``.

    Stable across runs, platforms and processes (unlike Python's ``hash``), and
    independent of the order in which members are listed.
    """
    ids = np.asarray(member_id).astype(np.uint64)
    key = splitmix64(np.array([seed], dtype=np.uint64))[0]
    return (splitmix64(ids ^ key) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def assign_arms(member_id: np.ndarray, split: float, seed: int) -> np.ndarray:
    """Arm of each member: ``'treatment'`` where its assignment unit is below ``split``.

    Parameters
    ----------
    member_id : ndarray of int, shape (n,)
    split : float in (0, 1)
        Expected share of the treatment arm.
    seed : int
        Experiment seed; a new seed re-randomises.

    Returns
    -------
    ndarray of str, shape (n,), values in :data:`ARMS`
    """
    _open_unit(split, "split", "the expected share of members in the treatment arm")
    return np.where(assignment_units(member_id, seed) < split, ARMS[1], ARMS[0])


# --------------------------------------------------------------------------- size


def minimum_detectable_effect(n_control: float, n_treatment: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference, in standard deviations, that a two-sided t-test detects with ``power``.

    Solved with :class:`statsmodels.stats.power.TTestIndPower` (Cohen's d).
    Multiply by a metric's standard deviation for its absolute MDE.
    """
    from statsmodels.stats.power import TTestIndPower  # imported here: statsmodels is slow to import

    if n_control < 2 or n_treatment < 2:
        return math.inf
    d = TTestIndPower().solve_power(
        effect_size=None, nobs1=float(n_control), ratio=float(n_treatment) / float(n_control), alpha=alpha, power=power
    )
    return float(np.asarray(d).item())


def check_size(n_members: int, split: float, alpha: float, power: float, max_mde_sd: float, warn_mde_sd: float) -> float:
    """Standardised MDE at the expected arm sizes; refuse or warn when it is large.

    Raises
    ------
    ConfigError
        The MDE exceeds ``max_mde_sd`` (too few members for a meaningful test).

    Warns
    -----
    SmallExperimentWarning
        The MDE exceeds ``warn_mde_sd``.
    """
    n_t, n_c = n_members * split, n_members * (1 - split)
    d = minimum_detectable_effect(n_c, n_t, alpha, power)
    if d > max_mde_sd:
        need = next(
            (n for n in _growing(n_members) if minimum_detectable_effect(n * (1 - split), n * split, alpha, power) <= max_mde_sd), None
        )
        raise ConfigError(
            f"members: {n_members} members at split {split} give about {n_c:.0f} control / {n_t:.0f} treatment, "
            f"too few for a meaningful test: the minimum detectable effect would be {d:.2f} standard deviations "
            f"(alpha {alpha}, power {power}), above max_mde_sd {max_mde_sd}; use at least {need} members"
        )
    if d > warn_mde_sd:
        warnings.warn(
            f"{n_members} members at split {split} can only detect effects of {d:.2f} standard deviations or more "
            f"(alpha {alpha}, power {power})",
            SmallExperimentWarning,
            stacklevel=2,
        )
    return d


def _growing(n: int) -> Iterator[int]:
    """n, then 10% more each step: candidate sizes for the smallest adequate experiment."""
    lo = max(int(n), 4)
    while True:
        yield lo
        lo = int(math.ceil(lo * 1.1))


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metric:
    """A per-member metric: ``numerator / denominator`` of per-member aggregates.

    ``denominator`` None: the numerator itself; ``'days'``: per member-day
    over the period.  Members with a zero data-dependent denominator (no
    impressions, no sessions) have no value and are left out of its test.
    """

    name: str
    numerator: str
    denominator: str | None
    description: str
    better: str  # "higher" or "lower": the direction of the post's result


METRICS: tuple[Metric, ...] = (
    Metric("skip_rate", "n_skipped", "n_impressions", "skipped impressions (dwell < T_skip, no action) / impressions", "lower"),
    Metric("click_rate", "n_clicked", "n_impressions", "impressions with a click / impressions", "higher"),
    Metric("viral_rate", "n_viral_impressions", "n_impressions", "impressions with a react, comment or share / impressions", "higher"),
    Metric("clicks_per_day", "n_clicked", "days", "clicks per member-day", "higher"),
    Metric("virals_per_day", "n_virals", "days", "viral actions (reacts + comments + shares) per member-day", "higher"),
    Metric("dwell_per_session_s", "feed_dwell_s", "n_sessions", "on-feed dwell per session, seconds", "higher"),
    Metric("sessions_per_day", "n_sessions", "days", "sessions per member-day", "higher"),
    Metric("active_days", "active_days", None, "days with at least one session", "higher"),
    Metric(
        "downstream_virals_per_day",
        "downstream_virals",
        "days",
        "viral actions by the network on the member's actions, per member-day",
        "higher",
    ),
    Metric("time_spent_s_per_day", "time_spent_s", "days", "raw time spent: dwell + click-through time, seconds per member-day", "higher"),
    Metric(
        "time_well_spent_s_per_day",
        "time_well_spent_s",
        "days",
        "time well spent: dwell + click-through on not-skipped updates, seconds per member-day",
        "higher",
    ),
)

_AGGREGATES = (
    "n_impressions",
    "n_skipped",
    "n_clicked",
    "n_viral_impressions",
    "n_virals",
    "feed_dwell_s",
    "downstream_virals",
    "time_spent_s",
    "time_well_spent_s",
    "n_sessions",
    "active_days",
)


def _day_expr(col: str, start_us: int) -> pl.Expr:
    return ((pl.col(col).dt.epoch("us") - start_us) // _DAY_US).cast(pl.Int32)


def _active_pairs(member: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (member, day) pairs, as two integer arrays sorted by member, then day."""
    if member.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo = int(day.min())
    span = int(day.max()) - lo + 1
    key = np.unique(member.astype(np.int64) * span + (day - lo))  # one integer key: far faster than unique(axis=1)
    return key // span, key % span + lo


def member_aggregates(tables: dict[str, pl.DataFrame], config: WorldConfig, t_skip_s: float, first_day: int, last_day: int) -> pl.DataFrame:
    """Per-member sums over simulated days ``first_day .. last_day - 1``.

    Impressions count towards the day their session started.

    Parameters
    ----------
    tables : dict of DataFrame
        Log tables of one simulation (``members``, ``sessions``, ``impressions``).
    config : WorldConfig
        The simulated world (for the start date).
    t_skip_s : float, seconds
        An impression is skipped when dwell < t_skip_s and it has no click or viral action.
    first_day, last_day : int
        Half-open range of 0-based simulation days.

    Returns
    -------
    DataFrame
        One row per member (all members, zeros where nothing happened):
        member_id, n_impressions, n_skipped, n_clicked, n_viral_impressions,
        n_virals, feed_dwell_s, downstream_virals, time_spent_s,
        time_well_spent_s, n_sessions, active_days.
    """
    # Sums in numpy (bincount adds in row order): polars' parallel float sums can differ in the
    # last bits from run to run, and the same seed must give the same numbers.
    ids = np.sort(tables["members"]["member_id"].to_numpy())
    n = ids.size
    sess = _session_days(tables, config)
    s_keep = (sess["day"] >= first_day) & (sess["day"] < last_day)
    s_member = np.searchsorted(ids, sess["member_id"][s_keep])
    s_day = sess["day"][s_keep]
    imp = _impression_arrays(tables, sess, t_skip_s)
    keep = (imp["day"] >= first_day) & (imp["day"] < last_day)
    m = np.searchsorted(ids, imp["member_id"][keep])

    def total(w: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(m, weights=None if w is None else w[keep], minlength=n)

    active_member, _ = _active_pairs(s_member, s_day)
    out = {
        "n_impressions": total(),
        "n_skipped": total(imp["skipped"]),
        "n_clicked": total(imp["clicked"]),
        "n_viral_impressions": total(imp["viral"]),
        "n_virals": total(imp["n_virals"]),
        "feed_dwell_s": total(imp["dwell_s"]),
        "downstream_virals": total(imp["downstream_virals"]),
        "time_spent_s": total(imp["time_s"]),
        "time_well_spent_s": total(imp["time_s"] * ~imp["skipped"]),
        "n_sessions": np.bincount(s_member, minlength=n),
        "active_days": np.bincount(active_member, minlength=n),
    }
    return pl.DataFrame({"member_id": ids, **{k: v if k.endswith("_s") else np.rint(v).astype(np.int64) for k, v in out.items()}})


def _session_days(tables: dict[str, pl.DataFrame], config: WorldConfig) -> dict[str, np.ndarray]:
    """member_id, session_id and simulation day (from the session start) of every session."""
    start_us = int(config.start.timestamp()) * 1_000_000
    sess = tables["sessions"].select("member_id", "session_id", _day_expr("start_ts", start_us).alias("day"))
    return {c: sess[c].to_numpy() for c in sess.columns}


def _impression_arrays(tables: dict[str, pl.DataFrame], sess_days: dict[str, np.ndarray], t_skip_s: float) -> dict[str, np.ndarray]:
    """Per impression (log order): member, its session's day (from :func:`_session_days`), skip/click/viral flags,
    dwell and time spent.
    """
    sess = pl.DataFrame({"session_id": sess_days["session_id"], "day": sess_days["day"]})
    viral_any = pl.any_horizontal(*VIRAL_COLUMNS)
    imp = (
        tables["impressions"]
        .join(sess, on="session_id", how="left", maintain_order="left")
        .select(
            "member_id",
            pl.col("day").fill_null(-1),
            ((pl.col("dwell_s") < t_skip_s) & ~(pl.col("clicked") | viral_any)).alias("skipped"),
            "clicked",
            viral_any.alias("viral"),
            pl.sum_horizontal(*[pl.col(c).cast(pl.Int64) for c in VIRAL_COLUMNS]).alias("n_virals"),
            "dwell_s",
            pl.col("downstream_virals").cast(pl.Int64),
            (pl.col("dwell_s") + pl.col("click_dwell_s").fill_null(0.0)).alias("time_s"),
        )
    )
    return {c: imp[c].to_numpy() for c in imp.columns}


def member_metrics(aggregates: pl.DataFrame, n_days: int, metrics: tuple[Metric, ...] = METRICS) -> pl.DataFrame:
    """Per-member metric values from :func:`member_aggregates` over ``n_days`` days.

    Ratio metrics are null where their denominator is 0.
    """
    cols = []
    for m in metrics:
        num = pl.col(m.numerator).cast(pl.Float64)
        if m.denominator is None:
            expr = num
        elif m.denominator == "days":
            expr = num / float(n_days)
        else:
            den = pl.col(m.denominator).cast(pl.Float64)
            expr = pl.when(den > 0).then(num / den).otherwise(None)
        cols.append(expr.alias(m.name))
    return aggregates.select("member_id", *cols)


# --------------------------------------------------------------------------- statistics


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
    out.update(zip(("raw_diff", "raw_ci_low", "raw_ci_high", "raw_p_value"), raw))
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
    out.update(zip(("diff", "ci_low", "ci_high", "p_value"), headline))
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


def daily_trajectories(tables: dict[str, pl.DataFrame], config: WorldConfig, t_skip_s: float) -> pl.DataFrame:
    """Per arm and simulated day: active share, sessions, skip and click rates, time well spent.

    Returns
    -------
    DataFrame
        arm, day, members, active_share, sessions_per_member, skip_rate,
        click_rate, time_well_spent_s_per_member.
    """
    members = tables["members"].sort("member_id")
    ids = members["member_id"].to_numpy()
    arm_names = sorted(set(members["arm"].drop_nulls().to_list()))
    arm_of = np.searchsorted(np.array(arm_names), members["arm"].fill_null("").to_numpy())  # (N,) arm index
    n_arms, n_days = len(arm_names), config.n_days
    size = np.bincount(arm_of, minlength=n_arms).astype(float)
    sess = _session_days(tables, config)
    s_member = np.searchsorted(ids, sess["member_id"])
    s_key = arm_of[s_member] * n_days + sess["day"]
    sessions = np.bincount(s_key, minlength=n_arms * n_days)
    a_member, a_day = _active_pairs(s_member, sess["day"])
    active = np.bincount(arm_of[a_member] * n_days + a_day, minlength=n_arms * n_days)
    imp = _impression_arrays(tables, sess, t_skip_s)
    ok = imp["day"] >= 0
    key = arm_of[np.searchsorted(ids, imp["member_id"][ok])] * n_days + imp["day"][ok]

    def total(w: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(key, weights=None if w is None else w[ok], minlength=n_arms * n_days)

    n_imp = total()
    with np.errstate(invalid="ignore", divide="ignore"):
        skip_rate = np.where(n_imp > 0, total(imp["skipped"]) / n_imp, np.nan)
        click_rate = np.where(n_imp > 0, total(imp["clicked"]) / n_imp, np.nan)
    per_member = np.repeat(size, n_days)
    return pl.DataFrame(
        {
            "arm": np.repeat(arm_names, n_days),
            "day": np.tile(np.arange(n_days, dtype=np.int32), n_arms),
            "members": per_member.astype(np.int64),
            "active_share": active / per_member,
            "sessions_per_member": sessions / per_member,
            "skip_rate": skip_rate,
            "click_rate": click_rate,
            "time_well_spent_s_per_member": total(imp["time_s"] * ~imp["skipped"]) / per_member,
        }
    ).with_columns(pl.col("skip_rate", "click_rate").fill_nan(None))


# --------------------------------------------------------------------------- the run


class _Phased(RankerBase):
    """Ranks with ``pre`` before ``switch_us`` (request time) and with ``post`` from then on.

    The simulator calls a ranker once per day with that day's requests, so
    one call never straddles the switch.
    """

    def __init__(self, pre: Ranker, post: Ranker, switch_us: int) -> None:
        self.pre, self.post, self.switch_us = pre, post, switch_us
        self.t_skip_s = ranker_t_skip_s(post) or ranker_t_skip_s(pre)

    def rank(self, candidates: pl.DataFrame, history: HistoryTables, rng: np.random.Generator) -> RankOutput:
        first = candidates["request_ts"].dt.epoch("us").min()
        ranker = self.post if first is None or first >= self.switch_us else self.pre
        return ranker.rank(candidates, history, rng)


@dataclass
class ABResult:
    """Everything an A/B run produced.

    Attributes
    ----------
    config : ABConfig
    members : DataFrame
        Per member: member_id, arm, experiment-period aggregates and metrics,
        and ``pre_<metric>`` covariates when there is a pre-period.
    effects : DataFrame
        One row per metric: see :func:`compare_arms`, plus metric, description, better.
    daily : DataFrame
        :func:`daily_trajectories` (day counts from the start of the pre-period).
    srm : dict
        :func:`srm_test`.
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

    config: ABConfig
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
        """JSON-ready report (``report.json``)."""
        return {
            "config": self.config.to_dict(),
            "rankers": self.rankers,
            "srm": self.srm,
            "power": self.power,
            "truth": self.truth,
            "effects": [_clean(r) for r in self.effects.iter_rows(named=True)],
            "daily": [_clean(r) for r in self.daily.iter_rows(named=True)],
            "ope": self.ope,
            "summary": self.summary,
            "warnings": self.warnings,
        }


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def _describe(r: Ranker) -> str:
    return ranker_description(r)


def run_ab(
    config: ABConfig,
    control: Ranker,
    treatment: Ranker,
    progress: Callable[[int], None] | None = None,
    names: dict[str, str] | None = None,
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
        Arm -> label for the report (default: the rankers' class names).

    Raises
    ------
    ConfigError
        Too few members for a meaningful test (see :func:`check_size`), or a bad ranker.
    """
    for arm, r in zip(ARMS, (control, treatment)):
        if not hasattr(r, "rank"):
            raise ConfigError(f"{arm} ranker must have a rank(candidates, history, rng) method, got {type(r).__name__}")
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", SmallExperimentWarning)
        d_expected = check_size(config.world.n_members, config.split, config.alpha, config.power, config.max_mde_sd, config.warn_mde_sd)
    for item in w:
        caught.append(str(item.message))
        warnings.warn(item.message, SmallExperimentWarning, stacklevel=2)

    sim_cfg = config.simulation
    member_id = np.arange(sim_cfg.n_members)
    arm = assign_arms(member_id, config.split, config.seed)
    switch_us = int(sim_cfg.start.timestamp()) * 1_000_000 + config.pre_days * _DAY_US
    rankers = {
        ARMS[0]: control,
        ARMS[1]: _Phased(control, treatment, switch_us) if config.pre_days else treatment,
    }
    t0 = time.perf_counter()
    sim = simulate(sim_cfg, seed=config.seed, ranker=rankers, member_arm=arm, progress=progress)
    t_sim = time.perf_counter() - t0

    t0 = time.perf_counter()
    t_skip = config.resolved_t_skip_s
    n_days = config.world.n_days
    agg = member_aggregates(sim.tables, sim_cfg, t_skip, config.pre_days, sim_cfg.n_days)
    metrics = member_metrics(agg, n_days)
    arms = sim.tables["members"].select("member_id", "arm")
    members = arms.join(agg, on="member_id").join(metrics, on="member_id")
    if config.pre_days:
        pre = member_metrics(member_aggregates(sim.tables, sim_cfg, t_skip, 0, config.pre_days), config.pre_days)
        members = members.join(pre.rename({m.name: f"pre_{m.name}" for m in METRICS}), on="member_id")
    # Joins do not promise an order; sums (and any resampling) must see the same one on every machine.
    members = members.sort("member_id")
    is_t = members["arm"].to_numpy() == ARMS[1]
    rows = []
    for m in METRICS:
        y = members[m.name].to_numpy().astype(float)
        x = members[f"pre_{m.name}"].to_numpy().astype(float) if config.pre_days else None
        res = compare_arms(
            y[~is_t],
            y[is_t],
            config.alpha,
            None if x is None else x[~is_t],
            None if x is None else x[is_t],
            config.power,
        )
        rows.append({"metric": m.name, "description": m.description, "better": m.better, **res})
    effects = pl.DataFrame(rows)
    n_t = int(is_t.sum())
    n_c = int(is_t.size - n_t)
    srm = srm_test(n_c, n_t, config.split)
    if srm["mismatch"]:
        caught.append(f"sample ratio mismatch: {n_c} control / {n_t} treatment (chi-square p = {srm['p_value']:.2g})")
    daily = daily_trajectories(sim.tables, sim_cfg, t_skip)
    truth_members = arm_truth(sim.tables, sim.truth_tables["impressions"], sim_cfg, t_skip, config.pre_days)
    truth = {
        arm_name: {
            "true_skip_rate": float(np.mean(g["true_skip_rate"].to_numpy())),
            "true_engage_rate": float(np.mean(g["true_engage_rate"].to_numpy())),
        }
        for arm_name in ARMS
        for g in [truth_members.filter(pl.col("arm") == arm_name).drop_nulls("true_skip_rate")]
    }
    truth["note"] = "means over members with impressions in the experiment period; true_skip_rate is the expectation of skip_rate"
    power = {
        "alpha": config.alpha,
        "power": config.power,
        "mde_sd_expected": d_expected,
        "mde_sd": minimum_detectable_effect(n_c, n_t, config.alpha, config.power),
    }
    labels = names or {}
    t_analyse = time.perf_counter() - t0
    t0 = time.perf_counter()
    ope = None
    if config.ope:
        ope_cfg = OPEConfig(
            world=config.world, seed=config.seed, reward=config.ope_reward, temperature=config.ope_temperature, alpha=config.alpha
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
        rankers={ARMS[0]: labels.get(ARMS[0], _describe(control)), ARMS[1]: labels.get(ARMS[1], _describe(treatment))},
        truth=truth,
        ope=ope,
        summary=summary,
        warnings=caught,
    )
