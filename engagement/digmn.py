"""DIGMN: the Dynamic Intent Guided Meta Network (paper section 5), in torch.

Layout (Figure 3)::

    sessions s_t = (nu_t, c_t) --behaviour LSTM--> h_b          (5.1)
    i_t = cos(nu_t, t_k)       --intent LSTM-----> i~ (dynamic intent)  (5.2)
    a = softmax(W2 ReLU(W1 i~ + b1) + b2)                        (5.3.2, eq. 6)
    x = Linear([M, D, h_b, i~]) (half the input width, section 6.1.4; a ReLU after it with mapping_activation)
    x --FC-D_1--ReLU--...--FC-D_L--> logits, W^_l = reshape(a^T W_l)   (5.3.1, eq. 5, 7)
    loss = CE + beta * sum_l ||(W_l W_l^T - I) * (1 - I)||_F^2   (eq. 9-11)

Variable-length sequences are post-padded; an LSTM step never looks ahead, so
the output at the last valid step (gathered with ``lengths - 1``) does not
depend on what the padding holds.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from engagement.config import DigmnConfig

__all__ = [
    "DIGMN",
    "FCD",
    "count_parameters",
    "intent_cosine_torch",
    "last_step",
    "orthogonality",
]


def intent_cosine_torch(nu: Tensor, profiles: Tensor) -> Tensor:
    """``i_k = nu . t_k / (|nu| |t_k|)`` (eq. 2); zero for all-zero (padding) rows.

    Parameters
    ----------
    nu : Tensor, shape (B, T, V)
    profiles : Tensor, shape (K, V)

    Returns
    -------
    Tensor, shape (B, T, K)
    """
    num = nu @ profiles.T  # (B, T, K)
    den = nu.norm(dim=-1, keepdim=True) * profiles.norm(dim=-1)  # (B, T, K)
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))


def last_step(outputs: Tensor, lengths: Tensor) -> Tensor:
    """Output of each sequence at its last valid step.

    Parameters
    ----------
    outputs : Tensor, shape (B, T, H)
    lengths : Tensor of int64, shape (B,), values in 1..T

    Returns
    -------
    Tensor, shape (B, H)
    """
    idx = (lengths - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])  # (B, 1, H)
    return outputs.gather(1, idx).squeeze(1)


class FCD(nn.Module):
    """Fully connected layer with dynamic parameters (section 5.3.1).

    ``d`` basic weight matrices ``W_i`` (m x n) and biases ``b_i`` (n) are
    combined per sample by the meta weights ``a`` (B, d):
    ``h' = (sum_i a_i W_i)^T h + sum_i a_i b_i``.  Computed as
    ``sum_i a_i (h W_i)``, which is the same number without materialising a
    (B, m, n) tensor.

    Parameters
    ----------
    m, n : int
        Input and output width.
    d : int
        Number of basic parameters.
    """

    def __init__(self, m: int, n: int, d: int) -> None:
        super().__init__()
        self.m, self.n, self.d = m, n, d
        # Each basis initialised like nn.Linear (uniform +-1/sqrt(m)).
        bound = 1.0 / math.sqrt(m)
        self.weight = nn.Parameter(torch.empty(d, m * n).uniform_(-bound, bound))  # (d, m*n): W^l, one row per basis
        self.bias = nn.Parameter(torch.empty(d, n).uniform_(-bound, bound))  # (d, n)

    def forward(self, h: Tensor, a: Tensor) -> Tensor:
        """Apply the layer.

        Parameters
        ----------
        h : Tensor, shape (B, m)
        a : Tensor, shape (B, d)
            Meta weights (rows sum to 1 when they come from the softmax).

        Returns
        -------
        Tensor, shape (B, n)
        """
        w = self.weight.view(self.d, self.m, self.n)  # (d, m, n)
        per_basis = torch.einsum("bm,dmn->bdn", h, w)  # (B, d, n)
        return torch.einsum("bd,bdn->bn", a, per_basis) + a @ self.bias  # (B, n)

    def dynamic_weight(self, a: Tensor) -> Tensor:
        """``W^ = reshape(a^T W)`` (eq. 7), shape (B, m, n); for inspection and tests."""
        return (a @ self.weight).view(-1, self.m, self.n)


def orthogonality(weight: Tensor) -> Tensor:
    """Off-diagonal soft orthogonality ``||(W W^T - I) * (1 - I)||_F^2`` (eq. 9, one layer).

    Parameters
    ----------
    weight : Tensor, shape (d, m*n)

    Returns
    -------
    Tensor, scalar
    """
    gram = weight @ weight.T  # (d, d)
    off = gram - torch.diag(torch.diagonal(gram))
    return (off**2).sum()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class DIGMN(nn.Module):
    """The full model, or its static / learned-intent variants (Tables 4 and 6).

    Parameters
    ----------
    n_events : int
        V, the event-type vocabulary (10).
    n_context : int
        Width of the session context c.
    n_macro, n_delivery : int
        Widths of M and D.
    n_classes : int
        3 for the day-level task, 2 for the session-level task.
    intents : Tensor, shape (K, V)
        The LDA intents t_k (a buffer; also sets K for learned intents).
    config : DigmnConfig
    """

    inputs: tuple[str, ...] = ("nu", "ctx", "lengths", "macro", "delivery")
    intents: Tensor  # the registered buffer of the LDA intents, (K, V)
    meta: nn.Sequential | None

    def __init__(
        self,
        n_events: int,
        n_context: int,
        n_macro: int,
        n_delivery: int,
        n_classes: int,
        intents: Tensor,
        config: DigmnConfig | None = None,
    ) -> None:
        super().__init__()
        cfg = config if config is not None else DigmnConfig()
        self.config = cfg
        k = int(intents.shape[0])
        self.register_buffer("intents", intents.detach().clone().float())  # (K, V)
        self.behaviour = nn.LSTM(n_events + n_context, cfg.lstm_hidden, num_layers=1, batch_first=True)
        self.intent_map = nn.Linear(n_events, k) if cfg.intents == "learned" else None
        self.intent_lstm = nn.LSTM(k, cfg.lstm_hidden, num_layers=1, batch_first=True)
        # Optional daily-activity channel (not in the paper); the instance's inputs then include it.
        self.activity = nn.LSTM(n_events, cfg.lstm_hidden, num_layers=2, batch_first=True) if cfg.activity_channel else None
        self.inputs = DIGMN.inputs + (("activity",) if cfg.activity_channel else ())
        width = n_macro + n_delivery + (3 if cfg.activity_channel else 2) * cfg.lstm_hidden
        self.mapping = nn.Linear(width, max(width // 2, 1))
        sizes = [max(width // 2, 1), *cfg.hidden, n_classes]
        if cfg.predictor == "dynamic":
            self.meta = nn.Sequential(nn.Linear(cfg.lstm_hidden, cfg.meta_hidden), nn.ReLU(), nn.Linear(cfg.meta_hidden, cfg.n_bases))
            self.layers = nn.ModuleList(FCD(sizes[i], sizes[i + 1], cfg.n_bases) for i in range(len(sizes) - 1))
        else:
            self.meta = None
            self.layers = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1))

    def session_intents(self, nu: Tensor) -> Tensor:
        """Per-session intents, shape (B, T, K): cosine to the LDA intents, or ``tanh(W nu + b)``."""
        if self.intent_map is None:
            return intent_cosine_torch(nu, self.intents)
        return torch.tanh(self.intent_map(nu))

    def encode(self, nu: Tensor, ctx: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Behaviour and dynamic-intent representations.

        Parameters
        ----------
        nu : Tensor, shape (B, T, V)
        ctx : Tensor, shape (B, T, C)
        lengths : Tensor of int64, shape (B,)

        Returns
        -------
        h_b, h_i : Tensor, shape (B, lstm_hidden) each
        """
        out_b, _ = self.behaviour(torch.cat([nu, ctx], dim=-1))  # (B, T, H)
        out_i, _ = self.intent_lstm(self.session_intents(nu))  # (B, T, H)
        return last_step(out_b, lengths), last_step(out_i, lengths)

    def meta_weights(self, h_i: Tensor) -> Tensor | None:
        """``a = softmax(W2 ReLU(W1 i~ + b1) + b2)`` (eq. 6), shape (B, d); None when static."""
        return None if self.meta is None else torch.softmax(self.meta(h_i), dim=-1)

    def forward(self, nu: Tensor, ctx: Tensor, lengths: Tensor, macro: Tensor, delivery: Tensor, activity: Tensor | None = None) -> Tensor:
        """Class logits, shape (B, n_classes); ``activity`` (B, days, V) only with the activity channel."""
        h_b, h_i = self.encode(nu, ctx, lengths)
        a = self.meta_weights(h_i)
        parts = [macro, delivery, h_b, h_i]
        if self.activity is not None:
            if activity is None:
                raise ValueError("this DIGMN has an activity channel: pass the daily activity tensor")
            parts.append(self.activity(activity)[0][:, -1])
        x = self.mapping(torch.cat(parts, dim=-1))  # (B, width/2)
        if self.config.mapping_activation == "relu":
            x = torch.relu(x)
        for j, layer in enumerate(self.layers):
            x = layer(x, a) if a is not None else layer(x)
            if j < len(self.layers) - 1:
                x = torch.relu(x)
        return x

    def regularization(self) -> Tensor:
        """L_R = sum over FC-D layers of the off-diagonal orthogonality term (eq. 9); 0 when static."""
        terms = [orthogonality(layer.weight) for layer in self.layers if isinstance(layer, FCD)]
        return torch.stack(terms).sum() if terms else torch.zeros((), device=self.intents.device)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser groups: L2 decay on everything except the FC-D bases W^l (section 6.1.4)."""
        bases = {id(layer.weight) for layer in self.layers if isinstance(layer, FCD)}
        decay = [p for p in self.parameters() if id(p) not in bases]
        no_decay = [p for p in self.parameters() if id(p) in bases]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
