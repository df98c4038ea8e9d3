"""T_skip on Spark against a bare Spark job over the same columns, and the polars engine for reference.

Builds the impressions file of ``bench/tskip.py`` (a simulated world of 3,000
members x 14 days, its impressions tiled to ``--rows`` rows, all columns, zstd
Parquet) in a temporary directory, and the same rows as ``--parts`` part files
(the layout Spark writes), unless ``--path`` names an impressions file or
directory to use instead.  On one ``local[--threads]`` session it times, in
``--repeat`` interleaved runs after one warm-up run of each (min and median):

* ``estimate_tskip_spark(path)``: the whole estimate, per-type curves, with
  the reader's checks (the Spark engine's entry point);
* a bare Spark scan + count of the same columns
  (``spark.read.parquet(p).select(cols).count()``; Spark may answer a count
  from the row-group footers without decoding the columns);
* a bare Spark scan + one aggregation that decodes every value of those columns
  (sum of dwell, count of each action, max of the type): the baseline the
  issue's <= 1.5x goal is stated against;
* ``estimate_tskip_file(path)`` and a bare polars scan of the columns on the
  same file: the single-machine engine, for reference;

and prints the ratios and whether both engines return the same result
(``to_dict()`` equal).

    python bench/tskip_spark.py [--rows 10000000] [--repeat 5] [--parts 16] [--threads 2] [--path FILE_OR_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory has a simulate.py named like the `simulate` package; drop bench/ from the path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import polars as pl

from dwellrank_logs.schema import ACTION_COLUMNS
from dwellrank_logs.spark import local_session
from ranking.tskip import TskipConfig, TskipResult, estimate_tskip_file, estimate_tskip_spark
from simulate import WorldConfig, simulate

COLS = ["dwell_s", *ACTION_COLUMNS, "update_type"]


def build(tmp: Path, rows: int, parts: int, seed: int) -> tuple[Path, Path | None]:
    """The 10M-row file of bench/tskip.py and, with ``parts``, the same rows as part files."""
    imp = simulate(WorldConfig(n_members=3000, n_days=14), seed=seed).tables["impressions"]
    reps = -(-rows // imp.height)
    big = pl.concat([imp] * reps).head(rows)
    path = tmp / "impressions.parquet"
    big.write_parquet(path, compression="zstd", statistics=True)
    if not parts:
        return path, None
    d = tmp / "impressions_parts"
    d.mkdir()
    for i, chunk in enumerate(big.iter_slices(-(-big.height // parts))):
        chunk.write_parquet(d / f"part-{i:05d}.parquet", compression="zstd", statistics=True)
    return path, d


def timed(fns: dict[str, Callable[[], Any]], repeat: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """One warm-up run of each, then interleaved runs (a, b, c, a, b, c, ...) so other load hits all alike."""
    outs = {k: fn() for k, fn in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return times, outs


def bench(spark: Any, path: Path, cfg: TskipConfig, repeat: int, label: str) -> None:
    from pyspark.sql import functions as F

    def spark_count() -> int:
        return int(spark.read.parquet(str(path)).select(COLS).count())

    def spark_agg() -> tuple:
        df = spark.read.parquet(str(path)).select(COLS)
        aggs = [F.sum("dwell_s"), *(F.count_if(F.col(c)) for c in ACTION_COLUMNS), F.max("update_type")]
        return tuple(df.agg(*aggs).collect()[0])

    def polars_scan() -> int:
        lf = pl.scan_parquet(path, hive_partitioning=True, hidden_file_prefix=[".", "_"]) if path.is_dir() else pl.scan_parquet(path)
        return lf.select(COLS).collect().height

    fns: dict[str, Callable[[], Any]] = {
        "spark estimator": lambda: estimate_tskip_spark(path, cfg, spark=spark),
        "spark scan + count": spark_count,
        "spark scan + aggregation": spark_agg,
        "polars estimator": lambda: estimate_tskip_file(path, cfg),
        "polars scan (collect)": polars_scan,
    }
    times, outs = timed(fns, repeat)
    mn = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    a, b = outs["spark estimator"], outs["polars estimator"]
    assert isinstance(a, TskipResult) and isinstance(b, TskipResult)
    print(f"{label} ({repeat} interleaved runs after one warm-up)")
    print(f"  {'':28} {'min s':>7} {'median s':>9}")
    for k in fns:
        print(f"  {k:28} {mn[k]:7.3f} {med[k]:9.3f}")
    for base in ("spark scan + aggregation", "spark scan + count"):
        paired = sorted(e / s for e, s in zip(times["spark estimator"], times[base], strict=True))
        print(
            f"  spark estimator / {base:24} {mn['spark estimator'] / mn[base]:5.2f}x (min)  "
            f"{med['spark estimator'] / med[base]:5.2f}x (median)  {statistics.median(paired):5.2f}x (paired median)"
        )
    print(f"  spark estimator / polars estimator       {mn['spark estimator'] / mn['polars estimator']:5.2f}x (min)")
    print(f"  polars estimator / polars scan           {mn['polars estimator'] / mn['polars scan (collect)']:5.2f}x (min)")
    print(f"  T_skip {a.t_skip_s} s, {a.n_rows:,} rows; same result as polars (to_dict): {a.to_dict() == b.to_dict()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--driver-memory", default="4g")
    ap.add_argument("--path", type=Path, default=None, help="an impressions Parquet file or directory instead of the generated one")
    args = ap.parse_args()
    cfg = TskipConfig()
    t0 = time.perf_counter()
    spark = local_session("bench-tskip", threads=args.threads, driver_memory=args.driver_memory)
    print(f"Spark {spark.version}, local[{args.threads}], session started in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        if args.path is not None:
            targets = [(args.path, str(args.path))]
        else:
            t0 = time.perf_counter()
            path, parts = build(Path(tmp), args.rows, args.parts, args.seed)
            mb = path.stat().st_size / 2**20
            print(f"{args.rows:,} impressions, {mb:.0f} MiB zstd Parquet, built in {time.perf_counter() - t0:.1f} s")
            targets = [(path, "one file")] + ([(parts, f"{args.parts} part files")] if parts is not None else [])
        for p, label in targets:
            bench(spark, p, cfg, args.repeat, label)
    spark.stop()


if __name__ == "__main__":
    main()
