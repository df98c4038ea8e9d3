"""The DIGMN audit's measurements (docs/digmn_audit.md): each open or different choice against today's default.

One simulated world (``--world-seed``; the life-cycle world,
``intent_dynamics="lifecycle"``, unless ``--set intent_dynamics=drift``),
intents mined once as ``forecast compare`` mines them (``lda_seed`` 0), then
for each task and each split replicate ``s`` (``numpy.random.default_rng(s)``:
the split, and DIGMN's random stream, as in ``compare``) DIGMN is fitted once
per variant.  Every variant of a replicate shares the split, the torch seed
and the batch order, so variant - default is a paired difference.  A variant
changes one thing:

* ``max_sessions=128``: the sequence cap (``WindowConfig.max_sessions``, default 64);
* ``patience=12``: early stopping's patience (``ForecastTrainConfig.patience``, default 6);
* ``class_weight=balanced``: class-weighted cross-entropy (``ForecastTrainConfig.class_weight``);
* ``mapping_relu``: a ReLU after the linear mapping layer (``DigmnConfig.mapping_activation``);
* ``no_day_in_history``: the context vector without its day-in-history column
  (a data ablation here, not a config field: the column is built in
  ``engagement.features``);

Choices are judged on the validation members (the paired mean difference and
its 95% t interval over replicates); the test members' difference is reported
beside it.  The decision rule's effect (Macro-F1 of the validation-fitted
offsets vs the argmax) comes free with every fit.  ``--baselines`` fits those
models on the same splits (test metric only) for context.

    python bench/digmn_audit.py [--members 2500 --days 28 --world-seed 0 --seeds 0 1 2 3 4]
        [--tasks session day] [--variants ...] [--baselines LR LightGBM "Activity LSTM" "Deep Multi-channel"] [--out docs/digmn_audit.json]

Writes the JSON after every fit (a stopped run keeps what it had) and, at the
end, a PNG of the paired differences beside it.  ``--combine A.json B.json
--out C.json`` pools runs on other worlds (replicates are then pairs of world
seed and split seed) without fitting anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/simulate.py is named like the `simulate` package; drop bench/ from the import path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import dataclasses
import json
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import torch
from scipy import stats

from dwellrank_logs.errors import DroppedRowsWarning
from engagement import EngagementData, WindowConfig, build_dataset, mine_intents, read_logs
from engagement.config import DigmnConfig, ForecastTrainConfig
from engagement.experiment import model_rng, model_streams, model_tensors, run_model
from engagement.inputs import Scaler, split_members
from engagement.metrics import primary_metric
from engagement.sweep import fit_digmn_point

#: name -> (WindowConfig fields, ForecastTrainConfig fields, DigmnConfig fields, data ablation or None)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], str | None]] = {
    "default": ({}, {}, {}, None),
    "max_sessions=128": ({"max_sessions": 128}, {}, {}, None),
    "patience=12": ({}, {"patience": 12}, {}, None),
    "class_weight=balanced": ({}, {"class_weight": "balanced"}, {}, None),
    "mapping_relu": ({}, {}, {"mapping_activation": "relu"}, None),
    "no_day_in_history": ({}, {}, {}, "no_day_in_history"),
}


def ablate(data: EngagementData, how: str | None) -> EngagementData:
    """``data`` with one input changed (``how``), or as it is."""
    if how is None:
        return data
    if how == "no_day_in_history":
        keep = [i for i, n in enumerate(data.context_names) if n != "day_in_history"]
        return dataclasses.replace(
            data, ctx=np.ascontiguousarray(data.ctx[..., keep]), context_names=tuple(data.context_names[i] for i in keep)
        )
    raise ValueError(f"unknown ablation {how!r}")


def paired(diffs: list[float]) -> dict[str, Any]:
    """Mean paired difference and its 95% t interval over replicates."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        return {"mean": float(d.mean()) if d.size else float("nan"), "ci95": [float("nan"), float("nan")], "n": int(d.size)}
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return {"mean": float(d.mean()), "ci95": [float(d.mean() - half), float(d.mean() + half)], "n": int(d.size), "diffs": d.tolist()}


def _key(run: dict[str, Any]) -> tuple[int, int]:
    """A replicate: (world seed, split seed)."""
    return int(run.get("world_seed", 0)), int(run["seed"])


