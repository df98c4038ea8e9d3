"""Manifests of saved directories (dwellrank_logs.manifest): what is listed, and every way a directory can differ.

Reference for sizes and digests: ``os.stat`` and ``hashlib.sha256`` over the whole file, computed here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from dwellrank_logs.manifest import MANIFEST_FORMAT, MANIFEST_NAME, ManifestError, file_sha256, verify_manifest, write_manifest

KIND = "test.kind"
REMEDY = "retrain it"


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A directory as a save leaves it: a few files, one in a sub-folder, a 3 MiB one (several hash chunks), then the manifest."""
    d = tmp_path / "model"
    (d / "heads").mkdir(parents=True)
    (d / "a.json").write_text('{"a": 1}\n')
    (d / "heads" / "h.trees.txt").write_bytes(bytes(range(256)) * 40)
    (d / "big.bin").write_bytes(os.urandom(3 * 2**20 + 5))
    (d / "empty.txt").write_bytes(b"")
    write_manifest(d, KIND, 3)
    return d


def test_manifest_lists_every_file_with_size_and_sha256(saved: Path):
    doc = json.loads((saved / MANIFEST_NAME).read_text())
    assert doc["manifest_format"] == MANIFEST_FORMAT and doc["kind"] == KIND and doc["format"] == 3
    want = {
        p.relative_to(saved).as_posix(): {"size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for p in saved.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    }
    assert doc["files"] == want and set(want) == {"a.json", "heads/h.trees.txt", "big.bin", "empty.txt"}
    assert verify_manifest(saved, KIND, 3, REMEDY) == want
    assert [p.name for p in saved.iterdir() if p.name.startswith(".")] == []  # written atomically: no temporary left


def test_file_sha256_matches_hashlib_on_the_empty_file(tmp_path: Path):
    p = tmp_path / "e"
    p.write_bytes(b"")
    assert file_sha256(p) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of no bytes (FIPS 180-4)


def test_explicit_file_list(tmp_path: Path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "x").write_text("x")
    (d / "y").write_text("y")
    write_manifest(d, KIND, 1, files=["x"])
    assert set(json.loads((d / MANIFEST_NAME).read_text())["files"]) == {"x"}
    with pytest.raises(ManifestError, match=r"/y: not listed in manifest\.json"):
        verify_manifest(d, KIND, 1, REMEDY)
    assert set(verify_manifest(d, KIND, 1, REMEDY, allow_extra=True)) == {"x"}


def _flip_byte(name: str, at: int = 10) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        b = bytearray((d / name).read_bytes())
        b[at] ^= 0xFF
        (d / name).write_bytes(bytes(b))

    return edit


def _truncate(name: str, keep: int) -> Callable[[Path], None]:
    return lambda d: os.truncate(d / name, keep)


def _edit_manifest(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        doc = json.loads((d / MANIFEST_NAME).read_text())
        change(doc)
        (d / MANIFEST_NAME).write_text(json.dumps(doc))

    return edit


CASES = [
    (
        "missing",
        lambda d: (d / "heads" / "h.trees.txt").unlink(),
        r"heads/h\.trees\.txt: missing \(manifest\.json lists it, 10,240 bytes\)",
    ),
    (
        "truncated",
        _truncate("heads/h.trees.txt", 100),
        r"heads/h\.trees\.txt: 100 bytes where manifest\.json lists 10,240 \(truncated or changed since it was saved\); restore",
    ),
    ("grown", lambda d: (d / "a.json").write_text('{"a": 12}\n'), r"a\.json: 10 bytes where manifest\.json lists 9 \(changed since"),
    ("same-size-change", _flip_byte("heads/h.trees.txt"), r"heads/h\.trees\.txt: changed since it was saved \(sha256 differs"),
    ("change-past-first-chunk", _flip_byte("big.bin", 2**20 + 7), r"big\.bin: changed since it was saved"),
    ("replaced-by-folder", lambda d: ((d / "a.json").unlink(), (d / "a.json").mkdir()), r"a\.json: not a file"),
    ("extra-file", lambda d: (d / "heads" / "notes.txt").write_text("hi"), r"heads/notes\.txt: not listed in manifest\.json .*; remove it"),
    (
        "two-missing",
        lambda d: ((d / "a.json").unlink(), (d / "empty.txt").unlink()),
        r"a\.json: missing .* \(and 1 more file\(s\)\); restore",
    ),
    (
        "no-manifest",
        lambda d: (d / MANIFEST_NAME).unlink(),
        r"model: no manifest\.json; written by an older version of dwellrank .*; retrain it$",
    ),
    ("manifest-not-json", lambda d: (d / MANIFEST_NAME).write_text("{"), r"manifest\.json: unreadable manifest \(JSONDecodeError"),
    ("manifest-a-list", lambda d: (d / MANIFEST_NAME).write_text("[]"), r"manifest\.json: not a dwellrank manifest"),
    ("manifest-no-files", _edit_manifest(lambda m: m.pop("files")), r"manifest\.json: not a dwellrank manifest"),
    (
        "newer-manifest",
        _edit_manifest(lambda m: m.update(manifest_format=MANIFEST_FORMAT + 1)),
        r"manifest_format 2, this library reads up to 1",
    ),
    (
        "other-kind",
        _edit_manifest(lambda m: m.update(kind="other")),
        r"manifest\.json: the directory holds a 'other', expected a 'test\.kind'",
    ),
    ("other-format", _edit_manifest(lambda m: m.update(format=2)), r"manifest\.json: format 2, this library reads 3"),
    (
        "escaping-path",
        _edit_manifest(lambda m: m["files"].update({"../x": {"size": 1, "sha256": "0"}})),
        r"lists '\.\./x', which is not a path",
    ),
    ("absolute-path", _edit_manifest(lambda m: m["files"].update({"/etc/passwd": {"size": 1, "sha256": "0"}})), r"lists '/etc/passwd'"),
    ("entry-no-size", _edit_manifest(lambda m: m["files"]["a.json"].pop("size")), r"entry 'a\.json' lacks an integer 'size'"),
]


@pytest.mark.parametrize(("edit", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_directory_that_differs_is_refused_in_one_line(saved: Path, edit: Callable[[Path], object], pattern: str):
    verify_manifest(saved, KIND, 3, REMEDY)  # the same directory passes before the edit
    edit(saved)
    with pytest.raises(ManifestError, match=pattern) as info:
        verify_manifest(saved, KIND, 3, REMEDY)
    assert "\n" not in str(info.value)


def test_hidden_files_are_not_extra(saved: Path):
    (saved / ".DS_Store").write_bytes(b"\0\1")
    (saved / "heads" / ".nfs0001").write_bytes(b"\0")
    assert set(verify_manifest(saved, KIND, 3, REMEDY)) == {"a.json", "heads/h.trees.txt", "big.bin", "empty.txt"}


def test_a_copied_directory_verifies(saved: Path, tmp_path: Path):
    import shutil

    copy = shutil.copytree(saved, tmp_path / "elsewhere" / "copy")  # relative paths: the manifest travels with the directory
    assert set(verify_manifest(copy, KIND, 3, REMEDY)) == {"a.json", "heads/h.trees.txt", "big.bin", "empty.txt"}
