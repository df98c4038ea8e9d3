"""Feed and session simulator with ground truth, its built-in rankers, and A/B and OPE over rankers.

``simulate`` produces the six log tables of ``docs/schema.md`` plus the
ground truth (T_skip, latent intents, intent paths) that later stages must
recover.  Rankers answer :class:`dwellrank_logs.protocol.Ranker`.

The simulator's modules, by reason to change: ``engine`` (the day loop),
``config``, ``world`` (static world and response model), ``intents``,
``dynamics`` (return rate, satisfaction, fatigue, feedback), ``deliveries``,
``sessions``, ``posts``, ``serving`` (candidates and rankers), ``impressions``,
``state`` (the rankers' history), ``tables`` (schema typing), ``writer`` (the
background writer thread), ``truth_tables``, ``truth`` (closed-form truth),
``summary``, ``result`` and ``output``.
"""

from simulate.ab import (
    ABConfig,
    ABResult,
    SmallExperimentWarning,
    assign_arms,
    compare_arms,
    member_aggregates,
    minimum_detectable_effect,
    run_ab,
    srm_test,
)
from simulate.ab_report import format_ab_table, write_ab
from simulate.config import WorldConfig
from simulate.engine import DAILY_TABLES, SimulationResult, simulate, summarize
from simulate.intents import IntentSet, make_intents
from simulate.ope import ExplorationRanker, OPEConfig, OPEEstimate, doubly_robust, ips, run_ope, snips
from simulate.output import TRUTH_DIR, simulate_to, write_simulation
from simulate.rankers import PopularityRanker, RandomRanker, plackett_luce
from simulate.state import HistoryState
from simulate.truth import OracleRanker, expected_reward, world_members

__all__ = [
    "DAILY_TABLES",
    "TRUTH_DIR",
    "ABConfig",
    "ABResult",
    "ExplorationRanker",
    "HistoryState",
    "IntentSet",
    "OPEConfig",
    "OPEEstimate",
    "OracleRanker",
    "PopularityRanker",
    "RandomRanker",
    "SimulationResult",
    "SmallExperimentWarning",
    "WorldConfig",
    "assign_arms",
    "compare_arms",
    "doubly_robust",
    "expected_reward",
    "format_ab_table",
    "ips",
    "make_intents",
    "member_aggregates",
    "minimum_detectable_effect",
    "plackett_luce",
    "run_ab",
    "run_ope",
    "simulate",
    "simulate_to",
    "snips",
    "srm_test",
    "summarize",
    "world_members",
    "write_ab",
    "write_simulation",
]
