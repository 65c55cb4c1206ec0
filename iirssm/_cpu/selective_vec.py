"""The selective scan's state loop for its default rule, written as explicit vector code.

What it computes is :func:`iirssm._cpu.selective._advance`'s loop over the states
for one sample, mamba's rule with every ``dt·A`` known to be <= 0 (real states):
for each state ``n``, with the ``W`` lanes as one vector::

    e = expm1(dt·A[n])                 (for dt·A <= 0, below)
    h[n] = (h[n] + e·h[n]) + (dt·u)·B[n]
    y   += C[n]·h[n]

operation for operation as Numba compiles the loop written in Python (the same
constants, the same fused multiply-adds), so the results are bitwise the same
(``tests/test_selective.py``; the one exception: a ``dt·A`` of magnitude below twice
the smallest normal number, where this expm1 is exact and ``vexpm1`` is not).

Why it exists: compiled from Python, the lane loop is one vector iteration per
state, but LLVM re-derives every row address from the arrays' run-time strides,
materialises each of the exp's constants from its 64-bit address, and runs out of
general registers (the loop had 79 instructions per state, 33 of them vector
ones, and ran at about 27 cycles per state on the AVX-512 VM; a C version with
intrinsics, 15). Here the constants are splatted once per sample, rows are
addressed by ``n·W``, the B/C choice is a select, and the read-out sum ``y`` is a
register: ``docs/performance.md``, "The state loops as vector code".

The exp's constants live here and ``selective.py``'s Python versions read them,
so the two cannot drift apart.
"""

import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.core import types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from ._vecir import VecIR

__all__ = ["mamba_rows", "mamba_reverse_rows", "V_ROWS", "S_ROWS", "W", "LOG2E", "SHIFT32",
           "SHIFT64", "LN2_32", "LN2_64", "P32", "P64", "LO32", "LO64"]

#: lanes per vector: selective.W (asserted there).
W = 16

# Cody-Waite reduction and polynomials of ``selective._q32`` / ``_q64`` (see there).
LOG2E = 1.4426950408889634
SHIFT64 = 1.5 * 2.0**52
SHIFT32 = 1.5 * 2.0**23
#: ln2 split (high part exact in products with k), float32 and float64.
LN2_32 = (0.693145751953125, 1.428606765330187045e-06)
LN2_64 = (6.93147180369123816490e-01, 1.90821492927058770002e-10)
#: P(r) of exp(r) - 1 = r + r²·P(r), highest degree first (Horner's order).
P32 = (0.001385816023685038, 0.00836667325347662, 0.041667595505714417,
       0.16666541993618011, 0.4999999701976776)
P64 = (1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
       1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0,
       1.0 / 6.0, 0.5)
#: below these expm1 rounds to -1: the argument is clamped there.
LO32 = -30.0
LO64 = -60.0

#: rows of the backward's per-lane scratch ``V`` (flat, ``row·W + lane``): dt, u, dy,
#: dĀ/dz, g, ∂g/∂dt, ∂g/∂A, and the sums over the states of the dt and u gradients.
V_ROWS = ("DT", "U", "DYF", "DA", "G", "GT", "GA", "ACC_DT", "ACC_U")
#: rows of the per-(state, lane) accumulators ``S`` (flat, ``(n·4 + row)·W + lane``):
#: the adjoint λ and the A, B, C gradients.
S_ROWS = ("LAM", "GA", "GB", "GC")


def _float_consts(fty):
    if fty.bitwidth == 64:
        return dict(np=np.float64, ity=ir.IntType(64), bias=1023, mant=52, shift=SHIFT64,
                    ln2=LN2_64, poly=P64, lo=LO64,
                    shift_bits=int(np.float64(SHIFT64).view(np.int64)))
    return dict(np=np.float32, ity=ir.IntType(32), bias=127, mant=23, shift=SHIFT32,
                ln2=LN2_32, poly=P32, lo=LO32,
                shift_bits=int(np.float32(SHIFT32).view(np.int32)))


def _literal_bool(t):
    return isinstance(t, types.BooleanLiteral)


