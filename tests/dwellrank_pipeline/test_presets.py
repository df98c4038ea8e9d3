"""Ranker presets: built-ins, trained presets via the ranking engine, model directories, bad specs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from dwellrank_logs.errors import ConfigError
from dwellrank_pipeline.presets import PRESETS, PresetContext, resolve_ranker
from simulate import PopularityRanker, RandomRanker, WorldConfig, simulate
from simulate.ab import ABConfig, run_ab
from simulate.truth import OracleRanker, world_members

WORLD = WorldConfig(n_members=300, n_days=3)


def _ctx(**kw) -> PresetContext:
    return PresetContext(world=WORLD, seed=4, **kw)


def test_builtin_presets():
    ctx = _ctx()
    assert isinstance(resolve_ranker("random", ctx), RandomRanker)
    assert isinstance(resolve_ranker("popularity", ctx), PopularityRanker)
    oracle = resolve_ranker("oracle", ctx)
    assert isinstance(oracle, OracleRanker)
    np.testing.assert_array_equal(oracle.members.topic_interest, world_members(WORLD, 4).topic_interest)
    assert set(PRESETS) == {"random", "popularity", "oracle", "engagement-only", "with-pskip", "with-pskip-glmix", "with-dwell-embeddings"}


def test_experiment_members_are_the_simulated_members():
    """One simulated day gives the same members table as the full run (members are drawn first)."""
    full = simulate(WORLD, seed=4).tables["members"]
    assert _ctx().experiment_members().drop("arm").equals(full.drop("arm"))


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        (
            "nosuch",
            r"--control: unknown preset 'nosuch'; choose one of random, popularity, oracle, engagement-only, with-pskip, with-pskip-glmix, with-dwell-embeddings or give a model directory",
        ),
        ("Popularity", r"unknown preset 'Popularity'"),
        ("", r"--control must be a preset .* or a model directory, got ''"),
        ("{tmp}/missing", r"--control: model directory '.*missing' not found"),
        ("{tmp}/file.txt", r"--control: '.*file.txt' is a file, expected a model directory"),
        ("{tmp}/empty", r"--control: model directory '.*empty' is incompatible or unreadable: .*no metadata.json"),
    ],
)
def test_bad_specs(tmp_path: Path, spec, pattern):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=pattern):
        resolve_ranker(spec.format(tmp=tmp_path), _ctx(), "--control")


@pytest.fixture(scope="module")
def trained():
    """Both trained presets from a tiny warm-up (300 members x 6 days; training holds out 3 days)."""
    ctx = _ctx(warmup_members=300, warmup_days=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ctx, resolve_ranker("engagement-only", ctx), resolve_ranker("with-pskip", ctx)


def test_trained_presets_are_the_ranking_engines_arms(trained):
    ranking = pytest.importorskip("ranking")
    ctx, eng, psk = trained
    assert isinstance(eng, ranking.FeedRanker) and isinstance(psk, ranking.FeedRanker)
    assert eng.weights.skip_penalty == 0 and psk.weights.skip_penalty > 0
    assert not eng.feature_set.uses_dwell and psk.feature_set.uses_dwell
    # They serve the experiment's members, not the warm-up population.
    assert eng.profiles.height == WORLD.n_members
    assert eng.profiles.equals(ranking.features.member_profiles(ctx.experiment_members()))
    assert resolve_ranker("with-pskip", ctx) is psk  # trained once per context


def test_trained_presets_run_an_ab_and_a_saved_model_dir_loads(trained, tmp_path: Path):
    ranking = pytest.importorskip("ranking")
    ctx, eng, psk = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = run_ab(ABConfig(world=WORLD, pre_days=1, seed=4), eng, psk)
    assert r.effects.height == 11 and r.members.height == WORLD.n_members
    psk.model.save(tmp_path / "model")
    loaded = resolve_ranker(str(tmp_path / "model"), ctx, "--treatment")
    assert isinstance(loaded, ranking.FeedRanker) and loaded.t_skip_s == psk.t_skip_s
    assert loaded.profiles.height == WORLD.n_members


def test_pskip_glmix_preset_is_with_pskip_plus_member_random_effects(trained):
    """The same heads and weights as with-pskip; member effects fitted on the experiment's own members; an A/B runs."""
    ranking = pytest.importorskip("ranking")
    ctx, _, psk = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glm = resolve_ranker("with-pskip-glmix", ctx)
    assert isinstance(glm, ranking.FeedRanker) and glm.model.glmix is not None
    assert glm.model.heads is psk.model.heads and glm.weights == psk.weights and psk.model.glmix is None
    block = glm.model.glmix.model.blocks_["member"]
    assert list(glm.model.glmix.model.blocks_) == ["member"]
    assert set(block.ids.tolist()) <= set(ctx.experiment_members()["member_id"].to_list())
    assert glm.world == glm.model.glmix.model.world_  # fitted on the experiment world's members
    assert resolve_ranker("with-pskip-glmix", ctx) is glm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = run_ab(ABConfig(world=WORLD, pre_days=1, seed=4), psk, glm)
    assert r.members.height == WORLD.n_members


def test_incompatible_model_dir(trained, tmp_path: Path):
    pytest.importorskip("ranking")
    import json

    ctx, _, psk = trained
    psk.model.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    meta["feature_set"]["version"] = 999
    (tmp_path / "model" / "metadata.json").write_text(json.dumps(meta))
    from dwellrank_logs.manifest import write_manifest
    from ranking.model import MODEL_FORMAT, MODEL_KIND

    write_manifest(tmp_path / "model", MODEL_KIND, MODEL_FORMAT)  # as another version would have saved it: past the manifest check
    with pytest.raises(ConfigError, match=r"--treatment: model directory '.*model' is incompatible or unreadable: .*v999"):
        resolve_ranker(str(tmp_path / "model"), ctx, "--treatment")
