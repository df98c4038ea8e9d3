"""GLMix P(skip) random effects fitted on Spark: the per-entity fits grouped by entity id.

The Spark twin of :func:`ranking.glmix_pskip.fit_pskip_glmix` for ``train
--engine spark --pskip-glmix``.  The fixed effect is the skip head, fitted on
the driver from the training frame (or its sample) and not refitted; its logit
is computed on the executors (``mapInArrow``, the head broadcast once) and
written with each row's keys, label, update type and topic as narrow Parquet
rows.  Each random-effect block is then refitted by block coordinate descent
exactly as :class:`ranking.glmix.GlmixModel` does, but with the rows shuffled
by entity: ``groupBy(trial, bucket of the entity id).applyInArrow`` hands each
Python worker the rows of whole entities, which it fits with the numpy
solver's own functions (:func:`ranking.glmix_solve.sort_block`,
:func:`~ranking.glmix_solve.newton_fit`) on the group's arrays, the designs
built by :func:`ranking.glmix_data.glmix_designs`.  The offsets (the head's
logit plus the other blocks' scores) are computed in the workers from the
other blocks' coefficient tables, joined to the rows by entity id.  Each
block's coefficient table (a row per entity) is written as Parquet by the
executors and read back by the next job; the prior-variance trials of
:func:`ranking.glmix_select.select_prior_variances` run side by side as a
``trial`` key of the same jobs.

What reaches the driver: the topic ids, a few row counts and day bounds,
per (trial, pass, block) the Newton steps and the training log loss, the
validation log loss of each trial, the final coefficient tables (a row per
entity), and the held-out rows' label, offset and ids for the held-out
metrics (from the frame the driver already reads for the heads: all of its
held-out rows, or those of its ``max_rows`` sample).  The impressions of the
training days never do.

One difference from the numpy pass: a group's Newton steps stop when no
coefficient of *its* entities moved more than ``newton_tol``, the numpy pass's
when none of *all* entities did.  Near the optimum the steps shrink
quadratically, so the steps a group leaves out are far below ``newton_tol``
(the parity test measures the difference).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from dwellrank_logs.checks import require_columns
from dwellrank_logs.errors import DwellrankError, SchemaError
from dwellrank_logs.spark_tables import spark_message
from ranking.features import FeatureSet
from ranking.features.frame_file import FRAME_ORDER
from ranking.glmix import EffectDesign, GlmixBlock, GlmixConfig, GlmixModel
from ranking.glmix_data import MEMBER_TYPE_FEATURES, glmix_designs, topic_features
from ranking.glmix_pskip import (
    UPDATE_FEATURES,
    PskipGlmix,
    PskipGlmixConfig,
    check_selection_split,
    held_out_record,
    pskip_record,
)
from ranking.glmix_solve import block_scores, newton_fit, sort_block
from ranking.heads import GBDTLRHead

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["ROWS_PER_GROUP", "fit_pskip_glmix_spark", "glmix_rows_spark"]

#: Rows of one (trial, bucket) group at most, about: what one Python worker fits at once.
ROWS_PER_GROUP = 250_000
#: Each block's entity id column.
ENTITY = {"member": "member_id", "update": "update_id"}
#: The columns of the rows the fits read (written once, read by every job).
_ROW_COLUMNS = (*FRAME_ORDER, "member_id", "skip", *MEMBER_TYPE_FEATURES)


@dataclass(frozen=True)
class _Plan:
    """What every job of one fit needs: the rows, the blocks in fitting order, the topics, the solver's settings."""

    rows: str  # URI of the rows' Parquet
    blocks: tuple[str, ...]
    topics: tuple[int, ...]
    glmix: GlmixConfig
    n_buckets: int
    scratch: Path


