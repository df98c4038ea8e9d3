"""The DIGMN audit's config fields (docs/digmn_audit.md): class-weighted cross-entropy and the mapping's activation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import Tensor, nn

from dwellrank_logs.errors import ConfigError
from engagement import DIGMN, DigmnConfig, ForecastTrainConfig
from engagement.inputs import Split
from engagement.train import class_weights, fit_torch, predict_proba


def test_balanced_class_weights_equal_scikit_learns() -> None:
    y = np.array([0, 0, 0, 1, 2, 2, 0, 1])
    want = compute_class_weight("balanced", classes=np.arange(3), y=y)
    got = class_weights(y, 3, "balanced")
    assert got is not None
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert class_weights(y, 3, "none") is None


class _Prior(nn.Module):
    """Logits that are one learned bias vector: the fitted softmax is the loss's minimiser over class shares."""

    inputs = ("macro",)

    def __init__(self, k: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(k))

    def forward(self, macro: Tensor) -> Tensor:
        return self.bias.expand(macro.shape[0], -1)


@pytest.fixture
def one_thread() -> Iterator[None]:
    # 80 tiny epochs: with every core's thread on a loaded machine they take seconds of synchronisation each.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("rule", ["none", "balanced"])
def test_class_weight_moves_the_fitted_prior_to_its_closed_form(rule: str, one_thread: None) -> None:
    """Plain CE is minimised by the class frequencies; balanced CE (sum_c (n/K) * -log p_c) by the uniform shares."""
    y = np.array([0] * 30 + [1] * 10 + [2] * 20)
    n = y.size
    tensors = {"macro": torch.zeros(n, 1), "lengths": torch.ones(n, dtype=torch.int64)}
    rows = np.arange(n)
    split = Split(train=rows, val=rows, test=rows)
    torch.manual_seed(0)
    model = _Prior(3)
    cfg = ForecastTrainConfig(max_epochs=80, batch_size=n, lr=0.2, lr_halving_epochs=15, weight_decay=0.0, patience=80, class_weight=rule)
    fit_torch(model, tensors, y, split, cfg, np.random.default_rng(0))
    p = predict_proba(model, tensors, rows[:1])[0]
    want = np.bincount(y) / n if rule == "none" else np.full(3, 1 / 3)
    np.testing.assert_allclose(p, want, atol=2e-3)


def test_mapping_relu_feeds_the_rectified_mapping_to_the_predictor() -> None:
    """With mapping_activation="relu" the logits are the layers applied to relu(mapping(x)), recomputed by hand."""
    torch.manual_seed(3)
    intents = torch.softmax(torch.randn(4, 10), dim=-1)
    cfg = DigmnConfig(hidden=(8,), predictor="static", lstm_hidden=6)
    plain = DIGMN(10, 3, 2, 2, 2, intents, cfg)
    relu = DIGMN(10, 3, 2, 2, 2, intents, DigmnConfig(hidden=(8,), predictor="static", lstm_hidden=6, mapping_activation="relu"))
    relu.load_state_dict(plain.state_dict())  # same parameters: only the activation differs
    nu = torch.softmax(torch.randn(5, 4, 10), dim=-1)
    ctx, lengths = torch.randn(5, 4, 3), torch.tensor([4, 2, 1, 3, 4])
    macro, delivery = torch.randn(5, 2), torch.randn(5, 2)
    with torch.no_grad():
        h_b, h_i = plain.encode(nu, ctx, lengths)
        x = plain.mapping(torch.cat([macro, delivery, h_b, h_i], dim=-1))
        assert (x < 0).any() and (x > 0).any()  # the ReLU has something to cut
        first, last = plain.layers[0], plain.layers[1]
        want_relu = last(torch.relu(first(torch.relu(x))))
        want_plain = last(torch.relu(first(x)))
        torch.testing.assert_close(relu(nu, ctx, lengths, macro, delivery), want_relu)
        torch.testing.assert_close(plain(nu, ctx, lengths, macro, delivery), want_plain)


def test_audit_fields_refuse_unknown_values() -> None:
    with pytest.raises(ConfigError, match="mapping_activation must be 'none' or 'relu', got 'tanh'"):
        DigmnConfig(mapping_activation="tanh")
    with pytest.raises(ConfigError, match="class_weight must be 'none' or 'balanced', got 'inverse'"):
        ForecastTrainConfig(class_weight="inverse")
    assert DigmnConfig().mapping_activation == "none" and ForecastTrainConfig().class_weight == "none"
