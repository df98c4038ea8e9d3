"""Messages of the command line in the user's terms: library argument names as the flags they came from, warnings in one line.

The library's checks name their arguments (``n_days must be a positive
integer``); on the command line the user typed ``--days``.  ``dwellrank``'s
error handler passes every message but a file's (a
:class:`~dwellrank_logs.errors.SchemaError` names the file and column, which
is what the user gave) through :func:`in_flags`, with the one table
:data:`FLAG_OF`.  :func:`engine_options` gives every command with an engine
the same ``--engine``, ``--spark-master`` and ``--spark-conf`` options, folded
into one :class:`EngineChoice`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from dwellrank_logs.engine import ENGINES
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.spark import DEFAULT_MASTER

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["FLAG_OF", "EngineChoice", "engine_options", "in_flags", "parse_spark_conf"]

# The one table from a library argument's name to the option a user types.  A name is
# replaced where the message names it as an argument: at its start, or anywhere for an
# identifier with an underscore; only with an option the command has, and never in a
# message that already names a flag (--set's) or a file's column (a SchemaError).
FLAG_OF = {
    "n_members": "--members",
    "members": "--members",
    "ab_members": "--members",
    "n_days": "--days",
    "days": "--days",
    "ab_days": "--days",
    "seed": "--seed",
    "t_skip_s": "--t-skip",
    "top_k": "--top-k",
    "holdout_days": "--holdout-days",
    "feature_set": "--feature-set",
    "dwell_col": "--dwell-col",
    "action_cols": "--action-cols",
    "by": "--by",
    "bin_width_s": "--bin-width",
    "eps": "--eps",
    "persist": "--persist",
    "min_rows_per_group": "--min-rows",
    "split": "--split",
    "alpha": "--alpha",
    "pre_days": "--pre-days",
    "ope_reward": "--ope-reward",
    "ope_temperature": "--ope-temperature",
    "ope_k": "--ope-k",
    "warmup_members": "--warmup-members",
    "warmup_days": "--warmup-days",
    "max_epochs": "--epochs",
    "k_min": "--k-min",
    "k_max": "--k-max",
    "history_days": "--history-days",
    "future_days": "--future-days",
    "min_history_sessions": "--min-sessions",
    "max_sessions": "--max-sessions",
    "batch_size": "--batch-size",
    "lda_seed": "--lda-seed",
    "device": "--device",
    "models": "--models",
}


def in_flags(message: str, command: click.Command | None) -> str:
    """``message`` with the library argument names of :data:`FLAG_OF` replaced by ``command``'s options."""
    if command is None or message.startswith("--"):
        return message
    opts = {o for p in command.params for o in getattr(p, "opts", ())}
    for name, flag in FLAG_OF.items():
        if flag not in opts:
            continue
        if "_" in name:
            message = re.sub(rf"(?<![\w./-]){name}(?![\w/-])", flag, message)
        elif re.match(rf"{name}\b(?![/.-])", message):
            message = flag + message[len(name) :]
    return message


@dataclass(frozen=True)
class EngineChoice:
    """The engine a command runs on, with the Spark settings of ``--spark-master`` and ``--spark-conf``.

    Attributes
    ----------
    name : {"polars", "spark"}
    master : str, optional
        ``--spark-master``; None: ``spark-submit``'s master, or ``local[*]``
        (:func:`dwellrank_logs.spark.spark_session_for`).
    conf : mapping of str to str
        ``--spark-conf`` settings, the last of a repeated key winning.
    """

    name: str = ENGINES[0]
    master: str | None = None
    conf: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {self.name!r}")
        _check_spark_flags(self.name, self.master is not None, bool(self.conf))
        object.__setattr__(self, "conf", MappingProxyType(dict(self.conf)))

    @property
    def spark(self) -> bool:
        """Whether the command runs on Spark."""
        return self.name == "spark"

    @contextmanager
    def session(self, app_name: str) -> Iterator[SparkSession]:
        """The command's one SparkSession (:func:`dwellrank_logs.spark.spark_session`), stopped on exit if it started it."""
        from dwellrank_logs.spark import spark_session

        with spark_session(app_name, self.master, self.conf) as spark:
            yield spark


def _check_spark_flags(engine: str, master: bool, conf: bool) -> None:
    if engine != "spark" and (master or conf):
        given = " and ".join(f for f, v in (("--spark-master", master), ("--spark-conf", conf)) if v)
        raise ConfigError(f"{given}: only with --engine spark, got --engine {engine}")


def parse_spark_conf(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--spark-conf KEY=VALUE`` items as a mapping; :class:`ConfigError` naming the flag and what arrived otherwise.

    Keys start with ``spark.`` (Spark ignores others; Hadoop settings are
    ``spark.hadoop.*``); values may hold ``=``.  A repeated key: the last wins.
    """
    conf: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(ch.isspace() for ch in key):
            raise ConfigError(f"--spark-conf takes KEY=VALUE, got {item!r}")
        if not key.startswith("spark."):
            raise ConfigError(f"--spark-conf KEY must start with 'spark.' (Hadoop settings: spark.hadoop.*), got {item!r}")
        conf[key] = value
    return conf


def engine_options(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--engine``, ``--spark-master`` and repeated ``--spark-conf``, passed to the command as ``engine: EngineChoice``.

    Parameters
    ----------
    help_text : str
        The ``--engine`` help: what Spark does for this command.
    """

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def command(*args: Any, engine: str, spark_master: str, spark_conf: tuple[str, ...], **kwargs: Any) -> Any:
            given = click.get_current_context().get_parameter_source("spark_master") not in (ParameterSource.DEFAULT, None)
            _check_spark_flags(engine, given, bool(spark_conf))  # before the values: --engine polars ignores them
            choice = EngineChoice(engine, spark_master if given else None, parse_spark_conf(spark_conf))
            return f(*args, engine=choice, **kwargs)

        for opt in (
            click.option(
                "--spark-conf",
                multiple=True,
                metavar="KEY=VALUE",
                help="With --engine spark: a Spark setting, e.g. spark.executor.memory=8g (repeatable).",
            ),
            click.option(
                "--spark-master",
                default=DEFAULT_MASTER,
                show_default=True,
                help="With --engine spark: local[N], yarn, spark://HOST:PORT, k8s://...; under spark-submit, its --master.",
            ),
            click.option("--engine", type=click.Choice(ENGINES), default=ENGINES[0], show_default=True, help=help_text),
        ):
            command = opt(command)
        return command

    return decorate
