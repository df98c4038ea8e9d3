"""DIGMN building blocks against independent references (closed forms, nn.Linear, numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engagement import DIGMN, FCD, DigmnConfig, intent_cosine, intent_cosine_torch, orthogonality
from engagement.digmn import count_parameters, last_step


def test_fcd_with_one_basis_equals_a_linear_layer() -> None:
    """d = 1: a = softmax of one logit = 1, so FC-D is x W + b, i.e. nn.Linear with weight W^T."""
    torch.manual_seed(0)
    fcd = FCD(7, 5, d=1)
    lin = torch.nn.Linear(7, 5)
    with torch.no_grad():
        lin.weight.copy_(fcd.weight.view(7, 5).T)
        lin.bias.copy_(fcd.bias[0])
    x = torch.randn(11, 7)
    a = torch.softmax(torch.randn(11, 1), dim=-1)
    torch.testing.assert_close(fcd(x, a), lin(x))


def test_fcd_equals_reshaped_combination_of_bases() -> None:
    """Eq. 5 and 7: h' = reshape(a^T W) h + a^T b, computed per sample with an explicit matrix."""
    torch.manual_seed(1)
    fcd = FCD(6, 4, d=3)
    x, a = torch.randn(9, 6), torch.softmax(torch.randn(9, 3), dim=-1)
    w_hat = fcd.dynamic_weight(a)  # (B, m, n)
    want = torch.stack([x[i] @ w_hat[i] + a[i] @ fcd.bias for i in range(9)])
    torch.testing.assert_close(fcd(x, a), want)
    # Same combination written with numpy from the basis rows.
    w = fcd.weight.detach().numpy()
    np.testing.assert_allclose(w_hat[2].detach().numpy(), (a[2].numpy() @ w).reshape(6, 4), rtol=1e-5, atol=1e-6)


def test_orthogonality_zero_for_orthogonal_bases() -> None:
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(20, 4)))
    w = torch.tensor(q.T * np.array([[0.5], [2.0], [1.0], [3.0]]))  # orthogonal rows, norms not 1
    assert float(orthogonality(w)) == pytest.approx(0.0, abs=1e-12)


def test_orthogonality_positive_and_matches_eq_9() -> None:
    w = np.random.default_rng(1).normal(size=(4, 30))
    g = w @ w.T
    want = (((g - np.eye(4)) * (1 - np.eye(4))) ** 2).sum()  # eq. 9, one layer
    got = float(orthogonality(torch.tensor(w)))
    assert got > 0 and got == pytest.approx(want, rel=1e-10)


def test_intent_cosine_matches_numpy_reference() -> None:
    rng = np.random.default_rng(2)
    nu = rng.dirichlet(np.ones(10), size=(3, 5))
    nu[0, 3:] = 0.0  # padding
    t = rng.dirichlet(np.ones(10), size=7)
    ref = np.zeros((3, 5, 7))
    for b in range(3):
        for s in range(5):
            for k in range(7):
                n = np.linalg.norm(nu[b, s]) * np.linalg.norm(t[k])
                ref[b, s, k] = nu[b, s] @ t[k] / n if n > 0 else 0.0
    np.testing.assert_allclose(intent_cosine(nu, t), ref, atol=1e-12)
    got = intent_cosine_torch(torch.tensor(nu, dtype=torch.float32), torch.tensor(t, dtype=torch.float32))
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)
    # Scale invariance: counts and frequencies give the same intents.
    np.testing.assert_allclose(intent_cosine(nu * 7.0, t), ref, atol=1e-12)


def _model(predictor: str = "dynamic", intents: str = "prior", n_classes: int = 2) -> DIGMN:
    torch.manual_seed(0)
    profiles = torch.softmax(torch.randn(7, 10), dim=-1)
    return DIGMN(10, 7, 13, 11, n_classes, profiles, DigmnConfig(predictor=predictor, intents=intents))


