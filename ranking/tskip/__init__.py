"""T_skip by Bayes' rule: when does P(action | dwell) start to be non-zero?

The post ("Defining a new concept of skipped updates") computes the empirical
CDFs of dwell for updates with and without a click/viral action, F_A and F_N,
and the CDF of all dwell, F, and estimates over dwell bins [a, b)

    P(action | dwell in [a, b)) = P(action) * (F_A(b) - F_A(a)) / (F(b) - F(a)).

T_skip is the dwell at which this curve starts to become non-zero; an update
viewed for less than T_skip seconds without an action is *skipped*.  The post
then checks that one T_skip serves every update type.

The modules, in the order the data flows:

* :mod:`~ranking.tskip.config`: :class:`TskipConfig`, what to read and the rule's parameters;
* :mod:`~ranking.tskip.polars_counts`: :func:`bin_counts`, one streaming polars
  ``group_by`` over ``(group, floor(dwell / bin_width))``, so a Parquet file is
  never materialised;
* :mod:`~ranking.tskip.spark_counts`: :func:`bin_counts_spark`, the same
  reduction as one Spark aggregation (pyspark is optional and imported lazily);
* :mod:`~ranking.tskip.counts`: :class:`BinnedCounts`, the engine-neutral
  sufficient statistics, and the accounting of unusable dwell
  (:func:`binned_counts` of an engine's :class:`DwellKeyCounts`);
* :mod:`~ranking.tskip.curve`: :class:`BayesCurve`, :func:`bayes_curve`,
  :func:`empirical_cdfs` and the per-bin binomial intervals;
* :mod:`~ranking.tskip.estimate`: the threshold rule (:func:`threshold_from_curve`),
  :func:`estimate_tskip` and :func:`estimate_tskip_file`;
* :mod:`~ranking.tskip.spark`: :func:`estimate_tskip_spark`, the estimate from a
  Spark DataFrame or a Parquet path read by Spark;
* :mod:`~ranking.tskip.result`: :class:`TskipResult` and :class:`GroupThreshold`, with their JSON and text reports;
* :mod:`~ranking.tskip.label`: :func:`skip_label_expr`, :func:`add_skip_label`
  and :class:`TskipEstimator`, a thin fitted-state wrapper;
* :mod:`~ranking.tskip.plot`: :func:`plot_tskip`, the figures of the post;
* :mod:`~ranking.tskip.outputs`: :func:`write_tskip_outputs` (JSON and PNG, all or
  nothing) and :func:`tskip_from_logs` (T_skip of a logs directory).
"""

from ranking.tskip.config import TskipConfig
from ranking.tskip.counts import BinnedCounts
from ranking.tskip.counts import DwellKeyCounts
from ranking.tskip.counts import binned_counts
from ranking.tskip.curve import BayesCurve
from ranking.tskip.curve import bayes_curve
from ranking.tskip.curve import empirical_cdfs
from ranking.tskip.errors import DwellDataWarning
from ranking.tskip.errors import InsufficientDataError
from ranking.tskip.estimate import estimate_tskip
from ranking.tskip.estimate import estimate_tskip_file
from ranking.tskip.estimate import threshold_from_curve
from ranking.tskip.label import TskipEstimator
from ranking.tskip.label import add_skip_label
from ranking.tskip.label import skip_label_expr
from ranking.tskip.outputs import tskip_from_logs
from ranking.tskip.outputs import write_tskip_outputs
from ranking.tskip.plot import plot_tskip
from ranking.tskip.polars_counts import bin_counts
from ranking.tskip.result import GroupThreshold
from ranking.tskip.result import TskipResult
from ranking.tskip.spark import estimate_tskip_spark
from ranking.tskip.spark_counts import bin_counts_spark

__all__ = [
    "BayesCurve",
    "BinnedCounts",
    "DwellDataWarning",
    "DwellKeyCounts",
    "GroupThreshold",
    "InsufficientDataError",
    "TskipConfig",
    "TskipEstimator",
    "TskipResult",
    "add_skip_label",
    "bayes_curve",
    "bin_counts",
    "bin_counts_spark",
    "binned_counts",
    "empirical_cdfs",
    "estimate_tskip",
    "estimate_tskip_file",
    "estimate_tskip_spark",
    "plot_tskip",
    "skip_label_expr",
    "threshold_from_curve",
    "tskip_from_logs",
    "write_tskip_outputs",
]
