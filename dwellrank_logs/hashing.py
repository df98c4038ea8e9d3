"""A stable 64-bit hash of integer keys: the same on every run, platform and process (unlike Python's ``hash``)."""

from __future__ import annotations

import numpy as np

__all__ = ["keyed_hash", "splitmix64"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele, Lea & Flood 2014) applied elementwise to uint64."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def keyed_hash(seed: int, *keys: np.ndarray) -> np.ndarray:
    """A uint64 per row of the integer columns ``keys``, seeded: ``splitmix64(... splitmix64(h ^ k1) ^ k2 ...)``.

    Independent of the order of the rows, so a sample drawn by it is the same
    whatever the layout of the files the rows came from.
    """
    with np.errstate(over="ignore"):
        h = np.full(np.shape(keys[0]), splitmix64(np.array([seed], dtype=np.uint64))[0], dtype=np.uint64)
        for k in keys:
            h = splitmix64(h ^ np.asarray(k).astype(np.uint64))
    return h
