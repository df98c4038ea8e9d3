"""Training, saving, loading and scoring one DIGMN forecaster (the ``forecast train/score`` verbs).

A model directory holds ``model.pt`` (the state dict), ``meta.json`` (kind,
task, schema version, windows, configs, scaler, intents, feature names, seed,
sizes, test metrics, loss history), ``intents.json``, two PNGs (loss curve,
intent PCA) and, written last, ``manifest.json`` (every file with its size and
sha256, :mod:`dwellrank_logs.manifest`).  :meth:`Forecaster.load` checks the
manifest before torch reads anything, then the kind, the task and the feature
layout, and says what differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from dwellrank_logs.errors import ConfigError, DwellrankError, first_line
from dwellrank_logs.io import atomic_dir, write_json
from dwellrank_logs.manifest import has_manifest, verify_manifest, write_manifest
from dwellrank_logs.schema import EVENT_TYPES, SCHEMA_VERSION
from engagement.config import DigmnConfig, ForecastTrainConfig, LdaConfig, WindowConfig, check_task
from engagement.dataset import EngagementData
from engagement.digmn import DIGMN, count_parameters
from engagement.experiment import build_digmn
from engagement.features import CONTEXT_NAMES
from engagement.inputs import Scaler, make_tensors, split_members
from engagement.intents import Intents, mine_intents, most_frequent_intent
from engagement.metrics import decide, evaluate, fit_class_offsets
from engagement.report import plot_intent_pca, plot_loss
from engagement.train import dynamic_intents, fit_torch, predict_proba, resolve_device, torch_seed

__all__ = ["MODEL_KIND", "Forecaster", "train_forecaster", "write_scores"]

MODEL_KIND = "dwellrank.engagement.digmn"
_FORMAT = 1


@dataclass
class Forecaster:
    """A trained DIGMN with everything needed to score new logs.

    Attributes
    ----------
    task : {"day", "session"}
    model : DIGMN
    scaler : Scaler
    intents : Intents
    window : WindowConfig
    digmn_config : DigmnConfig
    meta : dict
        Seed, sizes, metrics and history as written to ``meta.json``.
    """

    task: str
    model: DIGMN
    scaler: Scaler
    intents: Intents
    window: WindowConfig
    digmn_config: DigmnConfig
    meta: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def score(self, data: EngagementData, device: str = "cpu") -> pl.DataFrame:
        """Per-member class probabilities and the dynamic-intent vector.

        Returns
        -------
        polars.DataFrame
            ``member_id``, ``p_<class>`` per class (day: ``p_down``, ``p_same``,
            ``p_up``; session: ``p_decrease``, ``p_not_decrease``), ``predicted``
            (the label value), and ``intent_0..`` (the intent LSTM's last
            output, lstm_hidden values).  ``predicted`` applies the decision rule
            fitted on the validation members (``class_offsets`` in meta.json).
        """
        self._check_data(data)
        tensors = make_tensors(data, self.scaler)
        rows = np.arange(data.n_members)
        proba = predict_proba(self.model, tensors, rows, device=device)
        h_i = dynamic_intents(self.model, tensors, rows, resolve_device(device))
        names = ("p_down", "p_same", "p_up") if self.task == "day" else ("p_decrease", "p_not_decrease")
        values = np.array([-1, 0, 1]) if self.task == "day" else np.array([0, 1])
        cols: dict[str, Any] = {"member_id": data.member_id}
        cols.update({n: proba[:, j] for j, n in enumerate(names)})
        cols["predicted"] = values[decide(proba, self.meta.get("class_offsets"))]
        cols.update({f"intent_{j}": h_i[:, j].astype(np.float32) for j in range(h_i.shape[1])})
        return pl.DataFrame(cols)

    def _check_data(self, data: EngagementData) -> None:
        want = {"macro": self.meta["macro_names"], "delivery": self.meta["delivery_names"], "context": self.meta["context_names"]}
        got = {"macro": list(data.macro_names), "delivery": list(data.delivery_names), "context": list(data.context_names)}
        for k in want:
            if list(want[k]) != got[k]:
                raise DwellrankError(f"model was trained on {k} features {want[k]}, the data has {got[k]}")

    def save(
        self,
        out: str | os.PathLike[str],
        overwrite: bool = False,
        history: dict[str, Any] | None = None,
        pca: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Path:
        """Write the model directory atomically (nothing is left behind on failure)."""
        target = Path(out)
        with atomic_dir(target, overwrite=overwrite) as tmp:
            torch.save(self.model.state_dict(), tmp / "model.pt")
            write_json(tmp / "meta.json", self.meta)
            write_json(tmp / "intents.json", self.intents.to_dict())
            if history is not None:
                plot_loss(history, tmp / "loss_curve.png", title=f"DIGMN, {self.task}-level task")
            if pca is not None:
                plot_intent_pca(pca[0], pca[1], self.intents.labels(), tmp / "intent_pca.png")
            write_manifest(tmp, MODEL_KIND, _FORMAT)  # last: it lists every file above
        return target

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], task: str | None = None, verify: bool = True) -> Forecaster:
        """Read a model directory: its manifest first, then meta.json, then the torch state; ``task``, when given, must match.

        Parameters
        ----------
        model_dir : path-like
        task : {"day", "session"}, optional
        verify : bool
            Check every file against ``manifest.json`` (sizes and sha256) before
            torch or anything else reads one.  ``False`` reads a directory
            written before manifests existed, to save it again with one.

        Raises
        ------
        DwellrankError
            Not a model directory, no manifest, a file missing, truncated,
            changed or unexpected, another kind of model, another task, a
            different schema version, or an unreadable meta.json or model.pt:
            one line naming the file.
        """
        d = Path(model_dir)
        meta_path, state_path = d / "meta.json", d / "model.pt"
        if not d.is_dir() or not (has_manifest(d) or (meta_path.is_file() and state_path.is_file())):
            raise DwellrankError(f"{d}: not a forecast model directory (expected meta.json and model.pt)")
        if verify:
            verify_manifest(d, MODEL_KIND, _FORMAT, remedy=_RESAVE)
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise DwellrankError(f"{meta_path}: unreadable model metadata ({type(exc).__name__}: {first_line(exc)})") from None
        if not isinstance(meta, dict) or meta.get("kind") != MODEL_KIND:
            raise DwellrankError(f"{meta_path}: kind is {meta.get('kind') if isinstance(meta, dict) else meta!r}, expected {MODEL_KIND!r}")
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise DwellrankError(
                f"{meta_path}: schema_version {meta.get('schema_version')!r} differs from this library's {SCHEMA_VERSION!r}"
            )
        if task is not None and check_task(task) != meta.get("task"):
            raise DwellrankError(f"{meta_path}: model was trained for the {meta.get('task')}-level task, not the {task}-level task")
        try:
            fc = cls._from_meta(meta)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            what = f"no {exc} entry" if isinstance(exc, KeyError) else first_line(exc)
            raise DwellrankError(f"{meta_path}: unreadable model metadata ({what})") from None
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, OSError...: all mean unreadable
            raise DwellrankError(f"{state_path}: unreadable torch state ({type(exc).__name__}: {first_line(exc)})") from None
        try:
            fc.model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise DwellrankError(f"{state_path}: the torch state does not fit meta.json's model ({first_line(exc)})") from None
        return fc

    @classmethod
    def _from_meta(cls, meta: dict[str, Any]) -> Forecaster:
        """The forecaster meta.json describes, its network not yet loaded (KeyError, TypeError, ValueError on a bad entry)."""
        dc = DigmnConfig(**{**meta["digmn_config"], "hidden": tuple(meta["digmn_config"]["hidden"])})
        intents = Intents.from_dict(meta["intents"])
        model = DIGMN(
            len(EVENT_TYPES),
            len(meta["context_names"]),
            len(meta["macro_names"]),
            len(meta["delivery_names"]),
            3 if check_task(meta["task"]) == "day" else 2,
            torch.as_tensor(intents.profiles, dtype=torch.float32),
            dc,
        )
        return cls(meta["task"], model, Scaler.from_dict(meta["scaler"]), intents, WindowConfig(**meta["window"]), dc, meta)


#: What to do with a model directory written before manifests existed.
_RESAVE = (
    "retrain it with `dwellrank forecast train`, or re-save it with this version from Python: "
    "engagement.Forecaster.load(path, verify=False).save(new_path)"
)


def train_forecaster(
    data: EngagementData,
    task: str,
    seed: int | np.random.Generator = 0,
    train_config: ForecastTrainConfig | None = None,
    digmn_config: DigmnConfig | None = None,
    lda_config: LdaConfig | None = None,
    intents: Intents | None = None,
    progress: Callable[[int, float, float], None] | None = None,
) -> tuple[Forecaster, dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Mine intents (unless given), split 80/10/10, train DIGMN, evaluate on the test split.

    Intents are mined from the history-window sessions of every member (the
    LDA sees no labels and no future-window data).

    Returns
    -------
    forecaster : Forecaster
    history : dict
        Loss per epoch (for the loss curve).
    pca_input : (ndarray (N_test, lstm_hidden), ndarray (N_test,))
        Dynamic intents of the test members and their most frequent intent.
    """
    check_task(task)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer, np.random.Generator)):
        raise ConfigError(f"seed must be an integer or numpy Generator, got {seed!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(int(seed))
    tc = train_config if train_config is not None else ForecastTrainConfig()
    dc = digmn_config if digmn_config is not None else DigmnConfig()
    split = split_members(data.n_members, rng)
    lda_rng, model_rng = rng.spawn(2)
    if intents is None:
        intents = mine_intents(data.session_counts, lda_rng, lda_config)
    scaler = Scaler.fit(data.subset(split.train))
    tensors = make_tensors(data, scaler)
    tseed = torch_seed(model_rng)
    model = build_digmn(data, task, intents, dc)
    y = data.labels(task)
    hist = fit_torch(model, tensors, y, split, tc, model_rng, beta=dc.beta, progress=progress)
    offsets = fit_class_offsets(y[split.val], predict_proba(model, tensors, split.val, device=tc.device))
    proba = predict_proba(model, tensors, split.test, device=tc.device)
    metrics = evaluate(task, y[split.test], proba, offsets)
    model.cpu()
    h_i = dynamic_intents(model, tensors, split.test, torch.device("cpu"))
    meta = {
        "kind": MODEL_KIND,
        "format": _FORMAT,
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "seed": None if isinstance(seed, np.random.Generator) else int(seed),
        "torch_seed": tseed,
        "window": data.window.to_dict(),
        "window_start": data.start.isoformat(),
        "digmn_config": dc.to_dict(),
        "train_config": {k: getattr(tc, k) for k in tc.__dataclass_fields__},
        "n_members": data.n_members,
        "split_sizes": {"train": int(split.train.size), "val": int(split.val.size), "test": int(split.test.size)},
        "n_params": count_parameters(model),
        "test_metrics": metrics,
        "class_offsets": offsets.tolist(),
        "history": hist.to_dict(),
        "member_columns": list(data.member_columns),
        "macro_names": list(data.macro_names),
        "delivery_names": list(data.delivery_names),
        "context_names": list(CONTEXT_NAMES),
        "scaler": scaler.to_dict(),
        "intents": intents.to_dict(),
    }
    fc = Forecaster(task, model, scaler, intents, data.window, dc, meta)
    return fc, hist.to_dict(), (h_i, most_frequent_intent(data.nu[split.test], data.lengths[split.test], intents))


def write_scores(scores: pl.DataFrame, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write per-member scores as Parquet, atomically; refuse an existing file unless ``overwrite``.

    Raises
    ------
    OutputExistsError
        ``path`` exists (or is a directory) and ``overwrite`` is false.
    """
    from dwellrank_logs.errors import OutputExistsError
    from dwellrank_logs.io import write_parquet

    p = Path(path)
    if p.is_dir():
        raise OutputExistsError(f"{p}: is a directory, expected a Parquet file path")
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p}: file exists (pass --overwrite to replace it)")
    write_parquet(scores, p)
    return p
