"""dwellrank command line: one thin command per verb over the library functions."""

from __future__ import annotations

from typing import Any

import click

from dwellrank_logs.spark_sources import driver_path, table_for_spark
from dwellrank_pipeline.ab_report_cli import ab_report
from dwellrank_pipeline.cli_base import ErrorsAsOneLine, progress
from dwellrank_pipeline.demo import DemoSizes
from dwellrank_pipeline.flags import EngineChoice, engine_options
from dwellrank_pipeline.forecast_cli import forecast
from dwellrank_pipeline.presets import PRESETS, PresetContext
from dwellrank_pipeline.train_cli import train
from ranking.tskip import TskipConfig
from simulate.ab import ABConfig
from simulate.config import WorldConfig
from simulate.ope import OPE_REWARDS

__all__ = ["main"]


@click.group(cls=ErrorsAsOneLine)
@click.version_option("0.1.0", prog_name="dwellrank")
def main() -> None:
    """Dwell-time-aware feed ranking, engagement forecasting and simulation."""


main.add_command(ab_report)
main.add_command(forecast)
main.add_command(train)


_WORLD = WorldConfig()
_TSKIP = TskipConfig()
_AB = ABConfig()
_DEMO = DemoSizes()


@main.command()
@click.option("--members", "n_members", type=int, default=_WORLD.n_members, show_default=True, help="Members in the world.")
@click.option("--days", "n_days", type=int, default=_WORLD.n_days, show_default=True, help="Days to simulate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same bytes.")
@click.option("--t-skip", "t_skip_s", type=float, default=_WORLD.t_skip_s, show_default=True, help="Ground-truth T_skip, seconds.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory for the logs.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Any other WorldConfig field, e.g. --set phase_length=fixed --set phase_rate=2.5 (repeatable).",
)
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def simulate(
    n_members: int, n_days: int, seed: int, t_skip_s: float, out: str, overwrite: bool, overrides: tuple[str, ...], quiet: bool
) -> None:
    """Simulate a feed and write the six log tables, ground truth and a summary."""
    from dwellrank_logs.io import check_output_dir
    from simulate import simulate_to
    from simulate.config import parse_overrides

    cfg = WorldConfig(**{**parse_overrides(overrides), "n_members": n_members, "n_days": n_days, "t_skip_s": t_skip_s})
    check_output_dir(out, overwrite, "--out")  # writable, and not replaced unasked, before simulating
    # Refuses a non-empty --out before simulating; the tables are not kept in memory (only the summary is printed).
    with progress(cfg.n_days, "simulating days", quiet) as bar:
        result = simulate_to(out, cfg, seed=seed, progress=bar, overwrite=overwrite, keep_tables=False)
    if not quiet:
        s = result.summary
        click.echo(f"wrote {out} (seed {seed}, {cfg.n_members} members x {cfg.n_days} days)")
        for table, rows in s["rows"].items():
            click.echo(f"  {table:<12} {rows:>10,} rows")
        if "skip_rate" in s:  # absent when the world produced no impressions
            click.echo(
                f"  skip rate {s['skip_rate']:.3f}  click rate {s['click_rate']:.4f}  "
                f"react {s['react_rate']:.4f}  comment {s['comment_rate']:.4f}  share {s['share_rate']:.4f}"
            )
        click.echo(f"  sessions per member-day {s['sessions_per_member_day']:.3f}  true T_skip {cfg.t_skip_s} s")


