"""Reading a model directory back (:class:`ranking.model.RankerModel`): the manifest, the format, then the files.

Apart from :mod:`ranking.model` because it changes for another reason: what a
directory may hold and how a damaged one is refused, not how a model predicts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import lightgbm as lgb
import polars as pl

from dwellrank_logs.errors import first_line
from dwellrank_logs.manifest import MANIFEST_NAME, ManifestError, file_sha256, has_manifest, verify_manifest
from dwellrank_logs.paths import os_reason
from ranking.embeddings_io import load_embeddings
from ranking.features import IncompatibleModelError
from ranking.features.catalogue import MODEL_FEATURE_SETS
from ranking.glmix_pskip import load_pskip_glmix, profiles_fingerprint
from ranking.heads import GBDTLRHead
from ranking.model import HEADS, MODEL_FORMAT, MODEL_KIND, REGRESSORS, RankerModel
from ranking.regressors import ActionRegressor
from ranking.value import load_weights

__all__ = ["check_trees_file", "load_model"]


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
    current = MODEL_FEATURE_SETS[meta["feature_set"]["name"]]
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
    pskip = meta.get("pskip")
    glmix = load_pskip_glmix(d, pskip, current) if isinstance(pskip, dict) and pskip.get("model") == "glmix" else None
    emb = meta.get("embeddings")
    embeddings = load_embeddings(d, emb, profiles_fingerprint(profiles)) if isinstance(emb, dict) else None
    if current.embedding_columns and embeddings is None:
        raise IncompatibleModelError(
            f"{meta_path}: feature set '{current.name}' reads dwell embeddings, and no embeddings entry records them"
        )
    model = RankerModel(current, float(meta["t_skip_s"]), heads, regs, weights, profiles, meta, report, glmix, embeddings)
    if verify:  # the files were just checked against the manifest: its hash names their content
        model.fingerprint_ = file_sha256(d / MANIFEST_NAME)
    return model


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
    if name not in MODEL_FEATURE_SETS:
        raise IncompatibleModelError(f"{meta_path}: feature set '{name}' is unknown to this library ({', '.join(MODEL_FEATURE_SETS)})")
    current = MODEL_FEATURE_SETS[name]
    if version != current.version or columns != current.columns:
        diff = sorted(set(columns) ^ set(current.columns))
        raise IncompatibleModelError(
            f"{meta_path}: model was trained on feature set '{name}' v{version}, this library defines v{current.version}"
            + (f" (columns differ: {diff[:6]})" if diff else "")
            + "; retrain the model"
        )
    # A record of how the heads were weighted (ranking.weighting): scoring does not depend on it, so a weighting
    # this library does not know is read as it is; only a record that is not one is refused.
    ps = meta.get("pskip")
    if ps is not None and not (isinstance(ps, dict) and ps.get("model") == "glmix"):
        raise IncompatibleModelError(f"{meta_path}: pskip must be an object with model 'glmix', got {ps!r}")
    em = meta.get("embeddings")
    if em is not None and not (isinstance(em, dict) and em.get("model") == "dwell_embeddings"):
        raise IncompatibleModelError(f"{meta_path}: embeddings must be an object with model 'dwell_embeddings', got {em!r}")
    if em is not None and not current.embedding_columns:
        raise IncompatibleModelError(f"{meta_path}: records dwell embeddings, but feature set '{name}' has no embedding columns")
    dw = meta.get("dwell_weighting")
    if dw is not None and not (isinstance(dw, dict) and isinstance(dw.get("click_weighting"), str)):
        raise IncompatibleModelError(f"{meta_path}: dwell_weighting must be an object with a click_weighting name, got {dw!r}")
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
