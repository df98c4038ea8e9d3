"""Dwell-weighted training of the heads (ranking.weighting): the weights, their way into LightGBM and the LR, the record."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from dwellrank_logs.errors import ConfigError
from ranking import IncompatibleModelError, load_model
from ranking.heads import GBDTLRHead, HeadConfig, fit_trees
from ranking.train import TrainConfig, train_ranker
from ranking.weighting import click_dwell_weights
from tests.ranking.ranking_worlds import T_SKIP_S, world

#: A very small world (300 members x 5 days, seed 1): enough clicks for every head's two parts.
_SMALL = (300, 5, 1)
_HEAD = HeadConfig(n_trees=5, min_child_samples=20)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(t_skip_s=T_SKIP_S, holdout_days=2, baselines=False, skip_lift=False, head=_HEAD, **kw)


def test_click_dwell_weights_by_hand() -> None:
    """s(d) = d / (d + h) on clicks, divided by its mean over the clicks; 1 on non-clicks and on clicks without dwell."""
    clicked = np.array([True, True, True, False, True])
    dwell = np.array([3.0, 10.0, 90.0, np.nan, np.nan])
    s = np.array([3 / 13, 10 / 20, 90 / 100])
    want = np.r_[s / s.mean(), 1.0, 1.0]
    np.testing.assert_allclose(click_dwell_weights(clicked, dwell, 10.0), want, rtol=1e-15)
    w = click_dwell_weights(clicked, dwell, 10.0)
    assert w[clicked].mean() == pytest.approx(1.0)


def _integer_weighted_data(n: int = 4000):
    """Few distinct feature values (every bin well filled) and integer weights equal in both halves (the split aligns)."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 6, size=(n, 3)).astype(np.float64)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X[:, 0] - 2.5 + 0.5 * X[:, 1] - 1)))).astype(np.float64)
    half = rng.integers(1, 4, size=n // 2)
    return X, y, np.r_[half, half]


_DUP = HeadConfig(n_trees=10, num_leaves=4, min_child_samples=1, tree_fraction=0.5)


def test_weighted_trees_equal_trees_on_repeated_rows() -> None:
    """LightGBM with integer weights = LightGBM on each row repeated that often (same gradients and hessians)."""
    X, y, w = _integer_weighted_data()
    weighted = fit_trees(X, y, _DUP, 0, weight=w).predict(X, raw_score=True)
    repeated = fit_trees(np.repeat(X, w, axis=0), np.repeat(y, w), _DUP, 0).predict(X, raw_score=True)
    np.testing.assert_allclose(weighted, repeated, atol=1e-6)


def test_weighted_head_equals_head_on_repeated_rows() -> None:
    """The whole GBDT+LR head: weights reach the trees and the LR (its loss and its standardisation)."""
    X, y, w = _integer_weighted_data()
    weighted = GBDTLRHead(_DUP).fit(X, y, 0, sample_weight=w)
    repeated = GBDTLRHead(_DUP).fit(np.repeat(X, w, axis=0), np.repeat(y, w), 0)
    unweighted = GBDTLRHead(_DUP).fit(X, y, 0)
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-6)
    assert np.abs(weighted.predict_proba(X) - unweighted.predict_proba(X)).max() > 1e-3  # the weights mattered
    ones = GBDTLRHead(_DUP).fit(X, y, 0, sample_weight=np.ones(X.shape[0]))
    np.testing.assert_allclose(ones.predict_proba(X), unweighted.predict_proba(X), atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"click_weighting": "bounces"}, r"click_weighting must be one of none, after_click_dwell, got 'bounces'"),
        ({"click_weighting": None}, r"click_weighting must be one of .* got None"),
        ({"click_dwell_half_s": 0.0}, r"click_dwell_half_s must be a finite number of seconds > 0, got 0.0"),
        ({"click_dwell_half_s": math.nan}, r"click_dwell_half_s must be .* got nan"),
        ({"click_dwell_half_s": True}, r"click_dwell_half_s must be .* got True"),
    ],
)
def test_bad_train_config(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.ones(10), r"sample_weight must have one weight per row, shape \(4000,\), got \(10,\)"),
        (np.r_[-1.0, np.ones(3999)], r"sample_weight must be finite and >= 0"),
        (np.r_[np.nan, np.ones(3999)], r"sample_weight must be finite and >= 0.* 1 non-finite"),
        (np.r_[np.zeros(2000), np.ones(2000)], r"sample_weight of the trees part .* must sum to > 0"),
    ],
)
def test_bad_sample_weight(weights, match) -> None:
    X, y, _ = _integer_weighted_data()
    with pytest.raises(ConfigError, match=match):
        GBDTLRHead(_DUP).fit(X, y, 0, label="click", sample_weight=weights)


