"""The Spark options of every command with an engine: --spark-master, --spark-conf, and their one-line errors.

No Spark job runs here: the errors come before any session starts, and the settings a session would be
built with are read from pyspark's builder with ``getOrCreate`` replaced (the references are the
documented settings: 2 shuffle partitions per local thread, loopback driver only on a local master, UTC).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli import main
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.spark import PYSPARK_MISSING


def _verbs(d: Path) -> dict[str, list[str]]:
    """Each command with --engine, with inputs that need not exist: the errors tested come first."""
    return {
        "estimate-tskip": ["estimate-tskip", "--impressions", str(d / "imp.parquet"), "--out", str(d / "t.json")],
        "train": ["train", "--logs", str(d / "logs"), "--out", str(d / "model")],
        "rank": ["rank", "--model", str(d / "model"), "--candidates", str(d / "c.parquet"), "--out", str(d / "ranked")],
        "forecast-train": ["forecast", "train", "--logs", str(d / "logs"), "--task", "day", "--out", str(d / "fc")],
        "forecast-score": ["forecast", "score", "--model", str(d / "fc"), "--logs", str(d / "logs"), "--out", str(d / "s.parquet")],
        "forecast-compare": ["forecast", "compare", "--logs", str(d / "logs"), "--task", "day", "--out", str(d / "cmp")],
        "ab-report": ["ab-report", "--logs", str(d / "logs"), "--out", str(d / "ab")],
    }


VERBS = list(_verbs(Path(".")))


def _one_line_error(args: list[str], d: Path) -> str:
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    assert list(d.iterdir()) == []  # nothing written
    return lines[0][len("error: ") :]


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--spark-master", "yarn"], "--spark-master: only with --engine spark, got --engine polars"),
        (["--spark-conf", "spark.executor.memory=8g"], "--spark-conf: only with --engine spark, got --engine polars"),
        (["--engine", "polars", "--spark-master", "local[*]", "--spark-conf", "x"], "--spark-master and --spark-conf: only with"),
    ],
    ids=["master", "conf", "both"],
)
def test_spark_options_need_the_spark_engine(verb: str, extra: list[str], message: str, tmp_path: Path):
    assert _one_line_error([*_verbs(tmp_path)[verb], *extra], tmp_path).startswith(message)


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ("spark.executor.memory", "--spark-conf takes KEY=VALUE, got 'spark.executor.memory'"),
        ("=8g", "--spark-conf takes KEY=VALUE, got '=8g'"),
        ("spark.a b=1", "--spark-conf takes KEY=VALUE, got 'spark.a b=1'"),
        ("executor.memory=8g", "--spark-conf KEY must start with 'spark.' (Hadoop settings: spark.hadoop.*), got 'executor.memory=8g'"),
    ],
    ids=["no-equals", "no-key", "space", "not-spark"],
)
def test_spark_conf_must_be_key_equals_value(verb: str, conf: str, message: str, tmp_path: Path):
    args = [*_verbs(tmp_path)[verb], "--engine", "spark", "--spark-conf", conf]
    assert _one_line_error(args, tmp_path) == message


@pytest.mark.parametrize("verb", VERBS)
def test_spark_engine_without_pyspark_says_how_to_install_it(verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # as on an install without the extra
    assert _one_line_error([*_verbs(tmp_path)[verb], "--engine", "spark"], tmp_path) == PYSPARK_MISSING


@pytest.mark.parametrize("verb", ["estimate-tskip", "train", "forecast-train", "forecast-score", "forecast-compare"])
def test_driver_written_outputs_refuse_other_filesystems(verb: str, tmp_path: Path):
    args = _verbs(tmp_path)[verb]
    i = args.index("--out")
    args[i + 1] = "s3a://bucket/out"
    msg = _one_line_error([*args, "--engine", "spark"], tmp_path)
    assert msg.startswith("--out s3a://bucket/out: written by the driver, which writes local paths and file:// URIs only")


# --- the settings of the session a command builds --------------------------------------------------------


@pytest.fixture
def options(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``spark_session_for`` returning the builder's settings instead of starting Spark."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    from dwellrank_logs import spark as spark_module

    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", lambda self: dict(self._options))
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    return spark_module


def test_local_masters_get_the_local_settings(options: Any):
    got = options.spark_session_for("app", "local[3]", {"spark.sql.shuffle.partitions": "5"})
    assert got["spark.master"] == "local[3]" and got["spark.app.name"] == "app"
    assert got["spark.driver.host"] == "127.0.0.1" and got["spark.default.parallelism"] == "6"
    assert got["spark.sql.shuffle.partitions"] == "5"  # --spark-conf applied last
    assert options.spark_session_for("app", "local")["spark.default.parallelism"] == "2"
    assert options.spark_session_for("app", "local[2,3]")["spark.master"] == "local[2,3]"
    assert options.spark_session_for("app")["spark.master"] == "local[*]"


@pytest.mark.parametrize("master", ["yarn", "spark://head:7077", "k8s://https://api:6443"])
def test_cluster_masters_keep_the_clusters_settings(options: Any, master: str):
    got = options.spark_session_for("app", master, {"spark.executor.memory": "8g"})
    assert got["spark.master"] == master and got["spark.executor.memory"] == "8g"
    assert got["spark.sql.session.timeZone"] == "UTC"  # the results depend on it: days are UTC days
    for local_only in ("spark.driver.host", "spark.driver.bindAddress", "spark.sql.shuffle.partitions", "spark.driver.memory"):
        assert local_only not in got


def test_under_spark_submit_its_master_stands(options: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1")
    monkeypatch.setattr(options, "_submitted_master", lambda: "yarn")
    got = options.spark_session_for("app")
    assert "spark.master" not in got and got["spark.sql.session.timeZone"] == "UTC"
    monkeypatch.setattr(options, "_submitted_master", lambda: "local[4]")
    assert options.spark_session_for("app")["spark.default.parallelism"] == "8"
    assert options.spark_session_for("app", "spark://h:7077")["spark.master"] == "spark://h:7077"  # --spark-master wins


@pytest.mark.parametrize("master", ["", "local [2]", 3])
def test_bad_masters_are_refused(options: Any, master: Any):
    with pytest.raises(ConfigError, match=r"^spark master must be a master URL such as local\[\*\], yarn or spark://host:7077, got "):
        options.spark_session_for("app", master)


@pytest.mark.spark
def test_a_running_session_is_used_and_left_running(spark: Any):
    from dwellrank_logs.spark import spark_session

    with spark_session("dwellrank test", "local[2]") as s:
        assert s is spark
    assert spark.range(3).count() == 3  # not stopped: the command did not start it
