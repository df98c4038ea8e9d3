"""The comparison over models and seeds on a small simulated world."""

from __future__ import annotations

import numpy as np
import pytest

from dwellrank_logs.errors import ConfigError
from engagement import MODELS, DigmnConfig, ForecastTrainConfig, Intents, compare, run_model, split_members
from engagement.experiment import matched_hidden


def _intents() -> Intents:
    # Fixed intents: per-type one-hot-ish profiles (the unit under test is the comparison, not LDA).
    return Intents(profiles=np.eye(10)[:7] * 0.9 + 0.01)


def test_every_model_runs_and_the_static_matched_predictor_has_about_as_many_parameters(eng_data) -> None:
    res = compare(eng_data, _intents(), "day", seeds=[0], models=MODELS, train_config=ForecastTrainConfig(max_epochs=1))
    assert [r["model"] for r in res["runs"]] == list(MODELS)
    for r in res["runs"]:
        assert 0.0 <= r["macro_f1"] <= 1.0 and 0.0 <= r["auroc"] <= 1.0
    summ = res["summary"]
    dyn, matched, static = (summ[m]["n_params"] for m in ("DIGMN", "DIGMN (Static, matched)", "DIGMN (Static)"))
    assert static < dyn and abs(matched - dyn) / dyn < 0.05
    assert matched_hidden(eng_data, "day", _intents(), DigmnConfig())[0] > 64
    # Figure 8's input: the dynamic intents (lstm_hidden = 32) and most frequent intent of each test member.
    n = eng_data.n_members
    n_test = n - round(0.8 * n) - round(0.1 * n)
    h_i, top = res["pca_input"]
    assert h_i.shape == (n_test, 32) and top.shape == (n_test,)
    assert set(np.unique(top)) <= set(range(_intents().k))


def test_same_seed_same_result(eng_data) -> None:
    split = split_members(eng_data.n_members, np.random.default_rng(3))
    a, b = (
        run_model("DIGMN", eng_data, "session", _intents(), split, np.random.default_rng(5), ForecastTrainConfig(max_epochs=1))
        for _ in range(2)
    )
    assert a.metrics == b.metrics


def test_a_models_result_does_not_depend_on_the_other_models(eng_data) -> None:
    """Each model's randomness is chosen by its name, so running it alone or after others gives the same metrics."""
    tc = ForecastTrainConfig(max_epochs=2)
    alone = compare(eng_data, _intents(), "session", seeds=[0], models=["DIGMN"], train_config=tc)
    after = compare(eng_data, _intents(), "session", seeds=[0], models=["MLP", "DIGMN"], train_config=tc)
    a = next(r for r in alone["runs"] if r["model"] == "DIGMN")
    b = next(r for r in after["runs"] if r["model"] == "DIGMN")
    assert a["auroc"] == b["auroc"] and a["macro_f1"] == b["macro_f1"]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"models": ["DIGMN", "XGBoost"]}, r"models must be among LR, .*, got \['XGBoost'\]"),
        ({"task": "week"}, "task must be one of day, session, got 'week'"),
    ],
)
def test_compare_refuses_unknown_names(eng_data, kwargs, pattern: str) -> None:
    args = {"task": "session", "models": ["LR"], **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        compare(eng_data, _intents(), args["task"], seeds=[0], models=args["models"])
