"""DIGMN and LDA speed at the paper's scale: seconds per training epoch and LDA time.

* DIGMN: synthetic members shaped like the simulator's (session counts drawn
  from a log-normal close to the default world's history window, capped at
  ``max_sessions``), 80/10/10 split; one epoch = a pass over the training
  members plus the validation loss, as in ``fit_torch``.
* LDA: sessions drawn from the simulator's seven default intents (one intent
  per session, 1 + Poisson(3) events), deduplicated and fitted with the
  weighted batch VB of ``engagement.lda``; reports one fit at K = 7, the
  full perplexity search over 2..10, and the matched cosine to the
  generating intents.

    python bench/digmn.py [--users 200000] [--epochs 1] [--sessions 6000000] [--device cpu] [--skip-lda]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time

import numpy as np
import torch

from engagement.config import DigmnConfig, ForecastTrainConfig, LdaConfig
from engagement.digmn import DIGMN, count_parameters
from engagement.inputs import split_members
from engagement.intents import match_intents, mine_intents
from engagement.lda import dedupe_counts, fit_lda
from engagement.train import fit_torch
from simulate.intents import make_intents


def synthetic_tensors(n: int, rng: np.random.Generator, max_sessions: int = 64) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """Random inputs with the shapes and length distribution of the default world's members."""
    lengths = np.clip(np.round(rng.lognormal(np.log(15.0), 0.6, n)), 7, max_sessions).astype(np.int64)
    t = int(lengths.max())
    mask = (np.arange(t)[None, :] < lengths[:, None])[..., None]
    nu = (rng.dirichlet(np.full(10, 0.3), size=(n, t)) * mask).astype(np.float32)
    ctx = (rng.standard_normal((n, t, 7)) * mask).astype(np.float32)
    tensors = {
        "nu": torch.from_numpy(nu),
        "ctx": torch.from_numpy(ctx),
        "lengths": torch.from_numpy(lengths),
        "macro": torch.from_numpy(rng.standard_normal((n, 13)).astype(np.float32)),
        "delivery": torch.from_numpy(rng.standard_normal((n, 11)).astype(np.float32)),
    }
    return tensors, rng.integers(0, 2, n)


def bench_digmn(users: int, epochs: int, device: str, batch_size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    tensors, y = synthetic_tensors(users, rng)
    t_data = time.perf_counter() - t0
    torch.manual_seed(seed)
    profiles = torch.as_tensor(make_intents(7, rng).profiles, dtype=torch.float32)
    model = DIGMN(10, 7, 13, 11, 2, profiles, DigmnConfig())
    split = split_members(users, rng)
    cfg = ForecastTrainConfig(max_epochs=epochs, patience=epochs + 1, batch_size=batch_size, device=device)
    hist = fit_torch(model, tensors, y, split, cfg, rng, beta=1e-2)
    mean_len = float(tensors["lengths"].float().mean())
    print(
        f"DIGMN ({count_parameters(model):,} parameters), {users:,} users ({split.train.size:,} train, {split.val.size:,} val), "
        f"mean {mean_len:.1f} sessions, batch {batch_size}, device {device}, torch threads {torch.get_num_threads()}"
    )
    print(f"  synthetic data built in {t_data:.1f} s")
    for i, s in enumerate(hist.epoch_s, 1):
        print(f"  epoch {i}: {s:.1f} s  ({split.train.size / s:,.0f} train members/s)")


def bench_lda(sessions: int, seed: int, search: bool) -> None:
    rng = np.random.default_rng(seed)
    intents = make_intents(7, rng)
    t0 = time.perf_counter()
    z = rng.choice(7, size=sessions, p=intents.popularity)
    n_ev = 1 + rng.poisson(3.0, sessions)
    counts = rng.multinomial(n_ev, intents.profiles[z])
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    x, w = dedupe_counts(counts)
    t_dedupe = time.perf_counter() - t0
    print(
        f"LDA on {sessions:,} sessions ({x.shape[0]:,} distinct count vectors; generated in {t_gen:.1f} s, deduplicated in {t_dedupe:.1f} s)"
    )
    t0 = time.perf_counter()
    fit = fit_lda(x, w, 7, rng, LdaConfig())
    t_fit = time.perf_counter() - t0
    _, cos = match_intents(fit.profiles, intents.profiles)
    print(
        f"  one fit at K = 7: {t_fit:.1f} s ({fit.n_iter} EM iterations), dedupe + fit {t_dedupe + t_fit:.1f} s; "
        f"matched cosine to the generating intents {cos.mean():.3f} (min {cos.min():.3f})"
    )
    if search:
        t0 = time.perf_counter()
        found = mine_intents(counts, rng)
        t_search = time.perf_counter() - t0
        _, cos = match_intents(found.profiles, intents.profiles)
        print(
            f"  perplexity search K = 2..10 (2 restarts each, refit): {t_search:.1f} s, chose K = {found.k}, "
            f"matched cosine {cos.mean():.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sessions", type=int, default=6_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-lda", action="store_true")
    ap.add_argument("--skip-digmn", action="store_true")
    ap.add_argument("--no-search", action="store_true", help="Skip the K = 2..10 perplexity search.")
    args = ap.parse_args()
    if not args.skip_lda:
        bench_lda(args.sessions, args.seed, search=not args.no_search)
    if not args.skip_digmn:
        bench_digmn(args.users, args.epochs, args.device, args.batch_size, args.seed)


if __name__ == "__main__":
    main()
