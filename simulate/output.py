"""Writing a simulation to a logs directory, atomically."""

from __future__ import annotations

import os
from pathlib import Path

from logs.io import atomic_dir, table_path, write_json, write_parquet
from logs.schema import TABLE_NAMES
from simulate.engine import SimulationResult

__all__ = ["write_simulation", "TRUTH_DIR"]

#: Sub-directory with ground-truth Parquet tables (estimators never read it).
TRUTH_DIR = "truth"


def write_simulation(result: SimulationResult, out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write the six log tables, ``truth.json``, ``truth/*.parquet`` and ``summary.json``.

    Everything goes to a temporary directory that is renamed onto ``out`` only
    when all files are written, so a failure leaves no partial output.

    Raises
    ------
    OutputExistsError
        ``out`` is a non-empty directory and ``overwrite`` is false, or cannot be written.
    """
    target = Path(out)
    with atomic_dir(target, overwrite=overwrite) as tmp:
        for name in TABLE_NAMES:
            write_parquet(result.tables[name], table_path(tmp, name))
        (tmp / TRUTH_DIR).mkdir()
        for name, frame in result.truth_tables.items():
            write_parquet(frame, tmp / TRUTH_DIR / f"{name}.parquet")
        write_json(tmp / "truth.json", result.truth)
        write_json(tmp / "summary.json", result.summary)
    return target
