"""Split, metrics, the training loop and the protocol on a small simulated world."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score

from dwellrank_logs.errors import DwellrankError
from engagement import MODELS, DigmnConfig, Intents, TrainConfig, compare, evaluate, run_model, split_members
from engagement.protocol import matched_hidden
from engagement.train import Scaler, fit_torch, make_tensors


def test_split_is_a_partition_of_80_10_10() -> None:
    s = split_members(1000, np.random.default_rng(0))
    assert (s.train.size, s.val.size, s.test.size) == (800, 100, 100)
    assert np.array_equal(np.sort(np.concatenate([s.train, s.val, s.test])), np.arange(1000))
    again = split_members(1000, np.random.default_rng(0))
    assert np.array_equal(s.test, again.test)


def test_too_few_members_for_the_split() -> None:
    with pytest.raises(DwellrankError, match="at least 20 members.*got 7"):
        split_members(7, np.random.default_rng(0))


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
    from engagement import fit_class_offsets

    rng = np.random.default_rng(4)
    y = rng.choice(3, 300, p=[0.15, 0.7, 0.15])  # imbalanced, as the day label
    logits = rng.normal(0, 1, (300, 3)) + 1.2 * np.eye(3)[y] + np.log([0.15, 0.7, 0.15])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    grid = np.round(np.linspace(-2, 2, 21), 10)
    b = fit_class_offsets(y, p, grid)
    best = max(
        f1_score(y, (np.log(p) + [0.0, b1, b2]).argmax(1), average="macro", labels=[0, 1, 2], zero_division=0) for b1 in grid for b2 in grid
    )
    m = evaluate("day", y, p, b)
    assert b[0] == 0.0 and m["macro_f1"] == pytest.approx(best)
    assert m["macro_f1_argmax"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"))
    assert m["macro_f1"] > m["macro_f1_argmax"]  # the argmax under-predicts the minority classes
    # Perfectly separated classes: the argmax is already best, and the zero offset wins the tie.
    clean = np.eye(3)[y] * 0.9 + 0.1 / 3
    assert np.array_equal(fit_class_offsets(y, clean), np.zeros(3))


def _intents(data) -> Intents:
    # Fixed intents: per-type one-hot-ish profiles (the unit under test is the training loop, not LDA).
    return Intents(profiles=np.eye(10)[:7] * 0.9 + 0.01)


def test_training_lowers_validation_loss_and_restores_the_best_epoch(eng_data) -> None:
    from engagement.protocol import build_digmn

    rng = np.random.default_rng(0)
    split = split_members(eng_data.n_members, rng)
    tensors = make_tensors(eng_data, Scaler.fit(eng_data.subset(split.train)))
    torch.manual_seed(0)
    model = build_digmn(eng_data, "session", _intents(eng_data), DigmnConfig())
    hist = fit_torch(model, tensors, eng_data.labels("session"), split, TrainConfig(max_epochs=4, patience=10), rng, beta=1e-2)
    assert len(hist.val_loss) == 4 and hist.val_loss[hist.best_epoch - 1] == min(hist.val_loss)
    assert min(hist.val_loss) < hist.val_loss[0] or hist.best_epoch == 1
    assert hist.train_loss[-1] < hist.train_loss[0]


def test_scaler_uses_only_valid_steps(eng_data) -> None:
    s = Scaler.fit(eng_data)
    t = make_tensors(eng_data, s)
    pad = torch.arange(t["ctx"].shape[1])[None, :] >= t["lengths"][:, None]
    assert float(t["ctx"][pad].abs().sum()) == 0.0
    valid = ~pad
    np.testing.assert_allclose(t["ctx"][valid].mean(0).numpy()[:4], 0.0, atol=1e-4)


def test_every_model_runs_and_the_static_matched_predictor_has_about_as_many_parameters(eng_data) -> None:
    res = compare(eng_data, _intents(eng_data), "day", seeds=[0], models=MODELS, train_config=TrainConfig(max_epochs=1))
    assert [r["model"] for r in res["runs"]] == list(MODELS)
    for r in res["runs"]:
        assert 0.0 <= r["macro_f1"] <= 1.0 and 0.0 <= r["auroc"] <= 1.0
    summ = res["summary"]
    dyn, matched, static = (summ[m]["n_params"] for m in ("DIGMN", "DIGMN (Static, matched)", "DIGMN (Static)"))
    assert static < dyn and abs(matched - dyn) / dyn < 0.05
    assert res["pca_input"][0].shape == (res["runs"][0]["n_params"] * 0 + len(res["pca_input"][1]), 32)
    assert matched_hidden(eng_data, "day", _intents(eng_data), DigmnConfig())[0] > 64


def test_same_seed_same_result(eng_data) -> None:
    split = split_members(eng_data.n_members, np.random.default_rng(3))
    a, b = (
        run_model("DIGMN", eng_data, "session", _intents(eng_data), split, np.random.default_rng(5), TrainConfig(max_epochs=1))
        for _ in range(2)
    )
    assert a.metrics == b.metrics


def test_a_models_result_does_not_depend_on_the_other_models(eng_data):
    """Each model's randomness is chosen by its name, so running it alone or after others gives the same metrics."""
    tc = TrainConfig(max_epochs=2)
    alone = compare(eng_data, _intents(eng_data), "session", seeds=[0], models=["DIGMN"], train_config=tc)
    after = compare(eng_data, _intents(eng_data), "session", seeds=[0], models=["MLP", "DIGMN"], train_config=tc)
    a = [r for r in alone["runs"] if r["model"] == "DIGMN"][0]
    b = [r for r in after["runs"] if r["model"] == "DIGMN"][0]
    assert a["auroc"] == b["auroc"] and a["macro_f1"] == b["macro_f1"]