@main.command("estimate-tskip")
@click.option(
    "--impressions",
    "impressions",
    type=click.Path(),
    required=True,
    help="Impressions table: a Parquet file, or a directory of Parquet part files (Hive key=value directories become columns).",
)
@click.option("--dwell-col", default=_TSKIP.dwell_col, show_default=True, help="Dwell column, seconds.")
@click.option(
    "--action-cols",
    default=",".join(_TSKIP.action_cols),
    show_default=True,
    help="Comma-separated action columns (any true = action).",
)
@click.option("--by", default=_TSKIP.by, show_default=True, help="Column for per-group curves; 'none' for the pooled curve only.")
@click.option("--bin-width", "bin_width_s", type=float, default=_TSKIP.bin_width_s, show_default=True, help="Dwell bin width, seconds.")
@click.option("--eps", type=float, default=_TSKIP.eps, show_default=True, help="Tolerance on the lower CI bound of P(action | dwell).")
@click.option("--persist", type=int, default=_TSKIP.persist, show_default=True, help="Informative bins in a row that must exceed eps.")
@click.option(
    "--min-rows", "min_rows", type=int, default=_TSKIP.min_rows_per_group, show_default=True, help="Impressions each group needs."
)
@click.option("--strict", is_flag=True, help="Fail on null/NaN/negative/infinite dwell instead of dropping those rows.")
@engine_options("polars on this machine, or Apache Spark (--impressions may then be a URI or hive:DB.TABLE).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the estimate and curves as JSON here.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write the CDF and P(action | dwell) panels as PNG here.")
@click.option("--overwrite", is_flag=True, help="Replace existing --out / --plot files.")
@click.option("--quiet", is_flag=True, help="No summary.")
def estimate_tskip(
    impressions: str,
    dwell_col: str,
    action_cols: str,
    by: str,
    bin_width_s: float,
    eps: float,
    persist: int,
    min_rows: int,
    strict: bool,
    engine: EngineChoice,
    out: str | None,
    plot: str | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Estimate T_skip by Bayes' rule from an impressions table, overall and per update type."""
    import os

    from dwellrank_logs.errors import OutputError
    from dwellrank_logs.io import check_not_input, check_output_file
    from ranking.tskip import write_tskip_outputs

    cfg = TskipConfig(
        dwell_col=dwell_col,
        action_cols=tuple(c.strip() for c in action_cols.split(",") if c.strip()),
        by=None if by.strip().lower() in ("", "none") else by.strip(),
        bin_width_s=bin_width_s,
        eps=eps,
        persist=persist,
        min_rows_per_group=min_rows,
        strict=strict,
    )
    if engine.spark:  # a file:// URI names a local file: the driver writes the JSON and the PNG
        out, plot = (None if p is None else driver_path(p, opt) for opt, p in (("--out", out), ("--plot", plot)))
    for opt, p in (("--out", out), ("--plot", plot)):
        if p is not None:
            check_not_input(p, {"--impressions": impressions}, opt)  # before reading anything
            check_output_file(p, opt, overwrite=overwrite)
    if out is not None and plot is not None and os.path.realpath(out) == os.path.realpath(plot):
        raise OutputError(f"--plot {plot}: is the --out path too; give the JSON and the PNG different paths")
    result = _estimate_tskip(impressions, cfg, engine)
    write_tskip_outputs(result, out, plot, overwrite=overwrite)
    if not quiet:
        click.echo(result.summary())
        for label, p in (("json", out), ("plot", plot)):
            if p is not None:
                click.echo(f"  wrote {label}: {p}")


def _estimate_tskip(impressions: str, cfg: TskipConfig, engine: EngineChoice) -> Any:
    if engine.spark:
        from ranking.tskip import estimate_tskip_spark

        # The one place a SparkSession is built: library functions take the caller's.
        with engine.session("dwellrank estimate-tskip") as spark:
            return estimate_tskip_spark(table_for_spark(impressions, spark, "impressions"), cfg, spark=spark, source=impressions)
    from ranking.tskip import estimate_tskip_file

    return estimate_tskip_file(impressions, cfg)


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True, help="Output directory (new or empty).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the world, training and the A/B test.")
@click.option("--members", type=int, default=_DEMO.members, show_default=True, help="Members of the simulated world and of the A/B test.")
@click.option("--days", type=int, default=_DEMO.days, show_default=True, help="Days of the simulated world and of the A/B test.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@click.option("--quiet", is_flag=True, help="No progress bars or stage lines.")
def demo(out: str, seed: int, members: int, days: int, overwrite: bool, quiet: bool) -> None:
    """The main job on built-in defaults: simulate, estimate T_skip, train, rank, A/B report.

    Writes logs/, tskip.json/png, model/, ranked.parquet, ab/ and demo.json under
    --out, which appears only when every stage has succeeded; an existing
    non-empty --out is replaced only with --overwrite.
    """
    from dwellrank_logs.io import check_output_dir
    from dwellrank_pipeline.demo import run_demo

    sizes = DemoSizes(members=members, days=days, ab_members=members, ab_days=days)
    check_output_dir(out, overwrite, "--out")
    echo = (lambda _m: None) if quiet else click.echo
    result = run_demo(
        out, seed=seed, sizes=sizes, log=echo, progress=lambda total, label: progress(total, label, quiet), overwrite=overwrite
    )
    echo(f"wrote {out} in {result['seconds']:.0f} s (seed {seed})")


@main.command("simulate-ab")
@click.option(
    "--control",
    "control",
    required=True,
    help=f"Control ranker: a preset ({', '.join(PRESETS)}) or a model directory.",
)
@click.option("--treatment", "treatment", required=True, help="Treatment ranker: a preset or a model directory.")
@click.option(
    "--members", "n_members", type=int, default=_AB.world.n_members, show_default=True, help="Members in the simulated population."
)
@click.option("--days", "n_days", type=int, default=_AB.world.n_days, show_default=True, help="Days of the experiment period.")
@click.option(
    "--pre-days",
    "pre_days",
    type=int,
    default=_AB.pre_days,
    show_default=True,
    help="Pre-period days on the control ranker (CUPED covariates; 0 = off).",
)
@click.option("--seed", type=int, default=_AB.seed, show_default=True, help="Seeds the world and the assignment hash.")
@click.option(
    "--split", type=float, default=_AB.split, show_default=True, help="Expected share of members in the treatment arm, in (0, 1)."
)
@click.option("--alpha", type=float, default=_AB.alpha, show_default=True, help="Two-sided significance level.")
@click.option("--t-skip", "t_skip_s", type=float, default=None, help="T_skip of the skip metrics, seconds (default: the world's truth).")
@click.option("--ope", is_flag=True, help="Also run off-policy evaluation from an exploring control ranker, with the simulator's truth.")
@click.option(
    "--ope-reward",
    type=click.Choice(OPE_REWARDS),
    default=_AB.ope_reward,
    show_default=True,
    help="Top-slot reward for OPE.",
)
@click.option(
    "--ope-temperature",
    type=float,
    default=_AB.ope_temperature,
    show_default=True,
    help="Exploration temperature of the OPE logging ranker.",
)
@click.option(
    "--ope-k", type=int, default=_AB.ope_k, show_default=True, help="Feed positions of OPE's whole-feed value (every slate estimator)."
)
@click.option(
    "--warmup-members",
    type=int,
    default=PresetContext.warmup_members,
    show_default=True,
    help="Members of the warm-up run that trained presets learn from.",
)
@click.option("--warmup-days", type=int, default=PresetContext.warmup_days, show_default=True, help="Days of the warm-up run.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@click.option("--quiet", is_flag=True, help="No progress bar or table.")
def simulate_ab(
    control: str,
    treatment: str,
    n_members: int,
    n_days: int,
    pre_days: int,
    seed: int,
    split: float,
    alpha: float,
    t_skip_s: float | None,
    ope: bool,
    ope_reward: str,
    ope_temperature: float,
    ope_k: int,
    warmup_members: int,
    warmup_days: int,
    out: str,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Offline A/B test in the simulator: two rankers, one population, closed loop, statistics."""
    import os

    from dwellrank_logs.io import check_not_input, check_output_dir
    from dwellrank_pipeline.ab import run_named_ab
    from simulate.ab_report import format_ab_table

    check_output_dir(out, overwrite, "--out")
    # A ranker given as a model directory is an input: the output must not replace or sit in it.
    check_not_input(out, {flag: r for flag, r in (("--control", control), ("--treatment", treatment)) if os.path.exists(r)}, "--out")

    cfg = ABConfig(
        world=WorldConfig(n_members=n_members, n_days=n_days),
        split=split,
        seed=seed,
        pre_days=pre_days,
        alpha=alpha,
        t_skip_s=t_skip_s,
        ope=ope,
        ope_reward=ope_reward,
        ope_temperature=ope_temperature,
        ope_k=ope_k,
    )
    result = run_named_ab(
        cfg,
        control,
        treatment,
        out,
        overwrite=overwrite,
        warmup_members=warmup_members,
        warmup_days=warmup_days,
        log=(lambda _m: None) if quiet else (lambda m: click.echo(m, err=True)),
        progress=lambda total, label: progress(total, label, quiet),
    )
    if quiet:
        for w in result.warnings:
            click.echo(f"warning: {w}", err=True)
    else:
        click.echo(format_ab_table(result))
        click.echo(f"wrote {out} (seed {seed}, {n_members} members x {pre_days}+{n_days} days)")


# --- ranking: train and rank -----------------------------------------------------------------


@main.command("rank")
@click.option("--model", "model_dir", type=click.Path(file_okay=False), required=True, help="Model directory from `train`.")
@click.option("--candidates", type=click.Path(dir_okay=False), required=True, help="Candidate rows (Parquet).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output Parquet: predictions, score, rank.")
@click.option("--top-k", type=int, default=None, help="Keep the top K rows per request.")
@click.option(
    "--logs",
    "logs_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Logs directory to compute features from history (when the candidates lack feature columns).",
)
@click.option("--weights", "weights_path", type=click.Path(dir_okay=False), default=None, help="Value weights JSON (default: the model's).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@engine_options("polars on this machine, or Apache Spark (--out is then a directory of Parquet part files).")
@click.option("--quiet", is_flag=True, help="No summary.")
def rank(
    model_dir: str,
    candidates: str,
    out: str,
    top_k: int | None,
    logs_dir: str | None,
    weights_path: str | None,
    overwrite: bool,
    engine: EngineChoice,
    quiet: bool,
) -> None:
    """Score candidate rows: every head's prediction, the value score and the rank per request."""
    from dwellrank_logs.io import check_not_input, check_output_file
    from ranking.ranker import rank_candidates_file
    from ranking.value import load_weights

    inputs = {"--candidates": candidates, "--model": model_dir, "--logs": logs_dir, "--weights": weights_path}
    if engine.spark:
        from ranking.spark_rank import rank_candidates_spark

        check_not_input(out, inputs, "--out")
        weights = load_weights(weights_path) if weights_path else None
        with engine.session("dwellrank rank") as spark:  # the one place a session is built
            cands = table_for_spark(candidates, spark, "candidates")
            r = rank_candidates_spark(model_dir, cands, out, spark=spark, top_k=top_k, logs=logs_dir, weights=weights, overwrite=overwrite)
        if not quiet:
            click.echo(f"wrote {out}: {r.rows:,} rows, {r.requests:,} request(s), mean score {r.mean_score:.4f} (Spark)")
        return
    check_output_file(out, "--out", overwrite=overwrite)  # before loading the model or scoring
    check_not_input(out, inputs, "--out")
    weights = load_weights(weights_path) if weights_path else None
    result = rank_candidates_file(model_dir, candidates, out, top_k=top_k, logs_dir=logs_dir, weights=weights, overwrite=overwrite)
    if not quiet:
        n_req = result["request_id"].n_unique() if "request_id" in result.columns else 1
        click.echo(f"wrote {out}: {result.height:,} rows, {n_req:,} request(s), mean score {result['score'].to_numpy().mean():.4f}")


if __name__ == "__main__":
    main()
