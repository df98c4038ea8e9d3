"""Dwell embeddings in a model directory: ``embeddings/embeddings.json`` plus one ``<matrix>.npz`` per matrix.

Layout (format ``dwellrank-dwell-embeddings`` version 1, also in ``docs/dwell_embeddings.md``)::

    embeddings.json   {"format": {"name": "dwellrank-dwell-embeddings", "version": 1},
                       "features": the emb_* columns served, in order,
                       "world": fingerprint of the members fitted on,
                       "config": EmbeddingConfig as a dict,
                       "matrices": [{"name", "rows", "cols", "rank", "n_rows", "n_cols", "nnz", "singular_values"}, ...]}
    <name>.npz        row_ids int64 (n_rows,), ascending, unique; rows float64 (n_rows, rank);
                      col_ids int64 (n_cols,), ascending, unique; cols float64 (n_cols, rank)

The archives are written with a fixed timestamp, so that the same fit writes
the same bytes (``np.savez`` stamps the time of writing).  Loading refuses,
naming the file, anything that disagrees: another format, features other
than this library's, arrays whose shapes or ids differ from the JSON, member
ids of the two matrices that differ, non-finite values, and vectors fitted on
another world's members than the model's profiles.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dwellrank_logs.errors import first_line
from ranking.features import IncompatibleModelError
from ranking.features.catalogue import EMBEDDING_COLUMNS
from ranking.features.embeddings import MATRICES, DwellEmbeddings, EmbeddingConfig, Factors

__all__ = ["EMBEDDING_DIR", "EMBEDDING_FORMAT", "embeddings_doc", "load_embeddings", "save_embeddings"]

#: The model directory's subdirectory of the dwell embeddings.
EMBEDDING_DIR = "embeddings"
EMBEDDING_FORMAT = {"name": "dwellrank-dwell-embeddings", "version": 1}
_ARRAYS = ("row_ids", "rows", "col_ids", "cols")
_STAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can carry


def embeddings_doc(emb: DwellEmbeddings) -> dict[str, Any]:
    """``embeddings.json`` of fitted embeddings."""
    return {
        "format": EMBEDDING_FORMAT,
        "features": list(EMBEDDING_COLUMNS),
        "world": emb.world,
        "config": emb.record.get("config"),
        "matrices": [
            {
                "name": name,
                "rows": MATRICES[name][0],
                "cols": MATRICES[name][1],
                "rank": f.rank,
                "n_rows": int(f.row_ids.size),
                "n_cols": int(f.col_ids.size),
                "nnz": f.nnz,
                "singular_values": [float(v) for v in f.singular_values],
            }
            for name, f in emb.factors.items()
        ],
    }


def save_embeddings(emb: DwellEmbeddings, directory: Path) -> None:
    """Write ``embeddings.json`` and ``<matrix>.npz`` into ``directory`` (created; inside a model's atomic write)."""
    directory.mkdir()
    for name, f in emb.factors.items():
        arrays = {"row_ids": f.row_ids.astype(np.int64), "rows": f.rows, "col_ids": f.col_ids.astype(np.int64), "cols": f.cols}
        with zipfile.ZipFile(directory / f"{name}.npz", "w", zipfile.ZIP_STORED) as z:
            for key, a in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(a, dtype=a.dtype), allow_pickle=False)
                z.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=_STAMP), buf.getvalue())
    (directory / "embeddings.json").write_text(json.dumps(embeddings_doc(emb), indent=1))