def glmix_rows_spark(frame: DataFrame, head: GBDTLRHead, feature_set: FeatureSet, updates: DataFrame, spark: SparkSession) -> DataFrame:
    """Each training-frame row's keys, ``skip``, ``type_*``, its update's ``topic`` and the skip head's logit ``offset``, lazily.

    The logit is :meth:`~ranking.heads.GBDTLRHead.decision_function` of the
    row's feature columns (one thread, as on the driver), per Arrow batch
    with the head broadcast once.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    cols = list(feature_set.columns)
    keys = list(_ROW_COLUMNS)
    bc = spark.sparkContext.broadcast((head, cols))
    narrow = frame.select(*dict.fromkeys([*keys, *cols]))
    fields = [narrow.schema[k] for k in keys] + [T.StructField("offset", T.DoubleType(), False)]

    def offsets(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        h, names = bc.value
        for batch in batches:
            if batch.num_rows == 0:
                continue
            X = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in names]).astype(np.float64)
            arrays = [batch.column(k) for k in keys] + [pa.array(h.decision_function(X), pa.float64())]
            yield pa.RecordBatch.from_arrays(arrays, names=[*keys, "offset"])

    with warnings.catch_warnings():
        # pyspark checks its pandas version for Arrow UDFs and warns on pandas >= 3 (no pandas is used here).
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        scored = narrow.mapInArrow(offsets, T.StructType(fields))
    topic = updates.select(F.col("update_id").cast("long").alias("update_id"), F.col("topic").cast("long").alias("topic"))
    return scored.join(topic, on="update_id", how="left")


def fit_pskip_glmix_spark(
    frame: DataFrame,
    head: GBDTLRHead,
    updates: DataFrame,
    last_train: int,
    feature_set: FeatureSet,
    world: str | None,
    scratch: Path,
    config: PskipGlmixConfig | None = None,
    seed: int | None = None,
    test_keys: pl.DataFrame | None = None,
) -> tuple[PskipGlmix, dict[str, Any]]:
    """:func:`~ranking.glmix_pskip.fit_pskip_glmix` on Spark: the same random effects, record and held-out metrics.

    Parameters
    ----------
    frame : pyspark.sql.DataFrame
        The training frame (training and held-out days), as
        :func:`~ranking.features.spark_training.write_training_frame_spark` writes it.
    head : GBDTLRHead
        The skip head (the fixed effect), fitted on the driver.
    updates : pyspark.sql.DataFrame
        The logs' updates table (``update_id``, ``topic``).
    last_train : int
        The last training day (days since 1970-01-01): later rows are the held-out ones.
    feature_set : FeatureSet
    world : str or None
        The members' world fingerprint, recorded.
    scratch : Path
        A local directory (shared with the executors) for the rows and the coefficient tables.
    config : PskipGlmixConfig, optional
    seed : int, optional
        The model's seed, recorded.
    test_keys : polars.DataFrame, optional
        (request_id, update_id) of the held-out rows to score (the driver's
        sample); default every held-out row.
    """
    from pyspark.sql import functions as F

    require_columns(frame.columns, ("member_id", "update_id", *MEMBER_TYPE_FEATURES), "training frame", "glmix_designs")
    require_columns(updates.columns, ("update_id", "topic"), "updates table", "glmix_designs")
    cfg = config or PskipGlmixConfig()
    spark = frame.sparkSession
    blocks = tuple(b for b in ENTITY if b in cfg.blocks)
    fit_cut = last_train - cfg.valid_days
    day = F.col("day")
    fit_rows, valid_rows = day <= fit_cut, (day > fit_cut) & (day <= last_train)
    stats = _action(
        lambda: frame.agg(
            *[F.sum(F.when(c, 1).otherwise(0)).alias(f"n_{k}") for k, c in (("fit", fit_rows), ("valid", valid_rows))],
            F.sum(F.when(day <= last_train, F.col("skip").cast("long")).otherwise(0)).alias("skips"),
            *[F.min(F.when(c, day)).alias(f"{k}_lo") for k, c in (("fit", fit_rows), ("valid", valid_rows))],
            *[F.max(F.when(c, day)).alias(f"{k}_hi") for k, c in (("fit", fit_rows), ("valid", valid_rows))],
        ).collect()[0]
    )
    n_fit, n_valid = int(stats["n_fit"] or 0), int(stats["n_valid"] or 0)
    check_selection_split(n_fit, n_valid, cfg.valid_days)  # before any fit, as on polars
    topic = updates.select(F.col("topic").cast("long").alias("topic")).where(F.col("topic").isNotNull()).distinct()
    topics = tuple(sorted(int(r["topic"]) for r in _action(topic.collect)))
    uri = "file://" + str((scratch / "rows").absolute())
    rows = glmix_rows_spark(frame, head, feature_set, updates, spark)
    _action(lambda: rows.write.mode("overwrite").parquet(uri))
    n_train = n_fit + n_valid
    buckets = max(spark.sparkContext.defaultParallelism, math.ceil(n_train / ROWS_PER_GROUP))
    plan = _Plan(uri, blocks, topics, cfg.glmix, buckets, scratch)

    # The prior variances: block by block, every grid value fitted on the fit days (one trial each, side by side).
    chosen = cfg.glmix
    table: list[dict[str, Any]] = []
    for b in blocks:
        trials = [chosen.with_variance(b, v) for v in cfg.grid]
        fits = _fit_trials(plan, fit_rows, n_fit, trials, f"select-{b}", spark, history=False)
        losses = _valid_losses(plan, valid_rows, fits, spark)
        table += [{"block": b, "prior_var": float(v), "valid_log_loss": loss} for v, loss in zip(cfg.grid, losses, strict=True)]
        chosen = chosen.with_variance(b, float(cfg.grid[int(np.argmin(losses))]))
    final = _fit_trials(plan, day <= last_train, n_train, [chosen], "final", spark, history=True)[0]
    model = GlmixModel(chosen)
    model.history_ = final.history
    model.blocks_ = {b: _collect_block(final.paths[b], b, topics, chosen.variance(b), spark) for b in blocks}
    model.world_ = world
    pskip = PskipGlmix(model, topics, feature_set, blocks)

    # The held-out metrics on the driver, from the held-out rows' narrow columns (label, offset, ids, type, topic).
    test = pl.scan_parquet(str(scratch / "rows" / "*.parquet")).filter(pl.col("day") > last_train)
    if test_keys is not None:
        test = test.join(test_keys.lazy(), on=["request_id", "update_id"], how="semi")
    held = test.sort(FRAME_ORDER).collect()
    y_te = held["skip"].cast(pl.Float64).to_numpy()
    test_days = _days(int(held["day"].min()), int(held["day"].max())) if held.height else None  # type: ignore[arg-type]
    rate = int(stats["skips"]) / n_train  # the training rows' skip rate, exact: an integer count over the row count
    held_out = held_out_record(model, _designs(held, topics, blocks), y_te, held["offset"].to_numpy(), test_days, rate, seed)
    selection = {
        "fit_days": _days(int(stats["fit_lo"]), int(stats["fit_hi"])),
        "valid_days": _days(int(stats["valid_lo"]), int(stats["valid_hi"])),
        "n_fit": n_fit,
        "n_valid": n_valid,
    }
    return pskip, pskip_record(pskip, cfg, chosen, table, selection, held_out)


@dataclass(frozen=True)
class _Fit:
    """One trial's result: each block's coefficient table (Parquet URI, trial column kept) and the fit's history."""

    trial: int
    paths: dict[str, str]
    history: list[dict[str, Any]]


