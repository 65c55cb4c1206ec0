"""Launchers of recurrence.cu and ema.cu: row scans of CuPy arrays.

Every function takes CuPy arrays already in rows form (see ``_plan.rows_layout``):
``(R, L)`` with unit time stride and any row stride; coefficients either
``(Ra, L)`` (time-varying) or ``(Ra,)`` (one value per row) with ``Ra`` 1 (shared
by every row, row stride 0) or ``R``. They launch on the current CuPy stream and
return nothing to the host. CuPy is imported inside the functions only.
"""

from __future__ import annotations

import numpy as np

from ._compile import expr, get_function, register
from ._plan import NT, ctype, i32, i64, is_aligned, split_plan, vlen

__all__ = ["scan", "adjoint", "REC_SOURCE", "EMA_SOURCE", "F_AT", "F_VEC", "F_PASS1", "NULL"]

REC_SOURCE = "recurrence.cu"
EMA_SOURCE = "ema.cu"
F_AT, F_VEC, F_PASS1 = 1, 2, 4          # scan.cuh run-time flags
NULL = np.uint64(0)                      # a null pointer argument

_TYPES = ("float", "double", "complex<float>", "complex<double>")
_REAL = {"float": "float", "double": "double", "complex<float>": "float",
         "complex<double>": "double"}

register(REC_SOURCE, [expr("rec_fwd", t, r) for t in _TYPES for r in (False, True)]
         + [expr("rec_bwd", t) for t in _TYPES]
         + [expr("carry_scan", t, t) for t in _TYPES])
register(EMA_SOURCE, [expr("ema_fwd", t, _REAL[t]) for t in _TYPES]
         + [expr("carry_scan", t, _REAL[t]) for t in _TYPES])


def _rs(arr) -> int:
    """Row stride in elements (0 for a single shared row)."""
    if arr.shape[0] == 1:
        return 0
    return arr.strides[0] // arr.itemsize


def _aligned(arr, nvec) -> bool:
    return is_aligned(arr.data.ptr, _rs(arr), arr.itemsize, nvec)


def _check_vec(name, arr, R, dtype):
    """A per-row state ``(R,)``: contiguous, of the kernel's dtype (CuPy checks neither)."""
    if arr.shape != (R,) or (R > 1 and arr.strides[0] != arr.itemsize):
        raise ValueError(f"{name}: expected a contiguous ({R},) array; got shape {arr.shape}, "
                         f"strides {arr.strides}")
    _check_dtype(name, arr, dtype)


def _check_dtype(name, arr, dtype):
    if arr.dtype != np.dtype(dtype):
        raise TypeError(f"{name}: the kernel reads {np.dtype(dtype)}; got {arr.dtype}")


def _check_rows(name, arr, R, L):
    if arr.ndim != 2 or arr.shape[1] != L or arr.shape[0] not in (1, R) or (
            L > 1 and arr.strides[1] != arr.itemsize):
        raise ValueError(f"{name}: expected rows (1 or {R}, {L}) with unit time stride; got "
                         f"shape {arr.shape}, strides {arr.strides}")


def scan(a, b, h0, y, *, mode="rec", hf=None):
    """Run ``h = a*h + b`` (``mode="rec"``), reversed (``"rrev"``) or the EMA form
    ``h = h + a*(b - h)`` (``"ema"``, ``a`` real) over rows, writing ``y``.

    ``b``, ``y``: ``(R, L)``; ``a``: ``(Ra, L)`` or ``(Ra,)``; ``h0``: ``(R,)``
    contiguous, the state before the first sample (after the last with
    ``"rrev"``); ``hf``: ``(R,)`` contiguous or None, receives the final state.
    Picks the one-block-per-row or the split path (``_plan.split_plan``).
    Returns the plan.
    """
    import cupy as cp

    R, L = b.shape
    _check_rows("b", b, R, L)
    _check_rows("y", y, R, L)
    dt = b.dtype
    at = a.ndim == 2
    if at:
        _check_rows("a", a, R, L)
    elif a.ndim != 1 or a.shape[0] not in (1, R):
        raise ValueError(f"a: expected (1 or {R},) or rows; got shape {a.shape}")
    adt = np.finfo(dt).dtype if mode == "ema" else dt     # ema: real decays
    _check_dtype("a", a, adt)
    _check_dtype("y", y, dt)
    _check_vec("h0", h0, R, dt)
    if hf is not None:
        _check_vec("hf", hf, R, dt)
    V = vlen(dt)
    vec = _aligned(b, V) and _aligned(y, V) and (not at or _aligned(a, V))
    flags = (F_AT if at else 0) | (F_VEC if vec else 0)
    if mode == "ema":
        src, name = EMA_SOURCE, expr("ema_fwd", ctype(dt), _REAL[ctype(dt)])
        carry = expr("carry_scan", ctype(dt), _REAL[ctype(dt)])
    elif mode in ("rec", "rrev"):
        src, name = REC_SOURCE, expr("rec_fwd", ctype(dt), mode == "rrev")
        carry = expr("carry_scan", ctype(dt), ctype(dt))
    else:
        raise ValueError(f"mode must be 'rec', 'rrev' or 'ema'; got {mode!r}")
    plan = split_plan(R, L, dt)
    kern = get_function(src, name)
    a_rs = i64(_rs(a) if a.shape[0] > 1 else 0)
    common = (a, a_rs, b, i64(_rs(b)))
    hfp = NULL if hf is None else hf
    if not plan.split:
        kern((plan.grid,), (NT,), common + (y, i64(_rs(y)), h0, hfp, NULL, NULL, i64(L),
                                            i64(plan.tpc), i32(1), i32(flags)))
        return plan
    aggA = cp.empty((R, plan.nchunks), dtype=a.dtype)
    aggB = cp.empty((R, plan.nchunks), dtype=dt)
    hin = cp.empty((R, plan.nchunks), dtype=dt)
    kern((plan.grid,), (NT,), common + (NULL, i64(0), NULL, NULL, aggA, aggB, i64(L),
                                        i64(plan.tpc), i32(plan.nchunks), i32(flags | F_PASS1)))
    get_function(src, carry)((R,), (NT,), (aggA, aggB, h0, hin, i32(plan.nchunks)))
    kern((plan.grid,), (NT,), common + (y, i64(_rs(y)), hin, hfp, NULL, NULL, i64(L),
                                        i64(plan.tpc), i32(plan.nchunks), i32(flags)))
    return plan


