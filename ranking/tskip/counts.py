"""Impressions and actions per (group, dwell bin): the reduction T_skip is computed from.

An engine reads the impressions once, grouping on ``(group, floor(dwell / w))``
with the raw key, and hands the small aggregated table over as
:class:`DwellKeyCounts` (the polars engine is
:func:`ranking.tskip.polars_counts.bin_counts`; a cluster engine returns the
same columns).  :func:`binned_counts` does the rest on the driver: unusable
dwell and null actions are counted per reason and dropped (or refused in strict
mode), long tails are merged into the overflow bin, and the result is
:class:`BinnedCounts`, the engine-neutral sufficient statistics everything
downstream reads.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from dwellrank_logs.errors import SchemaError
from ranking.tskip.config import TskipConfig
from ranking.tskip.errors import DwellDataWarning, InsufficientDataError

__all__ = ["BinnedCounts", "DwellKeyCounts", "binned_counts"]

_ALL = "all"  # label of the pooled group, the only one without ``by``


@dataclass(frozen=True)
class BinnedCounts:
    """Impressions and actions per (group, dwell bin): the sufficient statistics.

    Attributes
    ----------
    edges : ndarray, shape (K + 1,), seconds
        Bin edges ``0, w, ..., K w``; ``K w`` is ``max_dwell_s`` rounded up.
    groups : tuple of str
        Group labels in sorted order (``("all",)`` without ``by``).
    n : ndarray, shape (G, K + 1), int
        Impressions per group and bin; column K counts dwell >= ``K w``.
    x : ndarray, shape (G, K + 1), int
        Impressions with an action, same layout.
    dropped : dict
        Rows dropped per reason (``"null"``, ``"NaN"``, ``"infinite"``,
        ``"negative"`` dwell, ``"null action"``), over all groups.
    source : str
        Where the rows came from (file path or ``"<frame>"``).
    """

    edges: np.ndarray
    groups: tuple[str, ...]
    n: np.ndarray
    x: np.ndarray
    dropped: dict[str, int]
    source: str = "<frame>"

    def total(self) -> BinnedCounts:
        """The counts summed over groups (one group, ``"all"``)."""
        return BinnedCounts(self.edges, (_ALL,), self.n.sum(0, keepdims=True), self.x.sum(0, keepdims=True), self.dropped, self.source)

    def group(self, label: str) -> BinnedCounts:
        """The counts of one group."""
        i = self.groups.index(label)
        return BinnedCounts(self.edges, (label,), self.n[i : i + 1], self.x[i : i + 1], {}, self.source)


@dataclass(frozen=True)
class DwellKeyCounts:
    """An engine's group-by of the impressions on ``(group, floor(dwell / w))``: one row per key.

    The key is the raw ``floor(dwell / w)`` of every row, unusable dwell
    included (NaN, +-inf and negative values form their own keys), so the
    engine needs no per-row validity pass; finite dwell beyond the last edge
    keeps one key per ``w`` of range.

    Attributes
    ----------
    key : ndarray, shape (R,), float64
        ``floor(dwell / w)``; 0.0 where ``key_null``.
    key_null : ndarray, shape (R,), bool
        The dwell of the key's rows is null.
    n : ndarray, shape (R,), int64
        Rows with the key.
    n_action : ndarray, shape (R,), int64
        Of those, rows with an action (the OR of the action columns is true).
    n_null_action : ndarray, shape (R,), int64
        Of those, rows whose action is null (no column true, one null).
    group : ndarray of str, shape (R,), or None
        Group label of each key (``"<null>"`` for a null label); ``None``
        without ``by``.
    """

    key: np.ndarray
    key_null: np.ndarray
    n: np.ndarray
    n_action: np.ndarray
    n_null_action: np.ndarray
    group: np.ndarray | None


def binned_counts(keys: DwellKeyCounts, config: TskipConfig, source: str) -> BinnedCounts:
    """The binned counts of an engine's :class:`DwellKeyCounts`, unusable rows accounted for.

    Bin ``k`` holds ``floor(dwell / w) == k``; bin ``K`` every finite dwell
    ``>= K w``.  Rows with null, NaN, infinite or negative dwell and rows with
    a null action are counted per reason and dropped.

    Parameters
    ----------
    keys : DwellKeyCounts
    config : TskipConfig
        ``bin_width_s``, ``max_dwell_s``, ``strict`` and the column names (for messages).
    source : str
        Name of the input for messages (a file path).

    Raises
    ------
    SchemaError
        In strict mode, unusable dwell or action values.
    InsufficientDataError
        No usable rows.

    Warns
    -----
    DwellDataWarning
        Rows with null/NaN/infinite/negative dwell or null actions were dropped.
    """
    w = float(config.bin_width_s)
    K = config.n_bins
    k_null, kv, n_rows, n_null_action = keys.key_null, keys.key, keys.n, keys.n_null_action
    finite = np.isfinite(kv) & ~k_null
    valid = finite & (kv >= 0)
    reasons = {
        "null": n_rows[k_null].sum(),
        "NaN": n_rows[np.isnan(kv)].sum(),
        "infinite": n_rows[np.isinf(kv)].sum(),
        "negative": n_rows[finite & (kv < 0)].sum(),
        "null action": n_null_action[valid].sum(),
    }
    dropped = {r: int(v) for r, v in reasons.items() if v}
    if dropped:
        n_bad = sum(dropped.values())
        what = ", ".join(f"{v:,} {r}" for r, v in dropped.items())
        cols = f"'{config.dwell_col}'" + (f" / {', '.join(repr(c) for c in config.action_cols)}" if "null action" in dropped else "")
        if config.strict:
            raise SchemaError(
                f"{source}: column {cols} has unusable values ({what}); dwell must be finite and >= 0 seconds, "
                "actions non-null (strict mode)"
            )
        warnings.warn(
            f"{source}: dropped {n_bad:,} row(s) with unusable values in column {cols} ({what})",
            DwellDataWarning,
            stacklevel=3,  # the caller of the engine's entry point
        )
    n_valid = n_rows - n_null_action
    keep = valid & (n_valid > 0)
    labels = np.full(int(keep.sum()), _ALL, dtype=object) if keys.group is None else keys.group[keep]
    # On the str objects: numpy's fixed-width strings would drop trailing NULs and merge labels.
    groups_arr, g_idx = np.unique(labels.astype(object), return_inverse=True)  # sorted, as labels are reported
    groups = tuple(str(g) for g in groups_arr)
    if not groups:
        raise InsufficientDataError(
            f"{source}: no impressions with a usable '{config.dwell_col}' (table is empty or every value was dropped)"
        )
    # Long dwell tails give one row per w of range here: index them without a Python loop.
    cell = g_idx.astype(np.int64) * (K + 1) + np.minimum(kv[keep], K).astype(np.int64)
    size = len(groups) * (K + 1)
    n = np.bincount(cell, weights=n_valid[keep], minlength=size).round().astype(np.int64).reshape(len(groups), K + 1)
    x = np.bincount(cell, weights=keys.n_action[keep], minlength=size).round().astype(np.int64).reshape(len(groups), K + 1)
    edges = np.arange(K + 1, dtype=np.float64) * w
    return BinnedCounts(edges=edges, groups=groups, n=n, x=x, dropped=dropped, source=source)
