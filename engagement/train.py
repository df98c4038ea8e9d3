"""Splitting, scaling, the torch training loop and the metrics.

* :func:`split_members`: 80/10/10 by member from one Generator.
* :class:`Scaler`: feature standardisation fitted on the training split only.
* :func:`fit_torch`: Adam, learning rate halved every ``lr_halving_epochs``,
  L2 decay on all parameters but the FC-D bases (a model may say which via
  ``param_groups``), the model's ``regularization()`` times ``beta`` added to
  the cross-entropy, early stopping on validation loss with the best weights
  restored.  Batches group members of similar sequence length and are cut
  to their longest sequence.
* :func:`evaluate`: Macro-F1 (day-level) and AUROC (session-level).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score, roc_auc_score
from torch import Tensor, nn

from dwellrank_logs.errors import DwellrankError
from engagement.config import TrainConfig, check_task
from engagement.sessions import EngagementData

__all__ = [
    "MIN_MEMBERS",
    "History",
    "Scaler",
    "Split",
    "decide",
    "dynamic_intents",
    "evaluate",
    "fit_class_offsets",
    "fit_torch",
    "make_tensors",
    "predict_proba",
    "primary_metric",
    "resolve_device",
    "split_members",
    "torch_seed",
]

#: Fewest members for an 80/10/10 split with at least 2 members in validation and test.
MIN_MEMBERS = 20
_LEN_STEP = 16


@dataclass(frozen=True)
class Split:
    """Row positions of the train, validation and test members."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_members(n: int, rng: np.random.Generator, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Split:
    """Random split of ``n`` members into train / validation / test.

    Raises
    ------
    DwellrankError
        Fewer than :data:`MIN_MEMBERS` members.
    """
    if n < MIN_MEMBERS:
        raise DwellrankError(
            f"the 80/10/10 split needs at least {MIN_MEMBERS} members that pass the filter, got {n} "
            f"(use longer logs, more members or a lower min_history_sessions)"
        )
    perm = rng.permutation(n)
    n_tr = int(round(fractions[0] * n))
    n_va = int(round(fractions[1] * n))
    return Split(train=np.sort(perm[:n_tr]), val=np.sort(perm[n_tr : n_tr + n_va]), test=np.sort(perm[n_tr + n_va :]))


