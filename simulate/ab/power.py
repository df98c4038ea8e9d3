"""Experiment size: the minimum detectable effect, and refusing or warning when it is large."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np

from dwellrank_logs.errors import ConfigError

__all__ = ["SmallExperimentWarning", "check_size", "minimum_detectable_effect"]


class SmallExperimentWarning(UserWarning):
    """The experiment can only detect large effects at this size."""


def minimum_detectable_effect(n_control: float, n_treatment: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference, in standard deviations, that a two-sided t-test detects with ``power``.

    Solved with :class:`statsmodels.stats.power.TTestIndPower` (Cohen's d).
    Multiply by a metric's standard deviation for its absolute MDE; infinite
    when an arm has fewer than 2 members.
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
        lo = math.ceil(lo * 1.1)
