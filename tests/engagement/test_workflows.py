"""The forecast verbs as library calls: what they mine, write and refuse before any work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dwellrank_logs.errors import ConfigError, OutputError
from engagement import LdaConfig, compare_on_logs, mine_intents, train_on_logs

LDA = LdaConfig(k_min=7, k_max=7)


@pytest.mark.parametrize("lda_seed", [None, 3])
def test_compare_on_logs_mines_the_intents_from_lda_seed(eng_logs: Path, eng_data, tmp_path: Path, lda_seed: int | None) -> None:
    """Reference: :func:`mine_intents` on the same sessions with ``default_rng(lda_seed)``; the default seed is 0."""
    seen = []
    kwargs: dict[str, Any] = {} if lda_seed is None else {"lda_seed": lda_seed}
    result = compare_on_logs(
        eng_logs,
        tmp_path / "cmp",
        "session",
        seeds=[0],
        models=["LR"],
        lda_config=LDA,
        on_intents=lambda data, intents: seen.append((data.n_members, intents.k)),
        **kwargs,
    )
    want = mine_intents(eng_data.session_counts, np.random.default_rng(0 if lda_seed is None else lda_seed), LDA)
    assert json.loads((tmp_path / "cmp" / "intents.json").read_text()) == json.loads(json.dumps(want.to_dict()))
    assert seen == [(eng_data.n_members, 7)] and result["n_intents"] == 7
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["runs"][0]["model"] == "LR"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"models": ["XGBoost"]}, r"models must be among .*, got \['XGBoost'\]"),
        ({"task": "week"}, "task must be one of day, session, got 'week'"),
        ({"lda_seed": 1.5}, "lda_seed must be an integer or numpy Generator, got 1.5"),
    ],
)
def test_compare_on_logs_refuses_bad_arguments_before_reading_the_logs(tmp_path: Path, kwargs, pattern: str) -> None:
    args = {"task": "session", **kwargs}
    task = args.pop("task")
    with pytest.raises(ConfigError, match=pattern):
        compare_on_logs(tmp_path / "no-logs", tmp_path / "out", task, **args)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("verb", ["train", "compare"])
def test_out_equal_to_the_logs_is_refused_even_with_overwrite(verb: str, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "members.parquet").write_bytes(b"the user's logs")
    run = train_on_logs if verb == "train" else compare_on_logs
    with pytest.raises(OutputError, match=r"out .*logs: is the logs_dir input"):
        run(logs, logs, "session", overwrite=True)
    assert (logs / "members.parquet").read_bytes() == b"the user's logs"
