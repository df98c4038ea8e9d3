"""Randomisation of members to arms by a stable hash of their id and the seed."""

from __future__ import annotations

import numpy as np

from dwellrank_logs.hashing import splitmix64
from simulate.ab.config import ARMS, check_split

__all__ = ["assign_arms", "assignment_units", "splitmix64"]


def assignment_units(member_id: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per member: ``splitmix64(splitmix64(seed) xor member_id)``.

    Stable across runs, platforms and processes (unlike Python's ``hash``), and
    independent of the order in which members are listed.

    Parameters
    ----------
    member_id : ndarray of int, shape (n,)
    seed : int

    Returns
    -------
    ndarray of float64, shape (n,), values in [0, 1)
    """
    ids = np.asarray(member_id).astype(np.uint64)
    key = splitmix64(np.array([seed], dtype=np.uint64))[0]
    return (splitmix64(ids ^ key) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def assign_arms(member_id: np.ndarray, split: float, seed: int) -> np.ndarray:
    """Arm of each member: ``'treatment'`` where its assignment unit is below ``split``.

    Parameters
    ----------
    member_id : ndarray of int, shape (n,)
    split : float in (0, 1)
        Expected share of the treatment arm.
    seed : int
        Experiment seed; a new seed re-randomises.

    Returns
    -------
    ndarray of str, shape (n,), values in :data:`simulate.ab.ARMS`
    """
    check_split(split)
    return np.where(assignment_units(member_id, seed) < split, ARMS[1], ARMS[0])
