"""Rewards that off-policy evaluation can use: observable in the impressions log."""

from __future__ import annotations

import polars as pl

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.protocol import not_skipped_expr
from dwellrank_logs.schema import VIRAL_COLUMNS

__all__ = ["OPE_REWARDS", "observed_reward"]

#: Rewards that OPE can use: observable in the impressions log.
OPE_REWARDS = ("click", "viral", "not_skipped")


def observed_reward(impressions: pl.DataFrame, reward: str, t_skip_s: float) -> pl.Series:
    """The reward of each impression row: click, any viral action, or not skipped.

    Parameters
    ----------
    impressions : DataFrame
        Rows of the impressions log (clicked, reacted, commented, shared, dwell_s).
    reward : {'click', 'viral', 'not_skipped'}
    t_skip_s : float, seconds
        Dwell threshold of ``'not_skipped'`` (:func:`dwellrank_logs.protocol.not_skipped`).

    Returns
    -------
    Series of Float64 named ``reward``, one value (0 or 1) per row
    """
    if reward == "click":
        expr = pl.col("clicked")
    elif reward == "viral":
        expr = pl.any_horizontal(*VIRAL_COLUMNS)
    elif reward == "not_skipped":
        expr = not_skipped_expr(t_skip_s)
    else:
        raise ConfigError(f"reward must be one of {list(OPE_REWARDS)}, got {reward!r}")
    return impressions.select(expr.cast(pl.Float64).alias("reward"))["reward"]
