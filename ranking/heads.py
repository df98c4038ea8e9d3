"""GBDT+LR heads: boosted trees as feature transformers, a logistic regression on top.

The recipe of He et al., "Practical Lessons from Predicting Clicks on Ads at
Facebook" (ADKDD 2014): LightGBM trees are learned on the raw features; each
tree's leaf index (0-based within the tree) is one-hot encoded; a logistic
regression is fitted over the raw features plus those leaf indicators.  The
trees and the LR see disjoint rows (the earlier part of the training data
fits the trees, the later part the LR), since leaf features learned on the
LR's own rows overfit it.

Scoring does not build the sparse one-hot matrix: the LR weight of "tree t
landed in leaf l" is a per-tree lookup, so it is written into a copy of the
booster as that leaf's output (``Booster.set_leaf_output``).  One raw-score
``predict`` over the folded trees then returns the whole leaf part of the
logit; the raw-feature part is a dense dot product.

One class, :class:`GBDTLRHead`, serves P(click), P(react), P(comment),
P(share) and P(skip).  :class:`LogisticHead` (LR alone) and
:func:`fit_trees` (GBDT alone) are the baselines of
:func:`ranking.metrics.compare_heads`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from dwellrank_logs.checks import check_int, is_finite_number
from dwellrank_logs.errors import ConfigError

__all__ = ["GBDTLRHead", "HeadConfig", "LogisticHead", "fit_trees", "leaf_one_hot"]


@dataclass(frozen=True)
class HeadConfig:
    """Hyper-parameters of a GBDT+LR head.

    Parameters
    ----------
    n_trees : int
        Boosting rounds (>= 1).
    num_leaves : int
        Leaves per tree (>= 2).
    learning_rate : float
        In (0, 1].
    min_child_samples : int
        Minimum rows per leaf (>= 1).
    tree_fraction : float
        Share of the (time-ordered) training rows that fit the trees; the
        rest fit the LR.  In (0, 1).
    lr_c : float
        Inverse L2 strength of the LR on the raw features (> 0).
    leaf_c : float
        Inverse L2 strength of the LR on the leaf indicators (> 0); smaller
        than ``lr_c`` because hundreds of leaf weights overfit sooner.
    raw_transform : {"standard", "asinh"}
        How the LR sees the raw features: ``asinh`` then z-scored (counts span
        orders of magnitude; asinh keeps the LR well conditioned and fast), or
        z-scored as they are.
    num_threads : int
        LightGBM threads for training (0 = OpenMP's default).  1 by default:
        on small data, and on a busy machine, OpenMP threads cost more than they save.
    """

    n_trees: int = 30
    num_leaves: int = 8
    learning_rate: float = 0.1
    min_child_samples: int = 200
    tree_fraction: float = 0.3
    lr_c: float = 1.0
    leaf_c: float = 0.02
    raw_transform: str = "asinh"
    num_threads: int = 1

    def __post_init__(self) -> None:
        check_int("n_trees", self.n_trees, 1)
        check_int("num_leaves", self.num_leaves, 2)
        check_int("min_child_samples", self.min_child_samples, 1)
        check_int("num_threads", self.num_threads, 0)
        if not (is_finite_number(self.learning_rate) and 0 < self.learning_rate <= 1):
            raise ConfigError(f"learning_rate must be in (0, 1], got {self.learning_rate!r}")
        if not (is_finite_number(self.tree_fraction) and 0 < self.tree_fraction < 1):
            raise ConfigError(f"tree_fraction must be in (0, 1), got {self.tree_fraction!r}")
        for name in ("lr_c", "leaf_c"):
            v = getattr(self, name)
            if not (is_finite_number(v) and v > 0):
                raise ConfigError(f"{name} must be > 0, got {v!r}")
        if self.raw_transform not in _TRANSFORMS:
            raise ConfigError(f"raw_transform must be one of {', '.join(_TRANSFORMS)}, got {self.raw_transform!r}")

    @property
    def leaf_scale(self) -> float:
        """Leaf indicators are scaled by this so that one L2 penalty acts as ``leaf_c`` on them."""
        return math.sqrt(self.leaf_c / self.lr_c)


_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"standard": lambda X: X, "asinh": np.arcsinh}


def _seed(seed: int | np.random.Generator) -> int:
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**31 - 1))
    return int(seed)


def fit_trees(
    X: np.ndarray,
    y: np.ndarray,
    config: HeadConfig,
    seed: int | np.random.Generator,
    objective: str = "binary",
    weight: np.ndarray | None = None,
) -> lgb.Booster:
    """LightGBM trees on raw features.

    Parameters
    ----------
    X : ndarray, shape (n_rows, n_features), float
    y : ndarray, shape (n_rows,)
        0/1 labels for ``binary``; non-negative targets for ``poisson``/``tweedie``.
    objective : str
        LightGBM objective.
    weight : ndarray, shape (n_rows,), optional
        Row weights (LightGBM's ``Dataset(weight=)``: they scale each row's gradient and hessian).
    """
    params = {
        "objective": objective,
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "min_child_samples": config.min_child_samples,
        "seed": _seed(seed),
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
        "num_threads": config.num_threads,
    }
    w = None if weight is None else np.asarray(weight, dtype=np.float64)
    data = lgb.Dataset(np.ascontiguousarray(X, dtype=np.float64), label=np.asarray(y, dtype=np.float64), weight=w, free_raw_data=True)
    return lgb.train(params, data, num_boost_round=config.n_trees)


def _leaves_per_tree(booster: lgb.Booster) -> np.ndarray:
    return np.array([t["num_leaves"] for t in booster.dump_model()["tree_info"]], dtype=np.int64)


def leaf_one_hot(leaves: np.ndarray, leaves_per_tree: np.ndarray) -> sp.csr_matrix:
    """One-hot encode leaf indices.

    Parameters
    ----------
    leaves : ndarray, shape (n_rows, n_trees), int
        ``Booster.predict(pred_leaf=True)``: the leaf of each tree, 0-based *per tree*.
    leaves_per_tree : ndarray, shape (n_trees,)

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_rows, leaves_per_tree.sum())
        Column ``offset[t] + leaves[:, t]`` is 1, where ``offset`` is the
        exclusive cumulative sum of ``leaves_per_tree``.
    """
    n, t = leaves.shape
    offset = np.r_[0, np.cumsum(leaves_per_tree)[:-1]]
    cols = (leaves + offset[None, :]).ravel()
    indptr = np.arange(0, n * t + 1, t)
    return sp.csr_matrix((np.ones(n * t), cols, indptr), shape=(n, int(leaves_per_tree.sum())))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class _Standardize:
    """An optional fixed transform (identity or asinh), then z-scores."""

    def __init__(self, transform: str = "standard") -> None:
        self.kind = transform
        self.f = _TRANSFORMS[transform]

    def fit(self, X: np.ndarray, weight: np.ndarray | None = None) -> _Standardize:
        Z = self.f(X)
        if weight is None:
            self.mean_ = Z.mean(axis=0)
            sd = Z.std(axis=0)
        else:  # the weighted rows' moments: a fit with integer weights equals one on rows repeated that often
            self.mean_ = np.average(Z, axis=0, weights=weight)
            sd = np.sqrt(np.average((Z - self.mean_) ** 2, axis=0, weights=weight))
        self.scale_ = np.where(sd > 1e-12, sd, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (self.f(X) - self.mean_) / self.scale_


class LogisticHead:
    """Logistic regression on the (asinh, standardised) raw features: the LR-only baseline."""

    def __init__(self, config: HeadConfig | None = None) -> None:
        self.config = config or HeadConfig()

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticHead:
        self.scaler_ = _Standardize(self.config.raw_transform).fit(X)
        with threadpool_limits(1):
            self.lr_ = LogisticRegression(C=self.config.lr_c, max_iter=500).fit(self.scaler_.transform(X), y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(label), shape (n_rows,)."""
        return self.lr_.predict_proba(self.scaler_.transform(X))[:, 1]


