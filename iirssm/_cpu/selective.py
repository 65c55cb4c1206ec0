"""Kernels of the selective scan (Mamba's S6 layer) and the vectorisable exp it needs.

The selective scan is a bank of first-order recurrences, one per (batch, channel,
state) triple, whose coefficients change every sample::

    dt[t]  = softplus(delta[t] + bias)            (or delta + bias)
    h[t,n] = a(dt[t]·A[n]) · h[t-1,n] + g(dt[t], A[n]) · B[t,n] · u[t]
    y[t]   = Σ_n C[t,n] · h[t,n]                  (2·Re(...) for complex states)
    out[t] = (y[t] + D·u[t]) · silu(z[t])

Layout and fusion
-----------------
Nothing of size (batch, dim, N, L) is ever formed. A job owns a *tile* of
``W`` = 16 channels of one batch entry (the channels of a tile share their B/C
group) and walks time in blocks of ``TB`` samples:

1. prologue: the block's ``dt`` and ``u`` of the 16 channels are gathered into a
   small ``(TB, W)`` buffer (time-contiguous reads, softplus vectorised over time);
2. scan: for every sample and state ``n`` the 16 channels advance together, one
   SIMD vector (two for float64): ``exp`` is evaluated once per (channel, n, t),
   the ``N x W`` states stay in a 1-2 KB local array (L1), ``B[t, n]``/``C[t, n]``
   are one broadcast scalar each;
3. epilogue: ``D·u``, the SiLU gate and the store, vectorised over time.

For the default rule with real states, whenever every ``dt·A`` of a block is <= 0
(``A <= 0`` and ``dt >= 0``, :func:`_nonpos`: the usual case, Mamba's ``A =
-exp(A_log)`` after a softplus), the state loop of step 2 and the backward's
reverse step over the states run as explicit vector code
(:mod:`~iirssm._cpu.selective_vec`), which computes what the Python loops compute,
bit for bit (tested), in about half the instructions. The other rules, complex
states and blocks where ``dt·A`` may be positive run the loops below.

Advancing 16 independent recurrences per instruction removes the latency bound
of one multiply-add chain without reassociation, so the kernels keep IEEE
semantics (no ``fastmath``): a NaN propagates, and results do not depend on how
LLVM vectorised the loops or on the number of threads.

The decay is applied as ``h + (a - 1)·h`` with ``a - 1 = expm1(dt·A)`` computed
to full relative precision: a decay of ``1 - 1e-6`` is not representable in
float32 to better than 6 %, its distance from 1 is. This is what keeps float32
runs over 10^5 samples within 1e-5 of float64 ones.

The exp
-------
Numba does not vectorise ``math.exp`` (a libm call) and the PyPI wheels ship no
SVML, so :func:`vexp` / :func:`vexpm1` are written here: Cody-Waite range
reduction ``x = k·ln2 + r`` (``|r| <= ln2/2``), a Taylor polynomial of degree 13
(float64) or 7 (float32) for ``exp(r)``, and ``2**k`` built from its bit pattern
(an LLVM bitcast, :func:`_pow2`) as two factors, so that results that are
subnormal or near the overflow threshold are rounded once, like libm. They are
within about 1 ulp of ``np.exp`` over the whole range (``tests/test_selective.py``
checks it), return exactly 1 at 0, 0 below the underflow threshold and inf above
the overflow one, and propagate NaN. All operations are plain selects and
arithmetic, so LLVM vectorises loops calling them: about 0.5 ns per float32
value on one core, the speed of NumPy's own AVX-512 ``np.exp``.

Discretisations (``disc``): 0 ``mamba`` (``a = exp(z)``, ``g = dt``), 1 ``zoh``
(``a = exp(z)``, ``g = (exp(z) - 1)/A``, ``dt`` at ``A = 0``), 2 ``euler``
(``a = 1 + z``, ``g = dt``), 3 ``bilinear`` (``a = (1 + z/2)/(1 - z/2)``,
``g = dt/(1 - z/2)``), with ``z = dt·A``.
"""

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array

from ._jit import (FMA_FLAGS, data_address, inline, jit, kernel, prange, prefetch,
                   transpose_blocks)
from .selective_vec import (LN2_32, LN2_64, LO32, LO64, LOG2E, P32, P64, S_ROWS, SHIFT32,
                            SHIFT64, V_ROWS, mamba_reverse_rows, mamba_rows)
from .selective_vec import W as _VEC_W

__all__ = ["vexp", "vexpm1", "softplus", "scan_fwd", "scan_bwd", "W", "TB", "TB_BWD",
           "DISCRETIZATIONS"]

#: channels advanced together (one AVX-512 float32 vector; two float64 ones).
W = 16
assert W == _VEC_W  # noqa: S101 (a module constant, not user input)
#: samples per block in the forward kernel (prologue/epilogue buffers of TB x W).
TB = 64
#: checkpoint interval of the backward kernel: a segment's states (TB_BWD+1, N, W)
#: and decays (TB_BWD, N, W) are recomputed and kept while it is walked backwards.
#: 64 (133 KB for float32, N = 16: in L2) rather than 32 since the state loops became
#: vector code: the per-segment work around them weighed more (docs/performance.md).
#: A divisor of TB (the forward keeps a checkpoint at the start of every TB_BWD).
TB_BWD = 64
assert TB % TB_BWD == 0  # noqa: S101 (module constants)

DISCRETIZATIONS = ("mamba", "zoh", "euler", "bilinear")

# ----------------------------------------------------------------- elementary functions


@intrinsic
def _pow2(typingctx, k, like):
    """``2.0**k`` in ``like``'s float type, ``k`` in the normal exponent range (a bitcast)."""
    if not isinstance(like, types.Float) or not isinstance(k, types.Integer):
        return None
    fty = like

    def codegen(context, builder, signature, args):
        kv = args[0]
        if fty.bitwidth == 64:
            ity, bias, shift = ir.IntType(64), 1023, 52
        else:
            ity, bias, shift = ir.IntType(32), 127, 23
        if kv.type.width > ity.width:
            kv = builder.trunc(kv, ity)
        elif kv.type.width < ity.width:
            kv = builder.sext(kv, ity)
        bits = builder.shl(builder.add(kv, ir.Constant(ity, bias)), ir.Constant(ity, shift))
        return builder.bitcast(bits, context.get_value_type(fty))

    return fty(k, like), codegen


def vexp(x):
    """``exp(x)``: vectorisable inside Numba kernels; NumPy's ``exp`` from Python."""
    return np.exp(x)


def vexpm1(x):
    """``exp(x) - 1`` to full relative precision near 0; vectorisable inside Numba kernels."""
    return np.expm1(x)


def softplus(x):
    """``log(1 + exp(x))``, the identity above 20 (as mamba-ssm and PyTorch compute it)."""
    x = np.asarray(x)
    with np.errstate(over="ignore"):
        return np.where(x > 20, x, np.logaddexp(x * 0, x)).astype(x.dtype)


@intrinsic
def _sel(typingctx, cond, a, b):
    """``a if cond else b`` as one LLVM ``select``: no branch, no phi node.

    The helpers below are inlined into the kernels' innermost loops; written with
    selects they are straight-line code, which LLVM vectorises and which Numba's
    IR inliner handles without surprises.
    """
    if a != b or not isinstance(cond, types.Boolean):
        return None

    def codegen(context, builder, signature, args):
        return builder.select(args[0], args[1], args[2])

    return a(cond, a, b), codegen


