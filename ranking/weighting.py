"""Dwell-weighted training rows: after-click dwell as the weight of a click.

Dangi et al., "Understanding dwell time to improve LinkedIn feed ranking"
(LinkedIn engineering blog), on what came next: "use a member's dwell time on
an update to modify the weight and/or label of our training data points".
A click followed by a quick return to the feed (a *click bounce*) says less
about relevance than one followed by minutes on the content, so under
``click_weighting="after_click_dwell"`` the P(click) head sees each click with
the weight

    s(d) = d / (d + h)

of its after-click dwell ``d`` (``click_dwell_s``, seconds), with
``h = click_dwell_half_s`` the dwell at which a click counts half (default
10 s: the simulator's bounces, median 3 s, weigh about 0.23; a 90 s read
about 0.9).  ``s`` saturates, so one very long read does not outweigh many
ordinary clicks.  The clicks' weights are then divided by their mean, so that
the clicks weigh as many rows as there are clicks: the head's average
P(click) stays the observed click rate (calibration in the large), while its
ordering moves towards the clicks that were followed by reading.  Non-clicks
keep weight 1; a click whose dwell was not logged gets the mean weight (1).

The weights multiply any sampling of the rows: a head fitted on per-head
negative downsampling (:mod:`ranking.sampling`) takes the kept rows' weights
as they are and is recalibrated with the sampling rates alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from dwellrank_logs.checks import is_finite_number
from dwellrank_logs.errors import ConfigError, SchemaError

if TYPE_CHECKING:
    from ranking.train import TrainConfig

__all__ = ["CLICK_WEIGHTINGS", "check_dwell_weighting", "click_dwell_weights", "head_weights", "weighting_record", "with_click_dwell"]

#: ``none``: every row weight 1 (the unweighted heads); ``after_click_dwell``: clicks weighted by s(d) above.
CLICK_WEIGHTINGS: tuple[str, ...] = ("none", "after_click_dwell")


def check_dwell_weighting(click_weighting: object, click_dwell_half_s: object) -> None:
    """Refuse an unknown weighting or a half-weight dwell that is not a finite number of seconds > 0."""
    if not isinstance(click_weighting, str) or click_weighting not in CLICK_WEIGHTINGS:
        raise ConfigError(f"click_weighting must be one of {', '.join(CLICK_WEIGHTINGS)}, got {click_weighting!r}")
    if not (is_finite_number(click_dwell_half_s) and float(click_dwell_half_s) > 0):
        raise ConfigError(f"click_dwell_half_s must be a finite number of seconds > 0, got {click_dwell_half_s!r}")


def click_dwell_weights(clicked: np.ndarray, click_dwell_s: np.ndarray, half_s: float) -> np.ndarray:
    """Row weights of the P(click) head: ``s(d) / mean over clicks of s(d)`` on clicks, 1 elsewhere.

    Parameters
    ----------
    clicked : ndarray, shape (n_rows,), bool
    click_dwell_s : ndarray, shape (n_rows,), float, seconds
        After-click dwell; NaN where not logged (always on non-clicks).
    half_s : float, seconds
        ``h`` of ``s(d) = d / (d + h)``.

    Returns
    -------
    ndarray, shape (n_rows,), float64, >= 0
        Mean 1 over the clicks (when there are any).
    """
    clicked = np.asarray(clicked, dtype=bool)
    d = np.asarray(click_dwell_s, dtype=np.float64)
    if d.shape != clicked.shape:
        raise ConfigError(f"click_dwell_s must have the shape of the click labels {clicked.shape}, got {d.shape}")
    d = np.where(np.isfinite(d), np.maximum(d, 0.0), np.nan)
    s = d / (d + half_s)
    on = clicked & np.isfinite(s)
    w = np.ones(clicked.size)
    if on.any():
        mean = float(s[on].mean())
        if mean > 0:
            w[on] = s[on] / mean
    return w


def weighting_record(click_weighting: str, click_dwell_half_s: float) -> dict[str, Any]:
    """What ``metadata.json`` records of a dwell weighting (only a non-default one is recorded)."""
    return {
        "click_weighting": click_weighting,
        "click_dwell_half_s": float(click_dwell_half_s),
        "heads": ["click"],
        "weight": "clicks: s(d) = d / (d + click_dwell_half_s) of the after-click dwell d, divided by its mean over the "
        "training clicks (a click without logged dwell: 1); other rows: 1",
        "sampling": "weights multiply the sample's rows; the recalibration uses the sampling rates only",
    }


def with_click_dwell(frame: pl.DataFrame, impressions: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """``frame`` with the impressions' after-click dwell as ``click_dwell_s`` (seconds, null without a click), row order kept.

    Joined on the impression's key (session, update, time): the training
    frame does not carry the column, and only a weighted fit reads it.
    ``frame`` keys by ``request_id`` (a training frame) or ``session_id`` (raw rows).
    """
    sid = "request_id" if "request_id" in frame.columns else "session_id"
    dwell = (
        impressions.lazy()
        .select(pl.col("session_id").alias(sid), "update_id", "ts", pl.col("click_dwell_s").cast(pl.Float64))
        .unique(subset=[sid, "update_id", "ts"], keep="first")
        .collect()
    )
    out = frame.join(dwell, on=[sid, "update_id", "ts"], how="left", maintain_order="left")
    if out.height != frame.height:
        raise SchemaError(
            f"impressions: the key (session_id, update_id, ts) matched {out.height:,} rows for {frame.height:,} training rows"
        )
    return out


def head_weights(cfg: TrainConfig, head: str, labels: pl.DataFrame) -> np.ndarray | None:
    """The row weights of ``head`` under ``cfg`` (None: unweighted), from rows holding ``click`` and ``click_dwell_s``."""
    if head != "click" or cfg.click_weighting == "none":
        return None
    return click_dwell_weights(labels["click"].to_numpy(), labels["click_dwell_s"].to_numpy().astype(np.float64), cfg.click_dwell_half_s)
