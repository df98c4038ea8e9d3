"""ABConfig's validation: one row per rule, with the message it raises."""

from __future__ import annotations

import pytest

from dwellrank_logs.errors import ConfigError
from simulate.ab import ABConfig


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"split": 0.0}, r"split \(the expected share .*\) must be in the open interval \(0, 1\), got 0.0"),
        ({"split": 1.0}, r"split .* got 1.0"),
        ({"split": 1.5}, r"split .* got 1.5"),
        ({"split": float("nan")}, r"split .* got nan"),
        ({"split": "half"}, r"split .* got 'half'"),
        ({"alpha": 0.0}, r"alpha .* got 0.0"),
        ({"power": 1.0}, r"power .* got 1.0"),
        ({"seed": -1}, r"seed must be a non-negative integer, got -1"),
        ({"pre_days": 1.5}, r"pre_days must be a non-negative integer, got 1.5"),
        ({"max_mde_sd": 0}, r"max_mde_sd must be a number > 0, got 0"),
        ({"t_skip_s": -2.0}, r"t_skip_s must be a number > 0 \(seconds\), got -2.0"),
        ({"ope_reward": "dwell"}, r"ope_reward must be one of \['click', 'viral', 'not_skipped'\], got 'dwell'"),
        ({"ope_temperature": 0.0}, r"ope_temperature must be a number > 0, got 0.0"),
        ({"world": {"n_members": 10}}, r"world must be a WorldConfig, got dict"),
    ],
)
def test_ab_config_rejects_bad_values(changes, pattern):
    with pytest.raises(ConfigError, match=pattern):
        ABConfig(**changes)