def _fit_trials(
    plan: _Plan, where: Column, n_rows: int, trials: Sequence[GlmixConfig], tag: str, spark: SparkSession, history: bool
) -> list[_Fit]:
    """Block coordinate descent of every trial (its own prior variances) on the ``n_rows`` rows ``where`` holds, side by side.

    With ``history``, each (pass, block)'s Newton steps and training log loss
    (one small aggregation of the coefficient table per block fit).
    """
    from pyspark.sql import functions as F

    base = spark.read.parquet(plan.rows).where(where)
    ids = spark.range(len(trials)).select(F.col("id").cast("int").alias("trial"))
    rows = base.crossJoin(F.broadcast(ids))
    variances = [{b: t.variance(b) for b in plan.blocks} for t in trials]
    paths: dict[str, str] = {}
    records: list[list[dict[str, Any]]] = [[] for _ in trials]
    for k in range(plan.glmix.n_passes):
        for b in plan.blocks:
            joined = _with_coefficients(rows, paths, spark)
            bucket = F.pmod(F.xxhash64(ENTITY[b]), F.lit(plan.n_buckets)).alias("_bucket")
            fit = _group_fitter(b, plan, variances, tuple(paths))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
                out = joined.groupBy("trial", bucket).applyInArrow(fit, "trial int, id long, coef array<double>, steps int, loss double")
            path = "file://" + str((plan.scratch / f"{tag}-pass{k}-{b}").absolute())
            _action(lambda out=out, path=path: out.write.mode("overwrite").parquet(path))
            paths[b] = path
            if not history:
                continue
            rec = _action(
                lambda path=path: (
                    spark.read.parquet(path).groupBy("trial").agg(F.max("steps").alias("steps"), F.sum("loss").alias("loss")).collect()
                )
            )
            for r in sorted(rec, key=lambda r: int(r["trial"])):
                records[int(r["trial"])].append(
                    {"pass": k, "block": b, "newton_steps": int(r["steps"]), "train_log_loss": float(r["loss"]) / n_rows}
                )
    return [_Fit(t, dict(paths), records[t]) for t in range(len(trials))]


