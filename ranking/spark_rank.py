"""Batch ranking on Spark: ``rank`` over a candidate table of any size, with the polars engine's scores and ranks.

The Spark engine of :func:`ranking.rank_candidates_file`:

1. candidates are checked on the Spark schema with the polars engine's
   messages (:mod:`ranking.spark_inputs`); each row gets an id in input order
   (``monotonically_increasing_id``: partition, then position in it), the
   tie-break of the ranks;
2. features are the given feature columns, or, when the candidates lack them
   and logs are given, the history counts before each request's UTC day
   joined in Spark (:func:`ranking.features.spark_online.candidate_features_spark`);
3. every prediction and the score come from the model's compiled forest and
   value function inside ``mapInArrow``: the model is broadcast once and
   unpickled once per Python worker, each Arrow batch is scored with numpy as
   :meth:`ranking.FeedRanker.score_frame` scores a frame (no per-row Python);
4. ``rank`` is ``row_number`` over ``Window.partitionBy("request_id")``
   ordered by descending score, then row id (polars' ordinal rank), filtered
   to ``top_k``;
5. the output is written as Parquet part files into a temporary directory
   renamed into place.

Only counts reach the driver (the checks, and the summary of the output).
The session comes from the caller; :func:`dwellrank_logs.spark.local_session`
builds one at the CLI boundary.  Spark's Python workers must import this
package (on a cluster: installed on the executors, or shipped with
``--py-files``) and run the driver's Python version.
"""

from __future__ import annotations

import copy
import os
import re
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from dwellrank_logs.errors import ConfigError, DwellrankError, OutputExistsError, SchemaError
from dwellrank_logs.io import atomic_dir, check_not_input, check_output_dir
from dwellrank_logs.spark import require_pyspark
from dwellrank_logs.spark_tables import col, session_of, spark_message
from ranking.features.spark_online import candidate_features_spark
from ranking.model import RankerModel
from ranking.model_io import load_model
from ranking.ranker import rank_within_requests
from ranking.spark_inputs import check_candidates_spark, check_features_spark, read_candidates_spark, read_logs_spark
from ranking.value import ValueWeights, value_function

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkRanking", "rank_candidates_spark", "score_frame_spark"]

_KEYS = ("request_id", "member_id", "update_id")
_ROW = "__dwellrank_row"


@dataclass(frozen=True)
class SparkRanking:
    """What :func:`rank_candidates_spark` wrote.

    Attributes
    ----------
    path : str
        The output directory of Parquet part files (as given).
    frame : pyspark.sql.DataFrame
        A lazy read of it.
    rows, requests : int
        Rows written and distinct ``request_id`` values (1 without that column).
    mean_score : float
    """

    path: str
    frame: DataFrame
    rows: int
    requests: int
    mean_score: float


