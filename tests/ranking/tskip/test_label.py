"""The skip label at an estimated T_skip against its definition in numpy and in dwellrank_logs.protocol."""

from __future__ import annotations

import numpy as np
import polars as pl

from dwellrank_logs.protocol import not_skipped_expr
from dwellrank_logs.schema import ACTION_COLUMNS
from ranking import TskipEstimator, add_skip_label, skip_label_expr
from tests.ranking.tskip.tskip_worlds import world


def test_skip_label_matches_definition_and_history_counters():
    """Reference: skipped = dwell < T and no action, written in numpy; and the complement of not_skipped_expr."""
    imp, _ = world(2.5, 0)
    lab = add_skip_label(imp, 2.5)
    d = imp["dwell_s"].to_numpy()
    any_act = np.zeros(imp.height, bool)
    for c in ACTION_COLUMNS:
        any_act |= imp[c].to_numpy()
    np.testing.assert_array_equal(lab["skipped"].to_numpy(), (d < 2.5) & ~any_act)
    np.testing.assert_array_equal(lab["skipped"].to_numpy(), ~imp.select(not_skipped_expr(2.5)).to_series().to_numpy())
    custom = imp.select(skip_label_expr(2.5, action_cols=("clicked",))).to_series().to_numpy()
    np.testing.assert_array_equal(custom, (d < 2.5) & ~imp["clicked"].to_numpy())
    assert isinstance(add_skip_label(imp.lazy(), 2.5), pl.LazyFrame)


def test_estimator_class_fits_and_labels():
    imp, truth = world(1.0, 2)
    est = TskipEstimator().fit(imp)
    assert abs(est.t_skip_s_ - truth) <= 0.25
    lab = est.label(imp)
    assert lab["skipped"].sum() == imp.filter((pl.col("dwell_s") < est.t_skip_s_) & ~pl.any_horizontal(ACTION_COLUMNS)).height