def _with_coefficients(rows: DataFrame, paths: dict[str, str], spark: SparkSession) -> DataFrame:
    """``rows`` with each fitted block's coefficients of the row's entity (``c_<block>``, null where none) joined on (trial, id)."""
    from pyspark.sql import functions as F

    for b, path in paths.items():
        coef = spark.read.parquet(path).select("trial", F.col("id").alias(ENTITY[b]), F.col("coef").alias(f"c_{b}"))
        rows = rows.join(coef, on=["trial", ENTITY[b]], how="left")
    return rows


def _designs(frame: pl.DataFrame, topics: Sequence[int], blocks: Sequence[str]) -> list[EffectDesign]:
    """The blocks' designs of rows carrying their update's topic (:func:`~ranking.glmix_data.glmix_designs`)."""
    updates = frame.select("update_id", "topic").unique()
    return [d for d in glmix_designs(frame, updates, topics, UPDATE_FEATURES) if d.name in blocks]


def _coef_rows(table: pl.DataFrame, column: str, p: int) -> tuple[np.ndarray, np.ndarray]:
    """The (n_rows, p) coefficients of each row's entity from a list column (zeros where null), and which rows had some."""
    n = table.height
    if column not in table.columns:
        return np.zeros((n, p)), np.zeros(n, dtype=bool)
    col = table[column]
    known = col.is_not_null().to_numpy()
    out = np.zeros((n, p))
    if known.any():
        out[known] = col.filter(col.is_not_null()).explode().to_numpy().astype(np.float64).reshape(-1, p)
    return out, known


