"""Feed and session simulator with ground truth, and the ranker protocol.

``simulate`` produces the six log tables of ``docs/schema.md`` plus the
ground truth (T_skip, latent intents, intent paths) that later stages must
recover.
"""

from simulate.config import WorldConfig
from simulate.engine import SimulationResult
from simulate.engine import simulate
from simulate.engine import DAILY_TABLES
from simulate.engine import summarize
from simulate.intents import IntentSet
from simulate.intents import make_intents
from simulate.output import TRUTH_DIR
from simulate.output import simulate_to
from simulate.output import write_simulation
from simulate.rankers import CANDIDATE_COLUMNS
from simulate.rankers import PopularityRanker
from simulate.rankers import RandomRanker
from simulate.rankers import Ranker
from simulate.rankers import RankOutput
from simulate.rankers import SoftmaxRanker
from simulate.rankers import candidate_columns
from simulate.rankers import plackett_luce
from simulate.state import HistoryState
from simulate.ab import ABConfig
from simulate.ab import ABResult
from simulate.ab import SmallExperimentWarning
from simulate.ab import assign_arms
from simulate.ab import compare_arms
from simulate.ab import member_aggregates
from simulate.ab import minimum_detectable_effect
from simulate.ab import run_ab
from simulate.ab import srm_test
from simulate.ab_report import format_table
from simulate.ab_report import write_ab
from simulate.ope import ExplorationRanker
from simulate.ope import OPEConfig
from simulate.ope import OPEEstimate
from simulate.ope import doubly_robust
from simulate.ope import ips
from simulate.ope import run_ope
from simulate.ope import snips
from simulate.presets import PRESETS
from simulate.presets import PresetContext
from simulate.presets import resolve_ranker
from simulate.truth import OracleRanker
from simulate.truth import expected_reward
from simulate.truth import world_members

__all__ = [
    "TRUTH_DIR",
    "CANDIDATE_COLUMNS",
    "DAILY_TABLES",
    "HistoryState",
    "IntentSet",
    "PopularityRanker",
    "RandomRanker",
    "RankOutput",
    "Ranker",
    "SimulationResult",
    "SoftmaxRanker",
    "WorldConfig",
    "candidate_columns",
    "make_intents",
    "plackett_luce",
    "simulate",
    "summarize",
    "write_simulation",
    "simulate_to",
    "ABConfig",
    "ABResult",
    "SmallExperimentWarning",
    "assign_arms",
    "compare_arms",
    "member_aggregates",
    "minimum_detectable_effect",
    "run_ab",
    "srm_test",
    "format_table",
    "write_ab",
    "ExplorationRanker",
    "OPEConfig",
    "OPEEstimate",
    "doubly_robust",
    "ips",
    "run_ope",
    "snips",
    "PRESETS",
    "PresetContext",
    "resolve_ranker",
    "OracleRanker",
    "expected_reward",
    "world_members",
]
