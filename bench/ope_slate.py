"""Slate OPE estimators on synthetic ranked feeds: bias, RMSE and interval coverage against the exact truth.

For each list length K (default 5, 10, 15, 20, 25; ``K + 5`` candidate items),
each seed (default 0-19), each logging ranker (Plackett-Luce on half the true
logits, and uniform) and each reward
structure of :mod:`simulate.ope.slate_synthetic`, simulates ``--requests``
logged feeds and runs every estimator of :func:`estimate_slates` with normal
and (``--n-boot`` > 0) bootstrap intervals.  Writes ``ope_slate.json`` (one row
per logging x reward x K x estimator: bias, its standard error over seeds,
RMSE, mean reported se, coverage of both intervals) and ``ope_slate.png``.
The pseudoinverse runs under uniform logging (``Gamma`` in closed form) and
under Plackett-Luce with its exact pair marginals where ``(K + 5)! / 5!`` is at
most 200,000 prefixes (K <= 5), else with ``--gamma-samples`` Monte Carlo
orders per context type (0: left out); each row says which (``pi_gamma``).

    python bench/ope_slate.py [--out runs/ope_slate] [--requests 2000] [--seeds 20] [--lengths 5,10,15,20,25] [--n-boot 200]
        [--gamma-samples 0] [--logging pl,uniform] [--replot]
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
from simulate.ope.slate_synthetic import SLATE_REWARDS, estimate_slates, synthetic_slates


def run(
    requests: int, seeds: int, lengths: list[int], n_boot: int, gamma_samples: int = 0, loggings: tuple[str, ...] = ("pl", "uniform")
) -> list[dict[str, Any]]:
    acc: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    for logging in loggings:
        for k in lengths:
            t0 = time.perf_counter()
            for seed in range(seeds):
                rng = np.random.default_rng([seed, k])
                data = synthetic_slates(requests, k, rng, logging=logging, gamma_samples=gamma_samples)
                for reward in SLATE_REWARDS:
                    truth = data["truth"][reward]
                    normal = estimate_slates(data, reward)
                    boot = estimate_slates(data, reward, interval="bootstrap", n_boot=n_boot, rng=rng) if n_boot else {}
                    for name, e in normal.items():
                        row = acc.setdefault(
                            (logging, reward, k, name),
                            {"err": [], "se": [], "cov": [], "cov_boot": [], "truth": [], "pi_gamma": data["pi_gamma"]},
                        )
                        row["err"].append(e.value - truth)
                        row["se"].append(e.se)
                        row["cov"].append(float(e.covers(truth)))
                        row["truth"].append(truth)
                        if boot:
                            row["cov_boot"].append(float(boot[name].covers(truth)))
            print(f"logging={logging} K={k}: {seeds} seeds in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for (logging, reward, k, name), v in acc.items():
        err = np.array(v["err"])
        ok = np.isfinite(err)
        e = err[ok]
        rows.append(
            {
                "logging": logging,
                "reward": reward,
                "K": k,
                "estimator": name,
                "seeds": int(ok.sum()),
                "truth_mean": float(np.mean(v["truth"])),
                "bias": float(e.mean()) if e.size else math.nan,
                "bias_se": float(e.std(ddof=1) / math.sqrt(e.size)) if e.size > 1 else math.nan,
                "rmse": float(np.sqrt((e**2).mean())) if e.size else math.nan,
                "mean_se": float(np.nanmean(v["se"])),
                "coverage_normal": float(np.mean(v["cov"])),
                "coverage_bootstrap": float(np.mean(v["cov_boot"])) if v["cov_boot"] else None,
                **({"pi_gamma": v["pi_gamma"]} if "pseudoinverse" in name else {}),
            }
        )
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(3, len(SLATE_REWARDS), figsize=(4.2 * len(SLATE_REWARDS), 10), squeeze=False)
    names = sorted({r["estimator"] for r in rows})
    colours = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    panels = [
        ("pl", "bias", "bias / truth (PL logging)"),
        ("pl", "rmse", "RMSE / truth (PL logging)"),
        ("uniform", "rmse", "RMSE / truth (uniform logging)"),
    ]
    for i, (logging, key, label) in enumerate(panels):
        for j, reward in enumerate(SLATE_REWARDS):
            ax = axes[i][j]
            for n in names:
                sel = sorted(
                    (r for r in rows if r["logging"] == logging and r["reward"] == reward and r["estimator"] == n), key=lambda r: r["K"]
                )
                if not sel:
                    continue
                y = [r[key] / r["truth_mean"] for r in sel]
                ax.plot([r["K"] for r in sel], y, marker="o", ms=3, color=colours[n], ls="--" if n.startswith("sn_") else "-", label=n)
            if key == "rmse":
                ax.set_yscale("log")
            else:
                ax.axhline(0, color="grey", lw=0.5)
            ax.set_title(f"{reward}: {label}", fontsize=9)
            ax.set_xlabel("list length K")
    axes[0][0].legend(fontsize=7, ncol=2)
    if axes[2][0].get_legend_handles_labels()[0]:  # no uniform row when only PL logging ran
        axes[2][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/ope_slate"))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--lengths", default="5,10,15,20,25")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument(
        "--gamma-samples", type=int, default=0, help="Monte Carlo orders per context type for PL's Gamma beyond the exact size."
    )
    ap.add_argument("--logging", default="pl,uniform", help="Logging rankers to run, comma-separated: pl, uniform.")
    ap.add_argument("--replot", action="store_true", help="Redraw ope_slate.png from the ope_slate.json in --out.")
    a = ap.parse_args()
    if a.replot:
        plot(json.loads((a.out / "ope_slate.json").read_text())["rows"], a.out / "ope_slate.png")
        return
    lengths = [int(x) for x in a.lengths.split(",")]
    t0 = time.perf_counter()
    loggings = tuple(a.logging.split(","))
    rows = run(a.requests, a.seeds, lengths, a.n_boot, a.gamma_samples, loggings)
    meta = {
        "requests": a.requests,
        "seeds": a.seeds,
        "lengths": lengths,
        "n_boot": a.n_boot,
        "gamma_samples": a.gamma_samples,
        "logging": list(loggings),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(a.out / "ope_slate.json") as tmp:
        tmp.write_text(json.dumps({"settings": meta, "rows": rows}, indent=1))
    plot(rows, a.out / "ope_slate.png")
    for r in rows:
        if r["logging"] == "pl" and r["K"] in (lengths[0], lengths[-1]) and not r["estimator"].startswith("sn_"):
            z = r["bias"] / r["bias_se"] if r["bias_se"] else math.nan
            print(
                f"{r['reward']:15s} K={r['K']:2d} {r['estimator']:18s} bias {r['bias']:+.4f} (z {z:+.1f}) rmse {r['rmse']:.4f} "
                f"cover {r['coverage_normal']:.2f}/{r['coverage_bootstrap']}" + (f" Gamma {r['pi_gamma']}" if "pi_gamma" in r else "")
            )
    print(f"wrote {a.out / 'ope_slate.json'} and ope_slate.png in {meta['wall_s']} s")


if __name__ == "__main__":
    main()
