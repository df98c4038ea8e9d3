"""The ``dwellrank forecast`` commands: engagement-trend forecasting (``engagement``), one thin command per verb.

``cli.py`` adds this group to the ``dwellrank`` command; each verb builds the
configs from its options (defaults from :mod:`engagement.config`), calls one
function of :mod:`engagement.workflows` (or, with ``--engine spark``, of
:mod:`engagement.spark_workflows` with the one session built here) and prints
a summary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from dwellrank_pipeline.cli_base import ErrorsAsOneLine, strict_option
from dwellrank_pipeline.flags import EngineChoice, engine_options
from engagement.config import TASKS, ForecastTrainConfig, LdaConfig, WindowConfig

__all__ = ["forecast"]

_WINDOW = WindowConfig()
_LDA = LdaConfig()
_FIT = ForecastTrainConfig()
_LOGS_HELP = "Logs: a directory (or file://, hdfs://, s3a:// URI with --engine spark) with members, sessions, events, deliveries"
_SPARK_HELP = "polars on this machine, or Apache Spark (the logs reduced to per-member arrays and the LDA on Spark; models fitted here)."


@click.group(cls=ErrorsAsOneLine)
def forecast() -> None:
    """Engagement-trend forecasting: DIGMN and the baselines of the paper."""


def _window_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option("--history-days", type=int, default=_WINDOW.history_days, show_default=True, help="History window, days."),
            click.option("--future-days", type=int, default=_WINDOW.future_days, show_default=True, help="Future (label) window, days."),
            click.option(
                "--min-sessions",
                type=int,
                default=_WINDOW.min_history_sessions,
                show_default=True,
                help="Drop members with fewer valid history sessions.",
            ),
            click.option(
                "--max-sessions",
                type=int,
                default=_WINDOW.max_sessions,
                show_default=True,
                help="Most recent history sessions kept per member.",
            ),
            click.option("--k-min", type=int, default=_LDA.k_min, show_default=True, help="Fewest LDA intents searched."),
            click.option(
                "--k-max", type=int, default=_LDA.k_max, show_default=True, help="Most LDA intents searched (by held-out perplexity)."
            ),
        ]
    ):
        f = opt(f)
    return f


def _checked_out(out: str, overwrite: bool, engine: EngineChoice, inputs: dict[str, str], directory: bool = True) -> str:
    """``--out`` as the driver writes it, refused before any work if it is (or holds) an input or may not be replaced."""
    from dwellrank_logs.io import check_not_input, check_output_dir, check_output_file
    from dwellrank_logs.spark_sources import driver_path

    if engine.spark:
        out = driver_path(out, "--out")
    check_not_input(out, inputs, "--out")
    if directory:
        check_output_dir(out, overwrite, "--out")
    else:
        check_output_file(out, "--out", overwrite=overwrite)
    return out


@forecast.command("train")
@click.option("--logs", "logs_dir", type=click.Path(), required=True, help=_LOGS_HELP + "; or hive:DB[.PREFIX] tables with --engine spark.")
@click.option("--task", type=click.Choice(TASKS), required=True, help="Day-level (3-class) or session-level (2-class).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Model directory to write.")
@_window_options
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split, LDA and torch.")
@click.option("--epochs", type=int, default=_FIT.max_epochs, show_default=True, help="Maximum epochs (early stopping on validation).")
@click.option("--batch-size", type=int, default=_FIT.batch_size, show_default=True)
@click.option("--device", default=_FIT.device, show_default=True, help="cpu, cuda[:N] or auto.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty model directory.")
@engine_options(_SPARK_HELP)
@strict_option
@click.option("--quiet", is_flag=True, help="No progress or summary.")
def forecast_train(
    logs_dir: str,
    task: str,
    out: str,
    history_days: int,
    future_days: int,
    min_sessions: int,
    max_sessions: int,
    k_min: int,
    k_max: int,
    seed: int,
    epochs: int,
    batch_size: int,
    device: str,
    overwrite: bool,
    engine: EngineChoice,
    quiet: bool,
) -> None:
    """Mine intents, train DIGMN (80/10/10 split) and write a model directory with a loss curve."""
    from engagement import train_on_logs

    window = WindowConfig(history_days=history_days, future_days=future_days, min_history_sessions=min_sessions, max_sessions=max_sessions)
    tc = ForecastTrainConfig(max_epochs=epochs, batch_size=batch_size, device=device)
    lda = LdaConfig(k_min=k_min, k_max=k_max)

    def show(epoch: int, train_loss: float, val_loss: float) -> None:
        if not quiet:
            click.echo(f"  epoch {epoch:>3}  train loss {train_loss:.4f}  val loss {val_loss:.4f}", err=True)

    out = _checked_out(out, overwrite, engine, {"--logs": logs_dir})
    kwargs: dict[str, Any] = {
        "seed": seed,
        "window": window,
        "train_config": tc,
        "lda_config": lda,
        "overwrite": overwrite,
        "progress": show,
    }
    if engine.spark:
        from engagement.spark_workflows import train_on_logs_spark

        with engine.session("dwellrank forecast train") as spark:  # the one place a session is built
            fc = train_on_logs_spark(logs_dir, out, task, spark, **kwargs)
    else:
        fc = train_on_logs(logs_dir, out, task, **kwargs)
    if not quiet:
        m = fc.meta["test_metrics"]
        click.echo(
            f"wrote {out} ({task}-level, seed {seed}, {fc.meta['n_members']} members, K = {fc.intents.k} intents, "
            f"{fc.meta['n_params']:,} parameters, best epoch {fc.meta['history']['best_epoch']})"
        )
        click.echo(f"  test macro-F1 {m['macro_f1']:.3f}  AUROC {m['auroc']:.3f}  accuracy {m['accuracy']:.3f}")


@forecast.command("score")
@click.option("--model", "model_dir", type=click.Path(), required=True, help="Model directory from 'forecast train'.")
@click.option("--logs", "logs_dir", type=click.Path(), required=True, help="Logs to score (as forecast train's --logs).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Parquet file of per-member scores.")
@click.option("--task", type=click.Choice(TASKS), default=None, help="Expected task; an error if the model's differs.")
@click.option("--device", default=_FIT.device, show_default=True, help="cpu, cuda[:N] or auto.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@engine_options(_SPARK_HELP)
@strict_option
@click.option("--quiet", is_flag=True)
def forecast_score(
    model_dir: str, logs_dir: str, out: str, task: str | None, device: str, overwrite: bool, engine: EngineChoice, quiet: bool
) -> None:
    """Per-member class probabilities and dynamic-intent vectors for the members of some logs."""
    from engagement import score_logs

    out = _checked_out(out, overwrite, engine, {"--logs": logs_dir, "--model": model_dir}, directory=False)
    if engine.spark:
        from engagement.spark_workflows import score_logs_spark

        with engine.session("dwellrank forecast score") as spark:  # the one place a session is built
            fc, scores = score_logs_spark(model_dir, logs_dir, out, spark, task=task, device=device, overwrite=overwrite)
    else:
        fc, scores = score_logs(model_dir, logs_dir, out, task=task, device=device, overwrite=overwrite)
    if not quiet:
        click.echo(f"wrote {out}: {scores.height} members scored for the {fc.task}-level task")


@forecast.command("compare")
@click.option("--logs", "logs_dir", type=click.Path(), required=True, help=_LOGS_HELP + "; or hive:DB[.PREFIX] tables with --engine spark.")
@click.option("--task", type=click.Choice(TASKS), required=True)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Directory for comparison.json, table.txt and PNGs.")
@_window_options
@click.option("--seeds", type=int, default=5, show_default=True, help="Replicates; replicate s uses seed s.")
@click.option("--models", default="all", show_default=True, help="Comma-separated subset of the models, or 'all'.")
@click.option("--epochs", type=int, default=_FIT.max_epochs, show_default=True, help="Maximum epochs (early stopping on validation).")
@click.option("--lda-seed", type=int, default=0, show_default=True, help="Seeds the LDA intent mining (once, shared by every replicate).")
@click.option("--device", default=_FIT.device, show_default=True, help="cpu, cuda[:N] or auto.")
@click.option("--overwrite", is_flag=True)
@engine_options(_SPARK_HELP)
@strict_option
@click.option("--quiet", is_flag=True)
def forecast_compare(
    logs_dir: str,
    task: str,
    out: str,
    history_days: int,
    future_days: int,
    min_sessions: int,
    max_sessions: int,
    k_min: int,
    k_max: int,
    seeds: int,
    models: str,
    epochs: int,
    lda_seed: int,
    device: str,
    overwrite: bool,
    engine: EngineChoice,
    quiet: bool,
) -> None:
    """Every method of the paper's Tables 3, 4 and 6 over several seeds; prints a Table-3-style table."""
    from dwellrank_logs.errors import ConfigError
    from engagement import MODELS, compare_on_logs, format_comparison_table

    names = MODELS if models.strip() == "all" else tuple(m.strip() for m in models.split(",") if m.strip())
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    window = WindowConfig(history_days=history_days, future_days=future_days, min_history_sessions=min_sessions, max_sessions=max_sessions)
    tc = ForecastTrainConfig(max_epochs=epochs, device=device)
    lda = LdaConfig(k_min=k_min, k_max=k_max)

    def mined(data: Any, intents: Any) -> None:
        if not quiet:
            click.echo(f"{data.n_members} members pass the filter; LDA chose K = {intents.k} intents", err=True)

    def show(seed: int, name: str, res: Any) -> None:
        if not quiet:
            m = res.metrics
            click.echo(f"  seed {seed}  {name:<26} macro-F1 {m['macro_f1']:.3f}  AUROC {m['auroc']:.3f}  ({res.seconds:.0f} s)", err=True)

    out = _checked_out(out, overwrite, engine, {"--logs": logs_dir})
    kwargs: dict[str, Any] = {
        "seeds": range(seeds),
        "models": names,
        "window": window,
        "lda_config": lda,
        "lda_seed": lda_seed,
        "train_config": tc,
        "overwrite": overwrite,
        "on_intents": mined,
        "progress": show,
    }
    if engine.spark:
        from engagement.spark_workflows import compare_on_logs_spark

        with engine.session("dwellrank forecast compare") as spark:  # the one place a session is built
            result = compare_on_logs_spark(logs_dir, out, task, spark, **kwargs)
    else:
        result = compare_on_logs(logs_dir, out, task, **kwargs)
    if not quiet:
        click.echo(format_comparison_table(result))
        click.echo(f"wrote {out}")


