"""Held-out lift of GLMix P(skip) over the global GBDT+LR head, by member activity.

Simulates a world (``--members`` x ``--days``, seed ``--seed``), builds the
training frame of ``--feature-set`` (``dwell`` by default: the global head
then already sees each member's not-skipped rates per type and topic), and splits it by time: the last ``--test-days`` are
the test rows; of the earlier (training) rows the last ``--valid-days`` choose
the prior variances (GLMix fitted on the rows before them, scored on them);
then:

1. the global P(skip) head (:class:`ranking.heads.GBDTLRHead`, default
   config) is fitted on all training rows; its logit is GLMix's offset;
2. GLMix (member block: update type and topic; update block: intercept) is
   refitted on all training rows with the chosen variances;
3. on the test rows, AUC and normalised entropy (background: the training
   skip rate) of both, overall, for cold members (no training rows) and by
   member-activity decile (deciles of members by training rows), with
   member-clustered bootstrap intervals (members resampled with replacement,
   ``--boot`` replicates, 95 % percentile intervals) of each metric and of
   the lift (GLMix minus global);
4. recovery: correlation of the member type effects (centred per member)
   with the simulator's true ``type_pref`` (centred), by activity decile.

Writes ``glmix_lift.json`` and ``glmix_lift.png`` into ``--out``.

With ``--latency`` it instead times a 1,000-candidate request end to end
(``FeedRanker.rank``, 1 thread) for a model trained with and one without
``pskip_glmix`` on one world (default 3000 x 14), interleaved, median of
``--requests`` (``bench/dwell_embeddings.py``'s ``request_latency``).

    python bench/glmix_lift.py [--members 3000] [--days 28] [--seed 0] [--out runs/glmix_lift]
    python bench/glmix_lift.py --latency [--members 3000] [--days 14]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parent))  # after the project, so the package `simulate` wins over bench/simulate.py

import argparse
import math
import time
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from dwellrank_logs.io import atomic_file, write_json
from ranking.features import FEATURE_SETS, training_frame
from ranking.glmix import GlmixConfig, GlmixModel
from ranking.glmix_data import MEMBER_TYPE_FEATURES, glmix_designs, world_fingerprint
from ranking.glmix_select import select_prior_variances
from ranking.heads import GBDTLRHead, HeadConfig
from ranking.metrics import normalized_entropy
from simulate import WorldConfig, simulate
from simulate.truth import world_members

GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


def _weighted(y: np.ndarray, logit: np.ndarray, w: np.ndarray, h: float) -> tuple[float, float]:
    """AUC and normalised entropy (log loss / ``h``) of rows weighted by ``w``."""
    ll = np.logaddexp(0.0, logit) - y * logit
    ne = float(np.sum(w * ll) / np.sum(w) / h)
    auc = float(roc_auc_score(y, logit, sample_weight=w)) if np.unique(y[w > 0]).size == 2 else math.nan
    return auc, ne


def _group_metrics(y, logit_g, logit_m, member_code, n_members, rate, n_boot, rng) -> dict[str, Any]:
    """Point estimates and member-clustered bootstrap intervals of both models and their lift."""
    h = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
    ones = np.ones(y.size)
    point = {"global": _weighted(y, logit_g, ones, h), "glmix": _weighted(y, logit_m, ones, h)}
    members = np.unique(member_code)
    boots = []
    for _ in range(n_boot):
        mult = np.bincount(rng.choice(members, members.size), minlength=n_members).astype(np.float64)
        w = mult[member_code]
        g, m = _weighted(y, logit_g, w, h), _weighted(y, logit_m, w, h)
        boots.append((*g, *m))
    b = np.asarray(boots)  # (B, 4): auc_g, ne_g, auc_m, ne_m

    def ci(v: np.ndarray) -> list[float]:
        return [float(np.nanquantile(v, 0.025)), float(np.nanquantile(v, 0.975))]

    return {
        "rows": int(y.size),
        "members": int(members.size),
        "skip_rate": float(y.mean()),
        "auc": {"global": point["global"][0], "glmix": point["glmix"][0], "lift": point["glmix"][0] - point["global"][0]},
        "auc_ci": {"global": ci(b[:, 0]), "glmix": ci(b[:, 2]), "lift": ci(b[:, 2] - b[:, 0])},
        "ne": {"global": point["global"][1], "glmix": point["glmix"][1], "lift": point["glmix"][1] - point["global"][1]},
        "ne_ci": {"global": ci(b[:, 1]), "glmix": ci(b[:, 3]), "lift": ci(b[:, 3] - b[:, 1])},
    }


def _plot(groups: dict[str, dict[str, Any]], path: Path) -> None:
    names = list(groups)
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, label in ((axes[0], "auc", "AUC lift (GLMix - global)"), (axes[1], "ne", "NE change (GLMix - global; < 0 is better)")):
        v = np.array([groups[n][metric]["lift"] for n in names])
        lo = np.array([groups[n][f"{metric}_ci"]["lift"][0] for n in names])
        hi = np.array([groups[n][f"{metric}_ci"]["lift"][1] for n in names])
        ax.errorbar(x, v, yerr=[v - lo, hi - v], fmt="o", capsize=3)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_title(label)
    axes[0].set_xlabel("held-out rows by member-activity decile (1 = lightest); 95% member bootstrap")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=3000)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-days", type=int, default=7)
    ap.add_argument("--valid-days", type=int, default=4)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--t-skip", type=float, default=2.5)
    ap.add_argument("--feature-set", choices=sorted(FEATURE_SETS), default="dwell", help="the global head's features")
    ap.add_argument("--out", type=Path, default=Path("runs/glmix_lift"))
    ap.add_argument("--latency", action="store_true", help="time a 1,000-candidate request with and without GLMix (world 3000 x 14)")
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    if args.latency:
        from dwell_embeddings import request_latency

        days = 14 if args.days == ap.get_default("days") else args.days
        request_latency(args.members, days, args.seed, args.requests, option="pskip_glmix")
        return
    t_start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    cfg = WorldConfig(n_members=args.members, n_days=args.days)
    res = simulate(cfg, seed=args.seed)
    frame = training_frame(res.tables, args.feature_set, args.t_skip)
    last = int(frame["day"].max())
    train = frame.filter(pl.col("day") <= last - args.test_days)
    test = frame.filter(pl.col("day") > last - args.test_days)
    cols = FEATURE_SETS[args.feature_set].columns
    X_tr, y_tr = train.select(cols).to_numpy(), train["skip"].to_numpy()
    X_te, y_te = test.select(cols).to_numpy(), test["skip"].to_numpy().astype(np.float64)

    head = GBDTLRHead(HeadConfig()).fit(X_tr, y_tr, rng.spawn(1)[0], label="skip")
    off_tr, off_te = head.decision_function(X_tr), head.decision_function(X_te)
    topics = range(cfg.n_topics)
    updates = res.tables["updates"]
    des_tr, des_te = glmix_designs(train, updates, topics), glmix_designs(test, updates, topics)

    cut = (train["day"] <= last - args.test_days - args.valid_days).to_numpy()
    fit_part = (y_tr[cut], off_tr[cut], glmix_designs(train.filter(pl.Series(cut)), updates, topics))
    valid_part = (y_tr[~cut], off_tr[~cut], glmix_designs(train.filter(pl.Series(~cut)), updates, topics))
    gcfg, table = select_prior_variances(fit_part, valid_part, GRID, GlmixConfig())
    world = world_fingerprint(res.tables["members"])
    model = GlmixModel(gcfg).fit(y_tr, off_tr, des_tr, world=world)
    logit_te = model.decision_function(off_te, des_te, world=world)

    # Member activity: training rows per member; deciles over members with any, "cold" for none.
    mem_tr = train["member_id"].to_numpy()
    mem_te = test["member_id"].to_numpy()
    n_members = int(max(mem_tr.max(), mem_te.max())) + 1
    rows = np.bincount(mem_tr, minlength=n_members)
    active = np.flatnonzero(rows > 0)
    order = np.argsort(rows[active], kind="stable")
    decile = np.full(n_members, -1)
    decile[active[order]] = (np.arange(active.size) * 10) // active.size
    rate = float(np.mean(y_tr))
    groups = {"all": _group_metrics(y_te, off_te, logit_te, mem_te, n_members, rate, args.boot, rng)}
    sel = decile[mem_te] < 0
    if sel.any():
        groups["cold"] = _group_metrics(y_te[sel], off_te[sel], logit_te[sel], mem_te[sel], n_members, rate, args.boot, rng)
    for d in range(10):
        sel = decile[mem_te] == d
        g = _group_metrics(y_te[sel], off_te[sel], logit_te[sel], mem_te[sel], n_members, rate, args.boot, rng)
        g["train_rows_per_member_median"] = float(np.median(rows[active][decile[active] == d]))
        groups[f"decile_{d + 1}"] = g
    check_ne = normalized_entropy(y_te, 1.0 / (1.0 + np.exp(-off_te)), background=rate)

    # Recovery of the simulator's type preferences by decile (P(skip) falls as the preference rises: expect < 0).
    block = model.blocks_["member"]
    nt = len(MEMBER_TYPE_FEATURES)
    est = block.coef[:, :nt] - block.coef[:, :nt].mean(axis=1, keepdims=True)
    true = world_members(cfg, args.seed).type_pref[block.ids]
    true = true - true.mean(axis=1, keepdims=True)
    dec_b = decile[block.ids]
    recovery = {"all": float(np.corrcoef(est.ravel(), true.ravel())[0, 1])}
    for d in range(10):
        s = dec_b == d
        recovery[f"decile_{d + 1}"] = float(np.corrcoef(est[s].ravel(), true[s].ravel())[0, 1])

    out = {
        "world": {"members": args.members, "days": args.days, "seed": args.seed, "fingerprint": world},
        "global_head": {"model": "GBDTLRHead(HeadConfig())", "feature_set": args.feature_set, "label": "skip", "t_skip_s": args.t_skip},
        "split": {"train_rows": train.height, "test_rows": test.height, "test_days": args.test_days, "valid_days": args.valid_days},
        "prior_variance_search": table,
        "glmix_config": {"prior_var": [list(e) for e in gcfg.prior_var], "n_passes": gcfg.n_passes},
        "fit_history": model.history_,
        "train_skip_rate": rate,
        "groups": groups,
        "ne_check_vs_ranking_metrics": {"ranking.metrics": check_ne, "here": groups["all"]["ne"]["global"]},
        "recovery_corr_type_pref": recovery,
        "bootstrap": {"replicates": args.boot, "unit": "member", "interval": "95% percentile"},
        "seconds": time.perf_counter() - t_start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "glmix_lift.json", out)
    _plot({k: v for k, v in groups.items() if k != "all"}, args.out / "glmix_lift.png")
    print(
        f"world {args.members} x {args.days} seed {args.seed}: {train.height:,} train / {test.height:,} test rows; prior_var {gcfg.prior_var}"
    )
    for name, g in groups.items():
        print(
            f"{name:>10}: rows {g['rows']:>7,}  AUC {g['auc']['global']:.4f} -> {g['auc']['glmix']:.4f} "
            f"(lift {g['auc']['lift']:+.4f} [{g['auc_ci']['lift'][0]:+.4f}, {g['auc_ci']['lift'][1]:+.4f}])  "
            f"NE {g['ne']['global']:.4f} -> {g['ne']['glmix']:.4f} ({g['ne']['lift']:+.4f} [{g['ne_ci']['lift'][0]:+.4f}, {g['ne_ci']['lift'][1]:+.4f}])"
        )
    print("recovery corr(type effect, type_pref):", {k: round(v, 3) for k, v in recovery.items()})
    print(f"wrote {args.out}/glmix_lift.json and .png in {out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
