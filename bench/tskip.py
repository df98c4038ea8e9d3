"""T_skip estimator speed on a 10M-row impressions Parquet file.

Simulates a world, tiles its impressions table to ``--rows`` rows (all
columns, as a real log would have them), writes it to a temporary Parquet
file and times (``--repeat`` interleaved runs; min and median):

* ``estimate_tskip_file`` (the streamed one-pass estimator, per-type curves),
* a plain pandas/numpy reference computing the same per-type curves
  (``pd.read_parquet`` of the same columns, ``groupby``, Wilson intervals),
* a bare polars scan of the same columns (``pl.scan_parquet(p).select(cols).collect()``),

and prints the ratios (goal: estimator <= 1.5x the scan, >= 5x faster than
the reference), a scan-and-sum of the same columns as a second baseline,
and the peak memory of the estimator and of the scan in fresh processes
(streaming: the estimator should stay far below the scan's materialised
columns).  The reference's thresholds are checked against ours.  With
``--parts N`` (default 16; 0 skips it) the same rows are also written as a
directory of N part files and the estimator and scan are timed on it.

    python bench/tskip.py [--rows 10000000] [--repeat 15] [--seed 0] [--parts 16]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory has a simulate.py named like the `simulate` package; drop bench/ from the path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import cast

import numpy as np
import pandas as pd
import polars as pl
from statsmodels.stats.proportion import proportion_confint

from dwellrank_logs.schema import ACTION_COLUMNS
from ranking.tskip import TskipConfig, TskipResult, estimate_tskip_file
from simulate import WorldConfig, simulate

COLS = ["dwell_s", *ACTION_COLUMNS, "update_type"]


def reference(path: Path, cfg: TskipConfig) -> dict[str, float | None]:
    """pandas/numpy: the same binned Bayes curve and threshold rule per type and overall."""
    df = pd.read_parquet(path, columns=COLS)
    d = df["dwell_s"].to_numpy()
    ok = np.isfinite(d) & (d >= 0)
    df = df[ok]
    act = df[list(ACTION_COLUMNS)].any(axis=1).to_numpy()
    k = np.minimum(np.floor(df["dwell_s"].to_numpy() / cfg.bin_width_s), cfg.n_bins).astype(np.int64)
    g = pd.DataFrame({"t": df["update_type"].to_numpy(), "k": k, "a": act}).groupby(["t", "k"])["a"].agg(["size", "sum"])
    out: dict[str, float | None] = {}
    tables = {t: g.loc[t] for t in g.index.get_level_values(0).unique()}
    tables["all"] = g.groupby(level=1).sum()
    for t, tab in tables.items():
        n = np.zeros(cfg.n_bins + 1, np.int64)
        x = np.zeros(cfg.n_bins + 1, np.int64)
        n[tab.index.to_numpy()] = tab["size"].to_numpy()
        x[tab.index.to_numpy()] = tab["sum"].to_numpy()
        n, x = n[:-1], x[:-1]
        m = n > 0
        lo = np.zeros(n.shape)
        lo[m] = proportion_confint(x[m], n[m], alpha=cfg.alpha, method="wilson")[0]
        info = np.flatnonzero(n >= cfg.min_bin_count)
        fires = lo[info] > cfg.eps
        thr = None
        for i in range(fires.size - cfg.persist + 1):
            if fires[i : i + cfg.persist].all():
                thr = float(info[i] * cfg.bin_width_s)
                break
        out[t] = thr
    return out


def scan(path: Path) -> int:
    # Bare polars; a directory with the options dwellrank_logs.io.open_parquet reads it with (same part files).
    lf = pl.scan_parquet(path, hive_partitioning=True, hidden_file_prefix=[".", "_"]) if path.is_dir() else pl.scan_parquet(path)
    return lf.select(COLS).collect().height


def scan_sum(path: Path) -> tuple:
    """The same columns read and reduced (every value decoded and touched once)."""
    exprs = [pl.col("dwell_s").sum(), pl.col("update_type").n_unique(), *(pl.col(c).sum() for c in ACTION_COLUMNS)]
    return pl.scan_parquet(path).select(exprs).collect(engine="streaming").row(0)


_RSS = """
import sys
sys.path.insert(0, {root!r})
import polars as pl
from ranking.tskip import estimate_tskip_file
{stmt}
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def peak_rss_mib(stmt: str, path: Path) -> float:
    """Peak resident memory of a fresh interpreter running ``stmt`` (Linux VmHWM, KiB; ru_maxrss survives fork+exec)."""
    code = _RSS.format(root=str(Path(__file__).resolve().parents[1]), stmt=stmt.format(path=str(path)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def timed(fns: dict[str, Callable[[], object]], repeat: int) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Interleaved runs (a, b, c, a, b, c, ...) so load from other processes hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, object] = {}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return times, outs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", type=int, default=16)
    args = ap.parse_args()
    t0 = time.perf_counter()
    imp = simulate(WorldConfig(n_members=3000, n_days=14), seed=args.seed).tables["impressions"]
    reps = -(-args.rows // imp.height)
    big = pl.concat([imp] * reps).head(args.rows)
    cfg = TskipConfig()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "impressions.parquet"
        big.write_parquet(path, compression="zstd", statistics=True)
        parts = Path(tmp) / "impressions_parts"
        if args.parts:
            parts.mkdir()
            for i, chunk in enumerate(big.iter_slices(-(-big.height // args.parts))):
                chunk.write_parquet(parts / f"part-{i:05d}.parquet", compression="zstd", statistics=True)
        del big
        mb = path.stat().st_size / 2**20
        print(
            f"{args.rows:,} impressions ({imp.height:,} simulated, tiled x{reps}), {mb:.0f} MiB Parquet, "
            f"built in {time.perf_counter() - t0:.1f} s; {args.repeat} interleaved runs ({max(1, args.repeat // 3)} of the reference)"
        )
        fast = {
            "scan": lambda: scan(path),
            "scan_sum": lambda: scan_sum(path),
            "estimator": lambda: estimate_tskip_file(path, cfg),
        }
        times, outs = timed(fast, args.repeat)
        rtimes, routs = timed({"reference": lambda: reference(path, cfg)}, max(1, args.repeat // 3))
        if args.parts:
            ptimes, pouts = timed(
                {"scan": lambda: scan(parts), "estimator": lambda: estimate_tskip_file(parts, cfg)}, max(1, args.repeat // 3)
            )
        rss = {
            "imports (polars, statsmodels)": peak_rss_mib("import statsmodels.stats.proportion", path),
            "estimate_tskip_file": peak_rss_mib("estimate_tskip_file({path!r})", path),
            "scan of the columns (collect)": peak_rss_mib(f"pl.scan_parquet({{path!r}}).select({COLS!r}).collect()", path),
        }
    res = cast(TskipResult, outs["estimator"])
    ref = cast(dict[str, float | None], routs["reference"])
    ours = {"all": res.t_skip_s, **{g: t.threshold_s for g, t in res.groups.items()}}
    agree = all(ours[k] == ref[k] for k in ref)
    med = {k: statistics.median(v) for k, v in {**times, **rtimes}.items()}
    mn = {k: min(v) for k, v in {**times, **rtimes}.items()}
    print(f"  {'':34} {'min s':>7} {'median s':>9}")
    print(f"  {'polars scan of ' + str(len(COLS)) + ' columns (collect)':34} {mn['scan']:7.3f} {med['scan']:9.3f}")
    print(f"  {'polars scan + sum of the columns':34} {mn['scan_sum']:7.3f} {med['scan_sum']:9.3f}")
    print(f"  {'estimate_tskip_file':34} {mn['estimator']:7.3f} {med['estimator']:9.3f}")
    print(f"  {'pandas/numpy reference':34} {mn['reference']:7.3f} {med['reference']:9.3f}")
    print(
        f"  estimator / scan        {mn['estimator'] / mn['scan']:5.2f}x (min)  {med['estimator'] / med['scan']:5.2f}x (median)   goal <= 1.5x"
    )
    # Run i of each is adjacent in time, so the per-run ratio cancels most of the VM's drift between runs.
    paired = sorted(e / s for e, s in zip(times["estimator"], times["scan"], strict=True))
    q = np.quantile(paired, [0.25, 0.5, 0.75])
    print(
        f"  estimator / scan, paired per run: median {q[1]:.2f}x, quartiles {q[0]:.2f}-{q[2]:.2f}x, "
        f"{sum(r <= 1.5 for r in paired)}/{len(paired)} runs <= 1.5x"
    )
    print(f"  estimator / scan + sum  {mn['estimator'] / mn['scan_sum']:5.2f}x (min)  {med['estimator'] / med['scan_sum']:5.2f}x (median)")
    print(
        f"  reference / estimator   {mn['reference'] / mn['estimator']:5.1f}x (min)  {med['reference'] / med['estimator']:5.1f}x (median)   goal >= 5x"
    )
    print(f"  T_skip {res.t_skip_s} s; reference thresholds agree: {agree}")
    print("  peak RSS, fresh process: " + ", ".join(f"{k} {v:,.0f} MiB" for k, v in rss.items()))
    if args.parts:
        same = {**cast(TskipResult, pouts["estimator"]).to_dict(), "source": None} == {**res.to_dict(), "source": None}
        pm = {k: statistics.median(v) for k, v in ptimes.items()}
        print(
            f"  as {args.parts} part files (median of {len(ptimes['scan'])}): scan {pm['scan']:.3f} s, estimator {pm['estimator']:.3f} s, "
            f"{pm['estimator'] / pm['scan']:.2f}x; same result as the single file: {same}"
        )


if __name__ == "__main__":
    main()
