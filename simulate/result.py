"""What a simulation returns: its tables, its ground truth and its summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.schema import TABLE_NAMES
from simulate.config import WorldConfig

__all__ = ["DAILY_TABLES", "SimulationResult", "require_tables"]

#: The log tables a simulation produces day by day (members and updates exist whole at the end).
DAILY_TABLES = ("impressions", "sessions", "events", "deliveries")


@dataclass
class SimulationResult:
    """The six log tables, the ground truth and a summary of one run.

    A run with ``keep_tables=False`` holds only ``members`` and ``updates``
    (and the updates' truth): its other tables went to a sink.

    Attributes
    ----------
    config : WorldConfig
    seed : int
        The seed of the run; -1 when it was given a Generator.
    tables : dict of str to DataFrame
        The log tables of ``docs/schema.md`` by name, in schema types.
    truth : dict
        ``truth.json``: the seed, ``t_skip_s``, the intents and the config.
    truth_tables : dict of str to DataFrame
        ``truth/*.parquet``: intent paths, phases, sessions' intents, P(engage) of
        each impression, update quality, members' latent traits.
    summary : dict
        Rows per table and the rates of :func:`simulate.summary.summarize`.
    """

    config: WorldConfig
    seed: int
    tables: dict[str, pl.DataFrame]
    truth: dict[str, Any]
    truth_tables: dict[str, pl.DataFrame]
    summary: dict[str, Any] = field(default_factory=dict)


def require_tables(result: SimulationResult, what: str) -> None:
    """Raise :class:`ConfigError` naming ``what`` unless ``result`` holds all six log tables."""
    missing = [n for n in TABLE_NAMES if n not in result.tables]
    if missing:
        raise ConfigError(
            f"{what} needs all six log tables, but this result has no {', '.join(missing)}: it was produced with "
            "keep_tables=False, so those tables are in the files its sink wrote (its summary is result.summary)"
        )
