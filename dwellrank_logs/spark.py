"""Spark at the boundary: the check that pyspark is installed, and the sessions the command line, benchmarks and tests build.

Library functions take a ``SparkSession`` (or a Spark DataFrame) from their
caller and never build one.  :func:`local_session` is a ``local[N]`` session
for laptops and tests; :func:`spark_session_for` is the one the commands build
from ``--spark-master`` and ``--spark-conf`` (local settings for a ``local``
master, the cluster's own otherwise, ``spark-submit``'s master when run under
it), and :func:`spark_session` the same as a context that stops only a
session it started.  pyspark is an optional extra
(``pip install 'dwellrank[spark]'``), so it is imported only inside these
functions: the rest of the project imports without it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from dwellrank_logs.checks import check_positive_int
from dwellrank_logs.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["DEFAULT_MASTER", "PYSPARK_MISSING", "local_session", "require_pyspark", "spark_session", "spark_session_for"]

PYSPARK_MISSING = "--engine spark needs pyspark (pip install 'dwellrank[spark]')"
"""The one-line message of the :class:`ConfigError` raised when pyspark is not installed."""

DEFAULT_MASTER = "local[*]"
"""The master of ``--engine spark`` without ``--spark-master`` (outside ``spark-submit``): every core of this machine."""

# local, local[N], local[*], local[N,F], local[*,F]: the masters that run Spark inside this process's JVM.
_LOCAL = re.compile(r"local(?:\[(\*|[1-9]\d*)(?:,[1-9]\d*)?\])?")


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
    return _local(f"local[{threads if threads is not None else '*'}]", threads, app_name, driver_memory, conf)


def spark_session_for(app_name: str, master: str | None = None, conf: Mapping[str, str] | None = None) -> SparkSession:
    """The session of a command's ``--engine spark``: ``--spark-master`` and ``--spark-conf`` applied.

    Parameters
    ----------
    app_name : str
        The application's name in the cluster manager (``dwellrank train``).
    master : str, optional
        ``local``, ``local[N]``, ``local[*]`` (:func:`local_session`'s settings
        for one machine) or a cluster manager (``yarn``, ``spark://host:7077``,
        ``k8s://...``).  Default: the master ``spark-submit`` was given when
        this process runs under it, :data:`DEFAULT_MASTER` otherwise.
    conf : mapping of str to str, optional
        Spark settings (``--spark-conf KEY=VALUE``), applied last.

    Returns
    -------
    pyspark.sql.SparkSession
        A new session, or the running one (``getOrCreate``).

    Notes
    -----
    On a cluster only what the results depend on, or the command's one-line
    output, is set: the session time zone is UTC (days are UTC days in the
    log schema), no console progress bars, Spark logs fatal errors only (a
    failed task's stack trace would otherwise precede the one-line error;
    ``--spark-conf spark.log.level=WARN`` shows them).  Partition counts,
    memory, the driver's address and the executors' Python stay the
    cluster's (``spark-defaults.conf``, ``spark-submit`` options,
    ``--spark-conf``).
    """
    if master is not None and (not isinstance(master, str) or not master.strip() or any(ch.isspace() for ch in master)):
        raise ConfigError(f"spark master must be a master URL such as local[*], yarn or spark://host:7077, got {master!r}")
    require_pyspark()
    submitted = master is None and "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started the JVM and holds the master
    if master is None:
        master = _submitted_master() if submitted else DEFAULT_MASTER
    local = _LOCAL.fullmatch(master)
    if local is not None:
        threads = None if local.group(1) in (None, "*") else int(local.group(1))
        return _local(master, 1 if local.group(1) is None else threads, app_name, "2g", conf)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if not submitted:  # under spark-submit its --master stands; setting it again would only repeat it
        builder = builder.master(master)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "FATAL",
        **dict(conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


@contextlib.contextmanager
def spark_session(app_name: str, master: str | None = None, conf: Mapping[str, str] | None = None) -> Iterator[SparkSession]:
    """:func:`spark_session_for` as a context: the session is stopped on exit if this call started it.

    A session already running in this process (a notebook's, a test run's)
    is used and left running.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    session = spark_session_for(app_name, master, conf)
    try:
        yield session
    finally:
        if running is None:
            session.stop()


def _submitted_master() -> str:
    """The master of the ``spark-submit`` that launched this process (its JVM is up: reading its conf starts nothing)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return str(SparkConf().get("spark.master", DEFAULT_MASTER))


def _local(master: str, threads: int | None, app_name: str, driver_memory: str, conf: Mapping[str, str] | None) -> SparkSession:
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
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