@intrinsic
def _bits(typingctx, x):
    """The bits of a float as the signed integer of its width (a bitcast)."""
    if not isinstance(x, types.Float):
        return None
    ity = types.int64 if x.bitwidth == 64 else types.int32

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(x.bitwidth))

    return ity(x), codegen


# Cody-Waite reduction x = k·ln2 + r, |r| <= ln2/2; ln2 split so that k·LN2_HI is exact.
# k is rounded with the shifter constant 1.5·2^(p-1) (p the mantissa's bits): in
# ``t = x·log2(e) + 1.5·2^(p-1)`` the sum rounds to an integer, ``t - 1.5·2^(p-1)`` is
# that integer exactly, and the low bits of ``t`` hold it as an integer, which a
# bitcast reads. That is two additions where a floor, a float-to-integer conversion
# and a NaN guard cost five vector instructions (a conversion of NaN is undefined
# in LLVM; a bitcast is not, and a NaN argument carries its NaN through r).
# exp(r) - 1 = r + r²·P(r): float64 uses the Taylor coefficients up to r^13
# (truncation 1e-17 relative), float32 a degree-4 P fitted on Chebyshev nodes for
# minimal relative error (1.4e-8, a quarter of float32's epsilon). Clamps are
# selects on ``x < lo`` / ``x > hi``, which keep NaN.
# (The constants are selective_vec's, shared with its vector version of the state loop.)
_LOG2E = LOG2E
_SHIFT64 = SHIFT64
_SHIFT64_BITS = int(np.float64(_SHIFT64).view(np.int64))
_SHIFT32 = SHIFT32
_SHIFT32_BITS = int(np.float32(_SHIFT32).view(np.int32))
_LN2_HI, _LN2_LO = LN2_64
_LN2_HI32, _LN2_LO32 = LN2_32
_F32 = np.float32
_FM = set(FMA_FLAGS)


@inline
def _q64(xc):
    """``(k, exp(r) - 1)`` for a clamped float64 argument."""
    t = xc * _LOG2E + _SHIFT64
    kf = t - _SHIFT64
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    p = P64[0]
    p = p * r + P64[1]
    p = p * r + P64[2]
    p = p * r + P64[3]
    p = p * r + P64[4]
    p = p * r + P64[5]
    p = p * r + P64[6]
    p = p * r + P64[7]
    p = p * r + P64[8]
    p = p * r + P64[9]
    p = p * r + P64[10]
    p = p * r + P64[11]
    return _bits(t) - np.int64(_SHIFT64_BITS), r + (r * r) * p


@inline
def _q32(xc):
    t = xc * _F32(_LOG2E) + _F32(_SHIFT32)
    kf = t - _F32(_SHIFT32)
    r = (xc - kf * _F32(_LN2_HI32)) - kf * _F32(_LN2_LO32)
    p = _F32(P32[0])
    p = p * r + _F32(P32[1])
    p = p * r + _F32(P32[2])
    p = p * r + _F32(P32[3])
    p = p * r + _F32(P32[4])
    return np.int32(_bits(t) - np.int32(_SHIFT32_BITS)), r + (r * r) * p


# exp: 2^k applied as two factors so that subnormal results and those next to the
# overflow threshold are rounded once.
def _exp64(x):
    xc = _sel(x < -746.0, -746.0, x)
    xc = _sel(xc > 710.0, 710.0, xc)
    k, q = _q64(xc)
    k1 = k >> 1
    return ((q + 1.0) * _pow2(k1, x)) * _pow2(k - k1, x)


def _exp32(x):
    xc = _sel(x < _F32(-104.0), _F32(-104.0), x)
    xc = _sel(xc > _F32(89.0), _F32(89.0), xc)
    k, q = _q32(xc)
    k1 = k >> 1
    return ((q + _F32(1.0)) * _pow2(k1, x)) * _pow2(k - k1, x)


# expm1 = 2^k·(1 + q) - 1 = 2·(s·q + (s - 1/2)) with s = 2^(k-1): exact scaling for
# k = 0 (2·(q/2) = q), one rounding of s - 1/2 otherwise, and s stays finite up to
# the overflow threshold. Below -30 (float32) / -60 (float64) the result rounds to -1.
def _expm1_64(x):
    xc = _sel(x < LO64, LO64, x)
    xc = _sel(xc > 710.0, 710.0, xc)
    k, q = _q64(xc)
    s = _pow2(k - 1, x)
    return 2.0 * (s * q + (s - 0.5))


def _expm1_32(x):
    xc = _sel(x < _F32(LO32), _F32(LO32), x)
    xc = _sel(xc > _F32(89.0), _F32(89.0), xc)
    k, q = _q32(xc)
    s = _pow2(k - np.int32(1), x)
    return _F32(2.0) * (s * q + (s - _F32(0.5)))


def _cexp(x):
    e = vexp(x.real)
    return _c(complex(e * math.cos(x.imag), e * math.sin(x.imag)), x)


def _cexpm1(x):
    # exp(x) - 1 = (expm1(re) cos(im) - 2 sin^2(im/2)) + i exp(re) sin(im): no cancellation.
    re, y = x.real, x.imag
    em = vexpm1(re)
    sh = math.sin(0.5 * y)
    return _c(complex(em * math.cos(y) - 2.0 * sh * sh, (em + 1.0) * math.sin(y)), x)


@overload(vexp, jit_options={"fastmath": _FM}, inline="always")
def _ov_vexp(x):
    if x == types.float64:
        return _exp64
    if x == types.float32:
        return _exp32
    if isinstance(x, types.Complex):
        return _cexp
    return None


@overload(vexpm1, jit_options={"fastmath": _FM}, inline="always")
def _ov_vexpm1(x):
    if x == types.float64:
        return _expm1_64
    if x == types.float32:
        return _expm1_32
    if isinstance(x, types.Complex):
        return _cexpm1
    return None


def _le0(x):
    """``x <= 0`` for a real scalar; False for a complex one."""
    return x <= 0


@overload(_le0, inline="always")
def _ov_le0(x):
    if isinstance(x, types.Float):
        return lambda x: x <= _c(0, x)
    if isinstance(x, types.Complex):
        return lambda x: False
    return None


def _log1p_01(w):
    """``log1p(w)`` for ``0 <= w <= 1``: 2·atanh(s), s = w/(2+w) <= 1/3, odd series."""
    return np.log1p(w)


def _log1p_01_64(w):
    s = w / (2.0 + w)
    s2 = s * s
    p = 1.0 / 33.0
    p = p * s2 + 1.0 / 31.0
    p = p * s2 + 1.0 / 29.0
    p = p * s2 + 1.0 / 27.0
    p = p * s2 + 1.0 / 25.0
    p = p * s2 + 1.0 / 23.0
    p = p * s2 + 1.0 / 21.0
    p = p * s2 + 1.0 / 19.0
    p = p * s2 + 1.0 / 17.0
    p = p * s2 + 1.0 / 15.0
    p = p * s2 + 1.0 / 13.0
    p = p * s2 + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    return 2.0 * s + (2.0 * s) * (s2 * p)


def _log1p_01_32(w):
    s = w / (_F32(2.0) + w)
    s2 = s * s
    p = _F32(1.0 / 15.0)
    p = p * s2 + _F32(1.0 / 13.0)
    p = p * s2 + _F32(1.0 / 11.0)
    p = p * s2 + _F32(1.0 / 9.0)
    p = p * s2 + _F32(1.0 / 7.0)
    p = p * s2 + _F32(1.0 / 5.0)
    p = p * s2 + _F32(1.0 / 3.0)
    return _F32(2.0) * s + (_F32(2.0) * s) * (s2 * p)


