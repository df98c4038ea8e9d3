"""The skip label with an estimated T_skip, for the ranking stage.

The label itself is :func:`dwellrank_logs.protocol.skip_label_expr`, the one
definition every stage shares; here it gets its threshold checked, a frame
helper, and a fit-then-label wrapper around :func:`~ranking.tskip.estimate_tskip`.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from dwellrank_logs import protocol
from dwellrank_logs.checks import check_number
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.schema import ACTION_COLUMNS
from ranking.tskip.config import DEFAULT_CONFIG, TskipConfig
from ranking.tskip.estimate import estimate_tskip
from ranking.tskip.result import TskipResult

__all__ = ["TskipEstimator", "add_skip_label", "skip_label_expr"]


def skip_label_expr(t_skip_s: float, dwell_col: str = "dwell_s", action_cols: Sequence[str] = ACTION_COLUMNS) -> pl.Expr:
    """True where an impression is *skipped*: dwell < T_skip and no action.

    :func:`dwellrank_logs.protocol.skip_label_expr` (the one definition) with
    ``t_skip_s`` checked.

    Parameters
    ----------
    t_skip_s : float, seconds
    dwell_col : str
    action_cols : sequence of str
        Default: click and viral actions.
    """
    check_number("t_skip_s", t_skip_s)
    return protocol.skip_label_expr(t_skip_s, dwell_col, action_cols)


def add_skip_label(
    frame: pl.LazyFrame | pl.DataFrame,
    t_skip_s: float,
    dwell_col: str = "dwell_s",
    action_cols: Sequence[str] = ACTION_COLUMNS,
    name: str = "skipped",
) -> pl.LazyFrame | pl.DataFrame:
    """``frame`` with a Boolean ``name`` column from :func:`skip_label_expr` (same frame type)."""
    return frame.with_columns(skip_label_expr(t_skip_s, dwell_col, action_cols).alias(name))


class TskipEstimator:
    """Thin wrapper: ``fit`` estimates T_skip, ``label`` applies the skip label.

    Attributes
    ----------
    result_ : TskipResult
    t_skip_s_ : float, seconds
    """

    result_: TskipResult
    t_skip_s_: float

    def __init__(self, config: TskipConfig = DEFAULT_CONFIG) -> None:
        self.config = config

    def fit(self, frame: pl.LazyFrame | pl.DataFrame, source: str = "<frame>") -> TskipEstimator:
        """Estimate T_skip from ``frame`` (see :func:`~ranking.tskip.estimate_tskip`); returns ``self``."""
        self.result_ = estimate_tskip(frame, self.config, source)
        self.t_skip_s_ = self.result_.t_skip_s
        return self

    def label(self, frame: pl.LazyFrame | pl.DataFrame, name: str = "skipped") -> pl.LazyFrame | pl.DataFrame:
        """``frame`` with the skip label at the fitted T_skip as column ``name``."""
        if not hasattr(self, "t_skip_s_"):
            raise ConfigError("TskipEstimator is not fitted; call fit(frame) first")
        return add_skip_label(frame, self.t_skip_s_, self.config.dwell_col, self.config.action_cols, name)
