"""Held-out lift of the dwell-weighted P(click) head over the default one, by member activity.

Simulates a world (``--members`` x ``--days``, seed ``--seed``), builds the
``dwell`` training frame with the impressions' after-click dwell, splits it by
time (the last ``--test-days`` are the test rows) and fits two P(click) heads
(:class:`ranking.heads.GBDTLRHead`, default config, the same seed) on the
training rows: unweighted, and with ``click_weighting="after_click_dwell"``
(:mod:`ranking.weighting`: each click weighted ``d / (d + h)`` of its
after-click dwell ``d``, mean 1 over the clicks, ``h = --half``).  On the
test rows, for both heads, overall, for cold members (no training rows) and by
member-activity decile (deciles of the test members by training rows):

* ``auc``, ``ne``: the plain click label (every click counts 1), NE with the
  training click rate as background;
* ``auc_w``, ``ne_w``: the same with the test rows weighted as training weighs
  them (clicks by ``d / (d + h)``, mean 1 over the test clicks): bounced clicks
  count less.  This is the metric the weighting targets;
* ``auc_sat``: AUC of predicting a *satisfied click* (a click with after-click
  dwell >= ``h``; bounced clicks and non-clicks are negatives).

Intervals: member-clustered bootstrap (test members resampled with replacement,
``--boot`` replicates, multiplicities applied to each member's rows, 95 %
percentile intervals) of each metric and of the lift (weighted minus default),
paired (the same resample for both heads).  And the simulator's truth: the
Spearman correlation of each head's P(click) with the true P(click) and with the
true P(satisfied click) = P(engage) P(click | engaged) (1 - P(bounce)) of each
test impression (:mod:`simulate.world`'s response model, closed form; no
interval).

Writes ``dwell_weighting.json`` and ``dwell_weighting.png`` into ``--out``.

    python bench/dwell_weighting.py [--members 2000] [--days 28] [--seed 0] [--out runs/dwell_weighting]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory has a simulate.py named like the `simulate` package; drop bench/ from the path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import time
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from scipy.stats import spearmanr

from dwellrank_logs.write import atomic_file
from ranking.features import FEATURE_SETS, training_frame
from ranking.heads import GBDTLRHead, HeadConfig
from ranking.weighting import click_dwell_weights, with_click_dwell
from simulate import WorldConfig, simulate
from simulate.truth import world_members
from simulate.world import action_probabilities, engage_probability

T_SKIP_S = 2.5
_METRICS = ("auc", "ne", "auc_w", "ne_w", "auc_sat")


def _auc(order: np.ndarray, group: np.ndarray, n_groups: int, pos: np.ndarray, neg: np.ndarray) -> float:
    """Weighted ROC AUC (ties count half) from rows sorted by score: ``group`` numbers equal scores, ascending."""
    p = np.bincount(group, weights=pos[order], minlength=n_groups)
    n = np.bincount(group, weights=neg[order], minlength=n_groups)
    below = np.cumsum(n) - n
    denom = p.sum() * n.sum()
    return float(np.dot(p, below + 0.5 * n) / denom) if denom > 0 else float("nan")


def _ne(y: np.ndarray, p: np.ndarray, v: np.ndarray, background: float) -> float:
    """Weighted log loss over the entropy of the background rate (He et al. 2014)."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    ll = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    h = -(background * np.log(background) + (1 - background) * np.log1p(-background))
    return float(np.dot(v, ll) / v.sum() / h) if v.sum() > 0 else float("nan")


def _metrics(score: dict[str, Any], y: np.ndarray, sat: np.ndarray, w: np.ndarray, v: np.ndarray, background: float) -> dict[str, float]:
    """The five metrics of one head under row multiplicities ``v`` (0 outside the group)."""
    o, g, k = score["order"], score["group"], score["n_groups"]
    return {
        "auc": _auc(o, g, k, v * y, v * (1 - y)),
        "ne": _ne(y, score["p"], v, background),
        "auc_w": _auc(o, g, k, v * w * y, v * (1 - y)),
        "ne_w": _ne(y, score["p"], v * w, background),
        "auc_sat": _auc(o, g, k, v * sat, v * (1 - sat)),
    }


def _scored(p: np.ndarray) -> dict[str, Any]:
    order = np.argsort(p, kind="stable")
    _, group = np.unique(p[order], return_inverse=True)
    return {"p": p, "order": order, "group": group, "n_groups": int(group.max()) + 1}


def _groups(member: np.ndarray, activity: np.ndarray) -> dict[str, np.ndarray]:
    """Row masks: all, cold members (no training rows), and deciles of the test members by training rows."""
    members = np.unique(member)
    act = activity[members]
    rank = np.argsort(np.argsort(act, kind="stable"), kind="stable")  # ties broken by member id: deciles of equal size
    decile = np.zeros(activity.size, dtype=np.int64)
    decile[members] = rank * 10 // members.size
    out = {"all": np.ones(member.size, dtype=bool), "cold": activity[member] == 0}
    for d in range(10):
        out[f"decile_{d + 1}"] = decile[member] == d
    return out


