"""The stages ``bench/spark.py`` times, on each engine, and the bare Spark jobs they are compared with.

Each Spark stage is the library's entry point on the tiled logs of
:mod:`spark_data`, run on a session the caller builds; its baseline
(:func:`bare_job`) reads the same columns of the same tables and does one
aggregation per table that decodes every value (a sum of each numeric column,
a max of each other one, a row count), which is the least any engine must do
to read those columns.  The polars stages are the single-machine entry points
on the same files.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dwellrank_logs.protocol import CANDIDATE_COLUMNS
from dwellrank_logs.schema import ACTION_COLUMNS

__all__ = ["GROUP_KEYS", "STAGES", "ab_stage_module", "bare_job", "grouped_job", "polars_stage", "read_columns", "spark_stage"]

STAGES = ("tskip", "features", "rank", "engagement", "ab")
FEATURE_SET = "dwell"
T_SKIP_S = 2.5  # the simulator's true T_skip: the stages after T_skip take it as given
TOP_K = 10
AB_PRE_DAYS = 7  # the first week is the CUPED pre-period of the logged experiment
_TSKIP_COLS = ("dwell_s", *ACTION_COLUMNS, "update_type")
# The A/B reduction on Spark (issue 14, item 5); the stage is skipped, with a note, in a tree without it.
_AB_MODULES = ("simulate.ab.logged_spark",)


def ab_stage_module() -> str | None:
    """The module of the A/B aggregation on Spark when this tree has it; else None."""
    for name in _AB_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except ModuleNotFoundError:
            continue
    return None


def read_columns(stage: str, data: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The Parquet paths a stage reads and, for each, the columns it reads."""
    from engagement.dataset import NEEDED_COLUMNS
    from ranking.features.spark_tables import _NEEDED

    logs = Path(data["logs"])
    if stage == "tskip":
        return {str(logs / "impressions.parquet"): _TSKIP_COLS}
    training = {str(logs / f"{t}.parquet"): tuple(cols) for t, cols in _NEEDED.items()}
    if stage == "features":
        return training
    if stage == "rank":
        return {data["candidates"]: tuple(CANDIDATE_COLUMNS), **training}
    if stage == "engagement":
        return {str(logs / f"{t}.parquet"): tuple(cols) for t, cols in NEEDED_COLUMNS.items()}
    if stage == "ab":
        from simulate.ab.logged import NEEDED_COLUMNS as AB_COLUMNS

        return {str(logs / f"{t}.parquet"): tuple(cols) for t, cols in AB_COLUMNS.items()}
    raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")


def bare_job(spark: Any, paths: Mapping[str, tuple[str, ...]]) -> list[tuple[Any, ...]]:
    """Read the columns of each path and aggregate every value (one Spark job per table)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    out = []
    for path, cols in paths.items():
        df = spark.read.parquet("file://" + path).select(*cols)
        kinds = {f.name: f.dataType for f in df.schema.fields}
        aggs = [F.count(F.lit(1))]
        for c in cols:
            numeric = isinstance(kinds[c], T.NumericType)
            aggs.append(F.sum(c) if numeric else F.max(c))
        out.append(tuple(df.agg(*aggs).collect()[0]))
    return out


#: The key each stage's output is grouped by (per member for the A/B and the forecast, per request for ranking):
#: the second baseline groups each table that has it by it, as the least a per-key reduction must shuffle.
GROUP_KEYS = {"tskip": "update_type", "features": "member_id", "rank": "request_id", "engagement": "member_id", "ab": "member_id"}


def grouped_job(spark: Any, paths: Mapping[str, tuple[str, ...]], key: str) -> list[tuple[Any, ...]]:
    """:func:`bare_job` with one hash aggregation by ``key`` per table that has it (the others as there).

    Each table holding ``key`` is grouped by it (sums of the numeric columns,
    maxima of the others, row counts), a shuffle of the partial aggregates as
    any per-key reduction needs, and the groups are then summed into one row,
    so every group's every value is computed.  A floor for reductions whose
    result is one row per key, where :func:`bare_job` (no shuffle) is the
    floor of a scan.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    out = []
    for path, cols in paths.items():
        df = spark.read.parquet("file://" + path).select(*cols)
        kinds = {f.name: f.dataType for f in df.schema.fields}
        values = [c for c in cols if c != key]
        if key not in cols:
            out.extend(bare_job(spark, {path: cols}))
            continue
        inner = [F.count(F.lit(1)).alias("_n")]
        inner += [(F.sum(c) if isinstance(kinds[c], T.NumericType) else F.max(c)).alias(c) for c in values]
        per_key = df.groupBy(key).agg(*inner)
        outer = [F.count(F.lit(1)), F.sum("_n")]
        outer += [F.sum(c) if isinstance(kinds[c], T.NumericType) else F.max(c) for c in values]
        out.append(tuple(per_key.agg(*outer).collect()[0]))
    return out


