"""Log schema, validation and atomic I/O shared by every dwellrank stage.

Logs are the interface between stages: ``simulate`` writes these tables,
``ranking`` and ``engagement`` read them.
"""

from logs.errors import ConfigError
from logs.errors import DwellrankError
from logs.errors import OutputExistsError
from logs.errors import SchemaError
from logs.io import atomic_dir
from logs.io import atomic_file
from logs.io import open_parquet
from logs.io import parquet_parts
from logs.io import scan_logs
from logs.io import scan_table
from logs.io import sweep_stale
from logs.io import table_path
from logs.io import write_json
from logs.io import write_parquet
from logs.schema import ACTION_COLUMNS
from logs.schema import CHANNELS
from logs.schema import CLIENTS
from logs.schema import CONTENTS
from logs.schema import EVENT_TYPES
from logs.schema import SCHEMA_VERSION
from logs.schema import TABLE_NAMES
from logs.schema import TABLES
from logs.schema import UPDATE_TYPES
from logs.schema import VIRAL_COLUMNS
from logs.schema import empty_frame
from logs.schema import validate_frame

__all__ = [
    "ACTION_COLUMNS",
    "CHANNELS",
    "CLIENTS",
    "CONTENTS",
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "TABLE_NAMES",
    "TABLES",
    "UPDATE_TYPES",
    "VIRAL_COLUMNS",
    "ConfigError",
    "DwellrankError",
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
