"""The forecast verbs with the logs reduced on Spark (``dwellrank forecast ... --engine spark``).

The same steps as :mod:`engagement.workflows`, with two engine-specific
parts: the dataset is built by :func:`engagement.spark_dataset.build_dataset_spark`
(equal to the polars engine's) and the intents are mined by
:func:`engagement.spark_lda.mine_intents_spark` (Spark MLlib's online LDA).
DIGMN is fitted on the driver from the reduced arrays by the shared
:func:`engagement.forecaster.train_forecaster`.  The session comes from the
caller: the library never builds one.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from dwellrank_logs.checks import is_integer
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.io import check_output_dir
from dwellrank_logs.spark_tables import polars_schema
from engagement.config import DigmnConfig, ForecastTrainConfig, LdaConfig, WindowConfig, check_task
from engagement.dataset import EngagementData, check_member_columns
from engagement.experiment import MODELS, ModelResult, check_models
from engagement.features import MEMBER_COLUMNS
from engagement.forecaster import Forecaster, train_forecaster, write_scores
from engagement.inputs import split_members
from engagement.intents import Intents
from engagement.spark_dataset import build_dataset_spark, read_logs_spark
from engagement.spark_lda import SparkLdaConfig, mine_intents_spark
from engagement.workflows import check_scores_out, compare_mined, lda_generator

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["compare_on_logs_spark", "score_logs_spark", "train_on_logs_spark"]

Logs = str | os.PathLike[str] | Mapping[str, "DataFrame"]


def train_on_logs_spark(
    logs: Logs,
    out: str | os.PathLike[str],
    task: str,
    spark: SparkSession | None = None,
    seed: int | np.random.Generator = 0,
    window: WindowConfig | None = None,
    train_config: ForecastTrainConfig | None = None,
    digmn_config: DigmnConfig | None = None,
    lda_config: LdaConfig | None = None,
    lda_optimizer: SparkLdaConfig | None = None,
    overwrite: bool = False,
    progress: Callable[[int, float, float], None] | None = None,
) -> Forecaster:
    """:func:`engagement.train_on_logs` with the dataset and the intents on Spark; DIGMN fitted on the driver.

    Parameters
    ----------
    logs : path-like, str or mapping of table name to Spark DataFrame
        A logs directory (local, or a URI such as ``hdfs://...``) or the
        members, sessions, events and deliveries tables.
    out : path-like
        Model directory to write (as :func:`engagement.train_on_logs`).
    task : {"day", "session"}
    spark : SparkSession, optional
        Default the session active in this thread.
    seed : int or numpy.random.Generator
        As :func:`engagement.train_on_logs`: the same split and torch seed,
        and the LDA seeded from the child Generator the polars engine's LDA
        would get.
    window, train_config, digmn_config, lda_config : optional
        Defaults: the paper's settings.
    lda_optimizer : SparkLdaConfig, optional
        Spark's online LDA settings.
    overwrite : bool
        Replace a non-empty ``out``; without it such a directory is refused before any work.
    progress : callable, optional
        Called after each epoch with (epoch, train loss, validation loss).

    Returns
    -------
    Forecaster
        ``meta`` as the polars engine's, with ``"engine": "spark"``.
    """
    check_task(task)
    _check_seed(seed)
    check_output_dir(out, overwrite)
    data = build_dataset_spark(logs, window, spark)
    intents = mine_intents_spark(data.session_counts, _lda_rng(seed, data.n_members), lda_config, spark, lda_optimizer)
    fc, history, pca_input = train_forecaster(
        data,
        task,
        seed=seed,
        train_config=train_config,
        digmn_config=digmn_config,
        lda_config=lda_config,
        intents=intents,
        progress=progress,
    )
    fc.meta["engine"] = "spark"
    fc.save(out, overwrite=overwrite, history=history, pca=pca_input)
    return fc


def score_logs_spark(
    model_dir: str | os.PathLike[str],
    logs: Logs,
    out: str | os.PathLike[str],
    spark: SparkSession | None = None,
    task: str | None = None,
    device: str = "cpu",
    overwrite: bool = False,
) -> tuple[Forecaster, pl.DataFrame]:
    """:func:`engagement.score_logs` with the dataset built on Spark (the same scores on the same logs).

    Raises
    ------
    OutputExistsError
        ``out`` is a directory, or exists while ``overwrite`` is false.
    """
    check_scores_out(out, overwrite)
    fc = Forecaster.load(model_dir, task=task)
    tables = read_logs_spark(logs, spark)
    wanted = tuple(fc.meta.get("member_columns", MEMBER_COLUMNS))
    path = "" if isinstance(logs, Mapping) else os.fspath(logs)
    source = "<members table>" if isinstance(logs, Mapping) else path if path.startswith("hive:") else f"{path.rstrip('/')}/members.parquet"
    check_member_columns(
        polars_schema(tables["members"].schema, ["member_id"], source, "the members table"), wanted, source, str(model_dir)
    )
    data = build_dataset_spark(tables, fc.window, spark, member_columns=wanted)
    scores = fc.score(data, device=device)
    write_scores(scores, out, overwrite=overwrite)
    return fc, scores


def compare_on_logs_spark(
    logs: Logs,
    out: str | os.PathLike[str],
    task: str,
    spark: SparkSession | None = None,
    seeds: Sequence[int] = (0,),
    models: Sequence[str] = MODELS,
    window: WindowConfig | None = None,
    lda_config: LdaConfig | None = None,
    lda_optimizer: SparkLdaConfig | None = None,
    train_config: ForecastTrainConfig | None = None,
    digmn_config: DigmnConfig | None = None,
    lda_seed: int | np.random.Generator = 0,
    overwrite: bool = False,
    on_intents: Callable[[EngagementData, Intents], None] | None = None,
    progress: Callable[[int, str, ModelResult], None] | None = None,
) -> dict[str, Any]:
    """:func:`engagement.compare_on_logs` with the dataset and the intents on Spark; the models fitted on the driver.

    Raises
    ------
    ConfigError
        An unknown task or model name, or a ``lda_seed`` that is neither an
        integer nor a Generator.
    """
    check_task(task)
    check_models(models)
    lda_rng = lda_generator(lda_seed)
    check_output_dir(out, overwrite)
    data = build_dataset_spark(logs, window, spark)
    intents = mine_intents_spark(data.session_counts, lda_rng, lda_config, spark, lda_optimizer)
    return compare_mined(data, intents, task, out, seeds, models, train_config, digmn_config, overwrite, on_intents, progress)


def _check_seed(seed: object) -> None:
    if not (is_integer(seed) or isinstance(seed, np.random.Generator)):
        raise ConfigError(f"seed must be an integer or numpy Generator, got {seed!r}")


def _lda_rng(seed: int | np.random.Generator, n_members: int) -> np.random.Generator:
    """The Generator :func:`train_forecaster` gives its own LDA, drawn from a copy (the caller's is left for it)."""
    rng = copy.deepcopy(seed) if isinstance(seed, np.random.Generator) else np.random.default_rng(int(seed))
    split_members(n_members, rng)
    return rng.spawn(2)[0]
