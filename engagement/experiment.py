"""The paper's evaluation (section 6.1): the compared models, seeds, 80/10/10 splits, mean +- std.

:data:`MODELS` lists the compared methods in the order of Tables 3, 4 and 6.
:func:`run_model` trains one of them on one split; :func:`compare` repeats
every model over seeds (seed ``s`` gives the split and every random draw of
replicate ``s``) and aggregates the test metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.schema import EVENT_TYPES, SCHEMA_VERSION
from engagement.baselines import MLP, ActivityLSTM, DeepMultiChannel, GCNLSTMBaseline, fit_lightgbm, fit_logistic
from engagement.config import DigmnConfig, ForecastTrainConfig, check_task
from engagement.dataset import EngagementData
from engagement.digmn import DIGMN, count_parameters
from engagement.inputs import Scaler, Split, make_tensors, split_members
from engagement.intents import Intents, most_frequent_intent
from engagement.metrics import evaluate, fit_class_offsets, primary_metric
from engagement.train import dynamic_intents, fit_torch, predict_proba, torch_seed

__all__ = [
    "MODELS",
    "ModelResult",
    "baseline_features",
    "build_digmn",
    "check_models",
    "compare",
    "fit_feature_baseline",
    "matched_hidden",
    "model_rng",
    "model_streams",
    "model_tensors",
    "run_model",
    "summarize_runs",
]

#: Compared methods, in table order.
MODELS: tuple[str, ...] = (
    "LR",
    "LightGBM",
    "MLP",
    "Activity LSTM",
    "Temporal GCN-LSTM",
    "Deep Multi-channel",
    "Deep Multi-channel (no GCN)",
    "DIGMN (Static)",
    "DIGMN (Static, matched)",
    "DIGMN (learned intents)",
    "DIGMN",
    "DIGMN (+activity)",
)
#: Which spawned child of a replicate's Generator each model draws from.  The models of the first
#: list kept their streams when the graph baselines came: their results did not change.  Deep
#: Multi-channel with and without the graph channel share one stream (the same torch seed and batch
#: order), so their difference is the channel's alone.
_STREAM: dict[str, int] = {
    "LR": 0,
    "LightGBM": 1,
    "MLP": 2,
    "Activity LSTM": 3,
    "Deep Multi-channel": 4,
    "Deep Multi-channel (no GCN)": 4,
    "DIGMN (Static)": 5,
    "DIGMN (Static, matched)": 6,
    "DIGMN (learned intents)": 7,
    "DIGMN": 8,
    "DIGMN (+activity)": 9,
    "Temporal GCN-LSTM": 10,
}


@dataclass
class ModelResult:
    """Test metrics of one model on one split."""

    name: str
    metrics: dict[str, float]
    n_params: int | None
    seconds: float
    epochs: int | None = None
    model: Any = None


def model_streams(rng: np.random.Generator) -> list[np.random.SeedSequence]:
    """The seed sequences of a replicate's models: those of ``rng.spawn``'s children, one per stream."""
    seq = cast("np.random.SeedSequence", rng.bit_generator.seed_seq)  # default_rng's: spawnable
    return seq.spawn(max(_STREAM.values()) + 1)


def model_rng(streams: list[np.random.SeedSequence], name: str) -> np.random.Generator:
    """A fresh Generator on model ``name``'s stream (``rng.spawn``'s child): models sharing a stream draw the same numbers."""
    check_models([name])
    return np.random.Generator(np.random.PCG64(streams[_STREAM[name]]))


def check_models(models: Sequence[str]) -> None:
    """Raise :class:`ConfigError` unless every name in ``models`` is one of :data:`MODELS`."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"models must be among {', '.join(MODELS)}, got {unknown}")


def build_digmn(data: EngagementData, task: str, intents: Intents, config: DigmnConfig) -> DIGMN:
    """A DIGMN sized for ``data`` and ``task``."""
    return DIGMN(
        n_events=len(EVENT_TYPES),
        n_context=data.ctx.shape[-1],
        n_macro=data.macro.shape[1],
        n_delivery=data.delivery.shape[1],
        n_classes=3 if check_task(task) == "day" else 2,
        intents=torch.as_tensor(intents.profiles, dtype=torch.float32),
        config=config,
    )


