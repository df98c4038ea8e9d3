"""The Spark history counts where keys are missing: the polars engine is the reference.

:func:`ranking.features.spark_training.training_frame_spark` reads the
member x author and member x topic counts from per-(member, day) maps keyed by
the author or topic; an impression whose update is not in the updates table
has a null author and topic (and no creation time), which must give no history
for those keys, as polars' as-of join gives none, while its member and update
counts are still counted.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("pyspark")

from dwellrank_logs.io import scan_logs
from ranking.features import training_frame
from ranking.features.spark_tables import read_logs_spark
from ranking.features.spark_training import training_frame_spark
from simulate import WorldConfig, simulate, write_simulation

pytestmark = [pytest.mark.spark]

_TABLES = ("impressions", "sessions", "updates", "members")
_T_SKIP = 2.5


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 members x 4 days, seed 5, with every third update left out of the updates table."""
    out = write_simulation(simulate(WorldConfig(n_members=150, n_days=4), seed=5), tmp_path_factory.mktemp("spark_history") / "logs")
    updates = pl.read_parquet(out / "updates.parquet")
    updates.filter(pl.col("update_id") % 3 != 0).write_parquet(out / "updates.parquet")
    return out


def test_null_author_and_topic_get_no_history_as_on_polars(spark, logs: Path):
    expected = training_frame(scan_logs(logs, _TABLES), "dwell", _T_SKIP)
    got = pl.DataFrame(pl.from_arrow(training_frame_spark(read_logs_spark(logs, spark), "dwell", _T_SKIP).toArrow()))
    keys = ["request_id", "update_id"]
    assert got.schema == expected.schema and got.height == expected.height
    both = expected.join(got, on=keys, how="inner", suffix="_spark")
    assert both.height == expected.height
    # The case under test is there: impressions of unknown updates, some of them with earlier history.
    unknown = both.filter(pl.col("update_id") % 3 == 0)
    assert unknown.height > 0 and (unknown["m_impressions"] > 0).any()
    for c in expected.columns:
        if c not in keys:
            assert both[c].equals(both[f"{c}_spark"]), c
