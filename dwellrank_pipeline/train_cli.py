"""The ``dwellrank train`` command: fit the ranking heads from a logs directory (polars or Spark)."""

from __future__ import annotations

import click

from dwellrank_logs.errors import ConfigError
from dwellrank_pipeline.flags import EngineChoice, engine_options
from ranking.features import FEATURE_SETS
from ranking.sampling import format_bytes, parse_memory
from ranking.train import TrainConfig
from ranking.weighting import CLICK_WEIGHTINGS

__all__ = ["train"]

_TRAIN = TrainConfig()


@click.command("train")
@click.option(
    "--logs",
    "logs_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Logs directory (impressions, sessions, updates, members); with --engine spark also a URI or hive:DB[.PREFIX] tables.",
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Model directory to write.")
@click.option("--t-skip", "t_skip_s", type=float, default=None, help="T_skip in seconds; default: estimated from the logs' impressions.")
@click.option(
    "--feature-set",
    type=click.Choice(tuple(FEATURE_SETS)),
    default=_TRAIN.feature_set,
    show_default=True,
    help="Features: with or without dwell.",
)
@click.option("--seed", type=int, default=_TRAIN.seed, show_default=True, help="Random seed.")
@click.option("--holdout-days", type=int, default=_TRAIN.holdout_days, show_default=True, help="Last days held out for the report.")
@click.option("--no-baselines", is_flag=True, help="Skip the LR-only/GBDT-only baselines in the report (faster).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty model directory.")
@engine_options("polars on this machine, or Apache Spark (the training frame is built on Spark, the heads fitted here).")
@click.option(
    "--max-rows",
    type=int,
    default=None,
    help="With --engine spark: fit on a seeded sample of at most this many training rows (recorded in metadata.json).",
)
@click.option(
    "--frame-dir",
    default=None,
    help="With --engine spark: write the training frame here (a path or file:// URI the executors and this driver share); "
    "default a temporary directory, removed after fitting.",
)
@click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    help="Memory budget of the polars engine, e.g. 8G or 512M [default: 8G, fixed so that a model does not depend on the "
    "machine]. A larger frame is built a few days at a time and each head fitted from a seeded per-head sample "
    "(negative downsampling, recalibrated; recorded in metadata.json).",
)
@click.option(
    "--sample",
    type=float,
    default=None,
    metavar="RATE",
    help="Polars engine: fit from samples whatever the budget; each head keeps its rarer label and this rate "
    "of the other, the regressions this rate of all rows.",
)
@click.option(
    "--click-weighting",
    type=click.Choice(CLICK_WEIGHTINGS),
    default=_TRAIN.click_weighting,
    show_default=True,
    help="Row weights of P(click): after_click_dwell weighs each click by d/(d+H) of its after-click dwell d "
    "(mean 1 over the clicks), so click bounces count less (polars engine; recorded in metadata.json).",
)
@click.option(
    "--click-dwell-half",
    "click_dwell_half_s",
    type=float,
    default=_TRAIN.click_dwell_half_s,
    show_default=True,
    metavar="H",
    help="With --click-weighting after_click_dwell: the after-click dwell in seconds at which a click weighs half.",
)
@click.option(
    "--pskip-glmix",
    is_flag=True,
    help="Also fit GLMix random effects of P(skip) over the skip head's logit (per member on update type and topic, per "
    "update an intercept; prior variances chosen on the last training days) and serve P(skip) from them "
    "(polars: the in-memory frame; --engine spark: the random effects fitted on Spark, grouped by entity; saved in glmix/, "
    "recorded in metadata.json).",
)
@click.option(
    "--dwell-embeddings",
    is_flag=True,
    help="Add dwell-embedding features (feature set dwell_emb): member x author and member x topic truncated SVDs of "
    "log not-skipped dwell, each training row's refitted on the days before its own (polars engine, in-memory frame; "
    "vectors saved in embeddings/, recorded in metadata.json).",
)
@click.option(
    "--embedding-rank",
    type=int,
    default=_TRAIN.embedding_author_rank,
    show_default=True,
    help="With --dwell-embeddings: rank of the member x author factorisation.",
)
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
    engine: EngineChoice,
    max_rows: int | None,
    max_memory: str | None,
    sample: float | None,
    frame_dir: str | None,
    click_weighting: str,
    click_dwell_half_s: float,
    pskip_glmix: bool,
    dwell_embeddings: bool,
    embedding_rank: int,
    quiet: bool,
) -> None:
    """Fit the P(click/react/comment/share/skip) heads, downstream/upstream models and default weights."""
    from dwellrank_logs.io import check_not_input, check_output_dir
    from ranking.train import train_ranker
    from ranking.tskip import InsufficientDataError, tskip_from_logs

    if engine.spark:
        from dwellrank_logs.spark_sources import driver_path

        out = driver_path(out, "--out")
    check_output_dir(out, overwrite, "--out")  # writable, not replaced unasked: before estimating or training, creating nothing
    check_not_input(out, {"--logs": logs_dir}, "--out")
    for flag, value in (("--max-rows", max_rows), ("--frame-dir", frame_dir)):
        if value is not None and not engine.spark:
            raise ConfigError(f"{flag} is an option of the Spark engine's training frame; pass --engine spark with it")
    for flag, given in (("--max-memory", max_memory), ("--sample", sample)):
        if given is not None and engine.spark:
            raise ConfigError(f"{flag} bounds the polars engine; with --engine spark, --max-rows samples the frame")
    if click_weighting != "none" and engine.spark:
        raise ConfigError(
            "--click-weighting reads the impressions' click_dwell_s, which the Spark training frame lacks; use the polars engine"
        )
    if pskip_glmix and sample is not None:
        raise ConfigError("--pskip-glmix fits on the whole training frame: train without --sample")
    if dwell_embeddings and (engine.spark or sample is not None):
        raise ConfigError(
            "--dwell-embeddings refits the embeddings per day on the whole in-memory training frame: use the polars engine "
            "without --sample (the Spark engine does not build them yet)"
        )
    if dwell_embeddings and feature_set != "dwell":
        raise ConfigError(f"--dwell-embeddings extends the dwell feature set; got --feature-set {feature_set}")
    if not (0 < click_dwell_half_s < float("inf")):
        raise ConfigError(f"--click-dwell-half must be a finite number of seconds > 0, got {click_dwell_half_s}")
    budget = None if max_memory is None else parse_memory(max_memory, "--max-memory")
    if sample is not None and not (0 < sample <= 1):
        raise ConfigError(f"--sample must be a keep rate in (0, 1], got {sample}")
    estimated = t_skip_s is None

    def config(t: float) -> TrainConfig:
        return TrainConfig(
            feature_set=feature_set,
            t_skip_s=t,
            seed=seed,
            holdout_days=holdout_days,
            baselines=not no_baselines,
            skip_lift=not no_baselines,
            click_weighting=click_weighting,
            click_dwell_half_s=click_dwell_half_s,
            pskip_glmix=pskip_glmix,
            dwell_embeddings=dwell_embeddings,
            embedding_author_rank=embedding_rank,
        )

    try:
        if engine.spark:
            from dwellrank_logs.spark_sources import logs_for_spark, table_uri
            from ranking.spark_inputs import LOG_TABLES
            from ranking.train_spark import train_ranker_spark
            from ranking.tskip import estimate_tskip_spark

            with engine.session("dwellrank train") as spark:  # the one place a session is built
                logs = logs_for_spark(logs_dir, LOG_TABLES, spark)  # hive:... names: the catalog's tables
                if t_skip_s is None:
                    imp = logs["impressions"] if isinstance(logs, dict) else table_uri(logs_dir, "impressions")
                    t_skip_s = estimate_tskip_spark(imp, spark=spark).t_skip_s
                cfg = config(t_skip_s)
                model = train_ranker_spark(logs, cfg, spark=spark, max_rows=max_rows, frame_dir=frame_dir, overwrite=overwrite)
        else:
            cfg = config(tskip_from_logs(logs_dir) if t_skip_s is None else t_skip_s)
            model = train_ranker(logs_dir, config=cfg, max_memory=budget, sample=sample)
    except InsufficientDataError as exc:
        if not estimated:
            raise
        raise InsufficientDataError(f"{exc}; or pass --t-skip to train with a known T_skip") from None
    model.save(out, overwrite=overwrite)
    if not quiet:
        r = model.report
        click.echo(
            f"wrote {out} (seed {seed}, feature set {model.feature_set.name} v{model.feature_set.version}, "
            f"T_skip {cfg.t_skip_s:.2f} s{' estimated' if estimated else ''}, "
            f"{r['split']['n_train']:,} train / {r['split']['n_test']:,} held-out impressions)"
        )
        if "sampling" in r:  # fitted from per-head samples: say how many rows each head saw
            s = r["sampling"]
            rows = ", ".join(f"{h} {rec['rows_after']:,}" for h, rec in s["heads"].items())
            click.echo(
                f"  per-head samples (budget {format_bytes(s['budget_bytes'])}, seed {seed}) of {s['heads']['click']['rows_before']:,} rows: {rows}"
            )
        if click_weighting != "none":
            click.echo(f"  P(click) fitted with {click_weighting} weights (half weight at {click_dwell_half_s:g} s of after-click dwell)")
        for h, d in r["heads"].items():
            m = d["metrics"]
            base = f"  LR-only AUC {m['lr_only']['auc']:.3f}" if "lr_only" in m else ""
            g = m["gbdt_lr"]
            click.echo(f"  P({h:<10}) AUC {g['auc']:.3f}  NE {g['ne']:.3f}  calibration {g['calibration']:.3f}{base}")
        if "skip_dwell_lift" in r:
            lift = r["skip_dwell_lift"]
            click.echo(f"  P(skip) AUC with dwell features {lift['auc_dwell']:.3f} vs without {lift['auc_base']:.3f}")
        em = model.metadata.get("embeddings")
        if em is not None and em["fit_window"]["served"]:
            ranks = ", ".join(f"{k} rank {v}" for k, v in em["ranks"].items())
            window = em["fit_window"]["served"]
            click.echo(f"  dwell embeddings ({ranks}; served vectors fitted on {window[0]}..{window[1]}) in embeddings/")
        ps = model.metadata.get("pskip")
        if ps is not None and ps["held_out"]["glmix"] is not None:
            g, m = ps["held_out"]["global"], ps["held_out"]["glmix"]
            pv = ", ".join(f"{b['name']} {b['prior_var']:g}" for b in ps["blocks"])
            click.echo(
                f"  GLMix P(skip) (prior variances {pv}): held-out AUC {m['auc']:.4f} vs the head's {g['auc']:.4f}, "
                f"log loss {m['log_loss']:.4f} vs {g['log_loss']:.4f}"
            )
