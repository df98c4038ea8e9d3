"""GLMix random effects: the batched fit against per-entity and joint references, recovery, files, bad input."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from scipy.optimize import minimize

from dwellrank_logs.errors import ConfigError, SchemaError
from ranking.features import IncompatibleModelError, training_frame
from ranking.glmix import EffectDesign, GlmixConfig, GlmixModel, GlmixWorldError
from ranking.glmix_data import MEMBER_TYPE_FEATURES, glmix_designs, world_fingerprint
from ranking.glmix_io import load_glmix
from ranking.glmix_select import select_prior_variances
from ranking.glmix_solve import block_scores, newton_fit, sort_block
from ranking.heads import LogisticHead
from simulate.truth import world_members
from tests.ranking.ranking_worlds import T_SKIP_S, TINY, world

TIGHT = GlmixConfig(prior_var=(("member", 0.7), ("update", 0.4)), max_newton=60, newton_tol=1e-12)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _planted(rng: np.random.Generator, n_ent: int, rows: int, p: int, sd: float, offset_sd: float = 0.5):
    """Rows of entities (ids spaced out, not 0..n-1) with planted coefficients N(0, sd^2) and a random offset."""
    code = rng.integers(0, n_ent, rows)
    ids = code * 7 + 3
    X = rng.normal(size=(rows, p))
    X[:, 0] = 1.0
    offset = rng.normal(0.0, offset_sd, rows)
    true = rng.normal(0.0, sd, (n_ent, p))
    y = (rng.random(rows) < _sigmoid(offset + np.einsum("ij,ij->i", X, true[code]))).astype(np.float64)
    return ids, X, offset, y, true


def _penalised_nll(X: np.ndarray, y: np.ndarray, offset: np.ndarray, var: float):
    """The objective of one entity written independently of ranking.glmix_solve (logaddexp form)."""

    def f(w: np.ndarray) -> float:
        eta = offset + X @ w
        return float(np.sum(np.logaddexp(0.0, eta) - y * eta) + w @ w / (2 * var))

    def g(w: np.ndarray) -> np.ndarray:
        return X.T @ (_sigmoid(offset + X @ w) - y) + w / var

    return f, g


@pytest.mark.parametrize("one_hot", [False, True])
def test_batched_fit_equals_per_entity_scipy_fits(one_hot) -> None:
    """Reference: scipy.optimize BFGS (gtol 1e-10) on each entity's penalised log-likelihood, one entity at a time.

    ``one_hot``: the first three columns are one level each of a one-hot group
    (never nonzero together), whose Hessian pairs the batched fit skips.
    """
    rng = np.random.default_rng(0)
    ids, X, offset, y, _ = _planted(rng, 25, 700, 4, 1.0)
    if one_hot:
        X[:, :3] = np.eye(3)[rng.integers(0, 3, X.shape[0])]
    block = sort_block(ids, X)
    assert block.together[0, 1] != one_hot
    # chunk_rows=60 spreads the entities over many chunks, as large data would.
    coef, _ = newton_fit(block, y[block.perm], offset[block.perm], 0.7, max_iter=60, tol=1e-12, chunk_rows=60)
    ref = np.empty_like(coef)
    for k, e in enumerate(block.ids):
        m = ids == e
        f, g = _penalised_nll(X[m], y[m], offset[m], 0.7)
        ref[k] = minimize(f, np.zeros(4), jac=g, method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(coef, ref, atol=1e-6)


def _newton_loop(X, y, offset, ids, var, steps, max_step):
    """The same capped Newton steps written plainly, one entity at a time (np.linalg.solve on its dense Hessian)."""
    out = {}
    for e in np.unique(ids):
        m = ids == e
        Z, yy, off = X[m], y[m], offset[m]
        w = np.zeros(X.shape[1])
        for _ in range(steps):
            mu = _sigmoid(off + Z @ w)
            d = np.linalg.solve((Z * (mu * (1 - mu))[:, None]).T @ Z + np.eye(X.shape[1]) / var, Z.T @ (mu - yy) + w / var)
            w = w - d * min(1.0, max_step / np.abs(d).max())
        out[e] = w
    return out


@pytest.mark.parametrize("spread", ["compact", "wide"])
def test_mixed_design_steps_equal_a_per_entity_loop(spread) -> None:
    """Two one-hot groups (one of them absent from some rows: empty slots), a flag, an intercept, a dense and a count column.

    The 0/1 columns go through the slot gathers and bincounts, the others through products, and the
    Hessians through the sparse Cholesky; the reference is the plain loop above.  ``wide``: ids spread
    over 2^62, too wide for the composite sort key (the stable argsort instead).
    """
    rng = np.random.default_rng(7)
    n, n_ent = 3000, 40
    code = rng.integers(0, n_ent, n)
    ids = code * 1_000_003 - 500 if spread == "compact" else code * 2**56 - 2**61
    X = np.zeros((n, 11))
    X[np.arange(n), rng.integers(0, 3, n)] = 1.0  # group A, levels 0-2
    has_b = rng.random(n) < 0.7
    X[np.flatnonzero(has_b), 3 + rng.integers(0, 4, has_b.sum())] = 1.0  # group B, levels 3-6, absent from 30 %
    X[:, 7] = rng.random(n) < 0.4  # a flag
    X[:, 8] = 1.0  # intercept
    X[:, 9] = rng.normal(size=n)
    X[:, 10] = rng.integers(0, 3, n)  # counts 0-2: has 1s, not 0/1
    offset = rng.normal(0.0, 0.5, n)
    y = (rng.random(n) < _sigmoid(offset + X @ rng.normal(0.0, 0.8, 11))).astype(np.float64)
    block = sort_block(ids, X)
    np.testing.assert_array_equal(block.perm, np.argsort(ids, kind="stable"))
    np.testing.assert_array_equal(block.ids, np.unique(ids))
    np.testing.assert_array_equal(block.features(0, n), X[block.perm])
    np.testing.assert_array_equal(block.indicator, [True] * 9 + [False] * 2)
    assert block.active.shape[0] == int(X[:, :9].sum(axis=1).max()) == 4
    assert not block.together[0, 1] and not block.together[3, 4] and block.together[0, 3]
    ref = _newton_loop(X, y, offset, ids, 0.5, 4, 0.3)  # a small step cap: active in the first steps
    for chunk_rows in (50, 262_144):
        coef, steps = newton_fit(block, y[block.perm], offset[block.perm], 0.5, max_iter=4, tol=1e-300, max_step=0.3, chunk_rows=chunk_rows)
        assert steps == 4
        np.testing.assert_allclose(coef, np.array([ref[e] for e in block.ids]), rtol=0, atol=1e-12)
        scores = block_scores(block, coef, chunk_rows)
        np.testing.assert_allclose(
            scores, np.einsum("ij,ij->i", X[block.perm], coef[np.repeat(np.arange(n_ent), block.counts)]), atol=1e-12
        )


def test_block_coordinate_descent_reaches_the_joint_optimum() -> None:
    """Reference: scipy L-BFGS-B on the joint penalised objective over both blocks' coefficients at once."""
    rng = np.random.default_rng(1)
    n, n_m, n_u = 900, 12, 20
    m_code, u_code = rng.integers(0, n_m, n), rng.integers(0, n_u, n)
    Xm = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    Xu = np.column_stack([np.ones(n), rng.normal(size=n)])
    offset = rng.normal(0.0, 0.5, n)
    eta = (
        offset
        + np.einsum("ij,ij->i", Xm, rng.normal(0, 0.8, (n_m, 3))[m_code])
        + np.einsum("ij,ij->i", Xu, rng.normal(0, 0.6, (n_u, 2))[u_code])
    )
    y = (rng.random(n) < _sigmoid(eta)).astype(np.float64)
    designs = [
        EffectDesign("member", "member_id", m_code, Xm, ("a", "b", "c")),
        EffectDesign("update", "update_id", u_code + 100, Xu, ("intercept", "d")),
    ]
    model = GlmixModel(replace(TIGHT, n_passes=40)).fit(y, offset, designs)

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        bm, bu = w[: n_m * 3].reshape(n_m, 3), w[n_m * 3 :].reshape(n_u, 2)
        z = offset + np.einsum("ij,ij->i", Xm, bm[m_code]) + np.einsum("ij,ij->i", Xu, bu[u_code])
        r = _sigmoid(z) - y
        gm = np.zeros_like(bm)
        np.add.at(gm, m_code, Xm * r[:, None])
        gu = np.zeros_like(bu)
        np.add.at(gu, u_code, Xu * r[:, None])
        loss = np.sum(np.logaddexp(0.0, z) - y * z) + np.sum(bm**2) / (2 * 0.7) + np.sum(bu**2) / (2 * 0.4)
        return float(loss), np.r_[(gm + bm / 0.7).ravel(), (gu + bu / 0.4).ravel()]

    ref = minimize(f, np.zeros(n_m * 3 + n_u * 2), jac=True, method="L-BFGS-B", options={"gtol": 1e-11, "ftol": 1e-15, "maxiter": 5000}).x
    np.testing.assert_allclose(model.blocks_["member"].coef, ref[: n_m * 3].reshape(n_m, 3), atol=1e-5)
    np.testing.assert_allclose(model.blocks_["update"].coef, ref[n_m * 3 :].reshape(n_u, 2), atol=1e-5)


