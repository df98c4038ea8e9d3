"""The two evaluators of the feature definitions (``_DEFS`` of :mod:`ranking.features.catalogue`).

:func:`_derive` builds polars expressions (both the batch and the online
path, tables of any size); :func:`_derive_rows` computes the rows of one
online request with numpy, without a query plan.

Invariant: wherever :func:`_derive_rows` answers (it returns None otherwise),
its values equal :func:`_derive`'s bit for bit, so a model scores online
exactly the features it was trained on.  It holds because ``_derive_rows``
applies the same floating-point operations in the same order as the polars
expressions (see ``_HOURS_PER_US`` and the rate formula) and declines the
inputs whose meaning polars decides (nulls, string columns).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from ranking.features.catalogue import _DEFS, _PRIOR_K, _RAW, FeatureSet

__all__: list[str] = []

# A product, not a quotient: polars divides a column by a scalar as a product with the
# reciprocal, numpy divides, and the two differ in the last bit for some values.
_HOURS_PER_US = 1.0 / 3.6e9


def _expr(d: tuple[Any, ...]) -> pl.Expr:
    kind = d[0]
    if kind == "col":
        return pl.col(d[1])
    if kind == "rate":
        return (pl.col(d[1]) + _PRIOR_K * d[3]) / (pl.col(d[2]) + _PRIOR_K)
    if kind == "is":
        return pl.col(d[1]) == d[2]
    if kind == "age_h":
        return (pl.col("request_ts") - pl.col("created_ts")).dt.total_microseconds() * _HOURS_PER_US
    return pl.col("request_ts").dt.hour()


def _derive(frame: pl.DataFrame | pl.LazyFrame, fs: FeatureSet) -> pl.LazyFrame:
    """Feature columns of ``fs`` from raw counts, profile and context columns.

    ``frame`` holds the raw count columns of ``_RAW`` (null = no history, read
    as 0), :data:`~ranking.features.catalogue.PROFILE_COLUMNS`, ``update_type``,
    ``client``, ``created_ts``, ``request_ts`` and ``position``.  Returns only
    the feature columns, as Float64, in the order of ``fs.columns``.
    """
    raw = [v for _, (_, cols) in _RAW.items() for v in cols.values()]
    lf = frame.lazy().with_columns(pl.col(raw).fill_null(0).cast(pl.Float64))
    return lf.select([_expr(_DEFS[c]).cast(pl.Float64).alias(c) for c in fs.columns])


def _derive_rows(columns: dict[str, pl.Series], fs: FeatureSet) -> pl.DataFrame | None:
    """:func:`_derive` of one request's rows with numpy (the module's invariant).

    ``columns`` holds the null-free columns :func:`_derive` reads (raw counts
    already 0 where there is no history).  A polars query costs about a
    millisecond and a half whatever the rows, most of a request's features.
    None when a column has nulls (polars' null semantics then apply).
    """
    if any(s.null_count() for s in columns.values()):
        return None
    numeric = {c for d in (_DEFS[f] for f in fs.columns) if d[0] in ("col", "rate") for c in d[1:3]}
    if any(not (columns[c].dtype.is_numeric() or columns[c].dtype == pl.Boolean) for c in numeric):
        return None  # polars' cast decides what a string column means
    arrays: dict[str, np.ndarray] = {}

    def col(c: str) -> np.ndarray:
        if c not in arrays:
            # Equal to polars' cast to Float64: booleans 0/1, integers rounded to nearest.
            arrays[c] = columns[c].to_numpy().astype(np.float64, copy=False)
        return arrays[c]

    out: dict[str, np.ndarray] = {}
    for c in fs.columns:
        d = _DEFS[c]
        if d[0] == "col":
            out[c] = col(d[1])
        elif d[0] == "rate":
            # The operations and their order of the polars expression.
            out[c] = (col(d[1]) + _PRIOR_K * d[3]) / (col(d[2]) + _PRIOR_K)
        elif d[0] == "is":
            out[c] = (columns[d[1]] == d[2]).to_numpy().astype(np.float64)
        elif d[0] == "age_h":
            us = (columns["request_ts"] - columns["created_ts"]).dt.total_microseconds()
            out[c] = us.to_numpy().astype(np.float64) * _HOURS_PER_US
        else:
            out[c] = columns["request_ts"].dt.hour().to_numpy().astype(np.float64)
    return pl.DataFrame([pl.Series(c, out[c]) for c in fs.columns])
