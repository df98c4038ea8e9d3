"""Trend labels: hand-computed cases of the paper's Table 2, compared exactly in integers."""

from __future__ import annotations

import numpy as np
import pytest

from engagement import day_label, session_label


@pytest.mark.parametrize(
    ("a_h", "a_f", "h", "f", "expected"),
    [
        (10, 4, 14, 14, -1),  # d_h > d_f
        (7, 7, 14, 14, 0),  # equal
        (3, 9, 14, 14, 1),  # d_h < d_f
        (0, 0, 14, 14, 0),
        (14, 14, 14, 14, 0),
        (7, 3, 14, 7, -1),  # 0.5 > 3/7
        (7, 4, 14, 7, 1),  # 0.5 < 4/7
        (6, 3, 12, 6, 0),  # 0.5 == 0.5 exactly, no float rounding
    ],
)
def test_day_label_hand_computed(a_h: int, a_f: int, h: int, f: int, expected: int) -> None:
    assert day_label(np.array([a_h]), np.array([a_f]), h, f)[0] == expected


@pytest.mark.parametrize(
    ("n_h", "n_f", "h", "f", "expected"),
    [
        (20, 10, 14, 14, 0),  # s_h > s_f: decrease
        (10, 10, 14, 14, 1),  # equal: not decrease
        (10, 30, 14, 14, 1),
        (0, 0, 14, 14, 1),
        (14, 6, 14, 7, 0),  # 1.0 > 6/7
        (14, 8, 14, 7, 1),  # 1.0 < 8/7
        (7, 3, 14, 7, 0),  # 0.5 > 3/7
    ],
)
def test_session_label_hand_computed(n_h: int, n_f: int, h: int, f: int, expected: int) -> None:
    assert session_label(np.array([n_h]), np.array([n_f]), h, f)[0] == expected