def _values(text: str, flag: str, kind: type) -> tuple[Any, ...]:
    """A comma-separated option as a tuple of ``kind`` ('' or 'none': the parameter is not swept)."""
    from dwellrank_logs.errors import ConfigError

    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(kind(v.strip()) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated {kind.__name__} values (or 'none'), got {text!r}") from None


@forecast.command("sweep")
@click.option("--logs", "logs_dir", type=click.Path(), required=True, help="Logs directory with members, sessions, events, deliveries.")
@click.option("--task", type=click.Choice(TASKS), default="session", show_default=True, help="The paper sweeps the session-level task.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Directory for sweep.json, sweep.png and intents.json.")
@_window_options
@click.option("--layers", default="1,2,3,4", show_default=True, help="L values (FC-D layers; Table 5's hidden units), or 'none'.")
@click.option("--bases", default="1,2,4,8", show_default=True, help="d values (dimension of the meta weights a), or 'none'.")
@click.option("--betas", default="0,1e-3,1e-2,1e-1", show_default=True, help="beta values (orthogonality weight), or 'none'.")
@click.option(
    "--history", default="7,10,14", show_default=True, help="History lengths in days (ending where --history-days ends), or 'none'."
)
@click.option("--seeds", type=int, default=3, show_default=True, help="Replicates; replicate s uses seed s.")
@click.option("--epochs", type=int, default=_FIT.max_epochs, show_default=True, help="Maximum epochs (early stopping on validation).")
@click.option("--lda-seed", type=int, default=0, show_default=True, help="Seeds the LDA intent mining (once, shared by every point).")
@click.option("--device", default=_FIT.device, show_default=True, help="cpu, cuda[:N] or auto.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out directory.")
@strict_option
@click.option("--quiet", is_flag=True)
def forecast_sweep(
    logs_dir: str,
    task: str,
    out: str,
    history_days: int,
    future_days: int,
    min_sessions: int,
    max_sessions: int,
    k_min: int,
    k_max: int,
    layers: str,
    bases: str,
    betas: str,
    history: str,
    seeds: int,
    epochs: int,
    lda_seed: int,
    device: str,
    overwrite: bool,
    quiet: bool,
) -> None:
    """DIGMN's sensitivity to L, d, beta and the history length, one at a time around the defaults (paper 6.4)."""
    from dwellrank_logs.errors import ConfigError
    from engagement.sweep import SweepConfig, sweep_on_logs

    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    config = SweepConfig(
        layers=_values(layers, "--layers", int),
        n_bases=_values(bases, "--bases", int),
        beta=_values(betas, "--betas", float),
        history_days=_values(history, "--history", int),
        seeds=tuple(range(seeds)),
    )
    window = WindowConfig(history_days=history_days, future_days=future_days, min_history_sessions=min_sessions, max_sessions=max_sessions)
    tc = ForecastTrainConfig(max_epochs=epochs, device=device)

    def show(param: str, value: Any, seed: int, rec: dict[str, Any]) -> None:
        if not quiet:
            v, t = rec["val"], rec["test"]
            click.echo(
                f"  seed {seed}  {param}={value:<8g} val AUROC {v['auroc']:.3f} macro-F1 {v['macro_f1']:.3f}  "
                f"test AUROC {t['auroc']:.3f} macro-F1 {t['macro_f1']:.3f}  ({rec['seconds']:.0f} s)",
                err=True,
            )

    out = _checked_out(out, overwrite, EngineChoice(), {"--logs": logs_dir})
    result = sweep_on_logs(
        logs_dir, out, task, config, window, LdaConfig(k_min=k_min, k_max=k_max), tc, lda_seed=lda_seed, overwrite=overwrite, progress=show
    )
    if not quiet:
        for param, panel in result["parameters"].items():
            points = "  ".join(f"{p['value']:g}: {p['val']['mean']:.3f}/{p['test']['mean']:.3f}" for p in panel["points"])
            click.echo(f"{param:<13} (val/test {result['metric']})  {points}  best by validation {panel['best_by_validation']:g}")
        click.echo(f"wrote {out}")
