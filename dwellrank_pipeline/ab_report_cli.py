"""The ``dwellrank ab-report`` command: the A/B report of a logged experiment (``members.arm`` filled), polars or Spark."""

from __future__ import annotations

import json
from typing import Any, cast

import click

from dwellrank_logs.errors import ConfigError
from dwellrank_pipeline.flags import EngineChoice, engine_options
from simulate.ab import ARMS, LoggedABConfig

__all__ = ["ab_report"]

_CFG = LoggedABConfig(t_skip_s=1.0)
# The library's argument names that FLAG_OF does not hold, as this command's flags.
_FLAGS = {"experiment_start": "--experiment-start", "arms must": "--arms must"}


@click.command("ab-report")
@click.option(
    "--logs", "logs_dir", type=click.Path(file_okay=False), required=True, help="Logs directory (members with arm, sessions, impressions)."
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory (the files simulate-ab writes).")
@click.option("--t-skip", "t_skip_s", type=float, default=None, help="T_skip of the skip metrics, seconds.")
@click.option(
    "--tskip-json", type=click.Path(dir_okay=False), default=None, help="Take T_skip from this estimate-tskip JSON (default: estimate it)."
)
@click.option("--pre-days", type=int, default=None, help="The logs' first days are the pre-period (CUPED covariates); default 0.")
@click.option("--experiment-start", default=None, metavar="YYYY-MM-DD", help="First experiment day (UTC); earlier days are the pre-period.")
@click.option("--split", type=float, default=_CFG.split, show_default=True, help="Expected treatment share, for the sample-ratio check.")
@click.option("--alpha", type=float, default=_CFG.alpha, show_default=True, help="Two-sided significance level.")
@click.option(
    "--arms", default=",".join(ARMS), show_default=True, metavar="CONTROL,TREATMENT", help="The two labels of members.arm (null: outside)."
)
@engine_options(
    "polars on this machine, or Apache Spark (--logs may then be a URI or hive:DB[.PREFIX]; only per-member rows reach the driver)."
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@click.option("--quiet", is_flag=True, help="No table.")
def ab_report(
    logs_dir: str,
    out: str,
    t_skip_s: float | None,
    tskip_json: str | None,
    pre_days: int | None,
    experiment_start: str | None,
    split: float,
    alpha: float,
    arms: str,
    engine: EngineChoice,
    overwrite: bool,
    quiet: bool,
) -> None:
    """A/B report of a logged experiment: per-member metrics by arm, Welch/CUPED effects, SRM check."""
    from dwellrank_logs.io import check_not_input, check_output_dir
    from simulate.ab_report import format_ab_table, write_ab

    check_output_dir(out, overwrite, "--out")  # before reading anything, creating nothing
    check_not_input(out, {"--logs": logs_dir, "--tskip-json": tskip_json}, "--out")
    if t_skip_s is not None and tskip_json is not None:
        raise ConfigError("--t-skip and --tskip-json both given; pass one")
    if tskip_json is not None:
        t_skip_s = _tskip_from_json(tskip_json)
    labels = cast("tuple[str, str]", tuple(a.strip() for a in arms.split(",")))  # LoggedABConfig checks there are two

    def config(t: float) -> LoggedABConfig:
        try:
            return LoggedABConfig(
                t_skip_s=t, pre_days=pre_days or 0, experiment_start=experiment_start, split=split, alpha=alpha, arms=labels
            )
        except ConfigError as exc:
            raise ConfigError(_in_flags(str(exc))) from None

    config(1.0 if t_skip_s is None else t_skip_s)  # bad settings are refused before any reading
    if engine.spark:
        from dwellrank_logs.spark_sources import logs_for_spark

        with engine.session("dwellrank ab-report") as spark:  # the one place a session is built
            logs = logs_for_spark(logs_dir, ("members", "sessions", "impressions"), spark)  # hive:... names: the catalog's tables
            cfg = config(t_skip_s if t_skip_s is not None else _estimate(logs_dir, logs, spark))
            result = _report(logs, cfg, engine.name, spark)
    else:
        cfg = config(t_skip_s if t_skip_s is not None else _estimate(logs_dir, logs_dir, None))
        result = _report(logs_dir, cfg, engine.name, None)
    write_ab(result, out, overwrite=overwrite)
    if quiet:
        for w in result.warnings:
            click.echo(f"warning: {w}", err=True)
    else:
        click.echo(format_ab_table(result))
        click.echo(f"wrote {out} (T_skip {cfg.t_skip_s:.2f} s{'' if t_skip_s is not None else ' estimated'}, engine {engine.name})")


def _report(logs: Any, cfg: LoggedABConfig, engine: str, spark: Any) -> Any:
    from simulate.ab import logged_ab_report

    try:
        return logged_ab_report(logs, cfg, engine=engine, spark=spark)
    except ConfigError as exc:
        raise ConfigError(_in_flags(str(exc))) from None


def _estimate(logs_dir: str, logs: Any, spark: Any) -> float:
    """T_skip from the logs' impressions, on the command's engine (as ``train`` does without ``--t-skip``)."""
    from ranking.tskip import InsufficientDataError, estimate_tskip_spark, tskip_from_logs

    try:
        if spark is not None:
            from dwellrank_logs.spark_sources import table_uri

            imp = logs["impressions"] if isinstance(logs, dict) else table_uri(logs_dir, "impressions")
            return estimate_tskip_spark(imp, spark=spark).t_skip_s
        return tskip_from_logs(logs_dir)
    except InsufficientDataError as exc:
        raise InsufficientDataError(f"{exc}; or pass --t-skip") from None


def _tskip_from_json(path: str) -> float:
    """The ``t_skip_s`` of an ``estimate-tskip --out`` JSON."""
    try:
        with open(path) as f:
            got = json.load(f)
    except OSError as exc:
        raise ConfigError(f"--tskip-json {path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"--tskip-json {path}: not JSON ({exc})") from None
    t = got.get("t_skip_s") if isinstance(got, dict) else None
    if not isinstance(t, int | float) or isinstance(t, bool):
        raise ConfigError(f"--tskip-json {path}: no number under 't_skip_s' (got {t!r}); pass --t-skip")
    return float(t)


def _in_flags(message: str) -> str:
    for name, flag in _FLAGS.items():
        message = message.replace(name, flag)
    return message
