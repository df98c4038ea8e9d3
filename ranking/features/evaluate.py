"""The two evaluators of the feature definitions (``_DEFS`` of :mod:`ranking.features.catalogue`).

:func:`_derive` builds polars expressions (both the batch and the online
path, tables of any size); :func:`_derive_matrix` computes the rows of one
online request with numpy into the float64 matrix a model scores, without a
query plan or a polars frame (:func:`_derive_rows` wraps it as a frame).

Invariant: wherever :func:`_derive_matrix` answers (it returns None otherwise),
its values equal :func:`_derive`'s bit for bit, so a model scores online
exactly the features it was trained on.  It holds because ``_derive_matrix``
applies the same floating-point operations in the same order as the polars
expressions (see ``_HOURS_PER_US`` and the rate formula), reads strings and
timestamps the way polars does (string equality as codes of an Enum of the
compared values, durations truncated to microseconds, hours of UTC or naive
instants by floor division), hands the dtypes it does not read itself to the
polars operation of the expression (mixed time units or zones, local zones'
hours, one-hot of non-string columns), and declines the inputs whose meaning
polars decides (nulls, string counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ranking.features.catalogue import _DEFS, _PRIOR_K, _RAW, FeatureSet

__all__: list[str] = []

# A product, not a quotient: polars divides a column by a scalar as a product with the
# reciprocal, numpy divides, and the two differ in the last bit for some values.
_HOURS_PER_US = 1.0 / 3.6e9
_PER_HOUR = {"ns": 3_600 * 10**9, "us": 3_600 * 10**6, "ms": 3_600 * 10**3}


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


@dataclass(frozen=True)
class _Plan:
    """Where each feature of a set comes from: columns of the raw matrix, and of the output matrix."""

    raw: tuple[str, ...]  # numeric input columns, in the raw matrix's order
    col_out: np.ndarray
    col_raw: np.ndarray
    rate_out: np.ndarray
    rate_x: np.ndarray
    rate_n: np.ndarray
    rate_prior: np.ndarray  # k * prior, the polars expression's literal
    # Per compared column: its compared values, each value's output column and position among them.
    onehot: tuple[tuple[str, pa.Array, np.ndarray, np.ndarray], ...]
    age_out: tuple[int, ...]
    hour_out: tuple[int, ...]


@lru_cache(maxsize=16)
def _plan(columns: tuple[str, ...]) -> _Plan:
    """The :class:`_Plan` of feature columns ``columns`` (built once per feature set)."""
    defs = [_DEFS[c] for c in columns]
    raw = tuple(dict.fromkeys(c for d in defs if d[0] in ("col", "rate") for c in d[1:3]))
    at = {c: i for i, c in enumerate(raw)}
    cols = [(j, at[d[1]]) for j, d in enumerate(defs) if d[0] == "col"]
    rates = [(j, at[d[1]], at[d[2]], _PRIOR_K * d[3]) for j, d in enumerate(defs) if d[0] == "rate"]
    onehot = []
    for name in dict.fromkeys(d[1] for d in defs if d[0] == "is"):
        values = [(j, d[2]) for j, d in enumerate(defs) if d[0] == "is" and d[1] == name]
        labels = tuple(dict.fromkeys(v for _, v in values))
        out = np.array([j for j, _ in values], dtype=np.intp)
        onehot.append((name, pa.array(labels, pa.large_string()), out, np.array([labels.index(v) for _, v in values], dtype=np.float64)))
    idx = np.intp
    return _Plan(
        raw=raw,
        col_out=np.array([j for j, _ in cols], dtype=idx),
        col_raw=np.array([i for _, i in cols], dtype=idx),
        rate_out=np.array([r[0] for r in rates], dtype=idx),
        rate_x=np.array([r[1] for r in rates], dtype=idx),
        rate_n=np.array([r[2] for r in rates], dtype=idx),
        rate_prior=np.array([r[3] for r in rates], dtype=np.float64),
        onehot=tuple(onehot),
        age_out=tuple(j for j, d in enumerate(defs) if d[0] == "age_h"),
        hour_out=tuple(j for j, d in enumerate(defs) if d[0] == "hour"),
    )


def _numeric(values: pl.Series | np.ndarray) -> np.ndarray | None:
    """A null-free numeric or Boolean column as numpy, else None (polars' cast decides what it means)."""
    if isinstance(values, pl.Series):
        if values.null_count() or not (values.dtype.is_numeric() or values.dtype == pl.Boolean):
            return None
        values = values.to_numpy()
    return values if values.dtype.kind in "biuf" else None


def _codes(values: pl.Series, labels: pa.Array) -> np.ndarray | None:
    """Position of each value among ``labels`` as float (NaN: none of them); None for a non-string dtype.

    Exact string equality, as polars' ``==``, by arrow's ``index_in`` over the values, or for
    categorical columns over their few categories and then indexed by the codes: no per-row Python.
    """
    dtype = values.dtype
    if dtype == pl.String:
        return pc.index_in(values.to_arrow(), value_set=labels).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    if dtype == pl.Categorical or isinstance(dtype, pl.Enum):
        coded = values.to_arrow()
        table = pc.index_in(coded.dictionary, value_set=labels).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        return table[coded.indices.to_numpy()]
    return None


def _instants(values: pl.Series) -> np.ndarray:
    """The physical values of a Datetime column (UTC instants in its time unit), without a polars expression."""
    return values.to_numpy().view(np.int64)


def _age_us(request: pl.Series, created: pl.Series) -> np.ndarray:
    """``(request - created).dt.total_microseconds()`` as polars computes it."""
    dtype = request.dtype
    if not (isinstance(dtype, pl.Datetime) and created.dtype == dtype):
        return (request - created).dt.total_microseconds().to_numpy()  # mixed units or zones: polars decides
    diff = _instants(request) - _instants(created)
    if dtype.time_unit == "ns":
        return np.sign(diff) * (np.abs(diff) // 1000)  # polars truncates toward zero
    return diff * 1000 if dtype.time_unit == "ms" else diff


def _hour(request: pl.Series) -> np.ndarray:
    """``request.dt.hour()``: by floor division for naive and UTC instants, by polars in other zones."""
    dtype = request.dtype
    if isinstance(dtype, pl.Datetime) and dtype.time_zone in (None, "UTC"):
        hours: np.ndarray = _instants(request) // _PER_HOUR[dtype.time_unit]
        return hours % 24
    return request.dt.hour().to_numpy()


def _derive_matrix(columns: Mapping[str, pl.Series | np.ndarray], fs: FeatureSet) -> np.ndarray | None:
    """:func:`_derive` of one request's rows with numpy, as a C-order float64 matrix (the module's invariant).

    ``columns`` holds the columns :func:`_derive` reads, without nulls: the
    numeric ones (raw counts already 0 where there is no history, profiles,
    ``position``) as numpy arrays or polars Series, ``update_type``,
    ``client``, ``created_ts`` and ``request_ts`` as polars Series.  A polars
    query costs about a millisecond and a half whatever the rows, most of a
    request's features.  Returns shape (n_rows, len(fs.columns)), columns in
    the order of ``fs.columns``; None when a column has nulls or a numeric
    feature reads a non-numeric column (polars' semantics then apply).
    """
    plan = _plan(fs.columns)
    context = {c: s for c in ("update_type", "client", "created_ts", "request_ts") if isinstance(s := columns.get(c), pl.Series)}
    if any(s.null_count() for s in context.values()):
        return None
    n = len(next(iter(columns.values())))
    # Built transposed, one contiguous row per column, and turned into C order once at the end:
    # numpy writes a strided column of a C-order matrix several times slower.
    RT = np.empty((len(plan.raw), n))
    for i, c in enumerate(plan.raw):
        got = _numeric(columns[c])
        if got is None:
            return None
        RT[i] = got  # equal to polars' cast to Float64: booleans 0/1, integers rounded to nearest
    XT = np.empty((len(fs.columns), n))
    XT[plan.col_out] = RT[plan.col_raw]
    # The operations and their order of the polars expression, every rate at once.
    XT[plan.rate_out] = (RT[plan.rate_x] + plan.rate_prior[:, None]) / (RT[plan.rate_n] + _PRIOR_K)
    for name, labels, out, code in plan.onehot:
        series = context[name]
        codes = _codes(series, labels)
        if codes is None:  # not a string column: polars' == decides what it means
            XT[out] = np.stack([(series == v).to_numpy() for v in labels.to_pylist()])[code.astype(np.intp)]
        else:
            XT[out] = codes[None, :] == code[:, None]
    if plan.age_out:
        XT[list(plan.age_out)] = _age_us(context["request_ts"], context["created_ts"]).astype(np.float64) * _HOURS_PER_US
    if plan.hour_out:
        XT[list(plan.hour_out)] = _hour(context["request_ts"])
    return np.ascontiguousarray(XT.T)


def _derive_rows(columns: Mapping[str, pl.Series | np.ndarray], fs: FeatureSet) -> pl.DataFrame | None:
    """:func:`_derive_matrix` as a polars DataFrame of the columns of ``fs`` (Float64), or None."""
    X = _derive_matrix(columns, fs)
    return None if X is None else pl.DataFrame(X, schema=list(fs.columns), orient="row")
