"""Named rankers for A/B runs: built-in presets, trained presets and model directories.

``resolve_ranker(spec, context)`` turns what a user types after ``--control``
or ``--treatment`` into a :class:`~dwellrank_logs.protocol.Ranker`:

* ``random``, ``popularity`` -- the simulator's built-in rankers;
* ``oracle`` -- ranks by the true engagement probability (knows latent tastes;
  an upper reference, not a deployable ranker);
* ``engagement-only`` -- the ranking engine's value function with click and
  viral heads only (base features, no skip penalty), trained on a warm-up
  simulated period;
* ``with-pskip`` -- the same plus the P(skip) head and dwell features, with a
  skip penalty;
* ``with-pskip-glmix`` -- ``with-pskip``'s model (the same heads and weights)
  whose P(skip) adds GLMix per-member random effects on update type and
  topic, fitted on a pre-period of the experiment's own members
  (:func:`ranking.ranker.with_pskip_glmix`);
* ``with-dwell-embeddings`` -- ``with-pskip``'s recipe on the ``dwell_emb``
  features (the dwell features plus member x author and member x topic
  dwell embeddings), trained on the warm-up run with its own strictly-past
  embeddings; the served vectors are refitted on a pre-period of the
  experiment's own members (:func:`ranking.ranker.with_dwell_embeddings`);
* a path to a model directory saved by the ranking engine.

This module sits above ``simulate`` and ``ranking`` (it needs a simulator and a
trained ranker together); neither of them imports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dwellrank_logs.errors import ConfigError, DwellrankError
from dwellrank_logs.protocol import Ranker, RankerBase
from ranking import FeedRanker, preset_rankers
from ranking.features import member_profiles
from ranking.glmix_pskip import PskipGlmixConfig
from ranking.ranker import with_dwell_embeddings, with_pskip_glmix
from ranking.train import TrainConfig, train_ranker
from simulate import ExplorationRanker, OracleRanker, PopularityRanker, RandomRanker, WorldConfig, simulate, world_members

__all__ = ["PRESETS", "TRAINED_PRESETS", "PresetContext", "resolve_ranker"]


@dataclass
class PresetContext:
    """What presets may need: the experiment's world and seed, and warm-up settings.

    Attributes
    ----------
    world : WorldConfig
        The world the A/B test simulates (the oracle replays its members).
    seed : int
        The A/B test's seed.
    warmup_members, warmup_days : int
        Size of the warm-up simulation that trained presets learn from.
    t_skip_s : float, seconds, optional
        T_skip for the trained presets' skip label; default the world's truth.
    """

    world: WorldConfig
    seed: int
    warmup_members: int = 2000
    warmup_days: int = 14
    t_skip_s: float | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def warmup_result(self) -> Any:
        """The warm-up simulation (built once): popularity ranking with exploration, so every update gets shown."""
        if "warmup" not in self._cache:
            cfg = self.world.replace(n_members=self.warmup_members, n_days=self.warmup_days)
            seed = int(np.random.SeedSequence(self.seed).spawn(2)[1].generate_state(1)[0])
            self._cache["warmup"] = simulate(cfg, seed=seed, ranker=ExplorationRanker(PopularityRanker(), 1.0))
        return self._cache["warmup"]

    def member_history(self) -> Any:
        """A pre-period of the experiment's own members (same seed: same members), ``warmup_days`` long, built once.

        Ranked like the warm-up run (popularity with exploration).  Only its
        members are the experiment's: it is a separate run, so its updates are
        not the experiment's updates (nor, by id, reliably other ones).
        """
        if "member_history" not in self._cache:
            cfg = self.world.replace(n_days=self.warmup_days)
            self._cache["member_history"] = simulate(cfg, seed=self.seed, ranker=ExplorationRanker(PopularityRanker(), 1.0))
        return self._cache["member_history"]

    def experiment_members(self) -> Any:
        """The experiment world's members table (members are drawn first, so one simulated day gives them)."""
        if "members" not in self._cache:
            self._cache["members"] = simulate(self.world.replace(n_days=1), seed=self.seed).tables["members"]
        return self._cache["members"]


def _random(ctx: PresetContext) -> Ranker:
    return RandomRanker()


def _popularity(ctx: PresetContext) -> Ranker:
    return PopularityRanker()


def _oracle(ctx: PresetContext) -> Ranker:
    return OracleRanker(ctx.world, world_members(ctx.world, ctx.seed))


def _trained(name: str, key: str) -> Callable[[PresetContext], Ranker]:
    """A preset trained by the ranking engine (:func:`ranking.preset_rankers`) on the warm-up run.

    The model serves the experiment's own members: their profile snapshot is
    taken from the experiment world (same seed, so the same members), not from
    the warm-up population the heads were trained on.
    """

    def build(ctx: PresetContext) -> Ranker:
        if "trained" not in ctx._cache:
            t_skip = ctx.t_skip_s if ctx.t_skip_s is not None else ctx.world.t_skip_s
            trained = preset_rankers(ctx.warmup_result(), t_skip_s=t_skip, seed=ctx.seed)
            profiles = member_profiles(ctx.experiment_members())
            ctx._cache["trained"] = {k: FeedRanker(r.model, weights=r.weights, profiles=profiles) for k, r in trained.items()}
        ranker: FeedRanker = ctx._cache["trained"][key]
        ranker.description = name
        return ranker

    return build