def _factors(path: Path, m: dict[str, Any]) -> Factors:
    """One matrix's arrays, checked against its ``embeddings.json`` entry."""
    arrays = path / f"{m['name']}.npz"
    if not arrays.is_file():
        raise IncompatibleModelError(f"{arrays}: missing; embeddings.json lists matrix {m['name']!r}")
    try:
        with np.load(arrays, allow_pickle=False) as z:
            if set(z.files) != set(_ARRAYS):
                raise IncompatibleModelError(f"{arrays}: holds arrays {sorted(z.files)}, expected {', '.join(_ARRAYS)}")
            row_ids, rows, col_ids, cols = (z[k] for k in _ARRAYS)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise IncompatibleModelError(f"{arrays}: unreadable ({type(exc).__name__}: {first_line(exc)})") from None
    k, nr, nc = int(m["rank"]), int(m["n_rows"]), int(m["n_cols"])
    if rows.shape != (nr, k) or cols.shape != (nc, k) or row_ids.shape != (nr,) or col_ids.shape != (nc,):
        raise IncompatibleModelError(
            f"{arrays}: rows {rows.shape}, cols {cols.shape}, embeddings.json says {nr} x {k} and {nc} x {k} (rank {k})"
        )
    for what, ids in (("row_ids", row_ids), ("col_ids", col_ids)):
        if not np.issubdtype(ids.dtype, np.integer) or (ids.size > 1 and not (np.diff(ids) > 0).all()):
            raise IncompatibleModelError(f"{arrays}: {what} must be unique integers in ascending order")
    if not (np.isfinite(rows).all() and np.isfinite(cols).all()):
        raise IncompatibleModelError(f"{arrays}: vectors hold NaN or infinite values")
    s = np.asarray(m["singular_values"], dtype=np.float64)
    return Factors(row_ids.astype(np.int64), rows.astype(np.float64), col_ids.astype(np.int64), cols.astype(np.float64), s, int(m["nnz"]))


def load_embeddings(model_dir: Path, record: dict[str, Any], world: str | None) -> DwellEmbeddings:
    """The dwell embeddings of a model directory, refused unless they are this library's and fitted on ``world``.

    Parameters
    ----------
    model_dir : Path
    record : dict
        ``metadata.json``'s ``embeddings`` entry.
    world : str or None
        Fingerprint of the model's member profiles (None: not checked).

    Raises
    ------
    IncompatibleModelError
        One line naming the file: see the module docstring.
    """
    path = model_dir / EMBEDDING_DIR
    meta = path / "embeddings.json"
    if not meta.is_file():
        raise IncompatibleModelError(f"{meta}: missing; metadata.json records dwell embeddings (retrain the model)")
    try:
        doc = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IncompatibleModelError(f"{meta}: not valid JSON ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(doc, dict) or doc.get("format") != EMBEDDING_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise IncompatibleModelError(f"{meta}: format {got!r}, this library reads {EMBEDDING_FORMAT}")
    if doc.get("features") != list(EMBEDDING_COLUMNS):
        raise IncompatibleModelError(
            f"{meta}: serves features {doc.get('features')!r}, this library's dwell embeddings are {list(EMBEDDING_COLUMNS)}; retrain the model"
        )
    if world is not None and doc.get("world") != world:
        raise IncompatibleModelError(
            f"{meta}: vectors fitted on the members of world {doc.get('world')!r}, the model's profiles are of world {world!r}; "
            "refit the embeddings on the served members' logs (ranking.ranker.with_dwell_embeddings)"
        )
    try:
        entries = {str(m["name"]): m for m in doc["matrices"]}
        if set(entries) != set(MATRICES):
            raise IncompatibleModelError(f"{meta}: matrices {sorted(entries)}, this library serves {sorted(MATRICES)}")
        factors = {name: _factors(path, entries[name]) for name in MATRICES}
        config = EmbeddingConfig(**doc["config"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, IncompatibleModelError):
            raise
        raise IncompatibleModelError(f"{meta}: malformed ({type(exc).__name__}: {first_line(exc)})") from None
    ma, mp = factors["member_author"], factors["member_topic"]
    if not np.array_equal(ma.row_ids, mp.row_ids):
        raise IncompatibleModelError(f"{path / 'member_topic.npz'}: member ids differ from member_author.npz's")
    return DwellEmbeddings(factors, {**record, "config": asdict(config), "world": doc.get("world")})