def test_default_metadata_has_no_weighting_keys() -> None:
    """The default is today's behaviour: nothing weighted, and metadata.json without the option's keys."""
    model = train_ranker(world(*_SMALL), config=_cfg())
    assert "dwell_weighting" not in model.metadata
    assert not {"click_weighting", "click_dwell_half_s"} & set(model.metadata["train_config"])
    assert not hasattr(model.heads["click"], "weighting_")


def test_weighted_model_round_trip(tmp_path) -> None:
    """The record survives save and load; the click head alone is weighted; its weights sum to its click count's share."""
    model = train_ranker(world(*_SMALL), config=_cfg(click_weighting="after_click_dwell", click_dwell_half_s=8.0))
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    rec = back.metadata["dwell_weighting"]
    assert (rec["click_weighting"], rec["click_dwell_half_s"], rec["heads"]) == ("after_click_dwell", 8.0, ["click"])
    assert back.metadata["train_config"]["click_weighting"] == "after_click_dwell"
    assert back.heads["click"].weighting_ == model.heads["click"].weighting_
    assert [h for h, head in back.heads.items() if hasattr(head, "weighting_")] == ["click"]
    head = model.heads["click"]
    n = head.n_tree_rows_ + head.n_lr_rows_
    total = head.weighting_["weight_sum_trees"] + head.weighting_["weight_sum_lr"]
    assert total == pytest.approx(n, rel=1e-9)  # clicks' weights have mean 1: the total is the row count
    X = np.random.default_rng(0).normal(size=(50, len(model.feature_set.columns)))
    np.testing.assert_array_equal(back.heads["click"].predict_proba(X), head.predict_proba(X))
    # A record that is not one is refused on load (verify=False: past the manifest, which would refuse any edit).
    meta_path = tmp_path / "m" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "dwell_weighting": "after_click_dwell"}))
    with pytest.raises(IncompatibleModelError, match=r"metadata.json: dwell_weighting must be an object with a click_weighting name"):
        load_model(tmp_path / "m", verify=False)


def test_weighted_sample_composes_with_downsampling() -> None:
    """On per-head samples the weights multiply the kept rows; the recalibration is the sampling rates' shift alone."""
    model = train_ranker(world(*_SMALL), config=_cfg(click_weighting="after_click_dwell"), sample=0.5)
    s = model.heads["click"].sampling_
    assert s["logit_shift"] == pytest.approx(math.log(s["rate_neg"] / s["rate_pos"]), abs=1e-15)
    head = model.heads["click"]
    # Every click is kept (clicks are the rarer label), so the clicks' weights still average 1.
    assert head.weighting_["weight_sum_trees"] + head.weighting_["weight_sum_lr"] == pytest.approx(s["rows_after"], rel=1e-9)
    assert model.metadata["dwell_weighting"]["click_weighting"] == "after_click_dwell"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--click-weighting", "bogus"], r"Invalid value for '--click-weighting'"),
        (["--click-weighting", "after_click_dwell", "--click-dwell-half", "0"], r"--click-dwell-half must be .* > 0, got 0.0"),
        (["--click-weighting", "after_click_dwell", "--engine", "spark"], r"--click-weighting reads the impressions' click_dwell_s"),
    ],
)
def test_cli_refuses(tmp_path, args, match) -> None:
    (tmp_path / "logs").mkdir()
    r = CliRunner().invoke(main, ["train", "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "m"), "--t-skip", "2.5", *args])
    assert r.exit_code != 0
    assert r.exception is not None
    assert re.search(match, r.output + str(r.exception)), r.output + str(r.exception)