def test_recovers_planted_coefficients() -> None:
    """300 entities x ~400 rows, coefficients N(0, 0.7^2): the posterior mode is within sampling error of the truth."""
    rng = np.random.default_rng(2)
    ids, X, offset, y, true = _planted(rng, 300, 120_000, 3, 0.7)
    model = GlmixModel(GlmixConfig(prior_var=(("member", 0.49),))).fit(
        y, offset, [EffectDesign("member", "member_id", ids, X, ("i", "x1", "x2"))]
    )
    est = model.blocks_["member"].coef
    # ~400 rows at mu(1-mu) ~ 0.2 give a standard error of about 1/sqrt(80) ~ 0.11 per coefficient.
    assert np.sqrt(np.mean((est - true) ** 2)) < 0.16
    assert np.corrcoef(est.ravel(), true.ravel())[0, 1] > 0.97


def test_row_order_does_not_matter_and_unseen_entities_add_nothing() -> None:
    rng = np.random.default_rng(3)
    ids, X, offset, y, _ = _planted(rng, 40, 3000, 2, 1.0)
    fit = GlmixModel(GlmixConfig(prior_var=(("member", 1.0),)))
    a = fit.fit(y, offset, [EffectDesign("member", "member_id", ids, X, ("i", "x"))]).blocks_["member"].coef
    perm = rng.permutation(ids.size)
    b = GlmixModel(fit.config).fit(y[perm], offset[perm], [EffectDesign("member", "member_id", ids[perm], X[perm], ("i", "x"))])
    np.testing.assert_allclose(b.blocks_["member"].coef, a, atol=1e-10)
    unseen = np.array([0, 5, 1_000_000])  # ids are 7k + 3: none of these was fitted
    d = EffectDesign("member", "member_id", unseen, np.ones((3, 2)), ("i", "x"))
    np.testing.assert_array_equal(b.decision_function(np.array([0.1, -0.2, 0.3]), [d]), [0.1, -0.2, 0.3])


