"""GLMix pass speed: the batched random-effect fits against a per-entity Python loop of the same maths.

Synthetic data: ``--members`` members with lognormal activity (sd 1) share
``--rows`` impressions; ``--updates`` updates; the member block has
``--member-p`` features (a one-hot update type over 5 types, optionally a
one-hot topic over ``--topics`` topics, then dense columns; ``--member-p 17
--topics 12`` is the shape of :func:`ranking.glmix_data.glmix_designs`), the update block ``--update-p`` (an intercept plus dense columns).
Planted coefficients N(0, 0.5^2), a N(0, 1) offset for the fixed effect.

Timed (one run each, seed ``--seed``), as wall-clock and as process CPU time
(the machine's 2 cores are shared: CPU time is the steadier figure; the
batched fit is single-threaded NumPy):

* **batched**: one block-coordinate pass over both blocks
  (``GlmixModel(GlmixConfig(n_passes=1)).fit``), the rows' sort by entity
  included, and separately the Newton steps alone;
* **reference**: a plain Python loop over entities, each entity's rows taken
  from the sorted block and fitted by the same Newton steps (same start, same
  step cap, same number of steps as the batched fit took), on the first
  ``--reference-entities`` members and updates only; its time per entity is
  extrapolated to all entities (stated in the output).  Its coefficients are
  checked against the batched ones.

Goal (issue 17): a pass on 1M members x 20M impressions within 60 s on 2 cores.

Measured 2026-12-02, defaults (1M members x 20M rows, 2M updates, seed 0),
one run each, 2 shared cores (load average 1.7-6.4 during the runs), before
(commit 2debd22: products over every feature and row, ``np.linalg.solve``)
and after (indicator features as gathers and weighted bincounts, a
vectorised sparse Cholesky, no full feature matrix):

=========================  ==================  ==================
                           before              after
=========================  ==================  ==================
``--member-p 17 --topics 12`` (the realistic shape)
pass, wall / CPU           91.5 s / 86.0 s     26.1 s / 26.0 s
Newton CPU member/update   43.7 s / 10.3 s     7.6 s / 5.8 s
reference / pass (CPU)     10.4x               31.2x
peak RSS                   9.30 GiB            7.00 GiB
``--member-p 8`` (5 one-hot + 3 dense)
pass, wall / CPU           63.7 s / 56.8 s     29.6 s / 29.6 s
Newton CPU member/update   24.6 s / 11.7 s     10.8 s / 8.2 s
reference / pass (CPU)     21.8x               30.6x
peak RSS                   6.01 GiB            6.00 GiB
=========================  ==================  ==================

Max |coef diff| reference loop vs batched: 2.2e-16 .. 3.3e-16 in every run.

    python bench/glmix.py [--members 1000000] [--rows 20000000] [--updates 2000000] [--seed 0]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import resource
import time

import numpy as np
from threadpoolctl import threadpool_limits

from ranking.glmix import EffectDesign, GlmixConfig, GlmixModel
from ranking.glmix_solve import SortedBlock, block_scores, newton_fit, sort_block


def synthetic(members: int, rows: int, updates: int, member_p: int, update_p: int, topics: int, rng: np.random.Generator):
    """Labels, offset and the two blocks' designs of a planted GLMix."""
    activity = rng.lognormal(0.0, 1.0, members)
    member = np.searchsorted(np.cumsum(activity / activity.sum()), rng.random(rows)).astype(np.int64)
    member = np.minimum(member, members - 1)
    update = rng.integers(0, updates, rows, dtype=np.int64)
    n_types = min(5, member_p)
    n_topics = min(topics, member_p - n_types)
    Xm = np.zeros((rows, member_p))
    Xm[np.arange(rows), rng.integers(0, n_types, rows)] = 1.0
    if n_topics:
        Xm[np.arange(rows), n_types + rng.integers(0, n_topics, rows)] = 1.0
    if member_p > n_types + n_topics:
        Xm[:, n_types + n_topics :] = rng.standard_normal((rows, member_p - n_types - n_topics))
    Xu = np.ones((rows, update_p))
    if update_p > 1:
        Xu[:, 1:] = rng.standard_normal((rows, update_p - 1))
    offset = rng.standard_normal(rows)
    eta = offset.copy()
    for ids, X, n in ((member, Xm, members), (update, Xu, updates)):
        coef = rng.normal(0.0, 0.5, (n, X.shape[1]))
        for a in range(0, rows, 2_000_000):  # chunks: a (rows, p) gather of all rows at once would double the memory
            eta[a : a + 2_000_000] += np.einsum("ij,ij->i", X[a : a + 2_000_000], coef[ids[a : a + 2_000_000]])
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-eta))).astype(np.float64)
    return (
        y,
        offset,
        [
            EffectDesign("member", "member_id", member, Xm, tuple(f"m{j}" for j in range(member_p))),
            EffectDesign("update", "update_id", update, Xu, tuple(f"u{j}" for j in range(update_p))),
        ],
    )


