"""Off-policy evaluation of a ranker from logs of a stochastic logging ranker.

The estimand is the **top-slot value** of a target ranker pi:
``V(pi) = E_x[ E[r | x, a = pi's first update, position 0] ]`` averaged over
the logged feed requests x.  The logging ranker samples its order by
Plackett-Luce, so the logged propensity of the update at position 0 (the
first PL step) is exactly mu(a | x), and the top slot is a contextual bandit
with known propensities (the position-0 reward depends only on that update).

Estimators (pure functions of arrays, in the spirit of Open Bandit
Pipeline's ``ope`` module) with normal-approximation intervals:

* :func:`ips` -- inverse propensity scoring, ``mean(w r)``, ``w = pi(a|x) / mu(a|x)``;
* :func:`snips` -- self-normalised IPS, ``sum(w r) / sum(w)`` (delta-method interval);
* :func:`doubly_robust` -- ``mean(q(x, pi) + w (r - q(x, a)))`` with a cross-fitted
  logistic reward model q.

:func:`run_ope` simulates the logging policy, records what each target would
have put first for every logged request, estimates, and computes the
simulator's truth for the same requests with :mod:`simulate.truth`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.checks import is_finite_number
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.protocol import (
    HistoryTables,
    Ranker,
    RankerBase,
    RankOutput,
    forward_candidate_columns,
    ranker_description,
    ranker_t_skip_s,
)
from dwellrank_logs.schema import VIRAL_COLUMNS
from simulate.config import WorldConfig
from simulate.engine import simulate
from simulate.rankers import plackett_luce
from simulate.truth import expected_reward, world_members

__all__ = [
    "OPE_REWARDS",
    "ExplorationRanker",
    "OPEConfig",
    "OPEEstimate",
    "OPERecorder",
    "doubly_robust",
    "fit_reward_model",
    "ips",
    "observed_reward",
    "reward_features",
    "run_ope",
    "snips",
    "top_rows",
]

#: Rewards that OPE can use: observable in the impressions log.
OPE_REWARDS = ("click", "viral", "not_skipped")


# --------------------------------------------------------------------------- estimators


@dataclass(frozen=True)
class OPEEstimate:
    """A point estimate with its standard error and two-sided ``1 - alpha`` interval."""

    estimator: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    n: int

    def covers(self, truth: float) -> bool:
        """Whether the interval contains ``truth``."""
        return bool(self.ci_low <= truth <= self.ci_high)


def _check_arrays(**arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    out = [np.asarray(a, dtype=np.float64) for a in arrays.values()]
    n = out[0].shape
    for (name, _), a in zip(arrays.items(), out):
        if a.ndim != 1 or a.shape != n:
            raise ConfigError(f"{name} must be a 1-d array of the same length as the others ({n[0]}), got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ConfigError(f"{name} must be finite, got {int((~np.isfinite(a)).sum())} non-finite value(s)")
    if n[0] < 2:
        raise ConfigError(f"need at least 2 logged samples for an estimate and its interval, got {n[0]}")
    if "weight" in arrays and (out[list(arrays).index("weight")] < 0).any():
        raise ConfigError("weight must be >= 0 (importance weights pi(a|x) / mu(a|x))")
    return tuple(out)


def _normal(name: str, value: float, se: float, n: int, alpha: float) -> OPEEstimate:
    z = statistics.NormalDist().inv_cdf(1 - alpha / 2)
    return OPEEstimate(name, float(value), float(se), float(value - z * se), float(value + z * se), int(n))


def ips(reward: np.ndarray, weight: np.ndarray, alpha: float = 0.05) -> OPEEstimate:
    """Inverse propensity scoring: ``mean(w r)``; unbiased when the propensities are exact.

    Parameters
    ----------
    reward : ndarray, shape (n,)
        Observed reward of the logged action.
    weight : ndarray, shape (n,)
        ``pi(a_i | x_i) / mu(a_i | x_i)`` for the logged action a_i.
    alpha : float
        Two-sided level of the normal interval.
    """
    r, w = _check_arrays(reward=reward, weight=weight)
    t = w * r
    return _normal("ips", t.mean(), t.std(ddof=1) / math.sqrt(t.size), t.size, alpha)


def snips(reward: np.ndarray, weight: np.ndarray, alpha: float = 0.05) -> OPEEstimate:
    """Self-normalised IPS: ``sum(w r) / sum(w)``, interval by the delta method.

    Always within the range of the observed rewards.  With no weight at all
    (the target never agrees with the log) the estimate is NaN.
    """
    r, w = _check_arrays(reward=reward, weight=weight)
    s = w.sum()
    if s <= 0:
        return OPEEstimate("snips", math.nan, math.nan, math.nan, math.nan, int(r.size))
    v = float(((w / s) * r).sum())  # normalise first: w * r underflows for subnormal weights
    infl = w * (r - v) / w.mean()  # influence function of the ratio estimator
    return _normal("snips", v, infl.std(ddof=1) / math.sqrt(r.size), r.size, alpha)


def doubly_robust(reward: np.ndarray, weight: np.ndarray, q_logged: np.ndarray, q_target: np.ndarray, alpha: float = 0.05) -> OPEEstimate:
    """Doubly robust: ``mean(q_target + w (r - q_logged))``.

    Parameters
    ----------
    reward, weight : ndarray, shape (n,)
        As in :func:`ips`.
    q_logged : ndarray, shape (n,)
        Reward model's prediction for the logged action.
    q_target : ndarray, shape (n,)
        Reward model's expected reward under the target, ``sum_a pi(a|x) q(x, a)``.

    Unbiased when either the propensities or the reward model are right; the
    propensities here are exact, the reward model only reduces variance.
    """
    r, w, ql, qt = _check_arrays(reward=reward, weight=weight, q_logged=q_logged, q_target=q_target)
    t = qt + w * (r - ql)
    return _normal("dr", t.mean(), t.std(ddof=1) / math.sqrt(t.size), t.size, alpha)


# --------------------------------------------------------------------------- logging policy and recording


def top_rows(scores: np.ndarray, request_id: np.ndarray) -> np.ndarray:
    """Row index of the first-placed candidate of each request (in order of first appearance).

    The simulator sorts by descending score with ties broken by candidate
    order; this picks the same row.  Rows of one request must be contiguous.
    """
    rid = np.asarray(request_id)
    n = rid.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(rid[1:] != rid[:-1]) + 1]
    grp = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, n]))
    order = np.lexsort((np.arange(n), -np.asarray(scores, dtype=np.float64), grp))
    first = np.r_[True, grp[order][1:] != grp[order][:-1]]
    return order[first]


class ExplorationRanker(RankerBase):
    """Plackett-Luce sampling over a base ranker's per-request standardised scores.

    Standardising makes ``temperature`` mean the same for any base ranker:
    1 is moderate exploration, 0.1 nearly the base order.  Logs exact step
    propensities (see :func:`simulate.rankers.plackett_luce`).

    Parameters
    ----------
    base : Ranker
    temperature : float > 0
    """

    def __init__(self, base: Ranker, temperature: float = 1.0) -> None:
        if not _positive(temperature):
            raise ConfigError(f"temperature must be a number > 0, got {temperature!r}")
        self.base = base
        self.temperature = float(temperature)
        self.t_skip_s = ranker_t_skip_s(base)
        self.candidate_columns = forward_candidate_columns(base)
        self.description = f"explore({ranker_description(base)}, T={temperature:g})"

    def rank(self, candidates: pl.DataFrame, history: HistoryTables, rng: np.random.Generator) -> RankOutput:
        s = np.asarray(self.base.rank(candidates, history, rng).scores, dtype=np.float64)
        self.last_base_scores = s  # lets OPERecorder reuse them when the base is also a target
        req = candidates["request_id"].to_numpy()
        return plackett_luce(_standardise(s, req), req, self.temperature, rng)


def _standardise(s: np.ndarray, request_id: np.ndarray) -> np.ndarray:
    """Per-request z-scores (0 where a request's scores are all equal); rows of a request contiguous.

    numpy's bincount sums in row order, so the result is the same on every run.
    """
    if s.size == 0:
        return s
    grp = np.cumsum(np.r_[0, request_id[1:] != request_id[:-1]])
    count = np.bincount(grp).astype(float)
    mean = np.bincount(grp, weights=s) / count
    dev = s - mean[grp]
    sd = np.sqrt(np.bincount(grp, weights=dev * dev) / count)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = dev / sd[grp]
    return np.where(sd[grp] > 0, z, 0.0)


def _positive(v: Any) -> bool:
    return is_finite_number(v) and v > 0


_TYPE_FEATURES = 5


def reward_features(rows: pl.DataFrame, history: HistoryTables, update_types: tuple[str, ...]) -> np.ndarray:
    """Features of (request, update) rows for the DR reward model, from what a ranker may see.

    Smoothed past click, viral and not-skipped rates of the update, the
    member's not-skipped and action rates for the update type and the author,
    the update's age, and the update type (one-hot).

    Returns
    -------
    ndarray, shape (len(rows), n_features)
    """
    f = (
        rows.select("member_id", "update_id", "update_type", "author_id", "created_ts", "request_ts")
        .join(history.updates, on="update_id", how="left", maintain_order="left")
        .join(
            history.member_types.rename({c: f"mt_{c}" for c in ("n_impressions", "n_not_skipped", "n_actions")}),
            on=["member_id", "update_type"],
            how="left",
            maintain_order="left",
        )
        .join(
            history.member_authors.rename({"n_impressions": "ma_imp", "n_actions": "ma_act"}),
            on=["member_id", "author_id"],
            how="left",
            maintain_order="left",
        )
        .fill_null(0)
    )
    imp = f["n_impressions"].to_numpy().astype(float)
    mt = f["mt_n_impressions"].to_numpy().astype(float)
    cols = [
        np.log((f["n_clicks"].to_numpy() + 1.0) / (imp + 20.0)),
        np.log((f["n_virals"].to_numpy() + 1.0) / (imp + 20.0)),
        np.log((f["n_not_skipped"].to_numpy() + 1.0) / (imp + 4.0)),
        np.log1p(imp),
        np.log((f["mt_n_not_skipped"].to_numpy() + 1.0) / (mt + 4.0)),
        np.log((f["mt_n_actions"].to_numpy() + 0.5) / (mt + 5.0)),
        f["ma_act"].to_numpy() / (f["ma_imp"].to_numpy() + 1.0),
        np.log1p(np.maximum((f["request_ts"] - f["created_ts"]).dt.total_seconds().to_numpy() / 3600.0, 0.0)),
    ]
    code = f["update_type"].replace_strict({t: i for i, t in enumerate(update_types)}, default=0, return_dtype=pl.Int64).to_numpy()
    onehot = np.eye(len(update_types))[code]
    return np.column_stack([*cols, onehot])


class OPERecorder(RankerBase):
    """Wraps a logging ranker and records, per request, its first update and each target's.

    The targets rank the same candidates with the same history but their own
    random generator, so recording does not change the simulated world.

    Parameters
    ----------
    logging : Ranker
        Must log propensities (e.g. :class:`ExplorationRanker`).
    targets : mapping of name to Ranker
        Deterministic rankers to evaluate (their first update is the action).
    update_types : tuple of str
    rng : numpy.random.Generator
        For the targets' ``rank`` calls.
    """

    def __init__(self, logging: Ranker, targets: Mapping[str, Ranker], update_types: tuple[str, ...], rng: np.random.Generator) -> None:
        self.logging = logging
        self.targets = dict(targets)
        self.update_types = update_types
        self.t_skip_s = ranker_t_skip_s(logging)
        self._rng = rng
        self._parts: list[dict[str, np.ndarray]] = []

    def rank(self, candidates: pl.DataFrame, history: HistoryTables, rng: np.random.Generator) -> RankOutput:
        out = self.logging.rank(candidates, history, rng)
        if out.propensity is None:
            raise ConfigError(f"logging ranker {type(self.logging).__name__} must log propensities for off-policy evaluation")
        req = candidates["request_id"].to_numpy()
        upd = candidates["update_id"].to_numpy()
        logged = top_rows(out.scores, req)
        picks = {name: top_rows(self._target_scores(t, candidates, history), req) for name, t in self.targets.items()}
        rows = np.concatenate([logged, *picks.values()])
        feats = reward_features(candidates[rows], history, self.update_types)
        k = logged.size
        part: dict[str, np.ndarray] = {
            "request_id": req[logged],
            "member_id": candidates["member_id"].to_numpy()[logged],
            "logged_update": upd[logged],
            "logged_propensity": out.propensity[logged],
            "logged_x": feats[:k],
        }
        for j, (name, p) in enumerate(picks.items(), start=1):
            part[f"{name}_update"] = upd[p]
            part[f"{name}_x"] = feats[j * k : (j + 1) * k]
        self._parts.append(part)
        return out

    def _target_scores(self, target: Ranker, candidates: pl.DataFrame, history: HistoryTables) -> np.ndarray:
        # A deterministic base ranker that is also a target need not score the same candidates twice.
        if target is getattr(self.logging, "base", None) and getattr(self.logging, "last_base_scores", None) is not None:
            return self.logging.last_base_scores  # type: ignore[attr-defined]
        return np.asarray(target.rank(candidates, history, self._rng).scores)

    def records(self) -> dict[str, np.ndarray]:
        """All recorded requests: arrays keyed as in :meth:`rank` (``*_x`` are feature matrices)."""
        if not self._parts:
            return {}
        return {key: np.concatenate([p[key] for p in self._parts]) for key in self._parts[0]}


def observed_reward(impressions: pl.DataFrame, reward: str, t_skip_s: float) -> pl.Series:
    """The reward of each impression row: click, any viral action, or not skipped."""
    if reward == "click":
        expr = pl.col("clicked")
    elif reward == "viral":
        expr = pl.any_horizontal(*VIRAL_COLUMNS)
    elif reward == "not_skipped":
        expr = (pl.col("dwell_s") >= t_skip_s) | pl.any_horizontal("clicked", *VIRAL_COLUMNS)
    else:
        raise ConfigError(f"reward must be one of {list(OPE_REWARDS)}, got {reward!r}")
    return impressions.select(expr.cast(pl.Float64).alias("reward"))["reward"]


def fit_reward_model(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 2) -> list[Any]:
    """Cross-fitted logistic reward models, one per fold of ``groups % folds``.

    Model k is fitted on the rows outside fold k and predicts the rows in it
    (:func:`_cross_predict`), so no row's prediction has seen its own reward.
    A fold whose training rows hold a single reward value gets that constant.

    Returns
    -------
    list, length ``folds``: fitted pipelines (or constant floats)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fold = np.asarray(groups) % folds
    models: list[Any] = []
    for k in range(folds):
        train = fold != k
        if np.unique(y[train]).size < 2:
            models.append(float(y[train].mean()) if train.any() else float(y.mean()))
            continue
        m = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
        m.fit(x[train], y[train])
        models.append(m)
    return models


def _cross_predict(models: list[Any], x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    fold = np.asarray(groups) % len(models)
    out = np.empty(x.shape[0])
    for k, m in enumerate(models):
        rows = fold == k
        if rows.any():
            out[rows] = m if isinstance(m, float) else m.predict_proba(x[rows])[:, 1]
    return out


# --------------------------------------------------------------------------- the run


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
    """

    world: WorldConfig = field(default_factory=WorldConfig)
    seed: int = 0
    reward: str = "click"
    temperature: float = 1.0
    alpha: float = 0.05
    folds: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.world, WorldConfig):
            raise ConfigError(f"world must be a WorldConfig, got {type(self.world).__name__}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.reward not in OPE_REWARDS:
            raise ConfigError(f"reward must be one of {list(OPE_REWARDS)} (observable in the impressions log), got {self.reward!r}")
        if not _positive(self.temperature):
            raise ConfigError(f"temperature must be a number > 0, got {self.temperature!r}")
        if not _positive(self.alpha) or self.alpha >= 1:
            raise ConfigError(f"alpha must be in the open interval (0, 1), got {self.alpha!r}")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ConfigError(f"folds must be an integer >= 2, got {self.folds!r}")


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
    recorder = OPERecorder(logging, targets, cfg.update_types, rng_targets)
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
    q_logged = _cross_predict(models, rec["logged_x"], groups)

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
        q_target = _cross_predict(models, rec[f"{name}_x"], groups)
        truth = float(truth_of(chosen).mean())
        ests = [ips(r, w, config.alpha), snips(r, w, config.alpha), doubly_robust(r, w, q_logged, q_target, config.alpha)]
        out_targets[name] = {
            "truth": truth,
            "estimates": {
                e.estimator: {**{k: v for k, v in asdict(e).items() if k != "estimator"}, "covers": e.covers(truth)} for e in ests
            },
            "match_rate": float((chosen == rec["logged_update"]).mean()),
            "ess": float(w.sum() ** 2 / (w**2).sum()) if (w > 0).any() else 0.0,
        }
    return {
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
