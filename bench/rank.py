"""Ranking throughput: the full value function vs bare LightGBM and lleaves over the same trees.

Trains a model (dwell features) on a simulated world, builds 1M candidate rows
(features of real impressions, position 0, tiled), and prints, in one run, with
the methods interleaved round by round (the machine's load changes between
rounds; each figure is the best round), on 1 and 2 threads:

  (a) the project's full value function under the default weights, features given
      (``RankerModel.score``): 5 GBDT+LR heads (LR leaf weights folded into the trees,
      plus the LR over asinh of the raw features), 8 downstream/upstream regressions
      and the weighted combination -- native code (:mod:`ranking.native`) where it
      builds, and, on 1 thread in one round, the numpy fallback;
  (b) bare LightGBM ``predict`` over the same trees (the heads' original boosters and
      the regressions' boosters), nothing else;
  (c) lleaves 1.3 over the same boosters (each compiled on its own, ``predict``);

the ratios (a)/(b) and (a)/(c) (goal: (a) >= 1.0x (c) on 1 thread), the largest
difference of (a) from LightGBM's predictions plus the folded LR on all rows,
the first-request cost (compiling the native code into an empty cache) and the
warm-cache cost (a fresh model object loading it), and the median latency of one
request of 1,000 candidates (goal <= 1 ms scoring, <= 2 ms end to end): scoring
from features, features from the history tables (the matrix path FeedRanker scores from,
numpy from the snapshot's indexes to the model's float64 matrix, and the public
``candidate_features``, the same values as a polars frame), and features + scoring end to end.  Requests
reuse one history snapshot, as a server serving a day's snapshot does, so they
read the lookup indexes kept with it; the first request on a new snapshot, which
builds those indexes, is timed apart (over fresh snapshots of the same tables).

With ``--treelite`` (treelite and tl2cgen importable, gcc on PATH) it adds (d) treelite 4 +
tl2cgen over the same boosters, compiled to C, to the batch and request figures.

    python bench/rank.py [--rows 1000000] [--members 3000] [--days 14] [--rounds 5] [--seed 0] [--treelite]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import copy
import os
import tempfile
import time

import numpy as np
import polars as pl

from dwellrank_logs.history import history_tables
from dwellrank_logs.protocol import HistoryTables
from ranking.features import candidate_features, training_frame
from ranking.features.online import _candidate_matrix
from ranking.native import available_cpus, native_stats
from ranking.ranker import FeedRanker
from ranking.train import TrainConfig, train_ranker
from ranking.value import needed_predictions
from simulate import WorldConfig, simulate


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _reference(model, X: np.ndarray, used: tuple[str, ...]) -> np.ndarray:
    """LightGBM's raw scores of the folded heads plus the LR over asinh, sigmoids, exp, the value function."""
    from ranking.value import value_function

    preds = {}
    Z = np.arcsinh(X)
    for name, head in model.heads.items():
        if f"p_{name}" in used:
            preds[f"p_{name}"] = 1 / (1 + np.exp(-(head.folded_.predict(X, raw_score=True) + Z @ head.raw_coef_ + head.intercept_)))
    for name, reg in model.regressors.items():
        if name in used:
            preds[name] = (
                np.exp(reg.booster_.predict(X, raw_score=True)) if reg.booster_ is not None else np.full(X.shape[0], reg.constant_)
            )
    return value_function(preds, model.weights)


