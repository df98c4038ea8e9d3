"""The OPE run: simulate an exploring logging ranker, estimate each target's top-slot value, and the truth.

The estimand is the **top-slot value** of a target ranker pi:
``V(pi) = E_x[ E[r | x, a = pi's first update, position 0] ]`` averaged over
the logged feed requests x.  The logging ranker samples its order by
Plackett-Luce, so the logged propensity of the update at position 0 (the
first PL step) is exactly mu(a | x), and the top slot is a contextual bandit
with known propensities (the position-0 reward depends only on that update).

With ``feed_k = K`` the run also estimates each target's **feed value**, the
expected reward summed over the first ``K`` positions of its feed, with every
estimator of :mod:`simulate.ope.slate` beside the simulator's truth
(:func:`simulate.truth.feed_truth`) for the same requests, each with a normal
and a request-bootstrap interval; see :mod:`simulate.ope.feed`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.checks import check_int
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.protocol import Ranker
from dwellrank_logs.schema import EVENT_TYPES
from simulate.checks import check_non_negative_int, check_open_unit, check_positive_number
from simulate.config import WorldConfig
from simulate.engine import simulate
from simulate.exploration import ExplorationRanker
from simulate.ope.estimators import OPEEstimate, doubly_robust, ips, snips
from simulate.ope.feed import feed_estimates
from simulate.ope.recorder import OPERecorder
from simulate.ope.reward import OPE_REWARDS, observed_reward
from simulate.ope.reward_model import cross_predict, fit_reward_model
from simulate.ope.slate_top import direct_method, self_normalised_dr, switch_dr
from simulate.truth import expected_reward, feed_truth, world_members
from simulate.world import Members

__all__ = ["OPEConfig", "run_ope"]


@dataclass(frozen=True)
class OPEConfig:
    """Off-policy evaluation settings.

    Attributes
    ----------
    world : WorldConfig
        The world the logging ranker runs in.
    seed : int >= 0
        Simulation seed (an int: the truth replays the world from it).
    reward : {'click', 'viral', 'not_skipped'}
        Observed reward of the top slot.
    temperature : float > 0
        Exploration temperature of the logging ranker (:class:`ExplorationRanker`).
    alpha : float in (0, 1)
        Two-sided level of the intervals.
    folds : int >= 2
        Cross-fitting folds of the DR reward model (members split by id).
    feed_k : int in [1, world.feed_length], optional
        Also estimate the feed value over the first ``feed_k`` positions (None: top slot only).
    switch_tau : float >= 0
        Weight threshold of the top slot's Switch-DR.
    feed_n_boot : int >= 2
        Bootstrap resamples of the requests for the feed estimators' second
        interval (seeded from ``seed``: the child ``SeedSequence(seed).spawn(2)[1]``).
    """

    world: WorldConfig = field(default_factory=WorldConfig)
    seed: int = 0
    reward: str = "click"
    temperature: float = 1.0
    alpha: float = 0.05
    folds: int = 2
    feed_k: int | None = None
    switch_tau: float = 20.0
    feed_n_boot: int = 1000

    def __post_init__(self) -> None:
        if not isinstance(self.world, WorldConfig):
            raise ConfigError(f"world must be a WorldConfig, got {type(self.world).__name__}")
        check_non_negative_int("seed", self.seed)
        if self.reward not in OPE_REWARDS:
            raise ConfigError(f"reward must be one of {list(OPE_REWARDS)} (observable in the impressions log), got {self.reward!r}")
        check_positive_number("temperature", self.temperature)
        check_open_unit("alpha", self.alpha)
        check_int("folds", self.folds, 2)
        if self.feed_k is not None:
            check_int("feed_k", self.feed_k, 1)
            if self.feed_k > self.world.feed_length:
                raise ConfigError(f"feed_k must be <= world.feed_length ({self.world.feed_length}), got {self.feed_k}")
        if not isinstance(self.switch_tau, int | float) or isinstance(self.switch_tau, bool) or not self.switch_tau >= 0:
            raise ConfigError(f"switch_tau must be a number >= 0 (a weight threshold; inf for DR), got {self.switch_tau!r}")
        check_int("feed_n_boot", self.feed_n_boot, 2)


def run_ope(config: OPEConfig, logging_base: Ranker, targets: Mapping[str, Ranker]) -> dict[str, Any]:
    """Simulate a stochastic logging ranker, estimate each target's top-slot value, and the truth.

    Parameters
    ----------
    config : OPEConfig
    logging_base : Ranker
        Its scores drive the logging policy ``ExplorationRanker(logging_base, config.temperature)``.
    targets : mapping of name to Ranker
        Deterministic rankers to evaluate.

    Returns
    -------
    dict
        ``reward``, ``n_requests``, ``logging`` (description, observed mean reward),
        and per target under ``targets[name]``: ``truth`` (the simulator's
        expected top-slot reward of the target on the logged requests),
        ``estimates`` (ips, snips, dr: value, se, ci_low, ci_high, n, covers),
        ``match_rate`` (share of requests where the log agrees with the target)
        and ``ess`` (effective sample size of the weights).
    """
    if not targets:
        raise ConfigError("targets must name at least one ranker to evaluate")
    cfg = config.world
    rng_targets = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(1)[0])
    logging = ExplorationRanker(logging_base, config.temperature)
    recorder = OPERecorder(logging, targets, cfg.update_types, rng_targets, feed_k=config.feed_k, max_candidates=cfg.candidates_per_request)
    t0 = time.perf_counter()
    sim = simulate(cfg, seed=config.seed, ranker=recorder)
    t_sim = time.perf_counter() - t0
    rec = recorder.records()
    if not rec or rec["request_id"].size < 2:
        raise ConfigError(f"the logging run produced {0 if not rec else rec['request_id'].size} feed requests; need at least 2 for OPE")

    imp = sim.tables["impressions"].filter(pl.col("position") == 0)
    top = imp.select("session_id", "update_id", "propensity").with_columns(observed_reward(imp, config.reward, cfg.t_skip_s))
    logged = pl.DataFrame({"session_id": rec["request_id"], "_upd": rec["logged_update"]}).join(
        top, on="session_id", how="left", maintain_order="left"
    )
    if logged["update_id"].null_count() or (logged["update_id"] != logged["_upd"]).any():
        raise RuntimeError("the logged top-slot updates differ from what the recorder saw; the engine's tie-breaking changed")
    r = logged["reward"].to_numpy()
    mu = logged["propensity"].to_numpy()
    groups = rec["member_id"]
    models = fit_reward_model(rec["logged_x"], r, groups, config.folds)
    q_logged = cross_predict(models, rec["logged_x"], groups)

    members = world_members(cfg, config.seed)
    updates = sim.tables["updates"].join(sim.truth_tables["updates"], on="update_id").sort("update_id")
    type_code = updates["update_type"].replace_strict({t: i for i, t in enumerate(cfg.update_types)}, return_dtype=pl.Int64).to_numpy()
    topic, quality = updates["topic"].to_numpy().astype(np.int64), updates["quality"].to_numpy()

    def truth_of(update: np.ndarray) -> np.ndarray:
        return expected_reward(cfg, members, rec["member_id"], type_code[update], topic[update], quality[update], 0, config.reward)

    out_targets: dict[str, Any] = {}
    for name in targets:
        chosen = rec[f"{name}_update"]
        w = (chosen == rec["logged_update"]) / mu
        q_target = cross_predict(models, rec[f"{name}_x"], groups)
        truth = float(truth_of(chosen).mean())
        ests = [ips(r, w, config.alpha), snips(r, w, config.alpha), doubly_robust(r, w, q_logged, q_target, config.alpha)]
        more = [
            direct_method(q_target, alpha=config.alpha),
            self_normalised_dr(r, w, q_logged, q_target, alpha=config.alpha),
            switch_dr(r, w, q_logged, q_target, config.switch_tau, alpha=config.alpha),
        ]
        out_targets[name] = {
            "truth": truth,
            "estimates": _estimates_dict(ests, truth),
            "more_estimates": _estimates_dict(more, truth),
            "match_rate": float((chosen == rec["logged_update"]).mean()),
            "ess": float(w.sum() ** 2 / (w**2).sum()) if (w > 0).any() else 0.0,
        }
    out: dict[str, Any] = {
        "reward": config.reward,
        "estimand": "expected reward of the update the ranker puts first (position 0), over the logged requests",
        "seed": int(config.seed),
        "n_requests": int(r.size),
        "logging": {
            "ranker": logging.description,
            "temperature": config.temperature,
            "observed_reward": float(r.mean()),
            "truth_logged_actions": float(truth_of(rec["logged_update"]).mean()),
        },
        "targets": out_targets,
        "simulate_s": round(t_sim, 3),
    }
    if config.feed_k is not None:
        out["feed"] = _feed_ope(config, sim.tables, rec, members, (type_code, topic, quality), list(targets))
    return out


def _estimates_dict(ests: list[OPEEstimate], truth: float) -> dict[str, Any]:
    return {e.estimator: {**{k: v for k, v in asdict(e).items() if k != "estimator"}, "covers": e.covers(truth)} for e in ests}


def _with_bootstrap(normal: dict[str, Any], boot: dict[str, OPEEstimate], truth: float) -> dict[str, Any]:
    """Each estimate's normal entry with its bootstrap interval beside it (``boot_se``, ``boot_ci_low``, ``boot_ci_high``, ``boot_covers``)."""
    return {
        name: {
            **e,
            "boot_se": boot[name].se,
            "boot_ci_low": boot[name].ci_low,
            "boot_ci_high": boot[name].ci_high,
            "boot_covers": boot[name].covers(truth),
        }
        for name, e in normal.items()
    }


