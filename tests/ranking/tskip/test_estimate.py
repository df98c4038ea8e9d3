"""T_skip estimates: accuracy against the simulator's truth, the threshold rule, the one-T_skip check, the report.

References used here, never the estimator's own earlier output:

* the simulator's ground truth ``r.truth["t_skip_s"]`` (click and viral actions
  are impossible below it, for every update type);
* hand-built count tables whose threshold follows from the rule by inspection;
* constructed mixtures whose per-type jump is set by hand.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from dwellrank_logs.schema import ACTION_COLUMNS
from ranking import BinnedCounts, TskipConfig, bayes_curve, estimate_tskip, threshold_from_curve
from tests.ranking.tskip.tskip_worlds import world

SEEDS = (0, 1, 2)


# ------------------------------------------------------------------ accuracy


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t_skip_s", [1.0, 2.5, 4.0])
def test_recovers_simulated_truth_overall_and_per_type(t_skip_s: float, seed: int):
    """Truth: the simulator's truth file value; tolerance: one bin (0.25 s)."""
    imp, truth = world(t_skip_s, seed)
    assert truth == t_skip_s
    cfg = TskipConfig()
    res = estimate_tskip(imp.lazy(), cfg)
    assert abs(res.t_skip_s - truth) <= cfg.bin_width_s
    assert set(res.groups) == set(imp["update_type"].unique())
    for g, t in res.groups.items():
        assert t.threshold_s is not None, g
        assert abs(t.threshold_s - truth) <= cfg.bin_width_s, (g, t.threshold_s, truth)
        assert t.n_action_below == 0  # the simulator allows no action below the truth
    assert res.consistent and res.spread_s is not None and res.spread_s <= cfg.bin_width_s


@pytest.mark.parametrize(("t_skip_s", "bin_width_s"), [(1.8, 0.25), (3.1, 0.2), (2.5, 0.1), (1.0, 0.15)])
def test_truth_off_the_bin_grid_is_found_within_one_bin(t_skip_s: float, bin_width_s: float):
    """A truth that is not a bin edge: the estimate is the edge of the bin holding it (or the next)."""
    imp, truth = world(t_skip_s, 5)
    cfg = TskipConfig(bin_width_s=bin_width_s)
    res = estimate_tskip(imp, cfg)
    for est in [res.t_skip_s, *(t.threshold_s for t in res.groups.values())]:
        assert est is not None
        assert -bin_width_s - 1e-9 < est - truth <= bin_width_s + 1e-9


def test_background_accidental_actions_below_truth_do_not_move_the_threshold():
    """Noise: 0.05 % random clicks on every impression, also below T_skip (real logs have some)."""
    imp, truth = world(2.5, 0)
    rng = np.random.default_rng(11)
    noise = rng.random(imp.height) < 0.0005
    noisy = imp.with_columns((pl.col("clicked") | pl.Series(noise)).alias("clicked"))
    below = noisy.filter(pl.col("dwell_s") < truth)
    assert below["clicked"].sum() > 10  # the noise really is there
    res = estimate_tskip(noisy)
    assert res.t_skip_s == pytest.approx(truth)
    assert all(t.threshold_s == pytest.approx(truth) for t in res.groups.values())


def test_permutation_invariance():
    imp, _ = world(2.5, 1)
    base = estimate_tskip(imp)
    for seed in (1, 2):
        shuffled = imp.sample(fraction=1.0, shuffle=True, seed=seed)
        res = estimate_tskip(shuffled)
        assert res.t_skip_s == base.t_skip_s
        assert {g: t.threshold_s for g, t in res.groups.items()} == {g: t.threshold_s for g, t in base.groups.items()}
        np.testing.assert_array_equal(res.curve.n, base.curve.n)
        np.testing.assert_array_equal(res.curve.n_action, base.curve.n_action)


def test_lazy_frame_and_data_frame_agree_and_only_needed_columns_are_read():
    imp, _ = world(1.0, 0)
    cols = ["dwell_s", *ACTION_COLUMNS, "update_type"]
    a = estimate_tskip(imp.select(cols))  # nothing else is needed
    b = estimate_tskip(imp.lazy())
    assert a.t_skip_s == b.t_skip_s
    np.testing.assert_array_equal(a.curve.n, b.curve.n)


# ------------------------------------------------------------ threshold rule


def _counts(n: list[int], x: list[int], w: float = 0.5) -> BinnedCounts:
    k = len(n)
    return BinnedCounts(
        edges=np.arange(k + 1) * w,
        groups=("all",),
        n=np.array([[*n, 0]]),
        x=np.array([[*x, 0]]),
        dropped={},
    )


