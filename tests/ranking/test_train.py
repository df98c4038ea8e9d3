"""Training pipeline, model directory (round trip, version check) and the `train` / `rank` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli import main
from dwellrank_logs.manifest import write_manifest
from ranking import FEATURE_SETS, IncompatibleModelError, load_model, training_frame
from ranking.model import MODEL_FORMAT, MODEL_KIND
from simulate import write_simulation
from tests.ranking.ranking_worlds import T_SKIP_S, TINY, tiny_model, world


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("model") / "m"
    tiny_model("dwell").save(d)
    return d


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("logs") / "logs"
    write_simulation(world(*TINY), d)
    return d


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _key_candidates(n_sessions: int = 20) -> pl.DataFrame:
    """The last day's impressions of the tiny world as candidate rows (keys only)."""
    t = world(*TINY).tables
    return (
        t["impressions"]
        .join(t["sessions"].select("session_id", pl.col("start_ts").alias("request_ts"), "client"), on="session_id")
        .join(t["updates"].select("update_id", "author_id", "topic", "created_ts"), on="update_id")
        .filter(pl.col("session_id").is_in(t["sessions"].sort("start_ts").tail(n_sessions)["session_id"].implode()))
        .select(
            pl.col("session_id").alias("request_id"),
            "member_id",
            "update_id",
            "update_type",
            "author_id",
            "topic",
            "created_ts",
            "request_ts",
            "client",
        )
    )


def _feature_candidates() -> pl.DataFrame:
    """The same rows with their feature columns (batch features; position dropped)."""
    frame = training_frame(world(*TINY).tables, "dwell", T_SKIP_S)
    keys = _key_candidates().select("request_id", "update_id")
    return keys.join(frame, on=["request_id", "update_id"], how="left").select(
        "request_id", "member_id", "update_id", *[c for c in FEATURE_SETS["dwell"].columns if c != "position"]
    )


def test_model_dir_round_trip(model_dir):
    model = tiny_model("dwell")
    loaded = load_model(model_dir)
    X = _feature_candidates().with_columns(position=pl.lit(0.0)).select(FEATURE_SETS["dwell"].columns).to_numpy()
    a, b = model.predict(X), loaded.predict(X)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, err_msg=k)
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["feature_set"] == {"name": "dwell", "version": 2, "columns": list(FEATURE_SETS["dwell"].columns)}
    assert meta["t_skip_s"] == 2.5 and meta["seed"] == 0 and meta["data"]["n_train"] > 0
    assert loaded.weights == model.weights and loaded.weights.skip_penalty > 0
    assert (model_dir / "report.png").stat().st_size > 0
    assert set(json.loads((model_dir / "report.json").read_text())["heads"]) == {"click", "react", "comment", "share", "skip", "long_dwell"}


def _broken(model_dir: Path, tmp_path: Path, edit) -> Path:
    d = tmp_path / "broken"
    shutil.copytree(model_dir, d)
    edit(d)
    return d


def _set_meta(**over):
    def edit(d: Path) -> None:
        meta = json.loads((d / "metadata.json").read_text())
        for k, v in over.items():
            meta["feature_set"][k] = v
        (d / "metadata.json").write_text(json.dumps(meta))
        write_manifest(d, MODEL_KIND, MODEL_FORMAT)  # as another version would have saved it: past the manifest check

    return edit


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (_set_meta(version=0), "trained on feature set 'dwell' v0, this library defines v2; retrain"),
        (_set_meta(columns=["hour"]), "columns differ"),
        (_set_meta(name="fancy"), "feature set 'fancy' is unknown"),
        (lambda d: (d / "metadata.json").unlink(), r"metadata\.json: missing \(manifest\.json lists it"),
        (lambda d: [(d / n).unlink() for n in ("metadata.json", "manifest.json")], "no metadata.json"),
        (lambda d: (d / "heads" / "skip.trees.txt").unlink(), r"heads/skip\.trees\.txt: missing"),
    ],
)
def test_incompatible_model_dirs(model_dir, tmp_path, edit, pattern):
    with pytest.raises(IncompatibleModelError, match=pattern):
        load_model(_broken(model_dir, tmp_path, edit))


def test_cli_train_then_rank_with_history_from_logs(logs_dir, tmp_path):
    out = tmp_path / "model"
    # No --t-skip: estimated from the logs by ranking.tskip; reference: the simulator's true T_skip.
    res = _run("train", "--logs", logs_dir, "--out", out, "--holdout-days", "2", "--no-baselines", "--seed", "4")
    assert res.exit_code == 0, res.output
    assert "seed 4" in res.output and "P(skip" in res.output and "estimated" in res.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["feature_set"]["name"] == "dwell" and meta["seed"] == 4
    assert abs(meta["t_skip_s"] - T_SKIP_S) <= 0.25
    cand = tmp_path / "cand.parquet"
    _key_candidates().write_parquet(cand)
    ranked = tmp_path / "ranked.parquet"
    res = _run("rank", "--model", out, "--candidates", cand, "--out", ranked, "--logs", logs_dir, "--top-k", "3", "--quiet")
    assert res.exit_code == 0, res.output
    r = pl.read_parquet(ranked)
    assert {"request_id", "member_id", "update_id", "p_click", "p_skip", "down_share", "up_react", "score", "rank"} <= set(r.columns)
    assert r.group_by("request_id").len()["len"].max() <= 3 and r["rank"].min() == 1


