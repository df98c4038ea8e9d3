"""The main job end to end: simulate, estimate T_skip, train, rank, A/B report.

``run_demo`` chains the library's stages on built-in defaults and writes every
artifact under one directory, atomically (the directory appears only when all
stages succeeded).  ``dwellrank demo`` is a thin layer over it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import polars as pl

from dwellrank_logs.checks import check_int, check_positive_int
from dwellrank_logs.errors import ConfigError

__all__ = ["DemoSizes", "last_day_candidates", "run_demo"]


@dataclass(frozen=True)
class DemoSizes:
    """Sizes of the demo's simulated worlds (defaults: the issue's default world)."""

    members: int = 5000
    days: int = 28
    ab_members: int = 5000
    ab_days: int = 28
    ab_pre_days: int = 7
    warmup_members: int = 2000
    warmup_days: int = 14

    def __post_init__(self) -> None:
        for name in ("members", "days", "ab_members", "ab_days", "warmup_members", "warmup_days"):
            check_positive_int(name, getattr(self, name))
        check_int("ab_pre_days", self.ab_pre_days, 0)


def last_day_candidates(logs_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """Candidate rows for the last simulated day: every update shown in a session of that day.

    Columns are :data:`dwellrank_logs.protocol.CANDIDATE_COLUMNS` (request_id is the
    session), so ``rank --logs`` can compute features from the history before
    that day and re-rank what was shown.
    """
    from dwellrank_logs.io import scan_table, table_path

    imp = scan_table(table_path(logs_dir, "impressions"), "impressions")
    upd = scan_table(table_path(logs_dir, "updates"), "updates")
    ses = scan_table(table_path(logs_dir, "sessions"), "sessions")
    # The day a request belongs to is its session's start day (a late session may end after midnight).
    last = ses.select(pl.col("start_ts").max().dt.truncate("1d")).collect().item()
    day_sessions = ses.filter(pl.col("start_ts") >= last).select("session_id", pl.col("start_ts").alias("request_ts"), "client")
    return (
        imp.select("session_id", "member_id", "update_id")
        .join(day_sessions, on="session_id")
        .join(upd.select("update_id", "update_type", "author_id", "topic", "created_ts"), on="update_id")
        .rename({"session_id": "request_id"})
        .select("request_id", "member_id", "update_id", "update_type", "author_id", "topic", "created_ts", "request_ts", "client")
        .sort("request_id", "update_id")
        .collect()
    )


def _estimate_tskip(impressions: os.PathLike[str], sizes: DemoSizes) -> Any:
    """T_skip on the default configuration; a world too small for it is refused in the demo's terms."""
    import re

    from ranking.tskip import InsufficientDataError, TskipConfig, estimate_tskip_file

    try:
        return estimate_tskip_file(impressions, TskipConfig())
    except InsufficientDataError as exc:
        # The demo does not expose the estimator's minimum: say what it is, and what the user can change.
        detail = re.sub(r"min_rows_per_group=([\d,]+)", r"the \1", str(exc))
        raise ConfigError(
            f"the demo's world of {sizes.members} members x {sizes.days} days is too small to estimate T_skip ({detail}); "
            "use more members or days"
        ) from None


