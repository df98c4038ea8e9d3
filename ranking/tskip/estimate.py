"""T_skip from the binned counts: the threshold rule, the one-T_skip-per-type check, and the entry points.

Threshold rule (:func:`threshold_from_curve`): with bins ``[a_k, a_k + w)``,
counts ``n_k``, actions ``x_k`` and the ``1 - alpha`` binomial (Wilson)
interval ``[lo_k, hi_k]`` of ``x_k / n_k``, a bin is *informative* when
``n_k >= min_bin_count`` and *fires* when ``lo_k > eps``.  T_skip is the lower
edge ``a_k`` of the first informative bin that fires and whose next
``persist - 1`` informative bins also fire.  Sparse bins are skipped rather
than counted against a run (sparse tails); a single bin that fires by chance
below the real jump is not enough (noise); ``eps`` sits above the background
rate of accidental actions on truly skipped updates.

The overall T_skip is the threshold of the pooled curve; each group's own
threshold by the same rule is then compared with it (the post's check that one
T_skip serves every update type).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from dwellrank_logs.io import open_parquet
from dwellrank_logs.schema import TABLES, validate_frame
from ranking.tskip.config import DEFAULT_CONFIG, TskipConfig
from ranking.tskip.counts import BinnedCounts
from ranking.tskip.curve import BayesCurve, bayes_curves, binomial_interval
from ranking.tskip.errors import InsufficientDataError
from ranking.tskip.polars_counts import bin_counts
from ranking.tskip.result import GroupThreshold, TskipResult

__all__ = ["estimate_tskip", "estimate_tskip_file", "threshold_from_curve"]


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


def estimate_tskip(
    frame: pl.LazyFrame | pl.DataFrame | BinnedCounts,
    config: TskipConfig = DEFAULT_CONFIG,
    source: str = "<frame>",
) -> TskipResult:
    """Estimate T_skip overall and per group, and test whether one fits all.

    Parameters
    ----------
    frame : polars.LazyFrame, DataFrame or BinnedCounts
        Impressions (see :func:`~ranking.tskip.bin_counts`) or counts already binned.
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
    curve, *group_curves = bayes_curves(
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
        hi[has] = binomial_interval(x_below[has], n_below[has], config.alpha, config.ci_method)[1]
    out = {}
    for c, nb, xb, h in zip(curves, n_below, x_below, hi, strict=True):
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


def estimate_tskip_file(path: str | os.PathLike[str], config: TskipConfig = DEFAULT_CONFIG) -> TskipResult:
    """:func:`estimate_tskip` on an impressions Parquet file or dataset directory, streamed.

    ``path`` is one file or a directory of Parquet part files, with Hive
    ``key=value`` directories read as columns (so ``--by`` can name one).
    Files are checked by ``dwellrank_logs.io.open_parquet`` (missing, empty or
    unreadable Parquet, parts that disagree on their schema), the columns of
    the impressions schema it uses by ``dwellrank_logs.schema.validate_frame`` (wrong
    types), and columns outside the schema by :func:`~ranking.tskip.bin_counts`.
    Messages start with the file path.
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
