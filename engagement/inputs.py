"""Model inputs of one replicate: the member split and the scaled tensors.

* :func:`split_members`: 80/10/10 by member from one Generator.
* :class:`Scaler`: feature standardisation fitted on the training split only.
* :func:`make_tensors`: every member's scaled inputs as CPU tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dwellrank_logs.errors import DwellrankError
from engagement.dataset import EngagementData

__all__ = ["MIN_MEMBERS", "Scaler", "Split", "make_tensors", "split_members"]

#: Fewest members for an 80/10/10 split with at least 2 members in validation and test.
MIN_MEMBERS = 20


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
    n_tr = round(fractions[0] * n)
    n_va = round(fractions[1] * n)
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
