"""The torch training loop, prediction and the dynamic-intent readout.

:func:`fit_torch`: Adam, learning rate halved every ``lr_halving_epochs``, L2
decay on all parameters but the FC-D bases (a model may say which via
``param_groups``), the model's ``regularization()`` times ``beta`` added to the
cross-entropy (class-weighted with ``class_weight="balanced"``), early stopping
on validation loss with the best weights restored.  Batches group members of
similar sequence length and are cut to their longest sequence.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from dwellrank_logs.errors import DwellrankError
from engagement.config import ForecastTrainConfig
from engagement.inputs import Split

if TYPE_CHECKING:
    from engagement.digmn import DIGMN

__all__ = [
    "History",
    "class_weights",
    "dynamic_intents",
    "fit_torch",
    "predict_proba",
    "resolve_device",
    "torch_seed",
]

_LEN_STEP = 16


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


def _inputs(model: nn.Module) -> tuple[str, ...]:
    """The keys of the tensors ``model``'s forward takes, in order (its ``inputs`` attribute)."""
    return tuple(cast("tuple[str, ...]", model.inputs))


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


def class_weights(y: np.ndarray, n_classes: int, rule: str) -> Tensor | None:
    """Cross-entropy class weights of ``rule`` from the training labels ``y``: None for ``"none"``.

    ``"balanced"``: class c weighs ``n / (n_classes * n_c)`` (scikit-learn's
    rule); a class absent from ``y`` weighs 0 (it cannot be in a batch).
    """
    if rule == "none":
        return None
    if rule != "balanced":
        raise DwellrankError(f"class_weight must be 'none' or 'balanced', got {rule!r}")
    n_c = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    w = np.where(n_c > 0, n_c.sum() / (n_classes * np.maximum(n_c, 1.0)), 0.0)
    return torch.from_numpy(w.astype(np.float32))


def _loss(model: nn.Module, logits: Tensor, y: Tensor, beta: float, weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    # With weights, torch's mean is the weighted mean (sum w_y l / sum w_y): the batch loss stays on one scale.
    ce = nn.functional.cross_entropy(logits, y, weight=weight)
    regularization = getattr(model, "regularization", None)
    reg = regularization() if regularization is not None else torch.zeros((), device=logits.device)
    return ce + beta * reg, ce


def fit_torch(
    model: nn.Module,
    tensors: dict[str, Tensor],
    y: np.ndarray,
    split: Split,
    config: ForecastTrainConfig,
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
    config : ForecastTrainConfig
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
    param_groups = getattr(model, "param_groups", None)
    groups = (
        param_groups(config.weight_decay)
        if param_groups is not None
        else [{"params": list(model.parameters()), "weight_decay": config.weight_decay}]
    )
    opt = torch.optim.Adam(groups, lr=config.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=config.lr_halving_epochs, gamma=0.5)
    keys = _inputs(model)
    y_t = torch.from_numpy(y.astype(np.int64))
    n_classes = int(y.max()) + 1 if y.size else 0
    weight = class_weights(y[split.train], n_classes, config.class_weight)
    weight = weight.to(device) if weight is not None else None
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
            loss, _ = _loss(model, logits, y_t[rows].to(device), beta, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * rows.size
            n += rows.size
        sched.step()
        val = _eval_loss(model, tensors, y_t, split.val, keys, config.batch_size * 4, device, beta, weight)
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
    weight: Tensor | None = None,
) -> float:
    model.eval()
    total, mass = 0.0, 0.0
    for b in _batches(tensors["lengths"].numpy()[rows], batch_size, np.random.default_rng(0), shuffle=False):
        r = rows[b]
        _, ce = _loss(model, model(*_gather(tensors, r, keys, device)), y[r].to(device), beta, weight)
        # A batch's weighted mean times its weight mass: the sum is the weighted mean over all rows.
        m = float(r.size) if weight is None else float(weight.cpu()[y[r]].sum())
        total += float(ce) * m
        mass += m
    regularization = getattr(model, "regularization", None)
    reg = float(regularization()) if regularization is not None else 0.0
    return total / max(mass, 1e-12 if weight is not None else 1.0) + beta * reg


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
        logits = model(*_gather(tensors, rows[b], _inputs(model), dev))
        parts.append(torch.softmax(logits, dim=-1).cpu().numpy().astype(np.float64))
        order.append(b)
    if parts:
        out = np.zeros((rows.size, parts[0].shape[1]))
        out[np.concatenate(order)] = np.concatenate(parts)
    return out


@torch.no_grad()
def dynamic_intents(model: DIGMN, tensors: dict[str, torch.Tensor], rows: np.ndarray, device: torch.device) -> np.ndarray:
    """The intent LSTM's last output i~ per member, shape (len(rows), lstm_hidden)."""
    model.to(device).eval()
    out = []
    for s in range(0, rows.size, 1024):
        r = torch.from_numpy(rows[s : s + 1024])
        n = int(tensors["lengths"][r].max())
        _, h_i = model.encode(tensors["nu"][r][:, :n].to(device), tensors["ctx"][r][:, :n].to(device), tensors["lengths"][r].to(device))
        out.append(h_i.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.lstm_hidden))
