"""Configuration of the simulated world: one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from dwellrank_logs.checks import check_positive_int, is_finite_number
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.schema import UPDATE_TYPES

__all__ = ["DAY_US", "WorldConfig", "parse_overrides"]

#: One simulated day, microseconds.
DAY_US = 86_400 * 1_000_000


def _per_type(*values: float) -> tuple[float, ...]:
    return tuple(values)


@dataclass(frozen=True)
class WorldConfig:
    """Every parameter of the generative world, with defaults.

    Per-update-type tuples follow the order of ``update_types``.  Times are in
    seconds unless the name says ``_days``.  The defaults produce about
    5,000 members x 28 days, roughly 1.5M impressions.

    Ground truth that estimators must recover: ``t_skip_s`` (click and viral
    actions are impossible below it, for every update type), the intent
    profiles and each member's daily intent mixture (written to ``truth``).
    """

    n_members: int = 5000
    n_days: int = 28
    start_date: str = "2026-01-05"
    n_topics: int = 12
    n_intents: int = 7

    # --- impressions: dwell and actions ---------------------------------
    t_skip_s: float = 2.5
    update_types: tuple[str, ...] = UPDATE_TYPES
    update_type_probs: tuple[float, ...] = _per_type(0.35, 0.25, 0.15, 0.15, 0.10)
    # Skipped updates: log-normal dwell; the upper tail crosses t_skip, so
    # skipped and engaged dwell overlap as in the post's CDFs.
    skip_dwell_median_s: tuple[float, ...] = _per_type(0.9, 1.0, 1.3, 0.8, 0.7)
    skip_dwell_sigma: float = 0.55
    # Engaged updates: dwell = t_skip + Gamma(shape, scale_type).
    engaged_dwell_shape: float = 1.0
    engaged_dwell_scale_s: tuple[float, ...] = _per_type(7.0, 5.0, 20.0, 14.0, 9.0)
    engage_intercept: float = -0.7
    engage_affinity_coef: float = 1.6
    engage_quality_coef: float = 0.8
    position_decay: float = 0.25
    # P(action | engaged) per type, scaled by (0.5 + sigmoid(affinity)).
    click_prob: tuple[float, ...] = _per_type(0.20, 0.18, 0.12, 0.40, 0.35)
    react_prob: tuple[float, ...] = _per_type(0.25, 0.30, 0.22, 0.12, 0.05)
    comment_prob: tuple[float, ...] = _per_type(0.06, 0.04, 0.04, 0.05, 0.02)
    share_prob: tuple[float, ...] = _per_type(0.025, 0.03, 0.03, 0.05, 0.04)
    click_bounce_prob: float = 0.25
    click_bounce_median_s: float = 3.0
    click_dwell_median_s: tuple[float, ...] = _per_type(20.0, 15.0, 45.0, 90.0, 40.0)
    # Downstream: expected clicks by the network per action, per connection.
    downstream_share_per_conn: float = 0.02
    downstream_viral_per_conn: float = 0.002
    downstream_viral_ratio: float = 0.12
    # Upstream value of each viral action to the author.
    upstream_react: float = 0.2
    upstream_comment: float = 1.0
    upstream_share: float = 0.6

    # --- feed requests ---------------------------------------------------
    candidates_per_request: int = 50
    feed_length: int = 25
    views_per_feed_event: float = 7.0
    pool_days: int = 3

    # --- updates and authors (upstream loop) -----------------------------
    post_rate_mean: float = 0.08
    post_rate_sigma: float = 1.0
    upstream_gain: float = 0.4
    upstream_memory: float = 0.5

    # --- sessions, intents and drift --------------------------------------
    base_activity_sigma: float = 0.6
    events_per_session_mean: float = 4.0
    intent_concentration: float = 0.6
    phase_rate: float = 1.2
    phase_mean_days: float = 8.0
    phase_strength: float = 0.75
    #: "geometric": memoryless phase lengths (mean phase_mean_days), so when a phase ends cannot be
    #: forecast; "fixed": every phase lasts round(phase_mean_days) days, so it can.
    phase_length: str = "geometric"
    #: "lifecycle": each member lives a chain of intent phases (simulate.lifecycle, docs/world.md):
    #: gamma phase lengths (shape ``phase_shape``, per-intent means), per-intent engagement trends,
    #: transitions between intents, an onboarding ramp for new members and disengagement that
    #: low feed satisfaction brings on; "drift": the earlier world of Poisson phase starts
    #: (``phase_rate``, ``phase_mean_days``, ``phase_length``; those three act only there).
    intent_dynamics: str = "drift"
    phase_shape: float = 3.0
    # New members (lifecycle only): a share joined up to onboarding_max_tenure_days before day 0;
    # their rate is floor + (1 - floor) (1 - exp(-(age + 1) / rise_days)) (1 + boost exp(-age / settle_days)):
    # low on joining, above 1 x while they explore in their first weeks, settling to 1 x.
    onboarding_share: float = 0.08
    onboarding_max_tenure_days: int = 21
    onboarding_floor: float = 0.3
    onboarding_rise_days: float = 3.0
    onboarding_boost: float = 0.8
    onboarding_settle_days: float = 10.0
    # Disengagement (lifecycle only): daily hazard disengage_hazard x exp(coef x (ref - satisfaction));
    # for a gamma (phase_shape) spell of mean disengage_mean_days the rate decays towards floor x.
    # ref: the share of seen updates a member engages with under the default ranker (0.22 measured).
    disengage_hazard: float = 0.01
    disengage_satisfaction_coef: float = 10.0
    disengage_satisfaction_ref: float = 0.22
    disengage_mean_days: float = 14.0
    disengage_decay_days: float = 5.0
    disengage_floor: float = 0.2
    satisfaction_memory: float = 0.35
    satisfaction_effect: float = 2.0
    satisfaction_baseline: float = 0.35

    # --- platform deliveries ----------------------------------------------
    delivery_rate: float = 0.6
    delivery_relevant_prob: float = 0.5
    delivery_boost: float = 0.3
    fatigue_decay: float = 0.85
    fatigue_cost: float = 0.12

    def __post_init__(self) -> None:
        _positive_int(
            self, "n_members", "n_days", "n_topics", "candidates_per_request", "feed_length", "pool_days", "onboarding_max_tenure_days"
        )
        if not 2 <= self.n_intents <= 20:
            raise ConfigError(f"n_intents must be in [2, 20], got {self.n_intents}")
        try:
            dt.date.fromisoformat(self.start_date)
        except (TypeError, ValueError):
            raise ConfigError(f"start_date must be an ISO date YYYY-MM-DD, got {self.start_date!r}") from None
        _positive(
            self,
            "t_skip_s",
            "skip_dwell_median_s",
            "skip_dwell_sigma",
            "engaged_dwell_shape",
            "engaged_dwell_scale_s",
            "click_bounce_median_s",
            "click_dwell_median_s",
            "views_per_feed_event",
            "events_per_session_mean",
            "phase_mean_days",
            "intent_concentration",
            "phase_shape",
            "onboarding_rise_days",
            "onboarding_settle_days",
            "disengage_mean_days",
            "disengage_decay_days",
        )
        _nonnegative(
            self,
            "engage_affinity_coef",
            "engage_quality_coef",
            "position_decay",
            "downstream_share_per_conn",
            "downstream_viral_per_conn",
            "downstream_viral_ratio",
            "upstream_react",
            "upstream_comment",
            "upstream_share",
            "post_rate_mean",
            "post_rate_sigma",
            "upstream_gain",
            "base_activity_sigma",
            "phase_rate",
            "satisfaction_effect",
            "delivery_rate",
            "delivery_boost",
            "fatigue_cost",
            "onboarding_boost",
            "disengage_hazard",
            "disengage_satisfaction_coef",
        )
        _probability(
            self,
            "update_type_probs",
            "click_prob",
            "react_prob",
            "comment_prob",
            "share_prob",
            "click_bounce_prob",
            "phase_strength",
            "satisfaction_memory",
            "satisfaction_baseline",
            "delivery_relevant_prob",
            "fatigue_decay",
            "upstream_memory",
            "onboarding_share",
            "onboarding_floor",
            "disengage_floor",
            "disengage_satisfaction_ref",
        )
        n = len(self.update_types)
        if n == 0 or len(set(self.update_types)) != n:
            raise ConfigError(f"update_types must be non-empty and distinct, got {self.update_types}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple) and f.name != "update_types" and len(v) != n:
                raise ConfigError(f"{f.name} must have one value per update type ({n}), got {len(v)}")
        if not math.isclose(sum(self.update_type_probs), 1.0, abs_tol=1e-6):
            raise ConfigError(f"update_type_probs must sum to 1, got {sum(self.update_type_probs):.6f}")
        if self.phase_length not in ("geometric", "fixed"):
            raise ConfigError(f"phase_length must be 'geometric' or 'fixed', got {self.phase_length!r}")
        if self.intent_dynamics not in ("lifecycle", "drift"):
            raise ConfigError(f"intent_dynamics must be 'lifecycle' or 'drift', got {self.intent_dynamics!r}")
        if self.feed_length > self.candidates_per_request:
            raise ConfigError(f"feed_length must be <= candidates_per_request ({self.candidates_per_request}), got {self.feed_length}")

    @property
    def start(self) -> dt.datetime:
        """Start of day 0, UTC."""
        return dt.datetime.combine(dt.date.fromisoformat(self.start_date), dt.time(), tzinfo=dt.timezone.utc)

    @property
    def start_us(self) -> int:
        """Start of day 0, microseconds since the Unix epoch."""
        return int(self.start.timestamp()) * 1_000_000

    def day_index(self, column: str) -> pl.Expr:
        """Simulation day (0 = ``start``) of the timestamps in ``column``, Int32; the one definition of "which day"."""
        return ((pl.col(column).dt.epoch("us") - self.start_us) // DAY_US).cast(pl.Int32)

    def replace(self, **changes: Any) -> WorldConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (tuples stay tuples), as ``truth.json`` records the config."""
        return dataclasses.asdict(self)


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["phase_length=fixed", "phase_rate=2.5", "click_prob=0.2,0.2,0.1,0.4,0.3"]`` -> WorldConfig changes.

    Each value is parsed by the field's default type: int, float, str, or a
    comma-separated tuple.  Values are validated by :class:`WorldConfig` itself.

    Raises
    ------
    ConfigError
        A pair without ``=``, an unknown field (the message lists the known ones)
        or a value that does not parse as the field's type.
    """
    defaults = WorldConfig()
    names = [f.name for f in dataclasses.fields(WorldConfig)]
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ConfigError(f"--set takes FIELD=VALUE, got {pair!r}")
        if key not in names:
            raise ConfigError(f"--set: WorldConfig has no field {key!r}; fields: {', '.join(names)}")
        default = getattr(defaults, key)
        try:
            if isinstance(default, tuple):
                kind = type(default[0]) if default else str
                out[key] = tuple(kind(v.strip()) for v in raw.split(","))
            elif isinstance(default, bool):
                raise ValueError("boolean fields are not settable")
            else:
                out[key] = type(default)(raw)
        except ValueError:
            raise ConfigError(f"--set {key}: expected {type(default).__name__} like {default!r}, got {raw!r}") from None
    return out


def _values(cfg: WorldConfig, name: str) -> tuple[float, ...]:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, (int, float, tuple)):
        raise ConfigError(f"{name} must be a number, got {v!r}")
    vals = v if isinstance(v, tuple) else (v,)
    for x in vals:
        if not is_finite_number(x):
            raise ConfigError(f"{name} must be finite numbers, got {v!r}")
    return vals


def _positive_int(cfg: WorldConfig, *names: str) -> None:
    for name in names:
        check_positive_int(name, getattr(cfg, name))


# Fields that are a number or a tuple of numbers, one per update type.  Not
# dwellrank_logs.checks.check_number: that checks one number and words its
# message "a finite number > 0"; these check every element, and their
# messages ("must be > 0", "must be probabilities in [0, 1]") are the ones
# users and tests already match.
def _each(cfg: WorldConfig, names: tuple[str, ...], bad: Callable[[float], bool], rule: str) -> None:
    for name in names:
        if any(bad(x) for x in _values(cfg, name)):
            raise ConfigError(f"{name} must be {rule}, got {getattr(cfg, name)!r}")


def _positive(cfg: WorldConfig, *names: str) -> None:
    _each(cfg, names, lambda x: x <= 0, "> 0")


def _nonnegative(cfg: WorldConfig, *names: str) -> None:
    _each(cfg, names, lambda x: x < 0, ">= 0")


def _probability(cfg: WorldConfig, *names: str) -> None:
    _each(cfg, names, lambda x: not 0 <= x <= 1, "probabilities in [0, 1]")
