"""How much can intent knowledge add?  An oracle ceiling for DIGMN on the simulated world.

DIGMN's claim is that modelling members' (drifting) intents improves the
engagement-trend forecast over macroscopic features.  On a simulated world the
true intents are known, so the most that *any* intent model could add can be
measured directly: fit one fixed learner on

  (a) ``macro``   the baselines' features: macroscopic M and latest delivery D,
                  scaled exactly as ``forecast compare`` scales them for LR and
                  LightGBM, with the same split and learner seed: this row
                  reproduces the compare's LightGBM row (``--learner
                  logistic``: its LR row; the compare picks each model's
                  random stream by the model's name);
  (b) ``+now``    (a) plus what a perfect intent model could know at forecast
                  time, from the simulator's truth: each member's true intent
                  mixture on the last history day, its base mixture, the
                  intent-implied session rate (mixture @ intents' session
                  rates) on the last history day, averaged over the history
                  window and outside phases, whether a drift phase is active at
                  the end of the history window (its intent, one-hot, and
                  rate, days elapsed), whether a disengagement spell is under
                  way (life-cycle world: days elapsed), and the shares of the
                  member's valid history sessions by their true intent; in
                  the life-cycle world the intent-implied rate is
                  ``truth/intent_paths.expected_rate`` (trends and onboarding);
  (c) ``+future`` (b) plus knowledge no forecaster has: the intent-implied rate
                  averaged over the future window and its ratio to the history
                  average, phase days in the future window, whether a phase
                  starts or ends in the future window, and disengaged days in
                  the future window.

(b) - (a) bounds what intent modelling can add at forecast time; (c) - (a)
bounds what even clairvoyant knowledge of the intent dynamics adds.  Both are
held-out numbers on the test members of the same 80/10/10 splits as the
compare (replicate ``s`` uses ``numpy.random.default_rng(s)``), for the same
members, windows and labels (:func:`engagement.build_dataset`).  The metric is
the paper's: AUROC for the session task, Macro-F1 for the day task.  With
``--intents`` (the ``intents.json`` a compare writes) or ``--lda`` (mine them
as the compare does) it also prints the LDA intents' Hungarian-matched cosine
to the true intent profiles.

    python bench/digmn_ceiling.py [--logs DIR | --members 5000 --days 28 --seed 0 --set FIELD=VALUE] [--task session]
        [--seeds 5] [--learner lightgbm] [--intents DIR/intents.json | --lda]

Without ``--logs`` the world is simulated into a temporary directory first.
Nothing is written.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/simulate.py is named like the `simulate` package; drop bench/ from the import path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import datetime as dt
import json
import tempfile
import time

import numpy as np
import polars as pl

from dwellrank_logs.io import table_path
from engagement import (
    MODELS,
    EngagementData,
    Intents,
    LdaConfig,
    WindowConfig,
    build_dataset,
    match_intents,
    mine_intents,
    read_logs,
    split_members,
)
from engagement.experiment import baseline_features, fit_feature_baseline
from engagement.metrics import primary_metric

FEATURE_SETS = ("macro", "+now", "+future")


def oracle_features(logs: Path, data: EngagementData) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Oracle intent features of ``data``'s members from the truth written beside the logs.

    Returns
    -------
    now : ndarray, shape (N, P)
        Knowable at forecast time by a perfect intent model (set (b)).
    future : ndarray, shape (N, Q)
        About the future window (added in set (c)).
    now_names, future_names : list of str
    """
    truth = json.loads((logs / "truth.json").read_text())
    rate = np.array([i["session_rate"] for i in truth["intents"]])  # (K,) sessions/day wholly in intent k
    k = rate.size
    n_days = int(truth["config"]["n_days"])
    h, f = data.window.history_days, data.window.future_days
    off = (data.start.date() - dt.date.fromisoformat(truth["config"]["start_date"])).days
    if off < 0 or off + h + f > n_days:
        raise SystemExit(f"windows (day {off} + {h} + {f}) fall outside the simulated {n_days} days")
    h0, h1, f1 = off, off + h, off + h + f  # history [h0, h1), future [h1, f1), simulator days

    # Daily true mixtures, (members, days, K); the world's member ids are 0..n-1.
    paths = pl.read_parquet(logs / "truth" / "intent_paths.parquet").sort("member_id", "day")
    n_world = paths["member_id"].n_unique()
    if paths.height != n_world * n_days or paths["member_id"].max() != n_world - 1:
        raise SystemExit("truth/intent_paths.parquet is not one row per member and day with ids 0..n-1")
    mix = paths.select([f"intent_{j}" for j in range(k)]).to_numpy().reshape(n_world, n_days, k)
    rows = data.member_id
    mix = mix[rows]
    # (N, days) intent-implied sessions/day; the life-cycle world's includes the phases' trends and onboarding.
    life = "expected_rate" in paths.columns
    day_rate = paths["expected_rate"].to_numpy().reshape(n_world, n_days)[rows] if life else mix @ rate
    base = pl.read_parquet(logs / "truth" / "members.parquet").sort("member_id")
    base_mix = base.select([f"base_intent_{j}" for j in range(k)]).to_numpy()[rows]
    hist_rate = day_rate[:, h0:h1].mean(axis=1)
    fut_rate = day_rate[:, h1:f1].mean(axis=1)

    # Drift phases: active at the end of the history window, starting / ending in the future window.
    ph = pl.read_parquet(logs / "truth" / "phases.parquet")
    pos = np.full(n_world, -1)
    pos[rows] = np.arange(rows.size)
    p_row = pos[ph["member_id"].to_numpy()]
    keep = p_row >= 0
    p_row = p_row[keep]
    p_int, first, last = (ph[c].to_numpy()[keep] for c in ("intent", "first_day", "last_day"))
    n = rows.size
    active = (first <= h1 - 1) & (last >= h1 - 1)
    phase_on = np.zeros(n)
    phase_rate = np.zeros(n)
    elapsed = np.zeros(n)
    np.maximum.at(phase_on, p_row[active], 1.0)
    np.maximum.at(phase_rate, p_row[active], rate[p_int[active]])
    np.maximum.at(elapsed, p_row[active], (h1 - first[active]).astype(float))
    phase_intent = np.zeros((n, k))  # one-hot intent of the phase under way at the end of the history
    phase_intent[p_row[active], p_int[active]] = 1.0
    starts = np.bincount(p_row[(first >= h1) & (first < f1)], minlength=n).astype(float)
    ends = np.bincount(p_row[active & (last < f1 - 1)], minlength=n).astype(float)
    covered = np.maximum(0, np.minimum(last, f1 - 1) - np.maximum(first, h1) + 1)
    fut_phase_days = np.bincount(p_row, weights=covered, minlength=n)

    # Shares of each member's valid history sessions by true intent (what LDA + DIGMN try to recover).
    valid = pl.scan_parquet(table_path(logs, "events")).select("session_id").unique()
    ts = (
        pl.scan_parquet(logs / "truth" / "sessions.parquet")
        .filter((pl.col("day") >= h0) & (pl.col("day") < h1))
        .join(valid, on="session_id", how="semi")
        .join(pl.scan_parquet(table_path(logs, "sessions")).select("session_id", "member_id"), on="session_id")
        .group_by("member_id", "intent")
        .agg(c=pl.len())
        .collect()
    )
    share = np.zeros((n, k))
    r = pos[ts["member_id"].to_numpy()]
    ok = r >= 0
    share[r[ok], ts["intent"].to_numpy()[ok]] = ts["c"].to_numpy()[ok]
    share /= np.maximum(share.sum(axis=1, keepdims=True), 1.0)

    dis_now, dis_future, dis_names = _disengagement(logs, pos, n, h1, f1)
    now = np.column_stack(
        [
            phase_intent,
            dis_now,
            mix[:, h1 - 1],
            base_mix,
            day_rate[:, h1 - 1],
            hist_rate,
            base_mix @ rate,
            day_rate[:, h1 - 1] / hist_rate,
            phase_on,
            phase_rate,
            elapsed,
            share,
        ]
    )
    now_names = (
        [f"phase_intent_{j}" for j in range(k)]
        + dis_names[: dis_now.shape[1]]
        + [f"mix_end_{j}" for j in range(k)]
        + [f"base_mix_{j}" for j in range(k)]
        + ["rate_end", "rate_hist", "rate_base", "rate_end_over_hist", "phase_on", "phase_rate", "phase_elapsed"]
        + [f"true_share_{j}" for j in range(k)]
    )
    future = np.column_stack([fut_rate, fut_rate / hist_rate, np.log(fut_rate / hist_rate), fut_phase_days, starts, ends, dis_future])
    future_names = [
        "rate_future",
        "rate_future_over_hist",
        "log_rate_ratio",
        "phase_days_future",
        "phase_starts_future",
        "phase_ends_future",
        *dis_names[dis_now.shape[1] :],
    ]
    return now, future, now_names, future_names


