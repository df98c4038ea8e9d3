"""The forecast verbs end to end, from a logs directory to files on disk.

One call per verb of ``dwellrank forecast``: :func:`train_on_logs`
(``train``), :func:`score_logs` (``score``) and :func:`compare_on_logs`
(``compare``).  Each refuses an output it could not write before any work,
reads and windows the logs (:func:`engagement.dataset.read_logs`,
:func:`engagement.dataset.build_dataset`), runs the stage and writes its
files atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.checks import is_integer
from dwellrank_logs.errors import ConfigError, OutputExistsError
from dwellrank_logs.io import check_not_input, check_output_dir, table_path
from engagement.config import DigmnConfig, ForecastTrainConfig, LdaConfig, WindowConfig, check_task
from engagement.dataset import EngagementData, build_dataset, check_member_columns, read_logs
from engagement.experiment import MODELS, ModelResult, check_models, compare
from engagement.features import MEMBER_COLUMNS
from engagement.forecaster import Forecaster, train_forecaster, write_scores
from engagement.intents import Intents, mine_intents
from engagement.report import write_comparison

__all__ = ["compare_on_logs", "score_logs", "train_on_logs"]


def train_on_logs(
    logs_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    task: str,
    seed: int | np.random.Generator = 0,
    window: WindowConfig | None = None,
    train_config: ForecastTrainConfig | None = None,
    digmn_config: DigmnConfig | None = None,
    lda_config: LdaConfig | None = None,
    overwrite: bool = False,
    progress: Callable[[int, float, float], None] | None = None,
) -> Forecaster:
    """Mine intents, train DIGMN on an 80/10/10 split of the logs' members and write a model directory.

    Parameters
    ----------
    logs_dir : path-like
        Directory with the members, sessions, events and deliveries tables.
    out : path-like
        Model directory to write (:meth:`Forecaster.save`: ``model.pt``,
        ``meta.json``, ``intents.json``, loss curve and intent PCA).
    task : {"day", "session"}
    seed : int or numpy.random.Generator
        Seeds the split, the LDA and torch (:func:`train_forecaster`).
    window, train_config, digmn_config, lda_config : optional
        Defaults: the paper's settings.
    overwrite : bool
        Replace a non-empty ``out``; without it such a directory is refused
        before any work.
    progress : callable, optional
        Called after each epoch with (epoch, train loss, validation loss).

    Returns
    -------
    Forecaster
        ``meta`` holds the seed, sizes, test metrics and loss history.
    """
    check_task(task)
    check_not_input(out, {"logs_dir": logs_dir}, "out")  # with overwrite, replacing the logs would destroy them
    check_output_dir(out, overwrite)
    data = build_dataset(read_logs(logs_dir), window)
    fc, history, pca_input = train_forecaster(
        data, task, seed=seed, train_config=train_config, digmn_config=digmn_config, lda_config=lda_config, progress=progress
    )
    fc.save(out, overwrite=overwrite, history=history, pca=pca_input)
    return fc


def score_logs(
    model_dir: str | os.PathLike[str],
    logs_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    task: str | None = None,
    device: str = "cpu",
    overwrite: bool = False,
) -> tuple[Forecaster, pl.DataFrame]:
    """Score the members of some logs with a trained model and write the scores as Parquet.

    Parameters
    ----------
    model_dir : path-like
        A directory written by :func:`train_on_logs`.
    logs_dir : path-like
        Logs to score, windowed as the model's training logs were.
    out : path-like
        Parquet file of per-member scores (:meth:`Forecaster.score`).
    task : {"day", "session"}, optional
        Expected task; an error if the model's differs.
    device : str
        torch device ("cpu", "cuda[:N]" or "auto").
    overwrite : bool
        Replace an existing file; an existing ``out`` is refused before any work otherwise.

    Returns
    -------
    forecaster : Forecaster
    scores : polars.DataFrame
        One row per member that passes the model's filter.

    Raises
    ------
    OutputExistsError
        ``out`` is a directory, or exists while ``overwrite`` is false.
    """
    check_not_input(out, {"logs_dir": logs_dir, "model_dir": model_dir}, "out")
    check_scores_out(out, overwrite)
    fc = Forecaster.load(model_dir, task=task)
    tables = read_logs(logs_dir)
    # Models saved before member_columns was recorded were trained on the schema's five member columns.
    wanted = tuple(fc.meta.get("member_columns", MEMBER_COLUMNS))
    check_member_columns(tables["members"].collect_schema(), wanted, str(table_path(logs_dir, "members")), str(model_dir))
    data = build_dataset(tables, fc.window, member_columns=wanted)
    scores = fc.score(data, device=device)
    write_scores(scores, out, overwrite=overwrite)
    return fc, scores


def compare_on_logs(
    logs_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    task: str,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    models: Sequence[str] = MODELS,
    window: WindowConfig | None = None,
    lda_config: LdaConfig | None = None,
    train_config: ForecastTrainConfig | None = None,
    digmn_config: DigmnConfig | None = None,
    lda_seed: int | np.random.Generator = 0,
    overwrite: bool = False,
    on_intents: Callable[[EngagementData, Intents], None] | None = None,
    progress: Callable[[int, str, ModelResult], None] | None = None,
) -> dict[str, Any]:
    """Every model of the paper's tables on every seed's split of the logs' members; write the comparison.

    Intents are mined once, before the replicates, from the history-window
    sessions of every member (the LDA sees no labels and no future-window
    data), and shared by all replicates; replicate ``s`` draws its split and
    every model's randomness from ``s`` (:func:`engagement.experiment.compare`).

    Parameters
    ----------
    logs_dir : path-like
        Directory with the members, sessions, events and deliveries tables.
    out : path-like
        Directory for ``comparison.json``, ``table.txt``, ``intents.json`` and
        the PNGs (:func:`engagement.report.write_comparison`).
    task : {"day", "session"}
    seeds : sequence of int
        Replicate seeds.
    models : sequence of str
        Names among :data:`engagement.experiment.MODELS`, run in this order.
    window, lda_config, train_config, digmn_config : optional
        Defaults: the paper's settings.
    lda_seed : int or numpy.random.Generator
        Seeds the intent mining (default 0: the intents ``forecast compare``
        mines and writes).
    overwrite : bool
        Replace a non-empty ``out``; without it such a directory is refused
        before any work.
    on_intents : callable, optional
        Called once the intents are mined, with the dataset and the intents.
    progress : callable, optional
        Called after each fit with (seed, model name, result).

    Returns
    -------
    dict
        The comparison (:func:`engagement.experiment.compare`).

    Raises
    ------
    ConfigError
        An unknown task or model name, or a ``lda_seed`` that is neither an
        integer nor a Generator.
    """
    check_task(task)
    check_models(models)
    lda_rng = lda_generator(lda_seed)
    check_not_input(out, {"logs_dir": logs_dir}, "out")
    check_output_dir(out, overwrite)
    data = build_dataset(read_logs(logs_dir), window)
    intents = mine_intents(data.session_counts, lda_rng, lda_config)
    return compare_mined(data, intents, task, out, seeds, models, train_config, digmn_config, overwrite, on_intents, progress)


def check_scores_out(out: str | os.PathLike[str], overwrite: bool) -> None:
    """Refuse, before any work, a scores file that is a directory or exists while ``overwrite`` is false."""
    if Path(out).exists() and (Path(out).is_dir() or not overwrite):
        raise OutputExistsError(f"{out}: exists (pass --overwrite to replace a file)")


def lda_generator(lda_seed: object) -> np.random.Generator:
    """The Generator of the intent mining: ``lda_seed`` itself, or one seeded from the integer."""
    if not (is_integer(lda_seed) or isinstance(lda_seed, np.random.Generator)):
        raise ConfigError(f"lda_seed must be an integer or numpy Generator, got {lda_seed!r}")
    return lda_seed if isinstance(lda_seed, np.random.Generator) else np.random.default_rng(int(lda_seed))


def compare_mined(
    data: EngagementData,
    intents: Intents,
    task: str,
    out: str | os.PathLike[str],
    seeds: Sequence[int] | range,
    models: Sequence[str],
    train_config: ForecastTrainConfig | None,
    digmn_config: DigmnConfig | None,
    overwrite: bool,
    on_intents: Callable[[EngagementData, Intents], None] | None,
    progress: Callable[[int, str, ModelResult], None] | None,
) -> dict[str, Any]:
    """The comparison once the dataset is built and the intents mined, by either engine; written to ``out``."""
    if on_intents is not None:
        on_intents(data, intents)
    result = compare(
        data, intents, task, seeds=seeds, models=models, train_config=train_config, digmn_config=digmn_config, progress=progress
    )
    write_comparison(result, intents.to_dict(), out, overwrite=overwrite)
    return result
