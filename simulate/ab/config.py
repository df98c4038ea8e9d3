"""Configuration of an offline A/B test: the world, the split and the statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dwellrank_logs.checks import check_int
from dwellrank_logs.errors import ConfigError
from simulate.checks import check_non_negative_int, check_open_unit, check_positive_number
from simulate.config import WorldConfig
from simulate.ope.reward import OPE_REWARDS

__all__ = ["ARMS", "ABConfig", "check_split"]

#: Arm names, in report order.
ARMS = ("control", "treatment")


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
        Warn (:class:`simulate.ab.SmallExperimentWarning`) above this many standard deviations.
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
    ope_k : int in [1, world.feed_length]
        Positions of the feed value that OPE also estimates with every slate
        estimator (:class:`simulate.ope.OPEConfig`'s ``feed_k``).
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
    ope_k: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.world, WorldConfig):
            raise ConfigError(f"world must be a WorldConfig, got {type(self.world).__name__}")
        check_split(self.split)
        check_open_unit("alpha", self.alpha, "the two-sided significance level")
        check_open_unit("power", self.power, "the power of the minimum detectable effect")
        check_non_negative_int("seed", self.seed)
        check_non_negative_int("pre_days", self.pre_days)
        check_positive_number("max_mde_sd", self.max_mde_sd)
        check_positive_number("warn_mde_sd", self.warn_mde_sd)
        if self.t_skip_s is not None:
            check_positive_number("t_skip_s", self.t_skip_s, " (seconds)")
        if self.ope_reward not in OPE_REWARDS:
            raise ConfigError(f"ope_reward must be one of {list(OPE_REWARDS)}, got {self.ope_reward!r}")
        check_positive_number("ope_temperature", self.ope_temperature)
        check_int("ope_k", self.ope_k, 1)
        if self.ope_k > self.world.feed_length:
            raise ConfigError(f"ope_k must be <= the feed length ({self.world.feed_length}), got {self.ope_k}")

    @property
    def resolved_t_skip_s(self) -> float:
        """Dwell threshold of the skip metrics, seconds."""
        return float(self.t_skip_s if self.t_skip_s is not None else self.world.t_skip_s)

    @property
    def simulation(self) -> WorldConfig:
        """The world actually simulated: pre-period plus experiment period."""
        return self.world.replace(n_days=self.pre_days + self.world.n_days)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (``report.json``'s ``config``), with ``t_skip_s`` resolved."""
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
            # Only with OPE on, so reports of runs without it keep their bytes.
            **({"ope_k": self.ope_k} if self.ope else {}),
            "world": self.world.to_dict(),
        }


def check_split(split: object) -> None:
    """Raise :class:`ConfigError` unless ``split`` (the treatment share) is in the open interval (0, 1)."""
    check_open_unit("split", split, "the expected share of members in the treatment arm")
