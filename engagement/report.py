"""Reports: the comparison table (paper Table 3 layout), loss curves and the intent PCA plot (Figure 8)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dwellrank_logs.io import atomic_file

__all__ = ["format_comparison_table", "pca", "plot_comparison", "plot_intent_pca", "plot_loss", "write_comparison"]


def format_comparison_table(result: dict[str, Any]) -> str:
    """A text table of mean +- std per model over seeds (``table.txt``).

    The task's metric first, then the other three metrics and the parameter
    count; a last line gives DIGMN's gain over the best baseline (a model
    whose name does not start with "DIGMN") when both were run.
    """
    metric = result["metric"]
    others = [m for m in ("macro_f1", "auroc", "accuracy", "macro_f1_argmax") if m != metric]
    width = max(26, *(len(name) for name in result["summary"]))
    head = f"{'Model':<{width}} {metric:>16} " + " ".join(f"{m:>16}" for m in others) + f" {'# params':>9}"
    lines = [f"task: {result['task']}-level, {result['n_members']} members, seeds {result['seeds']}", head, "-" * len(head)]
    for name, s in result["summary"].items():
        cells = [f"{s[m]['mean']:.3f} ± {s[m]['std']:.3f}" for m in (metric, *others)]
        n = "-" if s["n_params"] is None else f"{s['n_params'] / 1000:.1f}K"
        lines.append(f"{name:<{width}} {cells[0]:>16} " + " ".join(f"{c:>16}" for c in cells[1:]) + f" {n:>9}")
    summ = result["summary"]
    if "DIGMN" in summ:
        base = {k: v for k, v in summ.items() if not k.startswith("DIGMN")}
        if base:
            best = max(base, key=lambda k: base[k][metric]["mean"])
            gain = summ["DIGMN"][metric]["mean"] - base[best][metric]["mean"]
            lines.append(f"DIGMN vs best baseline ({best}): {gain * 100:+.2f} points {metric}")
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(history: dict[str, Any], path: str | os.PathLike[str], title: str = "DIGMN training") -> None:
    """Train and validation loss per epoch, best epoch marked; written atomically as PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
    ep = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(ep, history["train_loss"], label="train (CE + β·L_R)")
    ax.plot(ep, history["val_loss"], label="validation")
    if history.get("best_epoch"):
        ax.axvline(history["best_epoch"], color="grey", ls=":", label="best epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def pca(x: np.ndarray, n: int = 2) -> np.ndarray:
    """Projection on the first ``n`` principal components after zero-mean normalisation (Figure 8)."""
    z = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 1e-12, x.std(axis=0), 1.0)
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    return z @ vt[:n].T


def plot_intent_pca(h_i: np.ndarray, labels: np.ndarray, names: Sequence[str], path: str | os.PathLike[str]) -> None:
    """2-D PCA of dynamic intent representations, coloured by each member's most frequent intent.

    Parameters
    ----------
    h_i : ndarray, shape (N, lstm_hidden)
    labels : ndarray of int, shape (N,)
        Index into ``names``.
    """
    plt = _pyplot()
    p = pca(h_i, 2)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
    for k, name in enumerate(names):
        sel = labels == k
        if sel.any():
            ax.scatter(p[sel, 0], p[sel, 1], s=5, alpha=0.6, label=name)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("dynamic intent representation (PCA)")
    ax.legend(fontsize=6, markerscale=2)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_comparison(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Bar chart of the task's metric per model (mean +- std over seeds)."""
    plt = _pyplot()
    metric = result["metric"]
    names = list(result["summary"])
    mean = [result["summary"][n][metric]["mean"] for n in names]
    std = [result["summary"][n][metric]["std"] for n in names]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.barh(names, mean, xerr=std, color=["C1" if n == "DIGMN" else "C0" for n in names])
    lo = min(m - s for m, s in zip(mean, std, strict=True))
    ax.set_xlim(max(0.0, lo - 0.02), max(m + s for m, s in zip(mean, std, strict=True)) + 0.01)
    ax.set_xlabel(f"{metric} (test, mean ± std over {len(result['seeds'])} seeds)")
    ax.invert_yaxis()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_comparison(result: dict[str, Any], intents_dict: dict[str, Any], out: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Write ``comparison.json``, ``table.txt``, ``comparison.png``, ``intents.json`` and ``intent_pca.png`` atomically."""
    from dwellrank_logs.io import atomic_dir, write_json

    pca_input = result.get("pca_input")
    record = {k: v for k, v in result.items() if k != "pca_input"}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "comparison.json", record)
        (tmp / "table.txt").write_text(format_comparison_table(result) + "\n")
        write_json(tmp / "intents.json", intents_dict)
        plot_comparison(result, tmp / "comparison.png")
        if pca_input is not None:
            names = intents_dict.get("labels") or [f"intent {k}" for k in range(intents_dict["k"])]
            plot_intent_pca(pca_input[0], pca_input[1], names, tmp / "intent_pca.png")
