"""Session draws: the per-row categorical sampler behind session intents and event types."""

from __future__ import annotations

import numpy as np

from simulate.sessions import _categorical


def test_categorical_draw_matches_inverse_cdf_reference():
    """Reference: numpy inverse-CDF sampling on each gathered row, with the same uniforms."""
    rng = np.random.default_rng(3)
    table = rng.dirichlet(np.full(10, 0.5), 7) * rng.uniform(0.5, 2.0, (7, 1))  # rows need not sum to 1
    table[2, 4] = 0.0  # an impossible category is never drawn
    rows = rng.integers(0, 7, 50_000)
    got = _categorical(table, rows, np.random.default_rng(11))
    u = np.random.default_rng(11).random(rows.size)
    cdf = np.cumsum(table[rows], axis=1)
    ref = np.array([np.searchsorted(c, x * c[-1], side="right") for c, x in zip(cdf[:2000], u[:2000], strict=True)])
    np.testing.assert_array_equal(got[:2000], np.minimum(ref, 9))
    assert not np.any((rows == 2) & (got == 4))
    # Frequencies follow the table's rows.
    for g in (0, 2, 6):
        freq = np.bincount(got[rows == g], minlength=10) / np.sum(rows == g)
        np.testing.assert_allclose(freq, table[g] / table[g].sum(), atol=0.02)
