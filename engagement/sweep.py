"""DIGMN's hyperparameter sensitivity (the paper's section 6.4: Table 5, Figure 7) and the history length.

One parameter is varied at a time around the defaults, as in the paper's
figures: L, the number of FC-D layers (Table 5's hidden units: L = 1 none,
2 {64}, 3 {64, 32}, 4 {64, 32, 32}); d, the dimension of the meta weights
``a`` (``DigmnConfig.n_bases``); beta, the orthogonality weight; and the
history window in days.  Every point is fitted on every seed's split
(replicate ``s`` draws its split and DIGMN's stream as
:func:`engagement.experiment.compare` does, so the default point is
``compare``'s DIGMN) and scored on the validation and the test members; the
best value of a parameter is chosen by the validation mean alone, and its
test figure is reported beside it.

The history length moves the window start, not its end: every length
forecasts the same future window from the same moment (the day the default
history ends), with the shorter history just before it.  The labels compare
the future with the history window, so they change with its length too; the
figure says how well each length's question is answered, not one question
answered from less data.

* :class:`SweepConfig`: the values and seeds.
* :func:`sensitivity_sweep`: the fits, from a dataset builder and the intents.
* :func:`sweep_on_logs`: ``dwellrank forecast sweep`` end to end (``sweep.json``, ``sweep.png``, ``intents.json``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dwellrank_logs.checks import is_integer
from dwellrank_logs.errors import ConfigError
from dwellrank_logs.schema import SCHEMA_VERSION
from engagement.config import DigmnConfig, ForecastTrainConfig, LdaConfig, WindowConfig, check_task
from engagement.dataset import EngagementData

__all__ = ["SWEEP_PARAMETERS", "SweepConfig", "fit_digmn_point", "hidden_for_layers", "plot_sweep", "sensitivity_sweep", "sweep_on_logs"]

#: The swept parameters, in panel order.
SWEEP_PARAMETERS: tuple[str, ...] = ("layers", "n_bases", "beta", "history_days")
_LABELS = {"layers": "L (FC-D layers)", "n_bases": "d (dimension of a)", "beta": "beta (orthogonality)", "history_days": "history (days)"}


def hidden_for_layers(layers: int) -> tuple[int, ...]:
    """Hidden units of a predictor of ``layers`` FC-D layers, as the paper's Table 5: {64, 32, 32, ...}."""
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ConfigError(f"layers must be an integer >= 1, got {layers!r}")
    return tuple([64, 32, *([32] * max(layers - 3, 0))][: layers - 1])


@dataclass(frozen=True)
class SweepConfig:
    """The values of each swept parameter and the replicate seeds.

    Parameters
    ----------
    layers : tuple of int
        L, FC-D layers (>= 1; paper Table 5: 1..5).
    n_bases : tuple of int
        d, the meta weights' dimension (>= 1; paper Figure 7a: 2..10).
    beta : tuple of float
        Orthogonality weights (>= 0; paper Figure 7b: 0 and 1e-5..10).
    history_days : tuple of int, days
        History window lengths (>= 1).
    seeds : tuple of int
        Replicates; replicate ``s`` uses seed ``s`` for its split and DIGMN's randomness.

    An empty tuple leaves that parameter out; at least one must have a value.
    """

    layers: tuple[int, ...] = (1, 2, 3, 4)
    n_bases: tuple[int, ...] = (1, 2, 4, 8)
    beta: tuple[float, ...] = (0.0, 1e-3, 1e-2, 1e-1)
    history_days: tuple[int, ...] = (7, 10, 14)
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        for name in ("layers", "n_bases", "history_days", "seeds"):
            values = getattr(self, name)
            low = 0 if name == "seeds" else 1
            if not isinstance(values, tuple) or any(not is_integer(v) or v < low for v in values):
                raise ConfigError(f"{name} must be a tuple of integers >= {low}, got {values!r}")
        bad_beta = not isinstance(self.beta, tuple) or any(
            isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0 for b in self.beta
        )
        if bad_beta:
            raise ConfigError(f"beta must be a tuple of finite numbers >= 0, got {self.beta!r}")
        for name in (*SWEEP_PARAMETERS, "seeds"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ConfigError(f"{name} must not repeat a value, got {values!r}")
        if not self.seeds:
            raise ConfigError("seeds must hold at least one seed, got ()")
        if not any(getattr(self, p) for p in SWEEP_PARAMETERS):
            raise ConfigError(f"at least one of {', '.join(SWEEP_PARAMETERS)} must have a value, got none")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


def _point(param: str, value: Any, dc: DigmnConfig, h0: int) -> tuple[DigmnConfig, int]:
    """The DIGMN configuration and history length of one point of ``param``'s panel."""
    if param == "layers":
        return replace(dc, hidden=hidden_for_layers(int(value))), h0
    if param == "n_bases":
        return replace(dc, n_bases=int(value)), h0
    if param == "beta":
        return replace(dc, beta=float(value)), h0
    return dc, int(value)


def _shifted_window(window: WindowConfig, start: dt.datetime, history_days: int) -> WindowConfig:
    """``window`` with ``history_days`` days of history ending where ``window``'s history ends."""
    if history_days == window.history_days:
        return window
    if window.start_date is None and history_days > window.history_days:
        raise ConfigError(
            f"history_days values must be <= the window's history_days ({window.history_days}) when the window starts at the "
            f"logs' first day, got {history_days} (pass a later start_date to leave room for longer histories)"
        )
    begin = (start + dt.timedelta(days=window.history_days - history_days)).date().isoformat()
    return replace(window, history_days=history_days, start_date=begin)


def fit_digmn_point(
    data: EngagementData,
    tensors: Mapping[str, Any],
    task: str,
    intents: Any,
    split: Any,
    rng: np.random.Generator,
    tc: ForecastTrainConfig,
    dc: DigmnConfig,
) -> dict[str, Any]:
    """One DIGMN fit, the draws in :func:`engagement.experiment.run_model`'s order; validation and test metrics."""
    from engagement.digmn import count_parameters
    from engagement.experiment import build_digmn
    from engagement.metrics import evaluate, fit_class_offsets
    from engagement.train import fit_torch, predict_proba, torch_seed

    t0 = time.perf_counter()
    y = data.labels(task)
    torch_seed(rng)
    model = build_digmn(data, task, intents, dc)
    hist = fit_torch(model, dict(tensors), y, split, tc, rng, beta=dc.beta)
    p_val = predict_proba(model, dict(tensors), split.val, device=tc.device)
    offsets = fit_class_offsets(y[split.val], p_val)
    p_test = predict_proba(model, dict(tensors), split.test, device=tc.device)
    return {
        # The decision rule is fitted on the validation members, so their Macro-F1 is optimistic (AUROC is not
        # affected); it is so for every point alike, and only validation figures choose a value.
        "val": evaluate(task, y[split.val], p_val, offsets),
        "test": evaluate(task, y[split.test], p_test, offsets),
        "epochs": len(hist.val_loss),
        "best_epoch": hist.best_epoch,
        "n_params": count_parameters(model),
        "seconds": time.perf_counter() - t0,
    }


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std())}


