"""Value function: closed forms, the default-weight rule, presets and validated weight files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.schema import ACTIONS
from ranking.value import ValueWeights, default_weights, load_weights, needed_predictions, save_weights, value_function


def _w(**over):
    doc = {
        "w": {"click": 1.0, "react": 2.0, "comment": 3.0, "share": 4.0},
        "alpha": {"click": 0.0, "react": 0.5, "comment": 0.0, "share": 1.0},
        "beta": {"click": 0.0, "react": 0.0, "comment": 2.0, "share": 0.0},
        "skip_penalty": 0.7,
    }
    doc.update(over)
    return doc


def _preds():
    return {
        "p_click": np.array([0.1, 0.2]),
        "p_react": np.array([0.05, 0.0]),
        "p_comment": np.array([0.01, 0.02]),
        "p_share": np.array([0.02, 0.01]),
        "p_skip": np.array([0.6, 0.3]),
        "down_click": np.array([9.0, 9.0]),
        "down_react": np.array([1.0, 2.0]),
        "down_comment": np.array([9.0, 9.0]),
        "down_share": np.array([3.0, 5.0]),
        "up_click": np.array([9.0, 9.0]),
        "up_react": np.array([9.0, 9.0]),
        "up_comment": np.array([0.5, 1.0]),
        "up_share": np.array([9.0, 9.0]),
    }


def test_value_function_closed_form():
    """score = sum_a w_a P(a) (1 + alpha_a E[down|a] + beta_a E[up|a]) - lambda P(skip), by hand."""
    row0 = 1 * 0.1 + 2 * 0.05 * (1 + 0.5 * 1) + 3 * 0.01 * (1 + 2 * 0.5) + 4 * 0.02 * (1 + 1 * 3) - 0.7 * 0.6
    row1 = 1 * 0.2 + 0 + 3 * 0.02 * (1 + 2 * 1.0) + 4 * 0.01 * (1 + 1 * 5) - 0.7 * 0.3
    np.testing.assert_allclose(value_function(_preds(), ValueWeights.from_dict(_w())), [row0, row1])


def test_optional_dwell_terms_and_needed_predictions():
    """score gains w_long * P(long dwell) + w_dwell * E[dwell]; predictions with zero weight are not needed."""
    p = dict(_preds(), p_long_dwell=np.array([0.3, 0.1]), dwell=np.array([4.0, 12.0]))
    w = ValueWeights.from_dict(_w(long_dwell=2.0, dwell=0.1))
    base = value_function(_preds(), ValueWeights.from_dict(_w()))
    np.testing.assert_allclose(value_function(p, w), base + 2.0 * p["p_long_dwell"] + 0.1 * p["dwell"])
    need = needed_predictions(ValueWeights.from_dict(_w()))
    assert set(need) == {"p_click", "p_react", "p_comment", "p_share", "down_react", "down_share", "up_comment", "p_skip"}
    assert "p_skip" not in needed_predictions(ValueWeights.from_dict(_w()).engagement_only())
    assert {"p_long_dwell", "dwell"} <= set(needed_predictions(w))


def test_engagement_only_drops_the_skip_penalty_and_needs_no_pskip():
    w = ValueWeights.from_dict(_w()).engagement_only()
    assert w.skip_penalty == 0 and w.w["share"] == 4.0
    preds = {k: v for k, v in _preds().items() if k != "p_skip"}
    with_skip = value_function(_preds(), ValueWeights.from_dict(_w()))
    np.testing.assert_allclose(value_function(preds, w), with_skip + 0.7 * _preds()["p_skip"])


def test_score_decreases_with_pskip():
    w = ValueWeights.from_dict(_w())
    p = _preds()
    higher = dict(p, p_skip=p["p_skip"] + 0.1)
    assert np.all(value_function(higher, w) < value_function(p, w))


def test_default_weights_follow_the_equal_share_rule():
    """The rule stated in ranking.value: network effects average half of each action, each action
    term averages 1/4, the skip penalty averages 1/4."""
    rng = np.random.default_rng(0)
    n = 1000
    preds = {f"p_{a}": rng.uniform(0, 0.2, n) for a in ACTIONS}
    preds.update({f"down_{a}": rng.gamma(2.0, 1.0 + i, n) for i, a in enumerate(ACTIONS)})
    preds.update({f"up_{a}": rng.gamma(1.0, 0.3, n) for a in ACTIONS})
    preds["p_skip"] = rng.uniform(0.5, 0.9, n)
    w = default_weights(preds)
    for a in ACTIONS:
        assert np.mean(w.alpha[a] * preds[f"down_{a}"]) == pytest.approx(0.5)
        assert np.mean(w.beta[a] * preds[f"up_{a}"]) == pytest.approx(0.5)
        term = w.w[a] * preds[f"p_{a}"] * (1 + w.alpha[a] * preds[f"down_{a}"] + w.beta[a] * preds[f"up_{a}"])
        assert term.mean() == pytest.approx(0.25)
    assert w.skip_penalty * preds["p_skip"].mean() == pytest.approx(0.25)
    assert value_function(preds, w).mean() == pytest.approx(0.75)


def test_default_weights_with_no_network_effect_set_alpha_beta_zero():
    preds = {**{f"p_{a}": np.full(3, 0.1) for a in ACTIONS}, **{f"{t}_{a}": np.zeros(3) for t in ("down", "up") for a in ACTIONS}}
    preds["p_skip"] = np.full(3, 0.5)
    w = default_weights(preds)
    assert all(w.alpha[a] == 0 and w.beta[a] == 0 and w.w[a] == pytest.approx(2.5) for a in ACTIONS)


def test_weights_file_round_trip(tmp_path):
    w = ValueWeights.from_dict(_w())
    save_weights(w, tmp_path / "w.json")
    assert load_weights(tmp_path / "w.json") == w


_BAD = [
    (
        _w(w={"click": 1.0, "react": 1.0, "comment": 1.0}),
        "'w' must have exactly the keys click, react, comment, share; missing \\['share'\\]",
    ),
    (_w(alpha={**_w()["alpha"], "like": 1.0}), "'alpha' must have exactly the keys .*unknown \\['like'\\]"),
    (_w(beta={**_w()["beta"], "share": -1.0}), "'beta.share' must be a finite number >= 0, got -1.0"),
    (_w(w={**_w()["w"], "click": "1"}), "'w.click' must be a finite number >= 0, got '1'"),
    (_w(skip_penalty=float("nan")), "'skip_penalty' must be a finite number >= 0, got nan"),
    (_w(skip_penalty=-0.1), "'skip_penalty' must be a finite number >= 0, got -0.1"),
    ({k: v for k, v in _w().items() if k != "skip_penalty"}, "missing key 'skip_penalty'"),
    (_w(lam=1.0), "unknown key\\(s\\) \\['lam'\\]"),
    (_w(long_dwell=-2.0), "'long_dwell' must be a finite number >= 0, got -2.0"),
    (_w(dwell=float("inf")), "'dwell' must be a finite number >= 0, got inf"),
    (_w(w=[1, 2, 3, 4]), "'w' must map each action"),
]


@pytest.mark.parametrize(("doc", "pattern"), _BAD)
def test_bad_weights_files_are_named(tmp_path, doc, pattern):
    path = tmp_path / "weights.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=f"{path}: {pattern}"):
        load_weights(path)


def test_unreadable_weights_files(tmp_path):
    with pytest.raises(ConfigError, match="no such weights file"):
        load_weights(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json: not valid JSON"):
        load_weights(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="value_function needs prediction 'p_skip'"):
        value_function({k: v for k, v in _preds().items() if k != "p_skip"}, ValueWeights.from_dict(_w()))
