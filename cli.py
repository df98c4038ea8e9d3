"""dwellrank command line: one thin command per verb over the library functions."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from dwellrank_logs.errors import DwellrankError

__all__ = ["main"]


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@contextmanager
def _progress(total: int, label: str, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A click progress bar on a terminal; nothing when quiet or not a TTY."""
    if not _show_progress(quiet):
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        done = [0]

        def update(n: int) -> None:
            bar.update(n - done[0])
            done[0] = n

        yield update


class _Group(click.Group):
    """Turns library errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DwellrankError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.version_option("0.1.0", prog_name="dwellrank")
def main() -> None:
    """Dwell-time-aware feed ranking, engagement forecasting and simulation."""


@main.command()
@click.option("--members", "n_members", type=int, default=5000, show_default=True, help="Members in the world.")
@click.option("--days", "n_days", type=int, default=28, show_default=True, help="Days to simulate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same bytes.")
@click.option("--t-skip", "t_skip_s", type=float, default=None, help="Ground-truth T_skip in seconds (default 2.5).")
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
    n_members: int, n_days: int, seed: int, t_skip_s: float | None, out: str, overwrite: bool, overrides: tuple[str, ...], quiet: bool
) -> None:
    """Simulate a feed and write the six log tables, ground truth and a summary."""
    from simulate import WorldConfig, simulate_to
    from simulate.config import parse_overrides

    changes: dict[str, Any] = {**parse_overrides(overrides), "n_members": n_members, "n_days": n_days}
    if t_skip_s is not None:
        changes["t_skip_s"] = t_skip_s
    cfg = WorldConfig(**changes)
    # simulate_to refuses a non-empty --out before simulating and writes each day's logs as the next one runs;
    # the tables are not kept in memory (only the summary is printed).
    with _progress(cfg.n_days, "simulating days", quiet) as bar:
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
@click.option("--dwell-col", default="dwell_s", show_default=True, help="Dwell column, seconds.")
@click.option(
    "--action-cols",
    default="clicked,reacted,commented,shared",
    show_default=True,
    help="Comma-separated action columns (any true = action).",
)
@click.option("--by", default="update_type", show_default=True, help="Column for per-group curves; 'none' for the pooled curve only.")
@click.option("--bin-width", "bin_width_s", type=float, default=0.25, show_default=True, help="Dwell bin width, seconds.")
@click.option("--eps", type=float, default=0.002, show_default=True, help="Tolerance on the lower CI bound of P(action | dwell).")
@click.option("--persist", type=int, default=3, show_default=True, help="Informative bins in a row that must exceed eps.")
@click.option("--min-rows", "min_rows", type=int, default=1000, show_default=True, help="Impressions each group needs.")
@click.option("--strict", is_flag=True, help="Fail on null/NaN/negative/infinite dwell instead of dropping those rows.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the estimate and curves as JSON here.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write the CDF and P(action | dwell) panels as PNG here.")
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
    out: str | None,
    plot: str | None,
    quiet: bool,
) -> None:
    """Estimate T_skip by Bayes' rule from an impressions table, overall and per update type."""
    import warnings
    from pathlib import Path

    from dwellrank_logs.errors import ConfigError
    from dwellrank_logs.io import write_json
    from ranking.tskip import TskipConfig, estimate_tskip_file

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
    for opt, p in (("--out", out), ("--plot", plot)):
        if p is not None and Path(p).is_dir():
            raise ConfigError(f"{opt} {p}: is a directory, expected a file path")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = estimate_tskip_file(impressions, cfg)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    if plot is not None:
        from ranking.tskip_plot import plot_tskip

        plot_tskip(result, plot)
    if out is not None:
        try:
            write_json(out, result.to_dict())
        except BaseException:
            if plot is not None:  # all outputs or none
                Path(plot).unlink(missing_ok=True)
            raise
    if not quiet:
        click.echo(result.summary())
        for label, p in (("json", out), ("plot", plot)):
            if p is not None:
                click.echo(f"  wrote {label}: {p}")


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True, help="Output directory (replaced).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the world, training and the A/B test.")
@click.option("--members", type=int, default=5000, show_default=True, help="Members of the simulated world and of the A/B test.")
@click.option("--days", type=int, default=28, show_default=True, help="Days of the simulated world and of the A/B test.")
@click.option("--quiet", is_flag=True, help="No progress bars or stage lines.")
def demo(out: str, seed: int, members: int, days: int, quiet: bool) -> None:
    """The main job on built-in defaults: simulate, estimate T_skip, train, rank, A/B report.

    Writes logs/, tskip.json/png, model/, ranked.parquet, ab/ and demo.json under
    --out, which is replaced only when every stage has succeeded.
    """
    from dwellrank_pipeline.demo import DemoSizes, run_demo

    sizes = DemoSizes(members=members, days=days, ab_members=members, ab_days=days)
    echo = (lambda _m: None) if quiet else click.echo
    result = run_demo(out, seed=seed, sizes=sizes, log=echo, progress=lambda total, label: _progress(total, label, quiet))
    echo(f"wrote {out} in {result['seconds']:.0f} s (seed {seed})")