def sensitivity_sweep(
    build: Callable[[WindowConfig], EngagementData],
    intents: Any,
    task: str,
    config: SweepConfig | None = None,
    window: WindowConfig | None = None,
    train_config: ForecastTrainConfig | None = None,
    digmn_config: DigmnConfig | None = None,
    progress: Callable[[str, Any, int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """DIGMN fitted at every point of every panel, on every seed; validation and test metrics per point.

    Parameters
    ----------
    build : callable
        The dataset of a window (e.g. ``lambda w: build_dataset(tables, w)``);
        called once per history length.
    intents : Intents
        LDA intents, shared by every point.
    task : {"day", "session"}
    config : SweepConfig, optional
    window, train_config, digmn_config : optional
        The defaults the panels vary around (the paper's settings).
    progress : callable, optional
        Called after each fit with (parameter, value, seed, run record); a
        point shared by several panels (the defaults) is fitted once.

    Returns
    -------
    dict
        ``metric`` (the paper's for the task), ``defaults`` (each parameter's
        default), ``n_members`` (per history length), and ``parameters``: per
        parameter its ``values``, ``default``, ``points`` (per value: ``val``
        and ``test`` mean and std of the metric over seeds, and the ``runs``),
        ``best_by_validation`` (the value of highest validation mean) and
        ``test_at_best``.

    Raises
    ------
    ConfigError
        An unknown task, or a history length the logs cannot hold.
    """
    from engagement.experiment import model_rng, model_streams
    from engagement.inputs import Scaler, make_tensors, split_members
    from engagement.metrics import primary_metric

    check_task(task)
    cfg = config if config is not None else SweepConfig()
    w0 = window if window is not None else WindowConfig()
    tc = train_config if train_config is not None else ForecastTrainConfig()
    dc0 = digmn_config if digmn_config is not None else DigmnConfig()
    metric = primary_metric(task)
    defaults: dict[str, Any] = {"layers": len(dc0.hidden) + 1, "n_bases": dc0.n_bases, "beta": dc0.beta, "history_days": w0.history_days}
    base = build(w0)
    windows = {h: _shifted_window(w0, base.start, h) for h in {w0.history_days, *cfg.history_days}}  # refuse before any fit
    # Distinct points: the defaults appear in every panel and are fitted once.
    wanted: dict[tuple[DigmnConfig, int], list[tuple[str, Any]]] = {}
    for param in SWEEP_PARAMETERS:
        for value in getattr(cfg, param):
            wanted.setdefault(_point(param, value, dc0, w0.history_days), []).append((param, value))
    runs: dict[tuple[DigmnConfig, int], list[dict[str, Any]]] = {key: [] for key in wanted}
    n_members: dict[int, int] = {}
    for h in sorted({h for _, h in wanted}):
        data = base if h == w0.history_days else build(windows[h])
        n_members[h] = data.n_members
        for seed in cfg.seeds:
            rng = np.random.default_rng(seed)
            split = split_members(data.n_members, rng)
            streams = model_streams(rng)
            tensors = make_tensors(data, Scaler.fit(data.subset(split.train)))
            for key in (k for k in wanted if k[1] == h):
                rec = {"seed": seed, **fit_digmn_point(data, tensors, task, intents, split, model_rng(streams, "DIGMN"), tc, key[0])}
                runs[key].append(rec)
                if progress is not None:
                    param, value = wanted[key][0]
                    progress(param, value, seed, rec)
    panels: dict[str, Any] = {}
    for param in SWEEP_PARAMETERS:
        values = list(getattr(cfg, param))
        if not values:
            continue
        points = []
        for value in values:
            rs = runs[_point(param, value, dc0, w0.history_days)]
            points.append(
                {
                    "value": value,
                    "val": _mean_std([r["val"][metric] for r in rs]),
                    "test": _mean_std([r["test"][metric] for r in rs]),
                    "runs": rs,
                }
            )
        best = max(points, key=lambda p: p["val"]["mean"])  # the first of equal means: validation only
        panels[param] = {
            "values": values,
            "default": defaults[param],
            "points": points,
            "best_by_validation": best["value"],
            "test_at_best": best["test"],
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "metric": metric,
        "model": "DIGMN",
        "seeds": list(cfg.seeds),
        "defaults": defaults,
        "window": w0.to_dict(),
        "digmn": dc0.to_dict(),
        "n_members": {str(h): n for h, n in n_members.items()},
        "parameters": panels,
    }


def plot_sweep(result: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """One panel per swept parameter: validation and test mean +- std over seeds; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dwellrank_logs.io import atomic_file

    panels = result["parameters"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for ax, (param, panel) in zip(axes[0], panels.items(), strict=True):
        x = np.arange(len(panel["values"]))
        for split, marker, shift in (("val", "o", -0.06), ("test", "s", 0.06)):
            mean = [p[split]["mean"] for p in panel["points"]]
            std = [p[split]["std"] for p in panel["points"]]
            ax.errorbar(x + shift, mean, yerr=std, marker=marker, capsize=3, label="validation" if split == "val" else "test")
        best = panel["values"].index(panel["best_by_validation"])
        ax.axvline(best, color="0.6", linestyle=":", label="best by validation")
        ax.set_xticks(x, [f"{v:g}" for v in panel["values"]])
        ax.set_xlabel(_LABELS[param] + (f", default {panel['default']:g}" if panel["default"] in panel["values"] else ""))
        ax.set_ylabel(result["metric"])
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"DIGMN sensitivity, {result['task']}-level task, seeds {', '.join(map(str, result['seeds']))}", fontsize=9)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def sweep_on_logs(
    logs_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    task: str,
    config: SweepConfig | None = None,
    window: WindowConfig | None = None,
    lda_config: LdaConfig | None = None,
    train_config: ForecastTrainConfig | None = None,
    digmn_config: DigmnConfig | None = None,
    lda_seed: int | np.random.Generator = 0,
    overwrite: bool = False,
    progress: Callable[[str, Any, int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The sensitivity sweep of a logs directory, written to ``out`` (``sweep.json``, ``sweep.png``, ``intents.json``).

    Intents are mined once from the default window's history sessions (as
    ``forecast compare`` mines them, seeded by ``lda_seed``) and shared by
    every point.  ``out`` is refused before any work when it is (or holds)
    the logs, or is non-empty without ``overwrite``; it is written atomically.

    Raises
    ------
    ConfigError
        An unknown task, a bad ``lda_seed``, or a history length the logs cannot hold.
    OutputExistsError
        ``out`` is not empty and ``overwrite`` is false.
    """
    from dwellrank_logs.io import atomic_dir, check_not_input, check_output_dir, write_json
    from engagement.dataset import build_dataset, read_logs
    from engagement.intents import mine_intents
    from engagement.workflows import lda_generator

    check_task(task)
    lda_rng = lda_generator(lda_seed)
    check_not_input(out, {"logs_dir": logs_dir}, "out")
    check_output_dir(out, overwrite)
    tables = read_logs(logs_dir)
    w0 = window if window is not None else WindowConfig()
    cache: dict[WindowConfig, EngagementData] = {}

    def build(w: WindowConfig) -> EngagementData:
        if w not in cache:
            cache[w] = build_dataset(tables, w)
        return cache[w]

    intents = mine_intents(build(w0).session_counts, lda_rng, lda_config)
    result = sensitivity_sweep(build, intents, task, config, w0, train_config, digmn_config, progress)
    result["sweep"] = (config if config is not None else SweepConfig()).to_dict()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "sweep.json", result)
        write_json(tmp / "intents.json", intents.to_dict())
        plot_sweep(result, tmp / "sweep.png")
    return result
