"""Training pipeline and the model directory.

:func:`train_ranker` reads logs, builds the batch features of a feature set,
holds out the last days (by time), fits the GBDT+LR heads (click, react,
comment, share, skip, and the optional long dwell) and the regressions
(downstream and upstream per action, and the optional expected dwell) on the
earlier days, evaluates everything on
the held-out days against constant, LR-only and GBDT-only baselines, and sets
the default value weights (:func:`ranking.value.default_weights`).

A model directory holds::

    metadata.json      schema + feature-set name/version/columns, T_skip, seed, data sizes
    weights.json       value-function weights (edit, or pass others to FeedRanker)
    heads/<h>.trees.txt, heads/<h>.lr.json          LightGBM trees, LR coefficients
    regressors/<t>_<a>.json (+ .trees.txt)          E[target | action]; regressors/dwell.*: E[dwell_s]
    profiles.parquet   member profile snapshot (member-side features at serving time)
    report.json, report.png                          held-out metrics, calibration and ROC

:func:`load_model` refuses a directory written for another feature-set
version, naming what differs.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from dwellrank_logs.errors import ConfigError, SchemaError
from dwellrank_logs.io import atomic_dir, scan_logs, write_json, write_parquet
from dwellrank_logs.schema import SCHEMA_VERSION
from ranking.features import (
    FEATURE_SETS,
    FeatureSet,
    IncompatibleModelError,
    get_feature_set,
    member_profiles,
    training_frame,
)
from ranking.forest import CompiledForest, compile_forest, exp_exact
from ranking.heads import GBDTLRHead, HeadConfig, binary_metrics, calibration_bins, compare_heads
from ranking.regressors import ACTIONS, ActionRegressor, RegressorConfig, poisson_deviance
from ranking.value import ValueWeights, default_weights, load_weights, needed_predictions, value_function

__all__ = ["HEADS", "MODEL_FORMAT", "REGRESSORS", "RankerModel", "TrainConfig", "load_model", "load_training_tables", "train_ranker"]

#: The binary heads, in order (``long_dwell``: dwell_s > T_long, an optional value term).
HEADS: tuple[str, ...] = (*ACTIONS, "skip", "long_dwell")
#: The regressions: E[downstream | a], E[upstream | a] per action, and E[dwell_s] (optional value term).
REGRESSORS: tuple[str, ...] = (*(f"{t}_{a}" for t in ("down", "up") for a in ACTIONS), "dwell")
#: Version of the model-directory layout.
MODEL_FORMAT = 1
_TABLES = ("impressions", "sessions", "updates", "members")
#: The compiled forest is single-threaded numpy.  Measured with bench/rank.py's model (13
#: boosters, 230 trees) on 2 cores, it beats LightGBM's predict at every batch size from 1
#: row (0.26 vs 0.37 ms) through 1,000 (2.5 vs 4.1 ms) to 1M rows (2.9 s vs 5.9 s at one
#: LightGBM thread, 2.4 vs 2.7 s at two).  LightGBM scales with threads, so with more than
#: two it gets large batches (from _FOREST_MIN_ROWS_THREADED rows).
_FOREST_MAX_THREADS = 2
_FOREST_MIN_ROWS_THREADED = 2048


@dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`train_ranker` needs besides the data.

    Parameters
    ----------
    feature_set : {"dwell", "base"}
    t_skip_s : float, seconds
        Threshold of the skip label and of the not-skipped features.
    t_long_s : float, seconds
        Threshold of the long-dwell label (> t_skip_s).
    seed : int
    holdout_days : int
        The last days of the log, held out for the report (>= 1); the model
        is fitted on the days before them.
    head, regressor : HeadConfig, RegressorConfig
    baselines : bool
        Fit LR-only and GBDT-only baselines for the report.
    skip_lift : bool
        With the dwell set, also fit a P(skip) head on the base set and report
        the AUC lift of the dwell features.
    """

    feature_set: str = "dwell"
    t_skip_s: float = 2.5
    t_long_s: float = 10.0
    seed: int = 0
    holdout_days: int = 3
    head: HeadConfig = field(default_factory=HeadConfig)
    regressor: RegressorConfig = field(default_factory=RegressorConfig)
    baselines: bool = True
    skip_lift: bool = True

    def __post_init__(self) -> None:
        get_feature_set(self.feature_set)
        t = self.t_skip_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ConfigError(f"t_skip_s must be a finite number of seconds > 0, got {t!r}")
        tl = self.t_long_s
        if isinstance(tl, bool) or not isinstance(tl, (int, float)) or not math.isfinite(tl) or tl <= t:
            raise ConfigError(f"t_long_s must be a finite number of seconds > t_skip_s ({t}), got {tl!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if isinstance(self.holdout_days, bool) or not isinstance(self.holdout_days, int) or self.holdout_days < 1:
            raise ConfigError(f"holdout_days must be an integer >= 1, got {self.holdout_days!r}")


class RankerModel:
    """Trained heads, regressions, default weights and profile snapshot.

    Attributes
    ----------
    feature_set : FeatureSet
    t_skip_s : float, seconds
    heads : dict of str to GBDTLRHead
        ``click``, ``react``, ``comment``, ``share``, ``skip``, ``long_dwell``.
    regressors : dict of str to ActionRegressor
        ``down_<a>`` and ``up_<a>`` for each action ``a``, and ``dwell``.
    weights : ValueWeights
        Default weights (the rule in :mod:`ranking.value`).
    profiles : polars.DataFrame
        member_id and profile columns, from the training logs.
    metadata, report : dict
    """

    def __init__(
        self,
        feature_set: FeatureSet,
        t_skip_s: float,
        heads: dict[str, GBDTLRHead],
        regressors: dict[str, ActionRegressor],
        weights: ValueWeights,
        profiles: pl.DataFrame,
        metadata: dict[str, Any],
        report: dict[str, Any] | None = None,
    ) -> None:
        self.feature_set = feature_set
        self.t_skip_s = float(t_skip_s)
        self.heads = heads
        self.regressors = regressors
        self.weights = weights
        self.profiles = profiles
        self.metadata = metadata
        self.report = report or {}
        self._forests: dict[tuple[str, ...] | None, CompiledForest | None] = {}

    def predict(self, X: np.ndarray, num_threads: int = 1, only: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Every head's P and every regression's expectation.

        Parameters
        ----------
        X : ndarray, shape (n_rows, n_features)
            Columns in the order of ``feature_set.columns``.
        num_threads : int
            LightGBM prediction threads.
        only : tuple of str, optional
            Compute just these outputs (e.g. :func:`ranking.value.needed_predictions`).

        Returns
        -------
        dict name -> ndarray, shape (n_rows,)
            ``p_<head>`` for the six heads, ``down_<a>``, ``up_<a>`` and ``dwell`` (seconds).
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        heads, regs, boosters = self._outputs(only)
        # All trees in one vectorised pass (bit-identical to LightGBM's raw scores, checked when
        # compiled); LightGBM's predict for unsupported trees and many-thread large batches.
        raw: dict[int, np.ndarray] = {}
        threads = num_threads if num_threads > 0 else (os.cpu_count() or 1)
        if threads <= _FOREST_MAX_THREADS or X.shape[0] < _FOREST_MIN_ROWS_THREADED:
            forest = self._forest(only, boosters)
            if forest is not None and X.ndim == 2 and X.shape[1] == forest.n_features:
                raw = {id(b): r for b, r in zip(boosters, forest.raw_scores(X))}
        shared: dict[str, np.ndarray] = {}  # raw_transform(X), computed once for all heads
        out = {}
        for h, head in heads:
            kind = head.config.raw_transform
            if kind not in shared:
                shared[kind] = head.scaler_.f(X)
            out[f"p_{h}"] = head.predict_proba(X, num_threads, transformed=shared[kind], leaf_part=raw.get(id(head.folded_)))
        for name, reg in regs:
            r = raw.get(id(reg.booster_)) if reg.booster_ is not None else None
            out[name] = exp_exact(r) if r is not None else reg.predict(X, num_threads)
        return out

    def _outputs(self, only: tuple[str, ...] | None) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], list[Any]]:
        """The heads and regressions ``only`` asks for, and their boosters in the forest's order."""
        heads = [(h, head) for h, head in self.heads.items() if only is None or f"p_{h}" in only]
        regs = [(n, reg) for n, reg in self.regressors.items() if only is None or n in only]
        # Both regression objectives (poisson, tweedie) predict exp(raw score).
        boosters = [head.folded_ for _, head in heads] + [reg.booster_ for _, reg in regs if reg.booster_ is not None]
        return heads, regs, boosters

    def _forest(self, only: tuple[str, ...] | None, boosters: list[Any]) -> CompiledForest | None:
        """The compiled forest of ``boosters``, cached by ``only`` (which decides the boosters)."""
        if only not in self._forests:
            self._forests[only] = compile_forest(boosters)
        return self._forests[only]

    def prepare(self, weights: ValueWeights | None = None) -> bool:
        """Compile the forest that :meth:`score` under ``weights`` uses, ahead of the first request.

        Compiling (and checking against LightGBM) takes tens of milliseconds,
        which would otherwise fall on the first scored request.  Returns
        whether the trees compiled (False: LightGBM's predict serves them).
        """
        only = needed_predictions(weights or self.weights)
        return self._forest(only, self._outputs(only)[2]) is not None

    def score(self, X: np.ndarray, weights: ValueWeights | None = None, num_threads: int = 1) -> np.ndarray:
        """Value-function score, shape (n_rows,); only the predictions the weights use are computed."""
        w = weights or self.weights
        return value_function(self.predict(X, num_threads, only=needed_predictions(w)), w)

    # ---------------------------------------------------------------- persistence

    def save(self, directory: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write the model directory atomically (see the module docstring)."""
        with atomic_dir(directory, overwrite=overwrite) as tmp:
            (tmp / "heads").mkdir()
            (tmp / "regressors").mkdir()
            for name, head in self.heads.items():
                head.save(tmp / "heads", name)
            for name, reg in self.regressors.items():
                reg.save(tmp / "regressors", name)
            write_parquet(self.profiles, tmp / "profiles.parquet")
            write_json(tmp / "weights.json", self.weights.to_dict())
            write_json(tmp / "metadata.json", self.metadata)
            write_json(tmp / "report.json", self.report)
            if self.report:
                _plot_report(self.report, tmp / "report.png")
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> RankerModel:
        """Alias of :func:`load_model`."""
        return load_model(directory)


def load_model(directory: str | os.PathLike[str]) -> RankerModel:
    """Read a model directory, checking its format and feature-set version.

    Raises
    ------
    IncompatibleModelError
        Not a model directory, a file is missing, or the feature set recorded
        differs from this library's definition of that set.
    """
    d = Path(directory)
    meta_path = d / "metadata.json"
    if not d.is_dir():
        raise IncompatibleModelError(f"{d}: not a model directory (train one with `dwellrank train`)")
    if not meta_path.exists():
        raise IncompatibleModelError(f"{d}: no metadata.json; not a model directory written by `dwellrank train`")
    try:
        meta = json.loads(meta_path.read_text())
        fs_doc = meta["feature_set"]
        name, version, columns = fs_doc["name"], int(fs_doc["version"]), tuple(fs_doc["columns"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise IncompatibleModelError(f"{meta_path}: unreadable model metadata ({type(exc).__name__}: {exc})") from None
    if meta.get("model_format") != MODEL_FORMAT:
        raise IncompatibleModelError(f"{meta_path}: model_format {meta.get('model_format')!r}, this library reads {MODEL_FORMAT}")
    if name not in FEATURE_SETS:
        raise IncompatibleModelError(f"{meta_path}: feature set '{name}' is unknown to this library ({', '.join(FEATURE_SETS)})")
    current = FEATURE_SETS[name]
    if version != current.version or columns != current.columns:
        diff = sorted(set(columns) ^ set(current.columns))
        raise IncompatibleModelError(
            f"{meta_path}: model was trained on feature set '{name}' v{version}, this library defines v{current.version}"
            + (f" (columns differ: {diff[:6]})" if diff else "")
            + "; retrain the model"
        )
    needed = [d / "heads" / f"{h}.{ext}" for h in HEADS for ext in ("trees.txt", "lr.json")]
    needed += [d / "regressors" / f"{r}.json" for r in REGRESSORS]
    needed += [d / "profiles.parquet", d / "weights.json"]
    missing = [str(p.relative_to(d)) for p in needed if not p.exists()]
    if missing:
        raise IncompatibleModelError(f"{d}: incomplete model directory, missing {', '.join(missing[:4])}")
    try:
        heads = {h: GBDTLRHead.load(d / "heads", h) for h in HEADS}
        regs = {r: ActionRegressor.load(d / "regressors", r) for r in REGRESSORS}
        profiles = pl.read_parquet(d / "profiles.parquet")
    except (OSError, json.JSONDecodeError, KeyError, lgb.basic.LightGBMError) as exc:
        raise IncompatibleModelError(f"{d}: incomplete model directory ({type(exc).__name__}: {exc})") from None
    weights = load_weights(d / "weights.json")
    report_path = d / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return RankerModel(current, float(meta["t_skip_s"]), heads, regs, weights, profiles, meta, report)


# --------------------------------------------------------------------------- training


def load_training_tables(logs: Any) -> dict[str, pl.DataFrame | pl.LazyFrame]:
    """The four tables training reads, from a logs directory, a mapping or a SimulationResult."""
    if isinstance(logs, (str, os.PathLike)):
        return dict(scan_logs(logs, _TABLES))
    tables = getattr(logs, "tables", logs)
    if not isinstance(tables, Mapping):
        raise ConfigError(f"logs must be a logs directory, a mapping of tables or a SimulationResult, got {type(logs).__name__}")
    missing = [t for t in _TABLES if t not in tables]
    if missing:
        raise SchemaError(f"logs: missing table(s) {missing}; training needs {', '.join(_TABLES)}")
    return {t: tables[t] for t in _TABLES}


def train_ranker(
    logs: Any,
    *,
    feature_set: str = "dwell",
    t_skip_s: float = 2.5,
    seed: int = 0,
    config: TrainConfig | None = None,
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

    Returns
    -------
    RankerModel
        Call ``.save(dir)``; serve with :class:`ranking.FeedRanker`.
    """
    cfg = config or TrainConfig(feature_set=feature_set, t_skip_s=t_skip_s, seed=seed)
    fs = get_feature_set(cfg.feature_set)
    tables = load_training_tables(logs)
    frame = training_frame(tables, fs, cfg.t_skip_s, cfg.t_long_s)
    if frame.height == 0:
        raise SchemaError("logs: the impressions table has no rows; nothing to train on")
    last = int(frame["day"].max())
    first = int(frame["day"].min())
    if last - first + 1 < cfg.holdout_days + 2:
        raise ConfigError(f"logs span {last - first + 1} day(s); training needs at least holdout_days + 2 = {cfg.holdout_days + 2}")
    train = frame.filter(pl.col("day") <= last - cfg.holdout_days)
    test = frame.filter(pl.col("day") > last - cfg.holdout_days)
    X_tr, X_te = train.select(fs.columns).to_numpy(), test.select(fs.columns).to_numpy()
    rng = np.random.default_rng(cfg.seed)
    seeds = rng.spawn(len(HEADS) + len(REGRESSORS) + 1)

    heads: dict[str, GBDTLRHead] = {}
    report_heads: dict[str, Any] = {}
    for i, h in enumerate(HEADS):
        y_tr, y_te = train[h].to_numpy(), test[h].to_numpy()
        heads[h] = GBDTLRHead(cfg.head).fit(X_tr, y_tr, seeds[i])
        p_te = heads[h].predict_proba(X_te)
        if cfg.baselines:
            metrics = compare_heads(X_tr, y_tr, X_te, y_te, cfg.head, seeds[i], head=heads[h])
        else:
            metrics = {"gbdt_lr": binary_metrics(y_te, p_te, background=float(y_tr.mean()))}
        report_heads[h] = {"metrics": metrics, "calibration_bins": calibration_bins(y_te, p_te), "roc": _roc(y_te, p_te)}

    regs: dict[str, ActionRegressor] = {}
    report_regs: dict[str, Any] = {}
    # Downstream/upstream value of each action on the rows with that action; dwell on all rows.
    targets: list[tuple[str, str, Any, Any]] = [
        (f"{t}_{a}", target, train[a].to_numpy(), test[a].to_numpy())
        for a in ACTIONS
        for t, target in (("down", "downstream"), ("up", "upstream"))
    ]
    targets.append(("dwell", "dwell", slice(None), slice(None)))  # slices: views, not copies of X
    for k, (name, target, on_tr, on_te) in enumerate(targets, start=len(HEADS)):
        reg = ActionRegressor(cfg.regressor).fit(X_tr[on_tr], train[target].to_numpy()[on_tr], seeds[k])
        regs[name] = reg
        y = test[target].to_numpy()[on_te]
        report_regs[name] = {
            "n_train": reg.n_rows_,
            "n_test": int(y.size),
            "trees": reg.booster_ is not None,
            "deviance": poisson_deviance(y, reg.predict(X_te[on_te])) if y.size else None,
            "deviance_constant": poisson_deviance(y, np.full(y.size, reg.constant_)) if y.size else None,
        }

    # Every head and regression on the training rows, through the compiled forest (bit-identical
    # to each head's and regression's own predict, one vectorised pass over all trees).
    model_preds = RankerModel(fs, cfg.t_skip_s, heads, regs, None, None, {}).predict(X_tr)  # type: ignore[arg-type]
    weights = default_weights(model_preds)

    report: dict[str, Any] = {
        "feature_set": fs.to_dict(),
        "t_skip_s": cfg.t_skip_s,
        "t_long_s": cfg.t_long_s,
        "seed": cfg.seed,
        "split": {
            "train_days": [_iso(first), _iso(last - cfg.holdout_days)],
            "test_days": [_iso(last - cfg.holdout_days + 1), _iso(last)],
            "n_train": train.height,
            "n_test": test.height,
        },
        "heads": report_heads,
        "regressors": report_regs,
        "weights": weights.to_dict(),
        "metric_notes": "auc: ROC AUC; ne: log loss / entropy of the training positive rate (He et al. 2014); "
        "calibration: mean prediction / observed rate; ece: mean |pred - observed| over 10 quantile bins",
    }
    if cfg.skip_lift and fs.uses_dwell:
        base_cols = FEATURE_SETS["base"].columns
        base_head = GBDTLRHead(cfg.head).fit(train.select(base_cols).to_numpy(), train["skip"].to_numpy(), seeds[-1])
        auc_base = binary_metrics(test["skip"].to_numpy(), base_head.predict_proba(test.select(base_cols).to_numpy()))["auc"]
        auc_dwell = report_heads["skip"]["metrics"]["gbdt_lr"]["auc"]
        report["skip_dwell_lift"] = {
            "auc_base": auc_base,
            "auc_dwell": auc_dwell,
            "lift": auc_dwell - auc_base,
            "relative_lift_over_0.5": (auc_dwell - 0.5) / (auc_base - 0.5) - 1 if auc_base > 0.5 else None,
        }
    metadata = {
        "model_format": MODEL_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "feature_set": fs.to_dict(),
        "t_skip_s": cfg.t_skip_s,
        "seed": cfg.seed,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "train_config": {**asdict(cfg), "head": asdict(cfg.head), "regressor": asdict(cfg.regressor)},
        "t_long_s": cfg.t_long_s,
        "data": {"n_rows": frame.height, "n_train": train.height, "n_test": test.height, "days": [_iso(first), _iso(last)]},
        "heads": list(HEADS),
        "regressors": list(regs),
    }
    profiles = member_profiles(tables["members"])
    return RankerModel(fs, cfg.t_skip_s, heads, regs, weights, profiles, metadata, report)


def _iso(day: int) -> str:
    """ISO date of a day number (days since 1970-01-01)."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _roc(y: np.ndarray, p: np.ndarray, n_points: int = 50) -> dict[str, list[float]]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    idx = np.unique(np.linspace(0, fpr.size - 1, min(n_points, fpr.size)).astype(int))
    return {"fpr": fpr[idx].tolist(), "tpr": tpr[idx].tolist()}


def _plot_report(report: dict[str, Any], path: Path) -> None:
    """Reliability diagrams (top) and ROC curves (bottom), one column per head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = list(report["heads"])
    fig, axes = plt.subplots(2, len(heads), figsize=(3.2 * len(heads), 6.4), squeeze=False)
    for j, h in enumerate(heads):
        r = report["heads"][h]
        cb = r["calibration_bins"]
        hi = max(max(cb["mean_pred"]), max(cb["observed"])) * 1.05 or 1.0
        ax = axes[0][j]
        ax.plot([0, hi], [0, hi], color="grey", lw=0.8, ls="--")
        ax.plot(cb["mean_pred"], cb["observed"], marker="o")
        ax.set_title(f"P({h}) calibration")
        ax.set_xlabel("mean predicted")
        ax.set_ylabel("observed rate")
        ax = axes[1][j]
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.plot(r["roc"]["fpr"], r["roc"]["tpr"])
        auc = r["metrics"]["gbdt_lr"]["auc"]
        ax.set_title(f"P({h}) ROC, AUC {auc:.3f}")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
    fig.suptitle(f"held-out days {report['split']['test_days']}, feature set {report['feature_set']['name']}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
