"""Off-policy evaluation of a ranker from logs of a stochastic logging ranker.

The estimand is the **top-slot value** of a target ranker: the expected reward
of the update it puts first, over the logged feed requests
(:mod:`simulate.ope.run`).  The modules:

* :mod:`simulate.ope.estimators` -- :func:`ips`, :func:`snips`, :func:`doubly_robust` and :class:`OPEEstimate`;
* :mod:`simulate.ope.reward` -- :data:`OPE_REWARDS` and :func:`observed_reward` from the impressions log;
* :mod:`simulate.ope.reward_model` -- :func:`reward_features` and the cross-fitted :func:`fit_reward_model` of DR;
* :mod:`simulate.ope.recorder` -- :class:`OPERecorder`, what the logging ranker and each target put first;
* :mod:`simulate.ope.run` -- :class:`OPEConfig` and :func:`run_ope`, which simulates the logging policy
  (:class:`simulate.exploration.ExplorationRanker`), estimates, and computes the simulator's truth
  for the same requests with :mod:`simulate.truth`;
* :mod:`simulate.ope.slate` -- estimators of a whole ranked feed's value (standard, independent and
  cascade IPS, cascade DR, pseudoinverse; each also self-normalised; normal or bootstrap intervals);
* :mod:`simulate.ope.slate_top` -- top-slot direct method, self-normalised DR and Switch-DR, and the
  :func:`refit_bootstrap` of a pipeline that refits its reward model per resample;
* :mod:`simulate.ope.slate_propensity` -- per-position propensities (Plackett-Luce prefixes, exact
  position marginals, exact or Monte Carlo pair marginals ``Gamma`` for the pseudoinverse) and the long-log
  to ``(n, K)`` mapping (see docs/ope.md);
* :mod:`simulate.ope.slate_synthetic` -- synthetic ranked feeds with a known truth per reward structure;
* :mod:`simulate.ope.feed` -- the simulator's whole-feed value (``OPEConfig.feed_k``): position propensities of
  the logged feeds, the exact-Gamma pseudoinverse weight for small candidate sets, and every slate
  estimator for a deterministic target.
"""

from simulate.exploration import ExplorationRanker
from simulate.ope.estimators import OPEEstimate
from simulate.ope.estimators import doubly_robust
from simulate.ope.estimators import ips
from simulate.ope.estimators import snips
from simulate.ope.feed import exact_pseudoinverse_feasible
from simulate.ope.feed import exact_pseudoinverse_weight
from simulate.ope.feed import feed_estimates
from simulate.ope.feed import pl_marginals_at
from simulate.ope.feed import top_k_rows
from simulate.ope.recorder import OPERecorder
from simulate.ope.recorder import top_rows
from simulate.ope.reward import OPE_REWARDS
from simulate.ope.reward import observed_reward
from simulate.ope.reward_model import fit_reward_model
from simulate.ope.reward_model import reward_features
from simulate.ope.run import OPEConfig
from simulate.ope.run import run_ope
from simulate.ope.slate import slate_cascade_dr
from simulate.ope.slate import slate_cascade_ips
from simulate.ope.slate import slate_independent_ips
from simulate.ope.slate import slate_pseudoinverse
from simulate.ope.slate import slate_standard_ips
from simulate.ope.slate_propensity import expected_under
from simulate.ope.slate_propensity import factorised_pseudoinverse_weight
from simulate.ope.slate_propensity import n_prefixes
from simulate.ope.slate_propensity import pl_conditionals
from simulate.ope.slate_propensity import pl_pair_marginals
from simulate.ope.slate_propensity import pl_pair_marginals_mc
from simulate.ope.slate_propensity import pl_position_marginals
from simulate.ope.slate_propensity import pl_prefix_steps
from simulate.ope.slate_propensity import prefix_product
from simulate.ope.slate_propensity import pseudoinverse_weight
from simulate.ope.slate_propensity import slate_arrays
from simulate.ope.slate_propensity import take_logged
from simulate.ope.slate_propensity import uniform_ranking_gamma
from simulate.ope.slate_synthetic import SLATE_REWARDS
from simulate.ope.slate_synthetic import estimate_slates
from simulate.ope.slate_synthetic import synthetic_slates
from simulate.ope.slate_top import direct_method
from simulate.ope.slate_top import refit_bootstrap
from simulate.ope.slate_top import self_normalised_dr
from simulate.ope.slate_top import switch_dr

__all__ = [
    "OPE_REWARDS",
    "SLATE_REWARDS",
    "ExplorationRanker",
    "OPEConfig",
    "OPEEstimate",
    "OPERecorder",
    "direct_method",
    "doubly_robust",
    "estimate_slates",
    "exact_pseudoinverse_feasible",
    "exact_pseudoinverse_weight",
    "expected_under",
    "factorised_pseudoinverse_weight",
    "feed_estimates",
    "fit_reward_model",
    "ips",
    "n_prefixes",
    "observed_reward",
    "pl_conditionals",
    "pl_marginals_at",
    "pl_pair_marginals",
    "pl_pair_marginals_mc",
    "pl_position_marginals",
    "pl_prefix_steps",
    "prefix_product",
    "pseudoinverse_weight",
    "refit_bootstrap",
    "reward_features",
    "run_ope",
    "self_normalised_dr",
    "slate_arrays",
    "slate_cascade_dr",
    "slate_cascade_ips",
    "slate_independent_ips",
    "slate_pseudoinverse",
    "slate_standard_ips",
    "snips",
    "switch_dr",
    "synthetic_slates",
    "take_logged",
    "top_k_rows",
    "top_rows",
    "uniform_ranking_gamma",
]
