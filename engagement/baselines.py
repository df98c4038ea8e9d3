"""Baselines of the paper's section 6.1.3.

Feature-based (scikit-learn / LightGBM on ``[M, D]``): logistic regression
and a GBDT (LightGBM in place of XGBoost).  Torch models share DIGMN's input
convention (a dict of tensors; each model lists the keys it reads in
``inputs``): an MLP {64, 32} on ``[M, D]``; the Activity LSTM (two layers
over the 14 x 10 daily event counts, its last output with D into an MLP
{64, 32}); the Temporal GCN-LSTM (:class:`engagement.gcn.TemporalGCNLSTM`
over the daily 10 x 10 action graphs, its last output with D into an MLP
{64, 32}); and Deep Multi-channel (M, D, the activity LSTM and the Temporal
GCN-LSTM into an MLP {64, 32}; ``gcn=False`` leaves the graph channel out,
the ablation "Deep Multi-channel (no GCN)").
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from engagement.gcn import TemporalGCNLSTM

if TYPE_CHECKING:
    import lightgbm as lgb
    from sklearn.linear_model import LogisticRegression

__all__ = [
    "MLP",
    "ActivityLSTM",
    "DeepMultiChannel",
    "GCNLSTMBaseline",
    "fit_lightgbm",
    "fit_logistic",
    "mlp_head",
]


def mlp_head(n_in: int, hidden: tuple[int, ...], n_out: int) -> nn.Sequential:
    """Linear-ReLU stack ``n_in -> hidden... -> n_out`` (no activation on the output)."""
    layers: list[nn.Module] = []
    widths = [n_in, *hidden]
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], n_out))
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """MLP {64, 32} on macroscopic features and the latest delivery."""

    inputs = ("macro", "delivery")

    def __init__(self, n_macro: int, n_delivery: int, n_classes: int, hidden: tuple[int, ...] = (64, 32)) -> None:
        super().__init__()
        self.head = mlp_head(n_macro + n_delivery, hidden, n_classes)

    def forward(self, macro: Tensor, delivery: Tensor) -> Tensor:
        """Logits (B, n_classes) from M (B, F) and D (B, G)."""
        return self.head(torch.cat([macro, delivery], dim=-1))


class ActivityLSTM(nn.Module):
    """Two-layer LSTM over daily event counts; last output and D into an MLP {64, 32}."""

    inputs = ("activity", "delivery")

    def __init__(self, n_events: int, n_delivery: int, n_classes: int, lstm_hidden: int = 32, hidden: tuple[int, ...] = (64, 32)) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_events, lstm_hidden, num_layers=2, batch_first=True)
        self.head = mlp_head(lstm_hidden + n_delivery, hidden, n_classes)

    def forward(self, activity: Tensor, delivery: Tensor) -> Tensor:
        """Logits (B, n_classes) from A (B, days, V) and D (B, G)."""
        out, _ = self.lstm(activity)  # (B, days, H)
        return self.head(torch.cat([out[:, -1], delivery], dim=-1))


class GCNLSTMBaseline(nn.Module):
    """The Temporal GCN-LSTM baseline: the graph channel's last output and D into an MLP {64, 32}."""

    inputs = ("transitions", "delivery")

    def __init__(self, n_events: int, n_delivery: int, n_classes: int, lstm_hidden: int = 32, hidden: tuple[int, ...] = (64, 32)) -> None:
        super().__init__()
        self.gcn = TemporalGCNLSTM(n_events, lstm_hidden=lstm_hidden)
        self.head = mlp_head(lstm_hidden + n_delivery, hidden, n_classes)

    def forward(self, transitions: Tensor, delivery: Tensor) -> Tensor:
        """Logits (B, n_classes) from transition counts (B, days, V, V) and D (B, G)."""
        return self.head(torch.cat([self.gcn(transitions), delivery], dim=-1))


class DeepMultiChannel(nn.Module):
    """Deep Multi-channel: M, D, the activity LSTM and (``gcn=True``) the Temporal GCN-LSTM into an MLP {64, 32}."""

    def __init__(
        self,
        n_events: int,
        n_macro: int,
        n_delivery: int,
        n_classes: int,
        lstm_hidden: int = 32,
        hidden: tuple[int, ...] = (64, 32),
        gcn: bool = True,
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_events, lstm_hidden, num_layers=2, batch_first=True)
        self.gcn = TemporalGCNLSTM(n_events, lstm_hidden=lstm_hidden) if gcn else None
        self.inputs = ("activity", "transitions", "macro", "delivery") if gcn else ("activity", "macro", "delivery")
        n_in = lstm_hidden * (2 if gcn else 1) + n_macro + n_delivery
        self.head = mlp_head(n_in, hidden, n_classes)

    def forward(self, activity: Tensor, *rest: Tensor) -> Tensor:
        """Logits (B, n_classes) from A (B, days, V), [transitions (B, days, V, V),] M (B, F) and D (B, G)."""
        out, _ = self.lstm(activity)  # (B, days, H)
        parts = [out[:, -1]]
        if self.gcn is not None:
            transitions, *rest_list = rest
            parts.append(self.gcn(transitions))  # (B, H)
            rest = tuple(rest_list)
        macro, delivery = rest
        return self.head(torch.cat([*parts, macro, delivery], dim=-1))


def fit_logistic(x: np.ndarray, y: np.ndarray, seed: int) -> LogisticRegression:
    """Multinomial logistic regression on standardised features (scikit-learn, lbfgs)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, random_state=seed).fit(x, y)


def fit_lightgbm(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int) -> lgb.LGBMClassifier:
    """LightGBM classifier with early stopping on the validation split (the GBDT baseline)."""
    import lightgbm as lgb

    model = lgb.LGBMClassifier(
        n_estimators=1000,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=20,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        random_state=seed,
        n_jobs=2,
        verbose=-1,
    )
    model.fit(x, y, eval_X=(x_val,), eval_y=(y_val,), callbacks=[lgb.early_stopping(30, verbose=False)])
    return model
