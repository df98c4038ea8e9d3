"""A/B harness throughput: time per simulated member-day for a full offline A/B test.

Runs ``simulate-ab``'s library path (preset resolution, closed-loop simulation
of both arms, per-member statistics, optional OPE, writing all outputs) and
prints the time of each stage and the time per simulated member-day.  Goal:
5,000 members x 28 days in under 2 minutes on 2 cores.

    python bench/ab.py [--members 5000] [--days 28] [--pre-days 7]
                       [--control popularity] [--treatment oracle] [--ope] [--seed 0]
                       [--warmup-members 2000] [--warmup-days 14] [--table]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere: the repository root first on the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import tempfile
import time
import warnings

from dwellrank_pipeline.presets import PresetContext, resolve_ranker
from simulate import WorldConfig
from simulate.ab import ABConfig, run_ab
from simulate.ab_report import write_ab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=5000)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--pre-days", type=int, default=7)
    ap.add_argument("--control", default="popularity")
    ap.add_argument("--treatment", default="oracle")
    ap.add_argument("--ope", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup-members", type=int, default=2000)
    ap.add_argument("--warmup-days", type=int, default=14)
    ap.add_argument("--table", action="store_true", help="Also print the A/B table.")
    args = ap.parse_args()

    cfg = ABConfig(world=WorldConfig(n_members=args.members, n_days=args.days), pre_days=args.pre_days, seed=args.seed, ope=args.ope)
    t_all = time.perf_counter()
    ctx = PresetContext(world=cfg.simulation, seed=args.seed, warmup_members=args.warmup_members, warmup_days=args.warmup_days)
    t0 = time.perf_counter()
    control = resolve_ranker(args.control, ctx, "--control")
    treatment = resolve_ranker(args.treatment, ctx, "--treatment")
    t_presets = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        result = run_ab(cfg, control, treatment, names={"control": args.control, "treatment": args.treatment})
        t_run = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_ab(result, Path(tmp) / "ab")
        t_write = time.perf_counter() - t0
    total = time.perf_counter() - t_all
    member_days = args.members * (args.days + args.pre_days)
    s = result.summary
    print(
        f"A/B {args.control} vs {args.treatment}: {args.members} members x ({args.pre_days} pre + {args.days}) days, "
        f"{s['simulation']['rows']['impressions']:,} impressions, seed {args.seed}{', with OPE' if args.ope else ''}"
    )
    print(f"  presets   {t_presets:7.2f} s  (warm-up run and training, for trained presets)")
    print(f"  simulate  {s['simulate_s']:7.2f} s")
    print(f"  analyse   {s['analyse_s']:7.2f} s  (per-member aggregates, tests, truth)")
    if args.ope:
        print(f"  OPE       {s['ope_s']:7.2f} s  (logging run with exploration, estimates, truth)")
    print(f"  run_ab    {t_run:7.2f} s")
    print(f"  write     {t_write:7.2f} s  (parquet, json, png)")
    print(
        f"  total     {total:7.2f} s  = {1e6 * total / member_days:.1f} us per simulated member-day "
        f"({member_days:,} member-days; goal: under 120 s)"
    )
    print(
        f"  A/B alone {total - t_presets:7.2f} s  = {1e6 * (total - t_presets) / member_days:.1f} us per simulated member-day (without preset training)"
    )
    if args.table:
        from simulate.ab_report import format_ab_table

        print(format_ab_table(result))


if __name__ == "__main__":
    main()
