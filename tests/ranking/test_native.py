"""Native scoring (ranking.native) against its peer library: LightGBM's predictions plus the folded LR.

Reference for every score: each head's folded booster through ``lightgbm.Booster.predict(raw_score=True)``
plus ``arcsinh(X) @ raw_coef + intercept`` (the LR in raw units, as saved in ``<head>.lr.json``), a
sigmoid, the regressions' ``exp`` of LightGBM's raw score, and the value function's closed form
written out here.  The cache tests use two small boosters trained in the test (compilation takes a
fraction of a second) and count builds with :func:`ranking.native.native_stats`, not time.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import pickle
import sys
from collections.abc import Iterator
from dataclasses import replace
from functools import lru_cache

import lightgbm as lgb
import numpy as np
import pytest

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.schema import ACTIONS
from ranking import FeedRanker
from ranking.features import training_frame
from ranking.native import ScorerSpec, available_cpus, build_native, native_available, native_stats, value_params
from ranking.value import needed_predictions
from tests.ranking.ranking_worlds import T_SKIP_S, TINY, tiny_model, world

needs_native = pytest.mark.skipif(importlib.util.find_spec("lleaves") is None, reason="the [fast] extra (lleaves) is not installed")


@pytest.fixture(scope="module", autouse=True)
def _native_on_for_the_module() -> Iterator[None]:
    """tests/conftest.py turns native scoring off for the rest of the suite: on here, from the module's fixtures on."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DWELLRANK_NATIVE", "1")
    yield
    mp.undo()


def _reference(model, X, weights):
    """Score by hand from LightGBM's raw scores, the LR in raw units and the value function's closed form."""
    p, e = {}, {}
    for name, head in model.heads.items():
        logit = head.folded_.predict(X, raw_score=True, num_threads=1) + np.arcsinh(X) @ head.raw_coef_ + head.intercept_
        p[name] = 1.0 / (1.0 + np.exp(-logit))
    for name, reg in model.regressors.items():
        e[name] = np.exp(reg.booster_.predict(X, raw_score=True, num_threads=1))
    score = -weights.skip_penalty * p["skip"] + weights.long_dwell * p["long_dwell"] + weights.dwell * e["dwell"]
    for a in ACTIONS:
        score = score + weights.w[a] * p[a] * (1 + weights.alpha[a] * e[f"down_{a}"] + weights.beta[a] * e[f"up_{a}"])
    return score


