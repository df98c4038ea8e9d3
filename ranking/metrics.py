"""Held-out metrics of binary heads: AUC, normalised entropy, calibration, and the baselines' comparison.

Normalised entropy and the calibration ratio follow He et al., "Practical
Lessons from Predicting Clicks on Ads at Facebook" (ADKDD 2014);
:func:`compare_heads` sets a GBDT+LR head against its constant, LR-only and
GBDT-only baselines.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import cast

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from ranking.heads import GBDTLRHead, HeadConfig, LogisticHead, fit_trees

__all__ = ["binary_metrics", "calibration_bins", "compare_heads", "normalized_entropy"]


def normalized_entropy(y: np.ndarray, p: np.ndarray, background: float | None = None) -> float:
    """Normalised entropy of He et al. (2014): log loss over the entropy of the background rate.

    ``background`` defaults to the empirical positive rate of ``y``; below 1
    means better than predicting that constant rate.
    """
    y = np.asarray(y, dtype=np.float64)
    rate = float(y.mean()) if background is None else float(background)
    rate = min(max(rate, 1e-12), 1 - 1e-12)
    h = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
    return float(log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[0.0, 1.0]) / h)


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Reliability diagram on quantile bins of ``p``: mean prediction vs observed rate per bin."""
    order = np.argsort(p, kind="stable")
    parts = np.array_split(order, n_bins)
    return {
        "mean_pred": [float(p[i].mean()) for i in parts if i.size],
        "observed": [float(np.asarray(y, dtype=np.float64)[i].mean()) for i in parts if i.size],
        "count": [int(i.size) for i in parts if i.size],
    }


def binary_metrics(y: np.ndarray, p: np.ndarray, background: float | None = None) -> dict[str, float]:
    """AUC, normalised entropy, calibration ratio (mean p / rate, He et al.) and ECE (10 quantile bins)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    bins = calibration_bins(y, p)
    cnt = np.asarray(bins["count"], dtype=np.float64)
    ece = float(np.sum(cnt * np.abs(np.asarray(bins["mean_pred"]) - np.asarray(bins["observed"]))) / cnt.sum())
    return {
        "auc": float(roc_auc_score(y, p)),
        "ne": normalized_entropy(y, p, background),
        "calibration": float(p.mean() / max(y.mean(), 1e-12)),
        "ece": ece,
        "rate": float(y.mean()),
        "n": int(y.size),
    }


def compare_heads(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    config: HeadConfig | None = None,
    seed: int | np.random.Generator = 0,
    head: GBDTLRHead | None = None,
    lr_standard: bool = False,
) -> dict[str, dict[str, float]]:
    """Held-out metrics of constant, LR-only, GBDT-only and GBDT+LR models.

    The constant predicts the training positive rate; LR-only (the head's LR
    without leaves: asinh + z-scored raw features), optionally
    ``lr_standard`` (LR on z-scored untransformed features) and GBDT-only are
    fitted on all training rows; GBDT+LR splits them (trees, then LR).
    A fitted ``head`` is reused instead of fitting a new one.  The background
    rate of normalised entropy is the training rate for every model.
    """
    cfg = config or HeadConfig()
    rate = float(np.mean(y_train))
    if head is None:
        head = GBDTLRHead(cfg).fit(X_train, y_train, seed)
    preds = {
        "constant": np.full(len(y_test), rate),
        "lr_only": LogisticHead(cfg).fit(X_train, y_train).predict_proba(X_test),
        "gbdt_only": cast(np.ndarray, fit_trees(X_train, y_train, cfg, seed).predict(X_test, num_threads=1)),
        "gbdt_lr": head.predict_proba(X_test),
    }
    if lr_standard:  # slow: lbfgs converges slowly on heavy-tailed untransformed counts
        preds["lr_standard"] = LogisticHead(replace(cfg, raw_transform="standard")).fit(X_train, y_train).predict_proba(X_test)
    out = {}
    for name, p in preds.items():
        out[name] = binary_metrics(y_test, p, background=rate)
    return out
