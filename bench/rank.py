"""Ranking throughput: the full value function vs bare LightGBM predict over the same trees.

Trains a model (dwell features) on a simulated world, builds 1M candidate rows
(features of real impressions, position 0, tiled), and prints rows/s of

  (a) the full value function under the default weights: 5 GBDT+LR heads (LR leaf
      weights folded into the trees, one raw-score predict each, plus a dense dot
      product), 8 downstream/upstream regressions, and the weighted combination
      (the optional long-dwell head and dwell regression have weight 0 and are
      not evaluated);
  (b) bare LightGBM ``predict`` over the same trees (those heads' original
      boosters and those regressions' boosters), nothing else;
  (c) the textbook GBDT+LR path (leaf indices -> sparse one-hot -> LR) for the heads,
      on a tenth of the rows, to measure what folding saves;

the ratio (a)/(b) (goal >= 0.5), and the median latency of one request of 1,000
candidates (goal <= 5 ms): scoring from features, features from the history
tables, and both end to end.  Requests reuse one history snapshot, as a server
serving a day's snapshot does, so they read the lookup indexes kept with it; the
first request on a new snapshot, which builds those indexes, is timed apart
(over fresh snapshots of the same tables).

    python bench/rank.py [--rows 1000000] [--members 3000] [--days 14] [--threads 1] [--seed 0]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time

import numpy as np
import polars as pl

from dwellrank_logs.history import history_tables
from dwellrank_logs.protocol import HistoryTables
from ranking.features import candidate_features, training_frame
from ranking.ranker import FeedRanker
from ranking.train import TrainConfig, train_ranker
from ranking.value import needed_predictions
from simulate import WorldConfig, simulate


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--members", type=int, default=3000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--threads", type=int, default=1, help="LightGBM prediction threads for the 1M-row runs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    world = simulate(WorldConfig(n_members=args.members, n_days=args.days), seed=args.seed)
    t0 = time.perf_counter()
    model = train_ranker(world, config=TrainConfig(feature_set="dwell", seed=args.seed, baselines=False, skip_lift=False))
    t_train = time.perf_counter() - t0
    fs = model.feature_set
    frame = training_frame(world.tables, fs, model.t_skip_s).with_columns(position=pl.lit(0.0))
    base = frame.select(fs.columns).to_numpy()
    X = np.ascontiguousarray(np.resize(base, (args.rows, base.shape[1])))  # (rows, n_features)
    used = needed_predictions(model.weights)
    heads = [h for n, h in model.heads.items() if f"p_{n}" in used]
    boosters = [h.booster_ for h in heads] + [r.booster_ for n, r in model.regressors.items() if n in used and r.booster_ is not None]
    n_trees = sum(b.num_trees() for b in boosters)
    print(
        f"model: {len(heads)} heads + {len(boosters) - len(heads)} regressions used by the default weights, {n_trees} trees, "
        f"{len(fs.columns)} features; trained in {t_train:.1f} s on {model.metadata['data']['n_train']:,} rows"
    )

    nt = args.threads

    def full() -> np.ndarray:
        return model.score(X, num_threads=nt)

    def bare() -> None:
        for b in boosters:
            b.predict(X, num_threads=nt)

    tenth = X[: args.rows // 10]

    def one_hot() -> None:
        for h in heads:
            h.predict_proba_one_hot(tenth)

    t_full, t_bare = _best(full, 2), _best(bare, 2)
    t_onehot = _best(one_hot, 1) * 10
    print(f"\n{args.rows:,} rows, {nt} LightGBM thread(s)")
    print(f"  (a) full value function        {args.rows / t_full:>12,.0f} rows/s  ({t_full:.2f} s)")
    print(f"  (b) bare LightGBM predict      {args.rows / t_bare:>12,.0f} rows/s  ({t_bare:.2f} s)")
    print(f"      ratio (a)/(b)              {t_bare / t_full:>12.2f}        (goal >= 0.5)")
    print(f"  (c) heads via sparse one-hot   {args.rows / t_onehot:>12,.0f} rows/s  (heads only, measured on {tenth.shape[0]:,} rows)")
    t_heads_folded = _best(lambda: [h.predict_proba(X, nt) for h in heads], 1)
    print(
        f"      heads via folded trees     {args.rows / t_heads_folded:>12,.0f} rows/s  -> folding is {t_onehot / t_heads_folded:.1f}x faster"
    )

    # One request of 1,000 candidates: from features, and end to end from the history tables.
    ranker = FeedRanker(model, num_threads=1)
    t = world.tables
    hist = history_tables(t["impressions"], t["updates"], before=None, t_skip_s=model.t_skip_s)
    # Materialise once, as the simulator's snapshot is.
    _ = hist.updates, hist.member_types, hist.member_authors, hist.member_topics, hist.members
    member = int(t["impressions"]["member_id"][0])
    cand = (
        t["updates"]
        .sample(1000, seed=args.seed, with_replacement=True)
        .with_columns(
            request_id=pl.lit(1, pl.Int64),
            member_id=pl.lit(member, pl.Int64),
            request_ts=pl.col("created_ts").max() + pl.duration(hours=1),
            client=pl.lit("ios"),
        )
    )
    X1 = candidate_features(cand, hist, ranker.profiles, fs).to_numpy()  # the snapshot's first request builds its indexes
    rng = np.random.default_rng(args.seed)  # the ranker protocol's argument; FeedRanker draws nothing
    lat_score, lat_feat, lat_e2e = [], [], []
    for _ in range(200):
        t0 = time.perf_counter()
        model.score(X1, num_threads=1)
        lat_score.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        candidate_features(cand, hist, ranker.profiles, fs)
        lat_feat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ranker.rank(cand, hist, rng)
        lat_e2e.append(time.perf_counter() - t0)
    # First requests: a fresh snapshot object over the same (already computed) tables, so only the
    # lookup indexes are built, not the counts.
    tables = {n: getattr(hist, n) for n in ("updates", "member_types", "member_authors", "member_topics", "members")}
    cold_feat, cold_e2e = [], []
    for _ in range(20):
        fresh = HistoryTables(**tables, t_skip_s=hist.t_skip_s)
        t0 = time.perf_counter()
        candidate_features(cand, fresh, ranker.profiles, fs)
        cold_feat.append(time.perf_counter() - t0)
        fresh = HistoryTables(**tables, t_skip_s=hist.t_skip_s)
        t0 = time.perf_counter()
        ranker.rank(cand, fresh, rng)
        cold_e2e.append(time.perf_counter() - t0)
    print("\none request of 1,000 candidates (1 thread, median of 200, one history snapshot reused across requests)")
    print(f"  scoring from features          {1e3 * np.median(lat_score):>8.2f} ms   (goal <= 5 ms)")
    print(f"  features from history tables   {1e3 * np.median(lat_feat):>8.2f} ms")
    print(f"  features + scoring (end to end){1e3 * np.median(lat_e2e):>8.2f} ms")
    print("first request on a new snapshot (cold: builds the snapshot's lookup indexes; median of 20 fresh snapshots)")
    print(f"  features from history tables   {1e3 * np.median(cold_feat):>8.2f} ms")
    print(f"  features + scoring (end to end){1e3 * np.median(cold_e2e):>8.2f} ms")


if __name__ == "__main__":
    main()
