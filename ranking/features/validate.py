"""Checks of feature inputs: a joined frame's profiles, and a given feature matrix."""

from __future__ import annotations

import polars as pl

from dwellrank_logs.errors import SchemaError
from ranking.features.catalogue import FeatureSet

__all__ = ["validate_feature_matrix"]


def _check_profiles(frame: pl.DataFrame, source: str) -> None:
    """Raise :class:`SchemaError` naming the members of ``frame`` (profiles left-joined) without a profile."""
    unknown = frame.filter(pl.col("connections").is_null())["member_id"].unique().sort()
    if unknown.len():
        raise SchemaError(
            f"{source}: {unknown.len()} member_id(s) have no profile in the members table "
            f"(first: {unknown.head(5).to_list()}); member-side features need connections, tenure_days, ..."
        )


def validate_feature_matrix(frame: pl.DataFrame, fs: FeatureSet, source: str, skip: tuple[str, ...] = ()) -> None:
    """Check that ``frame`` holds every feature of ``fs`` as finite numbers.

    Raises
    ------
    SchemaError
        Naming ``source``, the column, and what arrived: a missing feature, a
        non-numeric column, or null/NaN/infinite values.
    """
    need = [c for c in fs.columns if c not in skip]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{source}: missing feature column(s) {', '.join(repr(m) for m in missing)} needed by feature set "
            f"'{fs.name}' v{fs.version} (or give the candidate key columns and --logs to compute them)"
        )
    for c in need:
        dtype = frame.schema[c]
        if not (dtype.is_numeric() or dtype == pl.Boolean):
            raise SchemaError(f"{source}: feature column '{c}' must be numeric, got {dtype}")
    bad = frame.select([(pl.col(c).cast(pl.Float64).is_null() | ~pl.col(c).cast(pl.Float64).is_finite()).sum().alias(c) for c in need]).row(
        0, named=True
    )
    for c in need:
        if bad[c]:
            raise SchemaError(f"{source}: feature column '{c}' has {bad[c]} null/NaN/infinite value(s); the model needs finite values")
