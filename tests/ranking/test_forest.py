"""The compiled forest against its peer library: raw scores equal ``lightgbm.Booster.predict``."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pytest

from ranking.forest import compile_forest, exp_exact


def _boosters(
    seed: int, objective: str = "binary", use_missing: bool = True, nan_train: bool = False
) -> tuple[list[lgb.Booster], np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3000, 6))
    if nan_train:
        X[rng.random(X.shape) < 0.05] = np.nan
    X[rng.random(X.shape) < 0.05] = 0.0
    logit = np.nan_to_num(X[:, 0]) * 1.5 - np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) + np.isnan(X[:, 3])
    y = (rng.random(3000) < 1 / (1 + np.exp(-logit))).astype(float)
    if objective == "poisson":
        y = rng.poisson(np.exp(0.3 * np.nan_to_num(X[:, 0])))
    params = {
        "objective": objective,
        "num_leaves": 8,
        "learning_rate": 0.2,
        "verbose": -1,
        "seed": seed,
        "use_missing": use_missing,
        "min_data_in_leaf": 5,
    }
    boosters = [lgb.train(params, lgb.Dataset(X, y), num_boost_round=n) for n in (5, 20)]
    return boosters, X


def _random_inputs(seed: int, n_features: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 100)
    Z = rng.normal(size=(5000, n_features))
    Z[rng.random(Z.shape) < 0.1] = np.nan
    Z[rng.random(Z.shape) < 0.1] = 0.0
    Z[rng.random(Z.shape) < 0.05] = 1e-40  # LightGBM reads |x| <= 1e-35 as zero
    return Z


@pytest.mark.parametrize(("seed", "objective", "use_missing"), [(0, "binary", True), (1, "binary", False), (2, "poisson", True)])
def test_raw_scores_bit_identical_to_lightgbm(seed, objective, use_missing):
    """Trained without NaN (as the ranking features are), scored on NaN, zero and tiny inputs."""
    boosters, X = _boosters(seed, objective, use_missing)
    forest = compile_forest(boosters)
    assert forest is not None
    Z = _random_inputs(seed, X.shape[1])
    for ours, booster in zip(forest.raw_scores(Z), boosters, strict=True):
        np.testing.assert_array_equal(ours, booster.predict(Z, raw_score=True))


@pytest.mark.parametrize("n_rows", [1, 2, 4097])
def test_single_row_blocks_sum_trees_in_order(n_rows):
    """A block of one row (a request of one candidate, or the last row past a multiple of the block
    size) must add its 20 trees in LightGBM's order too, not numpy's pairwise order."""
    boosters, X = _boosters(5, "poisson")
    forest = compile_forest(boosters)
    assert forest is not None
    Z = _random_inputs(5, X.shape[1])
    Z = np.resize(Z, (n_rows, Z.shape[1]))
    for ours, booster in zip(forest.raw_scores(Z), boosters, strict=True):
        np.testing.assert_array_equal(ours, booster.predict(Z, raw_score=True))
    for i in range(min(n_rows, 50)):  # row by row: every row is a one-row block
        for ours, booster in zip(forest.raw_scores(Z[i : i + 1]), boosters, strict=True):
            np.testing.assert_array_equal(ours, booster.predict(Z[i : i + 1], raw_score=True))


@pytest.mark.parametrize("seed", [3, 4])
def test_nan_trained_forest_is_exact_or_refused(seed):
    """Forests with NaN-aware splits are either reproduced exactly or refused (callers fall back to LightGBM)."""
    boosters, X = _boosters(seed, nan_train=True)
    forest = compile_forest(boosters)
    if forest is None:
        return
    rng = np.random.default_rng(seed + 100)
    Z = rng.normal(size=(5000, X.shape[1]))
    Z[rng.random(Z.shape) < 0.1] = np.nan
    Z[rng.random(Z.shape) < 0.1] = 0.0
    Z[rng.random(Z.shape) < 0.05] = 1e-40  # LightGBM reads |x| <= 1e-35 as zero
    for ours, booster in zip(forest.raw_scores(Z), boosters, strict=True):
        np.testing.assert_array_equal(ours, booster.predict(Z, raw_score=True))


def test_exp_exact_matches_math_exp():
    x = np.linspace(-5, 5, 1001)
    np.testing.assert_array_equal(exp_exact(x), np.array([np.float64(np.e) ** 0 * __import__("math").exp(v) for v in x]))


@pytest.mark.parametrize("n_rows", [1, 2, 7, 1000, 4097])
def test_model_predictions_equal_lightgbm_at_every_batch_size(n_rows):
    """RankerModel.predict serves every batch size from the compiled forest (one thread) and large
    batches with several threads from LightGBM; both must give what the boosters themselves give."""
    from ranking.model import _FOREST_MIN_ROWS_THREADED
    from tests.ranking.ranking_worlds import split, tiny_model

    model = tiny_model("dwell")
    assert model.prepare()
    frame = split("dwell")[1]
    X = np.ascontiguousarray(np.resize(frame.select(model.feature_set.columns).to_numpy(), (n_rows, len(model.feature_set.columns))))
    # Reference: LightGBM's own evaluation of the same trees (Booster.predict), libm's exp.
    ref = {f"p_{name}": head.predict_proba(X, leaf_part=head.folded_.predict(X, raw_score=True)) for name, head in model.heads.items()}
    for name, reg in model.regressors.items():
        if reg.booster_ is not None:
            ref[name] = np.array([math.exp(v) for v in reg.booster_.predict(X, raw_score=True)])
    for threads in (1, 4):
        got = model.predict(X, num_threads=threads)
        for name, want in ref.items():
            np.testing.assert_array_equal(got[name], want, err_msg=f"{name}, {threads} threads")
    assert (n_rows >= _FOREST_MIN_ROWS_THREADED) == (n_rows == 4097)  # the last block of 4,096 rows has one row