def run_demo(
    out: str | os.PathLike[str],
    seed: int = 0,
    sizes: DemoSizes | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    progress: Callable[[int, str], AbstractContextManager[Callable[[int], None] | None]] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run every stage on one seed and write the artifacts under ``out``.

    Layout: ``logs/`` (simulated tables + truth), ``tskip.json``/``tskip.png``,
    ``model/`` (heads, weights, report.json/png with held-out metrics),
    ``ranked.parquet`` (last day's candidates re-ranked), ``ab/`` (report of
    with-pskip vs engagement-only), ``demo.json`` (headline figures).

    Parameters
    ----------
    out : path-like
        Output directory, written when every stage has succeeded.  It must
        not exist or be empty unless ``overwrite`` (checked before any work
        and again at the final rename).
    seed : int
        Seeds the world, training and the A/B test.
    sizes : DemoSizes, optional
    log : callable
        Receives one line per finished stage.
    progress : callable, optional
        ``progress(total, label)`` returns a context manager yielding a
        per-step callback (or None), e.g. a terminal progress bar.
    overwrite : bool
        Replace a non-empty ``out``.

    Raises
    ------
    OutputExistsError
        ``out`` is a non-empty directory and ``overwrite`` is false, or a file.
    ConfigError
        The world is too small for a stage (too few impressions for T_skip,
        too few days to train, too few members for the A/B test).
    """
    from dwellrank_logs.io import atomic_dir, table_path, write_json
    from dwellrank_pipeline.presets import PresetContext, resolve_ranker
    from ranking.ranker import rank_candidates_file
    from ranking.train import TrainConfig, train_ranker
    from ranking.tskip import write_tskip_outputs
    from simulate import WorldConfig, simulate, write_simulation
    from simulate.ab import ABConfig, run_ab
    from simulate.ab_report import format_ab_table, write_ab

    sizes = sizes or DemoSizes()
    bar = progress or (lambda _total, _label: nullcontext(None))
    headline: dict[str, Any] = {"seed": seed, "sizes": sizes.__dict__}
    t_start = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        world = WorldConfig(n_members=sizes.members, n_days=sizes.days)
        with bar(world.n_days, "simulating") as step:
            sim = simulate(world, seed=seed, progress=step)
        logs_dir = write_simulation(sim, tmp / "logs")
        s = sim.summary
        headline["simulation"] = s
        log(
            f"[1/5] simulated {world.n_members} members x {world.n_days} days (seed {seed}): "
            f"{s['rows']['impressions']:,} impressions, {s['rows']['sessions']:,} sessions, skip rate {s['skip_rate']:.3f}"
        )

        tskip = _estimate_tskip(table_path(logs_dir, "impressions"), sizes)
        write_tskip_outputs(tskip, tmp / "tskip.json", tmp / "tskip.png")
        headline["t_skip_s"] = {
            "estimate": tskip.t_skip_s,
            "truth": world.t_skip_s,
            "per_type": {g: t.threshold_s for g, t in tskip.groups.items()},
        }
        log(
            f"[2/5] T_skip = {tskip.t_skip_s:.2f} s by Bayes' rule (truth {world.t_skip_s:.2f} s); "
            f"per type: {', '.join(f'{g} {t.threshold_s:.2f}' for g, t in tskip.groups.items() if t.threshold_s is not None)}"
        )

        model = train_ranker(logs_dir, config=TrainConfig(feature_set="dwell", t_skip_s=tskip.t_skip_s, seed=seed))
        model.save(tmp / "model")
        rep = model.report
        headline["model"] = {h: d["metrics"]["gbdt_lr"] for h, d in rep["heads"].items()}
        if "skip_dwell_lift" in rep:
            headline["skip_dwell_lift"] = rep["skip_dwell_lift"]
        aucs = ", ".join(f"{h} {d['metrics']['gbdt_lr']['auc']:.3f}" for h, d in rep["heads"].items())
        log(f"[3/5] trained GBDT+LR heads on {rep['split']['n_train']:,} impressions; held-out AUC: {aucs}")

        cand_path = tmp / "candidates.parquet"
        last_day_candidates(logs_dir).write_parquet(cand_path)
        ranked = rank_candidates_file(tmp / "model", cand_path, tmp / "ranked.parquet", top_k=10, logs_dir=logs_dir)
        headline["ranked_rows"] = ranked.height
        log(f"[4/5] ranked the last day's {ranked['request_id'].n_unique():,} feed requests; top 10 each -> ranked.parquet")

        ab_cfg = ABConfig(world=WorldConfig(n_members=sizes.ab_members, n_days=sizes.ab_days), seed=seed, pre_days=sizes.ab_pre_days)
        ctx = PresetContext(world=ab_cfg.simulation, seed=seed, warmup_members=sizes.warmup_members, warmup_days=sizes.warmup_days)
        control = resolve_ranker("engagement-only", ctx, "control")
        treatment = resolve_ranker("with-pskip", ctx, "treatment")
        with bar(ab_cfg.simulation.n_days, "A/B test") as step:
            ab = run_ab(ab_cfg, control, treatment, progress=step, names={"control": "engagement-only", "treatment": "with-pskip"})
        write_ab(ab, tmp / "ab")
        headline["ab"] = ab.effects.select("metric", "diff", "ci_low", "ci_high", "rel_diff", "p_value").to_dicts()
        log("[5/5] A/B with-pskip (treatment) vs engagement-only (control) -> ab/report.json, ab/report.png\n" + format_ab_table(ab))
        headline["seconds"] = round(time.perf_counter() - t_start, 1)
        write_json(tmp / "demo.json", headline)
    return headline
