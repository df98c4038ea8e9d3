"""An A/B test of two named rankers in the simulator, written to a directory: ``dwellrank simulate-ab``.

It lives in the top layer because its rankers may be trained presets
(a simulator and a trained ranker together); ``simulate.ab.run_ab`` itself
takes rankers as arguments.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from dwellrank_logs.io import check_output_dir
from dwellrank_pipeline.presets import TRAINED_PRESETS, PresetContext, resolve_ranker
from simulate.ab import ABConfig, ABResult, check_size, run_ab
from simulate.ab_report import write_ab

__all__ = ["run_named_ab"]

Progress = Callable[[int, str], AbstractContextManager[Callable[[int], None] | None]]


def run_named_ab(
    config: ABConfig,
    control: str,
    treatment: str,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    warmup_members: int = PresetContext.warmup_members,
    warmup_days: int = PresetContext.warmup_days,
    log: Callable[[str], None] = lambda _msg: None,
    progress: Progress | None = None,
) -> ABResult:
    """Resolve ``control`` and ``treatment`` (preset names or model directories), run the A/B test, write ``out``.

    Everything that can be refused is refused before any training or simulating,
    and without creating anything: the output directory, the experiment's size
    (:func:`simulate.ab.check_size`) and both ranker names.

    Parameters
    ----------
    config : ABConfig
    control, treatment : str
        A name in :data:`dwellrank_pipeline.presets.PRESETS` or a model directory.
    out : path-like
        Output directory (see :func:`simulate.ab_report.write_ab`).
    overwrite : bool
        Replace a non-empty ``out``.
    warmup_members, warmup_days : int
        Size of the warm-up run that trained presets learn from.
    log : callable
        Receives a line before the presets are trained.
    progress : callable, optional
        ``progress(total, label)`` returns a context manager yielding a per-day callback.
    """
    check_output_dir(out, overwrite)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # run_ab records the size warning in the report
        check_size(config.world.n_members, config.split, config.alpha, config.power, config.max_mde_sd, config.warn_mde_sd)
    ctx = PresetContext(
        world=config.simulation, seed=config.seed, warmup_members=warmup_members, warmup_days=warmup_days, t_skip_s=config.t_skip_s
    )
    if {control, treatment} & set(TRAINED_PRESETS):
        log(f"training the ranking presets on a warm-up run of {warmup_members} members x {warmup_days} days ...")
    rankers = {"control": resolve_ranker(control, ctx, "--control"), "treatment": resolve_ranker(treatment, ctx, "--treatment")}
    bar = progress or (lambda _total, _label: nullcontext(None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with bar(config.simulation.n_days, "simulating A/B days") as step:
            result = run_ab(
                config, rankers["control"], rankers["treatment"], progress=step, names={"control": control, "treatment": treatment}
            )
    write_ab(result, out, overwrite=overwrite)
    return result