def _row_scores(X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``x_i . b_i`` per row, summed over the features in order as :func:`~ranking.glmix_solve.block_scores` sums them."""
    out = np.zeros(X.shape[0])
    for j in range(X.shape[1]):
        out += X[:, j] * coef[:, j]
    return out


def _group_fitter(block: str, plan: _Plan, variances: list[dict[str, float]], with_coef: tuple[str, ...]) -> Any:
    """:func:`_fit_group` as a function of (key, table) alone, unannotated: pyspark reads a UDF's kind from its
    annotations (and fails on a ``functools.partial``), and takes the plain two-argument form for Arrow tables.
    """

    def fit(key, table):
        return _fit_group(key, table, block, plan, variances, with_coef)

    return fit


def _fit_group(
    key: tuple[Any, ...], table: pa.Table, block: str, plan: _Plan, variances: list[dict[str, float]], with_coef: tuple[str, ...]
) -> pa.Table:
    """Runs in Spark's Python workers: one block's fits of the entities of one (trial, bucket) group.

    The rows are put in the training frame's order within each entity (as
    the numpy pass's stable sort by entity leaves them), so every segment sum
    adds the same terms in the same order.
    """
    import pyarrow as pa

    trial = int(key[0].as_py())
    frame = pl.DataFrame(pl.from_arrow(table)).sort(ENTITY[block], *FRAME_ORDER)
    designs = {d.name: d for d in _designs(frame, plan.topics, plan.blocks)}
    d = designs[block]
    offset = frame["offset"].to_numpy().astype(np.float64)  # the fixed effect plus the other blocks' scores, in block order
    for name in plan.blocks:
        if name != block and name in with_coef:
            offset = offset + _row_scores(designs[name].X, _coef_rows(frame, f"c_{name}", designs[name].X.shape[1])[0])
    sb = sort_block(d.ids, d.X)  # already sorted: the identity permutation
    coef0 = _coef_rows(frame, f"c_{block}", d.X.shape[1])[0][sb.starts[:-1]] if block in with_coef else None
    y = frame["skip"].cast(pl.Float64).to_numpy()[sb.perm]
    g = plan.glmix
    coef, steps = newton_fit(sb, y, offset[sb.perm], variances[trial][block], coef0, g.max_newton, g.newton_tol, g.max_step, g.chunk_rows)
    eta = offset[sb.perm] + block_scores(sb, coef, g.chunk_rows)
    loss = np.add.reduceat(np.logaddexp(0.0, eta) - y * eta, sb.starts[:-1]) if eta.size else np.zeros(0)
    p = coef.shape[1]
    coefs = pa.ListArray.from_arrays(pa.array(np.arange(0, (sb.ids.size + 1) * p, p), pa.int32()), pa.array(coef.ravel(), pa.float64()))
    return pa.table(
        {
            "trial": pa.array(np.full(sb.ids.size, trial), pa.int32()),
            "id": pa.array(sb.ids, pa.int64()),
            "coef": coefs,
            "steps": pa.array(np.full(sb.ids.size, steps), pa.int32()),
            "loss": pa.array(loss, pa.float64()),
        }
    )


def _valid_losses(plan: _Plan, where: Column, fits: Sequence[_Fit], spark: SparkSession) -> list[float]:
    """Each trial's validation log loss: the rows ``where`` holds scored as :meth:`GlmixModel.decision_function` scores them."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    base = spark.read.parquet(plan.rows).where(where)
    ids = spark.range(len(fits)).select(F.col("id").cast("int").alias("trial"))
    rows = base.crossJoin(F.broadcast(ids))
    for b in plan.blocks:  # every trial's final coefficients of the block: one table (the trials fitted side by side)
        coef = spark.read.parquet(fits[0].paths[b])
        rows = rows.join(
            coef.select("trial", F.col("id").alias(ENTITY[b]), F.col("coef").alias(f"c_{b}")), on=["trial", ENTITY[b]], how="left"
        )
    schema = T.StructType(
        [T.StructField("trial", T.IntegerType()), T.StructField("loss", T.DoubleType()), T.StructField("n", T.LongType())]
    )
    n_trials = len(fits)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _loss_batches(batches, plan, n_trials)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        sums = rows.mapInArrow(score, schema).groupBy("trial").agg(F.sum("loss").alias("loss"), F.sum("n").alias("n"))
    got = {int(r["trial"]): float(r["loss"]) / int(r["n"]) for r in _action(sums.collect)}
    return [got[f.trial] for f in fits]


def _loss_batches(batches: Iterator[pa.RecordBatch], plan: _Plan, n_trials: int) -> Iterator[pa.RecordBatch]:
    """Runs in Spark's Python workers: per trial, the summed log loss and row count of each batch."""
    import pyarrow as pa

    for batch in batches:
        if batch.num_rows == 0:
            continue
        frame = pl.DataFrame(pl.from_arrow(batch))
        offset = frame["offset"].to_numpy().astype(np.float64)
        total = np.zeros(frame.height)
        for d in _designs(frame, plan.topics, plan.blocks):  # as GlmixModel.random_effect adds them; unseen entities add 0
            coef, known = _coef_rows(frame, f"c_{d.name}", d.X.shape[1])
            total += np.where(known, np.einsum("ij,ij->i", d.X, coef), 0.0)
        logit = offset + total
        y = frame["skip"].cast(pl.Float64).to_numpy()
        trial = frame["trial"].to_numpy()
        loss = np.bincount(trial, weights=np.logaddexp(0.0, logit) - y * logit, minlength=n_trials)
        n = np.bincount(trial, minlength=n_trials)
        yield pa.RecordBatch.from_arrays(
            [pa.array(np.arange(n_trials), pa.int32()), pa.array(loss, pa.float64()), pa.array(n, pa.int64())], names=["trial", "loss", "n"]
        )


def _collect_block(path: str, block: str, topics: Sequence[int], prior_var: float, spark: SparkSession) -> GlmixBlock:
    """A fitted block's coefficient table on the driver: ids ascending, coefficients (n_entities, p)."""
    features = (*MEMBER_TYPE_FEATURES, *topic_features(topics)) if block == "member" else UPDATE_FEATURES
    table = pl.DataFrame(pl.from_arrow(_action(lambda: spark.read.parquet(path).select("id", "coef").toArrow()))).sort("id")
    coef = table["coef"].explode().to_numpy().astype(np.float64).reshape(table.height, len(features))
    return GlmixBlock(block, ENTITY[block], tuple(features), prior_var, table["id"].to_numpy().astype(np.int64), coef)


def _days(lo: int, hi: int) -> list[str]:
    import datetime as dt

    return [(dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat() for d in (lo, hi)]


def _action(run: Any) -> Any:
    """A Spark action, its failure (a worker's Python error, a read error) as one line without the JVM's trace."""
    try:
        return run()
    except DwellrankError:
        raise
    except Exception as exc:
        raise SchemaError(f"GLMix P(skip) on Spark failed ({spark_message(exc)})") from exc