def matched_hidden(data: EngagementData, task: str, intents: Intents, config: DigmnConfig) -> tuple[int, ...]:
    """Hidden sizes of a static predictor whose parameter count is closest to the dynamic DIGMN's (Table 4)."""
    target = count_parameters(build_digmn(data, task, intents, config))
    best: tuple[int, ...] = config.hidden
    gap = np.inf
    for scale in np.arange(1.0, 6.0, 0.05):
        hidden = tuple(max(1, round(h * scale)) for h in config.hidden)
        n = count_parameters(build_digmn(data, task, intents, replace(config, predictor="static", hidden=hidden)))
        if abs(n - target) < gap:
            best, gap = hidden, abs(n - target)
    return best


def _torch_model(name: str, data: EngagementData, task: str, intents: Intents, config: DigmnConfig) -> tuple[nn.Module, float]:
    n_cls = 3 if task == "day" else 2
    v, f, g = len(EVENT_TYPES), data.macro.shape[1], data.delivery.shape[1]
    if name == "MLP":
        return MLP(f, g, n_cls), 0.0
    if name == "Activity LSTM":
        return ActivityLSTM(v, g, n_cls), 0.0
    if name == "Temporal GCN-LSTM":
        return GCNLSTMBaseline(v, g, n_cls), 0.0
    if name == "Deep Multi-channel":
        return DeepMultiChannel(v, f, g, n_cls), 0.0
    if name == "Deep Multi-channel (no GCN)":
        return DeepMultiChannel(v, f, g, n_cls, gcn=False), 0.0
    if name == "DIGMN":
        return build_digmn(data, task, intents, config), config.beta
    if name == "DIGMN (Static)":
        return build_digmn(data, task, intents, replace(config, predictor="static")), 0.0
    if name == "DIGMN (Static, matched)":
        hidden = matched_hidden(data, task, intents, config)
        return build_digmn(data, task, intents, replace(config, predictor="static", hidden=hidden)), 0.0
    if name == "DIGMN (learned intents)":
        return build_digmn(data, task, intents, replace(config, intents="learned")), config.beta
    if name == "DIGMN (+activity)":
        return build_digmn(data, task, intents, replace(config, activity_channel=True)), config.beta
    raise ConfigError(f"model must be one of {', '.join(MODELS)}, got {name!r}")


def model_tensors(data: EngagementData, scaler: Scaler) -> dict[str, torch.Tensor]:
    """:func:`engagement.inputs.make_tensors` and the daily transition counts ``transitions`` (B, days, 10, 10), unscaled.

    The graph channel damps the counts itself (:func:`engagement.gcn.gcn_propagation`).
    """
    return {**make_tensors(data, scaler), "transitions": torch.from_numpy(np.ascontiguousarray(data.transitions, dtype=np.float32))}


def baseline_features(data: EngagementData, split: Split) -> np.ndarray:
    """The feature baselines' input: macroscopic and delivery features, standardised on the training members."""
    scaler = Scaler.fit(data.subset(split.train))
    return np.column_stack(
        [(data.macro - scaler.mean["macro"]) / scaler.std["macro"], (data.delivery - scaler.mean["delivery"]) / scaler.std["delivery"]]
    )


def fit_feature_baseline(
    name: str, task: str, x: np.ndarray, y: np.ndarray, split: Split, seed: int
) -> tuple[dict[str, float], int | None]:
    """Fit ``"LR"`` or ``"LightGBM"`` on rows ``split.train`` of ``x`` and evaluate on ``split.test``.

    LightGBM stops early on ``split.val``; both use the decision rule fitted on
    ``split.val`` (:func:`engagement.metrics.fit_class_offsets`).  Returns the
    test metrics and the parameter count (None for trees).
    """
    if name == "LR":
        est = fit_logistic(x[split.train], y[split.train], seed)
        n_params: int | None = int(est.coef_.size + est.intercept_.size)
    elif name == "LightGBM":
        est = fit_lightgbm(x[split.train], y[split.train], x[split.val], y[split.val], seed)
        n_params = None
    else:
        raise ConfigError(f"feature baseline must be 'LR' or 'LightGBM', got {name!r}")
    offsets = fit_class_offsets(y[split.val], est.predict_proba(x[split.val]))
    return evaluate(task, y[split.test], est.predict_proba(x[split.test]), offsets), n_params


