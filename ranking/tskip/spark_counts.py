"""The Spark engine of the binned counts: one aggregation over a Spark DataFrame of impressions.

The polars engine's reduction (:func:`ranking.tskip.polars_counts.bin_counts`)
as one ``groupBy(group, dwell key).agg(...)`` of built-in functions, so the
optimiser prunes the other columns and aggregates partially on each executor
before the shuffle; only the aggregated table (a row per group and dwell bin,
plus one per kind of unusable dwell) reaches the driver, where
:func:`ranking.tskip.counts.binned_counts` does the accounting both engines
share.

Columns are checked on the Spark schema by the polars engine's own checks: the
schema is mapped onto polars types (``string`` is ``String``, ``double`` is
``Float64``, ...), so a missing column or a wrong type gets the same one-line
message from either engine.

pyspark is imported inside the functions: without it, :mod:`ranking` imports
and these raise :class:`~dwellrank_logs.errors.ConfigError` saying how to
install it.
"""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from dwellrank_logs.errors import DwellrankError, SchemaError
from dwellrank_logs.spark import require_pyspark
from dwellrank_logs.spark_tables import col as _col
from dwellrank_logs.spark_tables import polars_schema, spark_message
from ranking.tskip.config import DEFAULT_CONFIG, TskipConfig
from ranking.tskip.counts import BinnedCounts, DwellKeyCounts, binned_counts
from ranking.tskip.polars_counts import _check_columns

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType, StructType

__all__ = ["bin_counts_spark", "check_spark_columns"]


def bin_counts_spark(frame: DataFrame, config: TskipConfig = DEFAULT_CONFIG, source: str = "<frame>") -> BinnedCounts:
    """Count impressions and actions per (group, dwell bin) in one Spark aggregation.

    The same counts as :func:`~ranking.tskip.bin_counts` on the same rows: bin
    ``k`` holds ``floor(dwell * (1 / w)) == k`` in float64 (the quotient as
    polars evaluates ``dwell / w``), bin
    ``K`` every finite dwell ``>= K w``; null, NaN, infinite (a quotient that
    overflows included) and negative dwell and null actions are counted per
    reason and dropped, or refused in strict mode.

    Parameters
    ----------
    frame : pyspark.sql.DataFrame
        Impressions with ``config.dwell_col`` (seconds), ``config.action_cols``
        and, if set, ``config.by``.  Other columns are not read.
    config : TskipConfig
    source : str
        Name of the input for messages (a path).

    Returns
    -------
    BinnedCounts

    Raises
    ------
    ConfigError
        pyspark is not installed.
    SchemaError
        A column is missing or of the wrong type; Spark cannot read the data;
        in strict mode, unusable dwell or action values.
    InsufficientDataError
        No usable rows.

    Warns
    -----
    DwellDataWarning
        Rows with null/NaN/infinite/negative dwell or null actions were dropped.
    """
    require_pyspark()
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    spark_types = check_spark_columns(frame.schema, config, source)
    w = float(config.bin_width_s)
    K = config.n_bins

    def typed(name: str, want: type[DataType], cast: str) -> Column:
        # Casts only where the type differs, as the polars engine does.
        c = _col(name)
        return c if isinstance(spark_types[name], want) else c.cast(cast)

    # The quotient as polars computes it: polars evaluates a column divided by a float scalar as the
    # column times the scalar's reciprocal (polars 2.1: equal on 1M random dwells for w = 0.1, 0.7, 1/3),
    # so 0.3 s is in bin 3 of w = 0.1 (0.3 * 10.0 == 3.0) although IEEE 0.3 / 0.1 is 2.9999999999999996.
    # A true division here would put such decimal edges one bin lower than the polars engine does.
    q = typed(config.dwell_col, T.DoubleType, "double") * F.lit(1.0 / w)
    # Spark's floor() returns a 64-bit integer (saturating past 9.2e18, an error in ANSI mode), so the
    # quotient is clipped in float64 first: NaN and +-inf keep their own keys (the NaN test comes first,
    # as Spark orders NaN above every number), quotients >= K share the overflow key K and negative ones
    # the key -1.  binned_counts reads those keys as it reads the polars engine's unclipped ones: same bins,
    # same accounting, and one aggregated row per bin instead of one per w of dwell range.
    key = (
        F.when(F.isnan(q) | (F.abs(q) == F.lit(float("inf"))), q)
        .when(q >= F.lit(float(K)), F.lit(float(K)))
        .when(q < F.lit(0.0), F.lit(-1.0))
        .otherwise(F.floor(q).cast("double"))
    )
    # Integer 0/1 action columns are accepted (non-zero is an action); OR is SQL's Kleene OR, as polars' any_horizontal.
    action = reduce(lambda a, b: a | b, [typed(c, T.BooleanType, "boolean") for c in config.action_cols])
    keys = [key.alias("_k")]
    if config.by is not None:
        keys.insert(0, typed(config.by, T.StringType, "string").alias("_group"))
    tab = frame.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("_n"),
        F.count(F.when(action, F.lit(1))).alias("_x"),
        F.count(F.when(action.isNull(), F.lit(1))).alias("_null_action"),
    )
    try:
        rows = tab.collect()  # the aggregated table only: a row per (group, key)
    except DwellrankError:
        raise
    except Exception as exc:  # Spark raises several types (and py4j's) for unreadable files
        raise SchemaError(f"{source}: cannot read impressions ({spark_message(exc)})") from exc
    k = [r["_k"] for r in rows]
    return binned_counts(
        DwellKeyCounts(
            key=np.array([0.0 if v is None else v for v in k], dtype=np.float64),
            key_null=np.array([v is None for v in k], dtype=bool),
            n=np.array([r["_n"] for r in rows], dtype=np.int64),
            n_action=np.array([r["_x"] for r in rows], dtype=np.int64),
            n_null_action=np.array([r["_null_action"] for r in rows], dtype=np.int64),
            group=None if config.by is None else np.array(["<null>" if r["_group"] is None else r["_group"] for r in rows], dtype=object),
        ),
        config,
        source,
    )


def check_spark_columns(schema: StructType, config: TskipConfig, source: str) -> dict[str, DataType]:
    """Check the columns T_skip reads on a Spark schema, with the polars engine's messages.

    Returns
    -------
    dict of str to pyspark DataType
        The Spark type of every column of ``schema``.

    Raises
    ------
    SchemaError
        A column is missing, has the wrong type, or a Spark type with no
        polars equivalent (intervals, variants).
    """
    needed = [config.dwell_col, *config.action_cols] + ([config.by] if config.by else [])
    _check_columns(pl.LazyFrame(schema=polars_schema(schema, needed, source, "the impressions table")), config, source)
    return {f.name: f.dataType for f in schema.fields}
