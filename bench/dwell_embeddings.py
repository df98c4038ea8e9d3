"""Held-out lift of the dwell-embedding features on P(skip) and P(click), by member activity.

Simulates a world (``--members`` x ``--days``, seed ``--seed``), builds the
``dwell`` training frame and appends the dwell-embedding features
(:func:`ranking.embeddings_fit.with_embedding_features`: each row's from
member x author and member x topic truncated SVDs refitted on the days before
its own), splits it by time (the last ``--test-days`` are the test rows) and
fits, per label (``skip``, ``click``), two heads (:class:`ranking.heads.GBDTLRHead`,
default config, the same seed) on the training rows: on the ``dwell`` columns
(without) and on the ``dwell_emb`` columns (with).  On the test rows, overall,
for cold members (no training rows) and by member-activity decile (deciles of
the test members by training rows): AUC and normalised entropy (background:
the training rate), with member-clustered bootstrap intervals (test members
resampled with replacement, ``--boot`` replicates, paired across the two
heads, 95 % percentile) of each metric and of the lift (with minus without).

The metric and grouping helpers are bench/dwell_weighting.py's.

Writes ``dwell_embeddings.json`` into ``--out``.

With ``--latency`` it instead times one request of 1,000 candidates end to end
(``FeedRanker.rank``: features from one reused history snapshot, then
scoring; 1 thread, native code where it builds), as bench/rank.py builds it
(one member, 1,000 updates drawn from the world, a shared snapshot), for a
model trained with and one without ``dwell_embeddings`` on the same world,
interleaved request by request (median of ``--requests``), and the embedding
gather alone.

    python bench/dwell_embeddings.py [--members 5000] [--days 28] [--seed 0] [--out runs/dwell_embeddings]
    python bench/dwell_embeddings.py --latency [--members 3000] [--days 14]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory has a simulate.py named like the `simulate` package; drop bench/ from the path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import importlib.util
import json
import time
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.write import atomic_file
from ranking.embeddings_fit import with_embedding_features
from ranking.features import training_frame
from ranking.features.catalogue import EMBEDDING_FEATURE_SETS, FEATURE_SETS
from ranking.features.embeddings import EmbeddingConfig
from ranking.heads import GBDTLRHead, HeadConfig
from simulate import WorldConfig, simulate

T_SKIP_S = 2.5
LABELS = ("skip", "click")
_METRICS = ("auc", "ne")


def _lift_helpers() -> Any:
    """bench/dwell_weighting.py as a module (its AUC, NE, scoring and grouping helpers)."""
    spec = importlib.util.spec_from_file_location("bench_dwell_weighting", Path(__file__).resolve().parent / "dwell_weighting.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_H = _lift_helpers()


def _metrics(score: dict[str, Any], y: np.ndarray, v: np.ndarray, background: float) -> dict[str, float]:
    """AUC and NE of one head under row multiplicities ``v`` (0 outside the group)."""
    return {
        "auc": _H._auc(score["order"], score["group"], score["n_groups"], v * y, v * (1 - y)),
        "ne": _H._ne(y, score["p"], v, background),
    }


def _table(
    scores: dict[str, dict[str, Any]],
    y: np.ndarray,
    member: np.ndarray,
    groups: dict[str, np.ndarray],
    background: float,
    draws: list[np.ndarray],
) -> dict[str, Any]:
    """Point metrics, bootstrap intervals and the lift (with - without) per group; ``draws``: member multiplicities."""
    table: dict[str, Any] = {}
    for name, mask in groups.items():
        base = mask.astype(np.float64)
        point = {h: _metrics(s, y, base, background) for h, s in scores.items()}
        boot = {h: {m: np.empty(len(draws)) for m in _METRICS} for h in scores}
        for b, counts in enumerate(draws):
            v = base * counts[member]
            for h, s in scores.items():
                for m, val in _metrics(s, y, v, background).items():
                    boot[h][m][b] = val
        entry: dict[str, Any] = {"rows": int(mask.sum()), "positives": int(y[mask].sum()), "members": int(np.unique(member[mask]).size)}
        for h in scores:
            entry[h] = {m: {"value": point[h][m], "ci95": _H._ci(boot[h][m])} for m in _METRICS}
        entry["lift"] = {
            m: {"value": point["with"][m] - point["without"][m], "ci95": _H._ci(boot["with"][m] - boot["without"][m])} for m in _METRICS
        }
        table[name] = entry
    return table


def request_latency(members: int, days: int, seed: int, n_requests: int, option: str = "dwell_embeddings") -> dict[str, float]:
    """Median end-to-end latency (ms) of a 1,000-candidate request, with and without the ``TrainConfig`` flag ``option``.

    ``dwell_embeddings`` (see the module docstring) also times the embedding
    gather alone; ``bench/glmix_lift.py --latency`` passes ``pskip_glmix``.
    """
    import os

    from dwellrank_logs.history import history_tables
    from ranking import FeedRanker
    from ranking.train import TrainConfig, train_ranker

    world = simulate(WorldConfig(n_members=members, n_days=days), seed=seed)
    base = TrainConfig(seed=seed, baselines=False, skip_lift=False)
    rankers = {
        "without": FeedRanker(train_ranker(world, config=base), num_threads=1),
        "with": FeedRanker(train_ranker(world, config=TrainConfig(**{**base.__dict__, option: True})), num_threads=1),
    }
    t = world.tables
    hist = history_tables(t["impressions"], t["updates"], before=None, t_skip_s=T_SKIP_S)
    _ = hist.updates, hist.member_types, hist.member_authors, hist.member_topics, hist.members  # materialised, as a snapshot is
    cand = (
        t["updates"]
        .sample(1000, seed=seed, with_replacement=True)
        .with_columns(
            request_id=pl.lit(1, pl.Int64),
            member_id=pl.lit(int(t["impressions"]["member_id"][0]), pl.Int64),
            request_ts=pl.col("created_ts").max() + pl.duration(hours=1),
            client=pl.lit("ios"),
        )
    )
    rng = np.random.default_rng(seed)
    emb = rankers["with"].model.embeddings
    for r in rankers.values():
        r.rank(cand, hist, rng)  # builds the snapshot's lookup indexes
    lat: dict[str, list[float]] = {"without": [], "with": [], **({"gather": []} if emb is not None else {})}
    for _ in range(n_requests):
        for name, r in rankers.items():
            t0 = time.perf_counter()
            r.rank(cand, hist, rng)
            lat[name].append(time.perf_counter() - t0)
        if emb is not None:
            t0 = time.perf_counter()
            emb.rows_features(cand)
            lat["gather"].append(time.perf_counter() - t0)
    med = {k: 1e3 * float(np.median(v)) for k, v in lat.items()}
    print(
        f"world {members} x {days} seed {seed}; one request of 1,000 candidates, 1 thread, median of {n_requests} interleaved, "
        f"native scorer: { {n: any(v is not None for v in r.model._natives.values()) for n, r in rankers.items()} }; "
        f"1-min load {os.getloadavg()[0]:.1f}"
    )
    gather = f"; gather alone {med['gather']:.3f} ms" if "gather" in med else ""
    print(
        f"  end to end without {option} {med['without']:.2f} ms, with {med['with']:.2f} ms (ratio {med['with'] / med['without']:.2f}){gather}"
    )
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=5000)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-days", type=int, default=7)
    ap.add_argument("--author-rank", type=int, default=EmbeddingConfig().author_rank)
    ap.add_argument("--topic-rank", type=int, default=EmbeddingConfig().topic_rank)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("runs/dwell_embeddings"))
    ap.add_argument("--latency", action="store_true", help="time a 1,000-candidate request with and without (default world 3000 x 14)")
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    if args.latency:
        members = 3000 if args.members == ap.get_default("members") else args.members
        days = 14 if args.days == ap.get_default("days") else args.days
        request_latency(members, days, args.seed, args.requests)
        return
    t0 = time.perf_counter()
    result = simulate(WorldConfig(n_members=args.members, n_days=args.days), seed=args.seed)
    t_sim = time.perf_counter() - t0
    config = EmbeddingConfig(author_rank=args.author_rank, topic_rank=args.topic_rank)
    t1 = time.perf_counter()
    frame = training_frame(result.tables, "dwell", T_SKIP_S)
    t_frame = time.perf_counter() - t1
    t1 = time.perf_counter()
    frame, _ = with_embedding_features(frame, result.tables, T_SKIP_S, config, np.random.default_rng(args.seed))
    t_emb = time.perf_counter() - t1
    last = int(frame["day"].max())  # type: ignore[arg-type]
    train, test = frame.filter(pl.col("day") <= last - args.test_days), frame.filter(pl.col("day") > last - args.test_days)
    columns = {"without": FEATURE_SETS["dwell"].columns, "with": EMBEDDING_FEATURE_SETS["dwell_emb"].columns}
    X = {h: (train.select(c).to_numpy(), test.select(c).to_numpy()) for h, c in columns.items()}
    member = test["member_id"].to_numpy()
    activity = np.bincount(train["member_id"].to_numpy(), minlength=int(frame["member_id"].max()) + 1)  # type: ignore[arg-type]
    groups = _H._groups(member, activity)
    rng = np.random.default_rng(args.seed + 1)
    present = np.unique(member)
    draws = [np.bincount(rng.choice(present, present.size), minlength=activity.size).astype(np.float64) for _ in range(args.boot)]
    labels: dict[str, Any] = {}
    t_fit = 0.0
    for label in LABELS:
        y_tr = train[label].to_numpy()
        t1 = time.perf_counter()
        heads = {h: GBDTLRHead(HeadConfig()).fit(X[h][0], y_tr, np.random.default_rng(args.seed), label=label) for h in columns}
        t_fit += time.perf_counter() - t1
        scores = {h: _H._scored(head.predict_proba(X[h][1])) for h, head in heads.items()}
        y = test[label].to_numpy().astype(np.float64)
        labels[label] = _table(scores, y, member, groups, float(y_tr.mean()), draws)
    report = {
        "world": {"members": args.members, "days": args.days, "seed": args.seed, "t_skip_s": T_SKIP_S},
        "split": {"test_days": args.test_days, "n_train": train.height, "n_test": test.height, "test_members": int(present.size)},
        "embeddings": {"config": config.__dict__, "features": [c for c in columns["with"] if c not in columns["without"]]},
        "bootstrap": {"replicates": args.boot, "seed": args.seed + 1, "unit": "member", "interval": "95 % percentile", "paired": True},
        "metric_notes": "auc: ROC AUC; ne: log loss / entropy of the training rate; lift = with embeddings - without",
        "labels": labels,
        "timing_s": {"simulate": t_sim, "frame": t_frame, "embedding_refits": t_emb, "fit_heads": t_fit, "total": time.perf_counter() - t0},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out / "dwell_embeddings.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"world {args.members} x {args.days} seed {args.seed}: {train.height:,} train / {test.height:,} test rows, {present.size:,} test members"
    )
    for label, table in labels.items():
        print(
            f"P({label}): {'group':<10}{'rows':>9}"
            + "".join(f"{m + ' without':>12}{m + ' with':>10}{'lift [95% CI]':>28}" for m in _METRICS)
        )
        for name, e in table.items():
            cells = "".join(
                f"{e['without'][m]['value']:>12.4f}{e['with'][m]['value']:>10.4f}"
                + f"{e['lift'][m]['value']:+.4f} [{e['lift'][m]['ci95'][0]:+.4f}, {e['lift'][m]['ci95'][1]:+.4f}]".rjust(28)
                for m in _METRICS
            )
            print(f"{'':9}{name:<10}{e['rows']:>9,}{cells}")
    print(f"timing (s): {json.dumps({k: round(v, 1) for k, v in report['timing_s'].items()})}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
