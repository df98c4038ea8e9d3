"""GLMix model directories: ``glmix.json`` plus one ``<block>.npz`` of random effects per block.

Layout (format ``dwellrank-glmix`` version 1, also in ``docs/glmix.md``)::

    glmix.json     {"format": {"name": "dwellrank-glmix", "version": 1},
                    "config": GlmixConfig as a dict,
                    "world": fingerprint or null,
                    "blocks": [{"name", "entity", "features", "prior_var", "n_entities"}, ...],
                    "history": the fit's log}
    <name>.npz     ids  int64 (n_entities,), ascending, unique: entity ids (``entity`` column values)
                   coef float64 (n_entities, len(features)): row k is entity ids[k]'s coefficients

Loading checks that the arrays agree with the JSON and, given the caller's
feature lists, that the model's match them exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dwellrank_logs.io import atomic_dir
from ranking.features import IncompatibleModelError
from ranking.glmix import GLMIX_FORMAT, GlmixBlock, GlmixConfig, GlmixModel

__all__ = ["load_glmix", "save_glmix"]


def save_glmix(model: GlmixModel, directory: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write ``glmix.json`` and one ``<block>.npz`` per block into ``directory`` (atomically)."""
    doc = {
        "format": GLMIX_FORMAT,
        "config": {**asdict(model.config), "prior_var": [list(e) for e in model.config.prior_var]},
        "world": model.world_,
        "blocks": [
            {"name": b.name, "entity": b.entity, "features": list(b.features), "prior_var": b.prior_var, "n_entities": int(b.ids.size)}
            for b in model.blocks_.values()
        ],
        "history": model.history_,
    }
    with atomic_dir(directory, overwrite=overwrite) as tmp:
        for b in model.blocks_.values():
            np.savez(tmp / f"{b.name}.npz", ids=b.ids.astype(np.int64), coef=b.coef.astype(np.float64))
        (tmp / "glmix.json").write_text(json.dumps(doc, indent=1))
    return Path(directory)


def _block(path: Path, b: Mapping[str, Any]) -> GlmixBlock:
    """One block's arrays, checked against its ``glmix.json`` entry."""
    arrays = path / f"{b['name']}.npz"
    if not arrays.is_file():
        raise IncompatibleModelError(f"{path}: block {b['name']!r} has no {arrays.name}")
    with np.load(arrays) as z:
        if set(z.files) != {"ids", "coef"}:
            raise IncompatibleModelError(f"{arrays}: holds arrays {sorted(z.files)}, expected ids and coef")
        ids, coef = z["ids"], z["coef"]
    n, p = int(b["n_entities"]), len(b["features"])
    if ids.shape != (n,) or coef.shape != (n, p):
        raise IncompatibleModelError(f"{arrays}: ids {ids.shape} and coef {coef.shape}, glmix.json says {n} entities x {p} features")
    if not np.issubdtype(ids.dtype, np.integer) or (ids.size > 1 and not (np.diff(ids) > 0).all()):
        raise IncompatibleModelError(f"{arrays}: ids must be unique integers in ascending order")
    if not np.isfinite(coef).all():
        raise IncompatibleModelError(f"{arrays}: coef holds NaN or infinite values")
    return GlmixBlock(str(b["name"]), str(b["entity"]), tuple(b["features"]), float(b["prior_var"]), ids.astype(np.int64), coef)


def load_glmix(directory: str | os.PathLike[str], features: Mapping[str, Sequence[str]] | None = None) -> GlmixModel:
    """Read what :func:`save_glmix` wrote.

    Parameters
    ----------
    directory : path-like
    features : mapping of block name to feature names, optional
        What the caller will score with: refused unless the model has
        exactly these blocks with exactly these features, in this order.

    Raises
    ------
    IncompatibleModelError
        Not a GLMix directory, another format version, a malformed
        ``glmix.json``, a block file whose arrays disagree with it, or
        features that do not match ``features``.
    """
    path = Path(directory)
    meta = path / "glmix.json"
    if not meta.is_file():
        raise IncompatibleModelError(f"{path}: no glmix.json; not a GLMix model directory")
    try:
        doc = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IncompatibleModelError(f"{meta}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != GLMIX_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise IncompatibleModelError(f"{meta}: format {got!r}, this version reads {GLMIX_FORMAT}")
    try:
        cfg = doc["config"]
        model = GlmixModel(GlmixConfig(**{**cfg, "prior_var": tuple((str(n), float(v)) for n, v in cfg["prior_var"])}))
        model.world_, model.history_ = doc["world"], doc["history"]
        model.blocks_ = {str(b["name"]): _block(path, b) for b in doc["blocks"]}
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, IncompatibleModelError):
            raise
        raise IncompatibleModelError(f"{meta}: malformed ({type(exc).__name__}: {exc})") from None
    if features is not None:
        have = {n: list(b.features) for n, b in model.blocks_.items()}
        want = {n: list(f) for n, f in features.items()}
        if have != want:
            raise IncompatibleModelError(f"{path}: the model's blocks and features {have} differ from the expected {want}")
    return model