@overload(_log1p_01, jit_options={"fastmath": _FM}, inline="always")
def _ov_log1p(w):
    if w == types.float64:
        return _log1p_01_64
    if w == types.float32:
        return _log1p_01_32
    return None


def _c(v, like):
    """The constant ``v`` in the type of ``like``.

    Numba types a bare ``1`` as int64, and ``float32 + int64`` is float64: every
    constant meeting kernel data goes through this, so float32 kernels stay float32.
    """
    return np.asarray(v, dtype=np.asarray(like).dtype)[()]


@overload(_c, inline="always")
def _ov_c(v, like):
    if isinstance(like, (types.Float, types.Complex)):
        cast = np.dtype(str(like)).type

        def impl(v, like):
            return cast(v)
        return impl
    return None


@overload(softplus, jit_options={"fastmath": _FM}, inline="always")
def _ov_softplus(x):
    if isinstance(x, types.Float):
        def impl(x):
            # log1p(exp(x)) = max(x, 0) + log1p(exp(-|x|)); the identity above 20.
            ax = _sel(x < _c(0, x), -x, x)
            sp = _sel(x > _c(0, x), x, _c(0, x)) + _log1p_01(vexp(-ax))
            return _sel(x > _c(20, x), x, sp)
        return impl
    return None


@inline
def _sigmoid(x):
    return _c(1, x) / (_c(1, x) + vexp(-x))


def _readout(y):
    """The output of a state sum: itself, or ``2·Re`` for complex states (mamba-ssm)."""
    return 2 * y.real if np.iscomplexobj(y) else y


@overload(_readout, inline="always")
def _ov_readout(y):
    if isinstance(y, types.Float):
        return lambda y: y
    if isinstance(y, types.Complex):
        return lambda y: _c(2, y.real) * y.real
    return None


def _re(x):
    return x.real


@overload(_re, inline="always")
def _ov_re(x):
    if isinstance(x, types.Float):
        return lambda x: x
    if isinstance(x, types.Complex):
        return lambda x: x.real
    return None


# ------------------------------------------------------------------- discretisation

@inline
def _phi1(z, em):
    """``(exp(z) - 1)/z`` from ``em = expm1(z)``; 1 at z = 0 (also when z underflowed)."""
    zero = z == _c(0, z)
    return em / _sel(zero, _c(1, z), z) + _sel(zero, _c(1, z), _c(0, z))


@inline
def _em_g_lanes(disc, dtb, tt, Al, n, em, gg):
    """``a - 1`` and the input gain ``g`` (B̄ = g·B) of the W lanes; one SIMD loop per rule."""
    if disc == 1:                                  # zoh: g = (exp(z) - 1)/A = dt·expm1(z)/z
        for lane in range(W):
            dt = dtb[tt, lane]
            z = dt * Al[n, lane]
            e = vexpm1(z)
            em[lane] = e
            gg[lane] = dt * _phi1(z, e)
    elif disc == 2:                                # euler
        for lane in range(W):
            dt = dtb[tt, lane]
            em[lane] = dt * Al[n, lane]
            gg[lane] = dt
    elif disc == 3:                                # bilinear
        for lane in range(W):
            dt = dtb[tt, lane]
            z = dt * Al[n, lane]
            den = _c(1, z) - _c(0.5, z) * z
            em[lane] = z / den
            gg[lane] = dt / den
    else:                                          # mamba
        for lane in range(W):
            dt = dtb[tt, lane]
            em[lane] = vexpm1(dt * Al[n, lane])
            gg[lane] = dt


@inline
def _dphi1(z, em):
    """d/dz of (exp(z) - 1)/z: Taylor sum (k+1) z^k/(k+2)! for |z| < 1/2, closed form else.

    The closed form ``(a·(z - 1) + 1)/z²`` cancels near 0; at |z| >= 1/2 it loses
    at most 3 bits. The Taylor sum to k = 14 is exact to 1e-17 for |z| < 1/2.
    """
    one = _c(1, z)
    small = abs(z) < 0.5
    f = 20922789888000.0                           # (k+2)! for k = 14
    p = _c(15.0 / f, z)
    for k in range(13, -1, -1):
        f = f / (k + 3)
        p = p * z + _c((k + 1) / f, z)
    zs = _sel(small, one, z)
    closed = ((em + one) * (zs - one) + one) / (zs * zs)
    return _sel(small, p, closed)


def _hsum16(G, o):
    """``Σ_j G[o + j]`` over ``j < 16`` by the tree of :func:`_lane_sums` (in kernels).

    ``G`` is 1-D and C-contiguous, and the caller guarantees ``o + 16 <= len(G)``
    (no bounds check): vector code for real ``G`` (:func:`_hsum16_vec`), scalar code
    for complex.
    """


@intrinsic
def _hsum16_vec(typingctx, G, o):
    """:func:`_hsum16` of a real C-contiguous 1-D array as vector code: one 16-wide
    load, then halves added (8 + 8, 4 + 4, 2 + 2, 1 + 1), the same additions in the
    same order as the scalar tree (no reassociation), so the same result."""
    if not (isinstance(G, types.Array) and G.ndim == 1 and G.layout == "C"
            and isinstance(G.dtype, types.Float) and isinstance(o, types.Integer)):
        return None
    fty = G.dtype

    def codegen(context, builder, signature, args):
        arr = make_array(signature.args[0])(context, builder, args[0])
        el = context.get_value_type(fty)
        ptr = builder.gep(arr.data, [args[1]])
        vec = builder.load(builder.bitcast(ptr, ir.PointerType(ir.VectorType(el, 16))),
                           align=fty.bitwidth // 8)

        def halves(v, n):
            lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), n),
                                                          list(range(n))))
            hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), n),
                                                          list(range(n, 2 * n))))
            return builder.fadd(lo, hi)

        v = halves(halves(halves(vec, 8), 4), 2)
        i32 = ir.IntType(32)
        return builder.fadd(builder.extract_element(v, ir.Constant(i32, 0)),
                            builder.extract_element(v, ir.Constant(i32, 1)))

    return fty(G, o), codegen


@overload(_hsum16, inline="always")
def _ov_hsum16(G, o):
    if isinstance(G.dtype, types.Float):
        return lambda G, o: _hsum16_vec(G, o)
    if isinstance(G.dtype, types.Complex):
        def impl(G, o):
            s0 = G[o] + G[o + 8]
            s1 = G[o + 1] + G[o + 9]
            s2 = G[o + 2] + G[o + 10]
            s3 = G[o + 3] + G[o + 11]
            s4 = G[o + 4] + G[o + 12]
            s5 = G[o + 5] + G[o + 13]
            s6 = G[o + 6] + G[o + 14]
            s7 = G[o + 7] + G[o + 15]
            return ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7))
        return impl
    return None


# ---------------------------------------------------------------------------- kernels


@jit(fma=True)
def _load_tile(A, Bw, btv, Cw, ctv, h0, b, d0, m, Al, Bl, Cl, hl):
    """Per-lane constants of a tile: A, time-invariant B/C, the initial state (pads: 0)."""
    N = A.shape[1]
    for n in range(N):
        for lane in range(W):
            Al[n, lane] = 0
            hl[n, lane] = 0
            Bl[n, lane] = 0
            Cl[n, lane] = 0
        for lane in range(m):
            d = d0 + lane
            Al[n, lane] = A[d, n]
            hl[n, lane] = h0[b, d, n]
            if not btv:
                Bl[n, lane] = Bw[0, d, 0, n]
            if not ctv:
                Cl[n, lane] = Cw[0, d, 0, n]


