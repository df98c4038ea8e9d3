"""Simulator throughput: impressions per second end to end, at the default size and 10x.

End to end is ``simulate_to(..., keep_tables=False)``, what ``dwellrank
simulate`` runs: simulate and write the logs directory, each day's tables
encoded while the next day runs and not kept in memory.
For comparison each run also times the in-memory path, ``simulate`` followed
by ``write_simulation``, and as a reference the time to write the same tables
from pre-built arrays with polars (a lower bound on any simulator that
produces these files; ratio = end to end / reference).  Each size runs
``--repeat`` times in this process: the first run is cold (what one CLI call
pays, fresh memory pages included), the best run is warm.

    python bench/simulate.py [--scales 1,10] [--seed 0] [--repeat 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the `simulate` package; drop bench/ from the import path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import tempfile
import time

import polars as pl

from dwellrank_logs.io import table_path
from simulate import WorldConfig, simulate, simulate_to, write_simulation


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="1,10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per size; the first is cold (as one CLI call), the best is warm")
    args = ap.parse_args()
    base = WorldConfig()
    print(
        f"{'members':>8} {'days':>4} {'impressions':>12} {'run':>5} {'end to end s':>12} {'imp/s':>10} "
        f"{'in-memory sim s':>15} {'+ write s':>9} {'ref write s':>11} {'ratio':>6}"
    )
    for scale in (int(s) for s in args.scales.split(",")):
        cfg = base.replace(n_members=base.n_members * scale)
        rows = []
        for _ in range(max(args.repeat, 1)):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = simulate_to(Path(tmp) / "logs", cfg, seed=args.seed, keep_tables=False)  # as the CLI runs it
                t_e2e = time.perf_counter() - t0
                n_imp = res.summary["rows"]["impressions"]
                del res
                t0 = time.perf_counter()
                res = simulate(cfg, seed=args.seed)
                t_sim = time.perf_counter() - t0
                t0 = time.perf_counter()
                write_simulation(res, Path(tmp) / "mem")
                t_write = time.perf_counter() - t0
                # Reference: the same six log tables built from pre-built Arrow arrays and written.
                arrays = {n: res.tables[n].to_arrow() for n in res.tables}
                t0 = time.perf_counter()
                for n, arrow in arrays.items():
                    pl.from_arrow(arrow).write_parquet(table_path(tmp, f"ref_{n}"), compression="zstd")
                t_ref = time.perf_counter() - t0
            rows.append((t_e2e, t_sim, t_write, t_ref))
            del res, arrays
        for label, (t_e2e, t_sim, t_write, t_ref) in (("cold", rows[0]), ("best", min(rows, key=lambda r: r[0]))):
            print(
                f"{cfg.n_members:>8} {cfg.n_days:>4} {n_imp:>12,} {label:>5} {t_e2e:>12.2f} {n_imp / t_e2e:>10,.0f} "
                f"{t_sim:>15.2f} {t_write:>9.2f} {t_ref:>11.2f} {t_e2e / t_ref:>6.1f}"
            )


if __name__ == "__main__":
    main()
