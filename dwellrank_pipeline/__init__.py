"""The top layer: what needs a simulator and a trained ranker together.

``dwellrank_pipeline.demo`` chains every stage on built-in defaults (the
``dwellrank demo`` job); ``dwellrank_pipeline.presets`` names the rankers an A/B
run can compare, including those trained on a warm-up simulation.  It imports
``simulate``, ``ranking`` and ``engagement``; none of them imports it.
"""

from dwellrank_pipeline.demo import DemoSizes, last_day_candidates, run_demo
from dwellrank_pipeline.presets import PRESETS, PresetContext, resolve_ranker

__all__ = [
    "PRESETS",
    "DemoSizes",
    "PresetContext",
    "last_day_candidates",
    "resolve_ranker",
    "run_demo",
]
