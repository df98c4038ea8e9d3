"""Held-out metrics: closed forms of normalised entropy, AUC and the calibration ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ranking.metrics import binary_metrics, calibration_bins, normalized_entropy


def test_normalized_entropy_closed_forms():
    """He et al. (2014): NE = log loss / H(background rate).  Predicting the background rate gives 1."""
    y = np.array([1, 0, 0, 0])
    assert normalized_entropy(y, np.full(4, 0.25)) == pytest.approx(1.0)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    p = np.array([0.9, 0.1, 0.2, 0.1])
    ll = -(math.log(0.9) + math.log(0.9) + math.log(0.8) + math.log(0.9)) / 4
    assert normalized_entropy(y, p) == pytest.approx(ll / h)
    m = binary_metrics(y, p)
    assert m["auc"] == 1.0 and m["calibration"] == pytest.approx(1.3 / 4 / 0.25)


def test_calibration_bins_are_quantile_bins():
    """Ten rows in five bins of two, by ascending prediction: each bin's mean prediction and observed rate."""
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4, 0.5, 0.0])
    y = np.array([1, 0, 1, 0, 0, 0, 1, 1, 0, 0])
    bins = calibration_bins(y, p, n_bins=5)
    assert bins["count"] == [2] * 5
    assert bins["mean_pred"] == pytest.approx([0.05, 0.25, 0.45, 0.65, 0.85])
    assert bins["observed"] == [0.0, 0.0, 0.5, 0.5, 1.0]