@jit(fma=True)
def _load_block(u, delta, bias, sp, b, d0, m, t0, nt, dtb, ub, vb, keep_v, tv, td):
    """Gather a block's ``dt`` (after bias/softplus), ``u`` and, if ``keep_v``, the
    pre-softplus ``v`` (the backward's second pass needs it).

    Computed along time (contiguous, one SIMD loop with the vectorised softplus) into
    the caller's ``(W, TB)`` scratch ``tv``/``td``, then stored transposed into the
    ``(TB, W)`` buffers: by 16 x 16 blocks
    (:func:`~iirssm._cpu._jit.transpose_blocks`) for a full tile and whole blocks,
    element by element otherwise.
    """
    dim = u.shape[1]
    L = u.shape[2]
    fast = m == W and nt % 16 == 0 and transpose_blocks(
        u, (b * dim + d0) * L + t0, L, ub, 0, W, W, nt)
    for lane in range(W):
        if lane < m:
            d = d0 + lane
            bd = bias[d]
            drow = delta[b, d, t0:t0 + nt]        # 1-D rows: plain contiguous loads
            tvr = tv[lane]
            tdr = td[lane]
            for tt in range(nt):
                tvr[tt] = drow[tt] + bd
            if sp:
                for tt in range(nt):
                    tdr[tt] = softplus(tvr[tt])
            else:
                for tt in range(nt):
                    tdr[tt] = tvr[tt]
            if not fast:
                urow = u[b, d, t0:t0 + nt]
                for tt in range(nt):
                    vb[tt, lane] = tvr[tt]
                    dtb[tt, lane] = tdr[tt]
                    ub[tt, lane] = urow[tt]
        else:
            for tt in range(nt):
                vb[tt, lane] = 0
                dtb[tt, lane] = 0
                ub[tt, lane] = 0
    if fast:                                     # (the same types as u and ub)
        TBs = tv.shape[1]
        if keep_v:
            transpose_blocks(tv, 0, TBs, vb, 0, W, W, nt)
        transpose_blocks(td, 0, TBs, dtb, 0, W, W, nt)


@jit(fma=True)
def _nonpos(Al, dtb, nt, sp):
    """Whether every ``dt·A`` of a block is <= 0 or NaN (real A <= 0 and dt >= 0; dt is
    >= 0 after softplus), so that :func:`_advance` may take its vector code.
    Pad lanes hold 0 in both. Complex A: False."""
    for n in range(Al.shape[0]):
        for lane in range(W):
            if not _le0(Al[n, lane]):
                return False
    if not sp:
        for tt in range(nt):
            for lane in range(W):
                if not _le0(-dtb[tt, lane]):
                    return False
    return True


@inline
def _bc_offset(Xw, bX, gX, t, tv, N):
    """Flat offset of ``Xw[bX, gX, t, 0]`` (``t`` 0 when time-invariant) in the kernels'
    C-contiguous B/C arrays."""
    return ((bX * Xw.shape[1] + gX) * Xw.shape[2] + (t if tv else 0)) * N


def _mamba_block(Al, hl, Bl, Cl, Bw, btv, bB, gB, Cw, ctv, bC, gC, t0, dtb, ub, nt, yb, he,
                 store, readout):
    """:func:`_advance`'s mamba rule with ``dt·A <= 0`` over a block, one sample at a time
    by :func:`~iirssm._cpu.selective_vec.mamba_rows` (bitwise the loop it replaces),
    for real states: returns True. For complex ones it compiles to False, and
    :func:`_advance` runs its loops."""


@overload(_mamba_block, jit_options={"fastmath": _FM}, inline="always")
def _ov_mamba_block(Al, hl, Bl, Cl, Bw, btv, bB, gB, Cw, ctv, bC, gC, t0, dtb, ub, nt, yb, he,
                    store, readout):
    if not isinstance(Al.dtype, types.Float):
        def no(Al, hl, Bl, Cl, Bw, btv, bB, gB, Cw, ctv, bC, gC, t0, dtb, ub, nt, yb, he,
               store, readout):
            return False
        return no

    def impl(Al, hl, Bl, Cl, Bw, btv, bB, gB, Cw, ctv, bC, gC, t0, dtb, ub, nt, yb, he,
             store, readout):
        N = Al.shape[0]
        for tt in range(nt):
            t = t0 + tt
            bo = _bc_offset(Bw, bB, gB, t, btv, N)
            co = _bc_offset(Cw, bC, gC, t, ctv, N)
            mamba_rows(Al, hl, Bl, Cl, Bw, bo, btv, Cw, co, ctv, dtb, ub, tt, yb, he,
                       (tt + 1) * N * 2 * W, store, readout)
        return True
    return impl


@jit(fma=True)
def _advance(disc, nonpos, Al, hl, dtb, ub, nt, t0, Bw, btv, gsB, Bl, Cw, ctv, gsC, Cl, b,
             d0, yb, he, store, readout):
    """Advance a tile's ``N x W`` states over ``nt`` samples from ``t0``.

    ``nonpos``: every ``dt·A`` of the block is known to be <= 0 (:func:`_nonpos`); the
    mamba rule then runs as explicit vector code (:func:`_mamba_block`, with an expm1
    for arguments <= 0: bitwise the same values, cheaper). A run-time bool, never a
    literal (see ``store``).

    ``readout``: write ``Σ_n C·h`` of every sample to ``yb`` (the backward's first
    pass, which keeps only checkpoints, passes False for real states; for complex
    ones LLVM would then contract the update into other FMAs, and the checkpoints
    would differ in the last bits from the forward's). ``store``: keep the post-step
    ``(a - 1, h[t])`` of every state in the flat ``he``, at
    ``(((tt + 1)·N + n)·2 + q)·W + lane`` (backward pass, :func:`_reverse_block`;
    slot ``tt = -1`` holds the state entering the block).
    Time-varying B (``btv``): ``Bw`` is ``(batch, G, L, N)`` and the tile's channels
    share group ``d0 // gsB``; otherwise the per-lane values are in ``Bl``.
    The loop over the ``W`` lanes is the vectorised one: one fused body per
    discretisation, with the exp inline, so LLVM keeps it a single SIMD loop.
    """
    N = Al.shape[0]
    bB = b if Bw.shape[0] > 1 else 0
    bC = b if Cw.shape[0] > 1 else 0
    gB = d0 // gsB if btv else 0
    gC = d0 // gsC if ctv else 0
    if disc == 0 and nonpos and _mamba_block(Al, hl, Bl, Cl, Bw, btv, bB, gB, Cw, ctv, bC, gC,
                                             t0, dtb, ub, nt, yb, he, store, readout):
        return
    gu = np.empty(W, dtype=Al.dtype)
    ys = np.empty(W, dtype=Al.dtype)
    em = np.empty(W, dtype=Al.dtype)
    gg = np.empty(W, dtype=Al.dtype)
    for tt in range(nt):
        t = t0 + tt
        tB = t if btv else 0
        tC = t if ctv else 0
        for lane in range(W):
            ys[lane] = 0
            gu[lane] = dtb[tt, lane] * ub[tt, lane]
        for n in range(N):
            bv = Bw[bB, gB, tB, n]
            cv = Cw[bC, gC, tC, n]
            ho = max(((tt + 1) * N + n) * 2 * W, 0)   # (max: provably >= 0, see below)
            if disc == 0:
                for lane in range(W):
                    e = vexpm1(dtb[tt, lane] * Al[n, lane])
                    h = hl[n, lane]
                    h = (h + e * h) + gu[lane] * (bv if btv else Bl[n, lane])
                    hl[n, lane] = h
                    if readout:
                        ys[lane] += (cv if ctv else Cl[n, lane]) * h
                    if store:
                        he[ho + lane] = e
                        he[ho + W + lane] = h
            else:
                _em_g_lanes(disc, dtb, tt, Al, n, em, gg)
                for lane in range(W):
                    e = em[lane]
                    h = hl[n, lane]
                    h = (h + e * h) + (gg[lane] * ub[tt, lane]) * (bv if btv else Bl[n, lane])
                    hl[n, lane] = h
                    if readout:
                        ys[lane] += (cv if ctv else Cl[n, lane]) * h
                    if store:
                        he[ho + lane] = e
                        he[ho + W + lane] = h
        if readout:
            for lane in range(W):
                yb[tt, lane] = ys[lane]


