"""Whole-feed OPE in the simulator (``run_ope(feed_k=K)``): each slate estimator's bias, RMSE and coverage against the truth.

For each seed (default 0-9) and each ``K`` (default 3, 5), logs a world with an
exploring popularity ranker (temperature 1) and evaluates popularity and the
oracle ranker's feeds over the first ``K`` positions; the truth is the
simulator's (:func:`simulate.truth.feed_truth`) for the same requests.  Also
times one run with and without the feed section (same seed, same process) and
prints the ratio.  Writes ``ope_feed.json`` (one row per K x target x
estimator: mean truth, bias, its se over seeds, RMSE, mean reported se,
coverage of the normal and of the bootstrap interval, seeds with support) and
``ope_feed.png``.  With few candidates (``m! / (m - K)! <= 200,000`` and
``m K <= 64``, e.g. 10 and K <= 5) the exact-Gamma ``pseudoinverse`` joins the
factorised one.

    python bench/ope_feed.py [--out runs/ope_feed] [--members 600] [--days 4] [--candidates 50] [--seeds 10] [--lengths 3,5]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory has a simulate.py named like the `simulate` package; drop bench/ from the path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import math
import time
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dwellrank_logs.write import atomic_file
from simulate import PopularityRanker, WorldConfig
from simulate.ope import OPEConfig, run_ope
from simulate.truth import OracleRanker, world_members


def run(world: WorldConfig, seeds: int, lengths: list[int]) -> list[dict[str, Any]]:
    """One row per K x target x estimator over the seeds."""
    rows: list[dict[str, Any]] = []
    for k in lengths:
        per: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for s in range(seeds):
            targets = {"popularity": PopularityRanker(), "oracle": OracleRanker(world, world_members(world, s))}
            res = run_ope(OPEConfig(world=world, seed=s, feed_k=k), PopularityRanker(), targets)
            for name, t in res["feed"]["targets"].items():
                for est, e in t["estimates"].items():
                    per.setdefault((name, est), []).append({**e, "truth": t["truth"]})
            print(f"K={k} seed {s}: {res['feed']['n_requests']} requests", flush=True)
        for (name, est), es in per.items():
            ok = [e for e in es if e["value"] is not None and e["se"] is not None]
            err = np.array([e["value"] - e["truth"] for e in ok])
            rows.append(
                {
                    "k": k,
                    "target": name,
                    "estimator": est,
                    "truth": float(np.mean([e["truth"] for e in es])),
                    "seeds_with_support": len(ok),
                    "bias": float(err.mean()) if ok else None,
                    "bias_se": float(err.std(ddof=1) / math.sqrt(err.size)) if len(ok) > 1 else None,
                    "rmse": float(np.sqrt((err**2).mean())) if ok else None,
                    "mean_se": float(np.mean([e["se"] for e in ok])) if ok else None,
                    "coverage": float(np.mean([e["covers"] for e in es])),
                    "coverage_bootstrap": float(np.mean([bool(e.get("boot_covers")) for e in es])),
                }
            )
    return rows


def overhead(world: WorldConfig, k: int) -> dict[str, float]:
    """Seconds of one run_ope without and with the feed section (seed 0, same process)."""
    out = {}
    for label, fk in (("top_slot_s", None), ("with_feed_s", k)):
        t0 = time.perf_counter()
        run_ope(OPEConfig(world=world, seed=0, feed_k=fk), PopularityRanker(), {"popularity": PopularityRanker()})
        out[label] = time.perf_counter() - t0
    out["ratio"] = out["with_feed_s"] / out["top_slot_s"]
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    ks = sorted({r["k"] for r in rows})
    targets = list(dict.fromkeys(r["target"] for r in rows))
    fig, axes = plt.subplots(len(ks), len(targets), figsize=(6 * len(targets), 3.8 * len(ks)), squeeze=False, constrained_layout=True)
    for i, k in enumerate(ks):
        for j, name in enumerate(targets):
            ax = axes[i][j]
            sel = [r for r in rows if r["k"] == k and r["target"] == name]
            for x, r in enumerate(sel):
                if r["bias"] is None:
                    continue
                rel = r["truth"] or 1.0
                ax.errorbar(x, r["bias"] / rel, yerr=2 * (r["bias_se"] or 0) / rel, fmt="o", color="tab:blue")
                ax.plot(x, r["rmse"] / rel, "x", color="tab:red")
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xticks(range(len(sel)), [r["estimator"] for r in sel], rotation=35, ha="right", fontsize=7)
            ax.set_title(f"{name}, K = {k}: bias ± 2 se (o) and RMSE (x), / truth", fontsize=9)
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/ope_feed")
    ap.add_argument("--members", type=int, default=600)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--lengths", default="3,5")
    a = ap.parse_args()
    lengths = [int(v) for v in a.lengths.split(",")]
    world = WorldConfig(n_members=a.members, n_days=a.days, candidates_per_request=a.candidates, feed_length=min(25, a.candidates))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = run(world, a.seeds, lengths)
    timing = overhead(world, max(lengths))
    report = {
        "world": world.to_dict(),
        "seeds": a.seeds,
        "lengths": lengths,
        "rows": rows,
        "timing": timing,
        "total_s": time.perf_counter() - t0,
    }
    with atomic_file(out / "ope_feed.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_file(out / "ope_feed.png") as tmp:
        plot(rows, tmp)
    print(f"{'K':>2} {'target':<11}{'estimator':<29}{'truth':>8}{'bias':>9}{'bias_se':>9}{'rmse':>8}{'cover':>7}{'supp':>5}")
    for r in rows:

        def f(v: Any) -> str:
            return "-" if v is None else f"{v:.4f}"

        print(
            f"{r['k']:>2} {r['target']:<11}{r['estimator']:<29}{r['truth']:>8.4f}{f(r['bias']):>9}{f(r['bias_se']):>9}"
            f"{f(r['rmse']):>8}{r['coverage']:>7.2f}{r['seeds_with_support']:>5}"
        )
    print(f"timing (seed 0, K = {max(lengths)}): {timing}")


if __name__ == "__main__":
    main()
