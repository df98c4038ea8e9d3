"""The polars engine of the binned counts: one streaming ``group_by`` over a lazy impressions table.

A Parquet file is streamed and never materialised: the query reads only the
dwell, action and group columns and returns one row per (group, dwell key),
which :func:`ranking.tskip.counts.binned_counts` turns into
:class:`~ranking.tskip.counts.BinnedCounts`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dwellrank_logs.checks import require_columns
from dwellrank_logs.errors import DwellrankError, SchemaError, first_line
from ranking.tskip.config import DEFAULT_CONFIG, TskipConfig
from ranking.tskip.counts import BinnedCounts, DwellKeyCounts, binned_counts

__all__ = ["bin_counts"]


def bin_counts(
    frame: pl.LazyFrame | pl.DataFrame,
    config: TskipConfig = DEFAULT_CONFIG,
    source: str = "<frame>",
) -> BinnedCounts:
    """Count impressions and actions per (group, dwell bin) in one streaming pass.

    Bin ``k`` holds ``floor(dwell / w) == k``; bin ``K`` every finite dwell
    ``>= K w`` (a dwell so large that ``dwell / w`` overflows, beyond 1e307
    seconds, counts as infinite).

    Parameters
    ----------
    frame : polars.LazyFrame or DataFrame
        Impressions with ``config.dwell_col`` (seconds), ``config.action_cols``
        and, if set, ``config.by``.  Other columns are not read.
    config : TskipConfig
    source : str
        Name of the input for messages (a file path).

    Returns
    -------
    BinnedCounts

    Raises
    ------
    SchemaError
        A column is missing or of the wrong type; unreadable data; in strict
        mode, unusable dwell or action values.
    InsufficientDataError
        No usable rows.

    Warns
    -----
    DwellDataWarning
        Rows with null/NaN/infinite/negative dwell or null actions were dropped.
    """
    lf = frame.lazy()
    schema = _check_columns(lf, config, source)
    w = float(config.bin_width_s)
    # Casts only where the type differs: each one costs a pass over 10M values.
    d = _as(config.dwell_col, schema, pl.Float64)
    # Integer 0/1 action columns are accepted: any non-zero value is an action.
    action = pl.any_horizontal([_as(c, schema, pl.Boolean) for c in config.action_cols])
    # Group on the raw floor(dwell / w) and sort out unusable dwell afterwards, on the
    # aggregated table: per-row validity masks, clipping and integer key arithmetic each
    # cost a full pass over the column, about a third of the estimator's time (measured
    # with bench/tskip.py).
    keys = [(d / w).floor().alias("_k")]
    if config.by is not None:
        keys.insert(0, _as(config.by, schema, pl.String).alias("_group"))
    tab = _collect(
        lf.group_by(keys).agg(pl.len().alias("_n"), action.sum().alias("_x"), action.null_count().alias("_null_action")),
        source,
    )
    # The aggregated table is small (a row per group and w of dwell range): numpy from here on,
    # where each polars query would cost a fraction of a millisecond.
    return binned_counts(
        DwellKeyCounts(
            key=tab["_k"].fill_null(0.0).to_numpy(),
            key_null=tab["_k"].is_null().to_numpy(),
            n=tab["_n"].to_numpy().astype(np.int64),
            n_action=tab["_x"].fill_null(0).to_numpy().astype(np.int64),
            n_null_action=tab["_null_action"].to_numpy().astype(np.int64),
            group=None if config.by is None else tab["_group"].fill_null("<null>").to_numpy(),
        ),
        config,
        source,
    )


def _collect(lf: pl.LazyFrame, source: str) -> pl.DataFrame:
    try:
        return lf.collect(engine="streaming")
    except DwellrankError:
        raise
    except Exception as exc:  # polars raises several types for unreadable data pages
        raise SchemaError(f"{source}: cannot read impressions ({first_line(exc)})") from exc


def _as(name: str, schema: pl.Schema, dtype: type[pl.DataType]) -> pl.Expr:
    col = pl.col(name)
    return col if schema[name] == dtype else col.cast(dtype)


def _check_columns(lf: pl.LazyFrame, config: TskipConfig, source: str) -> pl.Schema:
    try:
        schema = lf.collect_schema()
    except Exception as exc:
        raise SchemaError(f"{source}: cannot read the impressions table ({first_line(exc)})") from exc
    require_columns(
        schema.names(), [config.dwell_col, *config.action_cols] + ([config.by] if config.by else []), "impressions table", source
    )
    dt = schema[config.dwell_col]
    if not (dt.is_numeric() or dt == pl.Null):
        raise SchemaError(f"{source}: column '{config.dwell_col}' must be numeric (dwell, seconds), got {dt}")
    for c in config.action_cols:
        dt = schema[c]
        if not (dt == pl.Boolean or dt.is_integer() or dt == pl.Null):
            raise SchemaError(f"{source}: column '{c}' must be Boolean (action taken or not), got {dt}")
    if config.by is not None:
        dt = schema[config.by]
        if not (dt in (pl.String, pl.Categorical) or isinstance(dt, pl.Enum) or dt.is_integer() or dt == pl.Boolean):
            raise SchemaError(f"{source}: column '{config.by}' must be a string or integer group label, got {dt}")
    return schema