class GBDTLRHead:
    """P(label) from LightGBM leaves + raw features through a logistic regression.

    Fitted attributes
    -----------------
    booster_ : lightgbm.Booster
        The trees, fitted on the first ``tree_fraction`` of the rows.
    leaves_per_tree_ : ndarray, shape (n_trees,)
    leaf_weights_ : list of ndarray
        LR weight of each leaf of each tree (tree t: shape (leaves_per_tree_[t],)).
    raw_coef_ : ndarray, shape (n_features,)
        LR weights of the (transformed) raw features, z-scoring folded in.
    intercept_ : float
        LR intercept with the standardisation folded in.
    folded_ : lightgbm.Booster
        Copy of ``booster_`` whose leaf outputs are ``leaf_weights_``.
    n_tree_rows_, n_lr_rows_ : int
        Rows used by the trees and by the LR.
    weighting_ : dict, only when fitted with ``sample_weight``
        The weight sums of the tree rows and of the LR rows (saved in ``<name>.lr.json``).
    """

    def __init__(self, config: HeadConfig | None = None) -> None:
        self.config = config or HeadConfig()

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        seed: int | np.random.Generator = 0,
        label: str = "y",
        sample_weight: np.ndarray | None = None,
    ) -> GBDTLRHead:
        """Fit trees on the first rows and the LR on the rest.

        Parameters
        ----------
        X : ndarray, shape (n_rows, n_features), float, rows in time order
        y : ndarray, shape (n_rows,), bool or 0/1
        seed : int or numpy.random.Generator
        label : str
            The label's name (a head of the training frame), for error messages.
        sample_weight : ndarray, shape (n_rows,), float >= 0, optional
            Row weights, passed to LightGBM (``weight=``) for the tree rows and
            to the LR (``sample_weight``, and the weighted moments of its
            standardisation) for the others (:mod:`ranking.weighting`).  The
            split stays by rows.  None: every row weighs 1 (the unweighted fit).
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.asarray(y).astype(np.float64)
        n = X.shape[0]
        cut = round(n * self.config.tree_fraction)
        w = None if sample_weight is None else _check_weights(sample_weight, n, cut, label)
        for part, rows in (("trees", y[:cut]), ("logistic regression", y[cut:])):
            if rows.size == 0 or rows.min() == rows.max():
                pos = int(rows.sum()) if rows.size else 0
                raise ConfigError(
                    f"label {label!r}: the {part} part of the training rows ({rows.size:,} rows) needs both classes, "
                    f"got {pos:,} positive(s) and {rows.size - pos:,} negative(s) (train on more members or days)"
                )
        self.booster_ = fit_trees(X[:cut], y[:cut], self.config, seed, weight=None if w is None else w[:cut])
        self.leaves_per_tree_ = _leaves_per_tree(self.booster_)
        Xl = X[cut:]
        w_lr = None if w is None else w[cut:]
        self.scaler_ = _Standardize(self.config.raw_transform).fit(Xl, w_lr)
        design = sp.hstack([sp.csr_matrix(self.scaler_.transform(Xl)), self._one_hot(Xl)], format="csr")
        with threadpool_limits(1):  # threaded BLAS in L-BFGS-B's small vector ops costs more than it saves
            self.lr_ = LogisticRegression(C=self.config.lr_c, max_iter=500).fit(design, y[cut:], sample_weight=w_lr)
        self.n_tree_rows_, self.n_lr_rows_ = cut, n - cut
        if w is not None:
            self.weighting_ = {"weight_sum_trees": float(w[:cut].sum()), "weight_sum_lr": float(w[cut:].sum())}
        self._fold()
        return self

    def recalibrate(self, shift: float, record: dict[str, Any]) -> GBDTLRHead:
        """Add ``shift`` to the logit (the recalibration of a head fitted on a sample).

        With keep rates ``r_pos``, ``r_neg`` the full data's P(label) takes
        ``shift = log(r_neg / r_pos)`` (:mod:`ranking.sampling`).  Folded into
        ``intercept_``, so every scoring path applies it; ``record`` (the rates)
        is saved beside it.
        """
        self.intercept_ += float(shift)
        self.sampling_ = {**record, "logit_shift": float(shift)}
        return self

    def _one_hot(self, X: np.ndarray) -> sp.csr_matrix:
        # LightGBM returns an ndarray for dense input (its annotation also allows sparse results).
        leaves = cast(np.ndarray, self.booster_.predict(X, pred_leaf=True, num_threads=1)).astype(np.int64).reshape(X.shape[0], -1)
        return leaf_one_hot(leaves, self.leaves_per_tree_) * self.config.leaf_scale

    def _fold(self) -> None:
        p = self.scaler_.mean_.size
        coef = self.lr_.coef_[0]
        w_raw = coef[:p] / self.scaler_.scale_
        self.raw_coef_ = w_raw
        self.intercept_ = float(self.lr_.intercept_[0] - np.dot(w_raw, self.scaler_.mean_))
        bounds = np.r_[0, np.cumsum(self.leaves_per_tree_)]
        leaf = coef[p:] * self.config.leaf_scale
        self.leaf_weights_ = [leaf[bounds[t] : bounds[t + 1]] for t in range(self.leaves_per_tree_.size)]
        self.folded_ = _fold_booster(self.booster_, self.leaf_weights_)

    def decision_function(
        self, X: np.ndarray, num_threads: int = 1, transformed: np.ndarray | None = None, leaf_part: np.ndarray | None = None
    ) -> np.ndarray:
        """Logit of P(label), shape (n_rows,), through the folded trees (no sparse matrix).

        ``transformed`` may pass ``raw_transform`` already applied to ``X``
        (several heads share it; asinh of a large matrix is not free).
        ``leaf_part`` may pass the folded trees' raw score of ``X``, computed
        elsewhere (:class:`ranking.forest.CompiledForest`).
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        if leaf_part is None:
            leaf_part = cast(np.ndarray, self.folded_.predict(X, raw_score=True, num_threads=num_threads))
        Z = self.scaler_.f(X) if transformed is None else transformed
        return leaf_part + Z @ self.raw_coef_ + self.intercept_

    def predict_proba(
        self, X: np.ndarray, num_threads: int = 1, transformed: np.ndarray | None = None, leaf_part: np.ndarray | None = None
    ) -> np.ndarray:
        """P(label), shape (n_rows,)."""
        return _sigmoid(self.decision_function(X, num_threads, transformed, leaf_part))

    def predict_proba_one_hot(self, X: np.ndarray) -> np.ndarray:
        """P(label) the textbook way: leaf indices, sparse one-hot, LR.  Reference for the folded path."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        design = sp.hstack([sp.csr_matrix(self.scaler_.transform(X)), self._one_hot(X)], format="csr")
        sampling = getattr(self, "sampling_", None)
        if sampling:  # the recalibration folded into intercept_, applied here to the LR's own logit
            return _sigmoid(self.lr_.decision_function(design) + sampling["logit_shift"])
        return self.lr_.predict_proba(design)[:, 1]

    # ---------------------------------------------------------------- persistence

    def save(self, directory: Path, name: str) -> None:
        """Write ``<name>.trees.txt`` (LightGBM model) and ``<name>.lr.json`` (LR in raw units)."""
        self.booster_.save_model(str(directory / f"{name}.trees.txt"))
        doc: dict[str, Any] = {
            "config": asdict(self.config),
            "intercept": self.intercept_,
            "raw_coef": self.raw_coef_.tolist(),
            "leaf_weights": [w.tolist() for w in self.leaf_weights_],
            "scaler_mean": self.scaler_.mean_.tolist(),
            "scaler_scale": self.scaler_.scale_.tolist(),
            "lr_coef": self.lr_.coef_[0].tolist(),
            "lr_intercept": float(self.lr_.intercept_[0]),
            "n_tree_rows": self.n_tree_rows_,
            "n_lr_rows": self.n_lr_rows_,
        }
        if getattr(self, "sampling_", None):  # only sampled heads carry it: unsampled files stay as they were
            doc["sampling"] = self.sampling_
        if getattr(self, "weighting_", None):  # likewise only weighted heads
            doc["weighting"] = self.weighting_
        (directory / f"{name}.lr.json").write_text(json.dumps(doc))

    @classmethod
    def load(cls, directory: Path, name: str) -> GBDTLRHead:
        """Read what :meth:`save` wrote."""
        doc = json.loads((directory / f"{name}.lr.json").read_text())
        head = cls(HeadConfig(**doc["config"]))
        head.booster_ = lgb.Booster(model_file=str(directory / f"{name}.trees.txt"))
        head.leaves_per_tree_ = _leaves_per_tree(head.booster_)
        head.intercept_ = float(doc["intercept"])
        head.raw_coef_ = np.asarray(doc["raw_coef"], dtype=np.float64)
        head.leaf_weights_ = [np.asarray(w, dtype=np.float64) for w in doc["leaf_weights"]]
        head.scaler_ = _Standardize(head.config.raw_transform)
        head.scaler_.mean_ = np.asarray(doc["scaler_mean"])
        head.scaler_.scale_ = np.asarray(doc["scaler_scale"])
        head.lr_ = LogisticRegression()
        head.lr_.coef_ = np.asarray([doc["lr_coef"]])
        head.lr_.intercept_ = np.asarray([doc["lr_intercept"]])
        head.lr_.classes_ = np.array([0.0, 1.0])
        head.n_tree_rows_, head.n_lr_rows_ = int(doc["n_tree_rows"]), int(doc["n_lr_rows"])
        if "sampling" in doc:
            head.sampling_ = doc["sampling"]
        if "weighting" in doc:  # a record of the fit; scoring does not depend on it
            head.weighting_ = doc["weighting"]
        head.folded_ = _fold_booster(head.booster_, head.leaf_weights_)
        return head


def _check_weights(sample_weight: np.ndarray, n: int, cut: int, label: str) -> np.ndarray:
    """``sample_weight`` as float64, refused unless one finite weight >= 0 per row and both parts weigh > 0."""
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ConfigError(f"label {label!r}: sample_weight must have one weight per row, shape ({n},), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ConfigError(
            f"label {label!r}: sample_weight must be finite and >= 0, got min {np.nanmin(w)!r} and {int((~np.isfinite(w)).sum())} non-finite"
        )
    for part, rows in (("trees", w[:cut]), ("logistic regression", w[cut:])):
        if rows.sum() <= 0:
            raise ConfigError(f"label {label!r}: sample_weight of the {part} part of the training rows must sum to > 0, got {rows.sum()!r}")
    return w


def _fold_booster(booster: lgb.Booster, leaf_weights: list[np.ndarray]) -> lgb.Booster:
    """A copy of ``booster`` whose leaf ``l`` of tree ``t`` outputs ``leaf_weights[t][l]``."""
    folded = lgb.Booster(model_str=booster.model_to_string())
    for t, w in enumerate(leaf_weights):
        for leaf, value in enumerate(w):  # one call per leaf: a few hundred at load time, not per row
            folded.set_leaf_output(t, leaf, float(value))
    return folded
