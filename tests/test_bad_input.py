"""Bad input and faults on the verbs that write (issue 15): one error line, exit 2, nothing touched.

Every row of :data:`ROWS` runs one ``dwellrank`` command in-process and asserts: exit code 2; exactly one
``error:`` line, matching the row's pattern (the file, column or flag at fault); no traceback; nothing
created or left beside the output (no ``.tmp-``/``.lock-``/``.old-`` entries); inputs and earlier outputs
byte-identical (sha256 of every file before and after).  The positive controls come first: the same
commands on good input succeed, so that no row passes because the command could never work.

Faults: a read-only folder (by mode, skipped as root; and a read-only tmpfs where mounting is allowed), a
full disk (a small tmpfs where allowed; and ENOSPC injected at the rename, in polars' and pyarrow's Parquet
writers), SIGTERM/SIGINT mid-write (a ``dwellrank simulate`` subprocess) and two concurrent writers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import polars as pl
import pytest
from click.testing import CliRunner, Result

import cli
from dwellrank_logs import TABLE_NAMES
from dwellrank_logs.manifest import write_manifest
from dwellrank_pipeline.demo import DemoSizes, last_day_candidates
from ranking.features import IncompatibleModelError
from ranking.model import MODEL_FORMAT, MODEL_KIND
from ranking.model_io import check_trees_file, load_model
from ranking.train import TrainConfig, train_ranker
from simulate import WorldConfig, simulate, write_simulation
from tests.bad_input_cases import FAULTS, ROOT, Case, World, case_folder, temporaries, tree

pytestmark = pytest.mark.slow

T_SKIP = ["--t-skip", "2.5"]
TRAIN = ["--holdout-days", "1", "--no-baselines", *T_SKIP, "--quiet"]
SIM = ["--members", "60", "--days", "2", "--quiet"]
AB = ["--control", "random", "--treatment", "popularity", "--members", "400", "--days", "2", "--pre-days", "1", "--quiet"]
NO_SPACE = r"cannot write the output \(No space left on device\)"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """300 members x 4 days (seed 11), a model trained on them, and the last day's candidates."""
    base = tmp_path_factory.mktemp("bad_input")
    logs = write_simulation(simulate(WorldConfig(n_members=300, n_days=4), seed=11), base / "logs")
    cfg = TrainConfig(t_skip_s=2.5, holdout_days=1, baselines=False, skip_lift=False)
    train_ranker(logs, config=cfg).save(base / "model")
    last_day_candidates(logs).write_parquet(base / "candidates.parquet")
    return World(base=base, logs=logs, model=base / "model", candidates=base / "candidates.parquet")


@pytest.fixture
def case(tmp_path: Path, world: World) -> Iterator[Case]:
    yield from case_folder(tmp_path, world)


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli.main, args)


# --- positive controls: the commands of the rows below, on good input ------------------------------


