"""Spark at the boundary: the check that pyspark is installed and a local session for laptops and tests.

Library functions take a ``SparkSession`` (or a Spark DataFrame) from their
caller and never build one; :func:`local_session` is for the CLI boundary, the
benchmarks and the tests.  pyspark is an optional extra
(``pip install 'dwellrank[spark]'``), so it is imported only inside these
functions: the rest of the project imports without it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from dwellrank_logs.checks import check_positive_int
from dwellrank_logs.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["PYSPARK_MISSING", "local_session", "require_pyspark"]

PYSPARK_MISSING = "--engine spark needs pyspark (pip install 'dwellrank[spark]')"
"""The one-line message of the :class:`ConfigError` raised when pyspark is not installed."""


def require_pyspark() -> ModuleType:
    """The ``pyspark`` module, or :class:`ConfigError` with :data:`PYSPARK_MISSING` when it is not installed."""
    try:
        import pyspark
        import pyspark.sql
    except ImportError as exc:
        raise ConfigError(PYSPARK_MISSING) from exc
    with warnings.catch_warnings():
        # pyspark imports its testing helpers on the first Python literal it sends to the JVM, and their
        # import warns that pandas >= 3 is not fully supported (no pandas path is used here): import them
        # now, once, without that warning in every command's output.
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        with contextlib.suppress(ImportError):  # an install without the testing helpers has no warning to hide
            import pyspark.testing.utils
    return pyspark


def local_session(
    app_name: str = "dwellrank",
    threads: int | None = None,
    driver_memory: str = "2g",
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """A ``local[threads]`` SparkSession with settings for one machine (a laptop, a test run).

    Parameters
    ----------
    app_name : str
    threads : int, optional
        Worker threads (``local[threads]``); default every core (``local[*]``).
    driver_memory : str
        JVM heap of the driver, which is the whole of Spark in local mode
        (``"2g"``); only takes effect when this call starts the JVM.
    conf : mapping of str to str, optional
        Further Spark settings (``--spark-conf KEY=VALUE``), applied last.

    Returns
    -------
    pyspark.sql.SparkSession
        A new session, or the running one (``getOrCreate``) with the SQL
        settings applied.

    Notes
    -----
    Shuffles use ``2 * threads`` partitions instead of Spark's 200 (a local
    run has no more than ``threads`` tasks at a time, and tiny partitions cost
    a task each); the web UI and console progress bars are off; the session
    time zone is UTC, as in the log schema; the driver binds to 127.0.0.1, so
    no network lookup is needed.  Spark logs only fatal errors: a failed task's
    JVM stack trace would otherwise go to stderr, while the library raises its
    own one-line error for it (``conf={"spark.log.level": "WARN"}`` to see them).
    """
    if threads is not None:
        check_positive_int("threads", threads)
    if not isinstance(driver_memory, str) or not driver_memory:
        raise ConfigError(f"driver_memory must be a JVM size such as '2g', got {driver_memory!r}")
    require_pyspark()
    from pyspark.sql import SparkSession

    n = threads if threads is not None else (os.cpu_count() or 1)
    # Before the JVM starts: a host name that resolves to a loopback address makes Spark warn and pick another interface.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (mapInArrow scoring) must run this interpreter, which has the project installed;
    # pyspark's default is whatever `python3` is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = {
        "spark.sql.shuffle.partitions": str(2 * n),
        "spark.default.parallelism": str(2 * n),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": driver_memory,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.log.level": "FATAL",
        **dict(conf or {}),
    }
    builder = SparkSession.builder.master(f"local[{threads if threads is not None else '*'}]").appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