@pytest.mark.parametrize(
    ("n", "x", "expected", "why"),
    [
        ([1000, 1000, 1000, 1000, 1000], [0, 0, 100, 100, 100], 1.0, "clean jump at bin 2"),
        ([1000, 1000, 1000, 1000, 1000, 1000], [0, 100, 0, 100, 100, 100], 1.5, "isolated noisy bin 1 ignored"),
        ([1000, 5, 1000, 1000, 1000], [0, 0, 100, 100, 100], 1.0, "sparse bin below is skipped"),
        ([1000, 1000, 5, 1000, 1000], [0, 100, 0, 100, 100], 0.5, "sparse bin inside the run is skipped"),
        ([1000, 1000, 1000, 3, 2], [0, 100, 100, 3, 2], None, "sparse tail cannot complete a run"),
        ([1000, 1000, 1000, 1000], [0, 1, 1, 1], None, "rate 0.1% never clears eps"),
        ([1000, 1000, 1000, 1000], [0, 0, 0, 0], None, "no actions"),
    ],
)
def test_threshold_rule_on_hand_built_counts(n, x, expected, why):
    c = bayes_curve(_counts(n, x))
    assert threshold_from_curve(c, eps=0.002, persist=3, min_bin_count=20) == expected, why


def test_threshold_rule_parameters():
    c = bayes_curve(_counts([1000] * 5, [0, 100, 0, 100, 100]))
    assert threshold_from_curve(c, eps=0.002, persist=1) == 0.5
    assert threshold_from_curve(c, eps=0.002, persist=2) == 1.5
    assert threshold_from_curve(c, eps=0.5, persist=1) is None


# ------------------------------------------------------------- one T_skip?


def _typed(n: int, seed: int, thresholds: dict[str, float]) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for t, t0 in thresholds.items():
        eng = rng.random(n) < 0.3
        dwell = np.where(eng, t0 + rng.exponential(6.0, n), rng.lognormal(np.log(0.9), 0.55, n))
        act = eng & (rng.random(n) < 0.5)
        parts.append(
            pl.DataFrame(
                {
                    "update_type": [t] * n,
                    "dwell_s": dwell,
                    "clicked": act,
                    "reacted": act & False,
                    "commented": act & False,
                    "shared": act & False,
                }
            )
        )
    return pl.concat(parts)


def test_single_tskip_check_flags_types_with_different_thresholds():
    """Constructed truth: type a jumps at 1.0 s, type b at 3.0 s."""
    res = estimate_tskip(_typed(40_000, 0, {"a": 1.0, "b": 3.0}))
    assert res.groups["a"].threshold_s == 1.0 and res.groups["b"].threshold_s == 3.0
    assert res.t_skip_s == 1.0
    assert not res.consistent and res.spread_s == 2.0 and res.max_deviation_s == 2.0
    assert res.groups["a"].fits and not res.groups["b"].fits
    assert "does NOT fit" in res.summary()


def test_single_tskip_check_accepts_types_with_the_same_threshold():
    res = estimate_tskip(_typed(40_000, 1, {"a": 2.0, "b": 2.0, "c": 2.0}))
    assert res.consistent and res.spread_s == 0.0 and res.t_skip_s == 2.0
    assert "one T_skip fits every group" in res.summary()


def test_by_none_gives_pooled_curve_only():
    imp, truth = world(4.0, 0)
    res = estimate_tskip(imp, TskipConfig(by=None))
    assert res.groups == {} and res.group_curves == {} and res.consistent
    assert abs(res.t_skip_s - truth) <= 0.25


def test_custom_columns_and_integer_actions():
    imp, truth = world(2.5, 0)
    renamed = imp.select(
        pl.col("dwell_s").alias("dwell"),
        pl.col("clicked").cast(pl.Int8).alias("click01"),
        pl.col("update_type").alias("kind"),
    )
    res = estimate_tskip(renamed, TskipConfig(dwell_col="dwell", action_cols=("click01",), by="kind"))
    assert abs(res.t_skip_s - truth) <= 0.25
    assert res.curve.n_action_total == int(imp["clicked"].sum())


# ------------------------------------------------------------- report


def test_result_json_is_strict_and_self_consistent():
    imp, _ = world(2.5, 0)
    d = estimate_tskip(imp).to_dict()
    text = json.dumps(d, allow_nan=False)  # NaN must have become null
    back = json.loads(text)
    c = back["curve"]
    assert len(c["edges_s"]) == len(c["counts"]) + 1 == len(c["probability"]) + 1
    assert set(back["per_group"]) == set(imp["update_type"].unique())
    assert sum(c["counts"]) + c["n_overflow"] == imp.height
