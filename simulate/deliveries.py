"""Platform deliveries: the messages (emails, pushes, in-app) the platform sends members each day."""

from __future__ import annotations

import numpy as np

from dwellrank_logs.schema import CHANNELS, CONTENTS
from simulate.config import DAY_US, WorldConfig
from simulate.intents import IntentSet

__all__ = ["deliver"]


def deliver(
    cfg: WorldConfig, intents: IntentSet, mix: np.ndarray, day_us: float, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One day's deliveries, and how many of each member's were relevant to their main intent.

    Parameters
    ----------
    mix : ndarray, shape (n_members, n_intents)
        Today's intent mixture of each member.
    day_us : float
        Start of the day, microseconds since the Unix epoch.

    Returns
    -------
    deliveries : dict of str to ndarray, shape (n_deliveries,)
        ``member``, ``ts_us``, ``channel`` (index into CHANNELS), ``content`` (index
        into CONTENTS), sorted by time, then member: the deliveries table's order.
    n_relevant, n_irrelevant : ndarray of float, shape (n_members,)
        Deliveries per member whose content its main intent welcomes, and the others.
    """
    n = rng.poisson(cfg.delivery_rate, mix.shape[0])
    member = np.repeat(np.arange(mix.shape[0]), n)
    wanted = intents.relevant_content[mix.argmax(axis=1)][member]
    relevant = rng.random(member.size) < cfg.delivery_relevant_prob
    # Irrelevant content: any other content type, uniformly.
    other = (wanted + rng.integers(1, len(CONTENTS), member.size)) % len(CONTENTS)
    content = np.where(relevant, wanted, other)
    channel = rng.choice(len(CHANNELS), size=member.size, p=[0.5, 0.15, 0.35])
    ts = day_us + rng.integers(0, DAY_US, member.size)
    order = np.lexsort((member, ts))
    n_rel = np.bincount(member, weights=relevant, minlength=mix.shape[0])
    n_irr = np.bincount(member, weights=~relevant, minlength=mix.shape[0])
    return {"member": member[order], "ts_us": ts[order], "channel": channel[order], "content": content[order]}, n_rel, n_irr
