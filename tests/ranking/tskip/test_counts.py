"""The binned counts: bin edges, overflow, unusable dwell and group labels against numpy."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dwellrank_logs.errors import SchemaError
from dwellrank_logs.schema import ACTION_COLUMNS
from ranking import DwellDataWarning, TskipConfig, bin_counts
from ranking.tskip import DwellKeyCounts, binned_counts


def test_bin_edges_overflow_and_unusable_dwell_against_numpy():
    """Values on edges, -0.0, far-out finite dwell and every unusable kind, binned by numpy's floor(d / w)."""
    cfg = TskipConfig(bin_width_s=0.1, max_dwell_s=2.0, by=None)
    rng = np.random.default_rng(3)
    good = np.concatenate([np.arange(0, 2.5, 0.1), [-0.0, 1.9999999, 2.0, 1e12, 3.7e300], rng.exponential(1.0, 500)])
    bad = [np.nan, np.inf, -np.inf, -1e-9, -5.0]
    d = np.concatenate([good, bad])
    act = rng.random(d.size) < 0.3
    frame = pl.DataFrame({"dwell_s": d, **{c: act if c == "clicked" else np.zeros(d.size, bool) for c in ACTION_COLUMNS}})
    with pytest.warns(DwellDataWarning, match=r"dropped 5 row\(s\).*1 NaN, 2 infinite, 2 negative"):
        counts = bin_counts(frame, cfg)
    K = cfg.n_bins
    k = np.minimum(np.floor(good / cfg.bin_width_s), K).astype(int)
    np.testing.assert_array_equal(counts.n[0], np.bincount(k, minlength=K + 1))
    np.testing.assert_array_equal(counts.x[0], np.bincount(k, weights=act[: good.size], minlength=K + 1).astype(int))
    assert counts.dropped == {"NaN": 1, "infinite": 2, "negative": 2}


def test_group_labels_are_kept_exactly():
    """Labels that differ only by a trailing NUL (or case) are different groups, counted apart."""
    rng = np.random.default_rng(0)
    labels = ["c", "c\x00", "C"]
    frame = pl.DataFrame(
        {
            "dwell_s": rng.exponential(3.0, 6000),
            "clicked": rng.random(6000) < 0.2,
            "reacted": False,
            "commented": False,
            "shared": False,
            "grp": [labels[i % 3] for i in range(6000)],
        }
    )
    counts = bin_counts(frame, TskipConfig(by="grp"))
    assert counts.groups == tuple(sorted(labels))
    assert counts.n.sum(1).tolist() == [2000, 2000, 2000]


def _keys(group: list[str] | None = None) -> DwellKeyCounts:
    """An engine's group-by output built by hand (w = 0.5 s, max 2 s: bins 0-3 and overflow 4).

    Rows: key 0 (10 rows, 2 actions, 1 null action), key 3 (5, 5), keys 4 and 9 (overflow:
    3 + 4 rows, 1 + 2 actions), a null key (2 rows), NaN (3), +inf (1), -inf (1), -1 (6).
    """
    nan, inf = float("nan"), float("inf")
    return DwellKeyCounts(
        key=np.array([0.0, 3.0, 4.0, 9.0, 0.0, nan, inf, -inf, -1.0]),
        key_null=np.array([False, False, False, False, True, False, False, False, False]),
        n=np.array([10, 5, 3, 4, 2, 3, 1, 1, 6], dtype=np.int64),
        n_action=np.array([2, 5, 1, 2, 0, 1, 0, 0, 3], dtype=np.int64),
        n_null_action=np.array([1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.int64),
        group=None if group is None else np.array(group, dtype=object),
    )


def test_binned_counts_of_an_engine_group_by():
    """The engine-neutral reduction every engine hands over; expected counts by inspection of the rows."""
    cfg = TskipConfig(bin_width_s=0.5, max_dwell_s=2.0, by=None)
    with pytest.warns(DwellDataWarning, match=r"dropped 14 row\(s\).*\(2 null, 3 NaN, 2 infinite, 6 negative, 1 null action\)"):
        c = binned_counts(_keys(), cfg, "src")
    assert c.groups == ("all",) and c.source == "src"
    np.testing.assert_array_equal(c.edges, [0.0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_array_equal(c.n, [[9, 0, 0, 5, 7]])
    np.testing.assert_array_equal(c.x, [[2, 0, 0, 5, 3]])
    assert c.dropped == {"null": 2, "NaN": 3, "infinite": 2, "negative": 6, "null action": 1}
    with pytest.raises(SchemaError, match=r"src: column 'dwell_s' / 'clicked', .* has unusable values .*\(strict mode\)"):
        binned_counts(_keys(), TskipConfig(bin_width_s=0.5, max_dwell_s=2.0, by=None, strict=True), "src")


def test_binned_counts_per_group_sorted():
    """The same rows split into groups "b" and "a": labels come back sorted, each with its own rows."""
    cfg = TskipConfig(bin_width_s=0.5, max_dwell_s=2.0)
    keys = _keys(["b", "a", "b", "a", "a", "a", "a", "a", "a"])
    with pytest.warns(DwellDataWarning):
        c = binned_counts(keys, cfg, "src")
    assert c.groups == ("a", "b")
    np.testing.assert_array_equal(c.n, [[0, 0, 0, 5, 4], [9, 0, 0, 0, 3]])
    np.testing.assert_array_equal(c.x, [[0, 0, 0, 5, 2], [2, 0, 0, 0, 1]])