def rank_candidates_spark(
    model_dir: str | os.PathLike[str],
    candidates: DataFrame | str | os.PathLike[str],
    out: str | os.PathLike[str],
    spark: SparkSession | None = None,
    top_k: int | None = None,
    logs: str | os.PathLike[str] | Mapping[str, DataFrame] | None = None,
    weights: ValueWeights | None = None,
    overwrite: bool = False,
) -> SparkRanking:
    """Score and rank a candidate table on Spark; the output of :func:`ranking.rank_candidates_file` as part files.

    Parameters
    ----------
    model_dir : path-like
        A model directory from ``dwellrank train``.
    candidates : pyspark.sql.DataFrame, str or path-like
        The model's feature columns (a ``position`` column is ignored: every
        row is scored at slot 0), or the candidate key columns
        (:data:`dwellrank_logs.protocol.CANDIDATE_COLUMNS`) with ``logs``.  A
        path is one Parquet file or a directory of part files, local or a URI
        Spark resolves (``hdfs://``, ``s3a://``).
    out : str or path-like
        Output directory of Parquet part files.  A plain path or ``file:``
        URI is written through :func:`dwellrank_logs.io.atomic_dir` (local
        mode, or a filesystem every executor mounts); another URI
        (``hdfs://``, ``s3a://``) through a temporary sibling renamed with
        Hadoop's FileSystem.
    spark : pyspark.sql.SparkSession, optional
        Default: the session active in this thread.
    top_k : int, optional
        Keep ranks <= top_k per request.
    logs : path-like or mapping of str to pyspark.sql.DataFrame, optional
        A logs directory (``<dir>/<table>.parquet``), or the impressions,
        sessions, updates and members tables as Spark DataFrames.
    weights : ValueWeights, optional
        Default: the model's.
    overwrite : bool
        Replace a non-empty ``out`` directory (refused otherwise, before any work).

    Returns
    -------
    SparkRanking
        Output columns and types as the polars engine's: request_id,
        member_id, update_id (those present, in their input types), ``p_*``,
        ``down_*``, ``up_*``, ``dwell``, ``score`` (double), ``rank`` (int,
        1 = best within request_id).  Rows are in part files, by request and
        rank within each.

    Raises
    ------
    ConfigError
        pyspark missing, no session, bad ``top_k``.
    SchemaError
        The polars engine's messages for missing, mistyped, null or
        non-finite input; a member without a profile; Spark failing to read.
    IncompatibleModelError, OutputExistsError
        As the polars engine.
    """
    require_pyspark()
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import functions as F

    if top_k is not None:
        rank_within_requests(_polars_zero(), top_k)  # validates top_k before any work
    out_src = os.fspath(out)
    local_out = _local_out(out_src)
    if local_out is not None:
        check_output_dir(local_out, overwrite, what="out")
        paths = {"candidates": candidates, "model": model_dir, "logs": logs}
        check_not_input(local_out, {k: v for k, v in paths.items() if isinstance(v, (str, os.PathLike))}, "out")
    session = session_of(spark, "ranking")
    model = load_model(model_dir)
    w = weights or model.weights
    fs = model.feature_set
    if isinstance(candidates, SparkFrame):
        frame, source = candidates, "<candidates>"
    elif isinstance(candidates, (str, os.PathLike)):
        frame, source = read_candidates_spark(candidates, session)
    else:
        raise ConfigError(f"candidates must be a Spark DataFrame or a Parquet path, got {type(candidates).__name__}")
    has_features = all(c in frame.columns for c in fs.columns if c != "position")
    if not has_features and logs is not None and model.embeddings is not None:
        raise ConfigError(
            f"{model_dir}: the model's feature set '{fs.name}' has dwell embeddings, which rank --engine spark does not "
            "derive from logs yet; give candidates with every feature column, or rank with --engine polars"
        )
    keys = [c for c in _KEYS if c in frame.columns]
    if has_features or logs is None:
        check_features_spark(frame, fs, source)
        frame = frame.withColumn(_ROW, F.monotonically_increasing_id())
        feats = frame.select(*keys, _ROW, *[(F.lit(0.0) if c == "position" else col(c).cast("double")).alias(c) for c in fs.columns])
    else:
        check_candidates_spark(frame, source)
        tables = read_logs_spark(logs, session)
        frame = frame.withColumn(_ROW, F.monotonically_increasing_id())
        key_types = {c: frame.schema[c].dataType for c in keys}
        canonical = frame.select(
            _ROW,
            *[F.col(c).cast("long").alias(c) for c in ("request_id", "member_id", "update_id", "author_id", "topic")],
            *[F.col(c).cast("string").alias(c) for c in ("update_type", "client")],
            "created_ts",
            "request_ts",
        )
        joined = candidate_features_spark(canonical, tables, fs, model.t_skip_s, keep=(*keys, _ROW))
        _check_profiles(canonical, tables["members"], source)
        feats = joined.select(*[F.col(c).cast(key_types[c]).alias(c) for c in keys], _ROW, *fs.columns)
    bc, names = _broadcast_model(model, w, session)
    try:
        _write(_rank(_score(feats, bc, names, (*keys, _ROW)), top_k, keys), out_src, session, overwrite, source)
    finally:
        bc.destroy()
    return _summary(session, out_src, keys)


