"""The ``with-dwell-embeddings`` preset: trained on the warm-up run, its vectors those of the experiment's members."""

from __future__ import annotations

import numpy as np

from dwellrank_pipeline.presets import PRESETS, PresetContext, resolve_ranker
from ranking import FeedRanker
from ranking.glmix_data import world_fingerprint
from simulate import WorldConfig, simulate

WORLD = WorldConfig(n_members=300, n_days=2)


def test_preset_serves_the_experiment_members_vectors_in_a_simulation():
    ctx = PresetContext(world=WORLD, seed=4, warmup_members=300, warmup_days=5)
    ranker = resolve_ranker("with-dwell-embeddings", ctx, "--treatment")
    assert isinstance(ranker, FeedRanker) and "with-dwell-embeddings" in PRESETS
    emb = ranker.model.embeddings
    assert ranker.feature_set.name == "dwell_emb" and emb is not None
    # Fitted on the experiment's own members (the pre-period), not on the warm-up population's.
    assert emb.world == world_fingerprint(ctx.experiment_members())
    assert emb.world != world_fingerprint(ctx.warmup_result().tables["members"])
    assert emb.factors["member_author"].nnz > 0
    result = simulate(WORLD, seed=4, ranker=ranker)
    assert result.tables["impressions"].height > 0 and np.isfinite(result.tables["impressions"]["dwell_s"].to_numpy()).all()
