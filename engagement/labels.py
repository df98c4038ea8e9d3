"""Engagement-trend labels from the activity in the history and future windows (paper Table 2).

With ``s = # valid sessions / # days`` and ``d = # active days / # days`` over
the history window (``s_h``, ``d_h``) and the future window (``s_f``, ``d_f``):

* day-level label: -1 if ``d_h > d_f``, 0 if equal, 1 if ``d_h < d_f``;
* session-level label: 0 if ``s_h > s_f``, else 1.

Rates are compared exactly, in integers, so equal rates never differ by rounding.
"""

from __future__ import annotations

import numpy as np

__all__ = ["day_label", "session_label"]


def day_label(active_h: np.ndarray, active_f: np.ndarray, history_days: int = 14, future_days: int = 14) -> np.ndarray:
    """Day-level trend label from active-day counts (paper Table 2).

    ``d_h = active_h / history_days`` and ``d_f = active_f / future_days`` are
    compared exactly, in integers (``active_h * future_days`` vs
    ``active_f * history_days``), so equal rates never differ by rounding.

    Parameters
    ----------
    active_h, active_f : array of int, shape (N,)
        Active days in the history and future windows.
    history_days, future_days : int, days

    Returns
    -------
    ndarray of int64, shape (N,)
        -1 where ``d_h > d_f``, 0 where equal, 1 where ``d_h < d_f``.
    """
    lhs = np.asarray(active_h, dtype=np.int64) * future_days
    rhs = np.asarray(active_f, dtype=np.int64) * history_days
    return np.sign(rhs - lhs).astype(np.int64)


def session_label(n_h: np.ndarray, n_f: np.ndarray, history_days: int = 14, future_days: int = 14) -> np.ndarray:
    """Session-level trend label from valid-session counts (paper Table 2).

    Returns
    -------
    ndarray of int64, shape (N,)
        0 where ``s_h > s_f`` (engagement decreases), else 1.
    """
    lhs = np.asarray(n_h, dtype=np.int64) * future_days
    rhs = np.asarray(n_f, dtype=np.int64) * history_days
    return (lhs <= rhs).astype(np.int64)
