"""T_skip by Bayes' rule: when does P(action | dwell) start to be non-zero?

The post ("Defining a new concept of skipped updates") computes the empirical
CDFs of dwell for updates with and without a click/viral action, F_A and F_N,
and the CDF of all dwell, F, and estimates over dwell bins [a, b)

    P(action | dwell in [a, b)) = P(action) * (F_A(b) - F_A(a)) / (F(b) - F(a)).

T_skip is the dwell at which this curve starts to become non-zero; an update
viewed for less than T_skip seconds without an action is *skipped*.  The post
then checks that one T_skip serves every update type.

Everything here runs on the binned counts of one lazy polars ``group_by`` over
``(group, floor(dwell / bin_width))``, so a Parquet file is streamed and never
materialised.  The pure functions (:func:`bin_counts`, :func:`bayes_curve`,
:func:`threshold_from_curve`, :func:`estimate_tskip`) do the work;
:class:`TskipEstimator` is a thin fitted-state wrapper and
:func:`skip_label_expr` is the reusable skip label for the ranking stage.

Threshold rule (also in :func:`threshold_from_curve`): with bins
``[a_k, a_k + w)``, counts ``n_k``, actions ``x_k`` and the ``1 - alpha``
binomial (Wilson) interval ``[lo_k, hi_k]`` of ``x_k / n_k``, a bin is
*informative* when ``n_k >= min_bin_count`` and *fires* when ``lo_k > eps``.
T_skip is the lower edge ``a_k`` of the first informative bin that fires and
whose next ``persist - 1`` informative bins also fire.  Sparse bins are
skipped rather than counted against a run (sparse tails); a single bin that
fires by chance below the real jump is not enough (noise); ``eps`` sits above
the background rate of accidental actions on truly skipped updates.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.checks import check_number, check_positive_int
from dwellrank_logs.errors import ConfigError, DwellrankError, SchemaError, first_line
from dwellrank_logs.io import open_parquet
from dwellrank_logs.protocol import skip_label_expr as _skip_label_expr
from dwellrank_logs.schema import ACTION_COLUMNS, TABLES, validate_frame

__all__ = [
    "BayesCurve",
    "BinnedCounts",
    "DwellDataWarning",
    "GroupThreshold",
    "InsufficientDataError",
    "TskipConfig",
    "TskipEstimator",
    "TskipResult",
    "add_skip_label",
    "bayes_curve",
    "bin_counts",
    "empirical_cdfs",
    "estimate_tskip",
    "estimate_tskip_file",
    "skip_label_expr",
    "threshold_from_curve",
]

_CI_METHODS = ("wilson", "agresti_coull", "beta", "jeffreys", "normal")
_ALL = "all"


# ------------------------------------------------------------ validation


def _nonempty_str(name: str, v: object) -> None:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{name} must be a non-empty column name, got {v!r}")


def _unit_float(name: str, v: object, lo_open: bool) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (0 < v < 1 if lo_open else 0 <= v < 1)
    if not ok:
        raise ConfigError(f"{name} must be in {'(0, 1)' if lo_open else '[0, 1)'}, got {v!r}")


def _confint(count: np.ndarray | int, nobs: np.ndarray | int, alpha: float, method: str) -> tuple[Any, Any]:
    # Imported here: statsmodels (and scipy behind it) take about a second to import.
    from statsmodels.stats.proportion import proportion_confint

    return proportion_confint(count, nobs, alpha=alpha, method=method)  # type: ignore[no-any-return]


def _json_list(a: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(a, dtype=np.float64)]


def _json_scalar(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class InsufficientDataError(DwellrankError, ValueError):
    """The input is well formed but cannot support a stable T_skip estimate.

    No rows, no actions, too few rows in a group, or no dwell bin that
    satisfies the threshold rule.
    """


class DwellDataWarning(UserWarning):
    """Rows with unusable dwell or action values were counted and dropped."""


@dataclass(frozen=True)
class TskipConfig:
    """What to read and how to estimate T_skip; validated on construction.

    Parameters
    ----------
    dwell_col : str
        Dwell column, seconds (float, finite, >= 0).
    action_cols : tuple of str
        Boolean (or 0/1 integer) columns; an impression has an *action* when
        any of them is true.  Default: click and viral actions.
    by : str or None
        Column to split the curve by (one curve and threshold per value);
        ``None`` for the overall curve only.
    bin_width_s : float, seconds
        Width of the dwell bins; bins are ``[k * w, (k + 1) * w)``.
    max_dwell_s : float, seconds
        Dwell at or above this goes to one overflow count (kept in the CDF
        totals, not in the curve).
    eps : float, probability
        Tolerance: a bin fires when the lower confidence bound of
        P(action | dwell in bin) exceeds it.
    alpha : float
        Two-sided level of the per-bin binomial intervals (0.05: 95 %).
    ci_method : str
        ``method`` of ``statsmodels.stats.proportion.proportion_confint``.
    persist : int
        Number of consecutive informative bins that must fire.
    min_bin_count : int
        Impressions a bin needs to be informative.
    min_rows_per_group : int
        Valid impressions each group (and the whole table) needs; fewer raise
        :class:`InsufficientDataError` naming the group.
    tolerance_s : float or None, seconds
        Largest distance between a group's threshold and the overall T_skip
        for "one T_skip fits all"; ``None`` means one bin width.
    strict : bool
        Raise on null/NaN/infinite/negative dwell or null actions instead of
        dropping those rows with a :class:`DwellDataWarning`.  A row's action
        is the OR of its action columns with SQL (Kleene) nulls: it is null
        only when no column is true and at least one is null.
    """

    dwell_col: str = "dwell_s"
    action_cols: tuple[str, ...] = ACTION_COLUMNS
    by: str | None = "update_type"
    bin_width_s: float = 0.25
    max_dwell_s: float = 60.0
    eps: float = 0.002
    alpha: float = 0.05
    ci_method: str = "wilson"
    persist: int = 3
    min_bin_count: int = 20
    min_rows_per_group: int = 1000
    tolerance_s: float | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        _nonempty_str("dwell_col", self.dwell_col)
        if isinstance(self.action_cols, str) or not isinstance(self.action_cols, (tuple, list)):
            raise ConfigError(f"action_cols must be a tuple of column names, got {self.action_cols!r}")
        object.__setattr__(self, "action_cols", tuple(self.action_cols))
        if not self.action_cols:
            raise ConfigError("action_cols must name at least one column, got ()")
        for c in self.action_cols:
            _nonempty_str("action_cols", c)
        if len(set(self.action_cols)) != len(self.action_cols):
            raise ConfigError(f"action_cols must be distinct, got {self.action_cols}")
        if self.by is not None:
            _nonempty_str("by", self.by)
            if self.by == self.dwell_col or self.by in self.action_cols:
                raise ConfigError(f"by must differ from the dwell and action columns, got {self.by!r}")
        if self.dwell_col in self.action_cols:
            raise ConfigError(f"dwell_col {self.dwell_col!r} must not be one of action_cols")
        check_number("bin_width_s", self.bin_width_s)
        check_number("max_dwell_s", self.max_dwell_s)
        if self.max_dwell_s / self.bin_width_s > 1_000_000:
            raise ConfigError(f"max_dwell_s / bin_width_s must be <= 1e6 bins, got {self.max_dwell_s} / {self.bin_width_s}")
        _unit_float("eps", self.eps, lo_open=False)
        _unit_float("alpha", self.alpha, lo_open=True)
        if self.ci_method not in _CI_METHODS:
            raise ConfigError(f"ci_method must be one of {', '.join(_CI_METHODS)}, got {self.ci_method!r}")
        check_positive_int("persist", self.persist)
        check_positive_int("min_bin_count", self.min_bin_count)
        check_positive_int("min_rows_per_group", self.min_rows_per_group)
        if self.tolerance_s is not None:
            check_number("tolerance_s", self.tolerance_s, allow_zero=True)
        if not isinstance(self.strict, bool):
            raise ConfigError(f"strict must be True or False, got {self.strict!r}")

    @property
    def tolerance(self) -> float:
        """Tolerance of the single-T_skip check, seconds (one bin by default)."""
        return self.bin_width_s if self.tolerance_s is None else float(self.tolerance_s)

    @property
    def n_bins(self) -> int:
        """Number of regular bins below ``max_dwell_s``."""
        return int(math.ceil(self.max_dwell_s / self.bin_width_s - 1e-9))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


# --------------------------------------------------------------------- counts


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


def bin_counts(
    frame: pl.LazyFrame | pl.DataFrame,
    config: TskipConfig = TskipConfig(),
    source: str = "<frame>",
) -> BinnedCounts:
    """Count impressions and actions per (group, dwell bin) in one streaming pass.

    Bin ``k`` holds ``floor(dwell / w) == k``; bin ``K`` every finite dwell
    ``>= K w`` (a dwell so large that ``dwell / w`` overflows, beyond 1e307
    seconds, counts as infinite).

    Parameters
    ----------
    frame : polars.LazyFrame or DataFrame
        Impressions with ``config.dwell_col`` (seconds), ``config.action_cols``
        and, if set, ``config.by``.  Other columns are not read.
    config : TskipConfig
    source : str
        Name of the input for messages (a file path).

    Returns
    -------
    BinnedCounts

    Raises
    ------
    SchemaError
        A column is missing or of the wrong type; unreadable data; in strict
        mode, unusable dwell or action values.
    InsufficientDataError
        No usable rows.

    Warns
    -----
    DwellDataWarning
        Rows with null/NaN/infinite/negative dwell or null actions were dropped.
    """
    lf = frame.lazy()
    schema = _check_columns(lf, config, source)
    w = float(config.bin_width_s)
    K = config.n_bins
    # Casts only where the type differs: each one costs a pass over 10M values.
    d = _as(config.dwell_col, schema, pl.Float64)
    # Integer 0/1 action columns are accepted: any non-zero value is an action.
    action = pl.any_horizontal([_as(c, schema, pl.Boolean) for c in config.action_cols])
    # Group on the raw floor(dwell / w) and sort out unusable dwell afterwards, on the
    # aggregated table: NaN, +-inf and negative values form their own keys.  Per-row
    # validity masks, clipping and integer key arithmetic each cost a full pass over the
    # column, about a third of the estimator's time (measured with bench/tskip.py).
    # Finite dwell beyond the last edge keeps distinct keys (one per w of range), merged
    # into the overflow bin below.
    keys = [(d / w).floor().alias("_k")]
    if config.by is not None:
        keys.insert(0, _as(config.by, schema, pl.String).alias("_group"))
    tab = _collect(
        lf.group_by(keys).agg(pl.len().alias("_n"), action.sum().alias("_x"), action.null_count().alias("_null_action")),
        source,
    )
    # The aggregated table is small (a row per group and w of dwell range): numpy from here on,
    # where each polars query would cost a fraction of a millisecond.
    k_null = tab["_k"].is_null().to_numpy()
    kv = tab["_k"].fill_null(0.0).to_numpy()
    n_rows = tab["_n"].to_numpy().astype(np.int64)
    n_null_action = tab["_null_action"].to_numpy().astype(np.int64)
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
            stacklevel=2,
        )
    n_valid = n_rows - n_null_action
    keep = valid & (n_valid > 0)
    if config.by is None:
        labels = np.full(int(keep.sum()), _ALL, dtype=object)
    else:
        labels = tab["_group"].fill_null("<null>").to_numpy()[keep]
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
    x = (
        np.bincount(cell, weights=tab["_x"].fill_null(0).to_numpy()[keep], minlength=size)
        .round()
        .astype(np.int64)
        .reshape(len(groups), K + 1)
    )
    edges = np.arange(K + 1, dtype=np.float64) * w
    return BinnedCounts(edges=edges, groups=groups, n=n, x=x, dropped=dropped, source=source)


def _collect(lf: pl.LazyFrame, source: str) -> pl.DataFrame:
    try:
        return lf.collect(engine="streaming")
    except DwellrankError:
        raise
    except Exception as exc:  # polars raises several types for unreadable data pages
        raise SchemaError(f"{source}: cannot read impressions ({first_line(exc)})") from exc


def _as(name: str, schema: pl.Schema, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    return col if schema[name] == dtype else col.cast(dtype)


def _check_columns(lf: pl.LazyFrame, config: TskipConfig, source: str) -> pl.Schema:
    try:
        schema = lf.collect_schema()
    except Exception as exc:
        raise SchemaError(f"{source}: cannot read the impressions table ({first_line(exc)})") from exc
    found = ", ".join(schema.names()) or "no columns"
    wanted = [config.dwell_col, *config.action_cols] + ([config.by] if config.by else [])
    missing = [c for c in wanted if c not in schema]
    if missing:
        raise SchemaError(f"{source}: impressions table is missing column(s) {', '.join(repr(m) for m in missing)}; found {found}")
    dt = schema[config.dwell_col]
    if not (dt.is_numeric() or dt == pl.Null):
        raise SchemaError(f"{source}: column '{config.dwell_col}' must be numeric (dwell, seconds), got {dt}")
    for c in config.action_cols:
        dt = schema[c]
        if not (dt == pl.Boolean or dt.is_integer() or dt == pl.Null):
            raise SchemaError(f"{source}: column '{c}' must be Boolean (action taken or not), got {dt}")
    if config.by is not None:
        dt = schema[config.by]
        if not (dt in (pl.String, pl.Categorical) or isinstance(dt, pl.Enum) or dt.is_integer() or dt == pl.Boolean):
            raise SchemaError(f"{source}: column '{config.by}' must be a string or integer group label, got {dt}")
    return schema


# ---------------------------------------------------------------- the curve


@dataclass(frozen=True)
class BayesCurve:
    """Empirical CDFs and the binned P(action | dwell) of one group.

    Attributes
    ----------
    group : str
    edges : ndarray, shape (K + 1,), seconds
    n : ndarray, shape (K,), int
        Impressions per bin ``[edges[k], edges[k+1])``.
    n_action : ndarray, shape (K,), int
        Impressions with an action per bin.
    cdf_all, cdf_action, cdf_no_action : ndarray, shape (K + 1,)
        F, F_A and F_N at the edges (over all valid rows, overflow included).
    p_action : float
        P(action) over all valid rows.
    probability : ndarray, shape (K,)
        ``p_action * (F_A(b) - F_A(a)) / (F(b) - F(a))``; NaN for empty bins.
    ci_low, ci_high : ndarray, shape (K,)
        Binomial ``1 - alpha`` interval per bin; NaN for empty bins.
    n_total, n_action_total, n_overflow : int
    """

    group: str
    edges: np.ndarray
    n: np.ndarray
    n_action: np.ndarray
    cdf_all: np.ndarray
    cdf_action: np.ndarray
    cdf_no_action: np.ndarray
    p_action: float
    probability: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_total: int
    n_action_total: int
    n_overflow: int
    alpha: float = 0.05
    ci_method: str = "wilson"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists (NaN becomes null)."""
        return {
            "group": self.group,
            "n_total": self.n_total,
            "n_action_total": self.n_action_total,
            "n_overflow": self.n_overflow,
            "p_action": self.p_action,
            "ci": {"alpha": self.alpha, "method": self.ci_method},
            "edges_s": _json_list(self.edges),
            "counts": self.n.tolist(),
            "action_counts": self.n_action.tolist(),
            "probability": _json_list(self.probability),
            "ci_low": _json_list(self.ci_low),
            "ci_high": _json_list(self.ci_high),
            "cdf_all": _json_list(self.cdf_all),
            "cdf_action": _json_list(self.cdf_action),
            "cdf_no_action": _json_list(self.cdf_no_action),
        }


