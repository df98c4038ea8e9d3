"""pyspark is optional: without it ``ranking`` imports and the Spark engine says how to install it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.spark import PYSPARK_MISSING, local_session, require_pyspark
from ranking.tskip import TskipConfig, bin_counts_spark, estimate_tskip_spark


def test_ranking_imports_without_importing_pyspark():
    # None in sys.modules makes ``import pyspark`` fail, as on an install without the extra.
    code = (
        "import sys\n"
        "sys.modules['pyspark'] = None\n"
        "import ranking.tskip\n"
        "from ranking import estimate_tskip\n"
        "from ranking.tskip import estimate_tskip_spark, bin_counts_spark\n"
        "import dwellrank_logs.spark\n"
        "print(sorted(m for m in sys.modules if m.startswith('pyspark') and sys.modules[m] is not None))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "call",
    [
        require_pyspark,
        lambda: local_session("x", threads=1),
        lambda: estimate_tskip_spark("impressions.parquet"),
        lambda: bin_counts_spark(object(), TskipConfig()),  # type: ignore[arg-type]
    ],
    ids=["require", "local_session", "estimate", "bin_counts"],
)
def test_spark_engine_without_pyspark_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, call):
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(ConfigError, match=r"^--engine spark needs pyspark \(pip install 'dwellrank\[spark\]'\)$") as info:
        call()
    assert str(info.value) == PYSPARK_MISSING


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [({"threads": 0}, r"threads must be a positive integer, got 0"), ({"driver_memory": ""}, r"driver_memory must be a JVM size")],
)
def test_local_session_arguments(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        local_session("x", **kwargs)
