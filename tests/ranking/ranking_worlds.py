"""Small simulated worlds shared by the ranking-engine tests (built once per test session)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import polars as pl

from dwellrank_logs.protocol import CANDIDATE_COLUMNS
from ranking.features import FEATURE_SETS, training_frame
from simulate import SimulationResult, WorldConfig, simulate

#: The quality world: 2,000 members x 14 days, seed 0 (about 195K impressions).
QUALITY = (2000, 14, 0)
#: Held-out days at the end of the quality world.
HOLDOUT_DAYS = 3
#: The true T_skip of the simulator's default world, seconds.
T_SKIP_S = 2.5


@lru_cache(maxsize=4)
def world(n_members: int, n_days: int, seed: int) -> SimulationResult:
    return simulate(WorldConfig(n_members=n_members, n_days=n_days), seed=seed)


@lru_cache(maxsize=2)
def split(feature_set: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Training and held-out (last HOLDOUT_DAYS days) rows of the quality world."""
    frame = training_frame(world(*QUALITY).tables, feature_set, T_SKIP_S)
    last = frame["day"].max()
    return frame.filter(pl.col("day") <= last - HOLDOUT_DAYS), frame.filter(pl.col("day") > last - HOLDOUT_DAYS)


def xy(frame: pl.DataFrame, feature_set: str, label: str):
    return frame.select(FEATURE_SETS[feature_set].columns).to_numpy(), frame[label].to_numpy()


#: The small world the ranker and pipeline tests train on: 800 members x 6 days, seed 1.
TINY = (800, 6, 1)


@lru_cache(maxsize=2)
def tiny_model(feature_set: str = "dwell"):
    """A model trained on the tiny world (last 2 days held out, no baselines: fast)."""
    from ranking.train import TrainConfig, train_ranker

    cfg = TrainConfig(feature_set=feature_set, t_skip_s=T_SKIP_S, seed=0, holdout_days=2, baselines=False, skip_lift=False)
    return train_ranker(world(*TINY), config=cfg)


def day_candidates(tables: dict[str, pl.DataFrame], day: dt.date, n: int | None = None) -> pl.DataFrame:
    """The first ``n`` (default: all) impressions served on ``day`` (by request, then update) as candidate rows."""
    frame = (
        tables["impressions"]
        .join(tables["sessions"].select("session_id", pl.col("start_ts").alias("request_ts"), "client"), on="session_id")
        .join(tables["updates"].select("update_id", "author_id", "topic", "created_ts"), on="update_id")
        .filter(pl.col("request_ts").dt.date() == day)
        .rename({"session_id": "request_id"})
        .select(CANDIDATE_COLUMNS)
        .sort("request_id", "update_id")
    )
    return frame if n is None else frame.head(n)