def combine(paths: list[str]) -> dict[str, Any]:
    """Several runs of this script (other worlds, same variants) as one result: replicates are (world seed, split seed)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    runs = [{"world_seed": part["world"]["seed"], **r} for part in parts for r in part["runs"]]
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    variants = list(dict.fromkeys(r["variant"] for r in runs if not r.get("baseline")))
    return {
        "combined_from": [
            {"path": p, "world": part["world"], "n_kept": part["n_kept"], "lda_k": part["lda_k"]}
            for p, part in zip(paths, parts, strict=True)
        ],
        "world": {
            "intent_dynamics": "/".join(sorted({part["world"]["intent_dynamics"] for part in parts})),
            "n_members": "/".join(str(part["world"]["n_members"]) for part in parts),
            "n_days": "/".join(sorted({str(part["world"]["n_days"]) for part in parts})),
            "seed": "/".join(str(part["world"]["seed"]) for part in parts),
        },
        "seeds": sorted({r["seed"] for r in runs}),
        "runs": runs,
        "summary": summarize(runs, tasks, variants),
    }


def summarize(runs: list[dict[str, Any]], tasks: list[str], variants: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task in tasks:
        metric = primary_metric(task)
        base = {_key(r): r for r in runs if r["task"] == task and r["variant"] == "default"}
        per: dict[str, Any] = {}
        for v in variants:
            rs = {_key(r): r for r in runs if r["task"] == task and r["variant"] == v}
            seeds = sorted(set(rs) & set(base))
            entry: dict[str, Any] = {
                "val_mean": float(np.mean([rs[s]["val"][metric] for s in rs])) if rs else None,
                "test_mean": float(np.mean([rs[s]["test"][metric] for s in rs])) if rs else None,
                "epochs_mean": float(np.mean([rs[s]["epochs"] for s in rs])) if rs else None,
            }
            if v != "default":
                entry["val_diff"] = paired([rs[s]["val"][metric] - base[s]["val"][metric] for s in seeds])
                entry["test_diff"] = paired([rs[s]["test"][metric] - base[s]["test"][metric] for s in seeds])
            per[v] = entry
        if task == "day" and base:
            # The decision rule (offsets fitted on validation) vs the argmax, test Macro-F1, default DIGMN.
            per["decision_rule_vs_argmax"] = {
                "test_diff": paired([base[s]["test"]["macro_f1"] - base[s]["test"]["macro_f1_argmax"] for s in sorted(base)])
            }
        bl = {}
        for name in sorted({r["variant"] for r in runs if r["task"] == task and r.get("baseline")}):
            rs = {_key(r): r for r in runs if r["task"] == task and r["variant"] == name}
            seeds = sorted(set(rs) & set(base))
            bl[name] = {
                "test_mean": float(np.mean([rs[s]["test"][metric] for s in rs])),
                "digmn_minus_baseline": paired([base[s]["test"][metric] - rs[s]["test"][metric] for s in seeds]),
            }
        out[task] = {"metric": metric, "variants": per, "baselines": bl}
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(result["summary"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.0 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        s = result["summary"][task]
        names = [v for v in s["variants"] if v not in ("default", "decision_rule_vs_argmax") and "val_diff" in s["variants"][v]]
        y = np.arange(len(names))
        for split, marker, shift in (("val", "o", -0.12), ("test", "s", 0.12)):
            means = np.array([s["variants"][v][f"{split}_diff"]["mean"] for v in names])
            lo = np.array([s["variants"][v][f"{split}_diff"]["ci95"][0] for v in names])
            hi = np.array([s["variants"][v][f"{split}_diff"]["ci95"][1] for v in names])
            ax.errorbar(
                means, y + shift, xerr=[means - lo, hi - means], fmt=marker, capsize=3, label="validation" if split == "val" else "test"
            )
        ax.axvline(0.0, color="0.5", lw=0.8)
        ax.set_yticks(y, names)
        ax.set_xlabel(f"variant - default, {s['metric']} (95% t interval)")
        ax.set_title(f"{task}-level task", fontsize=9)
        ax.legend(fontsize=7)
    w = result["world"]
    fig.suptitle(
        f"DIGMN audit: {w['intent_dynamics']} world, {w['n_members']} x {w['n_days']}, world seed {w['seed']}, "
        f"split seeds {', '.join(map(str, result['seeds']))}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=2500)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--tasks", nargs="+", default=["session", "day"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--baselines", nargs="*", default=["LR", "LightGBM", "Activity LSTM", "Deep Multi-channel"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="WorldConfig field (repeatable)")
    ap.add_argument("--out", default="docs/digmn_audit.json")
    ap.add_argument("--combine", nargs="+", default=None, metavar="JSON", help="Pool earlier runs' JSON files into --out (no fits)")
    args = ap.parse_args()
    if args.combine:
        pooled = combine(args.combine)
        Path(args.out).write_text(json.dumps(pooled, indent=1))
        plot(pooled, Path(args.out).with_suffix(".png"))
        print(json.dumps(pooled["summary"], indent=1))
        return
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
    variants = ["default", *[v for v in args.variants if v != "default"]]
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", DroppedRowsWarning)

    from simulate import WorldConfig, simulate, write_simulation
    from simulate.config import parse_overrides

    overrides = {"intent_dynamics": "lifecycle", **parse_overrides(args.set)}
    tmp = tempfile.TemporaryDirectory()
    logs = Path(tmp.name) / "logs"
    t0 = time.perf_counter()
    world = WorldConfig(n_members=args.members, n_days=args.days, **overrides)
    write_simulation(simulate(world, seed=args.world_seed), logs)
    tables = read_logs(logs)
    datas: dict[int, EngagementData] = {}

    def data_for(max_sessions: int) -> EngagementData:
        if max_sessions not in datas:
            datas[max_sessions] = build_dataset(tables, WindowConfig(max_sessions=max_sessions))
        return datas[max_sessions]

    base = data_for(64)
    intents = mine_intents(base.session_counts, np.random.default_rng(0))
    print(
        f"world {world.intent_dynamics}, {args.members} x {args.days}, seed {args.world_seed}: {base.n_members} members pass the filter, "
        f"{(base.n_sessions[:, 0] > 64).mean():.1%} have > 64 history sessions; LDA K = {intents.k} ({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    if "max_sessions=128" in variants and not (base.n_sessions[:, 0] > 64).any():
        # Every member's whole history fits under the cap: the variant's fits would equal the default's bit for bit.
        variants.remove("max_sessions=128")
        print("max_sessions=128 left out: no member has more than 64 history sessions (the cap cuts nothing)", flush=True)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "world": {
            "intent_dynamics": world.intent_dynamics,
            "n_members": args.members,
            "n_days": args.days,
            "seed": args.world_seed,
            "overrides": overrides,
        },
        "n_kept": base.n_members,
        "share_over_64_sessions": float((base.n_sessions[:, 0] > 64).mean()),
        "lda_k": intents.k,
        "seeds": args.seeds,
        "torch_threads": args.threads,
        "variants": {
            v: {"window": VARIANTS[v][0], "train": VARIANTS[v][1], "digmn": VARIANTS[v][2], "data": VARIANTS[v][3]} for v in variants
        },
        "runs": [],
    }
    for task in args.tasks:
        for seed in args.seeds:
            for v in variants:
                wv, tv, dv, how = VARIANTS[v]
                data = data_for(wv.get("max_sessions", 64))
                data = ablate(data, how)
                rng = np.random.default_rng(seed)
                split = split_members(data.n_members, rng)
                streams = model_streams(rng)
                tensors = model_tensors(data, Scaler.fit(data.subset(split.train)))
                rec = fit_digmn_point(
                    data, tensors, task, intents, split, model_rng(streams, "DIGMN"), ForecastTrainConfig(**tv), DigmnConfig(**dv)
                )
                result["runs"].append({"task": task, "world_seed": args.world_seed, "seed": seed, "variant": v, **rec})
                m = primary_metric(task)
                print(
                    f"{task} seed {seed} {v:<24} val {rec['val'][m]:.4f} test {rec['test'][m]:.4f} epochs {rec['epochs']} {rec['seconds']:.0f} s",
                    flush=True,
                )
                result["summary"] = summarize(result["runs"], args.tasks, variants)
                out_path.write_text(json.dumps(result, indent=1))
            for name in args.baselines:
                rng = np.random.default_rng(seed)
                split = split_members(base.n_members, rng)
                streams = model_streams(rng)
                tensors = model_tensors(base, Scaler.fit(base.subset(split.train)))
                t1 = time.perf_counter()
                res = run_model(name, base, task, intents, split, model_rng(streams, name), tensors=tensors)
                result["runs"].append(
                    {
                        "task": task,
                        "world_seed": args.world_seed,
                        "seed": seed,
                        "variant": name,
                        "baseline": True,
                        "test": res.metrics,
                        "seconds": time.perf_counter() - t1,
                    }
                )
                print(f"{task} seed {seed} {name:<24} test {res.metrics[primary_metric(task)]:.4f}", flush=True)
                result["summary"] = summarize(result["runs"], args.tasks, variants)
                out_path.write_text(json.dumps(result, indent=1))
    plot(result, out_path.with_suffix(".png"))
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
