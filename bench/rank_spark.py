"""Batch ranking on Spark against the polars engine, and the mapInArrow scorer against the forest on the driver.

Trains a model (dwell features) on a simulated world, writes ``--rows`` candidate rows with the model's
feature columns (features of real impressions, tiled, 10 rows per request) as one Parquet file, and on one
``local[--threads]`` session prints the wall time (best of ``--repeat`` after a warm-up, and the cold first
run) of

* ``rank_candidates_spark(model, file, out)``: the whole Spark engine (checks, scoring, window ranks, part files);
* ``rank_candidates_file(model, file, out)``: the polars engine;

and rows/s of

* the Spark scorer alone: ``score_frame_spark`` over the file, into Spark's ``noop`` sink, minus a bare scan
  of the same columns into ``noop``;
* on the driver, what each Arrow batch runs (``model.predict`` + ``value_function``, one thread) and the
  compiled forest's raw scores alone (``CompiledForest.raw_scores``).

    python bench/rank_spark.py [--rows 1000000] [--members 3000] [--days 14] [--threads 2] [--repeat 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory has a simulate.py named like the `simulate` package; drop bench/ from the path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import tempfile
import time
from collections.abc import Callable

import polars as pl

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Spark's Python workers: this interpreter

from dwellrank_logs.spark import local_session
from ranking.features import training_frame
from ranking.ranker import rank_candidates_file
from ranking.spark_rank import rank_candidates_spark, score_frame_spark
from ranking.train import TrainConfig, train_ranker
from ranking.value import value_function
from simulate import WorldConfig, simulate


def _times(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(first run, best of the next ``repeat``), seconds."""
    out = []
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out[0], min(out[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--members", type=int, default=3000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    world = simulate(WorldConfig(n_members=args.members, n_days=args.days), seed=0)
    model = train_ranker(world, config=TrainConfig(feature_set="dwell", t_skip_s=2.5, seed=0, baselines=False, skip_lift=False))
    fs = model.feature_set
    base = training_frame(world.tables, fs, 2.5).select("member_id", "update_id", *fs.columns).with_columns(pl.lit(0.0).alias("position"))
    reps = -(-args.rows // base.height)
    tiled = pl.concat([base] * reps).head(args.rows)
    tiled = tiled.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) // 10).alias("request_id")).select(
        "request_id", pl.exclude("request_id")
    )

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model.save(d / "model")
        src = d / "candidates.parquet"
        tiled.write_parquet(src)
        print(f"{tiled.height:,} candidate rows, {tiled.width} columns, {src.stat().st_size / 1e6:.0f} MB")

        cold_p, best_p = _times(lambda: rank_candidates_file(d / "model", src, d / "polars.parquet", overwrite=True), args.repeat)
        spark = local_session("bench-rank", threads=args.threads, driver_memory="4g")
        cold_s, best_s = _times(lambda: rank_candidates_spark(d / "model", src, d / "spark", spark, overwrite=True), args.repeat)
        print(f"rank, polars engine: {best_p:.2f} s (first {cold_p:.2f} s)")
        print(
            f"rank, Spark local[{args.threads}]: {best_s:.2f} s (first {cold_s:.2f} s, with the JVM's warm-up): {best_s / best_p:.1f}x polars"
        )

        frame = spark.read.parquet("file://" + str(src))
        cols = ["request_id", "member_id", "update_id", *fs.columns]
        feats = frame.select("request_id", "member_id", "update_id", *[frame[c].cast("double").alias(c) for c in fs.columns])
        _, scan = _times(lambda: feats.write.format("noop").mode("overwrite").save(), args.repeat)
        scored = score_frame_spark(feats, model, model.weights, ("request_id", "member_id", "update_id"), spark)
        _, score = _times(lambda: scored.write.format("noop").mode("overwrite").save(), args.repeat)
        n = tiled.height
        print(f"Spark scan of {len(cols)} columns into noop: {scan:.2f} s; scan + mapInArrow scorer: {score:.2f} s")
        print(
            f"  mapInArrow scorer: {n / max(score - scan, 1e-9):,.0f} rows/s over {args.threads} worker(s) (scan subtracted), {n / score:,.0f} rows/s with the scan"
        )

        X = tiled.select([pl.col(c).cast(pl.Float64) for c in fs.columns]).to_numpy()
        _, full = _times(lambda: value_function(model.predict(X, 1), model.weights), args.repeat)
        forest = model._forest(None, model._outputs(None)[2])
        assert forest is not None
        _, raw = _times(lambda: forest.raw_scores(X), args.repeat)
        print(
            f"driver, one thread: predict + value function {n / full:,.0f} rows/s; compiled forest raw scores alone {n / raw:,.0f} rows/s"
        )
        spark.stop()


if __name__ == "__main__":
    main()