@lru_cache(maxsize=1)
def _frame():
    """Feature rows of the tiny world the model was trained on (real counts and rates)."""
    return training_frame(world(*TINY).tables, "dwell", T_SKIP_S)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A copy of the tiny model prepared for native scoring of every output (one build serves predict() and
    score() under any weights: what FeedRanker(full=True) and rank_candidates_file use), its cache in a
    temporary folder.  The score-only build (FeedRanker's default) is the same code over a subset of the
    outputs: tests/ranking/test_ranker.py serves the simulator with it, the small-spec test below checks it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DWELLRANK_NATIVE_CACHE", str(tmp_path_factory.mktemp("native-cache")))
    model = copy.copy(tiny_model("dwell"))
    model._natives, model._forests = {}, {}
    model.prepare(full=True)
    assert list(model._natives) == [None]
    yield model
    mp.undo()


def _rows(model, n_rows):
    frame = _frame()
    return np.ascontiguousarray(np.resize(frame.select(model.feature_set.columns).to_numpy(), (n_rows, len(model.feature_set.columns))))


@needs_native
@pytest.mark.parametrize("n_rows", [1, 7, 1000])
def test_scores_equal_lightgbm_plus_the_folded_lr(prepared, n_rows):
    X = _rows(prepared, n_rows)
    native = prepared._natives[None]
    assert native is not None
    for weights in (prepared.weights, prepared.weights.engagement_only()):
        np.testing.assert_allclose(prepared.score(X, weights), _reference(prepared, X, weights), rtol=0, atol=1e-12)
    _, _, boosters = prepared._outputs(None)
    for got, booster in zip(native.raw_scores(X), boosters, strict=True):
        np.testing.assert_array_equal(got, booster.predict(X, raw_score=True, num_threads=1))  # trees: bit for bit
    preds = prepared.predict(X)  # every prediction, from the native raw scores
    for name, head in prepared.heads.items():
        logit = head.folded_.predict(X, raw_score=True, num_threads=1) + np.arcsinh(X) @ head.raw_coef_ + head.intercept_
        np.testing.assert_allclose(preds[f"p_{name}"], 1 / (1 + np.exp(-logit)), rtol=1e-13, atol=1e-15)


@needs_native
def test_scores_equal_lightgbm_plus_the_folded_lr_on_a_million_rows(prepared):
    """1M rows (the batch path: 1 and 2 threads) tiled from the tiny world's real feature rows, every other
    one scaled off the integer grid (counts, rates and ages between the trees' thresholds).  The reference
    (as above) is computed on the distinct rows and tiled the same way: equal rows, equal scores."""
    base = _frame().select(prepared.feature_set.columns).to_numpy()
    rng = np.random.default_rng(19)
    base[1::2] *= rng.uniform(0.5, 2.0, size=base[1::2].shape)
    n_rows = 1_000_000
    X = np.ascontiguousarray(np.resize(base, (n_rows, base.shape[1])))
    assert base.shape[0] < n_rows // 10  # the native code sees every row, the reference the distinct ones
    for weights in (prepared.weights, prepared.weights.engagement_only()):
        want = np.resize(_reference(prepared, base, weights), n_rows)
        got = prepared.score(X, weights, num_threads=1)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(prepared.score(X, num_threads=2), prepared.score(X, num_threads=1))


@needs_native
def test_every_asinh_branch_and_the_value_weights_argument(prepared):
    """Integers past the table, negatives, fractions, huge and sub-kZeroThreshold values; other weights, same code."""
    X = _rows(prepared, 64)
    X[0::4] *= 1.37
    X[1::4, :6] = [5000.0, -3.25, 1e30, 1e-40, -1e-40, 0.5]
    X[2::4] = -X[2::4]
    base = prepared.weights
    w = replace(base, w={a: v * (i + 1) for i, (a, v) in enumerate(base.w.items())}, skip_penalty=3.0)
    assert needed_predictions(w) == needed_predictions(base)
    want = _reference(prepared, X, w)
    got = prepared._natives[None].score(X, value_params(w))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-12)


@needs_native
def test_numpy_fallback_gives_the_same_scores(prepared, monkeypatch):
    X = _rows(prepared, 1000)
    native = prepared.score(X)
    prepared.backend = "numpy"
    try:
        fallback = prepared.score(X)
    finally:
        prepared.backend = "auto"
    np.testing.assert_allclose(fallback, native, rtol=0, atol=1e-12)
    monkeypatch.setenv("DWELLRANK_NATIVE", "0")
    off = copy.copy(prepared)
    off._natives = {}
    off.prepare(full=True)
    assert off._natives == {None: None}
    np.testing.assert_array_equal(off.score(X), fallback)


@needs_native
def test_a_pickled_model_travels_without_native_code_and_scores_the_same(prepared):
    """Spark broadcasts models by pickling them; the native scorer stays behind, the numpy path serves."""
    X = _rows(prepared, 50)
    clone = pickle.loads(pickle.dumps(prepared))
    assert clone._natives == {}
    np.testing.assert_allclose(clone.score(X), prepared.score(X), rtol=0, atol=1e-12)


@needs_native
def test_two_threads_give_the_one_thread_scores(prepared):
    X = _rows(prepared, 40_000)
    np.testing.assert_array_equal(prepared.score(X, num_threads=2), prepared.score(X, num_threads=1))


def _small_spec():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] + rng.normal(size=400) > 0).astype(float)
    params = {"num_leaves": 4, "verbose": -1, "min_data_in_leaf": 5, "seed": 0, "num_threads": 1}
    head = lgb.train({**params, "objective": "binary"}, lgb.Dataset(X, y), num_boost_round=3)
    reg = lgb.train({**params, "objective": "poisson"}, lgb.Dataset(X, rng.poisson(1.0, 400)), num_boost_round=3)
    spec = ScorerSpec(
        boosters=[head, reg],
        heads=("click",),
        coefs=(np.array([0.5, -0.25, 0.0, 1.0]),),
        intercepts=(-1.0,),
        transforms=("asinh",),
        regs=("down_click", "up_click"),
        fingerprint=hashlib.sha256(head.model_to_string().encode() + reg.model_to_string().encode()).hexdigest(),
        constants=(None, 0.7),  # up_click fitted without trees: a constant
    )
    return spec, X


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "payload byte flipped":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif how == "another key":
        path.write_bytes(data[:8] + b"0" * 64 + data[72:])
    else:  # "not an entry"
        path.write_bytes(b"garbage")


