"""Launchers of iir.cu (lfilter/sosfilt) and ssm.cu (DiagonalSSM.filter).

Arrays are CuPy rows as in ``_rec``. CuPy is imported inside the functions only.
"""

from __future__ import annotations

from ._compile import expr, get_function, register
from ._plan import NT, ctype, i32, i64, is_aligned, vlen
from ._rec import NULL, _rs

__all__ = ["IIR_SOURCE", "SSM_SOURCE", "KMAX", "fir", "df2t", "ssm", "ssm_tile"]

IIR_SOURCE = "iir.cu"
SSM_SOURCE = "ssm.cu"
#: state sizes of the time-varying DF2T kernel (states live in registers)
KMAX = (2, 8)
_TYPES = ("float", "double", "complex<float>", "complex<double>")

register(IIR_SOURCE, [expr("fir_rows", t) for t in _TYPES]
         + [expr("df2t_serial", t, k) for t in _TYPES for k in KMAX])
register(SSM_SOURCE, [expr("ssm_fwd", t) for t in _TYPES])

_FIR_BLOCK = 256
_FIR_MAX_GRID = 65536


def fir(x, b, zi, u):
    """``u[r, t] = sum_k b[r, k] x[r, t-k] (+ zi[r, t] for t < K)``.

    ``x``, ``u``: rows ``(R, L)``; ``b``: ``(Rb, K+1)`` C-contiguous (Rb 1 or R);
    ``zi``: ``(R, K)`` C-contiguous or None.
    """
    R, L = x.shape
    K1 = b.shape[1]
    n = R * L
    grid = max(1, min(-(-n // _FIR_BLOCK), _FIR_MAX_GRID))
    get_function(IIR_SOURCE, expr("fir_rows", ctype(x.dtype)))(
        (grid,), (_FIR_BLOCK,),
        (x, i64(_rs(x)), b, i64(K1 if b.shape[0] > 1 else 0), i32(K1),
         NULL if zi is None else zi, u, i64(_rs(u)), i64(L), i64(R)))


def df2t(x, b, a, K, zi, zf, y):
    """scipy's DF2T loop with time-varying coefficients, one thread per row.

    ``b``, ``a``: ``(K+1, Rc, Lc)`` C-contiguous (normalised by a0), ``Rc`` 1 or R,
    ``Lc`` 1 or L; ``zi``/``zf``: ``(R, K)`` C-contiguous or None.
    """
    R, L = x.shape
    kmax = next((k for k in KMAX if K <= k), None)
    if kmax is None:
        raise NotImplementedError(f"time-varying filters of order > {KMAX[-1]} (got {K}) "
                                  "run on the CPU backend only")
    _, Rc, Lc = b.shape
    c_ks, c_rs, c_ts = Rc * Lc, (Lc if Rc > 1 else 0), (1 if Lc > 1 else 0)
    get_function(IIR_SOURCE, expr("df2t_serial", ctype(x.dtype), kmax))(
        (-(-R // 128),), (128,),
        (x, i64(_rs(x)), b, a, i64(c_ks), i64(c_rs), i64(c_ts), i32(K),
         NULL if zi is None else zi, NULL if zf is None else zf, y, i64(_rs(y)), i64(L),
         i64(R)))


def ssm_tile(dtype) -> int:
    """Elements per tile of ssm_fwd (NT x 2 vectors x vlen)."""
    return NT * 2 * vlen(dtype)


def ssm(u, y, lam, beta, wgt, D, g):
    """The fused modal filter (ssm.cu). ``u``, ``y``: rows ``(R, L)`` of one dtype (real:
    real system on a real signal, output ``Re``); ``lam``, ``wgt``: ``(Rp, M)``
    complex, ``beta``: ``(Rp, M)`` real, C-contiguous, ``Rp`` 1 or R; ``D``:
    ``(Rd,)``; ``g``: ``(R, M)`` complex C-contiguous, initial then final states.
    """
    R, L = u.shape
    M = lam.shape[1]
    V = vlen(u.dtype)
    vec = (is_aligned(u.data.ptr, _rs(u), u.itemsize, V)
           and is_aligned(y.data.ptr, _rs(y), y.itemsize, V))
    kern = get_function(SSM_SOURCE, expr("ssm_fwd", ctype(u.dtype)))
    shm = 2 * M * g.itemsize
    if shm > 48 * 1024:
        kern.max_dynamic_shared_size_bytes = shm
    kern((R,), (NT,),
         (u, i64(_rs(u)), y, i64(_rs(y)), lam, beta, wgt, i64(M if lam.shape[0] > 1 else 0),
          D, i64(1 if D.shape[0] > 1 else 0), g, i32(M), i64(L), i32(2 if vec else 0)),
         shared_mem=shm)