def spark_stage(stage: str, spark: Any, data: Mapping[str, Any], model_dir: Path, scratch: Path) -> Callable[[], dict[str, Any]]:
    """One run of ``stage`` on Spark, as a function returning a summary of its result."""
    logs = Path(data["logs"])
    if stage == "tskip":
        from ranking.tskip import estimate_tskip_spark

        def tskip() -> dict[str, Any]:
            r = estimate_tskip_spark(logs / "impressions.parquet", spark=spark)
            return {"t_skip_s": r.t_skip_s, "rows": r.n_rows}

        return tskip
    if stage == "features":
        from ranking.features.spark_tables import read_logs_spark
        from ranking.features.spark_training import write_training_frame_spark

        def features() -> dict[str, Any]:
            meta = write_training_frame_spark(read_logs_spark(logs, spark), scratch / "frame_spark", FEATURE_SET, T_SKIP_S, overwrite=True)
            return {"rows": meta["n_rows"]}

        return features
    if stage == "rank":
        from ranking.spark_rank import rank_candidates_spark

        def rank() -> dict[str, Any]:
            r = rank_candidates_spark(
                model_dir, data["candidates"], scratch / "ranked_spark", spark, top_k=TOP_K, logs=logs, overwrite=True
            )
            return {"rows": r.rows, "requests": r.requests, "mean_score": r.mean_score}

        return rank
    if stage == "engagement":
        from engagement.spark_dataset import build_dataset_spark

        def engagement() -> dict[str, Any]:
            d = build_dataset_spark(logs, spark=spark)
            return {"members": len(d.member_id), "y_day_sum": int(d.y_day.sum()), "nu_sum": round(float(d.nu.sum(dtype="float64")), 3)}

        return engagement
    if stage == "ab":
        from simulate.ab.logged import logged_ab_report
        from simulate.ab.logged_config import LoggedABConfig

        def ab() -> dict[str, Any]:
            r = logged_ab_report(logs, LoggedABConfig(t_skip_s=T_SKIP_S, pre_days=AB_PRE_DAYS), engine="spark", spark=spark)
            return {"n_control": r.srm["n_control"], "n_treatment": r.srm["n_treatment"], "rel_diff": r.effects["rel_diff"].to_list()}

        return ab
    raise ValueError(f"no Spark stage {stage!r}")


def polars_stage(stage: str, data: Mapping[str, Any], model_dir: Path, scratch: Path) -> Callable[[], dict[str, Any]]:
    """One run of ``stage`` on the polars engine, as a function returning a summary of its result."""
    logs = Path(data["logs"])
    if stage == "tskip":
        from ranking.tskip import estimate_tskip_file

        def tskip() -> dict[str, Any]:
            r = estimate_tskip_file(logs / "impressions.parquet")
            return {"t_skip_s": r.t_skip_s, "rows": r.n_rows}

        return tskip
    if stage == "features":
        from ranking.features import training_frame
        from ranking.train import load_training_tables

        def features() -> dict[str, Any]:
            frame = training_frame(load_training_tables(logs), FEATURE_SET, T_SKIP_S)
            frame.write_parquet(scratch / "frame_polars.parquet")
            return {"rows": frame.height}

        return features
    if stage == "rank":
        from ranking.ranker import rank_candidates_file

        def rank() -> dict[str, Any]:
            out = rank_candidates_file(
                model_dir, data["candidates"], scratch / "ranked_polars.parquet", top_k=TOP_K, logs_dir=logs, overwrite=True
            )
            return {"rows": out.height, "requests": out["request_id"].n_unique(), "mean_score": float(out["score"].mean())}  # type: ignore[arg-type]

        return rank
    if stage == "engagement":
        from engagement.dataset import build_dataset, read_logs

        def engagement() -> dict[str, Any]:
            d = build_dataset(read_logs(logs))
            return {"members": len(d.member_id), "y_day_sum": int(d.y_day.sum()), "nu_sum": round(float(d.nu.sum(dtype="float64")), 3)}

        return engagement
    if stage == "ab":
        from simulate.ab.logged import logged_ab_report
        from simulate.ab.logged_config import LoggedABConfig

        def ab() -> dict[str, Any]:
            r = logged_ab_report(logs, LoggedABConfig(t_skip_s=T_SKIP_S, pre_days=AB_PRE_DAYS), engine="polars")
            return {"n_control": r.srm["n_control"], "n_treatment": r.srm["n_treatment"], "rel_diff": r.effects["rel_diff"].to_list()}

        return ab
    raise ValueError(f"no polars stage {stage!r}")