def _table(scores, y, sat, w, member, groups, background, n_boot, rng) -> dict[str, Any]:
    """Point metrics, bootstrap intervals and lifts per group (members resampled, paired across heads)."""
    n_members = int(member.max()) + 1
    present = np.unique(member)
    draws = [np.bincount(rng.choice(present, present.size), minlength=n_members).astype(np.float64) for _ in range(n_boot)]
    table: dict[str, Any] = {}
    for name, mask in groups.items():
        base = mask.astype(np.float64)
        point = {h: _metrics(s, y, sat, w, base, background) for h, s in scores.items()}
        boot = {h: {m: np.empty(n_boot) for m in _METRICS} for h in scores}
        for b, counts in enumerate(draws):
            v = base * counts[member]
            for h, s in scores.items():
                for m, val in _metrics(s, y, sat, w, v, background).items():
                    boot[h][m][b] = val
        entry: dict[str, Any] = {"rows": int(mask.sum()), "clicks": int(y[mask].sum()), "members": int(np.unique(member[mask]).size)}
        for h in scores:
            entry[h] = {m: {"value": point[h][m], "ci95": _ci(boot[h][m])} for m in _METRICS}
        entry["lift"] = {
            m: {"value": point["weighted"][m] - point["default"][m], "ci95": _ci(boot["weighted"][m] - boot["default"][m])}
            for m in _METRICS
        }
        table[name] = entry
    return table


def _ci(x: np.ndarray) -> list[float]:
    x = x[np.isfinite(x)]
    return [float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))] if x.size else [float("nan")] * 2


def _truth(cfg: WorldConfig, seed: int, test: pl.DataFrame, result: Any) -> tuple[np.ndarray, np.ndarray]:
    """True P(click) and P(satisfied click) of the test impressions (closed form of simulate.world's response model)."""
    members = world_members(cfg, seed)
    imp = result.tables["impressions"].select("session_id", "update_id", "ts", "position", "update_type")
    rows = (
        test.select(pl.col("request_id").alias("session_id"), "update_id", "ts")
        .join(imp, on=["session_id", "update_id", "ts"], how="left", maintain_order="left")
        .join(result.tables["updates"].select("update_id", "topic"), on="update_id", how="left", maintain_order="left")
        .join(result.truth_tables["updates"], on="update_id", how="left", maintain_order="left")
        .join(result.truth_tables["impressions"], on=["session_id", "position"], how="left", maintain_order="left")
    )
    codes = {t: i for i, t in enumerate(cfg.update_types)}
    utype = rows["update_type"].replace_strict(codes, return_dtype=pl.Int64).to_numpy()
    member = test["member_id"].to_numpy()
    p_eng_model, affinity = engage_probability(
        cfg, members, member, utype, rows["topic"].to_numpy().astype(np.int64), rows["quality"].to_numpy(), rows["position"].to_numpy()
    )
    p_engage = rows["p_engage"].to_numpy()  # the logged truth (equal to the closed form unless intents shift it)
    p_click = p_engage * action_probabilities(cfg, affinity, utype)[0]
    bounce = np.clip(cfg.click_bounce_prob * (1.5 - 1 / (1 + np.exp(-affinity))), 0.0, 1.0)
    print(f"truth: max |P(engage) closed form - logged| = {np.abs(p_eng_model - p_engage).max():.2e}")
    return p_click, p_click * (1 - bounce)


