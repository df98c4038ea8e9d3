"""The Spark engine's cost, stage by stage: against a bare Spark job, the polars engine and 1 vs 2 cores.

Data (see ``bench/spark_data.py``): for each of ``--sizes`` (default 10M,50M
impressions) the logs of one simulated world (``--members`` x ``--days``,
seed ``--seed``; 40,000 x 28 gives 7.1M impressions) tiled with shifted
member/update/session ids into Parquet part files to that size, written once
under ``--work`` and reused.  The candidate table of the ranking stage is the
impressions of the last ``--rank-days`` days (default 7 of 28, about a fifth
of the impressions) as candidate rows; the model is trained once with polars
on a small world (2,000 members x 14 days, features ``dwell``).

Stages, each on ``local[t]`` for every ``t`` of ``--threads`` (default 2,1),
each ``t`` in its own process (Spark driver memory ``--driver-memory``, 4g):

* ``tskip``: ``estimate_tskip_spark`` on the impressions directory;
* ``features``: ``write_training_frame_spark`` (the training frame of feature
  set ``dwell`` written as part files);
* ``rank``: ``rank_candidates_spark`` of the candidate table with features
  from the logs, top 10 per request, written as part files;
* ``engagement``: ``build_dataset_spark`` (the forecast dataset);
* ``ab``: the A/B aggregation of logged experiments on Spark, once it has
  landed (issue 14, item 5); until then reported as not available.

Each stage's time is set against a bare Spark job on the same session that
reads the same columns of the same tables and does one aggregation per table
decoding every value (goal: <= 1.5x for tskip and ab, <= 3x for features),
and against the polars engine's entry point on the same files, each polars
stage in a child process under an address-space limit (``--polars-mem-gb``,
8) so that a stage that does not fit fails alone, reported as such.  Times
are medians of ``--repeat`` runs, bare job and stage interleaved, after one
warm-up job.  The table is printed and everything is written to ``--out``.

Cluster cost of 10B impressions: the Spark stages are scans, shuffles and
window sorts whose work grows linearly with the rows, so the core-hours are
extrapolated from the core-seconds per row measured at the largest size
(``local[1]`` time, or twice the ``local[2]`` time without it): core-hours =
core-seconds per row x 1e10 / 3600.  This is a floor (a cluster adds network
shuffle and executor overheads; the sorts' n log n adds a little).

Measured (10M impressions = 2 tiles of 40,000 x 28, seed 0, 236 MiB of Parquet;
``local[2]``, driver 4g, one run each, on a 2-core machine shared with other
jobs at load average 5-16, so absolute times are inflated and the 1 -> 2 core
speed-up is not measurable there), Spark s / bare s / polars s:

* tskip 11.9 / 11.2 (1.07x, goal 1.5x) / 2.0;
* ab 225 / 11.4 (19.8x, goal 1.5x) / 35.5 when the float sums were made
  bit-equal to numpy's by sorting every member's impressions.  Now the
  seconds are summed as integer nanoseconds (exact in any order, partially
  aggregated), per (member, session) before the join with the sessions, the
  sessions counted per (member, day, window) once for both jobs, and the
  impressions' null checks summed in the same pass: 52 / 4.6 (11.3x) in one
  run, 66 / 8.0 (8.3x) in another, 2026-12-02 (polars 33.8 s before the
  change).  What is left is a hash aggregation over 1.8M (member, session)
  groups, two joins and the members' and sessions' checks, which the bare
  job does not do;
* features 793 / 30.9 (25.7x, goal 3x) / out of memory under an 8 GB
  address-space limit, when every history count was a window over the
  full-width rows and a global ``orderBy`` preceded the write.  With the
  history as per-(key, day) sums joined back by hash joins, and the frame
  written unsorted (the driver sorts what it reads and samples by a hash of
  the row key): 425 / 9.1 (47x; the bare job was 3.4x faster than in the
  first run, the stage 1.9x), 2026-12-02.  Partial aggregation helps little
  where it is needed most: in the tiled world there are 0.997 distinct
  (member, author, day) keys per impression and 0.43 (member, topic, day),
  against 0.049 (member, day) and 0.026 (update, day), so the member x
  author table is as large as the impressions and its window, maps and join
  cost full shuffles;
* engagement 161 / 20.5 (7.8x) / 8.4 (not profiled; its plan has several
  jobs and collects each member's history sessions to the driver as arrays); 76 / 3.8 (20x) on
  2026-12-02, with the Temporal GCN-LSTM's transition counts added to it;
* rank, at 1M impressions (190,657 candidates, top 10): 212 / 18.1 (11.7x) /
  22.7 (not profiled: the candidates' history counts from the logs as
  joins, then the ``mapInArrow`` forest); at 10M (1,921,831 candidates), 2026-12-02:
  436 / 28.5 (15.3x)).

Idle machine, 2026-12-02 (load average below 2, medians of 2): tskip local[2]
2.9 / 1.5 s (1.96x), local[1] 2.4 s, polars 0.5 s; ab local[2] 15.9 / 1.6 s
(9.7x), local[1] 17.6 s, polars 6.0 s: the 1 -> 2 core speed-up is 0.83x
(tskip) and 1.11x (ab) at this size, where fixed job costs dominate.

A second run at lower load (load average 5-7, two runs each, the first cold):
tskip local[2] 9.4 / 2.6 s against bare 3.7 / 4.2 s, local[1] 5.9 / 2.6 s;
engagement local[2] 65 / 29 s (bare 4.9 / 8.5), local[1] 50 / 49 s: times move
by 2-5x with the other jobs' load, and this machine shows no 1 -> 2 speed-up
(a second thread finds no free core).

50M impressions (8 tiles, 1,183 MiB; local[2], driver 4g, one run, load about 7,
2026-12-02), Spark s / bare s / grouped s (the same columns grouped by the
stage's key, ``grouped_job``): tskip 24.6 / 20.8 / 12.6 (1.18x the bare job,
goal 1.5x); ab 238.9 / 17.8 / 36.0 (13.4x, 6.6x the grouped floor);
engagement 485.7 / 49.4 / 41.9 (9.8x).  The features stage ran out of a 4 GB
driver there twice: once from persisting the joined rows (a cached partition
read back from disk is allocated whole; reverted), and the shuffle hash joins
build one shuffle partition in memory, so the job now keeps at most 500,000
impressions per partition; so mended it completed: 1,380 / 26.7 / 44.9 s
(51.7x the bare job, 30.8x the grouped one).  Core-hours for 10B from 50M:
tskip 2.7, ab 26.5, engagement 54, features 153.  Rank at 50M, measured later
(9,625,539 candidates, features from the logs, median of 2, load 6-16,
2026-12-02): 2,294 s against a 86.6 s bare job (26.5x; 24.0x a job grouped by
request), 255 core-hours per 10B impressions: batch ranking of a fifth of the
impressions as candidates dominates, then the features.
At 10M on the idle machine with the final code (one run, 2026-12-02), Spark /
bare / grouped s: tskip 2.9 / 1.9 / 2.0 (1.54x); ab 18.9 / 2.9 / 4.6 (6.6x,
4.1x grouped); features 133.3 / 5.3 / 7.4 (25.2x, 18.1x grouped).

10B impressions on a cluster, from these (core-seconds: twice the local[2]
seconds of the first run, or the local[1] seconds of the second; 10M; rank
from 1M): tskip 1-7 core-hours, features ~440, ab ~125, engagement 14-90,
rank ~1,200 (1M figure, its fixed costs included: an upper bound).  The
training features and batch ranking dominate, both for the same reason (the
per-row history windows and joins); the reductions to small results (tskip)
are already at the cost of a scan.

    python bench/spark.py [--sizes 10M,50M] [--threads 2,1] [--repeat 2] [--work runs/bench_spark] [--out runs/bench_spark.json]
    python bench/spark.py --sizes 1M --repeat 1           # a smoke run
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory has a simulate.py named like the `simulate` package; drop bench/ from the path so the package wins,
# then append it so the helper modules beside this file import.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
sys.path.append(str(_HERE))

import argparse
import json
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

from spark_data import build_logs, parse_size
from spark_stages import GROUP_KEYS, STAGES, ab_stage_module, bare_job, grouped_job, polars_stage, read_columns, spark_stage

GOALS = {"tskip": 1.5, "features": 3.0, "ab": 1.5}
CLUSTER_ROWS = 10_000_000_000


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _child_spark(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """Every Spark stage and its bare job on one local[threads] session, interleaved runs."""
    from dwellrank_logs.spark import local_session

    t0 = time.perf_counter()
    spark = local_session(f"bench-spark-{args.threads}", threads=args.threads, driver_memory=args.driver_memory)
    out: dict[str, Any] = {"spark": spark.version, "session_s": time.perf_counter() - t0, "stages": {}}
    scratch = Path(args.scratch)
    bare_job(spark, read_columns("tskip", data))  # warm-up: the JVM's first job
    for stage in args.stages:
        fn = spark_stage(stage, spark, data, Path(args.model), scratch)
        cols = read_columns(stage, data)
        times: dict[str, list[float]] = {"stage": [], "bare": [], "grouped": []}
        result: Any = None
        try:
            for _ in range(args.repeat):
                times["bare"].append(_timed(lambda: bare_job(spark, cols))[0])  # noqa: B023 (called at once)
                times["grouped"].append(_timed(lambda: grouped_job(spark, cols, GROUP_KEYS[stage]))[0])  # noqa: B023
                dt, result = _timed(fn)
                times["stage"].append(dt)
        except Exception as exc:  # a stage that fails is reported, the others still run
            out["stages"][stage] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
            continue
        out["stages"][stage] = {"times": times, "result": result}
        print(
            f"    local[{args.threads}] {stage}: {statistics.median(times['stage']):.1f} s (bare {statistics.median(times['bare']):.1f} s, "
            f"grouped by {GROUP_KEYS[stage]} {statistics.median(times['grouped']):.1f} s)",
            flush=True,
        )
    spark.stop()
    return out


def _child_polars(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    fn = polars_stage(args.stages[0], data, Path(args.model), Path(args.scratch))
    times, result = [], None
    for _ in range(args.repeat):
        dt, result = _timed(fn)
        times.append(dt)
    return {"times": times, "result": result, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run_child(
    args: argparse.Namespace, kind: str, data_json: Path, result: Path, extra: list[str], mem_gb: float | None
) -> dict[str, Any]:
    """Run this script as ``--child kind``; its JSON result, or what went wrong."""
    cmd = [sys.executable, __file__, "--child", kind, "--dataset", str(data_json), "--result", str(result), *extra]
    cmd += ["--repeat", str(args.repeat), "--model", str(args.model), "--scratch", str(args.scratch), "--driver-memory", args.driver_memory]
    limit = None if mem_gb is None else int(mem_gb * 2**30)

    def preexec() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    if args.reuse and result.exists():
        return dict(json.loads(result.read_text()))
    result.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, preexec_fn=preexec, timeout=args.timeout, stdout=None, stderr=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired:
        return {"error": f"over the --timeout of {args.timeout} s"}
    if proc.returncode != 0 or not result.exists():
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
        why = f"exit {proc.returncode} after {time.perf_counter() - t0:.0f} s"
        if mem_gb is not None and ("memory" in proc.stderr.lower() or proc.returncode < 0 or "alloc" in proc.stderr.lower()):
            why += f" (out of memory under the {mem_gb:g} GB limit)"
        return {"error": f"{why}: {tail[0][:300]}"}
    return dict(json.loads(result.read_text()))


def _model(work: Path, seed: int) -> Path:
    """A ranking model trained with polars on a small world, once."""
    from ranking.model_io import load_model

    out = work / f"model_2000x14_s{seed}"
    try:
        load_model(out)
    except Exception:  # absent, or saved by an older version of the model directory: train it again
        from ranking.train import TrainConfig, train_ranker
        from simulate import WorldConfig, simulate

        world = simulate(WorldConfig(n_members=2000, n_days=14), seed=seed)
        cfg = TrainConfig(feature_set="dwell", t_skip_s=2.5, seed=seed, baselines=False, skip_lift=False)
        train_ranker(world, config=cfg).save(out, overwrite=True)
    return out


def _med(xs: list[float] | None) -> float | None:
    return statistics.median(xs) if xs else None


def summarise(
    size: int, data: dict[str, Any], spark: dict[int, dict[str, Any]], polars: dict[str, dict[str, Any]], ab: str | None
) -> list[dict[str, Any]]:
    """One row per stage: the medians, ratios, speed-up and the 10B-impression extrapolation."""
    rows = []
    for stage in STAGES:
        row: dict[str, Any] = {"size": size, "stage": stage, "goal_x_bare": GOALS.get(stage)}
        if stage == "ab" and ab is None:
            row["note"] = "not yet available (no A/B reduction on Spark in this tree)"
            rows.append(row)
            continue
        for t, res in spark.items():
            s = res.get("stages", {}).get(stage)
            if s is None:
                continue
            if "error" in s:
                row[f"local{t}_error"] = s["error"]
                continue
            row[f"local{t}_s"] = _med(s["times"]["stage"])
            row[f"local{t}_bare_s"] = _med(s["times"]["bare"])
            row[f"local{t}_grouped_s"] = _med(s["times"].get("grouped"))
            row[f"local{t}_result"] = s["result"]
        p = polars.get(stage, {})
        if "error" in p:
            row["polars_error"] = p["error"]
        elif p:
            row["polars_s"] = _med(p["times"])
            row["polars_peak_rss_mib"] = round(p["peak_rss_mib"])
            row["polars_result"] = p["result"]
        if row.get("local2_s") and row.get("local2_bare_s"):
            row["x_bare"] = row["local2_s"] / row["local2_bare_s"]
        if row.get("local2_s") and row.get("local2_grouped_s"):
            row["x_grouped"] = row["local2_s"] / row["local2_grouped_s"]
        if row.get("local2_s") and row.get("polars_s"):
            row["x_polars"] = row["local2_s"] / row["polars_s"]
        if row.get("local1_s") and row.get("local2_s"):
            row["speedup_1_to_2"] = row["local1_s"] / row["local2_s"]
        core_s = row.get("local1_s") or (2 * row["local2_s"] if row.get("local2_s") else None)
        if core_s:
            rows_in = data["candidate_rows"] if stage == "rank" else size
            row["core_s_per_million"] = core_s / rows_in * 1e6
            # The ranking stage's candidates are a fixed fraction of the impressions: scale by impressions.
            row["cluster_core_h_10B"] = core_s / size * CLUSTER_ROWS / 3600
        rows.append(row)
    return rows


def _f(v: Any, fmt: str) -> str:
    return "-".rjust(int(fmt.rstrip("fd").split(".")[0])) if v is None else format(v, fmt)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"  {'stage':<11}{'local[2] s':>11}{'bare s':>8}{'x bare':>8}{'goal':>6}{'grouped s':>10}{'x grp':>7}{'polars s':>10}{'RSS MiB':>9}{'x polars':>9}{'local[1] s':>11}{'1->2':>6}{'core-h/10B':>11}"
    print(head)
    for r in rows:
        if "note" in r:
            print(f"  {r['stage']:<11}{r['note']}")
            continue
        print(
            f"  {r['stage']:<11}{_f(r.get('local2_s'), '11.1f')}{_f(r.get('local2_bare_s'), '8.1f')}{_f(r.get('x_bare'), '8.2f')}"
            f"{_f(r.get('goal_x_bare'), '6.1f')}{_f(r.get('local2_grouped_s'), '10.1f')}{_f(r.get('x_grouped'), '7.2f')}"
            f"{_f(r.get('polars_s'), '10.1f')}{_f(r.get('polars_peak_rss_mib'), '9d')}"
            f"{_f(r.get('x_polars'), '9.2f')}{_f(r.get('local1_s'), '11.1f')}{_f(r.get('speedup_1_to_2'), '6.2f')}"
            f"{_f(r.get('cluster_core_h_10B'), '11.1f')}"
        )
        for k in ("local2_error", "local1_error", "polars_error"):
            if k in r:
                print(f"  {'':<11}{k.split('_')[0]}: {r[k]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10M,50M", help="impressions per dataset, comma-separated (K, M, B suffixes)")
    ap.add_argument("--threads", default="2,1", help="Spark local[t] thread counts, comma-separated")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--members", type=int, default=40_000, help="members of the world that is tiled")
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rank-days", type=int, default=7, help="candidates: the impressions of the last N days")
    ap.add_argument("--driver-memory", default="4g")
    ap.add_argument("--polars-mem-gb", type=float, default=8.0, help="address-space limit of each polars stage's process")
    ap.add_argument("--no-polars", action="store_true")
    ap.add_argument("--stages1", default=None, help="the stages also run on local[1] (default: all of --stages)")
    ap.add_argument("--reuse", action="store_true", help="take a child's result from an earlier run on the same data when present")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per child process")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_spark"))
    ap.add_argument("--out", type=Path, default=None, help="JSON of every figure (default <work>/bench_spark.json)")
    # Internal: the child processes.
    ap.add_argument("--child", choices=("spark", "polars"), help=argparse.SUPPRESS)
    ap.add_argument("--dataset", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--scratch", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.stages = [s for s in args.stages.split(",") if s]
    bad = [s for s in args.stages if s not in STAGES]
    if bad or args.repeat < 1:
        ap.error(f"--stages: each must be one of {', '.join(STAGES)}, got {', '.join(bad)}" if bad else "--repeat must be >= 1")
    if args.child:
        data = json.loads(Path(args.dataset).read_text())
        if args.child == "spark":
            args.threads = int(args.threads)
            res = _child_spark(args, data)
        else:
            res = _child_polars(args, data)
        Path(args.result).write_text(json.dumps(res, indent=2, default=str) + "\n")
        return

    from dwellrank_logs.io import write_json

    threads = sorted({int(t) for t in args.threads.split(",") if t}, reverse=True)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = args.out or work / "bench_spark.json"
    args.model = _model(work, args.seed)
    ab = ab_stage_module()
    spark_stages = [s for s in args.stages if s != "ab" or ab is not None]
    report: dict[str, Any] = {"argv": sys.argv[1:], "cpus": os.cpu_count(), "ab_module": ab, "sizes": []}
    for size in sizes:
        print(f"{size:,} impressions", flush=True)
        data = build_logs(work, size, args.members, args.days, args.seed, args.rank_days)
        data_json = Path(data["logs"]).parent / "dataset.json"
        args.scratch = Path(data["logs"]).parent / "scratch"
        args.scratch.mkdir(exist_ok=True)
        spark: dict[int, dict[str, Any]] = {}
        for t in threads:
            on = spark_stages if t != 1 or args.stages1 is None else [x for x in args.stages1.split(",") if x in spark_stages]
            extra = ["--threads", str(t), "--stages", ",".join(on)]
            spark[t] = _run_child(args, "spark", data_json, args.scratch / f"spark{t}.json", extra, None)
            if "error" in spark[t]:
                print(f"    local[{t}]: {spark[t]['error']}", flush=True)
        polars: dict[str, dict[str, Any]] = {}
        for stage in [] if args.no_polars else spark_stages:
            polars[stage] = _run_child(
                args, "polars", data_json, args.scratch / f"polars_{stage}.json", ["--stages", stage], args.polars_mem_gb
            )
            p = polars[stage]
            print(
                f"    polars {stage}: "
                + (p["error"] if "error" in p else f"{_med(p['times']):.1f} s, peak RSS {p['peak_rss_mib']:.0f} MiB"),
                flush=True,
            )
        rows = summarise(size, data, spark, polars, ab)
        print(
            f"{size:,} impressions ({data['mib']:.0f} MiB Parquet, {data['tiles']} tile(s) of a {args.members:,} x {args.days} world, seed {args.seed}; "
            f"{data['candidate_rows']:,} candidates), medians of {args.repeat}"
        )
        print_table(rows)
        report["sizes"].append({"size": size, "data": data, "rows": rows, "spark": spark, "polars": polars})
        write_json(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