def empirical_cdfs(counts: BinnedCounts, group: str | None = None) -> dict[str, np.ndarray]:
    """Empirical dwell CDFs at the bin edges, with and without an action.

    Parameters
    ----------
    counts : BinnedCounts
    group : str, optional
        One group's CDFs; default: all groups pooled.

    Returns
    -------
    dict
        ``edges`` (seconds, shape (K + 1,)) and ``all``, ``action``,
        ``no_action``: P(dwell < edge) within each population.  Dwell at or
        above the last edge counts in the totals, so the CDFs may end below 1.
    """
    c = counts.total() if group is None else counts.group(group)
    n, x = c.n[0], c.x[0]
    return {
        "edges": counts.edges.copy(),
        "all": _cdf(n),
        "action": _cdf(x),
        "no_action": _cdf(n - x),
    }


def _cdf(counts: np.ndarray) -> np.ndarray:
    tot = counts.sum()
    cum = np.concatenate([[0], np.cumsum(counts[:-1])]).astype(np.float64)  # last column is overflow
    return cum / tot if tot > 0 else np.full(cum.shape, np.nan)


def bayes_curve(counts: BinnedCounts, group: str | None = None, config: TskipConfig = TskipConfig()) -> BayesCurve:
    """P(action | dwell in [a, b)) by Bayes' rule from the empirical CDFs.

    ``P(action) * (F_A(b) - F_A(a)) / (F(b) - F(a))`` per bin, with the
    binomial interval of ``statsmodels.stats.proportion.proportion_confint``
    (``config.ci_method`` at level ``1 - config.alpha``) on the bin's counts.

    Parameters
    ----------
    counts : BinnedCounts
    group : str, optional
        One group's curve; default: all groups pooled.
    config : TskipConfig
        Only ``alpha`` and ``ci_method`` are used.
    """
    c = counts.total() if group is None else counts.group(group)
    return _bayes_curves(c.groups, c.n, c.x, counts.edges, config)[0]


