"""Offline A/B tests in the simulator: one population, two arms, one closed loop.

Statistics are computed on per-member aggregates (one row per member), which
respects that one member's impressions are correlated: Welch two-sample
t-tests with statsmodels, CUPED variance reduction, a chi-square
sample-ratio-mismatch check and the minimum detectable effect at the chosen
size.

The work is done by pure functions, one module per concern:

* :mod:`simulate.ab.config` -- :class:`ABConfig` and the arm names;
* :mod:`simulate.ab.assign` -- :func:`assign_arms` by a stable hash;
* :mod:`simulate.ab.power` -- :func:`minimum_detectable_effect`, :func:`check_size`;
* :mod:`simulate.ab.aggregates` -- :func:`member_aggregates`, :func:`window_aggregates`, :func:`daily_trajectories` from the logs;
* :mod:`simulate.ab.metrics` -- :data:`METRICS` and :func:`member_metrics`;
* :mod:`simulate.ab.stats` -- :func:`compare_arms` (Welch, CUPED), :func:`srm_test`;
* :mod:`simulate.ab.analysis` -- :func:`member_table`, :func:`arm_effects`: the statistics both kinds of test share;
* :mod:`simulate.ab.result` -- :class:`ABResult`;
* :mod:`simulate.ab.run` -- :func:`run_ab`, which wires them;
* :mod:`simulate.ab.logged` (with :mod:`simulate.ab.logged_config`, :mod:`simulate.ab.logged_spark`) --
  :func:`logged_ab_report`: the same analysis of any logs whose ``members.arm`` is filled (polars or Spark).
"""

from simulate.ab.aggregates import AGGREGATES
from simulate.ab.aggregates import split_seconds
from simulate.ab.aggregates import arm_daily
from simulate.ab.aggregates import daily_trajectories
from simulate.ab.aggregates import member_aggregates
from simulate.ab.aggregates import window_aggregates
from simulate.ab.analysis import arm_effects
from simulate.ab.analysis import member_table
from simulate.ab.assign import assign_arms
from simulate.ab.assign import assignment_units
from simulate.ab.assign import splitmix64
from simulate.ab.config import ARMS
from simulate.ab.config import ABConfig
from simulate.ab.logged import LogReduction
from simulate.ab.logged import analyse_reduction
from simulate.ab.logged import logged_ab_report
from simulate.ab.logged import reduce_logs
from simulate.ab.logged_config import LoggedABConfig
from simulate.ab.logged_config import Period
from simulate.ab.metrics import METRICS
from simulate.ab.metrics import Metric
from simulate.ab.metrics import member_metrics
from simulate.ab.power import SmallExperimentWarning
from simulate.ab.power import check_size
from simulate.ab.power import minimum_detectable_effect
from simulate.ab.result import ABResult
from simulate.ab.run import run_ab
from simulate.ab.stats import compare_arms
from simulate.ab.stats import srm_test

__all__ = [
    "AGGREGATES",
    "ARMS",
    "METRICS",
    "ABConfig",
    "ABResult",
    "LogReduction",
    "LoggedABConfig",
    "Metric",
    "Period",
    "SmallExperimentWarning",
    "analyse_reduction",
    "arm_daily",
    "arm_effects",
    "assign_arms",
    "assignment_units",
    "check_size",
    "compare_arms",
    "daily_trajectories",
    "logged_ab_report",
    "member_aggregates",
    "member_metrics",
    "member_table",
    "minimum_detectable_effect",
    "reduce_logs",
    "run_ab",
    "split_seconds",
    "splitmix64",
    "srm_test",
    "window_aggregates",
]