def test_cli_rank_from_feature_columns_equals_rank_from_logs(model_dir, logs_dir, tmp_path):
    """Two ways to the same features (batch columns in the file vs history from --logs) give the same scores."""
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _feature_candidates().write_parquet(tmp_path / "feat.parquet")
    _key_candidates().write_parquet(tmp_path / "keys.parquet")
    assert _run("rank", "--model", model_dir, "--candidates", tmp_path / "feat.parquet", "--out", a, "--quiet").exit_code == 0
    assert (
        _run("rank", "--model", model_dir, "--candidates", tmp_path / "keys.parquet", "--out", b, "--logs", logs_dir, "--quiet").exit_code
        == 0
    )
    ra, rb = pl.read_parquet(a), pl.read_parquet(b)
    np.testing.assert_allclose(ra["score"].to_numpy(), rb["score"].to_numpy(), rtol=1e-12)
    assert ra["rank"].equals(rb["rank"])


def _bad_candidates(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / f"{kind}.parquet"
    feats = _feature_candidates()
    if kind == "empty_file":
        p.write_bytes(b"")
    elif kind == "no_rows":
        feats.head(0).write_parquet(p)
    elif kind == "missing_feature":
        feats.drop("u_not_skipped_rate").write_parquet(p)
    elif kind == "wrong_dtype":
        feats.with_columns(pl.col("age_h").cast(pl.String)).write_parquet(p)
    elif kind == "nan_feature":
        feats.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(float("nan")).otherwise(pl.col("hour")).alias("hour")).write_parquet(p)
    elif kind == "keys_wrong_dtype":
        _key_candidates().with_columns(pl.col("request_ts").cast(pl.String)).write_parquet(p)
    return p


@pytest.mark.parametrize(
    ("kind", "extra", "pattern"),
    [
        ("empty_file", [], "candidates file is empty"),
        ("no_rows", [], "candidates file has no rows"),
        ("missing_feature", [], "missing feature column\\(s\\) 'u_not_skipped_rate' needed by feature set 'dwell' v2"),
        ("wrong_dtype", [], "feature column 'age_h' must be numeric, got String"),
        ("nan_feature", [], "feature column 'hour' has 1 null/NaN/infinite value"),
        ("keys_wrong_dtype", ["--logs"], "candidate column 'request_ts' must be a Datetime type, got String"),
        ("no_rows", ["--top-k", "0"], "--top-k must be an integer >= 1, got 0"),
        ("missing_model", [], "not a model directory"),
        ("old_model", [], "trained on feature set 'dwell' v0"),
    ],
)
def test_cli_rank_bad_input_one_line_exit_2_no_output(model_dir, logs_dir, tmp_path, kind, extra, pattern):
    model = model_dir
    if kind == "missing_model":
        model = tmp_path / "nothing"
    if kind == "old_model":
        model = _broken(model_dir, tmp_path, _set_meta(version=0))
    cand = _bad_candidates(tmp_path, kind) if kind not in ("missing_model", "old_model") else _bad_candidates(tmp_path, "no_rows")
    extra = [str(logs_dir) if e == "--logs-dir" else e for e in extra]
    if extra == ["--logs"]:
        extra = ["--logs", str(logs_dir)]
    out = tmp_path / "out.parquet"
    res = CliRunner().invoke(main, ["rank", "--model", str(model), "--candidates", str(cand), "--out", str(out), *extra])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert not out.exists()


def test_cli_train_bad_input(logs_dir, tmp_path):
    res = CliRunner().invoke(main, ["train", "--logs", str(tmp_path / "none"), "--out", str(tmp_path / "m"), "--t-skip", "2.5"])
    assert res.exit_code == 2 and "not a directory of log tables" in res.output
    res = CliRunner().invoke(main, ["train", "--logs", str(logs_dir), "--out", str(tmp_path / "m"), "--t-skip", "-1"])
    assert res.exit_code == 2 and "--t-skip must be a finite number of seconds > 0, got -1.0" in res.output
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_training_report_compares_baselines_and_dwell_lift():
    """With baselines on, the report holds constant / LR-only / GBDT-only / GBDT+LR held-out metrics
    for every head, the P(skip) AUC with and without dwell features, and regression deviances."""
    from ranking import TrainConfig, train_ranker

    cfg = TrainConfig(feature_set="dwell", t_skip_s=T_SKIP_S, seed=0, holdout_days=2)
    report = train_ranker(world(*TINY), config=cfg).report
    for h, d in report["heads"].items():
        assert set(d["metrics"]) == {"constant", "lr_only", "gbdt_only", "gbdt_lr"}, h
        assert {"auc", "ne", "calibration", "ece"} <= set(d["metrics"]["gbdt_lr"])
        assert len(d["calibration_bins"]["mean_pred"]) == 10 and d["roc"]["fpr"][0] == 0.0
    lift = report["skip_dwell_lift"]
    assert lift["lift"] == pytest.approx(lift["auc_dwell"] - lift["auc_base"])
    assert report["regressors"]["down_share"]["n_train"] > 0 and "dwell" in report["regressors"]
    assert report["split"]["test_days"] == ["2026-01-09", "2026-01-10"]  # 6 days from 2026-01-05
