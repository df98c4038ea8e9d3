"""`forecast train / score / compare`: outputs, and bad input (exit != 0, nothing half-written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli import main

FAST = ["--epochs", "2", "--k-min", "7", "--k-max", "7", "--quiet"]


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def session_model(eng_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "session"
    res = _run("forecast", "train", "--logs", str(eng_logs), "--task", "session", "--out", str(out), *FAST)
    assert res.exit_code == 0, res.output
    return out


def test_train_writes_a_model_dir_with_plots(session_model: Path) -> None:
    names = {p.name for p in session_model.iterdir()}
    assert names == {"model.pt", "meta.json", "intents.json", "loss_curve.png", "intent_pca.png", "manifest.json"}
    meta = json.loads((session_model / "meta.json").read_text())
    assert meta["task"] == "session" and meta["seed"] == 0 and len(meta["history"]["val_loss"]) == 2
    assert meta["intents"]["k"] == 7 and 0.0 <= meta["test_metrics"]["auroc"] <= 1.0
    assert sum(meta["split_sizes"].values()) == meta["n_members"]
    assert (session_model / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_score_writes_probabilities_and_dynamic_intents(session_model: Path, eng_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    res = _run("forecast", "score", "--model", str(session_model), "--logs", str(eng_logs), "--out", str(out), "--quiet")
    assert res.exit_code == 0, res.output
    s = pl.read_parquet(out)
    assert s.columns[:4] == ["member_id", "p_decrease", "p_not_decrease", "predicted"]
    assert len([c for c in s.columns if c.startswith("intent_")]) == 32
    np.testing.assert_allclose((s["p_decrease"] + s["p_not_decrease"]).to_numpy(), 1.0, atol=1e-6)
    assert s["member_id"].is_unique().all()


def test_compare_prints_a_table_and_writes_json_and_png(eng_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    res = _run(
        "forecast",
        "compare",
        "--logs",
        str(eng_logs),
        "--task",
        "day",
        "--out",
        str(out),
        "--seeds",
        "2",
        "--models",
        "LR,LightGBM,DIGMN",
        "--epochs",
        "1",
        "--k-min",
        "7",
        "--k-max",
        "7",
    )
    assert res.exit_code == 0, res.output
    assert "macro_f1" in res.output and "DIGMN vs best baseline" in res.output
    rec = json.loads((out / "comparison.json").read_text())
    assert rec["seeds"] == [0, 1] and len(rec["runs"]) == 6 and set(rec["summary"]) == {"LR", "LightGBM", "DIGMN"}
    assert {"comparison.png", "intent_pca.png", "intents.json", "table.txt"} <= {p.name for p in out.iterdir()}


def _copy_logs(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("impressions.parquet", "updates.parquet", "truth"))
    return dst


def _without_table(d: Path) -> None:
    (d / "events.parquet").unlink()


def _without_column(d: Path) -> None:
    p = d / "sessions.parquet"
    pl.read_parquet(p).drop("duration_s").write_parquet(p)


def _no_sessions(d: Path) -> None:
    p = d / "sessions.parquet"
    pl.read_parquet(p).head(0).write_parquet(p)


def _few_members(d: Path) -> None:
    for t in ("members", "sessions", "events", "deliveries"):
        p = d / f"{t}.parquet"
        pl.read_parquet(p).filter(pl.col("member_id") < 12).write_parquet(p)


@pytest.mark.parametrize(
    ("breaker", "pattern"),
    [
        (_without_table, r"events\.parquet: no such file"),
        (_without_column, r"sessions table is missing column\(s\) 'duration_s'"),
        (_no_sessions, "no valid session"),
        (_few_members, "needs at least 20 members"),
    ],
)
def test_train_on_bad_logs_fails_cleanly(breaker, pattern: str, eng_logs: Path, tmp_path: Path) -> None:
    logs = _copy_logs(eng_logs, tmp_path / "logs")
    breaker(logs)
    out = tmp_path / "model"
    res = CliRunner().invoke(main, ["forecast", "train", "--logs", str(logs), "--task", "day", "--out", str(out), *FAST])
    assert res.exit_code == 2
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    import re

    assert re.search(pattern, res.output), res.output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]


def test_model_for_the_other_task_is_refused(session_model: Path, eng_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    res = CliRunner().invoke(
        main, ["forecast", "score", "--model", str(session_model), "--logs", str(eng_logs), "--out", str(out), "--task", "day"]
    )
    assert res.exit_code == 2 and "trained for the session-level task, not the day-level task" in res.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--model", "{tmp}"], "not a forecast model directory"),
        (["--model", "{model}", "--out", "{file}"], "exists (pass --overwrite"),
    ],
)
def test_score_bad_arguments(args, pattern, session_model: Path, eng_logs: Path, tmp_path: Path) -> None:
    existing = tmp_path / "old.parquet"
    existing.write_bytes(b"keep")
    (tmp_path / "not_a_model").mkdir()  # beside --out: an --out inside --model is refused first, for another reason
    sub = {"{tmp}": str(tmp_path / "not_a_model"), "{model}": str(session_model), "{file}": str(existing)}
    base = {"--model": str(session_model), "--out": str(tmp_path / "s.parquet")}
    opts = dict(zip(args[::2], [sub.get(a, a) for a in args[1::2]], strict=True))
    argv = ["forecast", "score", "--logs", str(eng_logs)] + [x for k, v in {**base, **opts}.items() for x in (k, v)]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 2 and pattern in res.output
    assert existing.read_bytes() == b"keep" and not (tmp_path / "s.parquet").exists()


def test_train_refuses_a_non_empty_out_before_working(eng_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = CliRunner().invoke(main, ["forecast", "train", "--logs", str(eng_logs), "--task", "day", "--out", str(out), *FAST])
    assert res.exit_code == 2 and "not empty" in res.output and (out / "keep.txt").exists()


def test_members_left_out_are_a_warning_and_refused_with_strict(session_model: Path, eng_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    res = CliRunner().invoke(
        main, ["forecast", "score", "--model", str(session_model), "--logs", str(eng_logs), "--out", str(out), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    n_members = pl.read_parquet(eng_logs / "members.parquet").height
    left_out = n_members - pl.read_parquet(out).height
    assert left_out > 0  # the fixture's world has members with too few sessions: the case is not vacuous
    warning = [ln for ln in res.output.splitlines() if ln.startswith("warning: ")]
    assert warning == [
        f"warning: {left_out:,} of {n_members:,} members of the members table are left out: they do not have at least "
        "min_history_sessions = 7 valid sessions in the 14-day history window from 2026-01-05"
    ], res.output
    # --strict: the same count as the one error line; the flag named as the user types it where the command has it.
    strict = CliRunner().invoke(
        main, ["forecast", "train", "--logs", str(eng_logs), "--task", "session", "--out", str(tmp_path / "m"), "--strict", *FAST]
    )
    assert strict.exit_code == 2 and strict.output.count("\n") == 1, strict.output
    assert strict.output.startswith(f"error: {left_out:,} of {n_members:,} members") and "--min-sessions = 7 valid" in strict.output
    assert not (tmp_path / "m").exists()