def _treelite(boosters, probe: np.ndarray):
    """Each booster through treelite 4 + tl2cgen (C compiled with gcc), margins: predictors for 1 and 2 threads.

    Returns {threads: predict(X)}; prints the compile time and the largest difference from LightGBM's raw scores.
    """
    import tl2cgen
    import treelite

    t0 = time.perf_counter()
    libs = []
    tmp = tempfile.mkdtemp(prefix="dwellrank-tl2cgen-bench-")
    for i, b in enumerate(boosters):
        lib = Path(tmp) / f"b{i}.so"
        tl2cgen.export_lib(treelite.frontend.from_lightgbm(b), toolchain="gcc", libpath=str(lib), params={"parallel_comp": 8}, nthread=2)
        libs.append(lib)
    preds = {nt: [tl2cgen.Predictor(str(lib), nthread=nt) for lib in libs] for nt in (1, 2)}

    def predict(X: np.ndarray, nt: int) -> list[np.ndarray]:
        dmat = tl2cgen.DMatrix(X)
        return [p.predict(dmat, pred_margin=True) for p in preds[nt]]

    diff = max(
        float(np.abs(np.ravel(got) - b.predict(probe, raw_score=True)).max()) for got, b in zip(predict(probe, 1), boosters, strict=True)
    )
    print(
        f"treelite {treelite.__version__} + tl2cgen {tl2cgen.__version__}: {len(boosters)} boosters compiled with gcc in "
        f"{time.perf_counter() - t0:.1f} s; largest |margin - LightGBM raw| on 1,000 rows {diff:.1e}"
    )
    return {nt: (lambda X, nt=nt: predict(X, nt)) for nt in (1, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--members", type=int, default=3000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of every batch measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--treelite", action="store_true", help="also (d) treelite + tl2cgen (C compiled with gcc), which must be importable")
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="dwellrank-native-bench-")
    os.environ["DWELLRANK_NATIVE_CACHE"] = cache  # an empty cache: the first prepare() compiles

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
        f"{len(fs.columns)} features; trained in {t_train:.1f} s on {model.metadata['data']['n_train']:,} rows; "
        f"{available_cpus()} CPU(s) available (os.cpu_count() = {os.cpu_count()}), 1-min load {os.getloadavg()[0]:.1f}"
    )

    # First request's compilation (empty cache), then a fresh model object over the warm cache.
    t_cold = _timed(model.prepare)
    warm = copy.copy(model)
    warm._natives, warm._forests = {}, {}
    t_warm = _timed(warm.prepare)
    stats = native_stats()
    native_on = model._natives.get(used) is not None
    import lleaves

    ll = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, b in enumerate(boosters):
            path = Path(tmp) / f"b{i}.txt"
            b.save_model(str(path))
            m = lleaves.Model(model_file=str(path))
            m.compile()
            ll.append(m)
    t_lleaves = time.perf_counter() - t0
    tl = _treelite(boosters, X[:1000]) if args.treelite else None
    print(
        f"native code: {'built' if native_on else 'NOT available (numpy fallback)'}; first prepare() with an empty cache "
        f"{t_cold:.2f} s (LLVM + numpy forest + probe checks), with the cache warm {1e3 * t_warm:.0f} ms "
        f"(compiled {stats['compiled']}x, loaded {stats['loaded']}x); lleaves compiles the {len(boosters)} boosters in {t_lleaves:.2f} s"
    )

    times: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for nt in (1, 2):
            times.setdefault(f"full{nt}", []).append(_timed(lambda nt=nt: model.score(X, num_threads=nt)))
            times.setdefault(f"lgb{nt}", []).append(_timed(lambda nt=nt: [b.predict(X, num_threads=nt) for b in boosters]))
            times.setdefault(f"ll{nt}", []).append(_timed(lambda nt=nt: [m.predict(X, n_jobs=nt) for m in ll]))
            if tl is not None:
                times.setdefault(f"tl{nt}", []).append(_timed(lambda nt=nt: tl[nt](X)))
        if r == 0:
            model.backend = "numpy"
            times["numpy1"] = [_timed(lambda: model.score(X, num_threads=1))]
            model.backend = "auto"
    best = {k: min(v) for k, v in times.items()}
    print(f"\n{args.rows:,} rows, best of {args.rounds} interleaved rounds (numpy fallback: 1 round)")
    for nt in (1, 2):
        print(f" {nt} thread(s)")
        print(f"  (a) full value function ({'native' if native_on else 'numpy'}) {args.rows / best[f'full{nt}']:>12,.0f} rows/s")
        print(f"  (b) bare LightGBM predict            {args.rows / best[f'lgb{nt}']:>12,.0f} rows/s")
        print(f"  (c) lleaves predict                  {args.rows / best[f'll{nt}']:>12,.0f} rows/s")
        if tl is not None:
            print(
                f"  (d) treelite + tl2cgen predict       {args.rows / best[f'tl{nt}']:>12,.0f} rows/s   (a)/(d) {best[f'tl{nt}'] / best[f'full{nt}']:.2f}x"
            )
        print(
            f"      (a)/(b) {best[f'lgb{nt}'] / best[f'full{nt}']:.2f}x   (a)/(c) {best[f'll{nt}'] / best[f'full{nt}']:.2f}x"
            + ("   (goal (a)/(c) >= 1.0)" if nt == 1 else "")
        )
    print(
        f"  numpy fallback, 1 thread             {args.rows / best['numpy1']:>12,.0f} rows/s ({best['numpy1'] / best['full1']:.1f}x the native time)"
    )
    print(
        f"  2 threads over 1: native {best['full1'] / best['full2']:.2f}x, LightGBM {best['lgb1'] / best['lgb2']:.2f}x, lleaves {best['ll1'] / best['ll2']:.2f}x"
    )
    diff = np.abs(model.score(X) - _reference(model, X, used))
    print(f"  |(a) - (LightGBM + folded LR)| on all {args.rows:,} rows: max {diff.max():.2e} (tolerance 1e-12)")

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
    X1 = _candidate_matrix(cand, hist, ranker.profiles, fs)  # builds the snapshot's indexes
    assert np.array_equal(X1, candidate_features(cand, hist, ranker.profiles, fs).to_numpy())  # one definition, two outputs
    rng = np.random.default_rng(args.seed)  # the ranker protocol's argument; FeedRanker draws nothing
    lat: dict[str, list[float]] = {}
    for _ in range(200):
        lat.setdefault("score", []).append(_timed(lambda: model.score(X1, num_threads=1)))
        lat.setdefault("lgb", []).append(_timed(lambda: [b.predict(X1, num_threads=1) for b in boosters]))
        lat.setdefault("ll", []).append(_timed(lambda: [m.predict(X1, n_jobs=1) for m in ll]))
        if tl is not None:
            lat.setdefault("tl", []).append(_timed(lambda: tl[1](X1)))
        lat.setdefault("feat", []).append(_timed(lambda: _candidate_matrix(cand, hist, ranker.profiles, fs)))
        lat.setdefault("frame", []).append(_timed(lambda: candidate_features(cand, hist, ranker.profiles, fs)))
        lat.setdefault("e2e", []).append(_timed(lambda: ranker.rank(cand, hist, rng)))
    # First requests: a fresh snapshot object over the same (already computed) tables, so only the
    # lookup indexes are built, not the counts.
    tables = {n: getattr(hist, n) for n in ("updates", "member_types", "member_authors", "member_topics", "members")}
    for _ in range(20):
        fresh = HistoryTables(**tables, t_skip_s=hist.t_skip_s)
        lat.setdefault("cold_feat", []).append(_timed(lambda fresh=fresh: _candidate_matrix(cand, fresh, ranker.profiles, fs)))
        fresh = HistoryTables(**tables, t_skip_s=hist.t_skip_s)
        lat.setdefault("cold_e2e", []).append(_timed(lambda fresh=fresh: ranker.rank(cand, fresh, rng)))
    med = {k: 1e3 * float(np.median(v)) for k, v in lat.items()}
    print(
        f"\none request of 1,000 candidates (1 thread, median of 200, one history snapshot reused across requests; 1-min load {os.getloadavg()[0]:.1f})"
    )
    print(f"  scoring from features (full value function) {med['score']:>7.2f} ms   (goal <= 1 ms)")
    print(f"    bare LightGBM predict, same trees          {med['lgb']:>7.2f} ms")
    print(f"    lleaves predict, same trees                {med['ll']:>7.2f} ms")
    if tl is not None:
        print(f"    treelite + tl2cgen predict, same trees     {med['tl']:>7.2f} ms")
    print(f"  features from history tables (matrix path)   {med['feat']:>7.2f} ms")
    print(f"    as a polars frame (candidate_features)     {med['frame']:>7.2f} ms")
    print(f"  features + scoring (end to end)              {med['e2e']:>7.2f} ms   (goal <= 2 ms)")
    print("first request on a new snapshot (cold: builds the snapshot's lookup indexes; median of 20 fresh snapshots)")
    print(f"  features from history tables (matrix path)   {med['cold_feat']:>7.2f} ms")
    print(f"  features + scoring (end to end)              {med['cold_e2e']:>7.2f} ms")


if __name__ == "__main__":
    main()
