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
_K_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split as in fdlibm: k * _LN2_HI is exact for |k| < 2^11
_LN2_LO = 1.90821492927058770002e-10
_TREE_BLOCK = 34  # trees per instruction-cache block (lleaves' default)
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


# ---------------------------------------------------------------------------- code generation


def _trees(spec: ScorerSpec) -> tuple[list[Any], int]:
    """The lleaves tree ASTs of every booster (class_id = booster index, names made unique), and the feature count."""
    from lleaves.compiler.ast import parse_to_ast

    trees: list[Any] = []
    n_features = None
    with tempfile.TemporaryDirectory(prefix="dwellrank-native-") as tmp:
        for k, booster in enumerate(spec.boosters):
            path = Path(tmp) / f"b{k}.txt"
            path.write_text(booster.model_to_string())
            forest = parse_to_ast(str(path))
            # A feature LightGBM saw constant reads as "categorical" to lleaves; only categorical splits matter.
            if forest.n_classes != 1 or forest.average_output or any(_categorical(t.root_node) for t in forest.trees):
                raise ValueError("only single-output boosters with numerical splits compile")
            if n_features is not None and forest.n_args != n_features:
                raise ValueError("boosters over different numbers of features")
            n_features = forest.n_args
            for tree in forest.trees:
                tree.idx, tree.class_id = len(trees), k
                trees.append(tree)
    return trees, int(n_features or 0)


def _categorical(node: Any) -> bool:
    """Whether any split below ``node`` (a lleaves AST node) is categorical."""
    if node.is_leaf:
        return False
    return bool(node.decision_type.is_categorical) or _categorical(node.left) or _categorical(node.right)


def _near_zero(node: Any) -> set[int]:
    """Features of the splits below ``node`` whose outcome can change when |x| <= kZeroThreshold is read as 0.

    Those with missing type Zero (0 takes the default direction) or a threshold with |t| <= kZeroThreshold;
    elsewhere ``x <= t`` and ``0 <= t`` agree for every such x.
    """
    if node.is_leaf:
        return set()
    from lleaves.compiler.utils import MissingType

    mine = {node.split_feature} if node.decision_type.missing_type == MissingType.MZero or abs(node.threshold) <= _K_ZERO else set()
    return mine | _near_zero(node.left) | _near_zero(node.right)