def _disengagement(logs: Path, pos: np.ndarray, n: int, h1: int, f1: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The life-cycle world's disengagement spells: under way at the end of the history (and for how long),
    and the spell days in the future window; no columns for a world without ``truth/disengagement``."""
    path = logs / "truth" / "disengagement.parquet"
    if not path.exists():
        return np.zeros((n, 0)), np.zeros((n, 0)), []
    sp = pl.read_parquet(path)
    r = pos[sp["member_id"].to_numpy()]
    first, last = sp["first_day"].to_numpy()[r >= 0], sp["last_day"].to_numpy()[r >= 0]
    r = r[r >= 0]
    on = (first <= h1 - 1) & (last >= h1 - 1)
    dis_on, dis_elapsed = np.zeros(n), np.zeros(n)
    dis_on[r[on]] = 1.0
    dis_elapsed[r[on]] = (h1 - first[on]).astype(float)
    covered = np.maximum(0, np.minimum(last, f1 - 1) - np.maximum(first, h1) + 1)
    future_days = np.bincount(r, weights=covered, minlength=n)
    return np.column_stack([dis_on, dis_elapsed]), future_days[:, None], ["disengaged", "disengaged_days", "disengaged_days_future"]


def run(data: EngagementData, task: str, now: np.ndarray, future: np.ndarray, seeds: int, learner: str) -> list[dict]:
    """Test metrics of each feature set on each replicate's split."""
    y = data.labels(task)
    lgbm_child = MODELS.index("LightGBM")
    out = []
    for s in range(seeds):
        rng = np.random.default_rng(s)
        split = split_members(data.n_members, rng)  # the compare's split of replicate s
        # The compare spawns one child per name in MODELS; LightGBM's draws its seed first: reuse it.
        seed = int(rng.spawn(len(MODELS))[lgbm_child].integers(0, 2**31 - 1))
        xa = baseline_features(data, split)
        extra = np.column_stack([now, future])
        mu, sd = extra[split.train].mean(axis=0), extra[split.train].std(axis=0)
        extra = (extra - mu) / np.where(sd > 1e-12, sd, 1.0)  # oracle columns scaled on the training members too
        p = now.shape[1]
        for name, x in (("macro", xa), ("+now", np.column_stack([xa, extra[:, :p]])), ("+future", np.column_stack([xa, extra]))):
            metrics, _ = fit_feature_baseline("LightGBM" if learner == "lightgbm" else "LR", task, x, y, split, seed)
            out.append({"seed": s, "features": name, **metrics})
    return out


def lda_cosine(logs: Path, data: EngagementData, intents_path: str | None) -> tuple[Intents, np.ndarray]:
    """LDA intents (from ``intents_path`` or mined as the compare mines them) and their matched cosine to the truth."""
    if intents_path:
        intents = Intents.from_dict(json.loads(Path(intents_path).read_text()))
    else:
        intents = mine_intents(data.session_counts, np.random.default_rng(0), LdaConfig())
    true = np.array([i["profile"] for i in json.loads((logs / "truth.json").read_text())["intents"]])
    _, cos = match_intents(intents.profiles, true)
    return intents, cos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--logs", default=None, help="A simulated run (logs + truth/); default: simulate one")
    ap.add_argument("--members", type=int, default=5000)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=0, help="World seed when simulating")
    ap.add_argument("--seeds", type=int, default=5, help="Split replicates 0..seeds-1, as in forecast compare")
    ap.add_argument("--task", choices=("session", "day"), default="session")
    ap.add_argument("--history-days", type=int, default=14)
    ap.add_argument("--future-days", type=int, default=14)
    ap.add_argument("--min-sessions", type=int, default=7)
    ap.add_argument("--learner", choices=("lightgbm", "logistic"), default="lightgbm")
    ap.add_argument("--intents", default=None, help="intents.json of a compare run: print its matched cosine to the truth")
    ap.add_argument("--lda", action="store_true", help="Mine LDA intents as the compare does and print their matched cosine")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="WorldConfig field when simulating (repeatable)")
    args = ap.parse_args()

    tmp = None
    t0 = time.perf_counter()
    if args.logs is None:
        from simulate import WorldConfig, simulate, write_simulation
        from simulate.config import parse_overrides

        tmp = tempfile.TemporaryDirectory()
        logs = Path(tmp.name) / "logs"
        cfg = WorldConfig(n_members=args.members, n_days=args.days, **parse_overrides(args.set))
        write_simulation(simulate(cfg, seed=args.seed), logs)
        print(f"simulated {args.members} members x {args.days} days, seed {args.seed} ({time.perf_counter() - t0:.1f} s)")
    else:
        logs = Path(args.logs)
    window = WindowConfig(history_days=args.history_days, future_days=args.future_days, min_history_sessions=args.min_sessions)
    data = build_dataset(read_logs(logs), window)
    now, future, now_names, future_names = oracle_features(logs, data)
    runs = run(data, args.task, now, future, args.seeds, args.learner)
    metric = primary_metric(args.task)
    other = "macro_f1" if metric == "auroc" else "auroc"
    y = data.labels(args.task)
    print(
        f"{logs}: {data.n_members} members pass the filter, {args.task}-level task, class shares "
        f"{np.round(np.bincount(y) / y.size, 3).tolist()}, {args.learner}, split replicates 0..{args.seeds - 1}"
    )
    print(
        f"features: macro {data.macro.shape[1] + data.delivery.shape[1]} (M + D), +now {len(now_names)} oracle columns, "
        f"+future {len(future_names)} more ({', '.join(future_names)})"
    )
    head = f"{'features':<10} {metric:>16} {other:>16} {'gain (' + metric + ')':>20}"
    print(head)
    print("-" * len(head))
    base = np.array([r[metric] for r in runs if r["features"] == "macro"])
    for name in FEATURE_SETS:
        v = np.array([r[metric] for r in runs if r["features"] == name])
        o = np.array([r[other] for r in runs if r["features"] == name])
        g = (v - base) * 100
        gain = "" if name == "macro" else f"{g.mean():+.2f} ± {g.std():.2f} pts"
        print(f"{name:<10} {v.mean():.3f} ± {v.std():.3f} {o.mean():.3f} ± {o.std():.3f} {gain:>20}")
    print("(mean ± population std over replicates; gain = paired per-replicate difference to 'macro', points)")
    if args.intents or args.lda:
        intents, cos = lda_cosine(logs, data, args.intents)
        print(
            f"LDA: K = {intents.k}; matched cosine to the {len(json.loads((logs / 'truth.json').read_text())['intents'])} "
            f"true intents: mean {cos.mean():.3f}, min {cos.min():.3f} ({', '.join(f'{c:.3f}' for c in cos)})"
        )
    print(f"({time.perf_counter() - t0:.1f} s)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
