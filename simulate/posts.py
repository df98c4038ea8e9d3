"""The update pool: authors post every day, more when their posts earn feedback (the upstream loop)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulate.config import DAY_US, WorldConfig
from simulate.world import Members

__all__ = ["UpdatePool", "post"]


@dataclass
class UpdatePool:
    """All updates created so far, one array per posting day (index over the days = update_id).

    Attributes
    ----------
    author, utype, topic : list of ndarray of int
        Author member id, update-type code (index into ``update_types``), topic.
    quality : list of ndarray of float
        Latent quality of each update.
    created_us : list of ndarray of int
        Creation time, microseconds since the Unix epoch.
    day : list of ndarray of int
        Simulation day of the post (negative for the warm-up days).
    """

    author: list[np.ndarray] = field(default_factory=list)
    utype: list[np.ndarray] = field(default_factory=list)
    topic: list[np.ndarray] = field(default_factory=list)
    quality: list[np.ndarray] = field(default_factory=list)
    created_us: list[np.ndarray] = field(default_factory=list)
    day: list[np.ndarray] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every attribute as one array over all updates, shape (n_updates,)."""
        return {k: np.concatenate(getattr(self, k)) for k in ("author", "utype", "topic", "quality", "created_us", "day")}

    @property
    def n_updates(self) -> int:
        """Updates created so far."""
        return sum(a.size for a in self.author)


def post(cfg: WorldConfig, members: Members, feedback: np.ndarray, day: int, pool: UpdatePool, rng: np.random.Generator) -> None:
    """Authors post on ``day``; the new updates are appended to ``pool``.

    Each member posts Poisson(``post_rate * (1 + upstream_gain * log1p(feedback))``)
    updates, mostly (70 %) on their own top topic, at uniform times of the day.

    Parameters
    ----------
    feedback : ndarray, shape (n_members,)
        Each author's smoothed upstream value from viral actions on their posts.
    day : int
        Simulation day (negative for the warm-up days before day 0).
    """
    rate = members.post_rate * (1.0 + cfg.upstream_gain * np.log1p(feedback))
    n = rng.poisson(rate)
    author = np.repeat(np.arange(cfg.n_members), n)
    m = author.size
    own_topic = members.topic_interest[author].argmax(axis=1) if m else np.zeros(0, dtype=np.int64)
    topic = np.where(rng.random(m) < 0.7, own_topic, rng.integers(0, cfg.n_topics, m))
    pool.author.append(author)
    pool.utype.append(rng.choice(len(cfg.update_types), size=m, p=cfg.update_type_probs))
    pool.topic.append(topic)
    pool.quality.append(members.author_quality[author] + rng.normal(0.0, 0.5, m))
    pool.created_us.append(cfg.start_us + day * DAY_US + rng.integers(0, DAY_US, m))
    pool.day.append(np.full(m, day))
