"""Log I/O in one import: lazy reading (:mod:`dwellrank_logs.read`), atomic writing (:mod:`dwellrank_logs.write`)
and the checks of output paths made before any work (:mod:`dwellrank_logs.paths`).

Inputs are Parquet scanned lazily with polars so that a stage reads only the
columns it needs.  Outputs are written to a temporary sibling first and
renamed into place, so a failed run never leaves a half-written result.
"""

from __future__ import annotations

from dwellrank_logs.paths import check_not_input
from dwellrank_logs.paths import check_output_dir
from dwellrank_logs.paths import check_output_file
from dwellrank_logs.paths import check_writable
from dwellrank_logs.read import open_parquet
from dwellrank_logs.read import parquet_parts
from dwellrank_logs.read import scan_logs
from dwellrank_logs.read import scan_table
from dwellrank_logs.read import table_path
from dwellrank_logs.write import atomic_dir
from dwellrank_logs.write import atomic_file
from dwellrank_logs.write import atomic_files
from dwellrank_logs.write import sweep_stale
from dwellrank_logs.write import write_json
from dwellrank_logs.write import write_parquet

__all__ = [
    "atomic_dir",
    "atomic_file",
    "atomic_files",
    "check_not_input",
    "check_output_dir",
    "check_output_file",
    "check_writable",
    "open_parquet",
    "parquet_parts",
    "scan_logs",
    "scan_table",
    "sweep_stale",
    "table_path",
    "write_json",
    "write_parquet",
]
