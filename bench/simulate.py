"""Simulator throughput: impressions per second end to end, at the default size and 10x.

Prints, for each size, the time to simulate (all tables, ground truth included),
the time to write the result, and as a reference the time to build and write
the same tables from pre-built arrays (a lower bound on any simulator that
produces these files).  Each size runs ``--repeat`` times in this process: the
first run is cold (what one ``dwellrank simulate`` call pays, fresh memory
pages included), the best run is warm.

    python bench/simulate.py [--scales 1,10] [--seed 0] [--repeat 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the `simulate` package; drop bench/ from the import path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import polars as pl  # noqa: E402

from logs.io import table_path  # noqa: E402
from simulate import WorldConfig, simulate, write_simulation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="1,10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per size; the first is cold (as one CLI call), the best is warm")
    args = ap.parse_args()
    base = WorldConfig()
    print(f"{'members':>8} {'days':>4} {'impressions':>12} {'run':>5} {'sim s':>7} {'write s':>7} {'imp/s (sim+write)':>18} {'ref write s':>11} {'ratio':>6}")
    for scale in (int(s) for s in args.scales.split(",")):
        cfg = base.replace(n_members=base.n_members * scale)
        rows = []
        for _ in range(max(args.repeat, 1)):
            t0 = time.perf_counter()
            res = simulate(cfg, seed=args.seed)
            t_sim = time.perf_counter() - t0
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                write_simulation(res, Path(tmp) / "logs")
                t_write = time.perf_counter() - t0
                # Reference: the same six log tables built from pre-built Arrow arrays and written.
                arrays = {n: res.tables[n].to_arrow() for n in res.tables}
                t0 = time.perf_counter()
                for n, arrow in arrays.items():
                    pl.from_arrow(arrow).write_parquet(table_path(tmp, f"ref_{n}"), compression="zstd")
                t_ref = time.perf_counter() - t0
            n_imp = res.tables["impressions"].height
            rows.append((t_sim, t_write, t_ref))
            del res, arrays
        for label, (t_sim, t_write, t_ref) in (("cold", rows[0]), ("best", min(rows, key=lambda r: r[0] + r[1]))):
            total = t_sim + t_write
            print(f"{cfg.n_members:>8} {cfg.n_days:>4} {n_imp:>12,} {label:>5} {t_sim:>7.2f} {t_write:>7.2f} "
                  f"{n_imp / total:>18,.0f} {t_ref:>11.2f} {total / t_ref:>6.1f}")


if __name__ == "__main__":
    main()
