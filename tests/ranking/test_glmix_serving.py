"""GLMix P(skip) in the model directory and in FeedRanker.

References: P(skip) computed by hand from the saved ``<block>.npz`` arrays and
the skip head's own decision function (the gather written out row by row), the
global model's score shifted by lambda times the P(skip) change, and the numpy
scorer for the native one.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dwellrank_logs.errors import SchemaError
from dwellrank_logs.manifest import write_manifest
from dwellrank_logs.protocol import HistoryTables
from ranking import FeedRanker, load_model
from ranking.features import IncompatibleModelError, candidate_features, history_from_logs
from ranking.glmix import GlmixWorldError
from ranking.model import MODEL_FORMAT, MODEL_KIND, RankerModel
from ranking.ranker import with_pskip_glmix
from ranking.train import TrainConfig, train_ranker
from simulate import WorldConfig, simulate
from tests.ranking.ranking_worlds import T_SKIP_S, TINY, day_candidates, world

DAY = dt.date(2026, 1, 10)  # the tiny world's last day (2026-01-05 .. 2026-01-10)


@lru_cache(maxsize=1)
def glmix_model() -> RankerModel:
    cfg = TrainConfig(t_skip_s=T_SKIP_S, seed=0, holdout_days=2, baselines=False, skip_lift=False, pskip_glmix=True, glmix_valid_days=1)
    return train_ranker(world(*TINY), config=cfg)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return glmix_model().save(tmp_path_factory.mktemp("glmix_model") / "model")


def _history() -> HistoryTables:
    t = world(*TINY).tables
    return history_from_logs(t["impressions"], t["sessions"], t["updates"], DAY, T_SKIP_S)


def _candidates(n: int = 60) -> pl.DataFrame:
    """Impressions served on DAY as candidates, plus a row of an unseen member and one of an unseen update.

    The unseen member has a profile (the world's member) but no training rows, so no random effects.
    """
    t = world(*TINY).tables
    model = glmix_model()
    assert model.glmix is not None
    unseen = int(np.setdiff1d(model.profiles["member_id"].to_numpy(), model.glmix.model.blocks_["member"].ids)[0])
    cand = day_candidates(t, DAY, n)
    unseen_member = cand.head(1).with_columns(pl.lit(unseen, cand["member_id"].dtype).alias("member_id"))
    unseen_update = cand.slice(1, 1).with_columns(pl.lit(10**9, cand["update_id"].dtype).alias("update_id"))
    return pl.concat([cand, unseen_member, unseen_update])


def test_model_directory_holds_and_records_the_random_effects(model_dir: Path):
    names = set(json.loads((model_dir / "manifest.json").read_text())["files"])
    assert {"glmix/glmix.json", "glmix/member.npz", "glmix/update.npz"} <= names
    meta = json.loads((model_dir / "metadata.json").read_text())
    ps = meta["pskip"]
    assert ps["model"] == "glmix"
    assert meta["train_config"]["pskip_glmix"] is True
    assert [b["name"] for b in ps["blocks"]] == ["member", "update"]
    assert all(b["prior_var"] in ps["selection"]["grid"] for b in ps["blocks"])
    held = ps["held_out"]
    assert held["n_test"] == meta["data"]["n_test"] and held["seed"] == 0
    for m in ("global", "glmix"):
        assert 0.5 < held[m]["auc"] < 1 and held[m]["log_loss"] > 0
    # The global entry is the skip head's own held-out AUC in the report.
    report = json.loads((model_dir / "report.json").read_text())
    assert held["global"]["auc"] == pytest.approx(report["heads"]["skip"]["metrics"]["gbdt_lr"]["auc"], abs=1e-12)
    loaded = load_model(model_dir)
    assert loaded.glmix is not None
    with np.load(model_dir / "glmix" / "member.npz") as z:
        np.testing.assert_array_equal(loaded.glmix.model.blocks_["member"].coef, z["coef"])


def test_a_model_without_the_option_has_no_random_effects(tmp_path: Path):
    from tests.ranking.ranking_worlds import tiny_model

    d = tiny_model().save(tmp_path / "m")
    assert not (d / "glmix").exists()
    meta = json.loads((d / "metadata.json").read_text())
    assert "pskip" not in meta and "pskip_glmix" not in meta["train_config"]
    assert load_model(d).glmix is None


def test_pskip_equals_the_hand_computed_glmix_logit(model_dir: Path):
    """sigmoid(head logit + member coef[type] + member coef[topic] + update intercept), read from the npz files."""
    model = load_model(model_dir)
    ranker = FeedRanker(model, backend="numpy")
    cand, history = _candidates(), _history()
    X = ranker.features(cand, history)
    got = ranker.predict(cand, history)["p_skip"].to_numpy()

    doc = json.loads((model_dir / "glmix" / "glmix.json").read_text())
    feats = {b["name"]: b["features"] for b in doc["blocks"]}
    with np.load(model_dir / "glmix" / "member.npz") as z:
        m_ids, m_coef = z["ids"], z["coef"]
    with np.load(model_dir / "glmix" / "update.npz") as z:
        u_ids, u_coef = z["ids"], z["coef"]
    head_logit = model.heads["skip"].decision_function(X)
    want = np.empty(cand.height)
    n_seen = 0
    for i, row in enumerate(cand.iter_rows(named=True)):  # the reference: one row at a time, by name
        logit = head_logit[i]
        k = np.flatnonzero(m_ids == row["member_id"])
        if k.size:
            coef = dict(zip(feats["member"], m_coef[k[0]], strict=True))
            logit += coef[f"type_{row['update_type']}"] + coef.get(f"topic_{row['topic']}", 0.0)
            n_seen += 1
        k = np.flatnonzero(u_ids == row["update_id"])
        if k.size:
            logit += u_coef[k[0], 0]
        want[i] = 1.0 / (1.0 + np.exp(-logit))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert 2 <= n_seen < cand.height  # both known and unseen members were scored
    assert 10**9 not in u_ids and cand["member_id"][-2] not in m_ids
    assert not np.allclose(got, model.heads["skip"].predict_proba(X))  # the random effects do move P(skip)


def test_score_is_the_global_score_shifted_by_the_pskip_change(model_dir: Path):
    model = load_model(model_dir)
    ranker = FeedRanker(model, backend="numpy")
    cand, history = _candidates(), _history()
    X = ranker.features(cand, history)
    got = ranker.rank(cand, history, np.random.default_rng(0)).scores
    preds = model.predict(X)  # no offset: the global head
    p_glmix = ranker.predict(cand, history)["p_skip"].to_numpy()
    want = model.score(X, ranker.weights) - ranker.weights.skip_penalty * (p_glmix - preds["p_skip"])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_batch_frame_path_equals_the_online_path(model_dir: Path):
    """score_frame of candidate_features' polars frame (with the ids) equals rank() on the matrix path."""
    ranker = FeedRanker.load(model_dir, backend="numpy", full=True)
    cand, history = _candidates(), _history()
    frame = candidate_features(cand, history, ranker.profiles, ranker.feature_set, position=0)
    batch = ranker.score_frame(pl.concat([cand.select("member_id", "update_id", "topic"), frame], how="horizontal"))
    online = ranker.rank(cand, history, np.random.default_rng(0)).scores
    np.testing.assert_allclose(batch["score"].to_numpy(), online, rtol=1e-12, atol=1e-12)
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['member_id', 'update_id', 'topic'\]"):
        ranker.score_frame(frame)


@pytest.mark.usefixtures("native_scoring")
def test_native_and_numpy_agree(model_dir: Path):
    native = FeedRanker(load_model(model_dir))
    if not native.model._natives or all(v is None for v in native.model._natives.values()):
        pytest.skip("native scoring unavailable here")
    numpy_ = FeedRanker(load_model(model_dir), backend="numpy")
    cand, history = _candidates(400), _history()
    a = native.rank(cand, history, np.random.default_rng(0)).scores
    b = numpy_.rank(cand, history, np.random.default_rng(0)).scores
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_mismatched_feature_lists_are_refused_naming_the_file(model_dir: Path, tmp_path: Path):
    d = tmp_path / "model"
    shutil.copytree(model_dir, d)
    path = d / "glmix" / "glmix.json"
    doc = json.loads(path.read_text())
    doc["blocks"][0]["features"][-1] = "topic_999"
    path.write_text(json.dumps(doc))
    write_manifest(d, MODEL_KIND, MODEL_FORMAT)  # past the manifest check, as a writer of another version would
    with pytest.raises(IncompatibleModelError, match=r"glmix\.json: random effects with blocks and features .*topic_999"):
        load_model(d)


def test_profiles_of_another_world_are_refused(model_dir: Path):
    from ranking.features import member_profiles

    other = member_profiles(simulate(WorldConfig(n_members=TINY[0], n_days=1), seed=TINY[2] + 1).tables["members"])
    with pytest.raises(GlmixWorldError, match="fitted on world"):
        FeedRanker(load_model(model_dir), profiles=other)


def test_member_only_random_effects_fitted_on_other_logs(model_dir: Path):
    """with_pskip_glmix: the heads stay, the member block is refitted on the given logs; unseen updates are irrelevant."""
    from ranking.glmix_pskip import PskipGlmixConfig
    from tests.ranking.ranking_worlds import tiny_model

    base = tiny_model()
    m = with_pskip_glmix(base, world(*TINY), holdout_days=2, config=PskipGlmixConfig(valid_days=1, blocks=("member",)))
    assert m.heads is base.heads and base.glmix is None
    assert m.glmix is not None and list(m.glmix.model.blocks_) == ["member"]
    assert m.metadata["pskip"]["block_names"] == ["member"] and "pskip" not in base.metadata
    cand, history = _candidates(), _history()
    X = FeedRanker(m, backend="numpy").features(cand, history)
    # Every row's offset is its member's type + topic coefficients (zero for the unseen member).
    b = m.glmix.model.blocks_["member"]
    off = m.skip_offset(X, cand["member_id"].to_numpy(), cand["update_id"].to_numpy(), cand["topic"].to_numpy())
    assert off is not None and off[-2] == 0.0
    k = int(np.searchsorted(b.ids, cand["member_id"][0]))
    t = cand["update_type"][0]
    names = list(b.features)
    assert off[0] == pytest.approx(b.coef[k, names.index(f"type_{t}")] + b.coef[k, names.index(f"topic_{cand['topic'][0]}")], abs=1e-12)


def test_options_that_cannot_fit_glmix_are_refused_before_training():
    from dwellrank_logs.errors import ConfigError

    with pytest.raises(ConfigError, match="pskip_glmix must be True or False"):
        TrainConfig(pskip_glmix="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="valid_days"):
        TrainConfig(pskip_glmix=True, glmix_valid_days=0)
    cfg = TrainConfig(t_skip_s=T_SKIP_S, pskip_glmix=True)
    with pytest.raises(ConfigError, match="whole in-memory training frame"):
        train_ranker(world(*TINY), config=cfg, sample=0.5)
