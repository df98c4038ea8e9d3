"""The training report's curves: held-out ROC points and the report figure (``report.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_report", "roc_points"]


def roc_points(y: np.ndarray, p: np.ndarray, n_points: int = 50) -> dict[str, list[float]]:
    """At most ``n_points`` points of the ROC curve of predictions ``p`` for labels ``y``.

    Parameters
    ----------
    y : ndarray, shape (n_rows,), bool or 0/1
    p : ndarray, shape (n_rows,)
    n_points : int

    Returns
    -------
    dict
        ``fpr`` and ``tpr``: lists of equal length, from (0, 0) to (1, 1).
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    idx = np.unique(np.linspace(0, fpr.size - 1, min(n_points, fpr.size)).astype(int))
    return {"fpr": fpr[idx].tolist(), "tpr": tpr[idx].tolist()}


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Reliability diagrams (top) and ROC curves (bottom), one column per head, written to ``path`` (PNG).

    ``report`` is the report of :func:`ranking.train.train_ranker` (``heads``, ``split``, ``feature_set``).
    """
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
