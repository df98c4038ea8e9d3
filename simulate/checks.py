"""Argument checks of the simulator's experiment settings (A/B, OPE, exploration).

The predicates come from :mod:`dwellrank_logs.checks`; these add the one-line
messages of the A/B and OPE settings, which tests and users match and whose
wording differs from :func:`dwellrank_logs.checks.check_number` ("a finite
number") and :func:`~dwellrank_logs.checks.check_int` ("an integer >= 0").
"""

from __future__ import annotations

from typing import Any

from dwellrank_logs.checks import is_finite_number, is_integer
from dwellrank_logs.errors import ConfigError

__all__ = ["check_non_negative_int", "check_open_unit", "check_positive_number"]


def check_positive_number(name: str, v: Any, unit: str = "") -> None:
    """Raise :class:`ConfigError` ``<name> must be a number > 0<unit>, got <v>`` unless ``v`` is a finite number > 0.

    ``unit`` is appended to the rule as written, e.g. ``" (seconds)"``.
    """
    if not (is_finite_number(v) and v > 0):
        raise ConfigError(f"{name} must be a number > 0{unit}, got {v!r}")


def check_open_unit(name: str, v: Any, what: str | None = None) -> None:
    """Raise :class:`ConfigError` ``<name> (<what>) must be in the open interval (0, 1), got <v>`` unless ``0 < v < 1``."""
    if not (is_finite_number(v) and 0 < v < 1):
        label = name if what is None else f"{name} ({what})"
        raise ConfigError(f"{label} must be in the open interval (0, 1), got {v!r}")


def check_non_negative_int(name: str, v: object) -> None:
    """Raise :class:`ConfigError` ``<name> must be a non-negative integer, got <v>`` unless ``v`` is an integer >= 0 (not a bool)."""
    if not (is_integer(v) and v >= 0):
        raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")
