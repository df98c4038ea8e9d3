"""Training within a memory budget: the frame built chunk by chunk, the heads fitted from per-head samples.

:func:`train_ranker` (:mod:`ranking.train`) estimates, from the row count
alone (:func:`full_frame_bytes`), what the in-memory frame would take; when
that exceeds the budget, or a sample rate is given, :func:`fit_within_budget`
takes over.  It streams the raw frame a few days at a time
(:mod:`ranking.features.chunked`), draws one uniform number per row and keeps
only the rows some head, the regressions or the held-out set needs (the
plans of :mod:`ranking.sampling`, sized so that the largest fit stays within
the budget), then fits each head from its own sample, recalibrated with He et
al.'s map, with the seeds of the in-memory path.  The sizes are estimated
before any row is read; when even a sample cannot fit, a
:class:`~ranking.sampling.ResourceError` says so and by how much.

The per-row costs below were measured with ``/usr/bin/time -v`` on the
default world (5,000 members x 28 days, 888K impressions: 2.49 GB peak for
the in-memory path, about 0.4 GB of it the interpreter and libraries).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

import numpy as np
import polars as pl

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.schema import ACTIONS
from ranking.features import FEATURE_SETS, get_feature_set
from ranking.features.catalogue import FeatureSet
from ranking.features.chunked import IMPRESSION_BYTES, RAW_WIDTHS, check_orphans, frame_from_raw, hour_counts, plan_chunks, raw_chunks
from ranking.features.evaluate import _derive
from ranking.features.training import _label_exprs
from ranking.heads import GBDTLRHead, HeadConfig, LogisticHead, fit_trees
from ranking.metrics import binary_metrics, calibration_bins
from ranking.model import HEADS, RankerModel
from ranking.report import roc_points
from ranking.sampling import HeadSample, ResourceError, format_bytes, plan_head, recalibrate
from ranking.value import default_weights

__all__ = ["BASE_BYTES", "STATE_BYTES_PER_ROW", "fit_within_budget", "full_frame_bytes"]

#: The interpreter, polars, LightGBM and scikit-learn before any data (measured about 0.4 GB; margin kept).
BASE_BYTES = 600 << 20
#: Peak bytes per impression of the in-memory path (joins, Float64 frame, X of train and test, the LR's design).
FULL_BYTES_PER_ROW = 2_800
#: Peak bytes per row of one head's fit (X as Float64, its transforms, the LR's sparse design, the trees' bins).
FIT_BYTES_PER_ROW = 2_400
#: Peak bytes per impression while a chunk is built (joins, within-chunk cumulative counts, the sort).
CHUNK_BYTES_PER_ROW = 1_600
#: Peak bytes per impression of the running per-key totals: about one member x author key (24 B) and half a
#: member x topic key (28 B) per impression, times three while a day's totals are merged into them.
STATE_BYTES_PER_ROW = 120
#: Fewer rows than this per head would not be a model worth fitting.
MIN_FIT_ROWS = 20_000
_KEPT_BYTES_PER_ROW = sum(RAW_WIDTHS.values()) + 8  # a kept raw row and its uniform draw


def full_frame_bytes(n_rows: int) -> int:
    """Estimated peak memory of the in-memory path on ``n_rows`` impressions (row count x measured width)."""
    return BASE_BYTES + n_rows * FULL_BYTES_PER_ROW


def _labels(raw: pl.DataFrame, t_skip_s: float, t_long_s: float) -> pl.DataFrame:
    return raw.select(*_label_exprs(t_skip_s, t_long_s))


def _matrix(raw: pl.DataFrame, fs: FeatureSet) -> np.ndarray:
    """The Float64 feature matrix of raw rows, from the one definition of each feature.

    Row-major, as the heads and LightGBM take it: a column-major matrix would be copied once more in each fit.
    """
    return _derive(raw, fs).collect().to_numpy(order="c")


def fit_within_budget(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
    days: pl.DataFrame,
    cfg: Any,
    profiles: pl.DataFrame,
    seeds: list[np.random.Generator],
    sample_rng: np.random.Generator,
    budget: int,
    sample: float | None = None,
) -> RankerModel:
    """The model of :func:`ranking.train.train_ranker` from per-head samples of the frame, within ``budget`` bytes.

    Parameters
    ----------
    tables : mapping of table name to frame
    days : polars.DataFrame
        :func:`ranking.features.chunked.day_counts` of the tables.
    cfg : ranking.train.TrainConfig
    profiles : polars.DataFrame
    seeds, sample_rng : Generators of the heads and regressions, and of the sample's draws
    budget : int, bytes
    sample : float, optional
        Keep rate of each head's majority label and of the regressions' rows
        (instead of the largest the budget allows).

    Raises
    ------
    ResourceError
        When one day's chunk, or the smallest useful sample, would exceed ``budget``.
    """
    from ranking.train import _fit_regressors, _metadata, _report, _skip_lift  # shared with train
    from ranking.weighting import head_weights, with_click_dwell

    fs = get_feature_set(cfg.feature_set)
    check_orphans(days)
    first, last = int(cast(int, days["day"].min())), int(cast(int, days["day"].max()))
    if last - first + 1 < cfg.holdout_days + 2:
        raise ConfigError(f"logs span {last - first + 1} day(s); training needs at least holdout_days + 2 = {cfg.holdout_days + 2}")
    cut = last - cfg.holdout_days
    tr = days.filter(pl.col("day") <= cut)
    n_rows, n_train = int(days["rows"].sum()), int(tr["rows"].sum())
    n_test = n_rows - n_train
    need = f"--max-memory {format_bytes(budget)}"
    # Held for the whole build: the running per-key totals (member x author keys are about one per impression)
    # and, where they fit in a small share of what remains, the impressions themselves; the chunks and the fits
    # share the rest.  (200,000 x 28 peaked at 12.1 GB under an 8G budget before these were counted.)
    avail = budget - BASE_BYTES - n_rows * STATE_BYTES_PER_ROW
    hold = n_rows * IMPRESSION_BYTES <= 0.4 * avail
    if hold:
        avail -= n_rows * IMPRESSION_BYTES
    chunk_rows = max(avail // 4, 0) // CHUNK_BYTES_PER_ROW
    # A day too large for one chunk is built in parts of whole hours; only an hour too large is refused.
    big = days.filter(pl.col("rows") > chunk_rows)["day"].to_list()
    hours = hour_counts(tables, big) if big else None
    if hours is not None and int(cast(int, hours["rows"].max())) > chunk_rows:
        biggest = int(cast(int, hours["rows"].max()))
        raise ResourceError(
            f"{need}: one hour of the logs holds {biggest:,} impressions and building it takes about "
            f"{format_bytes(BASE_BYTES + 4 * biggest * CHUNK_BYTES_PER_ROW)}; raise --max-memory"
        )
    test_row = 8 * len(fs.columns) + _KEPT_BYTES_PER_ROW
    test_rate = min(1.0, (avail / 4) / max(n_test * test_row, 1))
    max_fit = int((avail - n_test * test_rate * test_row) / (FIT_BYTES_PER_ROW + 2 * _KEPT_BYTES_PER_ROW))
    plans = {h: plan_head(h, n_train, int(tr[h].sum()), max_fit, sample) for h in HEADS}
    largest = max(int(p.positives_before * p.rate_pos + (p.rows_before - p.positives_before) * p.rate_neg) for p in plans.values())
    if max_fit < MIN_FIT_ROWS or largest > max(max_fit, MIN_FIT_ROWS):
        raise ResourceError(
            f"{need}: the training frame has {n_rows:,} impressions; a sample of {largest:,} rows per head "
            f"(each about {FIT_BYTES_PER_ROW:,} B to fit) needs about "
            f"{format_bytes(BASE_BYTES + largest * (FIT_BYTES_PER_ROW + 2 * _KEPT_BYTES_PER_ROW) + n_test * test_rate * test_row)}"
            f"{'' if sample is None else f' at --sample {sample}'}; raise --max-memory or lower --sample"
        )
    reg_rate = min(1.0, max_fit / max(n_train, 1)) if sample is None else sample

    # Impressions held once (narrow) and one day a chunk when they take a small share of the budget (above);
    # otherwise scanned again for each chunk of days, the slower way that holds only a chunk.
    kept = []
    for raw in raw_chunks(tables, cfg.t_skip_s, plan_chunks(days, 0 if hold else chunk_rows, hours, chunk_rows), hold):
        u = sample_rng.random(raw.height)  # one draw per row, in the frame's order: the samples nest
        lab = _labels(raw, cfg.t_skip_s, cfg.t_long_s)
        is_test = lab["day"].to_numpy() > cut
        keep = u < reg_rate
        for h, p in plans.items():
            keep |= p.keep(u, lab[h].to_numpy())
        keep = np.where(is_test, u < test_rate, keep)
        kept.append(raw.with_columns(pl.Series("_u", u)).filter(pl.Series(keep)))
        del raw, lab
    rows = pl.concat(kept)
    del kept
    train = rows.filter(pl.col("day") <= cut)
    if cfg.weighted:  # the kept rows' after-click dwell, for their weights
        train = with_click_dwell(train, tables["impressions"])
    test_frame = frame_from_raw(rows.filter(pl.col("day") > cut), fs, cfg.t_skip_s, cfg.t_long_s)
    del rows
    X_te = test_frame.select(fs.columns).to_numpy(order="c")
    test = test_frame.drop(fs.columns)
    del test_frame
    lab_tr = _labels(train, cfg.t_skip_s, cfg.t_long_s)
    u_tr = train["_u"].to_numpy()
    weight_rows = lab_tr.with_columns(train["click_dwell_s"]) if cfg.weighted else lab_tr

    heads: dict[str, GBDTLRHead] = {}
    report_heads: dict[str, Any] = {}
    records: dict[str, Any] = {}
    masks: dict[str, np.ndarray] = {}
    for i, h in enumerate(HEADS):
        plan = plans[h]
        masks[h] = mask = plan.keep(u_tr, lab_tr[h].to_numpy())
        X, y = _matrix(train.filter(pl.Series(mask)), fs), lab_tr[h].to_numpy()[mask]
        records[h] = plan.to_dict(int(y.size), int(y.sum()))
        # Dwell weights multiply the sample's rows (normalised over the kept rows, which hold every click when
        # clicks are the rarer label); the recalibration stays the sampling rates' shift alone.
        w = head_weights(cfg, h, weight_rows)
        w = None if w is None else w[mask]
        heads[h] = GBDTLRHead(cfg.head).fit(X, y, seeds[i], label=h, sample_weight=w).recalibrate(plan.shift, records[h])
        y_te = test[h].to_numpy()
        background = plan.positives_before / max(plan.rows_before, 1)  # the full training rate, not the sample's
        metrics = _metrics(X, y, X_te, y_te, cfg.head, seeds[i], heads[h], plan, background, cfg.baselines)
        p_te = heads[h].predict_proba(X_te)
        report_heads[h] = {"metrics": metrics, "calibration_bins": calibration_bins(y_te, p_te), "roc": roc_points(y_te, p_te)}
        del X

    uniform = u_tr < reg_rate
    regs, report_regs = _fit_regressors(_regression_rows(train, lab_tr, masks, uniform, test, X_te, fs), cfg, seeds)
    # The default weights from the uniform sample: recalibrated heads predict the full data's rates on it.
    X_r = _matrix(train.filter(pl.Series(uniform)), fs)
    weights = default_weights(RankerModel(fs, cfg.t_skip_s, heads, regs, None, None, {}).predict(X_r))  # type: ignore[arg-type]
    del X_r

    report = _report(cfg, first, last, n_train, n_test, report_heads, report_regs, weights.to_dict())
    if cfg.skip_lift and fs.uses_dwell:
        base = FEATURE_SETS["base"]
        sub = train.filter(pl.Series(masks["skip"]))
        base_head = GBDTLRHead(cfg.head).fit(_matrix(sub, base), lab_tr["skip"].to_numpy()[masks["skip"]], seeds[-1], label="skip")
        auc_base = binary_metrics(test["skip"].to_numpy(), base_head.predict_proba(_base_columns(X_te, fs, base)))["auc"]
        report["skip_dwell_lift"] = _skip_lift(auc_base, report_heads["skip"]["metrics"]["gbdt_lr"]["auc"])
    sampling = {
        "method": "per-head negative downsampling (He et al. 2014); uniform for the regressions and the held-out rows",
        "budget_bytes": budget,
        "sample": sample,
        "seed": cfg.seed,
        "draws": "one uniform per row, in the frame's order, from the child of seed after the heads' and regressions'",
        "heads": records,
        "regressions": {"rate": reg_rate, "rows_before": n_train, "rows_after": int(uniform.sum())},
        "held_out": {"rate": test_rate, "rows_before": n_test, "rows_after": test.height},
    }
    report["sampling"] = sampling
    source = {"engine": "polars", "frame_rows": n_rows, "sample_rows": int(train.height + test.height), "sampling": sampling}
    metadata = _metadata(cfg, first, last, n_rows, n_train, n_test, source, list(regs))
    return RankerModel(fs, cfg.t_skip_s, heads, regs, weights, profiles, metadata, report)


def _base_columns(X_te: np.ndarray, fs: FeatureSet, base: FeatureSet) -> np.ndarray:
    """The held-out matrix of the base set: its columns of ``X_te`` (the same definitions, a subset of ``fs``)."""
    idx = [fs.columns.index(c) for c in base.columns]
    return X_te[:, idx]


def _regression_rows(
    train: pl.DataFrame,
    lab: pl.DataFrame,
    masks: dict[str, np.ndarray],
    uniform: np.ndarray,
    test: pl.DataFrame,
    X_te: np.ndarray,
    fs: FeatureSet,
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The regressions' rows, in the in-memory path's order: each action's kept rows with it, then the uniform sample."""
    for a in ACTIONS:
        on = masks[a] & lab[a].to_numpy()  # the head kept all of its positives (or a uniform share of them)
        on_te = test[a].to_numpy()
        sub_lab = lab.filter(pl.Series(on))
        X = _matrix(train.filter(pl.Series(on)), fs)
        for t, target in (("down", "downstream"), ("up", "upstream")):
            yield f"{t}_{a}", X, sub_lab[target].to_numpy(), X_te[on_te], test[target].to_numpy()[on_te]
    yield "dwell", _matrix(train.filter(pl.Series(uniform)), fs), lab["dwell"].to_numpy()[uniform], X_te, test["dwell"].to_numpy()


def _metrics(
    X: np.ndarray,
    y: np.ndarray,
    X_te: np.ndarray,
    y_te: np.ndarray,
    config: HeadConfig,
    seed: np.random.Generator,
    head: GBDTLRHead,
    plan: HeadSample,
    background: float,
    baselines: bool,
) -> dict[str, dict[str, float]]:
    """:func:`ranking.metrics.compare_heads` for a head fitted on a sample.

    The baselines fitted on the same sample are recalibrated alike, and every
    normalised entropy uses the full training rate.
    """
    preds = {"gbdt_lr": head.predict_proba(X_te)}
    if baselines:
        lr = LogisticHead(config).fit(X, y).predict_proba(X_te)
        gbdt = cast(np.ndarray, fit_trees(X, y, config, seed).predict(X_te, num_threads=1))
        preds = {
            "constant": np.full(len(y_te), background),
            "lr_only": recalibrate(lr, plan.rate_pos, plan.rate_neg),
            "gbdt_only": recalibrate(gbdt, plan.rate_pos, plan.rate_neg),
            **preds,
        }
    return {name: binary_metrics(y_te, p, background=background) for name, p in preds.items()}