def run_model(
    name: str,
    data: EngagementData,
    task: str,
    intents: Intents,
    split: Split,
    rng: np.random.Generator,
    train_config: ForecastTrainConfig | None = None,
    digmn_config: DigmnConfig | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> ModelResult:
    """Fit model ``name`` on ``split.train`` (early stopping on ``split.val``) and score ``split.test``."""
    check_task(task)
    tc = train_config if train_config is not None else ForecastTrainConfig()
    dc = digmn_config if digmn_config is not None else DigmnConfig()
    y = data.labels(task)
    t0 = time.perf_counter()
    if name in ("LR", "LightGBM"):
        x = baseline_features(data, split)
        seed = int(rng.integers(0, 2**31 - 1))
        metrics, n_params = fit_feature_baseline(name, task, x, y, split, seed)
        return ModelResult(name, metrics, n_params, time.perf_counter() - t0)
    if tensors is None:
        tensors = model_tensors(data, Scaler.fit(data.subset(split.train)))
    torch_seed(rng)
    model, beta = _torch_model(name, data, task, intents, dc)
    hist = fit_torch(model, tensors, y, split, tc, rng, beta=beta)
    offsets = fit_class_offsets(y[split.val], predict_proba(model, tensors, split.val, device=tc.device))
    proba = predict_proba(model, tensors, split.test, device=tc.device)
    return ModelResult(
        name,
        evaluate(task, y[split.test], proba, offsets),
        count_parameters(model),
        time.perf_counter() - t0,
        epochs=len(hist.val_loss),
        model=model,
    )


def compare(
    data: EngagementData,
    intents: Intents,
    task: str,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    models: Sequence[str] = MODELS,
    train_config: ForecastTrainConfig | None = None,
    digmn_config: DigmnConfig | None = None,
    progress: Callable[[int, str, ModelResult], None] | None = None,
) -> dict[str, Any]:
    """Every model on every seed's split; test metrics per run and mean +- std per model.

    Parameters
    ----------
    seeds : sequence of int
        Replicate ``s`` uses ``numpy.random.default_rng(s)`` for its split and,
        through spawned children (one per model, Deep Multi-channel's shared by its ablation), for every
        model's randomness: a model's result does not depend on the other models run.
    progress : callable, optional
        Called after each fit with (seed, model name, result).

    Returns
    -------
    dict
        ``runs`` (list of per-fit records), ``summary`` (per model: mean and
        std of each metric, parameter count), ``metric`` (the paper's metric
        for the task), sizes.
    """
    check_task(task)
    check_models(models)
    runs = []
    pca_input = None
    for seed in seeds:
        rng = np.random.default_rng(seed)
        split = split_members(data.n_members, rng)
        tensors = model_tensors(data, Scaler.fit(data.subset(split.train)))
        # One child per known model, picked by name (_STREAM): a model's randomness does not depend on which
        # other models run or in which order (with all models, the same streams as listing them all).
        streams = model_streams(rng)
        for name in models:
            child = model_rng(streams, name)
            res = run_model(name, data, task, intents, split, child, train_config, digmn_config, tensors=tensors)
            runs.append(
                {"seed": seed, "model": name, **res.metrics, "n_params": res.n_params, "seconds": res.seconds, "epochs": res.epochs}
            )
            if name == "DIGMN" and pca_input is None:
                # Figure 8: dynamic intents of the first replicate's test members.
                h_i = dynamic_intents(res.model.cpu(), tensors, split.test, torch.device("cpu"))
                pca_input = (h_i, most_frequent_intent(data.nu[split.test], data.lengths[split.test], intents))
            if progress is not None:
                progress(seed, name, res)
    return {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "metric": primary_metric(task),
        "window": data.window.to_dict(),
        "n_intents": intents.k,
        "seeds": list(seeds),
        "n_members": data.n_members,
        "split_sizes": {"train": round(0.8 * data.n_members), "val": round(0.1 * data.n_members)},
        "runs": runs,
        "summary": summarize_runs(runs, models),
        "pca_input": pca_input,
    }


def summarize_runs(runs: list[dict[str, Any]], models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Mean and (population) std of each metric per model, over seeds."""
    out: dict[str, dict[str, Any]] = {}
    for m in models:
        rs = [r for r in runs if r["model"] == m]
        if not rs:
            continue
        entry: dict[str, Any] = {"n_params": rs[0]["n_params"], "n_runs": len(rs)}
        for metric in ("macro_f1", "auroc", "accuracy", "macro_f1_argmax"):
            v = np.array([r[metric] for r in rs], dtype=np.float64)
            entry[metric] = {"mean": float(np.mean(v)), "std": float(np.std(v))}
        out[m] = entry
    return out
