"""The ``ranking`` package: every public name resolves, and T_skip work does not import the ranking engine."""

from __future__ import annotations

import subprocess
import sys

import ranking


def test_every_public_name_resolves():
    for name in ranking.__all__:
        assert getattr(ranking, name) is not None, name
    assert sorted(ranking.__all__) == sorted(set(ranking.__all__))


def test_tskip_does_not_import_lightgbm_or_torch():
    code = (
        "import sys\n"
        "from ranking import estimate_tskip, TskipConfig\n"
        "bad = [m for m in ('lightgbm', 'torch', 'sklearn') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