def loop_reference(
    block: SortedBlock, y: np.ndarray, offset: np.ndarray, var: float, steps: int, max_step: float, n_entities: int
) -> np.ndarray:
    """The same Newton steps, one entity at a time (a Python loop over the first ``n_entities`` entities)."""
    p = block.p
    out = np.zeros((n_entities, p))
    for k in range(n_entities):
        a, b = block.starts[k], block.starts[k + 1]
        X, yy, off = block.features(a, b), y[a:b], offset[a:b]
        w = np.zeros(p)
        for _ in range(steps):
            mu = 1.0 / (1.0 + np.exp(-(off + X @ w)))
            g = X.T @ (mu - yy) + w / var
            H = (X * (mu * (1 - mu))[:, None]).T @ X + np.eye(p) / var
            d = np.linalg.solve(H, g)
            big = np.abs(d).max()
            w -= d * min(1.0, max_step / max(big, 1e-300))
        out[k] = w
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--updates", type=int, default=2_000_000)
    ap.add_argument("--member-p", type=int, default=8)
    ap.add_argument("--update-p", type=int, default=3)
    ap.add_argument("--topics", type=int, default=0, help="a second one-hot group (topics) in the member block")
    ap.add_argument("--reference-entities", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    y, offset, designs = synthetic(args.members, args.rows, args.updates, args.member_p, args.update_p, args.topics, rng)
    t_data = time.perf_counter() - t0
    cfg = GlmixConfig(prior_var=(("member", 0.25), ("update", 0.25)), n_passes=1)
    with threadpool_limits(2):
        t0, c0 = time.perf_counter(), time.process_time()
        model = GlmixModel(cfg).fit(y, offset, designs)
        t_pass, c_pass = time.perf_counter() - t0, time.process_time() - c0
        # The Newton steps alone, block by block, as in the pass (member first, update with the member scores as offset).
        sorted_blocks = {d.name: sort_block(d.ids, d.X) for d in designs}
        t_newton, c_newton, steps, other = {}, {}, {}, offset.copy()
        refs = {}
        for d in designs:
            sb = sorted_blocks[d.name]
            t0, c0 = time.perf_counter(), time.process_time()
            coef, steps[d.name] = newton_fit(
                sb, y[sb.perm], other[sb.perm], cfg.variance(d.name), None, cfg.max_newton, cfg.newton_tol, cfg.max_step
            )
            t_newton[d.name], c_newton[d.name] = time.perf_counter() - t0, time.process_time() - c0
            n_ref = min(args.reference_entities, sb.ids.size)
            t0, c0 = time.perf_counter(), time.process_time()
            ref = loop_reference(sb, y[sb.perm], other[sb.perm], cfg.variance(d.name), steps[d.name], cfg.max_step, n_ref)
            t_ref, c_ref = time.perf_counter() - t0, time.process_time() - c0
            refs[d.name] = {
                "entities_timed": n_ref,
                "rows_timed": int(sb.starts[n_ref]),
                "seconds_timed": t_ref,
                "cpu_seconds_timed": c_ref,
                "seconds_per_entity": t_ref / n_ref,
                "extrapolated_all_entities_cpu_s": c_ref / n_ref * sb.ids.size,
                "extrapolated_all_entities_s": t_ref / n_ref * sb.ids.size,
                "max_abs_diff_vs_batched": float(np.abs(ref - coef[:n_ref]).max()),
            }
            scores = np.empty(y.size)
            scores[sb.perm] = block_scores(sb, coef)
            other = other + scores
    ref_total = sum(r["extrapolated_all_entities_s"] for r in refs.values())
    ref_cpu = sum(r["extrapolated_all_entities_cpu_s"] for r in refs.values())
    newton_total = sum(t_newton.values())
    newton_cpu = sum(c_newton.values())
    out = {
        "members": args.members,
        "rows": args.rows,
        "updates": args.updates,
        "member_p": args.member_p,
        "update_p": args.update_p,
        "topics": args.topics,
        "seed": args.seed,
        "data_seconds": t_data,
        "pass_seconds": t_pass,
        "pass_cpu_seconds": c_pass,
        "newton_cpu_seconds": c_newton,
        "pass_history": model.history_,
        "newton_seconds": t_newton,
        "newton_steps": steps,
        "reference": refs,
        "reference_extrapolated_s": ref_total,
        "ratio_reference_over_newton": ref_total / newton_total,
        "ratio_reference_over_pass": ref_total / t_pass,
        "reference_extrapolated_cpu_s": ref_cpu,
        "ratio_reference_over_newton_cpu": ref_cpu / newton_cpu,
        "ratio_reference_over_pass_cpu": ref_cpu / c_pass,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    print(
        f"{args.members:,} members x {args.rows:,} rows, {args.updates:,} updates, p = {args.member_p} / {args.update_p}, seed {args.seed}"
    )
    print(
        f"one GLMix pass (sorts included): {t_pass:.1f} s wall, {c_pass:.1f} s CPU (goal 60 s); Newton steps alone {newton_total:.1f} s {t_newton}"
    )
    print(f"  Newton steps {steps}, CPU s {c_newton}")
    for name, r in refs.items():
        print(
            f"  reference loop, {name}: {r['seconds_timed']:.2f} s ({r['cpu_seconds_timed']:.2f} s CPU) on the first {r['entities_timed']:,} entities "
            f"({r['rows_timed']:,} rows) -> {r['extrapolated_all_entities_s']:.0f} s extrapolated per entity; "
            f"max |coef diff| {r['max_abs_diff_vs_batched']:.1e}"
        )
    print(f"reference / batched Newton: {out['ratio_reference_over_newton']:.1f}x wall, {out['ratio_reference_over_newton_cpu']:.1f}x CPU")
    print(f"reference / whole pass:     {out['ratio_reference_over_pass']:.1f}x wall, {out['ratio_reference_over_pass_cpu']:.1f}x CPU")
    print(f"peak RSS {out['peak_rss_gib']:.2f} GiB")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
