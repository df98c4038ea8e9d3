"""The metrics and the decision rule against scikit-learn and a brute-force search."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from engagement import evaluate, fit_class_offsets


def test_evaluate_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    p = rng.dirichlet(np.ones(3), 200)
    m = evaluate("day", y, p)
    assert m["macro_f1"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"))
    yb = rng.integers(0, 2, 200)
    pb = rng.dirichlet(np.ones(2), 200)
    assert evaluate("session", yb, pb)["auroc"] == pytest.approx(roc_auc_score(yb, pb[:, 1]))


def test_class_offsets_maximise_validation_macro_f1_against_brute_force() -> None:
    """Reference: scikit-learn's f1_score over every offset pair on the grid; the found offsets reach its maximum."""
    rng = np.random.default_rng(4)
    y = rng.choice(3, 300, p=[0.15, 0.7, 0.15])  # imbalanced, as the day label
    logits = rng.normal(0, 1, (300, 3)) + 1.2 * np.eye(3)[y] + np.log([0.15, 0.7, 0.15])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    grid = np.round(np.linspace(-2, 2, 21), 10)
    b = fit_class_offsets(y, p, grid)
    best = max(
        f1_score(y, (np.log(p) + np.array([0.0, b1, b2])).argmax(1), average="macro", labels=[0, 1, 2], zero_division=0)
        for b1 in grid
        for b2 in grid
    )
    m = evaluate("day", y, p, b)
    assert b[0] == 0.0 and m["macro_f1"] == pytest.approx(best)
    assert m["macro_f1_argmax"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"))
    assert m["macro_f1"] > m["macro_f1_argmax"]  # the argmax under-predicts the minority classes
    # Perfectly separated classes: the argmax is already best, and the zero offset wins the tie.
    clean = np.eye(3)[y] * 0.9 + 0.1 / 3
    assert np.array_equal(fit_class_offsets(y, clean), np.zeros(3))


@pytest.mark.filterwarnings("ignore:Only one class is present")
def test_auroc_is_nan_with_a_single_class() -> None:
    m = evaluate("session", np.ones(5, dtype=int), np.tile([0.2, 0.8], (5, 1)))
    assert np.isnan(m["auroc"]) and m["accuracy"] == 1.0