@jit(fma=True)
def _gather(src, b, d0, m, t0, nt, buf):
    """``buf[tt·W + lane] = src[b, d0 + lane, t0 + tt]`` (0 for the pad lanes)."""
    dim = src.shape[1]
    L = src.shape[2]
    if m == W and nt % 16 == 0 and transpose_blocks(src, (b * dim + d0) * L + t0, L, buf, 0,
                                                    W, W, nt):
        return
    for lane in range(W):
        if lane < m:
            row = src[b, d0 + lane, t0:t0 + nt]
            for tt in range(nt):
                buf[tt * W + lane] = row[tt]
        else:
            for tt in range(nt):
                buf[tt * W + lane] = 0


@jit(fma=True)
def _scatter(buf, dst, b, d0, m, t0, nt):
    """``dst[b, d0 + lane, t0 + tt] = buf[tt·W + lane]`` for the real lanes."""
    dim = dst.shape[1]
    L = dst.shape[2]
    if m == W and nt % 16 == 0 and transpose_blocks(buf, 0, W, dst, (b * dim + d0) * L + t0,
                                                    L, nt, W):
        return
    for lane in range(m):
        row = dst[b, d0 + lane, t0:t0 + nt]
        for tt in range(nt):
            row[tt] = buf[tt * W + lane]


@inline
def _lane_sums(G, nt, N, dst, b, slot, g, t0):
    """``dst[b, slot, g, t0 + tt, n] += Σ_lane G[(tt·N + n)·W + lane]``, in a fixed order.

    A fixed tree (no reassociation: the same result on every machine and for any
    thread count): lanes ``j`` and ``j + 8`` first, then ``j`` and ``j + 4``, then
    pairs, written as vector code (:func:`_hsum16`). Written as scalar code, LLVM's
    loop vectoriser took it across the states, and with AVX-512 it read the rows by
    stride-16 gathers: the sums were 40 % of the reverse pass (``docs/performance.md``).
    Per block rather than per sample: summing a vector just stored stalls on
    store-to-load forwarding.
    """
    for tt in range(nt):
        for n in range(N):
            dst[b, slot, g, t0 + tt, n] += _hsum16(G, (tt * N + n) * W)


@jit(fma=True)
def _store_rows(yb, ub, u, Dv, z, has_z, out, b, d0, m, t0, nt, transposed):
    """``out = (y + D·u)·silu(z)`` along the rows of a block; ``y`` from ``yb[tt, lane]``,
    or already in ``out``'s rows (``transposed``), where ``u`` is read from its rows."""
    for lane in range(m):
        d = d0 + lane
        Dd = Dv[d]
        orow = out[b, d, t0:t0 + nt]           # 1-D rows: contiguous, vectorised
        if transposed:
            urow = u[b, d, t0:t0 + nt]
            for tt in range(nt):
                orow[tt] = orow[tt] + Dd * urow[tt]
        else:
            for tt in range(nt):
                orow[tt] = _readout(yb[tt, lane]) + Dd * ub[tt, lane]
        if has_z:
            zrow = z[b, d, t0:t0 + nt]
            for tt in range(nt):
                zz = zrow[tt]
                orow[tt] = orow[tt] * (zz * _sigmoid(zz))


@kernel(fma=True, writes=("out", "hlast", "ck"))
def scan_fwd(u, delta, bias, sp, disc, A, Bw, btv, gsB, Cw, ctv, gsC, Dv, z, has_z, h0,
             tiles, out, hlast, ck):
    """Forward selective scan; writes ``out`` (batch, dim, L) and ``hlast`` (batch, dim, N).

    ``tiles``: ``(ntiles, 2)`` rows ``(first channel, channels)`` of at most ``W``
    channels sharing their B and C groups. Jobs are (batch entry, tile) pairs.
    ``ck``: ``(batch, ntiles, nblk + 1, N, W)`` with ``nblk = ceil(L / TB_BWD)``, or
    empty along its third axis: if not empty, the state entering every
    ``TB_BWD``-sample segment of every tile is kept there (the last entry is the
    final state), which is what :func:`scan_bwd` would otherwise recompute. The
    block is then advanced in ``TB_BWD``-sample pieces; the states (and so the output) are
    the same, sample by sample, either way.
    """
    Bt, _, L = u.shape
    N = A.shape[1]
    ntiles = tiles.shape[0]
    save = ck.shape[2] > 0
    for job in prange(Bt * ntiles):
        b = job // ntiles
        tile = job % ntiles
        d0 = tiles[tile, 0]
        m = tiles[tile, 1]
        Al = np.empty((N, W), dtype=A.dtype)
        Bl = np.empty((N, W), dtype=A.dtype)
        Cl = np.empty((N, W), dtype=A.dtype)
        hl = np.empty((N, W), dtype=A.dtype)
        _load_tile(A, Bw, btv, Cw, ctv, h0, b, d0, m, Al, Bl, Cl, hl)
        dtb = np.empty((TB, W), dtype=u.dtype)
        ub = np.empty((TB, W), dtype=u.dtype)
        vb = np.empty((TB, W), dtype=u.dtype)
        tv = np.empty((W, TB), dtype=u.dtype)
        td = np.empty((W, TB), dtype=u.dtype)
        yb = np.empty((TB, W), dtype=A.dtype)
        dummy = np.empty(1, dtype=A.dtype)
        for t0 in range(0, L, TB):
            nt = min(TB, L - t0)
            _load_block(u, delta, bias, sp, b, d0, m, t0, nt, dtb, ub, vb, False, tv, td)
            npos = _nonpos(Al, dtb, nt, sp)
            if save:
                for s0 in range(0, nt, TB_BWD):
                    kb = (t0 + s0) // TB_BWD
                    for n in range(N):
                        for lane in range(W):
                            ck[b, tile, kb, n, lane] = hl[n, lane]
                    _advance(disc, npos, Al, hl, dtb[s0:], ub[s0:], min(TB_BWD, nt - s0),
                             t0 + s0, Bw, btv, gsB, Bl, Cw, ctv, gsC, Cl, b, d0, yb[s0:], dummy,
                             False, True)
            else:
                _advance(disc, npos, Al, hl, dtb, ub, nt, t0, Bw, btv, gsB, Bl, Cw, ctv, gsC,
                         Cl, b, d0, yb, dummy, False, True)
            # y into out's rows by 16 x 16 transposes where it can (real states, a full
            # tile, whole blocks); read column by column, LLVM gathered it (AVX-512)
            dim = out.shape[1]
            done = m == W and nt % 16 == 0 and transpose_blocks(
                yb, 0, W, out, (b * dim + d0) * L + t0, L, nt, W)
            _store_rows(yb, ub, u, Dv, z, has_z, out, b, d0, m, t0, nt, done)
        if save:
            nblk = ck.shape[2] - 1
            for n in range(N):
                for lane in range(W):
                    ck[b, tile, nblk, n, lane] = hl[n, lane]
        for lane in range(m):
            for n in range(N):
                hlast[b, d0 + lane, n] = hl[n, lane]


