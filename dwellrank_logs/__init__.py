"""Log schema, validation and atomic I/O shared by every dwellrank stage.

Logs are the interface between stages: ``simulate`` writes these tables,
``ranking`` and ``engagement`` read them.
"""

from dwellrank_logs.errors import ConfigError, DwellrankError, OutputError, OutputExistsError, SchemaError
from dwellrank_logs.io import (
    atomic_dir,
    atomic_file,
    open_parquet,
    parquet_parts,
    scan_logs,
    scan_table,
    sweep_stale,
    table_path,
    write_json,
    write_parquet,
)
from dwellrank_logs.schema import (
    ACTION_COLUMNS,
    CHANNELS,
    CLIENTS,
    CONTENTS,
    EVENT_TYPES,
    SCHEMA_VERSION,
    TABLE_NAMES,
    TABLES,
    UPDATE_TYPES,
    VIRAL_COLUMNS,
    empty_frame,
    validate_frame,
)

__all__ = [
    "ACTION_COLUMNS",
    "CHANNELS",
    "CLIENTS",
    "CONTENTS",
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "TABLES",
    "TABLE_NAMES",
    "UPDATE_TYPES",
    "VIRAL_COLUMNS",
    "ConfigError",
    "DwellrankError",
    "OutputError",
    "OutputExistsError",
    "SchemaError",
    "atomic_dir",
    "atomic_file",
    "empty_frame",
    "open_parquet",
    "parquet_parts",
    "scan_logs",
    "scan_table",
    "sweep_stale",
    "table_path",
    "validate_frame",
    "write_json",
    "write_parquet",
]
