"""The logs of ``bench/spark.py``: one simulated world tiled into part files to a target number of impressions.

Simulating 50M impressions directly (about 280K members x 28 days) needs more
memory than the benchmark may use, and the stages only need valid logs, so a
world of ``members`` x ``days`` is simulated once (``simulate_to``, seed
``seed``) and copied ``k`` times with every id shifted (member_id and
author_id by ``k * M``, update_id by ``k * U``, session_id by ``k * S``, each
offset a power of ten above the world's largest id): tile ``k`` is the same
population under new ids, on the same days.  The last tile is cut to the
target size by keeping the member-keyed rows (impressions, sessions, events,
deliveries) of its first members only (its members and updates tables stay
whole: members without sessions and updates nobody saw are valid logs).
Every member gets an A/B arm (``members.arm``, a seeded 50/50 draw over the
world's members, the same in every tile): the logs of an experiment whose
arms ran the same ranker, which is all the A/B reduction needs.

Each table is a directory of part files (``<table>.parquet/part-*.parquet``,
at most ``PART_ROWS`` rows each, zstd, statistics), as Spark or pyarrow write
a warehouse table.  The candidate table of the ranking stage is one Parquet
file (the polars engine reads one file): the impressions of the last
``rank_days`` days as candidate rows (request_id = session_id; the request
time and client from the session; author, topic and creation time from the
update).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.protocol import CANDIDATE_COLUMNS
from simulate import WorldConfig, simulate_to
from simulate.ab import ARMS

__all__ = ["PART_ROWS", "TABLES", "build_logs", "parse_size"]

PART_ROWS = 2_000_000
TABLES = ("members", "updates", "impressions", "sessions", "events", "deliveries")
_MEMBER_KEYED = ("impressions", "sessions", "events", "deliveries")


def parse_size(text: str) -> int:
    """``"10M"`` -> 10_000_000, ``"500K"`` -> 500_000, ``"1200"`` -> 1200."""
    t = text.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000, "B": 1_000_000_000}.get(t[-1:], 1)
    num = t[:-1] if mult != 1 else t
    try:
        value = int(float(num) * mult)
    except ValueError:
        raise SystemExit(f"--sizes: each size must be a number with an optional K, M or B suffix, got {text!r}") from None
    if value <= 0:
        raise SystemExit(f"--sizes: each size must be > 0, got {text!r}")
    return value


def _offset(largest: int) -> int:
    return 10 ** max(1, math.ceil(math.log10(largest + 2)))


def base_world(work: Path, members: int, days: int, seed: int) -> Path:
    """The simulated world the tiles copy (``work/base_<members>x<days>_s<seed>/``), simulated once."""
    out = work / f"base_{members}x{days}_s{seed}"
    if not (out / "summary.json").exists():
        t0 = time.perf_counter()
        simulate_to(out, WorldConfig(n_members=members, n_days=days), seed=seed, keep_tables=False, overwrite=True)
        print(f"  simulated {members:,} members x {days} days (seed {seed}) in {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
    return out


def _shift(frame: pl.DataFrame, k: int, offsets: dict[str, int]) -> pl.DataFrame:
    cols = {c: pl.col(c) + k * offsets[c] for c in offsets if c in frame.columns}
    return frame.with_columns(**cols) if k and cols else frame


def _write_parts(frame: pl.DataFrame, d: Path, tile: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for j, chunk in enumerate(frame.iter_slices(PART_ROWS)):
        chunk.write_parquet(d / f"part-{tile:04d}-{j:02d}.parquet", compression="zstd", statistics=True)


def _candidates(tables: dict[str, pl.DataFrame], rank_days: int) -> pl.DataFrame:
    imp = tables["impressions"]
    sessions = tables["sessions"].select("session_id", pl.col("start_ts").alias("request_ts"), "client")
    updates = tables["updates"].select("update_id", "author_id", "topic", "created_ts")
    last = imp.select(pl.col("ts").max()).item()
    first_day = last.replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=rank_days - 1)
    rows = imp.filter(pl.col("ts") >= first_day).select("session_id", "member_id", "update_id", "update_type")
    rows = rows.join(sessions, "session_id", "left").join(updates, "update_id", "left")
    return rows.rename({"session_id": "request_id"}).select(*CANDIDATE_COLUMNS)


def build_logs(work: Path, target: int, members: int, days: int, seed: int, rank_days: int) -> dict[str, Any]:
    """Write (once) ``target`` impressions as tiled part files under ``work/<target>/``; return its description.

    Returns
    -------
    dict
        ``logs`` (the logs directory), ``candidates`` (the candidate file),
        ``rows`` per table, ``tiles``, ``base`` (the world tiled), ``mib`` (Parquet size of the logs).
    """
    d = work / f"imp_{target}_b{members}x{days}_s{seed}_r{rank_days}_ab"
    meta_path = d / "dataset.json"
    if meta_path.exists():
        return dict(json.loads(meta_path.read_text()))
    base = base_world(work, members, days, seed)
    t0 = time.perf_counter()
    tables = {t: pl.read_parquet(base / f"{t}.parquet") for t in TABLES}
    # A logged experiment for the A/B stage: each member of the world in an arm, seeded, the same in every tile.
    arm = np.where(np.random.default_rng(seed).random(tables["members"].height) < 0.5, ARMS[0], ARMS[1])
    tables["members"] = tables["members"].with_columns(pl.Series("arm", arm, dtype=pl.String))
    offsets = {
        "member_id": _offset(int(tables["members"]["member_id"].max())),  # type: ignore[arg-type]
        "update_id": _offset(int(tables["updates"]["update_id"].max())),  # type: ignore[arg-type]
        "session_id": _offset(int(tables["sessions"]["session_id"].max())),  # type: ignore[arg-type]
    }
    offsets["author_id"] = offsets["member_id"]
    offsets["request_id"] = offsets["session_id"]
    per_tile = tables["impressions"].height
    full, rest = divmod(target, per_tile)
    # The cut tile keeps the member-keyed rows of members below `cutoff`, the first whose impressions reach `rest`.
    cutoff = None
    if rest:
        counts = tables["impressions"].group_by("member_id").len().sort("member_id").with_columns(pl.col("len").cum_sum().alias("cum"))
        cutoff = int(counts.filter(pl.col("cum") >= rest)["member_id"][0]) + 1
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rows = dict.fromkeys(TABLES, 0)
    cand_parts = []
    n_tiles = full + (1 if rest else 0)
    for k in range(n_tiles):
        tile = {t: _shift(f, k, offsets) for t, f in tables.items()}
        if k == full and cutoff is not None:
            limit = cutoff + k * offsets["member_id"]
            tile = {t: (f.filter(pl.col("member_id") < limit) if t in _MEMBER_KEYED else f) for t, f in tile.items()}
        for t, f in tile.items():
            _write_parts(f, tmp / "logs" / f"{t}.parquet", k)
            rows[t] += f.height
        cand_parts.append(_candidates(tile, rank_days))
    cands = pl.concat(cand_parts)
    cands.write_parquet(tmp / "candidates.parquet", compression="zstd", statistics=True)
    mib = sum(p.stat().st_size for p in (tmp / "logs").rglob("*.parquet")) / 2**20
    meta = {
        "logs": str(d / "logs"),
        "candidates": str(d / "candidates.parquet"),
        "rows": rows,
        "candidate_rows": cands.height,
        "tiles": n_tiles,
        "base": {"members": members, "days": days, "seed": seed, "impressions": per_tile},
        "rank_days": rank_days,
        "mib": round(mib, 1),
    }
    (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    print(
        f"  {target:,} impressions in {n_tiles} tile(s), {mib:.0f} MiB of Parquet, written in {time.perf_counter() - t0:.0f} s -> {d}",
        flush=True,
    )
    return meta