def _finite_or_none(d: dict[str, Any]) -> dict[str, Any]:
    """Estimates with NaN (no support: the target never agrees with the log) as None, which JSON has."""
    return {name: {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in e.items()} for name, e in d.items()}


def _feed_ope(
    config: OPEConfig,
    tables: dict[str, pl.DataFrame],
    rec: dict[str, np.ndarray],
    members: Members,
    updates: tuple[np.ndarray, np.ndarray, np.ndarray],
    names: list[str],
) -> dict[str, Any]:
    """The feed value over the first ``feed_k`` positions: every slate estimator per target beside the simulator's truth."""
    cfg = config.world
    k = int(config.feed_k or 0)
    req = rec["request_id"]
    n = req.size
    # Observed reward per (request, position < K); a position the member did not scroll to has no impression: 0.
    imp = tables["impressions"].filter(pl.col("position") < k)
    cells = imp.select("session_id", "position", "update_id").with_columns(observed_reward(imp, config.reward, cfg.t_skip_s))
    row = pl.DataFrame({"session_id": req, "_row": np.arange(n)}).join(cells, on="session_id", how="inner")
    i, p = row["_row"].to_numpy(), row["position"].to_numpy().astype(np.int64)
    if (row["update_id"].to_numpy() != rec["feed_logged_update"][i, p]).any():
        raise RuntimeError("the logged feeds differ from what the recorder saw; the engine's tie-breaking changed")
    reward = np.zeros((n, k))
    reward[i, p] = row["reward"].to_numpy()
    # Feed events per requesting session: how far its member scrolls (simulate.truth.view_probability).
    ev = tables["events"].filter(pl.col("event_type") == EVENT_TYPES[0]).group_by("session_id").len("n_feed")
    n_feed = pl.DataFrame({"session_id": req}).join(ev, on="session_id", how="left", maintain_order="left")["n_feed"]
    if n_feed.null_count():
        raise RuntimeError("a logged feed request has no feed event in the events table")
    n_feed_a = n_feed.to_numpy()
    length = np.minimum(cfg.feed_length, rec["feed_n_candidates"])
    type_code, topic, quality = updates
    groups = rec["member_id"]

    def truth_of(update: np.ndarray) -> np.ndarray:
        return feed_truth(
            cfg, members, groups, type_code[update], topic[update], quality[update], n_feed_a, config.reward, feed_length=length
        )

    # Reward model of each position: the top slot's features with the position one-hot, cross-fitted by member.
    onehot = np.broadcast_to(np.eye(k), (n, k, k))

    def design(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, onehot], axis=2).reshape(n * k, -1)

    cell_groups = np.repeat(groups, k)
    models = fit_reward_model(design(rec["feed_logged_x"]), reward.ravel(), cell_groups, config.folds)
    q_logged = cross_predict(models, design(rec["feed_logged_x"]), cell_groups).reshape(n, k)
    # The bootstrap's own stream, apart from the targets' (child 0): one child Generator per target.
    boot_rngs = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(2)[1]).spawn(len(names))
    out_targets: dict[str, Any] = {}
    for name, boot_rng in zip(names, boot_rngs, strict=True):
        target = rec[f"feed_{name}_update"]
        truth = float(truth_of(target).mean())
        q_target = cross_predict(models, design(rec[f"feed_{name}_x"]), cell_groups).reshape(n, k)
        inputs = (reward, rec["feed_logged_update"], target, rec["feed_logged_step"], rec["feed_logged_marginal"], q_logged, q_target)
        pi_weight = rec.get(f"feed_{name}_pi_weight")  # the exact-Gamma pseudoinverse, small candidate sets only
        ests = feed_estimates(*inputs, config.alpha, pi_weight=pi_weight)
        boot = feed_estimates(*inputs, config.alpha, interval="bootstrap", n_boot=config.feed_n_boot, rng=boot_rng, pi_weight=pi_weight)
        same = rec["feed_logged_update"] == target
        out_targets[name] = {
            "truth": truth,
            "estimates": _finite_or_none(_with_bootstrap(_estimates_dict(list(ests.values()), truth), boot, truth)),
            "position_match_rate": same.mean(axis=0).tolist(),
            "slate_match_rate": float(same.all(axis=1).mean()),
        }
    return {
        "k": k,
        "bootstrap": {"n_boot": config.feed_n_boot, "seed": f"numpy SeedSequence({config.seed}).spawn(2)[1], one spawned child per target"},
        "estimand": f"expected {config.reward} count over the first {k} feed positions of the ranker's feed "
        "(the simulator's position effect and viewing depth), over the logged requests",
        "n_requests": int(n),
        "logging": {
            "observed_reward": float(reward.sum(axis=1).mean()),
            "truth_logged_feeds": float(truth_of(rec["feed_logged_update"]).mean()),
        },
        "targets": out_targets,
    }
