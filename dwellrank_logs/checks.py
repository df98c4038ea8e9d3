"""Argument checks shared by every configuration dataclass.

One definition of "a finite real number" and "an integer" (bools are
neither; NumPy scalars are both), and the one-line messages the packages
raise: ``<name> must be <rule>, got <value>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeGuard

import numpy as np

from dwellrank_logs.errors import ConfigError, SchemaError

__all__ = ["check_int", "check_number", "check_positive_int", "is_finite_number", "is_integer", "require_columns"]


def is_finite_number(v: object) -> TypeGuard[int | float | np.integer | np.floating]:
    """A finite int or float (NumPy scalars included), not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


def is_integer(v: object) -> TypeGuard[int | np.integer]:
    """An int (NumPy integers included), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_int(name: str, v: object, low: int) -> None:
    """Raise :class:`ConfigError` ``<name> must be an integer >= <low>`` unless ``v`` is one."""
    if not (is_integer(v) and v >= low):
        raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")


def check_positive_int(name: str, v: object) -> None:
    """Raise :class:`ConfigError` ``<name> must be a positive integer`` unless ``v`` is one."""
    if not (is_integer(v) and v > 0):
        raise ConfigError(f"{name} must be a positive integer, got {v!r}")


def check_number(name: str, v: object, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` ``<name> must be a finite number > 0`` (``>= 0`` with ``allow_zero``)."""
    if not (is_finite_number(v) and (v >= 0 if allow_zero else v > 0)):
        raise ConfigError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}")


def require_columns(names: Sequence[str], columns: Sequence[str], what: str, source: str) -> None:
    """Raise :class:`SchemaError` ``<source>: <what> is missing column(s) ...; found ...`` unless every column is in ``names``.

    ``names`` are the columns that arrived (a frame's ``columns`` or a schema's ``names()``).
    """
    missing = [c for c in columns if c not in names]
    if missing:
        raise SchemaError(
            f"{source}: {what} is missing column(s) {', '.join(repr(m) for m in missing)}; found {', '.join(names) or 'no columns'}"
        )