def _module_ir(spec: ScorerSpec) -> tuple[str, str, int]:
    """LLVM IR texts of the module of ``dr_raw`` and of the module of ``dr_value`` for ``spec``, and the feature count."""
    from lleaves.compiler.codegen.codegen import gen_tree
    from llvmlite import ir

    trees, nf = _trees(spec)
    near_zero = set().union(*(_near_zero(t.root_node) for t in trees))
    k_out = len(spec.boosters)
    D, I64 = ir.DoubleType(), ir.IntType(64)
    DP = ir.PointerType(D)
    # Two modules: the trees (not vectorised: SLP on straight-line tree code triples the compile
    # time and the code) and the value function's column loops (vectorised).
    module = ir.Module(name="dwellrank_trees")
    vmod = ir.Module(name="dwellrank_value")
    fabs = module.declare_intrinsic("llvm.fabs", (D,))
    vfabs = vmod.declare_intrinsic("llvm.fabs", (D,))
    sqrt = vmod.declare_intrinsic("llvm.sqrt", (D,))
    rint = vmod.declare_intrinsic("llvm.rint", (D,))
    copysign = vmod.declare_intrinsic("llvm.copysign", (D,), ir.FunctionType(D, (D, D)))
    zero, one = ir.Constant(D, 0.0), ir.Constant(D, 1.0)

    funcs = []
    for tree in trees:
        fn = ir.Function(module, ir.FunctionType(D, [D] * nf), name=str(tree))
        fn.linkage = "private"
        gen_tree(tree, fn, True)
        funcs.append((fn, tree.class_id))

    def loop(builder: ir.IRBuilder, fn: ir.Function, n: ir.Value, body: Any) -> None:
        entry = builder.block
        head, core, done = fn.append_basic_block("loop"), fn.append_basic_block("body"), fn.append_basic_block("done")
        builder.branch(head)
        builder.position_at_end(head)
        i = builder.phi(I64)
        i.add_incoming(ir.Constant(I64, 0), entry)
        builder.cbranch(builder.icmp_signed("<", i, n), core, done)
        builder.position_at_end(core)
        body(builder, i)
        i.add_incoming(builder.add(i, ir.Constant(I64, 1)), builder.block)
        builder.branch(head)
        builder.position_at_end(done)

    # dr_raw(X, raw, n): raw[i, k] = booster k's raw score of row i, trees blocked for the instruction cache.
    raw_fn = ir.Function(module, ir.FunctionType(ir.VoidType(), (DP, DP, I64)), name="dr_raw")
    X, raw, n = raw_fn.args
    b = ir.IRBuilder(raw_fn.append_basic_block("entry"))
    started: set[int] = set()
    for start in range(0, len(funcs), _TREE_BLOCK):
        block = funcs[start : start + _TREE_BLOCK]
        first = {k for _, k in block} - started
        started |= {k for _, k in block}

        def body(b: ir.IRBuilder, i: ir.Value, block: list[Any] = block, first: set[int] = first) -> None:
            base = b.mul(i, ir.Constant(I64, nf))
            args = []
            for j in range(nf):
                x = b.load(b.gep(X, [b.add(base, ir.Constant(I64, j))]))
                if j in near_zero:  # LightGBM reads |x| <= kZeroThreshold as 0 (NaN stays)
                    x = b.select(b.fcmp_ordered("<=", b.call(fabs, [x]), ir.Constant(D, _K_ZERO)), zero, x)
                args.append(x)
            rbase = b.mul(i, ir.Constant(I64, k_out))
            ptrs = {k: b.gep(raw, [b.add(rbase, ir.Constant(I64, k))]) for _, k in block}
            acc = {k: (zero if k in first else b.load(p)) for k, p in ptrs.items()}
            for fn, k in block:
                acc[k] = b.fadd(b.call(fn, args), acc[k])  # 0.0 + tree 0 + tree 1 + ..., as LightGBM adds
            for k, p in ptrs.items():
                b.store(acc[k], p)

        loop(b, raw_fn, n, body)
    b.ret_void()

    # dr_value(X, scratch, out, params, n): scratch holds n * (k_out + n_heads + 1) doubles, the first
    # n * k_out of them dr_raw's raw scores; out[i] = the value function of row i.
    score_fn = ir.Function(vmod, ir.FunctionType(ir.VoidType(), (DP, DP, DP, DP, I64)), name="dr_value")
    X, raw, out, params, n = score_fn.args
    b = ir.IRBuilder(score_fn.append_basic_block("entry"))
    pv = [b.load(b.gep(params, [ir.Constant(I64, m)])) for m in range(3 * len(ACTIONS) + 3)]
    i64 = lambda v: ir.Constant(I64, v)  # noqa: E731
    dc = lambda v: ir.Constant(D, v)  # noqa: E731

    def horner(b: ir.IRBuilder, t: ir.Value, coefs: Sequence[float]) -> ir.Value:
        acc: ir.Value = dc(coefs[-1])
        for c_k in reversed(coefs[:-1]):
            acc = b.fadd(b.fmul(acc, t), dc(c_k))
        return acc

    def exp_ir(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        # exp without a libm call, so that the loop vectorises: x = k ln2 + r (Cody-Waite, |r| <= ln2/2),
        # exp(r) by its Taylor series to r^13 (truncation < 1e-17 relative), times 2^k built in the
        # exponent bits.  Within a few ulp of libm's exp; |x| clamped to 700 (exp(+-700) is 1e+-304).
        xc = b.select(b.fcmp_ordered("<", x, dc(-700.0)), dc(-700.0), b.select(b.fcmp_ordered(">", x, dc(700.0)), dc(700.0), x))
        kf = b.call(rint, [b.fmul(xc, dc(1.4426950408889634))])
        r = b.fsub(b.fsub(xc, b.fmul(kf, dc(_LN2_HI))), b.fmul(kf, dc(_LN2_LO)))
        poly = horner(b, r, [1.0 / math.factorial(k) for k in range(14)])
        scale = b.bitcast(b.shl(b.add(b.fptosi(kf, I64), i64(1023)), i64(52)), D)
        res = b.fmul(poly, scale)
        return b.select(b.fcmp_unordered("uno", x, x), x, res)  # NaN stays NaN

    def log_ir(b: ir.IRBuilder, y: ir.Value) -> ir.Value:
        # log of a finite y >= 1 without a libm call: y = 2^e m with m in [sqrt(1/2), sqrt(2)),
        # log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172, series to s^21 (< 1e-17).
        bits = b.bitcast(y, I64)
        e = b.sub(b.lshr(bits, i64(52)), i64(1023))
        m = b.bitcast(b.or_(b.and_(bits, i64(0x000FFFFFFFFFFFFF)), i64(0x3FF0000000000000)), D)
        big = b.fcmp_ordered(">", m, dc(math.sqrt(2.0)))
        m = b.select(big, b.fmul(m, dc(0.5)), m)
        ef = b.sitofp(b.select(big, b.add(e, i64(1)), e), D)
        s_ = b.fdiv(b.fsub(m, one), b.fadd(m, one))
        q = horner(b, b.fmul(s_, s_), [1.0 / (2 * k + 1) for k in range(11)])
        log_m = b.fmul(b.fmul(dc(2.0), s_), q)
        return b.fadd(b.fmul(ef, dc(_LN2_HI)), b.fadd(b.fmul(ef, dc(_LN2_LO)), log_m))

    def fast_asinh(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        # asinh(|x|) = log(|x| + sqrt(x^2 + 1)) (log(2|x|) past 1e150, where x^2 overflows), sign copied back:
        # within ~2e-16 absolute of asinh (the sum's rounding), branch-free so that the loop vectorises.
        ax = b.call(vfabs, [x])
        huge = b.fcmp_ordered(">", ax, dc(1e150))
        y = b.select(huge, ax, b.fadd(ax, b.call(sqrt, [b.fadd(b.fmul(ax, ax), one)])))
        log_y = log_ir(b, y)
        log_y = b.select(huge, b.fadd(log_y, dc(math.log(2.0))), log_y)
        res = b.call(copysign, [log_y, x])
        return b.select(b.fcmp_unordered("uno", x, x), x, res)  # NaN stays NaN

    # Column by column over the block (the block's rows stay in L2): loops without calls vectorise,
    # the polynomials for asinh and exp included.
    n_heads = len(spec.heads)
    acc = b.gep(raw, [b.mul(n, ir.Constant(I64, k_out))])  # (n_heads, n): the LR's dot products, then P(head)
    zb = b.gep(acc, [b.mul(n, ir.Constant(I64, n_heads))])  # (n,): one transformed feature
    c = np.stack(spec.coefs) if spec.coefs else np.zeros((0, nf))

    def at(ptr: ir.Value, i: ir.Value, stride: int, offset: int) -> ir.Value:
        return b.gep(ptr, [b.add(b.mul(i, ir.Constant(I64, stride)), ir.Constant(I64, offset))])

    def col(ptr: ir.Value, h: int) -> ir.Value:
        return b.gep(ptr, [b.mul(n, ir.Constant(I64, h))])

    heads_of = {h: col(acc, h) for h in range(n_heads)}
    for h in range(n_heads):
        loop(b, score_fn, n, lambda b, i, h=h: b.store(zero, b.gep(heads_of[h], [i])))
    for t_kind in ("asinh", "standard"):
        for j in range(nf):
            hs = [h for h in range(n_heads) if spec.transforms[h] == t_kind and c[h, j] != 0.0]
            if not hs:
                continue
            if t_kind == "asinh":
                loop(b, score_fn, n, lambda b, i, j=j: b.store(fast_asinh(b, b.load(at(X, i, nf, j))), b.gep(zb, [i])))
                src, stride, off = zb, 1, 0
            else:
                src, stride, off = X, nf, j

            def dot_step(
                b: ir.IRBuilder, i: ir.Value, hs: list[int] = hs, j: int = j, src: Any = src, stride: int = stride, off: int = off
            ) -> None:
                z = b.load(at(src, i, stride, off))
                for h in hs:
                    p = b.gep(heads_of[h], [i])
                    b.store(b.fadd(b.load(p), b.fmul(z, ir.Constant(D, float(c[h, j])))), p)

            loop(b, score_fn, n, dot_step)

    def sigmoid(b: ir.IRBuilder, i: ir.Value, h: int) -> None:
        p = b.gep(heads_of[h], [i])
        logit = b.fadd(b.fadd(b.load(at(raw, i, k_out, h)), b.load(p)), ir.Constant(D, float(spec.intercepts[h])))
        b.store(b.fdiv(one, b.fadd(one, exp_ir(b, b.fneg(logit)))), p)  # leaf part + Z @ coef + intercept

    for h in range(n_heads):
        loop(b, score_fn, n, lambda b, i, h=h: sigmoid(b, i, h))
    tree_k: dict[int, int] = {}  # regression index -> its raw-score column (regressions with trees)
    for r_i in range(len(spec.regs)):
        if spec.constant(r_i) is None:
            tree_k[r_i] = n_heads + len(tree_k)

            def reg_exp(b: ir.IRBuilder, i: ir.Value, k: int = tree_k[r_i]) -> None:
                p = at(raw, i, k_out, k)
                b.store(exp_ir(b, b.load(p)), p)

            loop(b, score_fn, n, reg_exp)

    def combine(b: ir.IRBuilder, i: ir.Value) -> None:
        val: dict[str, ir.Value] = {f"p_{h}": b.load(b.gep(heads_of[h_i], [i])) for h_i, h in enumerate(spec.heads)}
        for r_i, name in enumerate(spec.regs):
            const = spec.constant(r_i)
            val[name] = b.load(at(raw, i, k_out, tree_k[r_i])) if const is None else dc(float(const))
        # ranking.value.value_function, operation for operation.
        s: ir.Value = zero
        for a_i, a in enumerate(ACTIONS):
            if f"p_{a}" not in val:
                continue
            w, alpha, beta = pv[3 * a_i : 3 * a_i + 3]
            term: ir.Value = one
            if f"down_{a}" in val:
                term = b.fadd(term, b.fmul(alpha, val[f"down_{a}"]))
            if f"up_{a}" in val:
                term = b.fadd(term, b.fmul(beta, val[f"up_{a}"]))
            s = b.fadd(s, b.fmul(b.fmul(w, val[f"p_{a}"]), term))
        lam, w_long, w_dwell = pv[3 * len(ACTIONS) :]
        if "p_skip" in val:
            s = b.fsub(s, b.fmul(lam, val["p_skip"]))
        if "p_long_dwell" in val:
            s = b.fadd(s, b.fmul(w_long, val["p_long_dwell"]))
        if "dwell" in val:
            s = b.fadd(s, b.fmul(w_dwell, val["dwell"]))
        b.store(s, b.gep(out, [i]))

    loop(b, score_fn, n, combine)
    b.ret_void()
    return str(module), str(vmod), nf


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
            raw_ir, value_ir, nf = _module_ir(spec)
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