@intrinsic
def mamba_rows(typingctx, Al, hl, Bl, Cl, Bw, boff, btv, Cw, coff, ctv, dtb, ub, tt, yb, he,
               ho, store, readout):
    """One sample ``tt`` of the state loop (module docstring), in kernels only.

    ``Al``, ``hl``, ``Bl``, ``Cl``: ``(N, W)``; ``dtb``, ``ub``, ``yb``: ``(TB, W)``;
    ``Bw``/``Cw`` the kernels' B/C arrays, ``boff``/``coff`` the flat offset of this
    sample's ``B[.., 0]``/``C[.., 0]`` (always read, so in bounds; used when
    ``btv``/``ctv``, else the rows ``Bl``/``Cl``); ``he`` flat, ``ho`` the offset of
    state 0's ``(a - 1, h)`` pair (written when ``store``); ``y`` goes to ``yb[tt]``
    when ``readout``.
    ``store`` and ``readout`` must be literals. All arrays C-contiguous, of one real
    dtype; the caller guarantees the offsets are inside the arrays (no bounds
    check).
    """
    arrays = (Al, hl, Bl, Cl, Bw, Cw, dtb, ub, yb, he)
    if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays):
        return None
    fty = Al.dtype
    if not isinstance(fty, types.Float) or any(a.dtype != fty for a in arrays):
        return None
    if not (all(a.ndim == 2 for a in (Al, hl, Bl, Cl, dtb, ub, yb)) and he.ndim == 1
            and hl.mutable and yb.mutable and he.mutable):     # (the arrays it writes)
        return None
    if not (all(isinstance(i, types.Integer) for i in (boff, coff, tt, ho))
            and isinstance(btv, types.Boolean) and isinstance(ctv, types.Boolean)
            and _literal_bool(store) and _literal_bool(readout)):
        return None
    do_store = store.literal_value
    do_read = readout.literal_value
    k = _float_consts(fty)
    sig = types.none(Al, hl, Bl, Cl, Bw, boff, btv, Cw, coff, ctv, dtb, ub, tt, yb, he, ho,
                     store, readout)

    def codegen(context, builder, signature, args):
        st = signature.args
        a = {name: make_array(st[i])(context, builder, args[i]) for i, name in
             ((0, "A"), (1, "h"), (2, "B"), (3, "C"), (4, "Bw"), (7, "Cw"), (10, "dt"),
              (11, "u"), (13, "y"), (14, "he"))}
        v = VecIR(context, builder, fty, W)
        ity = k["ity"]
        vity = ir.VectorType(ity, W)
        fma = v.call_fma

        def const(x):
            return v.const(float(k["np"](x)))

        def iconst(x):
            return ir.Constant(vity, [ir.Constant(ity, int(x))] * W)

        # constants, once per sample
        lo, log2e, shift = const(k["lo"]), const(LOG2E), const(k["shift"])
        ln2_hi, ln2_lo = const(-k["ln2"][0]), const(-k["ln2"][1])
        poly = [const(c) for c in k["poly"]]
        one = const(1.0)
        to_bits = iconst(k["bias"] - k["shift_bits"])

        def expm1_nonpos(x):
            # selective._expm1_32/64 for x <= 0 (or NaN): with k <= 0, 2^k cannot
            # overflow, so the upper clamp goes and expm1 = s·q + (s - 1) with s = 2^k
            # directly, where _expm1_* computes 2·((s/2)·q + (s/2 - 1/2)). The same bits:
            # s - 1 and s/2 - 1/2 are exact (k >= -44 / -87 after the clamp; only
            # k < -24 / -53 round s - 1, to -1 either way) and doubling is exact, except
            # where x/2 is subnormal (|x| < 2·tiny): there (s/2)·q loses low bits and
            # this returns x, correctly rounded. One select and one addition fewer.
            xc = builder.select(builder.fcmp_ordered("<", x, lo), lo, x)
            t = fma(xc, log2e, shift)
            kf = builder.fsub(t, shift)
            r = fma(kf, ln2_lo, fma(kf, ln2_hi, xc))
            p = poly[0]
            for c in poly[1:]:
                p = fma(p, r, c)
            q = fma(builder.fmul(r, r), p, r)
            kb = builder.add(builder.bitcast(t, vity), to_bits)
            s = builder.bitcast(builder.shl(kb, iconst(k["mant"])), v.vty)
            return fma(s, q, builder.fsub(s, one))

        row = builder.mul(v.idx(args[12]), v.c64(W))
        dt = v.load(a["dt"], row)
        gu = builder.fmul(dt, v.load(a["u"], row))
        N = v.idx(cgutils.unpack_tuple(builder, a["A"].shape, 2)[0])
        ys = cgutils.alloca_once_value(builder, ir.Constant(v.vty, None))
        boff, coff, ho = v.idx(args[5]), v.idx(args[8]), v.idx(args[15])
        btv_v, ctv_v = args[6], args[9]
        with cgutils.for_range(builder, N) as loop:
            n = loop.index
            o = builder.mul(n, v.c64(W))
            h = v.load(a["h"], o)
            e = expm1_nonpos(builder.fmul(dt, v.load(a["A"], o)))
            bv = builder.load(builder.gep(a["Bw"].data, [builder.add(boff, n)]))
            bvec = builder.select(btv_v, v.splat(bv), v.load(a["B"], o))
            h = fma(gu, bvec, fma(e, h, h))
            v.store(h, a["h"], o)
            if do_read:
                cv = builder.load(builder.gep(a["Cw"].data, [builder.add(coff, n)]))
                cvec = builder.select(ctv_v, v.splat(cv), v.load(a["C"], o))
                builder.store(fma(cvec, h, builder.load(ys)), ys)
            if do_store:
                hoff = builder.add(ho, builder.mul(n, v.c64(2 * W)))
                v.store(e, a["he"], hoff)
                v.store(h, a["he"], builder.add(hoff, v.c64(W)))
        if do_read:
            v.store(builder.load(ys), a["y"], row)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def mamba_reverse_rows(typingctx, T, S, V, he, GB, GC, Bw, boff, btv, Cw, coff, ctv, tt):
    """One sample ``tt`` of the backward's reverse step over the states, mamba's rule for
    real states (``selective._reverse_block`` / ``_rev_update`` with ``dĀ/dz = e + 1``,
    ``g = dt``, ``∂g/∂dt = 1``, ``∂g/∂A = 0``), the same operations in the same order,
    with the dt and u gradient sums over the states (``V``'s ``ACC_DT``/``ACC_U``
    rows) kept in registers. Per state ``n``, with ``λ = S[LAM]``::

        λ      = C·dy + λ                 Gz = (e + 1)·(λ·h[t-1])   Gg = (B·u)·λ
        ACC_U  = (dt·B)·λ + ACC_U         ACC_DT += A·Gz + Gg
        S[GA] += dt·Gz + 0·Gg             gb = (dt·u)·λ             gc = dy·h[t]
        S[LAM] = (e + 1)·λ

    and ``gb``/``gc`` go to ``GB``/``GC`` (time-varying B/C: summed over the lanes
    later) or are added to ``S[GB]``/``S[GC]`` (time-invariant). ``T``: flat
    ``(n·3 + k)·W`` rows A, B, C; ``he``: ``(a - 1, h)`` pairs as :func:`mamba_rows`
    stores them; ``GB``/``GC``: flat ``(tt·N + n)·W``. In kernels only; the caller
    guarantees the offsets are inside the arrays (no bounds check).
    """
    arrays = (T, S, V, he, GB, GC, Bw, Cw)
    if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays):
        return None
    fty = T.dtype
    if not isinstance(fty, types.Float) or any(a.dtype != fty for a in arrays):
        return None
    if not (all(a.ndim == 1 for a in (T, S, V, he, GB, GC))
            and all(a.mutable for a in (S, V, GB, GC))               # (the arrays it writes)
            and all(isinstance(i, types.Integer) for i in (boff, coff, tt))
            and isinstance(btv, types.Boolean) and isinstance(ctv, types.Boolean)):
        return None
    sig = types.none(T, S, V, he, GB, GC, Bw, boff, btv, Cw, coff, ctv, tt)
    vr = {name: i for i, name in enumerate(V_ROWS)}
    sr = {name: i for i, name in enumerate(S_ROWS)}

    def codegen(context, builder, signature, args):
        st = signature.args
        a = {name: make_array(st[i])(context, builder, args[i]) for i, name in
             ((0, "T"), (1, "S"), (2, "V"), (3, "he"), (4, "GB"), (5, "GC"), (6, "Bw"),
              (9, "Cw"))}
        v = VecIR(context, builder, fty, W)
        fma, c64 = v.call_fma, v.c64
        one, zero = v.const(1.0), v.const(0.0)
        dt = v.load(a["V"], c64(vr["DT"] * W))
        uv = v.load(a["V"], c64(vr["U"] * W))
        dyf = v.load(a["V"], c64(vr["DYF"] * W))
        acc_dt = cgutils.alloca_once_value(builder, v.load(a["V"], c64(vr["ACC_DT"] * W)))
        acc_u = cgutils.alloca_once_value(builder, v.load(a["V"], c64(vr["ACC_U"] * W)))
        dtu = builder.fmul(dt, uv)
        N = builder.udiv(v.idx(cgutils.unpack_tuple(builder, a["T"].shape, 1)[0]),
                         c64(3 * W))
        ttv = v.idx(args[12])
        boff, coff = v.idx(args[7]), v.idx(args[10])
        btv_v, ctv_v = args[8], args[11]
        with cgutils.for_range(builder, N) as loop:
            n = loop.index
            to = builder.mul(n, c64(3 * W))
            so = builder.mul(n, c64(len(S_ROWS) * W))
            step = builder.add(builder.mul(ttv, N), n)                # tt·N + n
            ho = builder.mul(builder.add(step, N), c64(2 * W))      # ((tt + 1)·N + n)·2W
            hp = builder.add(builder.mul(step, c64(2 * W)), c64(W))  # h[t-1]
            go = builder.mul(step, c64(W))
            bv = builder.load(builder.gep(a["Bw"].data, [builder.add(boff, n)]))
            cv = builder.load(builder.gep(a["Cw"].data, [builder.add(coff, n)]))
            bval = builder.select(btv_v, v.splat(bv), v.load(a["T"], builder.add(to, c64(W))))
            cval = builder.select(ctv_v, v.splat(cv),
                                  v.load(a["T"], builder.add(to, c64(2 * W))))

            def srow(r):
                return builder.add(so, c64(sr[r] * W))

            lm = fma(cval, dyf, v.load(a["S"], srow("LAM")))
            da = builder.fadd(v.load(a["he"], ho), one)
            gz = builder.fmul(da, builder.fmul(lm, v.load(a["he"], hp)))
            gg = builder.fmul(builder.fmul(bval, uv), lm)
            builder.store(fma(builder.fmul(dt, bval), lm, builder.load(acc_u)), acc_u)
            builder.store(builder.fadd(builder.load(acc_dt), fma(v.load(a["T"], to), gz, gg)),
                          acc_dt)
            ga = fma(zero, gg, builder.fmul(dt, gz))
            v.store(builder.fadd(v.load(a["S"], srow("GA")), ga), a["S"], srow("GA"))
            gb = builder.fmul(dtu, lm)
            gc = builder.fmul(dyf, v.load(a["he"], builder.add(ho, c64(W))))
            v.store(builder.fmul(da, lm), a["S"], srow("LAM"))
            for flag, g, buf, row in ((btv_v, gb, "GB", "GB"), (ctv_v, gc, "GC", "GC")):
                with builder.if_else(flag) as (per_lane, per_state):
                    with per_lane:
                        v.store(g, a[buf], go)
                    with per_state:
                        v.store(builder.fadd(v.load(a["S"], srow(row)), g), a["S"], srow(row))
        v.store(builder.load(acc_dt), a["V"], c64(vr["ACC_DT"] * W))
        v.store(builder.load(acc_u), a["V"], c64(vr["ACC_U"] * W))
        return context.get_dummy_value()

    return sig, codegen
