"""A cached simulated world for the T_skip tests: impressions and the simulator's true T_skip."""

from __future__ import annotations

from functools import cache

import polars as pl

from simulate import WorldConfig, simulate


@cache
def world(t_skip_s: float, seed: int) -> tuple[pl.DataFrame, float]:
    """1,500 members x 10 days (~110K impressions); returns impressions and the truth."""
    r = simulate(WorldConfig(n_members=1500, n_days=10, t_skip_s=t_skip_s), seed=seed)
    return r.tables["impressions"], float(r.truth["t_skip_s"])
