"""What the T_skip estimator raises and warns beyond the shared :mod:`dwellrank_logs.errors`."""

from __future__ import annotations

from dwellrank_logs.errors import DroppedRowsWarning, DwellrankError

__all__ = ["DwellDataWarning", "InsufficientDataError"]


class InsufficientDataError(DwellrankError, ValueError):
    """The input is well formed but cannot support a stable T_skip estimate.

    No rows, no actions, too few rows in a group, or no dwell bin that
    satisfies the threshold rule.
    """


class DwellDataWarning(DroppedRowsWarning):
    """Rows with unusable dwell or action values were counted and dropped."""
