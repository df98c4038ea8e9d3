"""T_skip by Bayes' rule: accuracy against the simulator's truth, closed forms, invariants.

References used here, never the estimator's own earlier output:

* the simulator's ground truth ``r.truth["t_skip_s"]`` (click and viral actions
  are impossible below it, for every update type);
* closed forms from scipy.stats CDFs for dwell drawn from known mixtures;
* direct counts with numpy/pandas (``np.mean(dwell < edge)``, groupby ratios);
* hand-built count tables whose threshold follows from the rule by inspection.
"""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dwellrank_logs.protocol import not_skipped_expr
from dwellrank_logs.schema import ACTION_COLUMNS
from ranking import (
    BinnedCounts,
    DwellDataWarning,
    TskipConfig,
    TskipEstimator,
    add_skip_label,
    bayes_curve,
    bin_counts,
    empirical_cdfs,
    estimate_tskip,
    skip_label_expr,
    threshold_from_curve,
)
from simulate import WorldConfig, simulate

SEEDS = (0, 1, 2)


@cache
def _world(t_skip_s: float, seed: int) -> tuple[pl.DataFrame, float]:
    """1,500 members x 10 days (~110K impressions); returns impressions and the truth."""
    r = simulate(WorldConfig(n_members=1500, n_days=10, t_skip_s=t_skip_s), seed=seed)
    return r.tables["impressions"], float(r.truth["t_skip_s"])


# ------------------------------------------------------------------ accuracy


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t_skip_s", [1.0, 2.5, 4.0])
def test_recovers_simulated_truth_overall_and_per_type(t_skip_s: float, seed: int):
    """Truth: the simulator's truth file value; tolerance: one bin (0.25 s)."""
    imp, truth = _world(t_skip_s, seed)
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
    imp, truth = _world(t_skip_s, 5)
    cfg = TskipConfig(bin_width_s=bin_width_s)
    res = estimate_tskip(imp, cfg)
    for est in [res.t_skip_s, *(t.threshold_s for t in res.groups.values())]:
        assert est is not None
        assert -bin_width_s - 1e-9 < est - truth <= bin_width_s + 1e-9


def test_background_accidental_actions_below_truth_do_not_move_the_threshold():
    """Noise: 0.05 % random clicks on every impression, also below T_skip (real logs have some)."""
    imp, truth = _world(2.5, 0)
    rng = np.random.default_rng(11)
    noise = rng.random(imp.height) < 0.0005
    noisy = imp.with_columns((pl.col("clicked") | pl.Series(noise)).alias("clicked"))
    below = noisy.filter(pl.col("dwell_s") < truth)
    assert below["clicked"].sum() > 10  # the noise really is there
    res = estimate_tskip(noisy)
    assert res.t_skip_s == pytest.approx(truth)
    assert all(t.threshold_s == pytest.approx(truth) for t in res.groups.values())


def test_permutation_invariance():
    imp, _ = _world(2.5, 1)
    base = estimate_tskip(imp)
    for seed in (1, 2):
        shuffled = imp.sample(fraction=1.0, shuffle=True, seed=seed)
        res = estimate_tskip(shuffled)
        assert res.t_skip_s == base.t_skip_s
        assert {g: t.threshold_s for g, t in res.groups.items()} == {g: t.threshold_s for g, t in base.groups.items()}
        np.testing.assert_array_equal(res.curve.n, base.curve.n)
        np.testing.assert_array_equal(res.curve.n_action, base.curve.n_action)


def test_lazy_frame_and_data_frame_agree_and_only_needed_columns_are_read():
    imp, _ = _world(1.0, 0)
    cols = ["dwell_s", *ACTION_COLUMNS, "update_type"]
    a = estimate_tskip(imp.select(cols))  # nothing else is needed
    b = estimate_tskip(imp.lazy())
    assert a.t_skip_s == b.t_skip_s
    np.testing.assert_array_equal(a.curve.n, b.curve.n)


# ------------------------------------------------------- curve vs references