@main.command("simulate-ab")
@click.option(
    "--control",
    "control",
    required=True,
    help="Control ranker: a preset (popularity, random, oracle, engagement-only, with-pskip) or a model directory.",
)
@click.option("--treatment", "treatment", required=True, help="Treatment ranker: a preset or a model directory.")
@click.option("--members", "n_members", type=int, default=5000, show_default=True, help="Members in the simulated population.")
@click.option("--days", "n_days", type=int, default=28, show_default=True, help="Days of the experiment period.")
@click.option(
    "--pre-days",
    "pre_days",
    type=int,
    default=7,
    show_default=True,
    help="Pre-period days on the control ranker (CUPED covariates; 0 = off).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the world and the assignment hash.")
@click.option("--split", type=float, default=0.5, show_default=True, help="Expected share of members in the treatment arm, in (0, 1).")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Two-sided significance level.")
@click.option("--t-skip", "t_skip_s", type=float, default=None, help="T_skip of the skip metrics, seconds (default: the world's truth).")
@click.option("--ope", is_flag=True, help="Also run off-policy evaluation from an exploring control ranker, with the simulator's truth.")
@click.option(
    "--ope-reward",
    type=click.Choice(["click", "viral", "not_skipped"]),
    default="click",
    show_default=True,
    help="Top-slot reward for OPE.",
)
@click.option("--ope-temperature", type=float, default=1.0, show_default=True, help="Exploration temperature of the OPE logging ranker.")
@click.option(
    "--warmup-members", type=int, default=2000, show_default=True, help="Members of the warm-up run that trained presets learn from."
)
@click.option("--warmup-days", type=int, default=14, show_default=True, help="Days of the warm-up run.")
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
    warmup_members: int,
    warmup_days: int,
    out: str,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Offline A/B test in the simulator: two rankers, one population, closed loop, statistics."""
    import warnings
    from pathlib import Path

    from dwellrank_logs.errors import OutputExistsError
    from dwellrank_pipeline.presets import PresetContext, resolve_ranker
    from simulate import WorldConfig
    from simulate.ab import ABConfig, check_size, run_ab
    from simulate.ab_report import format_table, write_ab

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
    )
    # Fail fast, before any training or simulating, and without creating anything: output dir, size, rankers.
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise OutputExistsError(f"{target}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise OutputExistsError(f"{target}: directory is not empty (pass --overwrite to replace it)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # run_ab records the size warning in the report
        check_size(n_members, split, cfg.alpha, cfg.power, cfg.max_mde_sd, cfg.warn_mde_sd)
    ctx = PresetContext(world=cfg.simulation, seed=seed, warmup_members=warmup_members, warmup_days=warmup_days, t_skip_s=t_skip_s)
    if not quiet and {control, treatment} & {"engagement-only", "with-pskip"}:
        click.echo(f"training the ranking presets on a warm-up run of {warmup_members} members x {warmup_days} days ...", err=True)
    rankers = {"control": resolve_ranker(control, ctx, "--control"), "treatment": resolve_ranker(treatment, ctx, "--treatment")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _progress(cfg.simulation.n_days, "simulating A/B days", quiet) as bar:
            result = run_ab(cfg, rankers["control"], rankers["treatment"], progress=bar, names={"control": control, "treatment": treatment})
    write_ab(result, out, overwrite=overwrite)
    if quiet:
        for w in result.warnings:
            click.echo(f"warning: {w}", err=True)
    else:
        click.echo(format_table(result))
        click.echo(f"wrote {out} (seed {seed}, {n_members} members x {pre_days}+{n_days} days)")


# --- forecast: engagement-trend forecasting (engagement/) ---------------------------------------


@main.group()
def forecast() -> None:
    """Engagement-trend forecasting: DIGMN and the baselines of the paper."""


def _window_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option("--history-days", type=int, default=14, show_default=True, help="History window, days."),
            click.option("--future-days", type=int, default=14, show_default=True, help="Future (label) window, days."),
            click.option("--min-sessions", type=int, default=7, show_default=True, help="Drop members with fewer valid history sessions."),
            click.option("--max-sessions", type=int, default=64, show_default=True, help="Most recent history sessions kept per member."),
            click.option("--k-min", type=int, default=2, show_default=True, help="Fewest LDA intents searched."),
            click.option("--k-max", type=int, default=10, show_default=True, help="Most LDA intents searched (by held-out perplexity)."),
        ]
    ):
        f = opt(f)
    return f


@forecast.command("train")
@click.option("--logs", "logs_dir", type=click.Path(), required=True, help="Directory with members, sessions, events, deliveries.")
@click.option("--task", type=click.Choice(["day", "session"]), required=True, help="Day-level (3-class) or session-level (2-class).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Model directory to write.")
@_window_options
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split, LDA and torch.")
@click.option("--epochs", type=int, default=60, show_default=True, help="Maximum epochs (early stopping on validation).")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda[:N] or auto.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty model directory.")
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
    quiet: bool,
) -> None:
    """Mine intents, train DIGMN (80/10/10 split) and write a model directory with a loss curve."""
    from dwellrank_logs.io import check_output_dir
    from engagement import LdaConfig, TrainConfig, WindowConfig, build_dataset, read_logs, train_forecaster

    window = WindowConfig(history_days=history_days, future_days=future_days, min_history_sessions=min_sessions, max_sessions=max_sessions)
    tc = TrainConfig(max_epochs=epochs, batch_size=batch_size, device=device)
    lda = LdaConfig(k_min=k_min, k_max=k_max)
    check_output_dir(out, overwrite)  # refuse a non-empty --out before any work, creating nothing
    data = build_dataset(read_logs(logs_dir), window)

    def show(epoch: int, train_loss: float, val_loss: float) -> None:
        if not quiet:
            click.echo(f"  epoch {epoch:>3}  train loss {train_loss:.4f}  val loss {val_loss:.4f}", err=True)

    fc, history, pca_input = train_forecaster(data, task, seed=seed, train_config=tc, lda_config=lda, progress=show)
    fc.save(out, overwrite=overwrite, history=history, pca=pca_input)
    if not quiet:
        m = fc.meta["test_metrics"]
        click.echo(
            f"wrote {out} ({task}-level, seed {seed}, {data.n_members} members, K = {fc.intents.k} intents, "
            f"{fc.meta['n_params']:,} parameters, best epoch {history['best_epoch']})"
        )
        click.echo(f"  test macro-F1 {m['macro_f1']:.3f}  AUROC {m['auroc']:.3f}  accuracy {m['accuracy']:.3f}")


@forecast.command("score")
@click.option("--model", "model_dir", type=click.Path(), required=True, help="Model directory from 'forecast train'.")
@click.option("--logs", "logs_dir", type=click.Path(), required=True, help="Logs to score.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Parquet file of per-member scores.")
@click.option("--task", type=click.Choice(["day", "session"]), default=None, help="Expected task; an error if the model's differs.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda[:N] or auto.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--quiet", is_flag=True)
def forecast_score(model_dir: str, logs_dir: str, out: str, task: str | None, device: str, overwrite: bool, quiet: bool) -> None:
    """Per-member class probabilities and dynamic-intent vectors for the members of some logs."""
    from pathlib import Path

    from dwellrank_logs.errors import OutputExistsError
    from engagement import Forecaster, build_dataset, read_logs
    from engagement.forecaster import write_scores

    if Path(out).exists() and (Path(out).is_dir() or not overwrite):
        raise OutputExistsError(f"{out}: exists (pass --overwrite to replace a file)")
    fc = Forecaster.load(model_dir, task=task)
    data = build_dataset(read_logs(logs_dir), fc.window)
    scores = fc.score(data, device=device)
    write_scores(scores, out, overwrite=overwrite)
    if not quiet:
        click.echo(f"wrote {out}: {scores.height} members scored for the {fc.task}-level task")


@forecast.command("compare")
@click.option("--logs", "logs_dir", type=click.Path(), required=True)
@click.option("--task", type=click.Choice(["day", "session"]), required=True)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Directory for comparison.json, table.txt and PNGs.")
@_window_options
@click.option("--seeds", type=int, default=5, show_default=True, help="Replicates; replicate s uses seed s.")
@click.option("--models", default="all", show_default=True, help="Comma-separated subset of the models, or 'all'.")
@click.option("--epochs", type=int, default=60, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--overwrite", is_flag=True)
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
    device: str,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Every method of the paper's Tables 3, 4 and 6 over several seeds; prints a Table-3-style table."""
    import numpy as np

    from dwellrank_logs.errors import ConfigError
    from dwellrank_logs.io import check_output_dir
    from engagement import MODELS, LdaConfig, TrainConfig, WindowConfig, build_dataset, compare, format_table, mine_intents, read_logs
    from engagement.report import write_comparison

    names = MODELS if models.strip() == "all" else tuple(m.strip() for m in models.split(",") if m.strip())
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    window = WindowConfig(history_days=history_days, future_days=future_days, min_history_sessions=min_sessions, max_sessions=max_sessions)
    tc = TrainConfig(max_epochs=epochs, device=device)
    lda = LdaConfig(k_min=k_min, k_max=k_max)
    check_output_dir(out, overwrite)
    data = build_dataset(read_logs(logs_dir), window)
    # Intents are mined once, unsupervised, from every member's history sessions (no labels, no future data).
    intents = mine_intents(data.session_counts, np.random.default_rng(0), lda)
    if not quiet:
        click.echo(f"{data.n_members} members pass the filter; LDA chose K = {intents.k} intents", err=True)

    def show(seed: int, name: str, res: Any) -> None:
        if not quiet:
            m = res.metrics
            click.echo(f"  seed {seed}  {name:<26} macro-F1 {m['macro_f1']:.3f}  AUROC {m['auroc']:.3f}  ({res.seconds:.0f} s)", err=True)

    result = compare(data, intents, task, seeds=range(seeds), models=names, train_config=tc, progress=show)
    write_comparison(result, intents.to_dict(), out, overwrite=overwrite)
    if not quiet:
        click.echo(format_table(result))
        click.echo(f"wrote {out}")