def test_prior_variance_chosen_on_held_out_rows() -> None:
    """Planted sd 1 with few rows per entity: the validation loss prefers variance 1 to 0.01 (underfit) and 100 (overfit)."""
    rng = np.random.default_rng(4)
    ids, X, offset, y, _ = _planted(rng, 400, 16_000, 3, 1.0)
    cut = 10_000
    part = [
        (y[s], offset[s], [EffectDesign("member", "member_id", ids[s], X[s], ("i", "x1", "x2"))]) for s in (slice(0, cut), slice(cut, None))
    ]
    cfg, table = select_prior_variances(part[0], part[1], grid=(0.01, 1.0, 100.0), config=GlmixConfig(prior_var=(("member", 0.3),)))
    assert cfg.variance("member") == 1.0, table
    assert [row["prior_var"] for row in table] == [0.01, 1.0, 100.0]


def test_save_load_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(5)
    ids, X, offset, y, _ = _planted(rng, 30, 2000, 2, 1.0)
    des = [EffectDesign("member", "member_id", ids, X, ("i", "x")), EffectDesign("update", "update_id", ids % 11, X[:, :1], ("intercept",))]
    model = GlmixModel(GlmixConfig(n_passes=1)).fit(y, offset, des, world="w1")
    model.save(tmp_path / "g")
    doc = json.loads((tmp_path / "g" / "glmix.json").read_text())
    assert [b["features"] for b in doc["blocks"]] == [["i", "x"], ["intercept"]]
    back = load_glmix(tmp_path / "g", features={"member": ["i", "x"], "update": ["intercept"]})
    np.testing.assert_array_equal(back.blocks_["member"].coef, model.blocks_["member"].coef)
    np.testing.assert_array_equal(back.decision_function(offset, des, world="w1"), model.decision_function(offset, des, world="w1"))
    assert back.config == model.config and back.world_ == "w1"