@needs_native
def test_value_function_of_a_small_spec_with_a_constant_regression(tmp_path, monkeypatch):
    """score = w P(click) (1 + alpha E[down] + beta * 0.7), E[down] = exp(LightGBM raw), P = sigmoid(raw + c.asinh(x) + b)."""
    monkeypatch.setenv("DWELLRANK_NATIVE_CACHE", str(tmp_path))
    spec, X = _small_spec()
    head, reg = spec.boosters
    p = 1 / (1 + np.exp(-(head.predict(X, raw_score=True, num_threads=1) + np.arcsinh(X) @ spec.coefs[0] + spec.intercepts[0])))
    down = np.exp(reg.predict(X, raw_score=True, num_threads=1))
    params = np.zeros(3 * len(ACTIONS) + 3)
    params[:3] = [2.0, 0.5, 0.25]  # w, alpha, beta of click; nothing else is compiled in
    params[-3] = 9.0  # lambda: no p_skip output, so it must not count
    scorer = build_native(spec)
    assert scorer is not None
    np.testing.assert_allclose(scorer.score(X, params), 2.0 * p * (1 + 0.5 * down + 0.25 * 0.7), rtol=1e-13, atol=1e-13)


@needs_native
@pytest.mark.parametrize("how", ["truncated", "payload byte flipped", "another key", "not an entry"])
def test_cache_is_reused_and_a_bad_entry_is_rebuilt(tmp_path, monkeypatch, how):
    monkeypatch.setenv("DWELLRANK_NATIVE_CACHE", str(tmp_path))
    spec, X = _small_spec()
    want = [b.predict(X, raw_score=True, num_threads=1) for b in spec.boosters]
    before = native_stats()
    first = build_native(spec)
    assert first is not None
    (entry,) = tmp_path.glob("*.obj")
    mtime = entry.stat().st_mtime_ns
    second = build_native(spec)
    assert second is not None
    after = native_stats()
    assert (after["compiled"] - before["compiled"], after["loaded"] - before["loaded"]) == (1, 1)
    assert entry.stat().st_mtime_ns == mtime  # read, not rewritten
    for got, ref in zip(second.raw_scores(X), want, strict=True):
        np.testing.assert_array_equal(got, ref)

    _damage(entry, how)
    third = build_native(spec)
    assert third is not None
    final = native_stats()
    assert (final["rejected"] - after["rejected"], final["compiled"] - after["compiled"]) == (1, 1)
    for got, ref in zip(third.raw_scores(X), want, strict=True):
        np.testing.assert_array_equal(got, ref)
    assert build_native(spec) is not None and native_stats()["loaded"] == final["loaded"] + 1  # the rebuilt entry is good


@needs_native
def test_an_entry_failing_the_check_is_rebuilt_and_a_failing_build_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DWELLRANK_NATIVE_CACHE", str(tmp_path))
    spec, _ = _small_spec()
    assert build_native(spec) is not None
    before = native_stats()
    assert build_native(spec, check=lambda scorer: False) is None
    after = native_stats()
    assert (after["rejected"] - before["rejected"], after["compiled"] - before["compiled"]) == (1, 1)


@pytest.mark.parametrize(
    ("files", "cap"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "nonsense"}, None),
        ({}, None),
    ],
)
def test_available_cpus_respects_the_affinity_and_the_cgroup_quota(tmp_path, files, cap):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == (min(affinity, cap) if cap else affinity)


def test_feedranker_backend_is_validated():
    with pytest.raises(ConfigError, match="backend must be one of auto, numpy, got 'gpu'"):
        FeedRanker(tiny_model("dwell"), backend="gpu")


def test_without_lleaves_the_backend_is_off_and_the_numpy_forest_serves(monkeypatch):
    """An install without the [fast] extra: importing lleaves fails, prepare() still compiles the numpy forest."""
    monkeypatch.setitem(sys.modules, "lleaves", None)
    monkeypatch.setitem(sys.modules, "lleaves.compiler", None)
    assert not native_available()
    model = copy.copy(tiny_model("dwell"))
    model._natives = {}
    assert model.prepare()  # the numpy forest compiled
    assert model._natives == {needed_predictions(model.weights): None}
    X = _rows(model, 7)
    np.testing.assert_allclose(model.score(X), _reference(model, X, model.weights), rtol=0, atol=1e-12)