def _pskip_glmix(ctx: PresetContext) -> Ranker:
    """``with-pskip`` with GLMix P(skip): per-member random effects fitted on the experiment members' pre-period.

    Random effects are keyed by entity id, so they must be fitted on the
    members served (the warm-up run's members are other people with the same
    ids).  Only the member block: update ids of a separate run do not name the
    experiment's updates.  The heads and the weights are ``with-pskip``'s, so
    the two arms differ only in P(skip).
    """
    if "glmix" not in ctx._cache:
        base = _trained("with-pskip", "with_pskip")(ctx)
        assert isinstance(base, FeedRanker)
        k = max(1, ctx.warmup_days // 5)  # held-out and validation days each: 2 of 14, 1 of 6
        config = PskipGlmixConfig(valid_days=k, blocks=("member",))
        model = with_pskip_glmix(base.model, ctx.member_history(), holdout_days=k, config=config)
        ctx._cache["glmix"] = FeedRanker(model, weights=base.weights, profiles=base.profiles)
    ranker: FeedRanker = ctx._cache["glmix"]
    ranker.description = "with-pskip-glmix"
    return ranker


def _dwell_embeddings(ctx: PresetContext) -> Ranker:
    """``with-pskip``'s training on the ``dwell_emb`` features; the vectors refitted on the experiment members' pre-period.

    The heads learn from the warm-up run's own strictly-past embedding
    features.  Vectors are keyed by member and author id (authors are
    members), so the served ones are fitted on the members served: the
    warm-up run's members are other people with the same ids.  Its own
    default weights (the rule of :func:`ranking.value.default_weights`), as
    ``with-pskip`` has its own.
    """
    if "embeddings" not in ctx._cache:
        t_skip = ctx.t_skip_s if ctx.t_skip_s is not None else ctx.world.t_skip_s
        cfg = TrainConfig(t_skip_s=t_skip, seed=ctx.seed, baselines=False, skip_lift=False, dwell_embeddings=True)
        model = with_dwell_embeddings(train_ranker(ctx.warmup_result(), config=cfg), ctx.member_history())
        ctx._cache["embeddings"] = FeedRanker(model, profiles=member_profiles(ctx.experiment_members()))
    ranker: FeedRanker = ctx._cache["embeddings"]
    ranker.description = "with-dwell-embeddings"
    return ranker


#: Preset name -> (factory, one-line description).
PRESETS: dict[str, tuple[Callable[[PresetContext], Ranker], str]] = {
    "random": (_random, "uniformly random order"),
    "popularity": (_popularity, "past clicks + virals per impression"),
    "oracle": (_oracle, "true engagement probability (knows latent tastes; reference only)"),
    "engagement-only": (_trained("engagement-only", "engagement_only"), "click/viral heads, base features, no skip penalty"),
    "with-pskip": (_trained("with-pskip", "with_pskip"), "click/viral + P(skip) heads, dwell features, skip penalty"),
    "with-pskip-glmix": (_pskip_glmix, "with-pskip with GLMix P(skip): per-member random effects on update type and topic"),
    "with-dwell-embeddings": (_dwell_embeddings, "with-pskip on the dwell features plus member x author / topic dwell embeddings"),
}

#: The presets that train on a warm-up simulation before the experiment.
TRAINED_PRESETS: tuple[str, ...] = ("engagement-only", "with-pskip", "with-pskip-glmix", "with-dwell-embeddings")


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.startswith((".", "~")) or Path(spec).exists()


def resolve_ranker(spec: str, context: PresetContext, arg: str = "ranker") -> Ranker:
    """A ranker from a preset name or a model directory.

    Parameters
    ----------
    spec : str
        A name in :data:`PRESETS` or a path to a saved model directory.
    context : PresetContext
    arg : str
        Name of the option being resolved, for error messages (e.g. ``"--control"``).

    Raises
    ------
    ConfigError
        Unknown preset, model directory missing or incompatible, or the ranking
        engine is not available for a preset that needs it.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{arg} must be a preset ({', '.join(PRESETS)}) or a model directory, got {spec!r}")
    if spec in PRESETS:
        ranker = PRESETS[spec][0](context)
        if isinstance(ranker, RankerBase) and not ranker.description:
            ranker.description = spec
        return ranker
    if not _looks_like_path(spec):
        raise ConfigError(f"{arg}: unknown preset {spec!r}; choose one of {', '.join(PRESETS)} or give a model directory")
    return _load_model_dir(Path(spec).expanduser(), arg, context)


def _load_model_dir(path: Path, arg: str, context: PresetContext) -> Ranker:
    """A FeedRanker over a saved model, serving the experiment's members (their profile snapshot)."""
    if not path.exists():
        raise ConfigError(f"{arg}: model directory {str(path)!r} not found")
    if not path.is_dir():
        raise ConfigError(f"{arg}: {str(path)!r} is a file, expected a model directory saved by the ranking engine")
    try:
        model = FeedRanker.load(path, profiles=member_profiles(context.experiment_members()))
    except DwellrankError as exc:
        raise ConfigError(f"{arg}: model directory {str(path)!r} is incompatible or unreadable: {exc}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{arg}: model directory {str(path)!r} is incompatible or unreadable: {type(exc).__name__}: {exc}") from exc
    model.description = path.name
    return model
