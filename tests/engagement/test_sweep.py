"""``dwellrank forecast sweep`` and :func:`engagement.sweep.sensitivity_sweep` on a tiny world (120 members x 10 days, seed 0).

References: Table 5 of the paper for the hidden units per L; :func:`engagement.experiment.compare`'s DIGMN
for the default point (the sweep draws replicate ``s`` as ``compare`` does).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from dwellrank_logs.errors import ConfigError
from engagement import DIGMN, DigmnConfig, ForecastTrainConfig, Intents, WindowConfig, build_dataset, compare, read_logs
from engagement.sweep import SweepConfig, _shifted_window, hidden_for_layers
from simulate import WorldConfig, simulate, write_simulation

WINDOW = WindowConfig(history_days=5, future_days=5, min_history_sessions=2)
FIT = ForecastTrainConfig(max_epochs=1)


@pytest.fixture(scope="module")
def tiny_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "logs"
    write_simulation(simulate(WorldConfig(n_members=120, n_days=10), seed=0), out)
    return out


def test_sweep_writes_json_and_png_and_refuses_to_overwrite(tiny_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = ["forecast", "sweep", "--logs", str(tiny_logs), "--out", str(out), "--task", "session"]
    args += ["--history-days", "5", "--future-days", "5", "--min-sessions", "2", "--k-min", "2", "--k-max", "2"]
    args += ["--layers", "3", "--bases", "none", "--betas", "none", "--history", "3,5", "--seeds", "1", "--epochs", "1", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    result = json.loads((out / "sweep.json").read_text())
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "intents.json").is_file()
    assert result["metric"] == "auroc" and result["seeds"] == [0]
    assert result["defaults"] == {"layers": 3, "n_bases": 4, "beta": 0.01, "history_days": 5}
    panels = result["parameters"]
    assert list(panels) == ["layers", "history_days"]  # d and beta left out
    assert [p["value"] for p in panels["history_days"]["points"]] == [3, 5]
    for panel in panels.values():
        for p in panel["points"]:
            assert [r["seed"] for r in p["runs"]] == [0]
            vals = [r["val"]["auroc"] for r in p["runs"]]
            assert p["val"]["mean"] == pytest.approx(np.mean(vals)) and p["val"]["std"] == pytest.approx(np.std(vals))
            assert 0.0 <= p["test"]["mean"] <= 1.0
        best = max(panel["points"], key=lambda p: p["val"]["mean"])
        assert panel["best_by_validation"] == best["value"] and panel["test_at_best"] == best["test"]
    # The default point (L = 3, history 5) is one fit shared by the panels.
    assert panels["layers"]["points"][0]["runs"] == panels["history_days"]["points"][1]["runs"]
    # The default point is compare's DIGMN on the same replicate (same split, same stream), with the mined intents.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = build_dataset(read_logs(tiny_logs), WINDOW)
    intents = Intents.from_dict(json.loads((out / "intents.json").read_text()))
    ref = compare(data, intents, "session", seeds=[0], models=["DIGMN"], train_config=FIT)
    assert panels["layers"]["points"][0]["runs"][0]["test"]["auroc"] == ref["runs"][0]["auroc"]
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "--overwrite" in again.output and len(again.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("layers", "hidden"), [(1, ()), (2, (64,)), (3, (64, 32)), (4, (64, 32, 32)), (5, (64, 32, 32, 32))])
def test_hidden_units_per_layer_count_are_table_5s(layers: int, hidden: tuple[int, ...]) -> None:
    assert hidden_for_layers(layers) == hidden
    # L FC-D layers: the predictor's layers after the linear mapping (sections 5.3.1 and 6.1.4).
    net = DIGMN(10, 6, 4, 5, 2, torch.eye(10)[:3], DigmnConfig(hidden=hidden))
    assert len(net.layers) == layers


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layers": (0, 1)}, r"layers must be a tuple of integers >= 1, got \(0, 1\)"),
        ({"n_bases": (2.5,)}, r"n_bases must be a tuple of integers >= 1"),
        ({"beta": (-1e-3,)}, r"beta must be a tuple of finite numbers >= 0, got \(-0.001,\)"),
        ({"beta": (float("nan"),)}, r"beta must be a tuple of finite numbers >= 0"),
        ({"history_days": (7, 7)}, r"history_days must not repeat a value, got \(7, 7\)"),
        ({"seeds": ()}, r"seeds must hold at least one seed"),
        ({"layers": (), "n_bases": (), "beta": (), "history_days": ()}, r"at least one of layers, n_bases, beta, history_days"),
        ({"layers": [1, 2]}, r"layers must be a tuple of integers"),
    ],
)
def test_bad_sweep_config(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SweepConfig(**kwargs)  # type: ignore[arg-type]


def test_longer_history_than_the_logs_hold_is_refused() -> None:
    import datetime as dt

    start = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
    assert _shifted_window(WindowConfig(), start, 7).start_date == "2026-01-12"  # the history still ends on day 14
    with pytest.raises(ConfigError, match=r"history_days values must be <= the window's history_days \(14\).*got 21"):
        _shifted_window(WindowConfig(), start, 21)


def test_bad_value_list_is_one_line(tiny_logs: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["forecast", "sweep", "--logs", str(tiny_logs), "--out", str(tmp_path / "o"), "--layers", "1,x"])
    assert res.exit_code == 2 and "--layers must be comma-separated int values (or 'none'), got '1,x'" in res.output
