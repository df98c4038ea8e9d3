"""The main job end to end on a small world, and its all-or-nothing output."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from dwellrank_logs import ConfigError
from dwellrank_pipeline import demo as pipeline

SMALL = pipeline.DemoSizes(members=800, days=10, ab_members=800, ab_days=6, ab_pre_days=2, warmup_members=800, warmup_days=8)


@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path: Path, native_scoring: None):
    out = tmp_path / "demo"
    lines: list[str] = []
    res = pipeline.run_demo(out, seed=1, sizes=SMALL, log=lines.append)
    assert [ln[:5] for ln in lines] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    for f in (
        "logs/impressions.parquet",
        "tskip.json",
        "tskip.png",
        "model/metadata.json",
        "ranked.parquet",
        "ab/report.json",
        "ab/report.png",
        "demo.json",
    ):
        assert (out / f).is_file(), f
    # The estimate is compared with the simulator's truth, which the estimator never reads.
    assert abs(res["t_skip_s"]["estimate"] - res["t_skip_s"]["truth"]) <= 0.25
    ranked = pl.read_parquet(out / "ranked.parquet")
    assert ranked["request_id"].n_unique() > 50
    assert ranked.group_by("request_id").agg(pl.col("rank").max())["rank"].max() <= 10
    assert json.loads((out / "demo.json").read_text())["seed"] == 1


def test_demo_failure_leaves_no_output(tmp_path: Path, monkeypatch):
    import ranking.train

    def boom(*args, **kwargs):
        raise RuntimeError("training failed")

    monkeypatch.setattr(ranking.train, "train_ranker", boom)
    out = tmp_path / "demo"
    with pytest.raises(RuntimeError, match="training failed"):
        pipeline.run_demo(out, seed=1, sizes=SMALL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("field", "value"), [("members", 0), ("ab_days", -1), ("ab_pre_days", -2)])
def test_demo_sizes_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        pipeline.DemoSizes(**{field: value})
