"""The top layer: what needs a simulator and a trained ranker together.

``dwellrank_pipeline.demo`` chains every stage on built-in defaults (the
``dwellrank demo`` job); ``dwellrank_pipeline.presets`` names the rankers an A/B
run can compare, including those trained on a warm-up simulation, and
``dwellrank_pipeline.ab`` runs and writes an A/B test of two named rankers
(``dwellrank simulate-ab``).  It imports ``simulate``, ``ranking`` and
``engagement``; none of them imports it.
"""

from dwellrank_pipeline.ab import run_named_ab
from dwellrank_pipeline.demo import DemoSizes
from dwellrank_pipeline.demo import last_day_candidates
from dwellrank_pipeline.demo import run_demo
from dwellrank_pipeline.presets import PRESETS
from dwellrank_pipeline.presets import TRAINED_PRESETS
from dwellrank_pipeline.presets import PresetContext
from dwellrank_pipeline.presets import resolve_ranker

__all__ = [
    "PRESETS",
    "TRAINED_PRESETS",
    "DemoSizes",
    "PresetContext",
    "last_day_candidates",
    "resolve_ranker",
    "run_demo",
    "run_named_ab",
]