def score_frame_spark(frame: DataFrame, model: RankerModel, weights: ValueWeights, keys: tuple[str, ...], spark: SparkSession) -> DataFrame:
    """Every prediction and the score of rows holding the model's feature columns (double, no nulls), lazily.

    ``keys`` columns pass through; the scores are those of
    :meth:`ranking.FeedRanker.score_frame` (the compiled forest at one thread,
    then :func:`ranking.value.value_function`), computed per Arrow batch in
    ``mapInArrow`` with the model broadcast once (released with the session;
    :func:`rank_candidates_spark` releases its own after writing).
    """
    return _score(frame, *_broadcast_model(model, weights, spark), keys)


def _broadcast_model(model: RankerModel, weights: ValueWeights, spark: SparkSession) -> tuple[Broadcast[Any], list[str]]:
    """(model without its profiles, weights, prediction names, feature columns) broadcast to the executors, and the names."""
    X0 = np.zeros((1, len(model.feature_set.columns)))
    names = list(model.predict(X0, 1))  # also compiles the forest on the driver: executors unpickle it ready
    light = copy.copy(model)
    light.profiles = model.profiles.clear()  # scoring reads no profile
    return spark.sparkContext.broadcast((light, weights, names, list(model.feature_set.columns))), names


def _score(frame: DataFrame, bc: Broadcast[Any], names: list[str], keys: tuple[str, ...]) -> DataFrame:
    from pyspark.sql import types as T

    fields = [frame.schema[k] for k in keys] + [T.StructField(n, T.DoubleType(), False) for n in (*names, "score")]
    with warnings.catch_warnings():
        # pyspark checks its pandas version for mapInArrow and warns on pandas >= 3 (no pandas is used here).
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        return frame.mapInArrow(lambda batches: _score_batches(batches, bc, keys), T.StructType(fields))


def _score_batches(batches: Iterator[pa.RecordBatch], bc: Broadcast[Any], keys: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    """Runs in Spark's Python workers: the model's predictions and score for each Arrow batch."""
    import pyarrow as pa

    model, weights, names, cols = bc.value  # unpickled once per worker process, then cached by pyspark
    for batch in batches:
        if batch.num_rows == 0:
            continue
        X = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in cols])  # (n_rows, n_features)
        preds = model.predict(X, 1)
        score = value_function(preds, weights)
        arrays = [batch.column(k) for k in keys] + [pa.array(preds[n], pa.float64()) for n in names] + [pa.array(score, pa.float64())]
        yield pa.RecordBatch.from_arrays(arrays, names=[*keys, *names, "score"])


def _rank(scored: DataFrame, top_k: int | None, keys: list[str]) -> DataFrame:
    """``rank`` within request_id (all rows form one request without it): descending score, then row id."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = (F.col("score").desc(), F.col(_ROW).asc())
    w = Window.partitionBy("request_id").orderBy(*order) if "request_id" in keys else Window.orderBy(*order)
    ranked = scored.withColumn("rank", F.row_number().over(w))
    if top_k is not None:
        ranked = ranked.where(F.col("rank") <= top_k)
    return ranked.drop(_ROW)


def _check_profiles(candidates: DataFrame, members: DataFrame, source: str) -> None:
    """The polars engine's error for candidates whose member has no profile (one small join on member ids)."""
    from pyspark.sql import functions as F

    ids = members.select(F.col("member_id").cast("long").alias("member_id"))
    unknown = candidates.select("member_id").distinct().join(ids, on="member_id", how="left_anti")
    try:
        n = unknown.count()
        first = [r["member_id"] for r in unknown.orderBy("member_id").limit(5).collect()] if n else []
    except DwellrankError:
        raise
    except Exception as exc:
        raise SchemaError(f"{source}: cannot join the candidates with the members table ({spark_message(exc)})") from exc
    if n:
        raise SchemaError(
            f"{source}: {n} member_id(s) have no profile in the members table "
            f"(first: {first}); member-side features need connections, tenure_days, ..."
        )


