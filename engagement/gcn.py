"""The Temporal GCN-LSTM channel (the paper's reference [2], Liu et al.): a GCN per day over the action graph, an LSTM over the days.

Layout, per member::

    A_t (10 x 10 transition counts of day t)                 (engagement.transitions)
    W_t = log1p(A_t);  S_t = D^-1/2 (W_t + W_t^T + I) D^-1/2  (Kipf & Welling's propagation)
    X_t = [I_10, log1p(out-strength), log1p(in-strength), log1p(self-loops)]   (10 x 13)
    H_t = ReLU(S_t ReLU(S_t X_t W_1) W_2)                    (two GCN layers, 10 x gcn_hidden)
    g_t = ReLU(Linear(flatten(H_t)))                         (the day's graph embedding)
    g_1..g_T --LSTM (two layers)--> last output              (the channel's output)

The counts are damped by ``log1p`` because a few heavy days would otherwise
dominate the propagation; the graph is symmetrised for the propagation (the
normalisation needs a symmetric matrix) and the direction kept in the node
features (out- and in-strength per event type).  The identity block of X
lets a node's embedding depend on which event type it is, so the flattened
readout tells "jobs -> apply" from "feed -> feed".  A day without events is
the graph of isolated nodes (S = I), the same embedding for every such day.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["TemporalGCNLSTM", "gcn_propagation", "node_features"]


def gcn_propagation(counts: Tensor) -> Tensor:
    """The normalised propagation matrix of each day's graph.

    Parameters
    ----------
    counts : Tensor, shape (..., V, V)
        Transition counts (``[a, b]``: ``b`` followed ``a``), >= 0.

    Returns
    -------
    Tensor, shape (..., V, V)
        ``D^-1/2 (W + W^T + I) D^-1/2`` with ``W = log1p(counts)`` and ``D`` the row sums (>= 1).
    """
    w = torch.log1p(counts)
    eye = torch.eye(counts.shape[-1], dtype=counts.dtype, device=counts.device)
    s = w + w.transpose(-1, -2) + eye  # (..., V, V)
    d = s.sum(dim=-1).rsqrt()  # (..., V), row sums >= 1
    return d.unsqueeze(-1) * s * d.unsqueeze(-2)


def node_features(counts: Tensor) -> Tensor:
    """Node features of each day's graph: event-type identity and damped out-, in- and self-transition counts.

    Parameters
    ----------
    counts : Tensor, shape (..., V, V)

    Returns
    -------
    Tensor, shape (..., V, V + 3)
    """
    v = counts.shape[-1]
    eye = torch.eye(v, dtype=counts.dtype, device=counts.device).expand(*counts.shape[:-2], v, v)
    strength = torch.stack([counts.sum(dim=-1), counts.sum(dim=-2), torch.diagonal(counts, dim1=-2, dim2=-1)], dim=-1)  # (..., V, 3)
    return torch.cat([eye, torch.log1p(strength)], dim=-1)


class TemporalGCNLSTM(nn.Module):
    """Two GCN layers per day, a day embedding, a two-layer LSTM over the days; the last output.

    Parameters
    ----------
    n_events : int
        V, nodes of each day's graph (10).
    gcn_hidden : int
        Width of each node's embedding in both GCN layers.
    day_dim : int
        Width of a day's graph embedding (the LSTM's input).
    lstm_hidden : int
        Hidden units of the LSTM (the channel's output width).
    """

    def __init__(self, n_events: int, gcn_hidden: int = 16, day_dim: int = 32, lstm_hidden: int = 32) -> None:
        super().__init__()
        # Bias after the propagation, as Kipf & Welling: S (X W) + b.
        self.gcn1 = nn.Linear(n_events + 3, gcn_hidden, bias=False)
        self.gcn2 = nn.Linear(gcn_hidden, gcn_hidden, bias=False)
        self.bias1 = nn.Parameter(torch.zeros(gcn_hidden))
        self.bias2 = nn.Parameter(torch.zeros(gcn_hidden))
        self.readout = nn.Linear(n_events * gcn_hidden, day_dim)
        self.lstm = nn.LSTM(day_dim, lstm_hidden, num_layers=2, batch_first=True)
        self.out_dim = lstm_hidden

    def day_embeddings(self, transitions: Tensor) -> Tensor:
        """The graph embedding of each day, shape (B, days, day_dim), from counts (B, days, V, V)."""
        s = gcn_propagation(transitions)  # (B, T, V, V)
        h = torch.relu(s @ self.gcn1(node_features(transitions)) + self.bias1)  # (B, T, V, Hg)
        h = torch.relu(s @ self.gcn2(h) + self.bias2)  # (B, T, V, Hg)
        return torch.relu(self.readout(h.flatten(-2)))  # (B, T, day_dim)

    def forward(self, transitions: Tensor) -> Tensor:
        """The LSTM's output after the last day, shape (B, lstm_hidden), from counts (B, days, V, V)."""
        out, _ = self.lstm(self.day_embeddings(transitions))  # (B, T, H)
        return out[:, -1]