def _bayes_curves(labels: Sequence[str], n_all: np.ndarray, x_all: np.ndarray, edges: np.ndarray, config: TskipConfig) -> list[BayesCurve]:
    """:func:`bayes_curve` of several rows of counts (shape (G, K + 1)) at once.

    One ``proportion_confint`` call for all of them: each call costs a fraction
    of a millisecond whatever its size, a visible share of a small estimate.
    """
    n_all = np.asarray(n_all, dtype=np.int64)
    x_all = np.asarray(x_all, dtype=np.int64)
    N, X = n_all.sum(1), x_all.sum(1)
    n, x = n_all[:, :-1], x_all[:, :-1]  # the last column is overflow
    m = n > 0
    lo = np.full(n.shape, np.nan)
    hi = np.full(n.shape, np.nan)
    if m.any():
        lo[m], hi[m] = _confint(x[m], n[m], config.alpha, config.ci_method)
    curves = []
    for i, label in enumerate(labels):
        F, FA, FN = _cdf(n_all[i]), _cdf(x_all[i]), _cdf(n_all[i] - x_all[i])
        p_a = int(X[i]) / int(N[i]) if N[i] else float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            dF = np.diff(F)
            dFA = np.diff(FA) if X[i] else np.zeros_like(dF)
            prob = np.where(m[i], p_a * dFA / dF, np.nan)
        # Roundoff can move p a hair outside its own interval; the interval is what the rule uses.
        prob = np.where(m[i], np.clip(prob, 0.0, 1.0), np.nan)
        curves.append(
            BayesCurve(
                group=label,
                edges=edges.copy(),
                n=n[i].copy(),
                n_action=x[i].copy(),
                cdf_all=F,
                cdf_action=FA,
                cdf_no_action=FN,
                p_action=p_a,
                probability=prob,
                ci_low=np.clip(lo[i], 0.0, 1.0),
                ci_high=np.clip(hi[i], 0.0, 1.0),
                n_total=int(N[i]),
                n_action_total=int(X[i]),
                n_overflow=int(n_all[i, -1]),
                alpha=config.alpha,
                ci_method=config.ci_method,
            )
        )
    return curves