# Rows of the backward pass's per-lane scratch ``V``, a flat array indexed
# ``row * W + lane`` with constant ``row`` and ``W``: LLVM can then prove that the
# rows do not overlap and vectorise the lane loops. (With a dozen separate arrays it
# needs more run-time overlap checks than it emits, and with a 2-D array the row
# stride is a run-time value: either way it falls back to scalar code, 10x slower.)
# (The rows are named in selective_vec, whose vector reverse step reads them too.)
_V_DT, _V_U, _V_DYF, _V_DA, _V_G, _V_GT, _V_GA, _V_ACC_DT, _V_ACC_U = range(len(V_ROWS))
_NV = len(V_ROWS)
# Rows of the per-(state, lane) accumulators ``S``, flat, ``(n * _NS + row) * W + lane``.
_S_LAM, _S_GA, _S_GB, _S_GC = range(len(S_ROWS))
_NS = len(S_ROWS)


@inline
def _bwd_lanes(disc, V, T, to, he, ho, nl):
    """Derivatives of one update for the W lanes, ``a - 1`` taken from the forward.

    Writes ``V[_V_DA] = dĀ/dz`` (z = dt·A), ``V[_V_G] = g``, ``V[_V_GT] = ∂g/∂dt``,
    ``V[_V_GA] = ∂g/∂A``.
    """
    if disc == 1:                                  # zoh: a = e^z, g = dt·φ1(z)
        for lane in range(nl):
            dt = V[_V_DT * W + lane]
            z = dt * T[to + lane]
            e = he[ho + lane]
            a = e + _c(1, e)
            V[_V_DA * W + lane] = a
            V[_V_G * W + lane] = dt * _phi1(z, e)
            V[_V_GT * W + lane] = a
            V[_V_GA * W + lane] = (dt * dt) * _dphi1(z, e)
    elif disc == 2:                                # euler: a = 1 + z, g = dt
        for lane in range(nl):
            V[_V_DA * W + lane] = 1
            V[_V_G * W + lane] = V[_V_DT * W + lane]
            V[_V_GT * W + lane] = 1
            V[_V_GA * W + lane] = 0
    elif disc == 3:                                # bilinear
        for lane in range(nl):
            dt = V[_V_DT * W + lane]
            z = dt * T[to + lane]
            one = _c(1, z)
            den = one - _c(0.5, z) * z
            r = one / (den * den)
            V[_V_DA * W + lane] = r
            V[_V_G * W + lane] = dt / den
            V[_V_GT * W + lane] = r
            V[_V_GA * W + lane] = (_c(0.5, dt) * dt * dt) * r
    else:                                          # mamba: a = e^z, g = dt
        for lane in range(nl):
            e = he[ho + lane]
            V[_V_DA * W + lane] = e + _c(1, e)
            V[_V_G * W + lane] = V[_V_DT * W + lane]
            V[_V_GT * W + lane] = 1
            V[_V_GA * W + lane] = 0


@inline
def _rev_update(V, S, T, he, GB, GC, so, to, ho, hp, go, lane, bv, cv, btv, ctv, da, gg, dgdt,
                dgdA):
    """One lane of one reverse step (see :func:`_reverse_block`); ``da = dĀ/dz``, ``gg = g``,
    ``dgdt = ∂g/∂dt``, ``dgdA = ∂g/∂A``."""
    bval = _sel(btv, bv, T[to + W + lane])
    cval = _sel(ctv, cv, T[to + 2 * W + lane])
    uv = V[_V_U * W + lane]
    dyf = V[_V_DYF * W + lane]
    lm = S[so + _S_LAM * W + lane] + np.conj(cval) * dyf
    Gg = np.conj(bval * uv) * lm
    Gz = np.conj(da) * (lm * np.conj(he[hp + lane]))
    V[_V_ACC_U * W + lane] += _re(np.conj(gg * bval) * lm)
    V[_V_ACC_DT * W + lane] += _re(np.conj(T[to + lane]) * Gz) + _re(np.conj(dgdt) * Gg)
    S[so + _S_GA * W + lane] += V[_V_DT * W + lane] * Gz + np.conj(dgdA) * Gg
    gb = np.conj(gg) * uv * lm
    gc = dyf * np.conj(he[ho + W + lane])
    e = he[ho + lane]
    S[so + _S_LAM * W + lane] = np.conj(e + _c(1, e)) * lm
    GB[go + lane] = gb
    GC[go + lane] = gc
    S[so + _S_GB * W + lane] += gb
    S[so + _S_GC * W + lane] += gc


def _mamba_reverse(T, S, V, he, GB, GC, Bw, bo, btv, Cw, co, ctv, tt):
    """One reverse step of the mamba rule over the states by
    :func:`~iirssm._cpu.selective_vec.mamba_reverse_rows` (bitwise the loop it
    replaces) for real states: returns True; compiles to False for complex ones."""


@overload(_mamba_reverse, jit_options={"fastmath": _FM}, inline="always")
def _ov_mamba_reverse(T, S, V, he, GB, GC, Bw, bo, btv, Cw, co, ctv, tt):
    if not isinstance(T.dtype, types.Float):
        return lambda T, S, V, he, GB, GC, Bw, bo, btv, Cw, co, ctv, tt: False

    def impl(T, S, V, he, GB, GC, Bw, bo, btv, Cw, co, ctv, tt):
        mamba_reverse_rows(T, S, V, he, GB, GC, Bw, bo, btv, Cw, co, ctv, tt)
        return True
    return impl


