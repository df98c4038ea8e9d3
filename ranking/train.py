"""The training driver: logs in, a fitted :class:`~ranking.model.RankerModel` and its report out.

:func:`train_ranker` reads logs, builds the batch features of a feature set,
holds out the last days (by time), fits the GBDT+LR heads (click, react,
comment, share, skip, and the optional long dwell) and the regressions
(downstream and upstream per action, and the optional expected dwell) on the
earlier days, evaluates everything on the held-out days against constant,
LR-only and GBDT-only baselines, and sets the default value weights
(:func:`ranking.value.default_weights`).  :mod:`ranking.model` saves and
loads the result.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any, Protocol, TypeAlias, cast, runtime_checkable

import numpy as np
import polars as pl

from dwellrank_logs.checks import is_finite_number
from dwellrank_logs.errors import ConfigError, SchemaError
from dwellrank_logs.io import scan_logs
from dwellrank_logs.schema import ACTIONS, SCHEMA_VERSION
from ranking.embeddings_fit import with_embedding_features
from ranking.features import FEATURE_SETS, get_feature_set, member_profiles, training_frame
from ranking.features.chunked import day_counts
from ranking.features.embeddings import DwellEmbeddings
from ranking.features.frame_file import read_training_frame
from ranking.glmix_pskip import PskipGlmixConfig, fit_pskip_glmix
from ranking.heads import GBDTLRHead
from ranking.metrics import binary_metrics, calibration_bins, compare_heads
from ranking.model import HEADS, MODEL_FORMAT, REGRESSORS, RankerModel
from ranking.regressors import ActionRegressor, poisson_deviance
from ranking.report import roc_points
from ranking.sampling import DEFAULT_MAX_MEMORY, parse_memory
from ranking.train_config import TrainConfig
from ranking.train_sampled import fit_within_budget, full_frame_bytes
from ranking.value import default_weights
from ranking.weighting import head_weights, weighting_record, with_click_dwell

__all__ = ["LogTables", "TrainConfig", "TrainingLogs", "load_training_tables", "train_ranker"]

_TABLES = ("impressions", "sessions", "updates", "members")


@runtime_checkable
class LogTables(Protocol):
    """Anything holding log tables by name, as :class:`simulate.SimulationResult` does."""

    @property
    def tables(self) -> Mapping[str, pl.DataFrame | pl.LazyFrame]:
        """Log tables by name (at least ``impressions``, ``sessions``, ``updates``, ``members``)."""
        ...


#: What training reads: a logs directory, a mapping of table name to frame, or an object with ``tables``.
TrainingLogs: TypeAlias = str | os.PathLike[str] | Mapping[str, pl.DataFrame | pl.LazyFrame] | LogTables


def load_training_tables(logs: TrainingLogs) -> dict[str, pl.DataFrame | pl.LazyFrame]:
    """The four tables training reads, from a logs directory, a mapping or a SimulationResult."""
    if isinstance(logs, (str, os.PathLike)):
        return dict(scan_logs(logs, _TABLES))
    tables = logs.tables if isinstance(logs, LogTables) else logs
    if not isinstance(tables, Mapping):
        raise ConfigError(f"logs must be a logs directory, a mapping of tables or a SimulationResult, got {type(logs).__name__}")
    missing = [t for t in _TABLES if t not in tables]
    if missing:
        raise SchemaError(f"logs: missing table(s) {missing}; training needs {', '.join(_TABLES)}")
    return {t: tables[t] for t in _TABLES}


def train_ranker(
    logs: TrainingLogs,
    *,
    feature_set: str = "dwell",
    t_skip_s: float = 2.5,
    seed: int = 0,
    config: TrainConfig | None = None,
    frame: str | os.PathLike[str] | None = None,
    max_rows: int | None = None,
    max_memory: int | str | None = None,
    sample: float | None = None,
) -> RankerModel:
    """Fit every head and regression and the default weights.

    Parameters
    ----------
    logs : path-like, mapping of table name to DataFrame, or SimulationResult
        Needs ``impressions``, ``sessions``, ``updates``, ``members``.
    feature_set : {"dwell", "base"}
    t_skip_s : float, seconds
    seed : int
    config : TrainConfig, optional
        Overrides ``feature_set``, ``t_skip_s`` and ``seed`` when given.
    frame : path-like, optional
        A training frame directory of these logs (written by
        :func:`ranking.features.spark_training.write_training_frame_spark`):
        fit from it instead of building the frame with polars (the logs then
        give only the member profiles).
    max_rows : int, optional
        With ``frame``: fit from a uniform sample of at most this many rows,
        drawn by a child of ``seed``'s Generator (the one after the heads').
    max_memory : int or str, optional
        Memory budget (bytes, or a size such as ``"8G"``; default
        :data:`ranking.sampling.DEFAULT_MAX_MEMORY`).  When the in-memory frame
        would exceed it (estimated from the row count), the frame is built a few
        days at a time and each head is fitted from a sample of it
        (:mod:`ranking.train_sampled`); a budget too small even for that raises
        :class:`ranking.sampling.ResourceError` before the rows are read.
    sample : float, optional
        Fit from samples whatever the budget: each head keeps all rows of its
        rarer label and this rate of the others, the regressions this rate of all rows.

    Returns
    -------
    RankerModel
        Call ``.save(dir)``; serve with :class:`ranking.FeedRanker`.
        ``metadata["data"]`` records the ``engine`` that built the frame, its
        ``frame_rows``, and ``sample_rows`` and ``sample_seed`` (None without a sample);
        from samples, ``sampling`` holds each head's rates and rows before and after.
    """
    cfg = config or TrainConfig(feature_set=feature_set, t_skip_s=t_skip_s, seed=seed)
    fs = get_feature_set(cfg.feature_set)
    tables = load_training_tables(logs)
    if frame is not None and cfg.weighted:
        raise ConfigError(
            f"click_weighting={cfg.click_weighting!r} needs the impressions' click_dwell_s, which a training frame "
            "directory does not hold; train without frame= (the polars engine) or with click_weighting='none'"
        )
    if cfg.pskip_glmix and (frame is not None or sample is not None):
        raise ConfigError("pskip_glmix fits the random effects on the whole in-memory training frame: train without frame= and sample=")
    if cfg.dwell_embeddings and (frame is not None or sample is not None):
        raise ConfigError(
            "dwell_embeddings refits the embeddings per day on the logs' impressions and needs the whole in-memory training frame: "
            "train without frame= (the Spark engine) and sample="
        )
    if frame is not None:
        return _fit_frame_file(frame, member_profiles(tables["members"]), cfg, max_rows)
    if max_rows is not None:
        raise ConfigError("max_rows samples a Parquet training frame: pass frame= too (see write_training_frame_spark)")
    budget = DEFAULT_MAX_MEMORY if max_memory is None else parse_memory(max_memory)
    if sample is not None and not (is_finite_number(sample) and 0 < sample <= 1):
        raise ConfigError(f"sample must be a keep rate in (0, 1], got {sample!r}")
    days = day_counts(tables, cfg.t_skip_s, cfg.t_long_s)
    if sample is None and full_frame_bytes(int(days["rows"].sum())) <= budget:
        data = training_frame(tables, fs, cfg.t_skip_s, cfg.t_long_s)
        if cfg.weighted:
            data = with_click_dwell(data, tables["impressions"])
        embeddings = None
        if cfg.dwell_embeddings:
            data, embeddings = with_embedding_features(data, tables, cfg.t_skip_s, cfg.embedding_config, _embedding_rng(cfg))
        source = {"engine": "polars", "frame_rows": data.height, "sample_rows": None}
        return _fit(data, source, member_profiles(tables["members"]), cfg, _seeds(cfg)[0], tables, embeddings)
    for option, on in (("pskip_glmix", cfg.pskip_glmix), ("dwell_embeddings", cfg.dwell_embeddings)):
        if on:
            raise ConfigError(
                f"{option} needs the whole training frame in memory; {int(days['rows'].sum()):,} rows exceed the memory budget "
                f"of {budget:,} bytes (raise max_memory)"
            )
    seeds, sample_rng = _seeds(cfg)
    rate = None if sample is None else float(sample)
    return fit_within_budget(tables, days, cfg, member_profiles(tables["members"]), seeds, sample_rng, budget, rate)


def _seeds(cfg: TrainConfig) -> tuple[list[np.random.Generator], np.random.Generator]:
    """The Generators of the heads and regressions, and the next child of the seed's (the sample's)."""
    rng = np.random.default_rng(cfg.seed)
    return rng.spawn(len(HEADS) + len(REGRESSORS) + 1), rng.spawn(1)[0]


def _embedding_rng(cfg: TrainConfig) -> np.random.Generator:
    """The child of the seed's Generator after :func:`_seeds`' (so that those, and models without embeddings, stay as they were)."""
    rng = np.random.default_rng(cfg.seed)
    rng.spawn(len(HEADS) + len(REGRESSORS) + 1), rng.spawn(1)
    return rng.spawn(1)[0]


def _fit_frame_file(path: str | os.PathLike[str], profiles: pl.DataFrame, cfg: TrainConfig, max_rows: int | None) -> RankerModel:
    """:func:`_fit` from a training frame directory, whole or a sample of at most ``max_rows`` rows."""
    for option, on in (("pskip_glmix", cfg.pskip_glmix), ("dwell_embeddings", cfg.dwell_embeddings)):
        if on:  # before any row is read (the Spark engine comes here too)
            raise ConfigError(f"{option} is an option of the polars engine: a training frame directory lacks the logs' updates table")
    fs = get_feature_set(cfg.feature_set)
    seeds, sample_rng = _seeds(cfg)
    columns = ("day", *HEADS, "downstream", "upstream", "dwell", *fs.columns)  # what _fit reads
    data, source = read_training_frame(path, fs, cfg.t_skip_s, cfg.t_long_s, max_rows, sample_rng, columns)
    return _fit(data, source, profiles, cfg, seeds)


def _fit(
    frame: pl.DataFrame,
    source: dict[str, Any],
    profiles: pl.DataFrame,
    cfg: TrainConfig,
    seeds: list[np.random.Generator],
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame] | None = None,
    embeddings: DwellEmbeddings | None = None,
) -> RankerModel:
    """The model of :func:`train_ranker` from a training frame (``source``: engine, frame_rows, sample_rows).

    ``tables`` (the logs' updates and members) are read only with ``cfg.pskip_glmix``; ``embeddings``
    (the served vectors; the frame holds the strictly-past ``emb_*`` columns) only with ``cfg.dwell_embeddings``.
    """
    fs = cfg.model_feature_set
    if frame.height == 0:
        raise SchemaError("logs: the impressions table has no rows; nothing to train on")
    last = int(cast(int, frame["day"].max()))  # Int32 without nulls: a Python int
    first = int(cast(int, frame["day"].min()))
    if last - first + 1 < cfg.holdout_days + 2:
        raise ConfigError(f"logs span {last - first + 1} day(s); training needs at least holdout_days + 2 = {cfg.holdout_days + 2}")
    if cfg.weighted and "click_dwell_s" not in frame.columns:
        raise ConfigError(
            f"click_weighting={cfg.click_weighting!r} needs a click_dwell_s column in the training frame (see with_click_dwell)"
        )
    train = frame.filter(pl.col("day") <= last - cfg.holdout_days)
    test = frame.filter(pl.col("day") > last - cfg.holdout_days)
    X_tr, X_te = train.select(fs.columns).to_numpy(), test.select(fs.columns).to_numpy()

    heads: dict[str, GBDTLRHead] = {}
    report_heads: dict[str, Any] = {}
    for i, h in enumerate(HEADS):
        y_tr, y_te = train[h].to_numpy(), test[h].to_numpy()
        heads[h] = GBDTLRHead(cfg.head).fit(X_tr, y_tr, seeds[i], label=h, sample_weight=head_weights(cfg, h, train))
        p_te = heads[h].predict_proba(X_te)
        if cfg.baselines:
            metrics = compare_heads(X_tr, y_tr, X_te, y_te, cfg.head, seeds[i], head=heads[h])
        else:
            metrics = {"gbdt_lr": binary_metrics(y_te, p_te, background=float(y_tr.mean()))}
        report_heads[h] = {"metrics": metrics, "calibration_bins": calibration_bins(y_te, p_te), "roc": roc_points(y_te, p_te)}

    # Downstream/upstream value of each action on the rows with that action; dwell on all rows.
    targets: list[tuple[str, str, Any, Any]] = [
        (f"{t}_{a}", target, train[a].to_numpy(), test[a].to_numpy())
        for a in ACTIONS
        for t, target in (("down", "downstream"), ("up", "upstream"))
    ]
    targets.append(("dwell", "dwell", slice(None), slice(None)))  # slices: views, not copies of X
    regs, report_regs = _fit_regressors(
        (  # a generator: one row selection of X at a time
            (name, X_tr[on_tr], train[target].to_numpy()[on_tr], X_te[on_te], test[target].to_numpy()[on_te])
            for name, target, on_tr, on_te in targets
        ),
        cfg,
        seeds,
    )

    # Every head and regression on the training rows, in one vectorised pass over all trees
    # (the compiled forest, equal to each head's and regression's own predict).
    model_preds = RankerModel(fs, cfg.t_skip_s, heads, regs, None, None, {}).predict(X_tr)  # type: ignore[arg-type]
    weights = default_weights(model_preds)

    report = _report(cfg, first, last, train.height, test.height, report_heads, report_regs, weights.to_dict())
    if cfg.skip_lift and fs.uses_dwell:
        base_cols = FEATURE_SETS["base"].columns
        base_head = GBDTLRHead(cfg.head).fit(train.select(base_cols).to_numpy(), train["skip"].to_numpy(), seeds[-1], label="skip")
        auc_base = binary_metrics(test["skip"].to_numpy(), base_head.predict_proba(test.select(base_cols).to_numpy()))["auc"]
        report["skip_dwell_lift"] = _skip_lift(auc_base, report_heads["skip"]["metrics"]["gbdt_lr"]["auc"])
    metadata = _metadata(cfg, first, last, frame.height, train.height, test.height, source, list(regs))
    if cfg.dwell_embeddings:
        if embeddings is None:
            raise ConfigError("dwell_embeddings needs the fitted embeddings (ranking.embeddings_fit.with_embedding_features)")
        metadata["embeddings"] = embeddings.record
    glmix = None
    if cfg.pskip_glmix:
        if tables is None:
            raise ConfigError("pskip_glmix needs the logs' updates and members tables")
        # The fixed effect is the skip head's logit; the default weights stay the global head's, so that a
        # model with GLMix differs from one without only in P(skip).
        skip = heads["skip"]
        glmix, metadata["pskip"] = fit_pskip_glmix(
            train,
            skip.decision_function(X_tr),
            test,
            skip.decision_function(X_te),
            tables["updates"],
            tables["members"],
            fs,
            PskipGlmixConfig(valid_days=cfg.glmix_valid_days),
            seed=cfg.seed,
        )
    return RankerModel(fs, cfg.t_skip_s, heads, regs, weights, profiles, metadata, report, glmix, embeddings)


def _fit_regressors(
    rows: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]], cfg: TrainConfig, seeds: list[np.random.Generator]
) -> tuple[dict[str, ActionRegressor], dict[str, Any]]:
    """Each regression (name, X_train, y_train, X_test, y_test) fitted with its seed, and its report entry."""
    regs: dict[str, ActionRegressor] = {}
    report_regs: dict[str, Any] = {}
    for k, (name, X, y_fit, X_test, y) in enumerate(rows, start=len(HEADS)):
        reg = ActionRegressor(cfg.regressor).fit(X, y_fit, seeds[k], target=name)
        regs[name] = reg
        report_regs[name] = {
            "n_train": reg.n_rows_,
            "n_test": int(y.size),
            "trees": reg.booster_ is not None,
            "deviance": poisson_deviance(y, reg.predict(X_test)) if y.size else None,
            "deviance_constant": poisson_deviance(y, np.full(y.size, reg.constant_)) if y.size else None,
        }
    return regs, report_regs


def _report(
    cfg: TrainConfig, first: int, last: int, n_train: int, n_test: int, heads: dict[str, Any], regs: dict[str, Any], weights: dict[str, Any]
) -> dict[str, Any]:
    """``report.json`` (without the skip lift)."""
    return {
        "feature_set": cfg.model_feature_set.to_dict(),
        "t_skip_s": cfg.t_skip_s,
        "t_long_s": cfg.t_long_s,
        "seed": cfg.seed,
        "split": {
            "train_days": [_iso(first), _iso(last - cfg.holdout_days)],
            "test_days": [_iso(last - cfg.holdout_days + 1), _iso(last)],
            "n_train": n_train,
            "n_test": n_test,
        },
        "heads": heads,
        "regressors": regs,
        "weights": weights,
        "metric_notes": "auc: ROC AUC; ne: log loss / entropy of the training positive rate (He et al. 2014); "
        "calibration: mean prediction / observed rate; ece: mean |pred - observed| over 10 quantile bins",
    }


def _skip_lift(auc_base: float, auc_dwell: float) -> dict[str, Any]:
    """The AUC lift of the dwell features on P(skip)."""
    return {
        "auc_base": auc_base,
        "auc_dwell": auc_dwell,
        "lift": auc_dwell - auc_base,
        "relative_lift_over_0.5": (auc_dwell - 0.5) / (auc_base - 0.5) - 1 if auc_base > 0.5 else None,
    }


def _metadata(
    cfg: TrainConfig, first: int, last: int, n_rows: int, n_train: int, n_test: int, source: dict[str, Any], regs: list[str]
) -> dict[str, Any]:
    """``metadata.json``; ``source`` holds the engine, the frame's rows and any sampling."""
    train_config = {**asdict(cfg), "head": asdict(cfg.head), "regressor": asdict(cfg.regressor)}
    if not cfg.weighted:  # an unweighted model's metadata stays as it was before the option existed
        for key in ("click_weighting", "click_dwell_half_s"):
            train_config.pop(key)
    if not cfg.pskip_glmix:  # likewise without GLMix
        for key in ("pskip_glmix", "glmix_valid_days"):
            train_config.pop(key)
    if not cfg.dwell_embeddings:  # and without the embeddings
        for key in ("dwell_embeddings", "embedding_author_rank", "embedding_topic_rank", "embedding_value"):
            train_config.pop(key)
    weighting = {"dwell_weighting": weighting_record(cfg.click_weighting, cfg.click_dwell_half_s)} if cfg.weighted else {}
    return {
        "model_format": MODEL_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "feature_set": cfg.model_feature_set.to_dict(),
        "t_skip_s": cfg.t_skip_s,
        "seed": cfg.seed,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "train_config": train_config,
        "t_long_s": cfg.t_long_s,
        "data": {
            "n_rows": n_rows,
            "n_train": n_train,
            "n_test": n_test,
            "days": [_iso(first), _iso(last)],
            **source,
            "sample_seed": None if source.get("sample_rows") is None else cfg.seed,
        },
        "heads": list(HEADS),
        "regressors": regs,
        **weighting,
    }


def _iso(day: int) -> str:
    """ISO date of a day number (days since 1970-01-01)."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()
