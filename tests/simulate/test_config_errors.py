"""Bad configuration values give one clear message naming the field (table-driven)."""

from __future__ import annotations

import pytest

from dwellrank_logs import ConfigError
from simulate import WorldConfig, simulate


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"n_members": -5}, r"n_members must be a positive integer, got -5"),
        ({"n_days": 0}, r"n_days must be a positive integer, got 0"),
        ({"t_skip_s": 0.0}, r"t_skip_s must be > 0"),
        ({"click_prob": (0.2, 0.2, 1.5, 0.2, 0.2)}, r"click_prob must be probabilities in \[0, 1\]"),
        ({"delivery_relevant_prob": -0.1}, r"delivery_relevant_prob must be probabilities"),
        ({"update_type_probs": (0.5, 0.5, 0.5, 0.0, 0.0)}, r"update_type_probs must sum to 1"),
        ({"skip_dwell_median_s": (1.0, 1.0)}, r"skip_dwell_median_s must have one value per update type \(5\), got 2"),
        ({"n_intents": 1}, r"n_intents must be in \[2, 20\], got 1"),
        ({"start_date": "yesterday"}, r"start_date must be an ISO date"),
        ({"feed_length": 80}, r"feed_length must be <= candidates_per_request"),
        ({"skip_dwell_sigma": float("nan")}, r"skip_dwell_sigma must be finite"),
        ({"phase_length": "poisson"}, r"phase_length must be 'geometric' or 'fixed', got 'poisson'"),
    ],
)
def test_invalid_config(changes, pattern):
    with pytest.raises(ConfigError, match=pattern):
        WorldConfig(**changes)


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True])
def test_invalid_seed(seed):
    with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
        simulate(WorldConfig(n_members=10, n_days=1), seed=seed)


def test_config_is_frozen():
    cfg = WorldConfig()
    with pytest.raises(AttributeError):
        cfg.n_members = 3  # type: ignore[misc]
