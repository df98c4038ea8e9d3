"""What to read and how to estimate T_skip: :class:`TskipConfig`, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from dwellrank_logs.checks import check_number, check_positive_int
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.schema import ACTION_COLUMNS

__all__ = ["DEFAULT_CONFIG", "TskipConfig"]

# ``method`` values of ``statsmodels.stats.proportion.proportion_confint``.
_CI_METHODS = ("wilson", "agresti_coull", "beta", "jeffreys", "normal")


def _nonempty_str(name: str, v: object) -> None:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{name} must be a non-empty column name, got {v!r}")


def _unit_float(name: str, v: object, lo_open: bool) -> None:
    # Plain int and float only: the value is written to the result JSON unchanged.
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (0 < v < 1 if lo_open else 0 <= v < 1)
    if not ok:
        raise ConfigError(f"{name} must be in {'(0, 1)' if lo_open else '[0, 1)'}, got {v!r}")


@dataclass(frozen=True)
class TskipConfig:
    """What to read and how to estimate T_skip; validated on construction.

    Parameters
    ----------
    dwell_col : str
        Dwell column, seconds (float, finite, >= 0).
    action_cols : tuple of str
        Boolean (or 0/1 integer) columns; an impression has an *action* when
        any of them is true.  Default: click and viral actions.
    by : str or None
        Column to split the curve by (one curve and threshold per value);
        ``None`` for the overall curve only.
    bin_width_s : float, seconds
        Width of the dwell bins; bins are ``[k * w, (k + 1) * w)``.
    max_dwell_s : float, seconds
        Dwell at or above this goes to one overflow count (kept in the CDF
        totals, not in the curve).
    eps : float, probability
        Tolerance: a bin fires when the lower confidence bound of
        P(action | dwell in bin) exceeds it.
    alpha : float
        Two-sided level of the per-bin binomial intervals (0.05: 95 %).
    ci_method : str
        ``method`` of ``statsmodels.stats.proportion.proportion_confint``.
    persist : int
        Number of consecutive informative bins that must fire.
    min_bin_count : int
        Impressions a bin needs to be informative.
    min_rows_per_group : int
        Valid impressions each group (and the whole table) needs; fewer raise
        :class:`~ranking.tskip.InsufficientDataError` naming the group.
    tolerance_s : float or None, seconds
        Largest distance between a group's threshold and the overall T_skip
        for "one T_skip fits all"; ``None`` means one bin width.
    strict : bool
        Raise on null/NaN/infinite/negative dwell or null actions instead of
        dropping those rows with a :class:`~ranking.tskip.DwellDataWarning`.
        A row's action is the OR of its action columns with SQL (Kleene)
        nulls: it is null only when no column is true and at least one is null.
    """

    dwell_col: str = "dwell_s"
    action_cols: tuple[str, ...] = ACTION_COLUMNS
    by: str | None = "update_type"
    bin_width_s: float = 0.25
    max_dwell_s: float = 60.0
    eps: float = 0.002
    alpha: float = 0.05
    ci_method: str = "wilson"
    persist: int = 3
    min_bin_count: int = 20
    min_rows_per_group: int = 1000
    tolerance_s: float | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        _nonempty_str("dwell_col", self.dwell_col)
        if isinstance(self.action_cols, str) or not isinstance(self.action_cols, (tuple, list)):
            raise ConfigError(f"action_cols must be a tuple of column names, got {self.action_cols!r}")
        object.__setattr__(self, "action_cols", tuple(self.action_cols))
        if not self.action_cols:
            raise ConfigError("action_cols must name at least one column, got ()")
        for c in self.action_cols:
            _nonempty_str("action_cols", c)
        if len(set(self.action_cols)) != len(self.action_cols):
            raise ConfigError(f"action_cols must be distinct, got {self.action_cols}")
        if self.by is not None:
            _nonempty_str("by", self.by)
            if self.by == self.dwell_col or self.by in self.action_cols:
                raise ConfigError(f"by must differ from the dwell and action columns, got {self.by!r}")
        if self.dwell_col in self.action_cols:
            raise ConfigError(f"dwell_col {self.dwell_col!r} must not be one of action_cols")
        check_number("bin_width_s", self.bin_width_s)
        check_number("max_dwell_s", self.max_dwell_s)
        if self.max_dwell_s / self.bin_width_s > 1_000_000:
            raise ConfigError(f"max_dwell_s / bin_width_s must be <= 1e6 bins, got {self.max_dwell_s} / {self.bin_width_s}")
        _unit_float("eps", self.eps, lo_open=False)
        _unit_float("alpha", self.alpha, lo_open=True)
        if self.ci_method not in _CI_METHODS:
            raise ConfigError(f"ci_method must be one of {', '.join(_CI_METHODS)}, got {self.ci_method!r}")
        check_positive_int("persist", self.persist)
        check_positive_int("min_bin_count", self.min_bin_count)
        check_positive_int("min_rows_per_group", self.min_rows_per_group)
        if self.tolerance_s is not None:
            check_number("tolerance_s", self.tolerance_s, allow_zero=True)
        if not isinstance(self.strict, bool):
            raise ConfigError(f"strict must be True or False, got {self.strict!r}")

    @property
    def tolerance(self) -> float:
        """Tolerance of the single-T_skip check, seconds (one bin by default)."""
        return self.bin_width_s if self.tolerance_s is None else float(self.tolerance_s)

    @property
    def n_bins(self) -> int:
        """Number of regular bins below ``max_dwell_s``."""
        return math.ceil(self.max_dwell_s / self.bin_width_s - 1e-9)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


DEFAULT_CONFIG = TskipConfig()
"""The default of every ``config`` argument in :mod:`ranking.tskip` (one instance: it is frozen)."""