def test_control_simulate(case: Case):
    out = case.path("logs")
    res = _invoke(["simulate", *SIM, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert all((out / f"{t}.parquet").is_file() for t in TABLE_NAMES)


def test_control_simulate_overwrite_and_symlink(case: Case):
    target = case.full_dir("target")
    link = case.link(target)
    res = _invoke(["simulate", *SIM, "--out", str(link), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and link.resolve() == target.resolve()  # the link is kept, written through
    assert (target / "impressions.parquet").is_file() and not (target / "earlier.txt").exists()
    assert temporaries(case.dir) == []
    empty = case.dir / "empty_target"
    empty.mkdir()
    link2 = case.link(empty, "link2")
    assert _invoke(["simulate", *SIM, "--out", str(link2)]).exit_code == 0  # an empty target needs no --overwrite
    assert link2.is_symlink() and (empty / "members.parquet").is_file()


def test_control_estimate_tskip_overwrite(case: Case, world: World):
    out = case.file("t.json", "an earlier estimate\n")
    args = ["estimate-tskip", "--impressions", str(world.impressions), "--by", "none", "--out", str(out), "--quiet"]
    assert _invoke(args).exit_code == 2 and out.read_text() == "an earlier estimate\n"
    res = _invoke([*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["t_skip_s"] > 0 and temporaries(case.dir) == []


def test_control_estimate_tskip(case: Case, world: World):
    out, png = case.path("t.json"), case.path("t.png")
    res = _invoke(["estimate-tskip", "--impressions", str(world.impressions), "--by", "none", "--out", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["t_skip_s"] > 0 and png.stat().st_size > 0


def test_control_estimate_tskip_warns_in_one_line(case: Case, world: World):
    res = _invoke(["estimate-tskip", "--impressions", str(world.nan_impressions()), "--by", "none", "--quiet"])
    assert res.exit_code == 0, res.output
    warning = [ln for ln in res.output.splitlines() if ln.startswith("warning: ")]
    assert len(warning) == 1 and "dropped 5 row(s)" in warning[0] and ".py:" not in res.output


def test_control_train(case: Case, world: World):
    out = case.path("model")
    res = _invoke(["train", "--logs", str(world.logs), "--out", str(out), *TRAIN])
    assert res.exit_code == 0, res.output
    assert (out / "metadata.json").is_file()


def test_control_rank(case: Case, world: World):
    out = case.path("ranked.parquet")
    args = ["rank", "--model", str(world.model), "--candidates", str(world.candidates), "--logs", str(world.logs), "--quiet"]
    assert _invoke([*args, "--out", str(out), "--top-k", "3"]).exit_code == 0
    first = out.read_bytes()
    res = _invoke([*args, "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert int(pl.read_parquet(out)["rank"].max()) > 3 and out.read_bytes() != first  # type: ignore[arg-type]


def test_control_simulate_ab(case: Case):
    out = case.path("ab")
    res = _invoke(["simulate-ab", *AB, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.json").is_file()


def test_control_ab_report(case: Case, world: World):
    logs = case.path("arm_logs")
    shutil.copytree(world.logs, logs)
    members = pl.read_parquet(logs / "members.parquet")
    arm = pl.when(pl.col("member_id") % 2 == 0).then(pl.lit("control")).otherwise(pl.lit("treatment"))
    members.with_columns(arm.alias("arm")).write_parquet(logs / "members.parquet")
    out = case.path("rep")
    res = _invoke(["ab-report", "--logs", str(logs), "--out", str(out), *T_SKIP, "--pre-days", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "report.json").read_text())["summary"]["members_in_experiment"] == 300


@pytest.fixture
def quick_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo with a small A/B test and warm-up run (the CLI sizes both from --members/--days, which T_skip needs large)."""

    def sizes(**given: int) -> DemoSizes:
        return DemoSizes(**{**given, "ab_members": 400, "ab_days": 2, "ab_pre_days": 1, "warmup_members": 300, "warmup_days": 5})

    monkeypatch.setattr(cli, "DemoSizes", sizes)


def test_control_demo(case: Case, quick_demo: None):
    earlier = case.full_dir("demo")
    res = _invoke(["demo", "--members", "800", "--days", "6", "--out", str(earlier), "--overwrite", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (earlier / "demo.json").is_file() and not (earlier / "earlier.txt").exists()
    assert temporaries(case.dir) == []


def test_control_model_dirs(case: Case, world: World):
    """The good model directories load where the rows' broken copies are refused; an older one re-saved is the same directory."""
    res = _invoke(["simulate-ab", "--control", str(world.model), "--treatment", "random", *AB[4:], "--out", str(case.path("ab"))])
    assert res.exit_code == 0, res.output
    model, logs = _forecast(world)
    res = _invoke(["forecast", "score", "--model", str(model), "--logs", str(logs), "--out", str(case.path("s.parquet")), "--quiet"])
    assert res.exit_code == 0, res.output
    assert pl.read_parquet(case.path("s.parquet")).height > 0
    # A directory written before manifests (this one without its manifest), re-saved as the message says: LightGBM
    # writes the same trees again, so every file, the manifest included, equals the trained model's.
    older = _broken_model(lambda d: (d / "manifest.json").unlink())(case)
    load_model(older, verify=False).save(case.path("resaved"))
    assert tree(case.path("resaved")) == {k.replace(str(world.model), str(case.path("resaved"))): v for k, v in tree(world.model).items()}
    ranked = {}
    for name, d in (("trained", world.model), ("resaved", case.path("resaved"))):
        args = ["rank", "--model", str(d), "--candidates", str(world.candidates), "--logs", str(world.logs), "--quiet"]
        assert _invoke([*args, "--out", str(case.path(f"{name}.parquet"))]).exit_code == 0
        ranked[name] = case.path(f"{name}.parquet").read_bytes()
    assert ranked["trained"] == ranked["resaved"]


# --- the rows: (id, command builder, pattern of the one error line, injected fault) ------------------


class Row(NamedTuple):
    id: str
    build: Callable[[Case], list[str]]
    pattern: str
    fault: str | None = None


def _sim(*extra: str, out: Callable[[Case], object] = lambda c: c.path("logs")) -> Callable[[Case], list[str]]:
    return lambda c: ["simulate", *SIM, *extra, "--out", str(out(c))]


def _tskip(
    imp: Callable[[Case], object] | None = None, *extra: str, out: Callable[[Case], object] | None = None
) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        args = ["estimate-tskip", "--impressions", str(imp(c) if imp else c.world.impressions), "--by", "none", *extra, "--quiet"]
        return [*args, "--out", str(out(c) if out else c.path("t.json"))]

    return build


def _train(
    logs: Callable[[Case], object] | str | None = None, *extra: str, out: Callable[[Case], object] | None = None
) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        d = c.world.logs if logs is None else (c.world.bad_logs(logs) if isinstance(logs, str) else logs(c))
        return ["train", "--logs", str(d), "--out", str(out(c) if out else c.path("model")), *TRAIN, *extra]

    return build


def _rank(
    *extra: str, cand: Callable[[Case], object] | None = None, out: Callable[[Case], object] | None = None, logs: str | None = None
) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        d = c.world.logs if logs is None else c.world.bad_logs(logs)
        args = ["rank", "--model", str(c.world.model), "--candidates", str(cand(c) if cand else c.world.candidates), "--logs", str(d)]
        return [*args, "--out", str(out(c) if out else c.path("ranked.parquet")), "--quiet", *extra]

    return build


def _ab(*extra: str, out: Callable[[Case], object] = lambda c: c.path("ab")) -> Callable[[Case], list[str]]:
    return lambda c: ["simulate-ab", *AB, *extra, "--out", str(out(c))]


def _abr(
    logs: Callable[[Case], object] | str | None = None, *extra: str, out: Callable[[Case], object] = lambda c: c.path("rep")
) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        d = c.world.logs if logs is None else (c.world.bad_logs(logs) if isinstance(logs, str) else logs(c))
        return ["ab-report", "--logs", str(d), "--out", str(out(c)), *T_SKIP, "--quiet", *extra]

    return build


def _demo(*extra: str, out: Callable[[Case], object] = lambda c: c.path("demo")) -> Callable[[Case], list[str]]:
    return lambda c: ["demo", "--members", "300", "--days", "4", "--quiet", *extra, "--out", str(out(c))]


def _earlier_rank(c: Case) -> Path:
    p = c.path("ranked.parquet")
    p.write_bytes(c.world.candidates.read_bytes())  # an earlier output
    return p


# --- model directories: broken copies of the module's ranking model and of one forecast model ---------

#: Forecast model and logs per module world (built on first use: 200 members x 28 days, seed 11, one epoch).
_FORECAST: dict[Path, tuple[Path, Path]] = {}
FORECAST_TRAIN = ["--task", "session", "--epochs", "1", "--k-min", "7", "--k-max", "7", "--quiet"]


def _forecast(world: World) -> tuple[Path, Path]:
    """The forecast model directory and its logs (the module world is too short for the 14 + 14-day windows)."""
    if world.base not in _FORECAST:
        base = world.base / "forecast"
        logs = write_simulation(simulate(WorldConfig(n_members=200, n_days=28), seed=11), base / "logs")
        res = _invoke(["forecast", "train", "--logs", str(logs), "--out", str(base / "model"), *FORECAST_TRAIN])
        assert res.exit_code == 0, res.output
        _FORECAST[world.base] = (base / "model", logs)
    return _FORECAST[world.base]


def _cut(name: str) -> Callable[[Path], None]:
    """Truncate a file to half its size (inside LightGBM's tree blocks for a trees file)."""
    return lambda d: os.truncate(d / name, (d / name).stat().st_size // 2)


def _flip(name: str) -> Callable[[Path], None]:
    """Change one byte in the middle of a file (same size)."""

    def edit(d: Path) -> None:
        b = bytearray((d / name).read_bytes())
        b[len(b) // 2] ^= 0x01
        (d / name).write_bytes(bytes(b))

    return edit


def _without_key(key: str) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        meta = json.loads((d / "meta.json").read_text())
        del meta[key]
        (d / "meta.json").write_text(json.dumps(meta))

    return edit


def _broken_model(edit: Callable[[Path], object], forecast: bool = False, resign: bool = False) -> Callable[[Case], Path]:
    """A copy of a good model directory, changed by ``edit``; ``resign``: its manifest rewritten after (past the manifest check)."""

    def build(c: Case) -> Path:
        d = c.path("broken_model")
        shutil.copytree(_forecast(c.world)[0] if forecast else c.world.model, d)
        edit(d)
        if resign:
            from engagement.forecaster import MODEL_KIND as FORECAST_KIND

            write_manifest(d, FORECAST_KIND if forecast else MODEL_KIND, 1 if forecast else MODEL_FORMAT)
        return d

    return build


def _rank_with(model: Callable[[Case], Path]) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        args = ["rank", "--model", str(model(c)), "--candidates", str(c.world.candidates), "--logs", str(c.world.logs)]
        return [*args, "--out", str(c.path("ranked.parquet")), "--quiet"]

    return build


def _ab_with(model: Callable[[Case], Path], arm: str = "--control") -> Callable[[Case], list[str]]:
    other = "--treatment" if arm == "--control" else "--control"
    return lambda c: ["simulate-ab", arm, str(model(c)), other, "random", *AB[4:], "--out", str(c.path("ab"))]


def _score_with(model: Callable[[Case], Path], *extra: str) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        d = model(c)
        return ["forecast", "score", "--model", str(d), "--logs", str(_forecast(c.world)[1]), "--out", str(c.path("s.parquet")), *extra]

    return build


ROWS: list[Row] = [
    # simulate: configuration, then the output directory.
    Row("sim-members", _sim("--members", "-5"), r"--members must be a positive integer, got -5"),
    Row("sim-days", _sim("--days", "0"), r"--days must be a positive integer, got 0"),
    Row("sim-t-skip", _sim("--t-skip", "-1"), r"--t-skip must be > 0"),
    Row("sim-members-not-int", _sim("--members", "many"), r"Invalid value for '--members'"),
    Row("sim-set-field", _sim("--set", "nope=1"), r"--set: WorldConfig has no field 'nope'"),
    Row("sim-set-value", _sim("--set", "phase_rate=abc"), r"--set phase_rate: expected float"),
    Row("sim-out-empty", _sim(out=lambda c: ""), r"--out '': empty path"),
    Row("sim-out-dot", _sim("--overwrite", out=lambda c: f"{c.dir}/."), r"--out .*/\.: names a directory itself"),
    Row("sim-out-not-empty", _sim(out=lambda c: c.full_dir()), r"--out .*full: directory is not empty \(pass --overwrite"),
    Row("sim-out-is-file", _sim("--overwrite", out=lambda c: c.file()), r"Invalid value for '--out': Directory '.*a_file' is a file"),
    Row("sim-out-below-file", _sim(out=lambda c: c.file() / "logs"), r"--out .*a_file/logs: cannot write output here \(.*a_file is a file"),
    Row("sim-out-link-not-empty", _sim(out=lambda c: c.link(c.full_dir())), r"--out .*link: directory is not empty \(pass --overwrite"),
    Row(
        "sim-out-link-to-file",
        _sim("--overwrite", out=lambda c: c.link(c.file())),
        r"Invalid value for '--out': Directory '.*link' is a file",
    ),
    Row(
        "sim-out-readonly-mode",
        _sim(out=lambda c: c.readonly_chmod() / "logs"),
        r"--out .*ro/logs: cannot write output here \(.*Permission denied\)",
    ),
    Row(
        "sim-out-readonly-fs",
        _sim(out=lambda c: c.readonly_mount() / "logs"),
        r"--out .*rofs/logs: cannot write output here \(.*Read-only file system\)",
    ),
    Row(
        "sim-out-mkdir-denied",
        _sim(out=lambda c: c.dir / "new" / "logs"),
        r"new/logs: cannot write output here \(Permission denied\)",
        "eacces_mkdir",
    ),
    Row("sim-disk-full", _sim(out=lambda c: c.full_fs("16k") / "logs"), r"smallfs/logs: " + NO_SPACE),
    Row("sim-enospc-arrow", _sim(), r"/logs(/\S+)?: " + NO_SPACE, "enospc_arrow"),
    Row("sim-enospc-polars", _sim(), r"/logs/\S+\.parquet: " + NO_SPACE, "enospc_polars"),
    Row("sim-enospc-rename", _sim(), r"/logs(/\S+)?: " + NO_SPACE, "enospc_rename"),
    # estimate-tskip: the impressions file, the options, the outputs.
    Row("tskip-missing", _tskip(lambda c: c.path("none.parquet")), r"none\.parquet: no such file"),
    Row("tskip-empty", _tskip(lambda c: c.file("e.parquet", "")), r"e\.parquet: file is empty"),
    Row("tskip-garbage", _tskip(lambda c: c.file("g.parquet", "x,y\n1,2\n")), r"g\.parquet: not a readable Parquet file"),
    Row("tskip-dwell-col", _tskip(None, "--dwell-col", "dwell"), r"impressions\.parquet: impressions table is missing column\(s\) 'dwell'"),
    Row(
        "tskip-dwell-type",
        _tskip(lambda c: c.world.bad_logs("dwell_as_string") / "impressions.parquet"),
        r"column 'dwell_s' must be a numeric type",
    ),
    Row("tskip-action-col", _tskip(None, "--action-cols", "clicked,liked"), r"missing column\(s\) 'liked'"),
    Row(
        "tskip-strict-nan",
        _tskip(lambda c: c.world.nan_impressions(), "--strict"),
        r"impressions_nan\.parquet: column 'dwell_s' has unusable values \(5 NaN\)",
    ),
    Row(
        "tskip-strict-null-dwell",
        _tskip(lambda c: c.world.bad_logs("null_dwell") / "impressions.parquet", "--strict"),
        r"column 'dwell_s' has unusable values",
    ),
    Row("tskip-bin-width", _tskip(None, "--bin-width", "-0.5"), r"--bin-width must be a finite number > 0, got -0.5"),
    Row("tskip-eps", _tskip(None, "--eps", "2"), r"--eps must be in \[0, 1\), got 2.0"),
    Row("tskip-min-rows", _tskip(None, "--min-rows", "100000"), r"fewer than --min-rows=100,000"),
    Row("tskip-engine", _tskip(None, "--engine", "duckdb"), r"Invalid value for '--engine'"),
    Row("tskip-out-is-input", _tskip(out=lambda c: c.world.impressions), r"--out .*impressions\.parquet: is the --impressions input"),
    Row(
        "tskip-out-link-to-input",
        _tskip(out=lambda c: c.link(c.world.impressions, "t.json")),
        r"--out .*t\.json: is the --impressions input",
    ),
    Row("tskip-out-is-dir", _tskip(out=lambda c: c.full_dir()), r"Invalid value for '--out': File '.*full' is a directory"),
    Row("tskip-out-exists", _tskip(out=lambda c: c.file("t.json", "{}\n")), r"--out .*t\.json: exists \(pass --overwrite to replace it\)"),
    Row(
        "tskip-plot-exists",
        lambda c: [*_tskip()(c), "--plot", str(c.file("t.png", "an earlier plot\n"))],
        r"--plot .*t\.png: exists \(pass --overwrite to replace it\)",
    ),
    Row("tskip-out-empty", _tskip(out=lambda c: ""), r"--out '': empty path"),
    Row("tskip-out-below-file", _tskip(out=lambda c: c.file() / "t.json"), r"--out .*: cannot write output here \(.*a_file is a file"),
    Row(
        "tskip-out-readonly-mode",
        _tskip(out=lambda c: c.readonly_chmod() / "t.json"),
        r"--out .*: cannot write output here \(.*Permission denied\)",
    ),
    Row(
        "tskip-out-readonly-fs",
        _tskip(out=lambda c: c.readonly_mount() / "t.json"),
        r"--out .*: cannot write output here \(.*Read-only file system\)",
    ),
    Row("tskip-plot-is-out", lambda c: [*_tskip()(c), "--plot", str(c.path("t.json"))], r"--plot .*t\.json: is the --out path too"),
    Row("tskip-enospc-rename", _tskip(), r"case/t\.json: " + NO_SPACE, "enospc_rename"),
    # train: the logs (nulls, keys, types, files), the options, the model directory.
    Row("train-logs-missing", _train(lambda c: c.path("nowhere")), r"nowhere: not a directory of log tables"),
    Row("train-null-clicked", _train("null_clicked"), r"impressions\.parquet: column 'clicked' has \d+ null value\(s\) in [\d,]+ rows"),
    Row(
        "train-null-session-id",
        _train("null_session_id_20pct"),
        r"impressions\.parquet: column 'session_id' has [\d,]+ null value\(s\) .*\(20\.0%\)",
    ),
    Row("train-null-dwell", _train("null_dwell"), r"impressions\.parquet: column 'dwell_s' has \d+ null value\(s\)"),
    Row("train-null-ts", _train("null_ts"), r"impressions\.parquet: column 'ts' has [\d,]+ null value\(s\)"),
    Row("train-null-update-id", _train("null_update_id"), r"impressions\.parquet: column 'update_id' has [\d,]+ null"),
    Row(
        "train-null-connections",
        _train("null_connections"),
        r"members\.parquet: column 'connections' has 60 null value\(s\) in 300 rows \(20\.0%\)",
    ),
    Row("train-null-start-ts", _train("null_start_ts"), r"sessions\.parquet: column 'start_ts' has [\d,]+ null"),
    Row("train-null-author", _train("null_author"), r"updates\.parquet: column 'author_id' has [\d,]+ null"),
    Row(
        "train-dup-members",
        _train("dup_members"),
        r"members\.parquet: column 'member_id' is the key of the members table, but 300 of 600 rows repeat a value \(e\.g\. member_id 0 appears 2 times\)",
    ),
    Row(
        "train-dup-updates",
        _train("dup_updates"),
        r"updates\.parquet: column 'update_id' is the key of the updates table, but 3 of [\d,]+ rows repeat",
    ),
    Row(
        "train-dup-sessions",
        _train("dup_sessions"),
        r"sessions\.parquet: column 'session_id' is the key of the sessions table, but 1 of [\d,]+ rows repeat",
    ),
    Row("train-clicked-type", _train("clicked_as_string"), r"impressions\.parquet: column 'clicked' must be Boolean"),
    Row("train-ts-type", _train("ts_as_int"), r"impressions\.parquet: column 'ts' must be a Datetime type"),
    Row("train-no-clicked", _train("no_clicked"), r"impressions\.parquet: impressions table is missing column\(s\) 'clicked'"),
    Row("train-connections-all-null", _train("connections_all_null"), r"members\.parquet: column 'connections' is entirely null"),
    Row("train-impressions-missing", _train("missing_impressions"), r"impressions\.parquet: no such file"),
    Row("train-members-empty", _train("empty_members"), r"members\.parquet: file is empty"),
    Row("train-sessions-garbage", _train("garbage_sessions"), r"sessions\.parquet: not a readable Parquet file"),
    Row(
        "train-tskip-too-few",
        lambda c: ["train", "--logs", str(c.world.logs), "--out", str(c.path("model")), "--holdout-days", "1", "--quiet"],
        r"impressions\.parquet: update_type '\w+' has \d+ impressions .* fewer than min_rows_per_group=1,000 .*; or pass --t-skip",
    ),
    Row("train-t-skip", _train(None, "--t-skip", "-1"), r"--t-skip must be a finite number of seconds > 0, got -1\.0"),
    Row("train-holdout-zero", _train(None, "--holdout-days", "0"), r"--holdout-days must be an integer >= 1, got 0"),
    Row("train-holdout-too-long", _train(None, "--holdout-days", "9"), r"training needs at least --holdout-days \+ 2 = 11"),
    Row("train-feature-set", _train(None, "--feature-set", "magic"), r"Invalid value for '--feature-set'"),
    Row("train-out-is-logs", _train(None, "--overwrite", out=lambda c: c.world.logs), r"--out .*logs: is the --logs input"),
    Row("train-out-inside-logs", _train(None, out=lambda c: c.world.logs / "model"), r"--out .*logs/model: lies inside the --logs input"),
    Row(
        "train-out-holds-logs",
        _train(lambda c: _nested_logs(c), "--overwrite", out=lambda c: c.path("run")),
        r"--out .*run: holds the --logs input",
    ),
    Row("train-out-not-empty", _train(None, out=lambda c: c.full_dir()), r"--out .*full: directory is not empty \(pass --overwrite"),
    Row("train-out-empty", _train(None, out=lambda c: ""), r"--out '': empty path"),
    Row("train-out-below-file", _train(None, out=lambda c: c.file() / "m"), r"--out .*: cannot write output here \(.*a_file is a file"),
    Row(
        "train-out-readonly-mode",
        _train(None, out=lambda c: c.readonly_chmod() / "m"),
        r"--out .*ro/m: cannot write output here \(.*Permission denied\)",
    ),
    Row(
        "train-out-readonly-fs",
        _train(None, out=lambda c: c.readonly_mount() / "m"),
        r"--out .*rofs/m: cannot write output here \(.*Read-only file system\)",
    ),
    Row(
        "train-disk-already-full",
        _train(None, out=lambda c: c.filled_fs() / "m"),
        r"--out .*smallfs/m: cannot write output here \(.*No space left on device\)",
    ),
    Row("train-enospc-rename", _train(), r"/model/\S+: " + NO_SPACE, "enospc_rename"),
    # rank: the inputs, the options, the output file.
    Row(
        "rank-out-is-candidates",
        _rank("--overwrite", out=lambda c: c.world.candidates),
        r"--out .*candidates\.parquet: is the --candidates input",
    ),
    Row(
        "rank-out-inside-model",
        _rank(out=lambda c: c.world.model / "ranked.parquet"),
        r"--out .*model/ranked\.parquet: lies inside the --model input",
    ),
    Row("rank-out-inside-logs", _rank(out=lambda c: c.world.logs / "ranked.parquet"), r"lies inside the --logs input"),
    Row("rank-out-exists", _rank(out=_earlier_rank), r"--out .*ranked\.parquet: exists \(pass --overwrite to replace it\)"),
    Row("rank-out-is-dir", _rank(out=lambda c: c.full_dir()), r"Invalid value for '--out': File '.*full' is a directory"),
    Row("rank-out-empty", _rank(out=lambda c: ""), r"--out '': empty path"),
    Row("rank-out-below-file", _rank(out=lambda c: c.file() / "r.parquet"), r"--out .*: cannot write output here \(.*a_file is a file"),
    Row(
        "rank-out-readonly-mode", _rank(out=lambda c: c.readonly_chmod() / "r.parquet"), r"cannot write output here \(.*Permission denied\)"
    ),
    Row(
        "rank-out-readonly-fs",
        _rank(out=lambda c: c.readonly_mount() / "r.parquet"),
        r"cannot write output here \(.*Read-only file system\)",
    ),
    Row("rank-disk-full", _rank(out=lambda c: c.full_fs("8k") / "r.parquet"), r"smallfs/r\.parquet: " + NO_SPACE),
    Row("rank-enospc-polars", _rank(), r"ranked\.parquet: " + NO_SPACE, "enospc_polars"),
    Row("rank-enospc-rename", _rank(), r"ranked\.parquet: " + NO_SPACE, "enospc_rename"),
    Row("rank-top-k", _rank("--top-k", "0"), r"--top-k must be an integer >= 1, got 0"),
    Row("rank-candidates-missing", _rank(cand=lambda c: c.path("none.parquet")), r"none\.parquet: no such candidates file"),
    Row(
        "rank-candidates-empty",
        _rank(cand=lambda c: c.world.bad_candidates("empty")),
        r"candidates_empty\.parquet: candidates file is empty",
    ),
    Row(
        "rank-candidates-garbage",
        _rank(cand=lambda c: c.world.bad_candidates("garbage")),
        r"candidates_garbage\.parquet: not a readable Parquet file",
    ),
    Row(
        "rank-candidates-no-rows",
        _rank(cand=lambda c: c.world.bad_candidates("no_rows")),
        r"candidates_no_rows\.parquet: candidates file has no rows",
    ),
    Row("rank-candidates-is-dir", _rank(cand=lambda c: c.full_dir("cands")), r"Invalid value for '--candidates'.*is a directory"),
    Row(
        "rank-candidates-ts-type",
        _rank(cand=lambda c: c.world.bad_candidates("ts_as_string")),
        r"candidate column 'request_ts' must be a Datetime type",
    ),
    Row("rank-logs-null-clicked", _rank(logs="null_clicked"), r"impressions\.parquet: column 'clicked' has \d+ null value\(s\)"),
    Row("rank-logs-dup-members", _rank(logs="dup_members"), r"members\.parquet: column 'member_id' is the key of the members table"),
    Row(
        "rank-model-missing",
        lambda c: ["rank", "--model", str(c.path("nomodel")), "--candidates", str(c.world.candidates), "--out", str(c.path("r.parquet"))],
        r"nomodel: not a model directory",
    ),
    Row("rank-weights-missing", _rank("--weights", "/nonexistent/w.json"), r"w\.json"),
    # simulate-ab: the options, the output directory.
    Row("ab-preset", lambda c: ["simulate-ab", "--control", "nope", "--treatment", "random", "--out", str(c.path("ab"))], r"--control"),
    Row("ab-split", _ab("--split", "1.5"), r"--split \(.*\) must be in the open interval \(0, 1\), got 1\.5"),
    Row("ab-alpha", _ab("--alpha", "0"), r"--alpha"),
    Row("ab-days", _ab("--days", "0"), r"--days must be a positive integer, got 0"),
    Row("ab-too-few", _ab("--members", "30"), r"members: 30 members .* too few for a meaningful test"),
    Row("ab-ope-temperature", _ab("--ope-temperature", "0"), r"--ope-temperature must be a number > 0"),
    Row("ab-out-not-empty", _ab(out=lambda c: c.full_dir()), r"--out .*full: directory is not empty \(pass --overwrite"),
    Row("ab-out-empty", _ab(out=lambda c: ""), r"--out '': empty path"),
    Row("ab-out-below-file", _ab(out=lambda c: c.file() / "ab"), r"--out .*: cannot write output here \(.*a_file is a file"),
    Row("ab-out-readonly-fs", _ab(out=lambda c: c.readonly_mount() / "ab"), r"cannot write output here \(.*Read-only file system\)"),
    Row(
        "ab-out-inside-model",
        lambda c: ["simulate-ab", "--control", str(c.world.model), "--treatment", "random", "--out", str(c.world.model / "ab"), "--quiet"],
        r"--out .*model/ab: lies inside the --control input",
    ),
    Row("ab-enospc-polars", _ab(), r"/ab/\S+\.parquet: " + NO_SPACE, "enospc_polars"),
    # ab-report: the logs (the world's members have no arm), the options, the output directory.
    Row("abr-arms-null", _abr(), r"members\.parquet: column 'arm' is null for all 300 members: nobody is in the experiment"),
    Row("abr-logs-missing", _abr(lambda c: c.path("nowhere")), r"nowhere: not a directory of log tables"),
    Row("abr-impressions-missing", _abr("missing_impressions"), r"impressions\.parquet: no such file"),
    Row("abr-null-clicked", _abr("null_clicked"), r"impressions\.parquet: column 'clicked' has \d+ null value\(s\)"),
    Row("abr-sessions-garbage", _abr("garbage_sessions"), r"sessions\.parquet: not a readable Parquet file"),
    Row("abr-pre-days", _abr(None, "--pre-days", "-1"), r"--pre-days must be a non-negative integer, got -1"),
    Row("abr-tskip-both", _abr(None, "--tskip-json", "none.json"), r"--t-skip and --tskip-json both given"),
    Row("abr-spark-master-polars", _abr(None, "--spark-master", "local[1]"), r"--spark-master: only with --engine spark"),
    Row("abr-out-not-empty", _abr(out=lambda c: c.full_dir()), r"--out .*full: directory is not empty \(pass --overwrite"),
    Row("abr-out-inside-logs", _abr(out=lambda c: c.world.logs / "rep"), r"--out .*logs/rep: lies inside the --logs input"),
    # demo: sizes and the output directory, refused before any stage runs.
    Row("demo-out-not-empty", _demo(out=lambda c: c.full_dir()), r"--out .*full: directory is not empty \(pass --overwrite"),
    Row("demo-out-link-not-empty", _demo(out=lambda c: c.link(c.full_dir())), r"--out .*link: directory is not empty \(pass --overwrite"),
    Row("demo-out-empty", _demo(out=lambda c: ""), r"--out '': empty path"),
    Row("demo-out-is-file", _demo("--overwrite", out=lambda c: c.file()), r"Invalid value for '--out': Directory '.*a_file' is a file"),
    Row("demo-out-below-file", _demo(out=lambda c: c.file() / "demo"), r"--out .*: cannot write output here \(.*a_file is a file"),
    Row("demo-out-readonly-mode", _demo(out=lambda c: c.readonly_chmod() / "demo"), r"cannot write output here \(.*Permission denied\)"),
    Row("demo-out-readonly-fs", _demo(out=lambda c: c.readonly_mount() / "demo"), r"cannot write output here \(.*Read-only file system\)"),
    Row("demo-members", _demo("--members", "0"), r"--members must be a positive integer, got 0"),
    Row("demo-days", _demo("--days", "-1"), r"--days must be a positive integer, got -1"),
    Row(
        "demo-world-too-small",
        _demo(),
        r"the demo's world of 300 members x 4 days is too small to estimate T_skip \(.*/demo/logs/impressions\.parquet: .*fewer than the 1,000",
    ),
    # model directories, checked against their manifest before LightGBM or torch reads a file.
    Row(
        "rank-model-trees-truncated",
        _rank_with(_broken_model(_cut("heads/click.trees.txt"))),
        r"broken_model/heads/click\.trees\.txt: [\d,]+ bytes where manifest\.json lists [\d,]+ \(truncated or changed since it was saved\)",
    ),
    Row(
        "rank-model-trees-changed",
        _rank_with(_broken_model(_flip("heads/skip.trees.txt"))),
        r"broken_model/heads/skip\.trees\.txt: changed since it was saved \(sha256 differs from manifest\.json\); restore",
    ),
    Row(
        "rank-model-file-missing",
        _rank_with(_broken_model(lambda d: (d / "regressors" / "dwell.json").unlink())),
        r"broken_model/regressors/dwell\.json: missing \(manifest\.json lists it",
    ),
    Row(
        "rank-model-extra-file",
        _rank_with(_broken_model(lambda d: (d / "heads" / "extra.trees.txt").write_text("tree\n"))),
        r"broken_model/heads/extra\.trees\.txt: not listed in manifest\.json .*; remove it",
    ),
    Row(
        "rank-model-no-manifest",
        _rank_with(_broken_model(lambda d: (d / "manifest.json").unlink())),
        r"broken_model: no manifest\.json; written by an older version of dwellrank .*retrain it with `dwellrank train`, or re-save it",
    ),
    Row(
        "rank-model-manifest-garbage",
        _rank_with(_broken_model(lambda d: (d / "manifest.json").write_text("{not json"))),
        r"broken_model/manifest\.json: unreadable manifest \(JSONDecodeError",
    ),
    Row(
        "rank-model-trees-truncated-resigned",
        _rank_with(_broken_model(_cut("heads/click.trees.txt"), resign=True)),
        r"broken_model/heads/click\.trees\.txt: truncated or damaged LightGBM model \([\d,]+ bytes, no end-of-trees line\)",
    ),
    Row(
        "rank-model-lr-json-resigned",
        _rank_with(_broken_model(lambda d: (d / "heads" / "share.lr.json").write_text("{}"), resign=True)),
        r"broken_model/heads/share\.lr\.json: unreadable model file \(no 'config' entry\)",
    ),
    Row(
        "rank-model-metadata-resigned",
        _rank_with(_broken_model(lambda d: (d / "metadata.json").write_text("[1, 2"), resign=True)),
        r"broken_model/metadata\.json: unreadable model metadata \(JSONDecodeError",
    ),
    Row(
        "rank-model-is-forecast",
        _rank_with(lambda c: _forecast(c.world)[0]),
        r"forecast/model/manifest\.json: the directory holds a 'dwellrank\.engagement\.digmn', expected a 'dwellrank\.ranking\.model'",
    ),
    Row(
        "ab-control-trees-truncated",
        _ab_with(_broken_model(_cut("heads/click.trees.txt"))),
        r"--control: model directory '.*broken_model' is incompatible or unreadable: .*"
        + r"broken_model/heads/click\.trees\.txt: [\d,]+ bytes where manifest\.json lists [\d,]+ \(truncated or changed since it was saved\)",
    ),
    Row(
        "ab-treatment-trees-truncated-resigned",
        _ab_with(_broken_model(_cut("heads/react.trees.txt"), resign=True), "--treatment"),
        r"--treatment: model directory .*/heads/react\.trees\.txt: truncated or damaged LightGBM model",
    ),
    Row(
        "ab-control-no-manifest",
        _ab_with(_broken_model(lambda d: (d / "manifest.json").unlink())),
        r"--control: model directory .*broken_model: no manifest\.json; written by an older version",
    ),
    Row(
        "ab-control-changed",
        _ab_with(_broken_model(_flip("weights.json"))),
        r"--control: .*broken_model/weights\.json: changed since it was saved",
    ),
    Row(
        "forecast-score-pt-corrupt",
        _score_with(_broken_model(_flip("model.pt"), forecast=True)),
        r"broken_model/model\.pt: changed since it was saved \(sha256 differs",
    ),
    Row(
        "forecast-score-pt-truncated",
        _score_with(_broken_model(_cut("model.pt"), forecast=True)),
        r"broken_model/model\.pt: [\d,]+ bytes where manifest\.json lists [\d,]+ \(truncated",
    ),
    Row(
        "forecast-score-pt-truncated-resigned",
        _score_with(_broken_model(_cut("model.pt"), forecast=True, resign=True)),
        r"broken_model/model\.pt: unreadable torch state \(RuntimeError: PytorchStreamReader failed",
    ),
    Row(
        "forecast-score-pt-not-torch-resigned",
        _score_with(_broken_model(lambda d: (d / "model.pt").write_bytes(b"not a torch file\n"), forecast=True, resign=True)),
        r"broken_model/model\.pt: unreadable torch state \(UnpicklingError",
    ),
    Row(
        "forecast-score-meta-no-scaler",
        _score_with(_broken_model(_without_key("scaler"), forecast=True)),
        r"broken_model/meta\.json: [\d,]+ bytes where manifest\.json lists",
    ),
    Row(
        "forecast-score-meta-no-scaler-resigned",
        _score_with(_broken_model(_without_key("scaler"), forecast=True, resign=True)),
        r"broken_model/meta\.json: unreadable model metadata \(no 'scaler' entry\)",
    ),
    Row(
        "forecast-score-meta-no-intents-resigned",
        _score_with(_broken_model(_without_key("intents"), forecast=True, resign=True)),
        r"broken_model/meta\.json: unreadable model metadata \(no 'intents' entry\)",
    ),
    Row(
        "forecast-score-meta-not-json-resigned",
        _score_with(_broken_model(lambda d: (d / "meta.json").write_text("{"), forecast=True, resign=True)),
        r"broken_model/meta\.json: unreadable model metadata \(JSONDecodeError",
    ),
    Row(
        "forecast-score-no-manifest",
        _score_with(_broken_model(lambda d: (d / "manifest.json").unlink(), forecast=True)),
        r"broken_model: no manifest\.json; .*retrain it with `dwellrank forecast train`, or re-save it",
    ),
    Row(
        "forecast-score-extra-file",
        _score_with(_broken_model(lambda d: (d / "model.pt.bak").write_bytes(b"x"), forecast=True)),
        r"broken_model/model\.pt\.bak: not listed in manifest\.json",
    ),
    Row(
        "forecast-score-wrong-task",
        _score_with(lambda c: _forecast(c.world)[0], "--task", "day"),
        r"forecast/model/meta\.json: model was trained for the session-level task, not the day-level task",
    ),
    Row(
        "forecast-score-is-ranking-model",
        _score_with(lambda c: c.world.model),
        r"model/manifest\.json: the directory holds a 'dwellrank\.ranking\.model', expected a 'dwellrank\.engagement\.digmn'",
    ),
]


def _ftrain(
    logs: Callable[[Case], object] | None = None, *extra: str, out: Callable[[Case], object] | None = None
) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        lg = logs(c) if logs else _forecast(c.world)[1]
        return ["forecast", "train", "--logs", str(lg), "--out", str(out(c) if out else c.path("fm")), *FORECAST_TRAIN, *extra]

    return build


def _fcompare(*extra: str, out: Callable[[Case], object] | None = None) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        args = ["forecast", "compare", "--logs", str(_forecast(c.world)[1]), "--task", "day", "--seeds", "1", "--epochs", "1"]
        return [*args, "--models", "LR", "--out", str(out(c) if out else c.path("cmp")), "--quiet", *extra]

    return build


def _fscore(*extra: str, out: Callable[[Case], object] | None = None) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        model, logs = _forecast(c.world)
        return [
            "forecast",
            "score",
            "--model",
            str(model),
            "--logs",
            str(logs),
            "--out",
            str(out(c) if out else c.path("s.parquet")),
            *extra,
        ]

    return build


def _forecast_logs_with(table: str, edit: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[Case], Path]:
    """A copy of the forecast logs with one table changed."""

    def build(c: Case) -> Path:
        d = c.path("flogs")
        shutil.copytree(_forecast(c.world)[1], d)
        path = d / f"{table}.parquet"
        edit(pl.read_parquet(path)).write_parquet(path)
        return d

    return build


FORECAST_ROWS: list[Row] = [
    Row("ftrain-logs-missing", _ftrain(lambda c: c.path("nope")), r"nope: not a directory of log tables"),
    Row("ftrain-logs-too-short", _ftrain(lambda c: c.world.logs), r"sessions\.start_ts covers days 0\.\.3 .*needs sessions up to day 27"),
    Row("ftrain-epochs", _ftrain(None, "--epochs", "0"), r"--epochs must be"),
    Row("ftrain-batch-size", _ftrain(None, "--batch-size", "0"), r"--batch-size must be"),
    Row("ftrain-history-days", _ftrain(None, "--history-days", "0"), r"--history-days must be"),
    Row("ftrain-min-sessions", _ftrain(None, "--min-sessions", "-1"), r"--min-sessions must be"),
    Row("ftrain-k-range", _ftrain(None, "--k-min", "9", "--k-max", "3"), r"--k-min.*--k-max"),
    Row("ftrain-device", _ftrain(None, "--device", "tpu"), r"^error: --device must be 'cpu', 'auto' or 'cuda\[:N\]', got 'tpu'"),
    Row("ftrain-task", _ftrain(None, "--task", "week"), r"Invalid value for '--task'"),
    Row("ftrain-spark-flag-on-polars", _ftrain(None, "--spark-master", "local[1]"), r"--spark-master: only with --engine spark"),
    Row("ftrain-spark-conf-form", _ftrain(None, "--engine", "spark", "--spark-conf", "foo"), r"--spark-conf takes KEY=VALUE, got 'foo'"),
    Row("ftrain-strict", _ftrain(None, "--strict"), r"members of the members table are left out: .*--min-sessions = 7"),
    Row("ftrain-out-not-empty", _ftrain(out=lambda c: c.full_dir()), r"--out .*full: directory is not empty \(pass --overwrite"),
    Row("ftrain-out-is-logs", _ftrain(None, "--overwrite", out=lambda c: _forecast(c.world)[1]), r"--out .*logs: is the --logs input"),
    Row("ftrain-out-below-file", _ftrain(out=lambda c: c.file() / "m"), r"--out .*a_file/m: cannot write output here"),
    Row(
        "ftrain-null-member-id",
        _ftrain(
            _forecast_logs_with(
                "sessions",
                lambda f: f.with_columns(member_id=pl.when(pl.col("session_id") % 5 == 0).then(None).otherwise(pl.col("member_id"))),
            )
        ),
        r"sessions\.parquet: column 'member_id' has [\d,]+ null",
    ),
    Row(
        "ftrain-unknown-event-type",
        _ftrain(_forecast_logs_with("events", lambda f: f.with_columns(event_type=pl.lit("teleport")))),
        r"events\.parquet: column 'event_type' .*'teleport'",
    ),
    Row(
        "ftrain-members-duplicated",
        _ftrain(_forecast_logs_with("members", lambda f: pl.concat([f, f]))),
        r"members\.parquet: .*member_id.*(repeat|duplicate)",
    ),
    Row("fcompare-models", _fcompare("--models", "LR,GPT"), r"^error: --models must be among LR, .*got \['GPT'\]"),
    Row("fcompare-seeds", _fcompare("--seeds", "0"), r"--seeds must be"),
    Row("fcompare-out-not-empty", _fcompare(out=lambda c: c.full_dir()), r"--out .*full: directory is not empty \(pass --overwrite"),
    Row("fscore-out-exists", _fscore(out=lambda c: c.file("s.parquet", "earlier scores\n")), r"s\.parquet: exists \(pass --overwrite"),
    Row("fscore-out-is-dir", _fscore("--overwrite", out=lambda c: c.full_dir()), r"full"),
    Row(
        "fscore-logs-missing",
        lambda c: [*_fscore()(c)[:4], "--logs", str(c.path("nope")), "--out", str(c.path("s.parquet"))],
        r"nope: not a directory of log tables",
    ),
]
ROWS += FORECAST_ROWS


def _nested_logs(c: Case) -> Path:
    """Logs inside the folder that --out names: replacing that folder would destroy them."""
    import shutil

    d = c.path("run") / "logs"
    shutil.copytree(c.world.logs, d)
    return d


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, case: Case, world: World, monkeypatch: pytest.MonkeyPatch):
    args = row.build(case)  # creates what the row needs (and skips where a fault cannot be made here)
    roots = (case.dir, world.base)
    before = tree(*roots)
    if row.fault is not None:
        FAULTS[row.fault](monkeypatch)
    res = _invoke(args)
    monkeypatch.undo()
    assert res.exit_code == 2, f"exit {res.exit_code}: {res.output}"
    assert "Traceback" not in res.output and (res.exception is None or isinstance(res.exception, SystemExit)), res.output
    errors = [ln for ln in res.output.splitlines() if re.match(r"(?i)error: ", ln)]
    assert len(errors) == 1, res.output
    assert re.search(row.pattern, errors[0]), errors[0]
    assert temporaries(*roots) == []
    assert tree(*roots) == before  # nothing created, nothing changed: inputs and earlier outputs byte-identical


def test_corpus_size():
    assert len(ROWS) >= 60 and len({r.id for r in ROWS}) == len(ROWS)


# --- faults that need another process: a signal mid-write, two writers at once -----------------------


def _dwellrank(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from cli import main; main()", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_write_removes_the_temporaries(tmp_path: Path, sig: signal.Signals):
    out = tmp_path / "logs"
    proc = _dwellrank("simulate", "--members", "300", "--days", "400", "--out", str(out), "--quiet")
    deadline = time.monotonic() + 120
    try:
        while not any(
            p.name.startswith(".logs.tmp-") and (p / "truth").is_dir() and any((p / "truth").iterdir()) for p in tmp_path.iterdir()
        ):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the simulation did not start writing"
            time.sleep(0.05)
        time.sleep(0.5)  # mid-write: the day loop streams tables into the temporary
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode in (128 + sig, 1), (proc.returncode, err)  # SIGINT: click's "Aborted!" (exit 1)
    assert "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []  # no partial output, no temporary, no lock file


def test_two_concurrent_writers_one_wins(tmp_path: Path):
    out = tmp_path / "logs"
    procs = {
        seed: _dwellrank("simulate", "--members", "150", "--days", "2", "--seed", str(seed), "--out", str(out), "--quiet")
        for seed in (1, 2)
    }
    done = {seed: (p.communicate(timeout=240), p.returncode) for seed, p in procs.items()}
    codes = sorted(rc for _, rc in done.values())
    assert codes == [0, 2], done
    winner = next(seed for seed, (_, rc) in done.items() if rc == 0)
    (_, loser_err), _ = next(v for v in done.values() if v[1] == 2)
    lines = [ln for ln in loser_err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and re.search(r"logs: (appeared while this run was writing|directory is not empty)", lines[0]), loser_err
    assert json.loads((out / "summary.json").read_text())["seed"] == winner  # the winner's output, intact
    for t in TABLE_NAMES:
        pl.read_parquet(out / f"{t}.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["logs"]


def test_truncated_trees_file_never_reaches_lightgbm(tmp_path: Path, world: World):
    """LightGBM (4.7) ends the process on a tree file cut inside its tree blocks; the load refuses it first, even unverified."""
    d = tmp_path / "model"
    shutil.copytree(world.model, d)
    trees = d / "heads" / "click.trees.txt"
    text = trees.read_bytes()
    check_trees_file(trees)  # the intact file passes
    cuts = {
        "header only": text.index(b"\nTree=0\n"),
        "inside the second tree": text.index(b"\nTree=1\n") + 40,
        "before the end-of-trees line": text.index(b"\nend of trees"),
    }
    for cut in cuts.values():
        trees.write_bytes(text[:cut])
        with pytest.raises(IncompatibleModelError, match=r"click\.trees\.txt: truncated or damaged LightGBM model"):
            check_trees_file(trees)  # where: see the key
    trees.write_bytes(text[: cuts["inside the second tree"]])
    # Reference: LightGBM itself on this file, in a process of its own (it aborts: -SIGABRT).
    raw = subprocess.run(
        [sys.executable, "-c", f"import lightgbm; lightgbm.Booster(model_file={str(trees)!r})"], capture_output=True, timeout=120
    )
    assert raw.returncode != 0
    code = f"from ranking.model_io import load_model; load_model({str(d)!r}, verify=False)"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "IncompatibleModelError" in res.stderr and "click.trees.txt: truncated" in res.stderr, res.stderr
    assert "[LightGBM] [Fatal]" not in res.stderr