def test_world_fingerprint_tells_worlds_apart() -> None:
    a = pl.DataFrame({"member_id": [0, 1, 2], "connections": [5, 9, 1], "tenure_days": [40, 50, 60]})
    assert world_fingerprint(a) == world_fingerprint(a.reverse())
    assert world_fingerprint(a) != world_fingerprint(a.with_columns(pl.col("connections") + 1))


# ------------------------------------------------------------------- bad input, table-driven

CONFIG_ERRORS = [
    ({"n_passes": 0}, r"n_passes must be an integer >= 1, got 0"),
    ({"max_newton": 1.5}, r"max_newton must be an integer >= 1, got 1\.5"),
    ({"chunk_rows": 0}, r"chunk_rows must be an integer >= 1, got 0"),
    ({"newton_tol": -1.0}, r"newton_tol must be a finite number > 0, got -1\.0"),
    ({"max_step": float("nan")}, r"max_step must be a finite number > 0, got nan"),
    ({"prior_var": ()}, r"prior_var must be a non-empty tuple of \(block name, variance\) pairs, got \(\)"),
    ({"prior_var": (("member", 1.0), ("member", 2.0))}, r"block names must be distinct"),
    ({"prior_var": (("member", 0.0),)}, r"prior_var of block 'member' must be a finite number > 0, got 0\.0"),
]