# --- ranking: train and rank (issue 4) ---------------------------------------------------------


@main.command("train")
@click.option(
    "--logs", "logs_dir", type=click.Path(file_okay=False), required=True, help="Logs directory (impressions, sessions, updates, members)."
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Model directory to write.")
@click.option("--t-skip", "t_skip_s", type=float, default=None, help="T_skip in seconds; default: estimated from the logs' impressions.")
@click.option(
    "--feature-set", type=click.Choice(["dwell", "base"]), default="dwell", show_default=True, help="Features: with or without dwell."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--holdout-days", type=int, default=3, show_default=True, help="Last days held out for the report.")
@click.option("--no-baselines", is_flag=True, help="Skip the LR-only/GBDT-only baselines in the report (faster).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty model directory.")
@click.option("--quiet", is_flag=True, help="No summary.")
def train(
    logs_dir: str,
    out: str,
    t_skip_s: float | None,
    feature_set: str,
    seed: int,
    holdout_days: int,
    no_baselines: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Fit the P(click/react/comment/share/skip) heads, downstream/upstream models and default weights."""
    from dwellrank_logs.io import table_path
    from ranking.train import TrainConfig, train_ranker

    estimated = t_skip_s is None
    if estimated:
        from ranking.tskip import estimate_tskip_file

        t_skip_s = estimate_tskip_file(table_path(logs_dir, "impressions")).t_skip_s
    from pathlib import Path

    from dwellrank_logs.errors import OutputExistsError

    cfg = TrainConfig(
        feature_set=feature_set,
        t_skip_s=t_skip_s,
        seed=seed,
        holdout_days=holdout_days,
        baselines=not no_baselines,
        skip_lift=not no_baselines,
    )
    target = Path(out)
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not overwrite)):
        # Refuse before training, without creating anything.
        raise OutputExistsError(f"{target}: exists and is not an empty directory (pass --overwrite to replace it)")
    model = train_ranker(logs_dir, config=cfg)
    model.save(out, overwrite=overwrite)
    if not quiet:
        r = model.report
        click.echo(
            f"wrote {out} (seed {seed}, feature set {feature_set} v{model.feature_set.version}, "
            f"T_skip {t_skip_s:.2f} s{' estimated' if estimated else ''}, "
            f"{r['split']['n_train']:,} train / {r['split']['n_test']:,} held-out impressions)"
        )
        for h, d in r["heads"].items():
            m = d["metrics"]
            base = f"  LR-only AUC {m['lr_only']['auc']:.3f}" if "lr_only" in m else ""
            g = m["gbdt_lr"]
            click.echo(f"  P({h:<10}) AUC {g['auc']:.3f}  NE {g['ne']:.3f}  calibration {g['calibration']:.3f}{base}")
        if "skip_dwell_lift" in r:
            lift = r["skip_dwell_lift"]
            click.echo(f"  P(skip) AUC with dwell features {lift['auc_dwell']:.3f} vs without {lift['auc_base']:.3f}")


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
@click.option("--quiet", is_flag=True, help="No summary.")
def rank(model_dir: str, candidates: str, out: str, top_k: int | None, logs_dir: str | None, weights_path: str | None, quiet: bool) -> None:
    """Score candidate rows: every head's prediction, the value score and the rank per request."""
    from ranking.ranker import rank_candidates_file
    from ranking.value import load_weights

    weights = load_weights(weights_path) if weights_path else None
    result = rank_candidates_file(model_dir, candidates, out, top_k=top_k, logs_dir=logs_dir, weights=weights)
    if not quiet:
        n_req = result["request_id"].n_unique() if "request_id" in result.columns else 1
        click.echo(f"wrote {out}: {result.height:,} rows, {n_req:,} request(s), mean score {result['score'].mean():.4f}")


if __name__ == "__main__":
    main()
