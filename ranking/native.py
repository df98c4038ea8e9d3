"""The folded forests and the whole value function compiled to machine code (LLVM, through lleaves).

:class:`ranking.forest.CompiledForest` evaluates the trees with numpy; the
value function then adds, per head, the LR over ``asinh`` of the raw features,
a sigmoid, the regressions' ``exp`` and the weighted combination, each a full
pass over the rows.  :class:`NativeScorer` compiles all of it into one native
loop per row block:

* the trees of every booster (the heads' folded boosters, whose leaf values
  are the LR's leaf weights, and the regressions' boosters) become straight-line
  code through lleaves' tree code generator (``lleaves.compiler``); a root
  function written here evaluates them for a block of rows in LightGBM's order
  (``0.0 + tree 0 + tree 1 + ...``, with |x| <= 1e-35 read as 0 as LightGBM reads
  it), so the raw scores equal ``Booster.predict(X, raw_score=True)`` bit for bit;
* a second function computes, column by column over the same block of rows
  (vectorised by LLVM for the host's SIMD width), the heads' logits
  ``raw + sum_j c_j asinh(x_j) + b``, the sigmoids, the regressions' ``exp`` and
  the value of :func:`ranking.value.value_function` with the same operations in
  the same order; ``asinh`` and ``exp`` are inlined polynomials (no libm call,
  which would stop the vectoriser), each within a few ulp of libm's; the weights
  are an argument, so one compiled object serves any weights that use the same
  predictions.

Scores agree with LightGBM's predictions plus the folded LR to about 1e-15
relative (the polynomials' last-place errors, and the LR's dot product summed
in another order than numpy's BLAS), checked at every build and load against
the numpy path on probe rows (tolerance 1e-12).

Compiled objects are cached in a directory (``DWELLRANK_NATIVE_CACHE``, default
``$XDG_CACHE_HOME/dwellrank/native`` or ``~/.cache/dwellrank/native``) under a key
of the model's fingerprint (its manifest's sha256 when loaded from a directory,
else a hash of the trees and coefficients), the predictions compiled, this
module's code version, lleaves' and llvmlite's versions and the host CPU.  An
entry holds its key and the sha256 of its payload; one that does not match is
rebuilt and replaced (atomically), never used.  ``DWELLRANK_NATIVE=0`` (or
``off``/``numpy``) turns the backend off; without lleaves it is off.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import math
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwellrank_logs.schema import ACTIONS
from ranking.native_ir import module_ir

__all__ = [
    "NativeScorer",
    "ScorerSpec",
    "available_cpus",
    "build_native",
    "native_available",
    "native_cache_dir",
    "native_stats",
    "value_params",
]

#: Bumped whenever the generated code changes, so that old cache entries are not read.
_CODE_VERSION = 5
_MAGIC = b"DWRNAT1\n"
_VECTORISE_TREES = True  # SLP on the trees measured 2.1x the raw scores/s (and 1.5x the value function)
_CHUNK = 1024  # rows per native call: the block of X and the scratch stay in L2
#: Rows from which a second thread pays for itself (thread hand-off costs ~50 us).
_MIN_ROWS_PER_THREAD = 16384

_lock = threading.RLock()  # build_native holds it while its check scores (which may start the pool)
_stats = {"compiled": 0, "loaded": 0, "rejected": 0}
_executors: dict[int, ThreadPoolExecutor] = {}


def native_stats() -> dict[str, int]:
    """Counts of native builds in this process: ``compiled`` (LLVM ran), ``loaded`` (from the cache), ``rejected`` (bad entries)."""
    return dict(_stats)


def available_cpus(cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: its affinity mask, capped by the cgroup's CPU quota (at least 1).

    ``os.cpu_count()`` counts the host's CPUs, not a container's share; the
    quota is ``cpu.max`` (cgroup v2: ``"<quota> <period>"`` or ``"max ..."``)
    or ``cpu/cpu.cfs_quota_us`` over ``cpu/cpu.cfs_period_us`` (v1), rounded up.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    root = Path(cgroup_root)
    quota: float | None = None
    try:
        q, period = (root / "cpu.max").read_text().split()[:2]
        quota = None if q == "max" else float(q) / float(period)
    except (OSError, ValueError, ZeroDivisionError):
        try:
            q1 = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
            p1 = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            quota = q1 / p1 if q1 > 0 and p1 > 0 else None
        except (OSError, ValueError):
            quota = None
    if quota is not None and quota > 0:
        n = min(n, math.ceil(quota))
    return max(1, n)


def native_available() -> bool:
    """Whether the native backend can be used: lleaves importable and not turned off by ``DWELLRANK_NATIVE``."""
    if os.environ.get("DWELLRANK_NATIVE", "").strip().lower() in ("0", "off", "false", "no", "numpy"):
        return False
    try:
        import lleaves.compiler  # noqa: F401
        import llvmlite.binding  # noqa: F401
    except ImportError:
        return False
    return True


def native_cache_dir() -> Path:
    """Where compiled objects are kept (``DWELLRANK_NATIVE_CACHE``, else the user cache directory)."""
    env = os.environ.get("DWELLRANK_NATIVE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dwellrank" / "native"


@dataclass(frozen=True)
class ScorerSpec:
    """What one native scorer computes.

    Parameters
    ----------
    boosters : sequence of lightgbm.Booster
        Heads' folded boosters first (in ``heads`` order), then those of the regressions with
        trees (in ``regs`` order).
    heads : tuple of str
        Head names (``click``, ..., ``skip``, ``long_dwell``); output ``p_<head>``.
    coefs : tuple of ndarray, shape (n_features,)
        Each head's LR weights of the transformed raw features.
    intercepts : tuple of float
    transforms : tuple of str
        Each head's raw transform, ``"asinh"`` or ``"standard"`` (identity).
    regs : tuple of str
        Regression names (``down_<a>``, ``up_<a>``, ``dwell``); output ``exp(raw score)``.
    fingerprint : str
        Identifies the model's content (its manifest's sha256, or a hash of trees and coefficients).
    constants : tuple of (float or None), optional
        Per regression: its constant prediction when it was fitted without trees
        (too few rows), else None; default: every regression has trees.
    """

    boosters: Sequence[Any]
    heads: tuple[str, ...]
    coefs: tuple[np.ndarray, ...]
    intercepts: tuple[float, ...]
    transforms: tuple[str, ...]
    regs: tuple[str, ...]
    fingerprint: str
    constants: tuple[float | None, ...] = ()

    def constant(self, r_i: int) -> float | None:
        """The constant prediction of regression ``r_i`` (fitted without trees), or None when it has trees."""
        return self.constants[r_i] if r_i < len(self.constants) else None

    def outputs(self) -> tuple[str, ...]:
        return (*(f"p_{h}" for h in self.heads), *self.regs)


def value_params(weights: Any) -> np.ndarray:
    """The weights as the compiled value function reads them: (w, alpha, beta) per action, then lambda, w_long, w_dwell."""
    vals = [v for a in ACTIONS for v in (weights.w[a], weights.alpha[a], weights.beta[a])]
    vals += [weights.skip_penalty, weights.long_dwell, weights.dwell]
    return np.ascontiguousarray(vals, dtype=np.float64)


_RAW_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_SCORE_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class NativeScorer:
    """Raw scores and value-function scores of a :class:`ScorerSpec`, from compiled code.

    Built by :func:`build_native`.  Calls release the GIL (ctypes), so large
    batches are split over threads.
    """

    def __init__(self, engine: Any, n_features: int, n_boosters: int, n_heads: int, outputs: tuple[str, ...], key: str) -> None:
        self._engine = engine  # keeps the machine code alive
        self.n_features = n_features
        self.n_boosters = n_boosters
        self.n_heads = n_heads
        self.outputs = outputs
        self.key = key
        self._raw = _RAW_T(engine.get_function_address("dr_raw"))
        self._value = _SCORE_T(engine.get_function_address("dr_value"))

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a 2-D matrix with {self.n_features} columns, got shape {X.shape}")
        return X

    def _run(self, n: int, num_threads: int, work: Any) -> None:
        """``work(a, b, scratch)`` over chunks of rows ``[a, b)``, on up to ``num_threads`` threads."""
        threads = min(max(1, num_threads), max(1, n // _MIN_ROWS_PER_THREAD))

        def part(lo: int, hi: int) -> None:
            scratch = np.empty(min(_CHUNK, hi - lo) * (self.n_boosters + self.n_heads + 1))
            for a in range(lo, hi, _CHUNK):
                work(a, min(a + _CHUNK, hi), scratch)

        if threads == 1:
            part(0, n)
            return
        with _lock:
            pool = _executors.get(threads)
            if pool is None:
                pool = _executors[threads] = ThreadPoolExecutor(threads, thread_name_prefix="dwellrank-native")
        bounds = np.linspace(0, n, threads + 1).astype(int)
        for f in [pool.submit(part, int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]:
            f.result()

    def raw_scores(self, X: np.ndarray, num_threads: int = 1) -> list[np.ndarray]:
        """Raw score of each booster, shape (n_rows,) each, equal to ``Booster.predict(X, raw_score=True)``."""
        X = self._check(X)
        n, k = X.shape[0], self.n_boosters
        raw = np.empty((n, k))
        x0, r0, row_x, row_r = X.ctypes.data, raw.ctypes.data, 8 * self.n_features, 8 * k
        self._run(n, num_threads, lambda a, b, _s: self._raw(x0 + a * row_x, r0 + a * row_r, b - a))
        return [raw[:, i].copy() for i in range(k)]

    def score(self, X: np.ndarray, params: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Value-function score, shape (n_rows,), under weights given as :func:`value_params`."""
        X = self._check(X)
        params = np.ascontiguousarray(params, dtype=np.float64)
        if params.shape != (3 * len(ACTIONS) + 3,):
            raise ValueError(f"expected {3 * len(ACTIONS) + 3} value parameters, got shape {params.shape}")
        n = X.shape[0]
        out = np.empty(n)
        x0, o0, p0, row_x = X.ctypes.data, out.ctypes.data, params.ctypes.data, 8 * self.n_features

        def work(a: int, b: int, scratch: np.ndarray) -> None:
            s0 = scratch.ctypes.data
            self._raw(x0 + a * row_x, s0, b - a)
            self._value(x0 + a * row_x, s0, o0 + 8 * a, p0, b - a)

        self._run(n, num_threads, work)
        return out