@dataclass
class Scaler:
    """Standardisation of M, D, context and log1p(activity), fitted on training members.

    Attributes hold per-column means and standard deviations (std 1 for constant columns).
    """

    mean: dict[str, np.ndarray] = field(default_factory=dict)
    std: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fit(cls, data: EngagementData) -> Scaler:
        s = cls()
        valid = np.arange(data.ctx.shape[1])[None, :] < data.lengths[:, None]  # (N, T)
        for key, arr in (
            ("macro", data.macro),
            ("delivery", data.delivery),
            ("ctx", data.ctx[valid]),
            ("activity", np.log1p(data.activity).reshape(-1, data.activity.shape[-1])),
        ):
            m, sd = arr.mean(axis=0), arr.std(axis=0)
            s.mean[key], s.std[key] = m.astype(np.float32), np.where(sd > 1e-8, sd, 1.0).astype(np.float32)
        return s

    def to_dict(self) -> dict[str, Any]:
        return {"mean": {k: v.tolist() for k, v in self.mean.items()}, "std": {k: v.tolist() for k, v in self.std.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        return cls(
            mean={k: np.asarray(v, dtype=np.float32) for k, v in d["mean"].items()},
            std={k: np.asarray(v, dtype=np.float32) for k, v in d["std"].items()},
        )


def make_tensors(data: EngagementData, scaler: Scaler) -> dict[str, Tensor]:
    """Scaled model inputs as CPU tensors (padding stays zero).

    Returns
    -------
    dict with ``nu`` (N, T, 10), ``ctx`` (N, T, C), ``lengths`` (N,) int64,
    ``macro`` (N, F), ``delivery`` (N, G), ``activity`` (N, days, 10).
    """
    valid = (np.arange(data.ctx.shape[1])[None, :] < data.lengths[:, None])[..., None]  # (N, T, 1)
    ctx = np.where(valid, (data.ctx - scaler.mean["ctx"]) / scaler.std["ctx"], 0.0).astype(np.float32)
    act = (np.log1p(data.activity) - scaler.mean["activity"]) / scaler.std["activity"]
    return {
        "nu": torch.from_numpy(np.ascontiguousarray(data.nu, dtype=np.float32)),
        "ctx": torch.from_numpy(ctx),
        "lengths": torch.from_numpy(data.lengths.astype(np.int64)),
        "macro": torch.from_numpy(((data.macro - scaler.mean["macro"]) / scaler.std["macro"]).astype(np.float32)),
        "delivery": torch.from_numpy(((data.delivery - scaler.mean["delivery"]) / scaler.std["delivery"]).astype(np.float32)),
        "activity": torch.from_numpy(act.astype(np.float32)),
    }


@dataclass
class History:
    """Per-epoch training record."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    epoch_s: list[float] = field(default_factory=list)
    best_epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"train_loss": self.train_loss, "val_loss": self.val_loss, "epoch_s": self.epoch_s, "best_epoch": self.best_epoch}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DwellrankError(f"device {name!r} requested but torch sees no CUDA device (use --device cpu or auto)")
    return torch.device(name)


def torch_seed(rng: np.random.Generator) -> int:
    """Seed torch from the Generator (one draw); returns the seed used."""
    seed = int(rng.integers(0, 2**31 - 1))
    torch.manual_seed(seed)
    return seed


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, shuffle: bool) -> list[np.ndarray]:
    """Index batches; members of similar length share a batch (chunks of 50 batches sorted by length)."""
    idx = rng.permutation(lengths.size) if shuffle else np.arange(lengths.size)
    chunk = batch_size * 50
    out = []
    for s in range(0, idx.size, chunk):
        part = idx[s : s + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out += [part[i : i + batch_size] for i in range(0, part.size, batch_size)]
    if shuffle:
        out = [out[i] for i in rng.permutation(len(out))]
    return out


def _gather(tensors: dict[str, Tensor], rows: np.ndarray, keys: tuple[str, ...], device: torch.device) -> list[Tensor]:
    r = torch.from_numpy(rows)
    out = []
    cut = None
    if "lengths" in keys:
        # Cut padding to the batch's longest sequence, rounded up to a multiple of 16: few distinct shapes keep
        # torch's per-shape kernel setup (seconds on CPU for each new LSTM length) from dominating the first epoch.
        full = tensors["nu"].shape[1]
        cut = min(full, -(-int(tensors["lengths"][r].max()) // _LEN_STEP) * _LEN_STEP)
    for k in keys:
        t = tensors[k][r]
        if cut is not None and k in ("nu", "ctx"):
            t = t[:, :cut]
        out.append(t.to(device, non_blocking=True))
    return out


def _loss(model: nn.Module, logits: Tensor, y: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    ce = nn.functional.cross_entropy(logits, y)
    reg = model.regularization() if hasattr(model, "regularization") else torch.zeros((), device=logits.device)
    return ce + beta * reg, ce


def fit_torch(
    model: nn.Module,
    tensors: dict[str, Tensor],
    y: np.ndarray,
    split: Split,
    config: TrainConfig,
    rng: np.random.Generator,
    beta: float = 0.0,
    progress: Callable[[int, float, float], None] | None = None,
) -> History:
    """Train ``model`` on ``split.train`` with early stopping on ``split.val``.

    Parameters
    ----------
    model : torch.nn.Module
        Has ``inputs`` (keys of ``tensors`` its forward takes, in order); may
        have ``regularization()`` and ``param_groups(weight_decay)``.
    tensors : dict of str to Tensor
        From :func:`make_tensors`, all members.
    y : ndarray of int64, shape (N,)
        Class indices.
    split : Split
    config : TrainConfig
    rng : numpy.random.Generator
        Shuffles batches.
    beta : float
        Weight of ``model.regularization()`` (eq. 11).
    progress : callable, optional
        Called after each epoch with (epoch, train loss, validation loss).

    Returns
    -------
    History
        The model is left holding the weights of the best validation epoch.
    """
    device = resolve_device(config.device)
    model.to(device)
    groups = (
        model.param_groups(config.weight_decay)
        if hasattr(model, "param_groups")
        else [{"params": list(model.parameters()), "weight_decay": config.weight_decay}]
    )
    opt = torch.optim.Adam(groups, lr=config.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=config.lr_halving_epochs, gamma=0.5)
    keys = tuple(model.inputs)  # type: ignore[arg-type]
    y_t = torch.from_numpy(y.astype(np.int64))
    lengths = tensors["lengths"].numpy()
    hist = History()
    best, best_state, bad = np.inf, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, config.max_epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, n = 0.0, 0
        for b in _batches(lengths[split.train], config.batch_size, rng, shuffle=True):
            rows = split.train[b]
            logits = model(*_gather(tensors, rows, keys, device))
            loss, _ = _loss(model, logits, y_t[rows].to(device), beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * rows.size
            n += rows.size
        sched.step()
        val = _eval_loss(model, tensors, y_t, split.val, keys, config.batch_size * 4, device, beta)
        hist.train_loss.append(total / max(n, 1))
        hist.val_loss.append(val)
        hist.epoch_s.append(time.perf_counter() - t0)
        if progress is not None:
            progress(epoch, hist.train_loss[-1], val)
        if val < best - 1e-5:
            best, best_state, bad, hist.best_epoch = val, copy.deepcopy(model.state_dict()), 0, epoch
        else:
            bad += 1
            if bad >= config.patience:
                break
    model.load_state_dict(best_state)
    return hist


@torch.no_grad()
def _eval_loss(
    model: nn.Module,
    tensors: dict[str, Tensor],
    y: Tensor,
    rows: np.ndarray,
    keys: tuple[str, ...],
    batch_size: int,
    device: torch.device,
    beta: float,
) -> float:
    model.eval()
    total = 0.0
    for b in _batches(tensors["lengths"].numpy()[rows], batch_size, np.random.default_rng(0), shuffle=False):
        r = rows[b]
        _, ce = _loss(model, model(*_gather(tensors, r, keys, device)), y[r].to(device), beta)
        total += float(ce) * r.size
    reg = float(model.regularization()) if hasattr(model, "regularization") else 0.0
    return total / max(rows.size, 1) + beta * reg


@torch.no_grad()
def predict_proba(
    model: nn.Module, tensors: dict[str, Tensor], rows: np.ndarray, batch_size: int = 1024, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Class probabilities, shape (len(rows), n_classes), in ``rows`` order."""
    dev = resolve_device(device) if isinstance(device, str) else device
    model.to(dev).eval()
    out = np.zeros((rows.size, 0), dtype=np.float64)
    parts, order = [], []
    for b in _batches(tensors["lengths"].numpy()[rows], batch_size, np.random.default_rng(0), shuffle=False):
        logits = model(*_gather(tensors, rows[b], tuple(model.inputs), dev))  # type: ignore[arg-type]
        parts.append(torch.softmax(logits, dim=-1).cpu().numpy().astype(np.float64))
        order.append(b)
    if parts:
        out = np.zeros((rows.size, parts[0].shape[1]))
        out[np.concatenate(order)] = np.concatenate(parts)
    return out


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


@torch.no_grad()
def dynamic_intents(model: nn.Module, tensors: dict[str, torch.Tensor], rows: np.ndarray, device: torch.device) -> np.ndarray:
    """The intent LSTM's last output i~ per member, shape (len(rows), lstm_hidden)."""
    model.to(device).eval()
    out = []
    for s in range(0, rows.size, 1024):
        r = torch.from_numpy(rows[s : s + 1024])
        n = int(tensors["lengths"][r].max())
        _, h_i = model.encode(tensors["nu"][r][:, :n].to(device), tensors["ctx"][r][:, :n].to(device), tensors["lengths"][r].to(device))
        out.append(h_i.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.lstm_hidden))