@jit(fma=True)
def _reverse_block(disc, vec, nt, t0, b, slot, Bw, btv, gB, Cw, ctv, gC, yscale, dtb, ub,
                   dob, he, T, S, V, GB, GC, dBs, dCs, gdb, gub):
    """Walk one recomputed segment backwards (see :func:`scan_bwd`).

    With λ the adjoint of the state (``S[n, _S_LAM]``, entering as λ[t] + carry):
    ``λ += conj(C)·dy``; then ``G_a = λ·conj(h[t-1])``, ``G_z = conj(dĀ/dz)·G_a``,
    ``G_g = conj(B·u)·λ``; ``dt`` gets ``Re(conj(A)·G_z + conj(∂g/∂dt)·G_g)``, ``A``
    gets ``dt·G_z + conj(∂g/∂A)·G_g``, ``B`` gets ``conj(g·u)·λ``, ``u`` gets
    ``Re(conj(g·B)·λ)``, ``C`` gets ``dy·conj(h[t])``; and ``λ[t-1] = conj(Ā)·λ``.
    (Complex gradients are ∂/∂Re + i·∂/∂Im; conj is the identity on reals.)
    Writes the block's ``dt`` and ``u`` gradients to ``gdb``, ``gub``. The per-lane
    gradients of time-varying B/C are kept in ``GB``/``GC`` (flat ``(TB, N, W)``) and
    summed over the lanes at the end of the block, sequentially (a fixed order).
    ``vec`` (a run-time bool): the mamba rule's step over the states runs as explicit
    vector code for real states (:func:`_mamba_reverse`; bitwise the same).
    """
    N = T.shape[0] // (3 * W)
    nl = V.shape[0] // _NV
    bB = b if Bw.shape[0] > 1 else 0
    bC = b if Cw.shape[0] > 1 else 0
    Bf = Bw.reshape(-1)
    Cf = Cw.reshape(-1)
    # Note on indices: LLVM vectorises a lane loop only if it can prove every index
    # non-negative (else Numba's wrap-around of negative indices makes the address
    # non-affine). Hence a forward ``it`` (tt from range(nt - 1, -1, -1) defeats it).
    for it in range(nt):
        tt = max(nt - 1 - it, 0)
        t = t0 + tt
        bo = _bc_offset(Bw, bB, gB, t, btv, N)
        co = _bc_offset(Cw, bC, gC, t, ctv, N)
        for lane in range(W):
            V[_V_DT * W + lane] = dtb[tt, lane]
            V[_V_U * W + lane] = ub[tt, lane]
            V[_V_DYF * W + lane] = yscale * dob[tt * W + lane]
            V[_V_ACC_DT * W + lane] = 0
            V[_V_ACC_U * W + lane] = 0
        if disc == 0 and vec and _mamba_reverse(T, S, V, he, GB, GC, Bw, bo, btv, Cw, co,
                                                ctv, tt):
            N0 = N                      # (done: the loop below runs no state)
        else:
            N0 = 0
        for n in range(N0, N):
            bv = Bf[bo + n]
            cv = Cf[co + n]
            # flat offsets of this state's rows (constant row offsets from there on:
            # see the note on ``V``; slices would add reference counting to the loop)
            so = n * _NS * W
            to = n * 3 * W
            # (max: provably >= 0, else LLVM cannot rule out Numba's wrap-around of a
            # negative index, and the lane loop reads these rows by gathers)
            ho = max(((tt + 1) * N + n) * 2 * W, 0)    # (a - 1, h[t]) of this step
            hp = max((tt * N + n) * 2 * W + W, 0)      # h[t-1]
            go = max((tt * N + n) * W, 0)
            # ``nl`` equals W, but as a run-time value: with a constant trip count LLVM
            # unrolls the loop completely before its loop vectoriser runs, and then
            # fails to re-vectorise the unrolled code (4x slower). Same in _bwd_lanes.
            if disc == 0:
                for lane in range(nl):
                    e = he[ho + lane]
                    dt = V[_V_DT * W + lane]
                    _rev_update(V, S, T, he, GB, GC, so, to, ho, hp, go, lane, bv, cv, btv, ctv,
                                e + _c(1, e), dt, _c(1, dt), _c(0, dt))
            else:
                _bwd_lanes(disc, V, T, to, he, ho, nl)
                for lane in range(nl):
                    _rev_update(V, S, T, he, GB, GC, so, to, ho, hp, go, lane, bv, cv, btv,
                                ctv, V[_V_DA * W + lane], V[_V_G * W + lane],
                                V[_V_GT * W + lane], V[_V_GA * W + lane])
        for lane in range(W):
            gdb[tt * W + lane] = _re(V[_V_ACC_DT * W + lane])
            gub[tt * W + lane] = _re(V[_V_ACC_U * W + lane])
    # sums over the lanes (channels) of the time-varying B/C gradients; pad lanes are 0
    if btv:
        _lane_sums(GB, nt, N, dBs, b, slot, gB, t0)
    if ctv:
        _lane_sums(GC, nt, N, dCs, b, slot, gC, t0)


@inline
def _prefetch_rows(a, b, d0, m, t0, nt):
    """Ask for every cache line of ``a[b, d0:d0 + m, t0:t0 + nt]`` (``prefetch``)."""
    s0, s1, s2 = a.strides
    base = data_address(a) + b * s0 + d0 * s1 + t0 * s2
    last = (nt - 1) * s2
    for lane in range(m):
        r = base + lane * s1
        for o in range(0, last, 64):
            prefetch(r + o, False)
        prefetch(r + last, False)


# ck_in is only read, but shares one variable (so one type) with the local checkpoints
@kernel(fma=True, writes=("ck_in", "du", "ddelta", "dz", "dA_p", "dBl_p", "dCl_p", "dBs",
                          "dCs", "dD_p", "dbias_p", "dh0", "stale"))