def _batch(b: int = 6, t: int = 9, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([9, 1, 4, 7, 2, 5])[:b]
    nu = torch.softmax(torch.randn(b, t, 10, generator=g), dim=-1)
    ctx = torch.randn(b, t, 7, generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).float()[..., None]
    return nu * mask, ctx * mask, lengths, torch.randn(b, 13, generator=g), torch.randn(b, 11, generator=g)


@pytest.mark.parametrize(("predictor", "intents"), [("dynamic", "prior"), ("static", "prior"), ("dynamic", "learned")])
def test_output_does_not_depend_on_padding(predictor: str, intents: str) -> None:
    model = _model(predictor, intents).eval()
    nu, ctx, lengths, macro, delivery = _batch()
    base = model(nu, ctx, lengths, macro, delivery)
    pad = torch.arange(nu.shape[1])[None, :] >= lengths[:, None]  # (B, T)
    noisy_nu, noisy_ctx = nu.clone(), ctx.clone()
    noisy_nu[pad] = torch.rand(int(pad.sum()), 10) * 5
    noisy_ctx[pad] = torch.randn(int(pad.sum()), 7) * 100
    torch.testing.assert_close(model(noisy_nu, noisy_ctx, lengths, macro, delivery), base)
    # And cutting the padding off gives the same logits as well.
    torch.testing.assert_close(model(nu[:, :9], ctx[:, :9], lengths, macro, delivery), base)
    one = model(nu[1:2, :1], ctx[1:2, :1], lengths[1:2], macro[1:2], delivery[1:2])
    torch.testing.assert_close(one, base[1:2])


def test_last_step_picks_the_last_valid_output() -> None:
    out = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    torch.testing.assert_close(last_step(out, torch.tensor([2, 4])), torch.stack([out[0, 1], out[1, 3]]))


def test_meta_weights_are_a_distribution_and_bases_skip_decay() -> None:
    model = _model()
    nu, ctx, lengths, _, _ = _batch()
    _, h_i = model.encode(nu, ctx, lengths)
    a = model.meta_weights(h_i)
    assert a is not None
    assert a.shape == (6, 4) and bool(((a > 0) & (a < 1)).all())
    torch.testing.assert_close(a.sum(dim=1), torch.ones(6))
    groups = model.param_groups(1e-5)
    no_decay = {id(p) for p in groups[1]["params"]}
    assert no_decay == {id(layer.weight) for layer in model.layers}
    assert groups[0]["weight_decay"] == 1e-5 and groups[1]["weight_decay"] == 0.0
    assert len(model.layers) == 3 and [layer.n for layer in model.layers] == [64, 32, 2]
    assert float(model.regularization().detach()) > 0


def test_static_variant_has_no_meta_network_and_fewer_parameters() -> None:
    dyn, stat = _model("dynamic"), _model("static")
    assert stat.meta is None and float(stat.regularization()) == 0.0
    assert count_parameters(stat) < count_parameters(dyn)


def test_gradients_reach_every_parameter() -> None:
    model = _model(n_classes=3)
    nu, ctx, lengths, macro, delivery = _batch()
    loss = torch.nn.functional.cross_entropy(model(nu, ctx, lengths, macro, delivery), torch.tensor([0, 1, 2, 0, 1, 2]))
    (loss + 1e-2 * model.regularization()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_activity_channel_is_optional_and_used() -> None:
    """Off (the paper's model): no extra module, inputs unchanged.  On: a 2-layer LSTM over daily counts
    (parameter count by the closed form of torch.nn.LSTM), the logits depend on the activity tensor,
    and calling without it is an error."""
    torch.manual_seed(0)
    profiles = torch.softmax(torch.randn(7, 10), dim=-1)
    off = DIGMN(10, 7, 13, 11, 2, profiles, DigmnConfig())
    on = DIGMN(10, 7, 13, 11, 2, profiles, DigmnConfig(activity_channel=True))
    assert off.activity is None and off.inputs == ("nu", "ctx", "lengths", "macro", "delivery")
    assert on.inputs == (*off.inputs, "activity")
    h = 32
    lstm2 = 4 * h * (10 + h) + 4 * h * (h + h) + 2 * 2 * 4 * h  # two layers: input and recurrent weights, two biases each
    assert on.activity is not None
    assert sum(p.numel() for p in on.activity.parameters()) == lstm2
    assert count_parameters(on) > count_parameters(off) + lstm2  # plus the wider mapping and predictor
    nu, ctx, lengths, macro, delivery = _batch()
    act = torch.randn(6, 14, 10, generator=torch.Generator().manual_seed(1))
    on.eval()
    a, b = on(nu, ctx, lengths, macro, delivery, act), on(nu, ctx, lengths, macro, delivery, act + 1.0)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="activity channel"):
        on(nu, ctx, lengths, macro, delivery)