def _target() -> tuple[Any, str]:
    """A target machine for the host and the host's description (CPU name and features).

    An MCJIT engine takes ownership of the machine it is given: each engine gets its own.
    """
    import llvmlite.binding as llvm

    llvm.initialize()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    cpu = llvm.get_host_cpu_name()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:
        features = ""
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu, features=features, reloc="pic", codemodel="large"), f"{cpu}|{features}"


def _cache_key(spec: ScorerSpec, host: str) -> str:
    import lleaves
    import llvmlite

    parts = [
        str(_CODE_VERSION),
        spec.fingerprint,
        ",".join(spec.outputs()),
        ",".join(spec.transforms),
        getattr(lleaves, "__version__", "?"),
        llvmlite.__version__,
        host,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _split(payload: bytes) -> list[bytes]:
    """The two object files of a cache entry's payload (the first one's length, then both)."""
    n = int.from_bytes(payload[:8], "little")
    return [payload[8 : 8 + n], payload[8 + n :]]


def _read_entry(path: Path, key: str) -> tuple[bytes, int] | None:
    """The object code and feature count of a cache entry, or None if it is absent, damaged or for another key."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(_MAGIC) + 64 + 64 + 8
    if len(data) < head or not data.startswith(_MAGIC):
        return None
    stored_key = data[len(_MAGIC) : len(_MAGIC) + 64].decode("ascii", "replace")
    digest = data[len(_MAGIC) + 64 : len(_MAGIC) + 128].decode("ascii", "replace")
    nf = int.from_bytes(data[len(_MAGIC) + 128 : head], "little")
    payload = data[head:]
    if stored_key != key or hashlib.sha256(payload).hexdigest() != digest:
        return None
    return payload, nf


def _write_entry(path: Path, key: str, payload: bytes, nf: int) -> None:
    """Write a cache entry atomically (a temporary file in the same folder, then a rename); errors are ignored."""
    blob = _MAGIC + key.encode() + hashlib.sha256(payload).hexdigest().encode() + nf.to_bytes(8, "little") + payload
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache folder: the next process compiles again
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


def _object_code(ir_text: str, tm: Any, vectorise: bool) -> bytes:
    """Optimised machine code (an object file) of the IR."""
    import llvmlite.binding as llvm

    module = llvm.parse_assembly(ir_text)
    module.triple, module.data_layout = llvm.get_process_triple(), str(tm.target_data)
    module.verify()
    pmb = llvm.PassManagerBuilder()
    pmb.opt_level = 3
    pmb.inlining_threshold = 1  # inline the tree functions into the loops
    pmb.loop_vectorize = pmb.slp_vectorize = vectorise  # the value function's column loops (SIMD exp, log, dot)
    pm = llvm.ModulePassManager()
    tm.add_analysis_passes(pm)  # the host's vector widths and costs, for the vectorisers
    pmb.populate(pm)
    pm.run(module)
    return bytes(tm.emit_object(module))


def _engine(objs: Sequence[bytes]) -> Any:
    """An MCJIT engine holding the object files ``objs`` (freshly compiled or from the cache alike).

    The object is added as a file, not through MCJIT's object-cache hooks: disposing of an
    engine with those set frees the cache twice (llvmlite 0.44), and a model's scorer is
    disposed of with the model.
    """
    import llvmlite.binding as llvm

    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _target()[0])
    for obj in objs:
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    return engine


def build_native(spec: ScorerSpec, check: Any = None) -> NativeScorer | None:
    """A :class:`NativeScorer` for ``spec``, from the cache or compiled (and then cached); None if unavailable.

    Parameters
    ----------
    spec : ScorerSpec
    check : callable, optional
        ``check(scorer) -> bool``, run on every scorer built or loaded (probe
        rows against the numpy path); a cached entry that fails it is
        rebuilt once, a fresh build that fails it gives None.
    """
    if not native_available() or not spec.boosters:
        return None
    try:
        tm, host = _target()
    except Exception:
        return None
    key = _cache_key(spec, host)
    path = native_cache_dir() / f"{key}.obj"
    outputs = spec.outputs()
    with _lock:
        entry = _read_entry(path, key)
        if entry is not None:
            try:
                engine = _engine(_split(entry[0]))
                scorer = NativeScorer(engine, entry[1], len(spec.boosters), len(spec.heads), outputs, key)
                if check is None or check(scorer):
                    _stats["loaded"] += 1
                    return scorer
            except Exception:
                pass
            _stats["rejected"] += 1
        elif path.exists():
            _stats["rejected"] += 1
        try:
            raw_ir, value_ir, nf = module_ir(spec)
            objs = [_object_code(raw_ir, tm, vectorise=_VECTORISE_TREES), _object_code(value_ir, _target()[0], vectorise=True)]
            engine = _engine(objs)
            obj = len(objs[0]).to_bytes(8, "little") + objs[0] + objs[1]
            scorer = NativeScorer(engine, nf, len(spec.boosters), len(spec.heads), outputs, key)
        except Exception:  # lleaves refuses the trees, or LLVM fails: the numpy forest serves them
            return None
        _stats["compiled"] += 1
        if check is not None and not check(scorer):
            return None
        _write_entry(path, key, obj, nf)
        return scorer
