"""The engines a heavy stage can run on: polars on one machine, Apache Spark on a cluster.

Each stage whose cost grows with the logs reduces them to an engine-neutral
result (binned counts, a training frame, ...) with a small engine-specific part;
everything after that reduction is shared code, and parity tests keep the
engines equal.
"""

from __future__ import annotations

from dwellrank_logs.errors import ConfigError

__all__ = ["ENGINES", "check_engine"]

#: Engine names, the default first.
ENGINES: tuple[str, ...] = ("polars", "spark")


def check_engine(engine: object) -> str:
    """``engine`` if it names one of :data:`ENGINES`; otherwise a :class:`ConfigError` naming the choices."""
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return str(engine)
