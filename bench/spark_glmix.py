"""GLMix P(skip) on Spark against the numpy pass on the same rows (``train --engine spark --pskip-glmix``'s fit).

A simulated world (``--members`` x ``--days``, seed ``--seed``) is reduced to
its training frame by the polars engine (equal to the Spark engine's, see
``tests/ranking/features/test_spark_training.py``) and written as Parquet; the
skip head is fitted once on the driver.  Then, on the same frame and the same
head's logit, timed one run each:

* **numpy**: :func:`ranking.glmix_pskip.fit_pskip_glmix` (the polars engine's
  fit: the choice of both prior variances on the last ``--valid-days``
  training days, then the refit on every training day, and the held-out metrics);
* **spark**: :func:`ranking.spark_glmix.fit_pskip_glmix_spark` on a
  ``local[--threads]`` session: the head's logit in ``mapInArrow``, each block
  fit a ``groupBy(trial, entity bucket).applyInArrow`` shuffle.

Printed as JSON: rows, wall times, their ratio, the machine's load average
before and after, and the largest coefficient difference between the two fits.

    python bench/spark_glmix.py [--members 6000] [--days 28] [--seed 0] [--threads 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import tempfile
import time

import numpy as np
import polars as pl

from dwellrank_logs.spark import local_session
from ranking.features import get_feature_set, training_frame
from ranking.glmix_data import world_fingerprint
from ranking.glmix_pskip import PskipGlmixConfig, fit_pskip_glmix
from ranking.heads import GBDTLRHead, HeadConfig
from ranking.spark_glmix import fit_pskip_glmix_spark
from simulate import WorldConfig, simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=6000)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout-days", type=int, default=3)
    ap.add_argument("--valid-days", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--driver-memory", default="4g")
    args = ap.parse_args()

    t0 = time.perf_counter()
    sim = simulate(WorldConfig(n_members=args.members, n_days=args.days), seed=args.seed)
    fs = get_feature_set("dwell")
    frame = training_frame(sim.tables, fs, 2.5)
    last = int(frame["day"].max())  # type: ignore[arg-type]
    last_train = last - args.holdout_days
    train, test = frame.filter(pl.col("day") <= last_train), frame.filter(pl.col("day") > last_train)
    head = GBDTLRHead(HeadConfig()).fit(train.select(fs.columns).to_numpy(), train["skip"].to_numpy(), args.seed, label="skip")
    off_tr, off_te = head.decision_function(train.select(fs.columns).to_numpy()), head.decision_function(test.select(fs.columns).to_numpy())
    cfg = PskipGlmixConfig(valid_days=args.valid_days)
    prep_s = time.perf_counter() - t0

    load0 = os.getloadavg()
    t = time.perf_counter()
    ref, rec_ref = fit_pskip_glmix(train, off_tr, test, off_te, sim.tables["updates"], sim.tables["members"], fs, cfg, seed=args.seed)
    numpy_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory(prefix="bench-spark-glmix-") as tmp:
        d = Path(tmp)
        frame.write_parquet(d / "frame.parquet")
        sim.tables["updates"].lazy().collect().write_parquet(d / "updates.parquet")
        spark = local_session("bench-spark-glmix", threads=args.threads, driver_memory=args.driver_memory)
        sframe = spark.read.parquet("file://" + str(d / "frame.parquet"))
        supd = spark.read.parquet("file://" + str(d / "updates.parquet"))
        (d / "scratch").mkdir()
        t = time.perf_counter()
        got, rec = fit_pskip_glmix_spark(sframe, head, supd, last_train, fs, world_fingerprint(sim.tables["members"]), d / "scratch", cfg)
        spark_s = time.perf_counter() - t
        spark.stop()
    load1 = os.getloadavg()

    diffs = {}
    for b, blk in ref.model.blocks_.items():
        other = got.model.blocks_[b]
        same = np.array_equal(blk.ids, other.ids)
        diffs[b] = {
            "entities": int(blk.ids.size),
            "same_ids": same,
            "prior_var": [blk.prior_var, other.prior_var],
            "max_abs_coef_diff": float(np.abs(blk.coef - other.coef).max()) if same else None,
        }
    out = {
        "world": {"members": args.members, "days": args.days, "seed": args.seed},
        "rows": {"frame": frame.height, "train": train.height, "test": test.height},
        "threads": args.threads,
        "prep_s": round(prep_s, 1),
        "numpy_s": round(numpy_s, 1),
        "spark_s": round(spark_s, 1),
        "spark_over_numpy": round(spark_s / numpy_s, 2),
        "load_avg_before_after": [round(x, 2) for x in (*load0, *load1)],
        "blocks": diffs,
        "held_out_auc": {"numpy": rec_ref["held_out"]["glmix"]["auc"], "spark": rec["held_out"]["glmix"]["auc"]},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
