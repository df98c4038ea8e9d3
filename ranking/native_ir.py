"""LLVM IR of the native scorer (:mod:`ranking.native`): the trees' root loop and the fused value function.

Two modules of IR per :class:`~ranking.native.ScorerSpec`: the trees of every
booster through lleaves' tree code generator, summed in LightGBM's order by a
root function over a block of rows; and the value function column by column
over the block, with ``asinh`` and ``exp`` as inlined polynomials so that LLVM
vectorises it.  :mod:`ranking.native` compiles, caches and calls them.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dwellrank_logs.schema import ACTIONS

if TYPE_CHECKING:
    from ranking.native import ScorerSpec

__all__ = ["module_ir"]

_K_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split as in fdlibm: k * _LN2_HI is exact for |k| < 2^11
_LN2_LO = 1.90821492927058770002e-10
_TREE_BLOCK = 34  # trees per instruction-cache block (lleaves' default)


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


def module_ir(spec: ScorerSpec) -> tuple[str, str, int]:
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
