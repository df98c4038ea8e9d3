"""The simulator's online history state, updated once per simulated day.

It keeps dense counters (members x update types, members x topics, per
update) and a keyed member x author table, and exposes them as
:class:`dwellrank_logs.protocol.HistoryTables`, so that rankers see the
history through exactly the tables that
:func:`dwellrank_logs.history.history_tables` computes in batch from logs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from dwellrank_logs.protocol import HistoryTables, not_skipped

__all__ = ["HistoryState"]

_U = pl.UInt32


class HistoryState:
    """Incrementally maintained impression counters.

    Parameters
    ----------
    n_members : int
    update_types : tuple of str
    n_topics : int
        Topic ids are 0 .. n_topics - 1.
    t_skip_s : float, seconds
        Dwell threshold of the not-skipped counters.
    """

    def __init__(self, n_members: int, update_types: tuple[str, ...], n_topics: int, t_skip_s: float) -> None:
        self.update_types = update_types
        self.n_topics = int(n_topics)
        self.t_skip_s = float(t_skip_s)
        t = len(update_types)
        self._mt = np.zeros((3, n_members, t), dtype=np.int64)  # impressions, not_skipped, actions
        self._mp = np.zeros((3, n_members, self.n_topics), dtype=np.int64)  # the same, per member x topic
        self._upd = np.zeros((4, 0), dtype=np.int64)  # impressions, clicks, virals, not_skipped
        # Member x author pairs are sparse: keep per-day batches, merge only when asked.
        self._ma_parts: list[pl.DataFrame] = []
        self._ma: pl.DataFrame | None = None
        self._ma_offset = 0  # daily batches already folded into self._ma

    def add(
        self,
        member: np.ndarray,
        update: np.ndarray,
        utype: np.ndarray,
        topic: np.ndarray,
        author: np.ndarray,
        dwell_s: np.ndarray,
        clicked: np.ndarray,
        viral: np.ndarray,
    ) -> None:
        """Add one batch of impressions (arrays of one length)."""
        # Counted by boolean selection: 0/1 integer arrays would index rows instead.
        clicked, viral = np.asarray(clicked, dtype=bool), np.asarray(viral, dtype=bool)
        action = clicked | viral
        ns = not_skipped(dwell_s, action, self.t_skip_s)
        n_upd = int(update.max(initial=-1)) + 1
        if n_upd > self._upd.shape[1]:
            grow = np.zeros((4, max(n_upd, 2 * self._upd.shape[1]) - self._upd.shape[1]), dtype=np.int64)
            self._upd = np.concatenate([self._upd, grow], axis=1)
        # Added in place: a bincount of the whole id range would be a fresh array each day, whose
        # first-touch page faults cost more than the counting.
        for row, w in enumerate((None, clicked, viral, ns)):
            np.add.at(self._upd[row], update if w is None else update[w], 1)
        _count_pairs(self._mt, member, utype, ns, action)
        _count_pairs(self._mp, member, topic.astype(np.int64), ns, action)
        self._ma_parts.append(
            pl.DataFrame({"member_id": member.astype(np.int64), "author_id": author.astype(np.int64), "action": action.astype(np.uint32)})
        )

    def _member_authors(self, n_parts: int) -> pl.DataFrame:
        """Merge the first ``n_parts`` daily batches (the snapshot a ranker was given)."""
        if n_parts > 0:
            frames = [p.with_columns(pl.lit(1, _U).alias("n_impressions")) for p in self._ma_parts[:n_parts]]
            if self._ma is not None:
                frames.append(self._ma.rename({"n_actions": "action"}))
            merged = (
                pl.concat(frames, how="diagonal_relaxed")
                .group_by("member_id", "author_id")
                .agg(pl.sum("n_impressions").cast(_U), pl.sum("action").cast(_U).alias("n_actions"))
            )
            # Fold the merged batches in so later snapshots do not redo the work.
            self._ma, self._ma_parts = merged, self._ma_parts[n_parts:]
            self._ma_offset += n_parts
        if self._ma is None:
            return pl.DataFrame(schema={"member_id": pl.Int64, "author_id": pl.Int64, "n_impressions": _U, "n_actions": _U})
        return self._ma

    def tables(self) -> HistoryTables:
        """Current counts in the layout of :func:`dwellrank_logs.history.history_tables`.

        Tables are built from a snapshot of the counters on first access.
        """
        upd, mt, mp = self._upd.copy(), self._mt.copy(), self._mp.copy()
        upto = self._ma_offset + len(self._ma_parts)
        return HistoryTables(
            updates=lambda: self._updates_table(upd),
            member_types=lambda: self._member_types_table(mt),
            member_authors=lambda: self._member_authors(upto - self._ma_offset),
            member_topics=lambda: self._member_topics_table(mp),
            members=lambda: self._members_table(mt),
            t_skip_s=self.t_skip_s,
        )

    @staticmethod
    def _updates_table(upd: np.ndarray) -> pl.DataFrame:
        imp, clk, vir, ns = upd
        seen = np.flatnonzero(imp)
        updates = pl.DataFrame(
            {
                "update_id": seen.astype(np.int64),
                "n_impressions": imp[seen].astype(np.uint32),
                "n_clicks": clk[seen].astype(np.uint32),
                "n_virals": vir[seen].astype(np.uint32),
                "n_not_skipped": ns[seen].astype(np.uint32),
            }
        )
        return updates

    def _member_types_table(self, mt: np.ndarray) -> pl.DataFrame:
        return _pair_table(mt, "update_type", lambda t: pl.Series(self.update_types).gather(t))

    @staticmethod
    def _member_topics_table(mp: np.ndarray) -> pl.DataFrame:
        return _pair_table(mp, "topic", lambda t: t.astype(np.int64))

    @staticmethod
    def _members_table(mt: np.ndarray) -> pl.DataFrame:
        mimp, mns, mact = mt
        mem_seen = np.flatnonzero(mimp.sum(axis=1))
        return pl.DataFrame(
            {
                "member_id": mem_seen.astype(np.int64),
                "n_impressions": mimp.sum(axis=1)[mem_seen].astype(np.uint32),
                "n_not_skipped": mns.sum(axis=1)[mem_seen].astype(np.uint32),
                "n_actions": mact.sum(axis=1)[mem_seen].astype(np.uint32),
            }
        )


def _count_pairs(counts: np.ndarray, member: np.ndarray, key: np.ndarray, not_skipped: np.ndarray, action: np.ndarray) -> None:
    """Add impressions, not-skipped and actions per (member, key) into dense ``counts`` (3, members, keys)."""
    flat = member * counts.shape[2] + key
    for row, w in enumerate((None, not_skipped, action)):
        np.add.at(counts[row].reshape(-1), flat if w is None else flat[w], 1)  # in place: no dense temporary


def _pair_table(counts: np.ndarray, key_name: str, key_values: Callable[[np.ndarray], object]) -> pl.DataFrame:
    """Non-zero (member, key) cells of ``counts`` (3, members, keys) in the history-table layout."""
    imp, ns, act = counts
    m, k = np.nonzero(imp)
    return pl.DataFrame(
        {
            "member_id": m.astype(np.int64),
            key_name: key_values(k),
            "n_impressions": imp[m, k].astype(np.uint32),
            "n_not_skipped": ns[m, k].astype(np.uint32),
            "n_actions": act[m, k].astype(np.uint32),
        }
    )