def adjoint(a, g, h, h0, db, da=None, dh0=None, lam_in=None):
    """Backward of :func:`scan` (``mode="rec"``): ``lam[t] = g[t] + conj(a[t+1]) lam[t+1]``.

    Writes ``db = lam`` ``(R, L)``, ``da[t] = lam[t] conj(h[t-1])`` (only for
    time-varying ``a``; pass ``da`` then), ``dh0 = conj(a[0]) lam[0]`` ``(R,)``.
    ``h`` is the forward output, ``h0`` the forward initial state ``(R,)``,
    ``lam_in`` ``(R,)`` the gradient flowing into the last state (default 0).
    For a constant ``a`` its gradient is ``sum_t lam[t] conj(h[t-1])`` (a
    reduction the caller does). Returns the plan.
    """
    import cupy as cp

    R, L = g.shape
    for nm, arr in (("g", g), ("h", h), ("db", db)):
        _check_rows(nm, arr, R, L)
    dt = g.dtype
    at = a.ndim == 2
    if at:
        _check_rows("a", a, R, L)
        if da is None:
            raise ValueError("da is required for a time-varying a")
        _check_rows("da", da, R, L)
    for nm, arr in (("a", a), ("h", h), ("db", db)) + ((("da", da),) if at else ()):
        _check_dtype(nm, arr, dt)
    if not at and (a.ndim != 1 or a.shape[0] not in (1, R)):
        raise ValueError(f"a: expected (1 or {R},) or rows; got shape {a.shape}")
    _check_vec("h0", h0, R, dt)
    for nm, arr in (("dh0", dh0), ("lam_in", lam_in)):
        if arr is not None:
            _check_vec(nm, arr, R, dt)
    V = vlen(dt)
    vec = all(_aligned(x, V) for x in (g, h, db)) and (not at or (_aligned(a, V)
                                                                 and _aligned(da, V)))
    flags = (F_AT if at else 0) | (F_VEC if vec else 0)
    if lam_in is None:
        lam_in = cp.zeros(R, dtype=dt)
    plan = split_plan(R, L, dt)
    kern = get_function(REC_SOURCE, expr("rec_bwd", ctype(dt)))
    a_rs = i64(_rs(a) if a.shape[0] > 1 else 0)
    dap = da if at else NULL
    da_rs = i64(_rs(da) if at else 0)
    dhp = NULL if dh0 is None else dh0
    head = (a, a_rs, g, i64(_rs(g)), h, i64(_rs(h)), h0)
    if not plan.split:
        kern((plan.grid,), (NT,), head + (db, i64(_rs(db)), dap, da_rs, dhp, lam_in, NULL, NULL,
                                          i64(L), i64(plan.tpc), i32(1), i32(flags)))
        return plan
    aggA = cp.empty((R, plan.nchunks), dtype=dt)
    aggB = cp.empty((R, plan.nchunks), dtype=dt)
    lin = cp.empty((R, plan.nchunks), dtype=dt)
    kern((plan.grid,), (NT,), head + (NULL, i64(0), NULL, i64(0), NULL, NULL, aggA, aggB,
                                      i64(L), i64(plan.tpc), i32(plan.nchunks),
                                      i32(flags | F_PASS1)))
    get_function(REC_SOURCE, expr("carry_scan", ctype(dt), ctype(dt)))(
        (R,), (NT,), (aggA, aggB, lam_in, lin, i32(plan.nchunks)))
    kern((plan.grid,), (NT,), head + (db, i64(_rs(db)), dap, da_rs, dhp, lin, NULL, NULL,
                                      i64(L), i64(plan.tpc), i32(plan.nchunks), i32(flags)))
    return plan
