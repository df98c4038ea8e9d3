"""The ``ranking`` package: every public name resolves, and T_skip work does not import the ranking engine."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import ranking


def test_every_public_name_resolves_to_its_source():
    """Each name of ``__all__`` (listed once) is the object its source module defines, and only those are lazy names."""
    assert len(ranking.__all__) == len(set(ranking.__all__))
    assert set(ranking._SOURCES) == set(ranking.__all__)
    for name in ranking.__all__:
        assert getattr(ranking, name) is getattr(importlib.import_module(ranking._SOURCES[name]), name), name
    assert set(ranking.__all__) <= set(dir(ranking))


def test_submodules_resolve_and_unknown_names_raise():
    assert ranking.features is importlib.import_module("ranking.features")
    with pytest.raises(AttributeError, match="module 'ranking' has no attribute 'nothing_here'"):
        getattr(ranking, "nothing_here")  # noqa: B009 (the lazy __getattr__ is what is tested)


def test_tskip_does_not_import_lightgbm_or_torch():
    code = (
        "import sys\n"
        "from ranking import estimate_tskip, TskipConfig\n"
        "bad = [m for m in ('lightgbm', 'torch', 'sklearn') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
