"""GLMix P(skip) fitted on Spark (``train --engine spark --pskip-glmix``) against the polars engine's fit.

Reference: the numpy pass of the polars engine (:func:`ranking.glmix_pskip.fit_pskip_glmix`,
itself checked against closed forms and a per-entity loop in ``test_glmix.py``) on the same logs.
The training frames are equal (``test_spark_training.py``), so the skip heads and their logits are
too, and the Spark groups run the numpy solver's own functions on each entity's rows in the frame's
order: the coefficients agree to far below the solver's tolerance.  They are compared within 1e-9,
not bit for bit, for one documented difference: a group stops its Newton steps when *its* entities'
steps are below ``newton_tol`` (1e-6), the numpy pass when *all* entities' are; the steps a group
leaves out are of the order of the square of the last one (Newton's quadratic convergence), about
1e-12.  Log losses summed by Spark in another order agree to 1e-12.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

pytest.importorskip("pyspark")

from cli import main
from dwellrank_logs.errors import ConfigError, SchemaError
from dwellrank_logs.io import scan_logs
from ranking import load_model
from ranking.features import get_feature_set, training_frame
from ranking.glmix_pskip import PskipGlmixConfig, fit_pskip_glmix
from ranking.spark_glmix import fit_pskip_glmix_spark
from ranking.train import TrainConfig, train_ranker
from simulate import write_simulation
from tests.ranking.ranking_worlds import T_SKIP_S, TINY, world

# One small world, one Spark training run (frame, heads, 2 blocks x 2 passes x 3 fits) and two refusals.
pytestmark = [pytest.mark.slow, pytest.mark.spark]

# What the command line below trains with (glmix_valid_days: its default, 3 of the 4 training days).
CFG = TrainConfig(t_skip_s=T_SKIP_S, seed=0, holdout_days=2, baselines=False, skip_lift=False, pskip_glmix=True)
TOL_COEF = 1e-9
TOL_LOSS = 1e-12


@pytest.fixture(scope="module")
def trained(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny world (800 members x 6 days, seed 1) trained by both engines with --pskip-glmix."""
    d = tmp_path_factory.mktemp("spark_glmix")
    logs = write_simulation(world(*TINY), d / "logs")
    train_ranker(logs, config=CFG).save(d / "polars")
    args = ["train", "--engine", "spark", "--pskip-glmix", "--logs", str(logs), "--out", str(d / "spark"), "--frame-dir", str(d / "frame")]
    args += ["--t-skip", str(T_SKIP_S), "--seed", "0", "--holdout-days", "2", "--no-baselines", "--quiet"]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return {"logs": logs, "polars": d / "polars", "spark": d / "spark", "frame": d / "frame"}


def _without_history_losses(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "history": [{k: v for k, v in h.items() if k != "train_log_loss"} for h in doc["history"]]}


def test_glmix_files_match_the_polars_engines(trained: dict[str, Path]):
    a = json.loads((trained["polars"] / "glmix" / "glmix.json").read_text())
    b = json.loads((trained["spark"] / "glmix" / "glmix.json").read_text())
    # Blocks, features, prior variances, entity counts, world, config and Newton step counts: equal.
    assert _without_history_losses(a) == _without_history_losses(b)
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert math.isclose(ha["train_log_loss"], hb["train_log_loss"], rel_tol=TOL_LOSS)
    for block in ("member", "update"):
        with np.load(trained["polars"] / "glmix" / f"{block}.npz") as pa_, np.load(trained["spark"] / "glmix" / f"{block}.npz") as sp_:
            assert np.array_equal(pa_["ids"], sp_["ids"])  # the same entities
            assert pa_["coef"].shape == sp_["coef"].shape
            assert np.abs(pa_["coef"] - sp_["coef"]).max() <= TOL_COEF
            assert np.abs(pa_["coef"]).max() > 0.01  # effects were fitted, not all shrunk to 0


def _close(a: Any, b: Any) -> bool:
    """Equal JSON values, floats within TOL_LOSS (relative)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=TOL_LOSS, abs_tol=1e-15)
    return bool(a == b)


def test_metadata_records_the_same_fit(trained: dict[str, Path]):
    a = json.loads((trained["polars"] / "metadata.json").read_text())
    b = json.loads((trained["spark"] / "metadata.json").read_text())
    assert b["data"]["engine"] == "spark" and a["data"]["engine"] == "polars"
    assert b["train_config"] == a["train_config"] and b["train_config"]["pskip_glmix"] is True
    assert list(b["train_config"]) == list(a["train_config"])
    # Blocks, variances, the choice's table, fit/validation days and rows, held-out AUC/NE/log loss.
    assert a["pskip"]["selection"]["n_valid"] > 0 and a["pskip"]["held_out"]["n_test"] > 0
    assert _close(a["pskip"], b["pskip"])
    manifest = json.loads((trained["spark"] / "manifest.json").read_text())
    assert {"glmix/glmix.json", "glmix/member.npz", "glmix/update.npz"} <= set(json.dumps(manifest).replace('\\"', "").split('"'))
    assert load_model(trained["spark"]).glmix is not None  # and it loads, as the polars engine's


def _polars_split(logs: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = training_frame(scan_logs(logs, ("impressions", "sessions", "updates", "members")), CFG.feature_set, T_SKIP_S)
    last = int(frame["day"].max())  # type: ignore[arg-type]
    return frame.filter(pl.col("day") <= last - 2), frame.filter(pl.col("day") > last - 2)


def _messages(trained: dict[str, Path], spark: Any, cfg: PskipGlmixConfig, drop: str | None) -> tuple[str, str]:
    """The one-line errors of both engines' GLMix fits of the same training frame (``drop``: a column removed)."""
    train, test = _polars_split(trained["logs"])
    tables = scan_logs(trained["logs"], ("updates", "members"))
    fs = get_feature_set(CFG.feature_set)
    if drop is not None:
        train, test = train.drop(drop), test.drop(drop)
    with pytest.raises((ConfigError, SchemaError)) as on_polars:
        fit_pskip_glmix(train, np.zeros(train.height), test, np.zeros(test.height), tables["updates"], tables["members"], fs, cfg)
    frame = spark.read.parquet("file://" + str(trained["frame"].absolute()))
    frame = frame if drop is None else frame.drop(drop)
    updates = spark.read.parquet("file://" + str((trained["logs"] / "updates.parquet").absolute()))
    head = load_model(trained["spark"]).heads["skip"]
    last_train = int(train["day"].max())  # type: ignore[arg-type]
    with pytest.raises(type(on_polars.value)) as on_spark:
        fit_pskip_glmix_spark(frame, head, updates, last_train, fs, None, trained["frame"].parent / "scratch", cfg)
    return str(on_polars.value), str(on_spark.value)


@pytest.mark.parametrize(
    ("cfg", "drop", "message"),
    [
        (PskipGlmixConfig(valid_days=4), None, r"valid_days=4 leaves 0 fit and \d+ validation rows"),
        (PskipGlmixConfig(valid_days=1), "type_video", r"training frame is missing column\(s\) 'type_video'"),
    ],
    ids=["no-fit-rows", "missing-type-column"],
)
def test_bad_input_gets_the_polars_engines_one_line_error(trained, spark, cfg: PskipGlmixConfig, drop: str | None, message: str):
    on_polars, on_spark = _messages(trained, spark, cfg, drop)
    assert on_spark == on_polars
    assert "\n" not in on_spark
    assert re.search(message, on_spark), on_spark
