"""The doubly robust estimator's reward model: features of (request, update) rows and cross-fitted logistic models."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.protocol import HistoryTables

__all__ = ["cross_predict", "fit_reward_model", "reward_features"]


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


def fit_reward_model(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 2) -> list[Any]:
    """Cross-fitted logistic reward models, one per fold of ``groups % folds``.

    Model k is fitted on the rows outside fold k and predicts the rows in it
    (:func:`cross_predict`), so no row's prediction has seen its own reward.
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


def cross_predict(models: list[Any], x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Predicted reward of each row of ``x`` by the model of its fold (``groups % len(models)``).

    Parameters
    ----------
    models : list
        :func:`fit_reward_model`'s fitted pipelines or constants.
    x : ndarray, shape (n, n_features)
    groups : ndarray of int, shape (n,)
        The grouping the models were fitted with (member ids).

    Returns
    -------
    ndarray, shape (n,), probabilities
    """
    fold = np.asarray(groups) % len(models)
    out = np.empty(x.shape[0])
    for k, m in enumerate(models):
        rows = fold == k
        if rows.any():
            out[rows] = m if isinstance(m, float) else m.predict_proba(x[rows])[:, 1]
    return out