def _plot(table: dict[str, Any], path: Path) -> None:
    names = [k for k in table if k.startswith("decile_")]
    x = np.arange(1, len(names) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, m, title in zip(
        axes, ("auc", "auc_w", "auc_sat"), ("AUC (clicks)", "AUC (bounces weigh less)", "AUC (satisfied clicks)"), strict=True
    ):
        val = np.array([table[n]["lift"][m]["value"] for n in names])
        lo = np.array([table[n]["lift"][m]["ci95"][0] for n in names])
        hi = np.array([table[n]["lift"][m]["ci95"][1] for n in names])
        ax.errorbar(x, val, yerr=[val - lo, hi - val], fmt="o", capsize=3)
        ax.axhline(0, color="grey", lw=0.8)
        a = table["all"]["lift"][m]
        ax.set_title(f"{title}\nall: {a['value']:+.4f} [{a['ci95'][0]:+.4f}, {a['ci95'][1]:+.4f}]", fontsize=9)
        ax.set_xlabel("member-activity decile (training rows)")
        ax.set_xticks(x)
    axes[0].set_ylabel("lift: weighted - default")
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-days", type=int, default=7)
    ap.add_argument("--half", type=float, default=10.0, help="click_dwell_half_s, seconds")
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("runs/dwell_weighting"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = WorldConfig(n_members=args.members, n_days=args.days)
    result = simulate(cfg, seed=args.seed)
    t_sim = time.perf_counter() - t0
    fs = FEATURE_SETS["dwell"]
    frame = with_click_dwell(training_frame(result.tables, fs, T_SKIP_S), result.tables["impressions"])
    last = int(frame["day"].max())  # type: ignore[arg-type]
    train, test = frame.filter(pl.col("day") <= last - args.test_days), frame.filter(pl.col("day") > last - args.test_days)
    X_tr, X_te = train.select(fs.columns).to_numpy(), test.select(fs.columns).to_numpy()
    y_tr = train["click"].to_numpy()
    w_tr = click_dwell_weights(y_tr, train["click_dwell_s"].to_numpy().astype(np.float64), args.half)
    t1 = time.perf_counter()
    heads = {
        "default": GBDTLRHead(HeadConfig()).fit(X_tr, y_tr, np.random.default_rng(args.seed), label="click"),
        "weighted": GBDTLRHead(HeadConfig()).fit(X_tr, y_tr, np.random.default_rng(args.seed), label="click", sample_weight=w_tr),
    }
    t_fit = time.perf_counter() - t1
    y = test["click"].to_numpy().astype(np.float64)
    d_te = test["click_dwell_s"].to_numpy().astype(np.float64)
    w = click_dwell_weights(y.astype(bool), d_te, args.half)
    sat = (y.astype(bool) & (np.nan_to_num(d_te) >= args.half)).astype(np.float64)
    scores = {h: _scored(head.predict_proba(X_te)) for h, head in heads.items()}
    member = test["member_id"].to_numpy()
    activity = np.bincount(train["member_id"].to_numpy(), minlength=int(frame["member_id"].max()) + 1)  # type: ignore[arg-type]
    background = float(y_tr.mean())
    table = _table(scores, y, sat, w, member, _groups(member, activity), background, args.boot, np.random.default_rng(args.seed + 1))
    p_click, p_sat = _truth(cfg, args.seed, test, result)
    truth = {
        h: {
            "spearman_true_p_click": float(spearmanr(s["p"], p_click).statistic),
            "spearman_true_p_satisfied_click": float(spearmanr(s["p"], p_sat).statistic),
            "mean_pred": float(s["p"].mean()),
        }
        for h, s in scores.items()
    }
    truth["mean_true_p_click"] = float(p_click.mean())  # type: ignore[assignment]
    truth["mean_true_p_satisfied_click"] = float(p_sat.mean())  # type: ignore[assignment]
    # How far the satisfied-click truth departs from the click truth's order: the most any reweighting can gain.
    truth["spearman_true_p_click_vs_satisfied"] = float(spearmanr(p_click, p_sat).statistic)  # type: ignore[assignment]
    clicks_w = w_tr[y_tr.astype(bool)]
    kish = float(clicks_w.sum() ** 2 / np.dot(clicks_w, clicks_w))  # Kish effective number of the weighted clicks
    report = {
        "world": {"members": args.members, "days": args.days, "seed": args.seed, "t_skip_s": T_SKIP_S},
        "split": {
            "test_days": args.test_days,
            "n_train": train.height,
            "n_test": test.height,
            "train_clicks": int(y_tr.sum()),
            "train_clicks_effective": kish,
        },
        "weighting": {"click_weighting": "after_click_dwell", "click_dwell_half_s": args.half, "weight": "d / (d + h), mean 1 over clicks"},
        "bootstrap": {"replicates": args.boot, "seed": args.seed + 1, "unit": "member", "interval": "95 % percentile"},
        "metric_notes": "auc/ne: every click 1; auc_w/ne_w: test clicks weighted d/(d+h) (mean 1), the metric the weighting "
        "targets; auc_sat: label = click with after-click dwell >= h; ne background = training click rate",
        "groups": table,
        "truth": truth,
        "timing_s": {"simulate": t_sim, "fit_two_heads": t_fit, "total": time.perf_counter() - t0},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out / "dwell_weighting.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_file(args.out / "dwell_weighting.png") as tmp:
        _plot(table, tmp)
    print(f"world {args.members} x {args.days} seed {args.seed}: {train.height:,} train / {test.height:,} test rows")
    print(f"{'group':<10}" + "".join(f"{m:>26}" for m in _METRICS))
    for name, e in table.items():
        cells = "".join(
            f"{e['lift'][m]['value']:+.4f} [{e['lift'][m]['ci95'][0]:+.4f},{e['lift'][m]['ci95'][1]:+.4f}]".rjust(26) for m in _METRICS
        )
        print(f"{name:<10}{cells}")
    print(
        "default vs weighted, all:",
        {m: (round(table["all"]["default"][m]["value"], 4), round(table["all"]["weighted"][m]["value"], 4)) for m in _METRICS},
    )
    print("truth:", json.dumps(truth))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
