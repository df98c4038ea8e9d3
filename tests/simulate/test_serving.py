"""Feed order: descending score, ties (and NaN) in candidate order, as a stable sort gives."""

from __future__ import annotations

import numpy as np
import pytest

from simulate.serving import _feed_order


@pytest.mark.parametrize("levels", [None, 3, 1])
def test_feed_order_equals_stable_argsort_of_negated_scores(levels):
    """Reference: ``numpy.argsort(-scores, axis=1, kind="stable")``, with distinct scores, many ties, all tied and NaN."""
    rng = np.random.default_rng(0)
    scores = rng.random((400, 50)) if levels is None else rng.integers(0, levels, (400, 50)).astype(np.float64)
    scores[::7, ::5] = np.nan
    np.testing.assert_array_equal(_feed_order(scores), np.argsort(-scores, axis=1, kind="stable"))
