"""The public names of ``engagement``: every name in ``__all__`` resolves lazily to its source module's object."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import engagement


def test_every_public_name_is_its_source_modules_object():
    assert set(engagement.__all__) == set(engagement._SOURCES)
    for name, module in engagement._SOURCES.items():
        assert getattr(engagement, name) is getattr(importlib.import_module(module), name), name


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = engagement.nope


def test_config_import_does_not_import_torch():
    # The CLI reads its forecast option defaults from engagement.config at start-up.
    code = "import sys, engagement.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