def _write(frame: DataFrame, out: str, spark: SparkSession, overwrite: bool, source: str) -> None:
    """Write ``frame`` as zstd Parquet part files to ``out``, via a temporary directory renamed into place."""

    def save(uri: str) -> None:
        try:
            frame.write.mode("overwrite").option("compression", "zstd").parquet(uri)
        except DwellrankError:
            raise
        except Exception as exc:  # a task failure: read errors, the scorer's Python errors, with JVM traces
            msg = _python_error(exc) or spark_message(exc)
            if "No module named" in msg:  # the workers' Python is not the driver's environment
                hint = (
                    f"Spark's Python workers run {spark.sparkContext.pythonExec}: set PYSPARK_PYTHON to a Python with dwellrank installed"
                )
                raise ConfigError(f"{source}: ranking on Spark failed ({msg}; {hint})") from exc
            raise SchemaError(f"{source}: ranking on Spark failed ({msg})") from exc

    local = _local_out(out)
    if local is not None:
        with atomic_dir(local, overwrite=overwrite) as tmp:
            save("file://" + str(Path(tmp).absolute()))
            for crc in Path(tmp).glob(".*.crc"):  # Hadoop's local checksums: readers of a directory take them for parts
                crc.unlink()
        return
    jvm = spark.sparkContext._jvm
    if jvm is None:
        raise ConfigError(f"{out}: writing to a URI needs a classic Spark session (with a JVM); give a local path")
    hpath = jvm.org.apache.hadoop.fs.Path
    target = hpath(out)
    fsys = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if fsys.exists(target) and not overwrite and fsys.listStatus(target):
        raise OutputExistsError(f"{out}: directory is not empty (pass --overwrite to replace it)")
    tmp = hpath(f"{out.rstrip('/')}._tmp-{uuid.uuid4().hex}")
    try:
        save(str(tmp))
        if fsys.exists(target):
            fsys.delete(target, True)
        if not fsys.rename(tmp, target):
            raise OutputExistsError(f"{out}: could not rename the finished output into place from {tmp}")
    finally:
        if fsys.exists(tmp):
            fsys.delete(tmp, True)


def _local_out(out: str) -> Path | None:
    """The local path of a plain path or ``file:`` URI; None for another filesystem (``hdfs://``, ``s3a://``)."""
    if "://" in out and not out.startswith("file:"):
        return None
    return Path(urlparse(out).path if out.startswith("file:") else out)


def _python_error(exc: BaseException) -> str | None:
    """The last line of a Python worker's traceback (``ValueError: ...``) in a Spark error, or None."""
    text = str(exc)
    if "Python worker" not in text:
        return None
    found = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*)$", text, flags=re.MULTILINE)
    return f"the Python worker raised {found[-1].strip()}" if found else None


def _summary(spark: SparkSession, out: str, keys: list[str]) -> SparkRanking:
    """Rows, requests and mean score of the written output (one aggregation over its part files)."""
    from pyspark.sql import functions as F

    local = _local_out(out)
    uri = out if local is None else "file://" + str(local.absolute())
    frame = spark.read.parquet(uri)
    aggs = [F.count(F.lit(1)).alias("n"), F.avg("score").alias("mean")]
    if "request_id" in keys:
        aggs.append(F.countDistinct("request_id").alias("req"))
    row = frame.agg(*aggs).collect()[0]
    requests = int(row["req"]) if "request_id" in keys else 1
    return SparkRanking(out, frame, int(row["n"]), requests, float(row["mean"]) if row["mean"] is not None else float("nan"))


def _polars_zero() -> Any:
    import polars as pl

    return pl.DataFrame({"score": [0.0]})