def threshold_from_curve(curve: BayesCurve, eps: float = 0.002, persist: int = 3, min_bin_count: int = 20) -> float | None:
    """The dwell where P(action | dwell) starts to be non-zero, or None.

    Rule: a bin ``k`` is *informative* when ``curve.n[k] >= min_bin_count``
    and *fires* when ``curve.ci_low[k] > eps``.  The threshold is the lower
    edge ``curve.edges[k]`` of the first informative bin that fires and is
    followed by ``persist - 1`` more informative bins that all fire (bins in
    between that are not informative are ignored).  ``None`` when no bin
    qualifies.

    Parameters
    ----------
    curve : BayesCurve
    eps : float, probability
        Tolerance above which the lower confidence bound counts as non-zero.
    persist : int
        Informative bins in a row that must fire.
    min_bin_count : int
        Impressions a bin needs to be informative.

    Returns
    -------
    float or None, seconds
    """
    info = np.flatnonzero(curve.n >= min_bin_count)
    fires = curve.ci_low[info] > eps
    if fires.size < persist:
        return None
    # run[i]: all of fires[i : i + persist] are true.
    run = np.lib.stride_tricks.sliding_window_view(fires, persist).all(axis=1)
    hit = np.flatnonzero(run)
    return float(curve.edges[info[hit[0]]]) if hit.size else None


