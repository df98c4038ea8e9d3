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
  for the same requests with :mod:`simulate.truth`.
"""

from simulate.exploration import ExplorationRanker
from simulate.ope.estimators import OPEEstimate
from simulate.ope.estimators import doubly_robust
from simulate.ope.estimators import ips
from simulate.ope.estimators import snips
from simulate.ope.recorder import OPERecorder
from simulate.ope.recorder import top_rows
from simulate.ope.reward import OPE_REWARDS
from simulate.ope.reward import observed_reward
from simulate.ope.reward_model import fit_reward_model
from simulate.ope.reward_model import reward_features
from simulate.ope.run import OPEConfig
from simulate.ope.run import run_ope

__all__ = [
    "OPE_REWARDS",
    "ExplorationRanker",
    "OPEConfig",
    "OPEEstimate",
    "OPERecorder",
    "doubly_robust",
    "fit_reward_model",
    "ips",
    "observed_reward",
    "reward_features",
    "run_ope",
    "snips",
    "top_rows",
]
