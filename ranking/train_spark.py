"""Training with the frame built on Spark: ``train --engine spark``.

The training frame is the heavy reduction (a row per impression with its
point-in-time counts): it is built by Spark
(:func:`~ranking.features.spark_training.write_training_frame_spark`) and
written as Parquet part files; the driver then reads it back, whole or as a
seeded sample of at most ``max_rows`` rows
(:func:`~ranking.features.frame_file.read_training_frame`), and fits the
heads with the code :func:`~ranking.train.train_ranker` uses.  Only the
members' profiles (a row per member) and the frame's row count are collected
from Spark.  With ``pskip_glmix`` the GLMix random effects of P(skip) are then
fitted on Spark over every row of the frame, grouped by entity
(:func:`~ranking.spark_glmix.fit_pskip_glmix_spark`); their coefficient
tables come back to the driver.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dwellrank_logs.checks import check_positive_int
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.spark import require_pyspark
from ranking.features.frame_file import read_training_frame
from ranking.features.spark_tables import member_profiles_spark, read_logs_spark
from ranking.features.spark_training import _local_path, write_training_frame_spark
from ranking.glmix_pskip import PskipGlmixConfig, profiles_fingerprint
from ranking.model import RankerModel
from ranking.spark_glmix import fit_pskip_glmix_spark
from ranking.train import TrainConfig, _fit_frame_file, _seeds

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["train_ranker_spark"]


def train_ranker_spark(
    logs: str | os.PathLike[str] | Mapping[str, DataFrame],
    config: TrainConfig,
    spark: SparkSession | None = None,
    max_rows: int | None = None,
    frame_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> RankerModel:
    """:func:`~ranking.train.train_ranker` with the training frame built on Spark.

    Parameters
    ----------
    logs : path-like or mapping of table name to pyspark.sql.DataFrame
        A logs directory (local, or a URI Spark resolves), read by
        :func:`~ranking.features.spark_tables.read_logs_spark`, or the
        ``impressions``, ``sessions``, ``updates`` and ``members`` tables.
    config : TrainConfig
    spark : pyspark.sql.SparkSession, optional
        Reads a path; default the session active in this thread.
    max_rows : int, optional
        Fit from a uniform sample of at most this many rows of the frame
        (drawn by the seed's Generator); default every row.
    frame_dir : path-like, optional
        Where the frame's part files are written and kept (a local directory);
        default a temporary directory, removed after fitting.
    overwrite : bool
        Replace a non-empty ``frame_dir``.

    Returns
    -------
    RankerModel
        As :func:`~ranking.train.train_ranker`'s; ``metadata["data"]`` has
        ``engine: "spark"``, ``frame_rows`` and, with a sample, ``sample_rows``
        and ``sample_seed``.  On the full frame it equals the polars engine's
        model when no two impressions share a (day, ts), as on simulated logs.
        With ``config.pskip_glmix``, also its ``glmix/`` random effects and
        ``metadata["pskip"]`` record (coefficients within 1e-9; see
        ``docs/glmix.md``, *On Spark*); with ``max_rows`` the heads see the
        sample and the random effects every row.

    Raises
    ------
    ConfigError
        pyspark is not installed; no session; bad arguments.
    SchemaError, OutputExistsError
        As the functions it calls.
    """
    require_pyspark()
    from pyspark.sql import DataFrame, SparkSession

    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}")
    if max_rows is not None:
        check_positive_int("max_rows", max_rows)
    if isinstance(logs, (str, os.PathLike)):
        session = spark if spark is not None else SparkSession.getActiveSession()
        if session is None:
            raise ConfigError("reading logs on Spark needs a SparkSession: pass spark=..., e.g. dwellrank_logs.spark.local_session()")
        tables = read_logs_spark(logs, session)
    elif isinstance(logs, Mapping):
        bad = [name for name, t in logs.items() if not isinstance(t, DataFrame)]
        if bad:
            raise ConfigError(f"logs: table(s) {bad} are not Spark DataFrames; pass a logs directory or Spark DataFrames")
        tables = dict(logs)
    else:
        raise ConfigError(f"logs must be a logs directory or a mapping of Spark DataFrames, got {type(logs).__name__}")
    with tempfile.TemporaryDirectory(prefix="dwellrank-frame-") as scratch:
        path = Path(scratch) / "frame" if frame_dir is None else frame_dir
        write_training_frame_spark(tables, path, config.feature_set, config.t_skip_s, config.t_long_s, overwrite=overwrite)
        profiles = member_profiles_spark(tables["members"])
        if not config.pskip_glmix:
            return _fit_frame_file(path, profiles, config, max_rows)
        # The heads on the driver as without GLMix; then the random effects over the skip head's logit on Spark.
        model = _fit_frame_file(path, profiles, replace(config, pskip_glmix=False), max_rows)
        frame = _local_path(path)
        # The fit's rows and coefficient tables beside the frame: where the executors and the driver both see it.
        with tempfile.TemporaryDirectory(prefix=f".{frame.name}.glmix-", dir=frame.parent) as glmix_scratch:
            return _with_glmix(model, tables, frame, config, max_rows, Path(glmix_scratch))


def _with_glmix(
    model: RankerModel, tables: Mapping[str, DataFrame], frame: Path, config: TrainConfig, max_rows: int | None, scratch: Path
) -> RankerModel:
    """``model`` with GLMix P(skip) fitted on Spark (:func:`~ranking.spark_glmix.fit_pskip_glmix_spark`), recorded as the polars engine records it."""
    session = tables["impressions"].sparkSession
    fs = model.feature_set
    last_train = (dt.date.fromisoformat(model.report["split"]["train_days"][1]) - dt.date(1970, 1, 1)).days
    test_keys = None
    if model.metadata["data"]["sample_rows"] is not None:  # the held-out rows the heads were scored on: the sample's
        test_keys = read_training_frame(
            frame, fs, config.t_skip_s, config.t_long_s, max_rows, _seeds(config)[1], ("request_id", "update_id")
        )[0]
    model.glmix, model.metadata["pskip"] = fit_pskip_glmix_spark(
        session.read.parquet("file://" + str(frame.absolute())),
        model.heads["skip"],
        tables["updates"],
        last_train,
        fs,
        profiles_fingerprint(model.profiles),
        scratch,
        PskipGlmixConfig(valid_days=config.glmix_valid_days),
        seed=config.seed,
        test_keys=test_keys,
    )
    # train_config as the polars engine writes it with the option on (its keys in TrainConfig's order).
    written = model.metadata["train_config"]
    full = asdict(config)
    model.metadata["train_config"] = {k: written.get(k, full[k]) for k in full if k in written or k in ("pskip_glmix", "glmix_valid_days")}
    return model