# ---------------------------------------------------------------- estimate


@dataclass(frozen=True)
class GroupThreshold:
    """One group's threshold and how the overall T_skip fits it.

    Attributes
    ----------
    group : str
    threshold_s : float or None, seconds
        The group's own threshold by the same rule (None: no bin qualified).
    n : int
        Valid impressions in the group.
    n_action : int
    n_below : int
        Impressions with dwell < overall T_skip.
    n_action_below : int
        Of those, with an action (ideally 0: the overall T_skip fits).
    rate_below_ci_high : float
        Upper confidence bound of P(action | dwell < T_skip) in the group.
    fits : bool
        ``|threshold_s - T_skip| <= tolerance`` (False when no threshold).
    """

    group: str
    threshold_s: float | None
    n: int
    n_action: int
    n_below: int
    n_action_below: int
    rate_below_ci_high: float
    fits: bool

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _json_scalar(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class TskipResult:
    """Outcome of :func:`estimate_tskip`.

    Attributes
    ----------
    t_skip_s : float, seconds
        Overall T_skip (threshold of the pooled curve).
    curve : BayesCurve
        The pooled curve.
    groups : dict of str to GroupThreshold
        Per-group thresholds (empty without ``by``).
    group_curves : dict of str to BayesCurve
    spread_s : float or None, seconds
        max - min of the groups' thresholds (None when fewer than one found).
    max_deviation_s : float or None, seconds
        Largest ``|threshold - T_skip|`` over groups.
    consistent : bool
        One T_skip fits all groups: every group has a threshold within
        ``tolerance_s`` of T_skip.
    config : TskipConfig
    n_rows : int
        Valid impressions used.
    dropped : dict
        Rows dropped per reason.
    source : str
    """

    t_skip_s: float
    curve: BayesCurve
    groups: dict[str, GroupThreshold]
    group_curves: dict[str, BayesCurve]
    spread_s: float | None
    max_deviation_s: float | None
    consistent: bool
    config: TskipConfig
    n_rows: int
    dropped: dict[str, int] = field(default_factory=dict)
    source: str = "<frame>"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: T_skip, per-group thresholds, curves, config."""
        return {
            "t_skip_s": self.t_skip_s,
            "source": self.source,
            "n_rows": self.n_rows,
            "dropped": dict(self.dropped),
            "by": self.config.by,
            "per_group": {g: t.to_dict() for g, t in self.groups.items()},
            "single_tskip": {
                "consistent": self.consistent,
                "spread_s": self.spread_s,
                "max_deviation_s": self.max_deviation_s,
                "tolerance_s": self.config.tolerance,
            },
            "rule": {
                "text": "lower edge of the first bin with n >= min_bin_count whose lower CI bound > eps, "
                "followed by persist - 1 informative bins that also have lower CI bound > eps",
                "eps": self.config.eps,
                "persist": self.config.persist,
                "min_bin_count": self.config.min_bin_count,
                "bin_width_s": self.config.bin_width_s,
            },
            "curve": self.curve.to_dict(),
            "group_curves": {g: c.to_dict() for g, c in self.group_curves.items()},
            "config": self.config.to_dict(),
        }

    def summary(self) -> str:
        """A one-screen text summary."""
        c = self.config
        lines = [
            f"T_skip = {self.t_skip_s:.2f} s  ({self.source}, {self.n_rows:,} impressions, "
            f"P(action) = {self.curve.p_action:.4f}, bin {c.bin_width_s:g} s, eps {c.eps:g}, persist {c.persist})",
        ]
        if self.dropped:
            lines.append("  dropped: " + ", ".join(f"{v:,} {k}" for k, v in self.dropped.items()))
        if self.groups:
            lines.append(f"  {c.by:<14} {'threshold s':>11} {'impressions':>12} {'P(action)':>9} {'actions<T':>9} {'fits':>5}")
            for g, t in self.groups.items():
                thr = "-" if t.threshold_s is None else f"{t.threshold_s:.2f}"
                lines.append(
                    f"  {g:<14} {thr:>11} {t.n:>12,} {t.n_action / t.n if t.n else float('nan'):>9.4f} "
                    f"{t.n_action_below:>9,} {'yes' if t.fits else 'no':>5}"
                )
            spread = "-" if self.spread_s is None else f"{self.spread_s:.2f} s"
            verdict = "one T_skip fits every group" if self.consistent else "one T_skip does NOT fit every group"
            lines.append(f"  spread {spread}, tolerance {c.tolerance:g} s: {verdict}")
        return "\n".join(lines)


def estimate_tskip(
    frame: pl.LazyFrame | pl.DataFrame | BinnedCounts,
    config: TskipConfig = TskipConfig(),
    source: str = "<frame>",
) -> TskipResult:
    """Estimate T_skip overall and per group, and test whether one fits all.

    Parameters
    ----------
    frame : polars.LazyFrame, DataFrame or BinnedCounts
        Impressions (see :func:`bin_counts`) or counts already binned.
    config : TskipConfig
    source : str
        Name of the input for messages.

    Returns
    -------
    TskipResult

    Raises
    ------
    SchemaError
        Missing or mistyped columns, unreadable data, unusable values in
        strict mode.
    InsufficientDataError
        No rows, no actions, a group (or the table) with fewer than
        ``min_rows_per_group`` rows, or no bin that satisfies the rule.
    """
    counts = frame if isinstance(frame, BinnedCounts) else bin_counts(frame, config, source)
    source = counts.source
    # The pooled curve and every group's, in one pass (one interval computation).
    rows = [counts.total()] + ([counts] if config.by is not None else [])
    curve, *group_curves = _bayes_curves(
        [g for r in rows for g in r.groups], np.vstack([r.n for r in rows]), np.vstack([r.x for r in rows]), counts.edges, config
    )
    _require(curve, config, source, where="the table")
    t = threshold_from_curve(curve, config.eps, config.persist, config.min_bin_count)
    if t is None:
        raise InsufficientDataError(
            f"{source}: no dwell bin where P(action | dwell) stays above eps={config.eps:g} "
            f"for {config.persist} informative bins (n >= {config.min_bin_count}); "
            f"{curve.n_action_total:,} actions in {curve.n_total:,} impressions"
        )
    curves: dict[str, BayesCurve] = {}
    for gc in group_curves:
        _require(gc, config, source, where=f"{config.by} {gc.group!r}")
        curves[gc.group] = gc
    groups = _group_thresholds(list(curves.values()), t, config)
    found = [gt.threshold_s for gt in groups.values() if gt.threshold_s is not None]
    spread = float(max(found) - min(found)) if found else None
    dev = float(max(abs(v - t) for v in found)) if found else None
    consistent = all(gt.fits for gt in groups.values())
    return TskipResult(
        t_skip_s=t,
        curve=curve,
        groups=groups,
        group_curves=curves,
        spread_s=spread,
        max_deviation_s=dev,
        consistent=consistent,
        config=config,
        n_rows=curve.n_total,
        dropped=dict(counts.dropped),
        source=source,
    )


def _require(curve: BayesCurve, config: TskipConfig, source: str, where: str) -> None:
    cols = ", ".join(repr(c) for c in config.action_cols)
    if curve.n_total < config.min_rows_per_group:
        raise InsufficientDataError(
            f"{source}: {where} has {curve.n_total:,} impressions with usable '{config.dwell_col}', "
            f"fewer than min_rows_per_group={config.min_rows_per_group:,} needed for a stable curve"
        )
    if curve.n_action_total == 0:
        raise InsufficientDataError(f"{source}: {where} has no actions at all (none of {cols} is true)")


def _group_thresholds(curves: list[BayesCurve], t_skip: float, config: TskipConfig) -> dict[str, GroupThreshold]:
    """Each group's own threshold and how the overall T_skip fits it (one interval computation)."""
    below = curves[0].edges[:-1] < t_skip - 1e-12 if curves else np.zeros(0, dtype=bool)  # edges are shared
    n_below = np.array([int(c.n[below].sum()) for c in curves], dtype=np.int64)
    x_below = np.array([int(c.n_action[below].sum()) for c in curves], dtype=np.int64)
    hi = np.full(len(curves), np.nan)
    has = n_below > 0
    if has.any():
        hi[has] = _confint(x_below[has], n_below[has], config.alpha, config.ci_method)[1]
    out = {}
    for c, nb, xb, h in zip(curves, n_below, x_below, hi):
        thr = threshold_from_curve(c, config.eps, config.persist, config.min_bin_count)
        out[c.group] = GroupThreshold(
            group=c.group,
            threshold_s=thr,
            n=c.n_total,
            n_action=c.n_action_total,
            n_below=int(nb),
            n_action_below=int(xb),
            rate_below_ci_high=float(h),
            fits=thr is not None and abs(thr - t_skip) <= config.tolerance + 1e-9,
        )
    return out


def estimate_tskip_file(path: str | os.PathLike[str], config: TskipConfig = TskipConfig()) -> TskipResult:
    """:func:`estimate_tskip` on an impressions Parquet file or dataset directory, streamed.

    ``path`` is one file or a directory of Parquet part files, with Hive
    ``key=value`` directories read as columns (so ``--by`` can name one).
    Files are checked by ``dwellrank_logs.io.open_parquet`` (missing, empty or
    unreadable Parquet, parts that disagree on their schema), the columns of
    the impressions schema it uses by ``dwellrank_logs.schema.validate_frame`` (wrong
    types), and columns outside the schema by :func:`bin_counts`.  Messages
    start with the file path.
    """
    p = Path(path)
    known = TABLES["impressions"].names
    cols = tuple(c for c in (config.dwell_col, *config.action_cols, *((config.by,) if config.by else ())) if c in known)
    # One scan, its footer read once: the checks below reuse its schema.  Each fresh scan of a
    # large file's footer costs about a millisecond, a visible share of the estimate.
    lf = open_parquet(p, "impressions")  # file exists, non-empty, Parquet
    schema = lf.collect_schema()
    present = tuple(c for c in cols if c in schema and schema[c] != pl.Null)
    if present:
        validate_frame(lf, "impressions", source=str(p), columns=present, check_domains=False)  # schema messages
    # Compute on the plain scan: bin_counts casts only what needs it (cheaper than the canonical casts).
    return estimate_tskip(lf, config, source=str(p))


# ---------------------------------------------------------------- skip label


def skip_label_expr(t_skip_s: float, dwell_col: str = "dwell_s", action_cols: Sequence[str] = ACTION_COLUMNS) -> pl.Expr:
    """True where an impression is *skipped*: dwell < T_skip and no action.

    :func:`dwellrank_logs.protocol.skip_label_expr` (the one definition) with
    ``t_skip_s`` checked.

    Parameters
    ----------
    t_skip_s : float, seconds
    dwell_col : str
    action_cols : sequence of str
        Default: click and viral actions.
    """
    check_number("t_skip_s", t_skip_s)
    return _skip_label_expr(t_skip_s, dwell_col, action_cols)


def add_skip_label(
    frame: pl.LazyFrame | pl.DataFrame,
    t_skip_s: float,
    dwell_col: str = "dwell_s",
    action_cols: Sequence[str] = ACTION_COLUMNS,
    name: str = "skipped",
) -> pl.LazyFrame | pl.DataFrame:
    """``frame`` with a Boolean ``name`` column from :func:`skip_label_expr` (same frame type)."""
    return frame.with_columns(skip_label_expr(t_skip_s, dwell_col, action_cols).alias(name))


class TskipEstimator:
    """Thin wrapper: ``fit`` estimates T_skip, ``label`` applies the skip label.

    Attributes
    ----------
    result_ : TskipResult
    t_skip_s_ : float, seconds
    """

    def __init__(self, config: TskipConfig = TskipConfig()) -> None:
        self.config = config

    def fit(self, frame: pl.LazyFrame | pl.DataFrame, source: str = "<frame>") -> TskipEstimator:
        self.result_ = estimate_tskip(frame, self.config, source)
        self.t_skip_s_ = self.result_.t_skip_s
        return self

    def label(self, frame: pl.LazyFrame | pl.DataFrame, name: str = "skipped") -> pl.LazyFrame | pl.DataFrame:
        if not hasattr(self, "t_skip_s_"):
            raise ConfigError("TskipEstimator is not fitted; call fit(frame) first")
        return add_skip_label(frame, self.t_skip_s_, self.config.dwell_col, self.config.action_cols, name)
