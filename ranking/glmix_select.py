"""Prior variances of GLMix random-effect blocks, chosen on validation rows held out by time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dwellrank_logs.checks import is_finite_number
from dwellrank_logs.errors import ConfigError
from ranking.glmix import EffectDesign, GlmixConfig, GlmixModel, log_loss

__all__ = ["select_prior_variances"]


@dataclass(frozen=True)
class _Split:
    y: np.ndarray
    offset: np.ndarray
    designs: Sequence[EffectDesign] = field(default_factory=tuple)


def select_prior_variances(
    train: tuple[np.ndarray, np.ndarray, Sequence[EffectDesign]],
    valid: tuple[np.ndarray, np.ndarray, Sequence[EffectDesign]],
    grid: Sequence[float] = (0.03, 0.1, 0.3, 1.0, 3.0),
    config: GlmixConfig | None = None,
) -> tuple[GlmixConfig, list[dict[str, Any]]]:
    """Each block's prior variance chosen on validation data (later days than the training rows).

    Coordinate search: block by block, in the designs' order, every value of
    ``grid`` is fitted on ``train`` with the other blocks at their current
    choice, and the one with the lowest validation log loss is kept.

    Parameters
    ----------
    train, valid : (y, offset, designs)
        Training rows and held-out (by time) validation rows.
    grid : sequence of float
        Candidate variances (> 0).

    Returns
    -------
    config : GlmixConfig
        ``config`` with the chosen variances.
    table : list of dict
        Every trial: block, variance, validation log loss.
    """
    cfg = config or GlmixConfig()
    if not grid or not all(is_finite_number(v) and v > 0 for v in grid):
        raise ConfigError(f"grid must be a non-empty sequence of variances > 0, got {list(grid)!r}")
    tr, va = _Split(*train), _Split(*valid)
    table: list[dict[str, Any]] = []
    for d in tr.designs:
        losses = []
        for v in grid:
            model = GlmixModel(cfg.with_variance(d.name, v)).fit(tr.y, tr.offset, tr.designs)
            losses.append(log_loss(np.asarray(va.y, dtype=np.float64), model.decision_function(va.offset, va.designs)))
            table.append({"block": d.name, "prior_var": float(v), "valid_log_loss": losses[-1]})
        cfg = cfg.with_variance(d.name, float(grid[int(np.argmin(losses))]))
    return cfg, table