def test_bayes_curve_equals_direct_counts_per_type():
    """Reference: pandas groupby of floor(dwell / w) -> mean of any-action (the same quantity, computed directly)."""
    imp, _ = _world(2.5, 2)
    cfg = TskipConfig()
    counts = bin_counts(imp, cfg)
    pdf = imp.select("update_type", "dwell_s", *ACTION_COLUMNS).to_pandas()
    pdf["k"] = np.minimum(np.floor(pdf["dwell_s"] / cfg.bin_width_s), cfg.n_bins).astype(int)
    pdf["a"] = pdf[list(ACTION_COLUMNS)].any(axis=1)
    for g in counts.groups:
        sub = pdf[pdf["update_type"] == g]
        ref = sub.groupby("k")["a"].agg(["size", "mean"])
        curve = bayes_curve(counts, g, cfg)
        ks = ref.index.to_numpy()
        ks = ks[ks < cfg.n_bins]
        np.testing.assert_array_equal(curve.n[ks], ref.loc[ks, "size"].to_numpy())
        np.testing.assert_allclose(curve.probability[ks], ref.loc[ks, "mean"].to_numpy(), rtol=1e-9, atol=1e-12)
        assert curve.p_action == pytest.approx(sub["a"].mean())
        empty = np.setdiff1d(np.arange(cfg.n_bins), ks)
        assert np.isnan(curve.probability[empty]).all()


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


def test_empirical_cdfs_match_numpy_ecdf():
    """Reference: F(e) = mean(dwell < e) within each population, by numpy."""
    imp, _ = _world(1.0, 1)
    cfg = TskipConfig(by=None)
    cdfs = empirical_cdfs(bin_counts(imp, cfg))
    d = imp["dwell_s"].to_numpy()
    a = imp.select(pl.any_horizontal(ACTION_COLUMNS)).to_series().to_numpy()
    e = cdfs["edges"][::7]
    np.testing.assert_allclose(cdfs["all"][::7], [(d < x).mean() for x in e], atol=1e-12)
    np.testing.assert_allclose(cdfs["action"][::7], [(d[a] < x).mean() for x in e], atol=1e-12)
    np.testing.assert_allclose(cdfs["no_action"][::7], [(d[~a] < x).mean() for x in e], atol=1e-12)


def test_wilson_interval_matches_closed_form():
    """Reference: the Wilson score interval written out (Wilson 1927), z = 1.959964."""
    imp, _ = _world(2.5, 0)
    c = bayes_curve(bin_counts(imp, TskipConfig(by=None)))
    m = c.n > 0
    n, p = c.n[m].astype(float), c.n_action[m] / c.n[m]
    z = stats.norm.ppf(0.975)
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    np.testing.assert_allclose(c.ci_low[m], np.clip(centre - half, 0, 1), atol=1e-9)
    np.testing.assert_allclose(c.ci_high[m], np.clip(centre + half, 0, 1), atol=1e-9)


def _mixture(n: int, seed: int, t0: float, pi: float) -> tuple[pl.DataFrame, stats.rv_continuous, stats.rv_continuous]:
    """Action dwell = t0 + Gamma(2, 3 s); no-action dwell = LogNormal(median 1.2 s, sigma 0.6)."""
    rng = np.random.default_rng(seed)
    act = rng.random(n) < pi
    dist_a = stats.gamma(a=2.0, loc=t0, scale=3.0)
    dist_n = stats.lognorm(s=0.6, scale=1.2)
    dwell = np.where(act, dist_a.rvs(n, random_state=rng), dist_n.rvs(n, random_state=rng))
    frame = pl.DataFrame(
        {"dwell_s": dwell, "clicked": act, "reacted": np.zeros(n, bool), "commented": np.zeros(n, bool), "shared": np.zeros(n, bool)}
    )
    return frame, dist_a, dist_n


def test_bayes_curve_matches_closed_form_within_its_intervals():
    """Closed form: P(A | a <= D < b) = pi dF_A / (pi dF_A + (1 - pi) dF_N) with scipy.stats CDFs."""
    t0, pi = 1.5, 0.3
    frame, dist_a, dist_n = _mixture(400_000, 3, t0, pi)
    cfg = TskipConfig(by=None, max_dwell_s=20.0)
    c = bayes_curve(bin_counts(frame, cfg), None, cfg)
    a, b = c.edges[:-1], c.edges[1:]
    fa, fn = dist_a.cdf(b) - dist_a.cdf(a), dist_n.cdf(b) - dist_n.cdf(a)
    with np.errstate(invalid="ignore"):
        exact = pi * fa / (pi * fa + (1 - pi) * fn)
    m = c.n >= 100
    assert m.sum() > 50
    inside = (c.ci_low[m] - 1e-12 <= exact[m]) & (exact[m] <= c.ci_high[m] + 1e-12)
    assert inside.mean() >= 0.9  # 95 % intervals: about 95 % coverage expected
    # Where the exact curve is 0 (below t0) the estimate is exactly 0, and the threshold is t0.
    assert np.all(c.probability[(b <= t0) & (c.n > 0)] == 0)
    assert threshold_from_curve(c, cfg.eps, cfg.persist, cfg.min_bin_count) == pytest.approx(t0)


