"""The trained model and its directory: predictions, the value score, save and load.

A model directory holds::

    metadata.json      schema + feature-set name/version/columns, T_skip, seed, data sizes
    weights.json       value-function weights (edit, or pass others to FeedRanker)
    heads/<h>.trees.txt, heads/<h>.lr.json          LightGBM trees, LR coefficients
    regressors/<t>_<a>.json (+ .trees.txt)          E[target | action]; regressors/dwell.*: E[dwell_s]
    profiles.parquet   member profile snapshot (member-side features at serving time)
    report.json, report.png                          held-out metrics, calibration and ROC
    manifest.json      every file above with its size and sha256 (dwellrank_logs.manifest), written last

:func:`load_model` checks the manifest before LightGBM reads any file, and
refuses a directory written for another feature-set version, naming what
differs.  :func:`ranking.train.train_ranker` builds the
model.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import lightgbm as lgb
import numpy as np
import polars as pl

from dwellrank_logs.errors import first_line
from dwellrank_logs.io import atomic_dir, write_json, write_parquet
from dwellrank_logs.manifest import ManifestError, has_manifest, verify_manifest, write_manifest
from dwellrank_logs.paths import os_reason
from dwellrank_logs.schema import ACTIONS
from ranking.features import FEATURE_SETS, FeatureSet, IncompatibleModelError
from ranking.forest import CompiledForest, compile_forest, exp_exact
from ranking.heads import GBDTLRHead
from ranking.regressors import ActionRegressor
from ranking.report import plot_report
from ranking.value import ValueWeights, load_weights, needed_predictions, value_function

__all__ = ["HEADS", "MODEL_FORMAT", "MODEL_KIND", "REGRESSORS", "RankerModel", "check_trees_file", "load_model"]

#: The binary heads, in order (``long_dwell``: dwell_s > T_long, an optional value term).
HEADS: tuple[str, ...] = (*ACTIONS, "skip", "long_dwell")
#: The regressions: E[downstream | a], E[upstream | a] per action, and E[dwell_s] (optional value term).
REGRESSORS: tuple[str, ...] = (*(f"{t}_{a}" for t in ("down", "up") for a in ACTIONS), "dwell")
#: Version of the model-directory layout.
MODEL_FORMAT = 1
#: The kind recorded in the directory's manifest.json (a forecast model directory has another).
MODEL_KIND = "dwellrank.ranking.model"
#: The compiled forest is single-threaded numpy.  Measured with bench/rank.py's model (13
#: boosters, 230 trees) on 2 cores, it is faster than LightGBM's predict at every batch size:
#: 0.26 ms against 0.37 ms for 1 row, 2.5 against 4.1 ms for 1,000, 2.9 s against 5.9 s for 1M
#: rows at one LightGBM thread (2.4 against 2.7 s at two).  LightGBM scales with threads, so
#: with more than two it gets large batches (from _FOREST_MIN_ROWS_THREADED rows).
_FOREST_MAX_THREADS = 2
_FOREST_MIN_ROWS_THREADED = 2048


class RankerModel:
    """Trained heads, regressions, default weights and profile snapshot.

    Attributes
    ----------
    feature_set : FeatureSet
    t_skip_s : float, seconds
    heads : dict of str to GBDTLRHead
        ``click``, ``react``, ``comment``, ``share``, ``skip``, ``long_dwell``.
    regressors : dict of str to ActionRegressor
        ``down_<a>`` and ``up_<a>`` for each action ``a``, and ``dwell``.
    weights : ValueWeights
        Default weights (the rule in :mod:`ranking.value`).
    profiles : polars.DataFrame
        member_id and profile columns, from the training logs.
    metadata, report : dict
    """

    def __init__(
        self,
        feature_set: FeatureSet,
        t_skip_s: float,
        heads: dict[str, GBDTLRHead],
        regressors: dict[str, ActionRegressor],
        weights: ValueWeights,
        profiles: pl.DataFrame,
        metadata: dict[str, Any],
        report: dict[str, Any] | None = None,
    ) -> None:
        self.feature_set = feature_set
        self.t_skip_s = float(t_skip_s)
        self.heads = heads
        self.regressors = regressors
        self.weights = weights
        self.profiles = profiles
        self.metadata = metadata
        self.report = report or {}
        self._forests: dict[tuple[str, ...] | None, CompiledForest | None] = {}

    def predict(self, X: np.ndarray, num_threads: int = 1, only: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Every head's P and every regression's expectation.

        Parameters
        ----------
        X : ndarray, shape (n_rows, n_features)
            Columns in the order of ``feature_set.columns``.
        num_threads : int
            LightGBM prediction threads.
        only : tuple of str, optional
            Compute just these outputs (e.g. :func:`ranking.value.needed_predictions`).

        Returns
        -------
        dict name -> ndarray, shape (n_rows,)
            ``p_<head>`` for the six heads, ``down_<a>``, ``up_<a>`` and ``dwell`` (seconds).
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        heads, regs, boosters = self._outputs(only)
        # All trees in one vectorised pass (the compiled forest, see ranking.forest's invariant);
        # LightGBM's predict for unsupported trees and many-thread large batches.
        raw: dict[int, np.ndarray] = {}
        threads = num_threads if num_threads > 0 else (os.cpu_count() or 1)
        if threads <= _FOREST_MAX_THREADS or X.shape[0] < _FOREST_MIN_ROWS_THREADED:
            forest = self._forest(only, boosters)
            if forest is not None and X.ndim == 2 and X.shape[1] == forest.n_features:
                raw = {id(b): r for b, r in zip(boosters, forest.raw_scores(X), strict=True)}
        shared: dict[str, np.ndarray] = {}  # raw_transform(X), computed once for all heads
        out = {}
        for h, head in heads:
            kind = head.config.raw_transform
            if kind not in shared:
                shared[kind] = head.scaler_.f(X)
            out[f"p_{h}"] = head.predict_proba(X, num_threads, transformed=shared[kind], leaf_part=raw.get(id(head.folded_)))
        for name, reg in regs:
            r = raw.get(id(reg.booster_)) if reg.booster_ is not None else None
            out[name] = exp_exact(r) if r is not None else reg.predict(X, num_threads)
        return out

    def _outputs(self, only: tuple[str, ...] | None) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], list[Any]]:
        """The heads and regressions ``only`` asks for, and their boosters in the forest's order."""
        heads = [(h, head) for h, head in self.heads.items() if only is None or f"p_{h}" in only]
        regs = [(n, reg) for n, reg in self.regressors.items() if only is None or n in only]
        # Both regression objectives (poisson, tweedie) predict exp(raw score).
        boosters = [head.folded_ for _, head in heads] + [reg.booster_ for _, reg in regs if reg.booster_ is not None]
        return heads, regs, boosters

    def _forest(self, only: tuple[str, ...] | None, boosters: list[Any]) -> CompiledForest | None:
        """The compiled forest of ``boosters``, cached by ``only`` (which decides the boosters)."""
        if only not in self._forests:
            self._forests[only] = compile_forest(boosters)
        return self._forests[only]

    def prepare(self, weights: ValueWeights | None = None) -> bool:
        """Compile the forest that :meth:`score` under ``weights`` uses, ahead of the first request.

        Compiling (and checking against LightGBM) takes tens of milliseconds,
        which would otherwise fall on the first scored request.  Returns
        whether the trees compiled (False: LightGBM's predict serves them).
        """
        only = needed_predictions(weights or self.weights)
        return self._forest(only, self._outputs(only)[2]) is not None

    def score(self, X: np.ndarray, weights: ValueWeights | None = None, num_threads: int = 1) -> np.ndarray:
        """Value-function score, shape (n_rows,); only the predictions the weights use are computed."""
        w = weights or self.weights
        return value_function(self.predict(X, num_threads, only=needed_predictions(w)), w)

    # ---------------------------------------------------------------- persistence

    def save(self, directory: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write the model directory atomically (see the module docstring)."""
        with atomic_dir(directory, overwrite=overwrite) as tmp:
            (tmp / "heads").mkdir()
            (tmp / "regressors").mkdir()
            for name, head in self.heads.items():
                head.save(tmp / "heads", name)
            for name, reg in self.regressors.items():
                reg.save(tmp / "regressors", name)
            write_parquet(self.profiles, tmp / "profiles.parquet")
            write_json(tmp / "weights.json", self.weights.to_dict())
            write_json(tmp / "metadata.json", self.metadata)
            write_json(tmp / "report.json", self.report)
            if self.report:
                plot_report(self.report, tmp / "report.png")
            write_manifest(tmp, MODEL_KIND, MODEL_FORMAT)  # last: it lists every file above
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], verify: bool = True) -> RankerModel:
        """Alias of :func:`load_model`."""
        return load_model(directory, verify=verify)


def load_model(directory: str | os.PathLike[str], verify: bool = True) -> RankerModel:
    """Read a model directory: its manifest first, then its format and feature-set version, then the files.

    Parameters
    ----------
    directory : path-like
    verify : bool
        Check every file against ``manifest.json`` (sizes and sha256) before
        LightGBM or anything else reads one.  ``False`` reads a directory
        written before manifests existed, to save it again with one.

    Raises
    ------
    IncompatibleModelError
        Not a model directory, no manifest, a file missing, truncated, changed
        or unexpected, unreadable, or the feature set recorded differs from
        this library's definition of that set: one line naming the file.
    """
    d = Path(directory)
    meta_path = d / "metadata.json"
    if not d.is_dir():
        raise IncompatibleModelError(f"{d}: not a model directory (train one with `dwellrank train`)")
    if not meta_path.exists() and not has_manifest(d):
        raise IncompatibleModelError(f"{d}: no metadata.json; not a model directory written by `dwellrank train`")
    if verify:
        try:
            verify_manifest(d, MODEL_KIND, MODEL_FORMAT, remedy=_RESAVE)
        except ManifestError as exc:
            raise IncompatibleModelError(str(exc)) from None
    meta = _read_metadata(meta_path)
    current = FEATURE_SETS[meta["feature_set"]["name"]]
    needed = [d / "heads" / f"{h}.{ext}" for h in HEADS for ext in ("trees.txt", "lr.json")]
    needed += [d / "regressors" / f"{r}.json" for r in REGRESSORS]
    needed += [d / "profiles.parquet", d / "weights.json"]
    missing = [str(p.relative_to(d)) for p in needed if not p.exists()]
    if missing:
        raise IncompatibleModelError(f"{d}: incomplete model directory, missing {', '.join(missing[:4])}")
    heads = {h: _load_part(GBDTLRHead.load, d / "heads", h, f"{h}.lr.json") for h in HEADS}
    regs = {r: _load_part(ActionRegressor.load, d / "regressors", r, f"{r}.json") for r in REGRESSORS}
    try:
        profiles = pl.read_parquet(d / "profiles.parquet")
        weights = load_weights(d / "weights.json")
        report_path = d / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        raise IncompatibleModelError(f"{d}: unreadable model file ({type(exc).__name__}: {first_line(exc)})") from None
    return RankerModel(current, float(meta["t_skip_s"]), heads, regs, weights, profiles, meta, report)


#: What to do with a model directory written before manifests existed.
_RESAVE = (
    "retrain it with `dwellrank train`, or re-save it with this version from Python: ranking.load_model(path, verify=False).save(new_path)"
)


def _read_metadata(meta_path: Path) -> dict[str, Any]:
    """metadata.json, its format and feature set checked against this library's."""
    try:
        meta = json.loads(meta_path.read_text())
        fs_doc = meta["feature_set"]
        name, version, columns = fs_doc["name"], int(fs_doc["version"]), tuple(fs_doc["columns"])
        float(meta["t_skip_s"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        what = f"no {exc} entry" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {first_line(exc)}"
        raise IncompatibleModelError(f"{meta_path}: unreadable model metadata ({what})") from None
    if meta.get("model_format") != MODEL_FORMAT:
        raise IncompatibleModelError(f"{meta_path}: model_format {meta.get('model_format')!r}, this library reads {MODEL_FORMAT}")
    if name not in FEATURE_SETS:
        raise IncompatibleModelError(f"{meta_path}: feature set '{name}' is unknown to this library ({', '.join(FEATURE_SETS)})")
    current = FEATURE_SETS[name]
    if version != current.version or columns != current.columns:
        diff = sorted(set(columns) ^ set(current.columns))
        raise IncompatibleModelError(
            f"{meta_path}: model was trained on feature set '{name}' v{version}, this library defines v{current.version}"
            + (f" (columns differ: {diff[:6]})" if diff else "")
            + "; retrain the model"
        )
    return cast(dict[str, Any], meta)


_Part = TypeVar("_Part")


def _load_part(load: Callable[[Path, str], _Part], folder: Path, name: str, doc_name: str) -> _Part:
    """One head or regression, each of its files checked before LightGBM parses it; errors name the file."""
    doc_path, trees_path = folder / doc_name, folder / f"{name}.trees.txt"
    if trees_path.exists():
        check_trees_file(trees_path)
    try:
        return load(folder, name)
    except lgb.basic.LightGBMError as exc:
        raise IncompatibleModelError(f"{trees_path}: not a readable LightGBM model ({first_line(exc)})") from None
    except OSError as exc:
        raise IncompatibleModelError(f"{exc.filename or doc_path}: unreadable ({os_reason(exc)})") from None
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        what = f"no {exc} entry" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {first_line(exc)}"
        raise IncompatibleModelError(f"{doc_path}: unreadable model file ({what})") from None


_TREE_SIZES = re.compile(rb"^tree_sizes=([0-9 ]*)$", re.MULTILINE)


def check_trees_file(path: Path) -> None:
    """Refuse a LightGBM model file whose tree blocks do not add up to its header's ``tree_sizes``.

    LightGBM parses the trees in parallel at the byte offsets ``tree_sizes``
    gives; a file cut short among them ends the process (``std::terminate``
    inside an OpenMP region, SIGABRT) instead of raising, and a file cut
    before the first tree loads as a model with no trees.  The manifest
    catches both first; this guards directories read with ``verify=False``.
    """
    text = path.read_bytes()
    sizes = _TREE_SIZES.search(text)
    first, end = text.find(b"\nTree=0\n"), text.find(b"\nend of trees")
    n = [int(x) for x in sizes.group(1).split()] if sizes else []
    if sizes is None or first < 0 or end < 0 or end - first != sum(n):
        found = (
            "no tree_sizes header" if sizes is None else ("no end-of-trees line" if end < 0 else "tree blocks that do not match tree_sizes")
        )
        raise IncompatibleModelError(f"{path}: truncated or damaged LightGBM model ({len(text):,} bytes, {found})")
