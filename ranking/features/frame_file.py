"""A training frame as Parquet part files, and the driver-side loader (polars; no Spark needed).

:func:`ranking.features.spark_training.write_training_frame_spark` writes the
frame as part files sorted by (day, ts, request_id, update_id) with a
description, ``_dwellrank_frame.json``, beside them (the engine, the feature
set, the thresholds, the row count), in whatever order Spark's partitions
hold them.  :func:`read_training_frame` reads it back on the driver, whole
or as a seeded uniform sample of at most ``max_rows`` rows, streaming the
parts so that only the sample is held, and sorts what it keeps by
:data:`FRAME_ORDER`.  The sample is drawn by a seeded hash of each row's
(request_id, update_id), not by row position, so it is the same whatever the
partitioning and the number or order of the parts: Spark needs no global
sort before the write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.checks import check_positive_int, require_columns
from dwellrank_logs.errors import SchemaError
from dwellrank_logs.hashing import keyed_hash
from dwellrank_logs.io import open_parquet
from dwellrank_logs.schema import ACTIONS, SCHEMA_VERSION, TIME_UNIT, TIME_ZONE
from ranking.features.catalogue import FeatureSet, get_feature_set

__all__ = ["FRAME_META", "frame_meta", "frame_schema", "read_training_frame"]

#: The description file of a training frame directory (a leading ``_``: Parquet readers skip it).
FRAME_META = "_dwellrank_frame.json"
#: Version of the frame directory's layout.
FRAME_FORMAT = 1
#: The order of the rows :func:`read_training_frame` returns (the parts hold them in any order).
FRAME_ORDER: tuple[str, ...] = ("day", "ts", "request_id", "update_id")
#: A row's key: what the sample's hash is taken of.
_ROW_KEY = ("request_id", "update_id")


def frame_schema(feature_set: str | FeatureSet) -> dict[str, pl.DataType]:
    """Columns and types of :func:`~ranking.features.training_frame`'s result, in its order."""
    fs = get_feature_set(feature_set)
    return {
        "request_id": pl.Int64(),
        "member_id": pl.Int64(),
        "update_id": pl.Int64(),
        "ts": pl.Datetime(TIME_UNIT, TIME_ZONE),
        "day": pl.Int32(),
        **{c: pl.Boolean() for c in (*ACTIONS, "skip", "long_dwell")},
        **{c: pl.Float64() for c in ("dwell", "downstream", "upstream", *fs.columns)},
    }


def frame_meta(engine: str, feature_set: FeatureSet, t_skip_s: float, t_long_s: float, n_rows: int) -> dict[str, Any]:
    """The description written beside a frame's parts."""
    return {
        "frame_format": FRAME_FORMAT,
        "engine": engine,
        "schema_version": SCHEMA_VERSION,
        "feature_set": feature_set.to_dict(),
        "t_skip_s": t_skip_s,
        "t_long_s": t_long_s,
        "n_rows": n_rows,
        "order": list(FRAME_ORDER),
    }


def read_training_frame(
    path: str | os.PathLike[str],
    feature_set: str | FeatureSet,
    t_skip_s: float,
    t_long_s: float,
    max_rows: int | None = None,
    rng: int | np.random.Generator = 0,
    columns: tuple[str, ...] | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A training frame directory on the driver: all of it, or a seeded sample of at most ``max_rows`` rows.

    Parameters
    ----------
    path : path-like
        A directory written by :func:`~ranking.features.spark_training.write_training_frame_spark`.
    feature_set, t_skip_s, t_long_s
        What the caller trains with; the frame must have been built with the same.
    max_rows : int, optional
        Sample size: with more rows than this, the ``max_rows`` rows of the
        smallest seeded hash of (request_id, update_id), a uniform sample
        without replacement that does not depend on the layout of the parts
        (a key that the frame repeats brings all of its rows).
    rng : int or numpy.random.Generator
        The sample's randomness (one 63-bit seed of the hash is drawn from it).
    columns : tuple of str, optional
        Read only these columns of :func:`frame_schema` (default all).

    Returns
    -------
    (polars.DataFrame, dict)
        The rows in the frame's order (:data:`FRAME_ORDER`), with the types of
        :func:`frame_schema`; and ``engine`` (that built it), ``frame_rows``
        (the full frame's count) and ``sample_rows`` (None when every row was read).

    Raises
    ------
    SchemaError
        Not a frame directory, or one built for another feature set or
        thresholds, or a column missing or of another kind of type.
    """
    fs = get_feature_set(feature_set)
    if max_rows is not None:
        check_positive_int("max_rows", max_rows)
    d = Path(path)
    lf = open_parquet(d, "training frame")  # the parts exist, are Parquet and agree on their columns
    meta_path = d / FRAME_META
    try:
        meta = json.loads(meta_path.read_text())
        built = (meta["feature_set"], float(meta["t_skip_s"]), float(meta["t_long_s"]), str(meta["engine"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"{meta_path}: unreadable or missing training-frame description ({type(exc).__name__}: {exc})") from None
    want = (fs.to_dict(), float(t_skip_s), float(t_long_s))
    if built[:3] != want:
        raise SchemaError(
            f"{d}: training frame was built with feature set '{built[0].get('name')}' v{built[0].get('version')}, "
            f"t_skip_s={built[1]}, t_long_s={built[2]}; training asks for '{fs.name}' v{fs.version}, "
            f"t_skip_s={want[1]}, t_long_s={want[2]}; build it again"
        )
    schema = frame_schema(fs)
    names = tuple(schema) if columns is None else columns
    got = lf.collect_schema()
    require_columns(got.names(), names, "training frame", str(d))
    for c in names:
        if type(got[c]) is not type(schema[c]):
            raise SchemaError(f"{d}: training-frame column '{c}' must be {schema[c]}, got {got[c]}")
    read = (*names, *(c for c in FRAME_ORDER if c not in names))
    lf = lf.select([pl.col(c).cast(schema[c]) for c in read])
    n = int(lf.select(pl.len()).collect().item())  # from the footers
    info: dict[str, Any] = {"engine": built[3], "frame_rows": n, "sample_rows": None}
    if max_rows is None or n <= max_rows:
        return lf.sort(FRAME_ORDER).select(names).collect(engine="streaming"), info
    seed = int(np.random.default_rng(rng).integers(2**63))
    keys = lf.select(_ROW_KEY).collect(engine="streaming")
    h = keyed_hash(seed, *(keys[c].to_numpy() for c in _ROW_KEY))
    # The max_rows smallest hashes, ties (equal keys) broken by the key itself so that exactly max_rows are kept.
    chosen = keys.with_columns(pl.Series("_h", h)).sort("_h", *_ROW_KEY).head(max_rows).drop("_h")
    # Streamed: the parts pass through and only the drawn rows are kept.
    sample = lf.join(chosen.lazy(), on=list(_ROW_KEY), how="semi").sort(FRAME_ORDER).select(names).collect(engine="streaming")
    info["sample_rows"] = sample.height
    return sample, info