def test_closed_form_tail_below_eps_is_not_a_threshold():
    """An action density that only becomes 'non-zero' slowly: P(A | D) stays below eps up to ~2 s."""
    frame, dist_a, dist_n = _mixture(200_000, 4, 0.0, 0.0005)
    cfg = TskipConfig(by=None, max_dwell_s=20.0, min_rows_per_group=10)
    c = bayes_curve(bin_counts(frame, cfg), None, cfg)
    thr = threshold_from_curve(c, cfg.eps, cfg.persist, cfg.min_bin_count)
    # Closed form: first edge where P(A | bin) > eps, give or take sampling noise of a few bins.
    a, b = c.edges[:-1], c.edges[1:]
    fa, fn = dist_a.cdf(b) - dist_a.cdf(a), dist_n.cdf(b) - dist_n.cdf(a)
    exact = 0.0005 * fa / (0.0005 * fa + 0.9995 * fn)
    first_exact = a[np.argmax(exact > cfg.eps)]
    assert thr is not None and thr >= first_exact - cfg.bin_width_s


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
    imp, truth = _world(4.0, 0)
    res = estimate_tskip(imp, TskipConfig(by=None))
    assert res.groups == {} and res.group_curves == {} and res.consistent
    assert abs(res.t_skip_s - truth) <= 0.25


def test_custom_columns_and_integer_actions():
    imp, truth = _world(2.5, 0)
    renamed = imp.select(
        pl.col("dwell_s").alias("dwell"),
        pl.col("clicked").cast(pl.Int8).alias("click01"),
        pl.col("update_type").alias("kind"),
    )
    res = estimate_tskip(renamed, TskipConfig(dwell_col="dwell", action_cols=("click01",), by="kind"))
    assert abs(res.t_skip_s - truth) <= 0.25
    assert res.curve.n_action_total == int(imp["clicked"].sum())


# ------------------------------------------------------------- skip label


def test_skip_label_matches_definition_and_history_counters():
    """Reference: skipped = dwell < T and no action, written in numpy; and the complement of not_skipped_expr."""
    imp, _ = _world(2.5, 0)
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
    imp, truth = _world(1.0, 2)
    est = TskipEstimator().fit(imp)
    assert abs(est.t_skip_s_ - truth) <= 0.25
    lab = est.label(imp)
    assert lab["skipped"].sum() == imp.filter((pl.col("dwell_s") < est.t_skip_s_) & ~pl.any_horizontal(ACTION_COLUMNS)).height


# ------------------------------------------------------------- properties


def test_result_json_is_strict_and_self_consistent():
    imp, _ = _world(2.5, 0)
    d = estimate_tskip(imp).to_dict()
    text = json.dumps(d, allow_nan=False)  # NaN must have become null
    back = json.loads(text)
    c = back["curve"]
    assert len(c["edges_s"]) == len(c["counts"]) + 1 == len(c["probability"]) + 1
    assert set(back["per_group"]) == set(imp["update_type"].unique())
    assert sum(c["counts"]) + c["n_overflow"] == imp.height


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 400),
    seed=st.integers(0, 2**32 - 1),
    rate=st.floats(0.0, 1.0),
    w=st.sampled_from([0.1, 0.25, 0.5]),
)
def test_curve_bounds_and_monotone_cdfs(n: int, seed: int, rate: float, w: float):
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({"dwell_s": rng.exponential(3.0, n), "clicked": rng.random(n) < rate})
    cfg = TskipConfig(by=None, action_cols=("clicked",), bin_width_s=w, max_dwell_s=15.0)
    counts = bin_counts(frame, cfg)
    c = bayes_curve(counts, None, cfg)
    assert c.n.sum() + c.n_overflow == n
    m = c.n > 0
    assert np.all((c.ci_low[m] <= c.probability[m] + 1e-12) & (c.probability[m] <= c.ci_high[m] + 1e-12))
    assert np.all((c.ci_low[m] >= 0) & (c.ci_high[m] <= 1))
    for f in (c.cdf_all, c.cdf_action, c.cdf_no_action):
        ok = f[np.isfinite(f)]
        assert np.all(np.diff(ok) >= -1e-12) and (ok.size == 0 or (ok[0] == 0 and ok[-1] <= 1 + 1e-12))
    assert math.isclose(c.p_action, float(np.mean(frame["clicked"].to_numpy())))


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
