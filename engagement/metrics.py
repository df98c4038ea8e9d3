"""The decision rule and the paper's metrics: Macro-F1 (day-level) and AUROC (session-level).

* :func:`fit_class_offsets`: additive log-probability offsets fitted on the
  validation members to maximise Macro-F1, applied unchanged to the test members.
* :func:`decide`: the decision rule ``argmax(log p + offsets)``.
* :func:`evaluate`: Macro-F1 and accuracy of the rule, Macro-F1 of the argmax, AUROC.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from engagement.config import check_task

__all__ = ["decide", "evaluate", "fit_class_offsets", "primary_metric"]


def primary_metric(task: str) -> str:
    """The paper's metric: Macro-F1 for the day-level task, AUROC for the session-level task."""
    return "macro_f1" if check_task(task) == "day" else "auroc"


def _log_proba(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(proba, 1e-12, None))


def decide(proba: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Class indices by the decision rule ``argmax(log p + offsets)``; the argmax without offsets."""
    return proba.argmax(axis=1) if offsets is None else (_log_proba(proba) + np.asarray(offsets)).argmax(axis=1)


def fit_class_offsets(y: np.ndarray, proba: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """Additive log-probability offsets that maximise Macro-F1 on held-out (validation) predictions.

    With imbalanced classes the argmax of a calibrated model rarely predicts a
    minority class, and Macro-F1 then swings with whether a fit happens to
    cross the argmax line.  The decision rule ``argmax(log p + b)`` with
    ``b_0 = 0`` and each other ``b_j`` on ``grid`` (default -2..2 in steps of
    0.1) is fitted on the validation members and applied unchanged to the
    test members, for every model alike.  Among equally good offsets the one
    closest to zero (the argmax) wins.

    Parameters
    ----------
    y : ndarray of int, shape (N,)
    proba : ndarray, shape (N, n_classes)

    Returns
    -------
    ndarray, shape (n_classes,)
    """
    g = np.round(np.linspace(-2.0, 2.0, 41), 10) if grid is None else np.asarray(grid, dtype=np.float64)
    k = proba.shape[1]
    mesh = np.stack(np.meshgrid(*([g] * (k - 1)), indexing="ij"), axis=-1).reshape(-1, k - 1)
    offsets = np.column_stack([np.zeros(mesh.shape[0]), mesh])  # (G, K)
    logp = _log_proba(proba)
    onehot_y = np.eye(k, dtype=bool)[np.asarray(y)]  # (N, K)
    n_true = onehot_y.sum(axis=0)
    f1 = np.zeros(offsets.shape[0])
    # Chunks of the grid keep memory at about 2M cells whatever the validation size.
    step = max(1, 2_000_000 // max(logp.shape[0] * k, 1))
    for a in range(0, offsets.shape[0], step):
        pred = (logp[None, :, :] + offsets[a : a + step, None, :]).argmax(axis=2).astype(np.int8)  # (g, N)
        for j in range(k):
            p_j = pred == j
            tp = (p_j & onehot_y[None, :, j]).sum(axis=1)
            denom = p_j.sum(axis=1) + n_true[j]
            f1[a : a + step] += np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)
    f1 /= k
    # Best F1 first, then the smallest total offset, then grid order.
    best = np.lexsort((np.arange(f1.size), np.abs(offsets).sum(axis=1), -np.round(f1, 12)))[0]
    return offsets[best]


def evaluate(task: str, y: np.ndarray, proba: np.ndarray, offsets: np.ndarray | None = None) -> dict[str, float]:
    """Macro-F1 and accuracy of the decision rule, Macro-F1 of the argmax, and AUROC.

    Parameters
    ----------
    task : {"day", "session"}
    y : ndarray of int, shape (N,)
        Class indices.
    proba : ndarray, shape (N, n_classes)
    offsets : ndarray, shape (n_classes,), optional
        Decision rule ``argmax(log p + offsets)`` (:func:`fit_class_offsets` on
        the validation split); default the argmax.

    Returns
    -------
    dict
        ``macro_f1`` and ``accuracy`` (decision rule), ``macro_f1_argmax``,
        ``auroc`` (binary; one-vs-rest macro for 3 classes; threshold-free).
        Macro-F1 averages over all ``n_classes`` classes; a class absent from
        both ``y`` and the predictions scores 0.
    """
    check_task(task)
    argmax = decide(proba)
    pred = decide(proba, offsets)
    labels = list(range(proba.shape[1]))
    out = {
        "macro_f1": float(f1_score(y, pred, average="macro", labels=labels, zero_division=0)),
        "accuracy": float((pred == y).mean()),
        "macro_f1_argmax": float(f1_score(y, argmax, average="macro", labels=labels, zero_division=0)),
    }
    try:
        if proba.shape[1] == 2:
            out["auroc"] = float(roc_auc_score(y, proba[:, 1]))
        else:
            out["auroc"] = float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels))
    except ValueError:  # a single class in y
        out["auroc"] = float("nan")
    return out
