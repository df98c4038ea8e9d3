"""Feed and session simulator with ground truth, and the ranker protocol.

``simulate`` produces the six log tables of ``docs/schema.md`` plus the
ground truth (T_skip, latent intents, intent paths) that later stages must
recover.
"""

from simulate.config import WorldConfig
from simulate.engine import SimulationResult
from simulate.engine import simulate
from simulate.engine import summarize
from simulate.intents import IntentSet
from simulate.intents import make_intents
from simulate.output import TRUTH_DIR
from simulate.output import write_simulation
from simulate.rankers import PopularityRanker
from simulate.rankers import RandomRanker
from simulate.rankers import Ranker
from simulate.rankers import RankOutput
from simulate.rankers import SoftmaxRanker
from simulate.rankers import plackett_luce
from simulate.state import HistoryState

__all__ = [
    "TRUTH_DIR",
    "HistoryState",
    "IntentSet",
    "PopularityRanker",
    "RandomRanker",
    "RankOutput",
    "Ranker",
    "SimulationResult",
    "SoftmaxRanker",
    "WorldConfig",
    "make_intents",
    "plackett_luce",
    "simulate",
    "summarize",
    "write_simulation",
]
