"""The training loop on a small simulated world: the loss falls and the best epoch's weights are restored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engagement import DigmnConfig, ForecastTrainConfig, Intents, split_members
from engagement.experiment import build_digmn
from engagement.inputs import Scaler, make_tensors
from engagement.train import fit_torch, predict_proba


def _intents() -> Intents:
    # Fixed intents: per-type one-hot-ish profiles (the unit under test is the training loop, not LDA).
    return Intents(profiles=np.eye(10)[:7] * 0.9 + 0.01)


def _validation_loss(model, tensors, y: np.ndarray, rows: np.ndarray, beta: float) -> float:
    """Cross-entropy of the model's validation probabilities plus beta * L_R, recomputed outside the loop."""
    p = predict_proba(model, tensors, rows)
    return float(-np.log(p[np.arange(rows.size), y[rows]]).mean() + beta * float(model.regularization().detach()))


@pytest.mark.parametrize(
    ("lr", "epochs"),
    [
        (1e-3, 4),  # the paper's learning rate: the loss falls
        (0.05, 8),  # too high: the validation loss rises again after its best epoch
    ],
)
def test_training_restores_the_best_validation_epoch(eng_data, lr: float, epochs: int) -> None:
    """The returned model's validation loss, recomputed from its probabilities, is the best epoch's."""
    rng = np.random.default_rng(0)
    split = split_members(eng_data.n_members, rng)
    tensors = make_tensors(eng_data, Scaler.fit(eng_data.subset(split.train)))
    torch.manual_seed(0)
    model = build_digmn(eng_data, "session", _intents(), DigmnConfig())
    y = eng_data.labels("session")
    hist = fit_torch(model, tensors, y, split, ForecastTrainConfig(max_epochs=epochs, patience=epochs, lr=lr), rng, beta=1e-2)
    assert len(hist.val_loss) == epochs and hist.val_loss[hist.best_epoch - 1] == min(hist.val_loss)
    assert _validation_loss(model, tensors, y, split.val, 1e-2) == pytest.approx(hist.val_loss[hist.best_epoch - 1], rel=1e-4)
    if lr == 1e-3:
        assert hist.train_loss[-1] < hist.train_loss[0]
    else:
        assert hist.best_epoch < epochs  # so the restored weights are not the last epoch's