@pytest.mark.parametrize(("kwargs", "match"), CONFIG_ERRORS)
def test_config_refuses(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        GlmixConfig(**kwargs)


DESIGN_ERRORS = [
    (("bad name", "m", np.arange(3), np.ones((3, 1)), ("a",)), r"name must be an identifier"),
    (("member", "m", np.arange(3.0), np.ones((3, 1)), ("a",)), r"ids must be a 1-d integer array"),
    (("member", "m", np.arange(3), np.ones((4, 1)), ("a",)), r"X must have shape \(n_rows=3, p\), got \(4, 1\)"),
    (("member", "m", np.arange(3), np.ones((3, 2)), ("a",)), r"features must name the 2 columns"),
    (("member", "m", np.arange(3), np.full((3, 1), np.nan), ("a",)), r"X holds NaN"),
]


@pytest.mark.parametrize(("args", "match"), DESIGN_ERRORS)
def test_design_refuses(args, match) -> None:
    with pytest.raises(SchemaError, match=match):
        EffectDesign(*args)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(6)
    ids, X, offset, y, _ = _planted(rng, 30, 2000, 2, 1.0)
    des = [EffectDesign("member", "member_id", ids, X, ("i", "x"))]
    return GlmixModel(GlmixConfig(prior_var=(("member", 1.0),), n_passes=1)).fit(y, offset, des, world="w1"), des, offset


def _scored(model, des, offset, case):
    if case == "other fingerprint":
        return model.decision_function(offset, des, world="w2")
    if case == "ids of another world":
        d = EffectDesign("member", "member_id", np.arange(50) * 7 + 4, np.ones((50, 2)), ("i", "x"))
        return model.decision_function(np.zeros(50), [d])
    if case == "other features":
        return model.decision_function(offset, [replace(des[0], features=("i", "z"))])
    if case == "unknown block":
        return model.decision_function(offset, [replace(des[0], name="author")])
    if case == "labels not 0/1":
        return GlmixModel(model.config).fit(np.full(offset.size, 2.0), offset, des)
    if case == "offset length":
        return GlmixModel(model.config).fit(np.zeros(offset.size), offset[:-1], des)
    if case == "no rows":
        return GlmixModel(model.config).fit(
            np.zeros(0), np.zeros(0), [EffectDesign("member", "member_id", np.zeros(0, dtype=np.int64), np.zeros((0, 2)), ("i", "x"))]
        )
    if case == "no blocks":
        return model.decision_function(offset, [])
    if case == "block without a prior":
        return GlmixModel(model.config).fit(np.zeros(offset.size), offset, [replace(des[0], name="author")])
    raise AssertionError(case)


SCORING_ERRORS = [
    ("other fingerprint", GlmixWorldError, r"fitted on world 'w1', scored on world 'w2'"),
    ("ids of another world", GlmixWorldError, r"another world: none of 50 distinct member_id values is among the model's 30"),
    ("other features", IncompatibleModelError, r"block 'member': scored with features \['i', 'z'\], the model was fitted on \['i', 'x'\]"),
    ("unknown block", IncompatibleModelError, r"GLMix model has no block 'author' \(blocks member\)"),
    ("labels not 0/1", SchemaError, r"y must hold only 0/1"),
    ("offset length", SchemaError, r"y and offset must be 1-d arrays of one length"),
    ("no rows", SchemaError, r"nothing to fit: 0 rows and 1 block\(s\)"),
    ("no blocks", SchemaError, r"random_effect needs at least one block's design"),
    ("block without a prior", ConfigError, r"block 'author' has no prior variance in prior_var \(blocks member, update\)"),
]


@pytest.mark.parametrize(("case", "exc", "match"), SCORING_ERRORS)
def test_scoring_and_fitting_refuse(fitted, case, exc, match) -> None:
    model, des, offset = fitted
    if case == "block without a prior":
        model = GlmixModel(GlmixConfig())
    with pytest.raises(exc, match=match):
        _scored(model, des, offset, case)


def _break(path, case):
    meta = path / "glmix.json"
    doc = json.loads(meta.read_text())
    if case == "not a model":
        meta.unlink()
    elif case == "other format":
        doc["format"] = {"name": "dwellrank-glmix", "version": 99}
    elif case == "missing key":
        del doc["blocks"][0]["entity"]
    elif case == "missing npz":
        (path / "member.npz").unlink()
    elif case == "shape mismatch":
        doc["blocks"][0]["features"] = ["i", "x", "extra"]
    elif case == "ids unsorted":
        z = np.load(path / "member.npz")
        np.savez(path / "member.npz", ids=z["ids"][::-1], coef=z["coef"])
    if meta.exists():
        meta.write_text(json.dumps(doc))


LOAD_ERRORS = [
    ("not a model", None, r"no glmix\.json; not a GLMix model directory"),
    ("other format", None, r"format \{'name': 'dwellrank-glmix', 'version': 99\}, this version reads"),
    ("missing key", None, r"glmix\.json: malformed \(KeyError: 'entity'\)"),
    ("missing npz", None, r"block 'member' has no member\.npz"),
    ("shape mismatch", None, r"coef \(30, 2\), glmix\.json says 30 entities x 3 features"),
    ("ids unsorted", None, r"ids must be unique integers in ascending order"),
    (
        "feature list",
        {"member": ["i", "y"]},
        r"blocks and features \{'member': \['i', 'x'\]\} differ from the expected \{'member': \['i', 'y'\]\}",
    ),
]


@pytest.mark.parametrize(("case", "features", "match"), LOAD_ERRORS)
def test_load_refuses(tmp_path, fitted, case, features, match) -> None:
    fitted[0].save(tmp_path / "g")
    _break(tmp_path / "g", case)
    with pytest.raises(IncompatibleModelError, match=match):
        load_glmix(tmp_path / "g", features=features)


# ------------------------------------------------------------------- the simulator's truth


def test_member_effects_recover_the_simulators_type_preferences() -> None:
    """Truth: simulate.truth.world_members(config, seed).type_pref, the additive engagement logit per member and type.

    P(skip) falls as P(engage) rises, so each member's fitted type coefficients
    (centred across types: the member's own intercept is not identified apart
    from them) correlate negatively with the centred true preferences, more
    strongly for members with more training rows.  On the tiny world (800 x 6,
    seed 1, offset from a global LR without member-history features) the
    measured correlations were about -0.4 overall and -0.6 in the heaviest
    tertile; the asserts leave room for noise and check the activity gradient
    with a member bootstrap.
    """
    res = world(*TINY)
    frame = training_frame(res.tables, "base", T_SKIP_S)
    glob = [c for c in frame.columns if c.startswith(("type_", "client_", "u_")) or c in ("position", "age_h", "hour")]
    X, y = frame.select(glob).to_numpy(), frame["skip"].to_numpy()
    p = np.clip(LogisticHead().fit(X, y).predict_proba(X), 1e-9, 1 - 1e-9)
    des = glmix_designs(frame, res.tables["updates"], range(res.config.n_topics))
    model = GlmixModel(GlmixConfig(prior_var=(("member", 0.3), ("update", 0.3)))).fit(y, np.log(p / (1 - p)), des)
    block = model.blocks_["member"]
    nt = len(MEMBER_TYPE_FEATURES)
    est = block.coef[:, :nt] - block.coef[:, :nt].mean(axis=1, keepdims=True)
    true = world_members(res.config, TINY[2]).type_pref[block.ids]
    true = true - true.mean(axis=1, keepdims=True)
    rows = np.bincount(np.searchsorted(block.ids, frame["member_id"].to_numpy()), minlength=block.ids.size)
    cuts = np.quantile(rows, [1 / 3, 2 / 3])
    light, heavy = rows < cuts[0], rows >= cuts[1]

    def corr(sel: np.ndarray) -> float:
        return float(np.corrcoef(est[sel].ravel(), true[sel].ravel())[0, 1])

    overall = corr(np.ones(rows.size, dtype=bool))
    boot_rng = np.random.default_rng(0)
    li, hi = np.flatnonzero(light), np.flatnonzero(heavy)
    diffs = [corr(boot_rng.choice(hi, hi.size)) - corr(boot_rng.choice(li, li.size)) for _ in range(200)]
    print(f"corr(member type effect, -type_pref): overall {overall:.3f}, light {corr(light):.3f}, heavy {corr(heavy):.3f}")
    assert overall < -0.3
    assert corr(heavy) < -0.45
    assert np.quantile(diffs, 0.975) < 0  # heavy members' effects track the truth better than light members'