def scan_bwd(u, delta, bias, sp, disc, A, Bw, btv, gsB, Cw, ctv, gsC, Dv, z, has_z, h0,
             tiles, nslot, yscale, dout, dlast, ck_in,
             du, ddelta, dz, dA_p, dBl_p, dCl_p, dBs, dCs, dD_p, dbias_p, dh0, stale):
    """Vector-Jacobian product of :func:`scan_fwd` by a reverse-time scan.

    Per tile: a forward pass keeps the state every ``TB_BWD`` samples; then,
    segment by segment from the end, the segment is recomputed from its checkpoint
    (states and ``a - 1`` kept, ``(TB_BWD + 1) x 2 x N x W``) and walked backwards
    with the adjoint ``λ[t-1] = conj(Ā[t])·λ[t] + conj(C[t-1])·dy[t-1]``
    (:func:`_reverse_block`). While a segment is processed, the rows of the one
    before it are prefetched (:func:`_prefetch_rows`): walked backwards, a few
    lines per row, they are not a stream the hardware prefetchers follow
    (``docs/performance.md``).

    Jobs are (batch entry, slot) pairs; slot ``s`` takes tiles ``s, s + nslot, ...``
    so that the gradients of time-varying B and C, summed over channels, go to a
    per-slot buffer ``dBs``/``dCs`` ``(batch, nslot, G, L, N)`` without races; the
    caller sums the slots (a fixed order: results do not depend on thread count).
    Per-channel results go to ``*_p`` arrays of shape ``(batch, dim, ...)`` that the
    caller sums over the batch. ``yscale`` is 2 for complex states (``y = 2·Re``).

    ``ck_in``: the checkpoints kept by :func:`scan_fwd` (``(batch, ntiles, nblk + 1,
    N, W)``), or empty along its third axis. When given, the forward pass is
    skipped, and every recomputed segment's end state is compared with the next
    checkpoint: they are computed by the same code from the same values, so they
    are equal (NaN equal to NaN) unless the inputs changed since the forward call.
    A job that sees a difference sets ``stale[job]``.
    """
    Bt, _, L = u.shape
    N = A.shape[1]
    ntiles = tiles.shape[0]
    nblk = (L + TB_BWD - 1) // TB_BWD
    nl = tiles.shape[1] * 0 + W    # W at run time: see _reverse_block (full unrolling)
    have_ck = ck_in.shape[2] > 0
    vec = nl == W                  # True, at run time (_reverse_block's vector step)
    for job in prange(Bt * nslot):
        b = job // nslot
        slot = job % nslot
        Al = np.empty((N, W), dtype=A.dtype)
        Bl = np.empty((N, W), dtype=A.dtype)
        Cl = np.empty((N, W), dtype=A.dtype)
        hl = np.empty((N, W), dtype=A.dtype)
        T = np.empty(N * 3 * W, dtype=A.dtype)
        S = np.empty(N * _NS * W, dtype=A.dtype)
        V = np.empty(_NV * W, dtype=A.dtype)
        GB = np.empty(TB_BWD * N * W, dtype=A.dtype)
        GC = np.empty(TB_BWD * N * W, dtype=A.dtype)
        ckl = np.empty((nblk + 1, N, W), dtype=A.dtype)
        he = np.empty((TB_BWD + 1) * N * 2 * W, dtype=A.dtype)
        dtb = np.empty((TB_BWD, W), dtype=u.dtype)
        ub = np.empty((TB_BWD, W), dtype=u.dtype)
        vb = np.empty((TB_BWD, W), dtype=u.dtype)
        tv = np.empty((W, TB_BWD), dtype=u.dtype)
        td = np.empty((W, TB_BWD), dtype=u.dtype)
        yb = np.empty((TB_BWD, W), dtype=A.dtype)
        # flat (TB_BWD x W) per-lane block buffers, ``tt * W + lane``
        gob = np.empty(TB_BWD * W, dtype=u.dtype)
        zb = np.empty(TB_BWD * W, dtype=u.dtype)
        dzb = np.empty(TB_BWD * W, dtype=u.dtype)
        dob = np.empty(TB_BWD * W, dtype=u.dtype)
        gdb = np.empty(TB_BWD * W, dtype=u.dtype)
        gub = np.empty(TB_BWD * W, dtype=u.dtype)
        gD = np.empty(W, dtype=u.dtype)
        gbias = np.empty(W, dtype=u.dtype)
        Dl = np.empty(W, dtype=u.dtype)
        for tile in range(slot, ntiles, nslot):
            d0 = tiles[tile, 0]
            m = tiles[tile, 1]
            gB = d0 // gsB if btv else 0
            gC = d0 // gsC if ctv else 0
            _load_tile(A, Bw, btv, Cw, ctv, h0, b, d0, m, Al, Bl, Cl, hl)
            ck = ck_in[b, tile] if have_ck else ckl
            # pass 1: checkpoints (the state entering every segment), unless kept
            for kb in range(0 if have_ck else nblk):
                t0 = kb * TB_BWD
                nt = min(TB_BWD, L - t0)
                for n in range(N):
                    for lane in range(W):
                        ck[kb, n, lane] = hl[n, lane]
                if kb + 1 < nblk:
                    # the next segment's rows (a few lines per row: see pass 2)
                    _prefetch_rows(u, b, d0, m, t0 + TB_BWD, min(TB_BWD, L - t0 - TB_BWD))
                    _prefetch_rows(delta, b, d0, m, t0 + TB_BWD, min(TB_BWD, L - t0 - TB_BWD))
                _load_block(u, delta, bias, sp, b, d0, m, t0, nt, dtb, ub, vb, False, tv, td)
                npos = _nonpos(Al, dtb, nt, sp)
                if yscale == 1:                # real states: no read-out needed
                    _advance(disc, npos, Al, hl, dtb, ub, nt, t0, Bw, btv, gsB, Bl, Cw, ctv,
                             gsC, Cl, b, d0, yb, he, False, False)
                else:
                    _advance(disc, npos, Al, hl, dtb, ub, nt, t0, Bw, btv, gsB, Bl, Cw, ctv,
                             gsC, Cl, b, d0, yb, he, False, True)
            for n in range(N):
                for lane in range(W):
                    T[n * 3 * W + lane] = Al[n, lane]
                    T[(n * 3 + 1) * W + lane] = Bl[n, lane]
                    T[(n * 3 + 2) * W + lane] = Cl[n, lane]
                    S[(n * _NS + _S_LAM) * W + lane] = dlast[b, d0 + lane, n] if lane < m else 0
                    S[(n * _NS + _S_GA) * W + lane] = 0
                    S[(n * _NS + _S_GB) * W + lane] = 0
                    S[(n * _NS + _S_GC) * W + lane] = 0
            for lane in range(W):
                gD[lane] = 0
                gbias[lane] = 0
                Dl[lane] = Dv[d0 + lane] if lane < m else 0
            # pass 2: segments from the end
            for ikb in range(nblk):
                kb = max(nblk - 1 - ikb, 0)     # (provably >= 0: see _reverse_block)
                t0 = kb * TB_BWD
                nt = min(TB_BWD, L - t0)
                for n in range(N):
                    for lane in range(W):
                        hl[n, lane] = ck[kb, n, lane]
                        he[n * 2 * W + W + lane] = ck[kb, n, lane]    # slot tt = -1
                if kb > 0:
                    # the rows of the segment before this one, processed next: walked
                    # backwards, 16 rows of 2-3 lines at a time per array, they are not
                    # a stream the hardware prefetchers follow
                    _prefetch_rows(u, b, d0, m, t0 - TB_BWD, TB_BWD)
                    _prefetch_rows(delta, b, d0, m, t0 - TB_BWD, TB_BWD)
                    _prefetch_rows(dout, b, d0, m, t0 - TB_BWD, TB_BWD)
                    if has_z:
                        _prefetch_rows(z, b, d0, m, t0 - TB_BWD, TB_BWD)
                _load_block(u, delta, bias, sp, b, d0, m, t0, nt, dtb, ub, vb, True, tv, td)
                npos = _nonpos(Al, dtb, nt, sp)
                _advance(disc, npos, Al, hl, dtb, ub, nt, t0, Bw, btv, gsB, Bl, Cw, ctv, gsC,
                         Cl, b, d0, yb, he, True, True)
                if have_ck:
                    for n in range(N):
                        for lane in range(W):
                            hv = hl[n, lane]
                            cv = ck[kb + 1, n, lane]
                            if hv != cv and (hv == hv or cv == cv):
                                stale[job] = 1
                # Per-(channel, sample) work, vectorised over the lanes: gather the
                # block's rows, compute in the flat buffers (small loops, few arrays
                # each, so that LLVM vectorises them), scatter the results.
                _gather(dout, b, d0, m, t0, nt, gob)
                # through the gate: dout -> d(y + D·u) = dob, and dz
                if has_z:
                    _gather(z, b, d0, m, t0, nt, zb)
                    for tt in range(nt):
                        for lane in range(nl):
                            zz = zb[tt * W + lane]
                            sg = _sigmoid(zz)
                            o = _readout(yb[tt, lane]) + Dl[lane] * ub[tt, lane]
                            one = _c(1, zz)
                            go = gob[tt * W + lane]
                            dzb[tt * W + lane] = go * o * (sg * (one + zz * (one - sg)))
                            dob[tt * W + lane] = go * (zz * sg)
                else:
                    for i in range(nt * W):
                        dob[i] = gob[i]
                _reverse_block(disc, vec, nt, t0, b, slot, Bw, btv, gB, Cw, ctv, gC, yscale,
                               dtb, ub, dob, he, T, S, V, GB, GC, dBs, dCs, gdb, gub)
                # through softplus (derivative sigmoid, 1 above 20) and bias; D
                if sp:
                    for tt in range(nt):
                        for lane in range(nl):
                            v = vb[tt, lane]
                            gd = gdb[tt * W + lane]
                            gdb[tt * W + lane] = _sel(v <= _c(20, v), gd * _sigmoid(v), gd)
                for tt in range(nt):
                    for lane in range(nl):
                        gbias[lane] += gdb[tt * W + lane]
                        gD[lane] += dob[tt * W + lane] * ub[tt, lane]
                for tt in range(nt):
                    for lane in range(nl):
                        gub[tt * W + lane] += Dl[lane] * dob[tt * W + lane]
                _scatter(gdb, ddelta, b, d0, m, t0, nt)
                _scatter(gub, du, b, d0, m, t0, nt)
                if has_z:
                    _scatter(dzb, dz, b, d0, m, t0, nt)
            for lane in range(m):
                d = d0 + lane
                dD_p[b, d] = gD[lane]
                dbias_p[b, d] = gbias[lane]
                for n in range(N):
                    dA_p[b, d, n] = S[(n * _NS + _S_GA) * W + lane]
                    dh0[b, d, n] = S[(n * _NS + _S_LAM) * W + lane]
                    if not btv:
                        dBl_p[b, d, n] = S[(n * _NS + _S_GB) * W + lane]
                    if not ctv:
                        dCl_p[b, d, n] = S[(n * _NS + _S_GC) * W + lane]
