"""Kernels for the first-order recurrence and the EMA update.

Two update rules share every kernel, chosen by the run-time flag ``ema``:

* ``ema=False`` (linear recurrence): ``h[t] = c[t] * h[t-1] + x[t]``
* ``ema=True``  (EMA form):           ``h[t] = h[t-1] + c[t] * (x[t] - h[t-1])``,
  i.e. ``a = 1 - c`` and ``b = c * x`` without materialising ``c * x``.

The flag is loop-invariant, so LLVM unswitches it; one source serves both rules
and all four dtypes. ``reverse=True`` runs time backwards (``h[t]`` from
``h[t+1]``), which equals flipping the inputs, filtering and flipping back.

Coefficients ``c`` come in the broadcast form of ``_arraytools.coef_to_work``:
each dimension is 1 or full, indexed with a 0/1 step, so a scalar or
per-channel coefficient is read from a handful of values.

Layouts:

* :func:`scan_rows`: ``(P, L)`` with time contiguous. Tiles of ``LANES`` signals
  advance together in time (independent multiply-add chains), tiles in parallel.
* :func:`scan_cols`: ``(P, L, Q)`` with ``Q > 1`` channels contiguous (time-major):
  the inner loop runs over a block of contiguous channels.
* :func:`scan_rows_chunked`: a few very long rows. Each row is cut into
  ``n_chunks`` pieces scanned from zero state as lanes, writing the output
  (pass 1); the carries between pieces are combined serially (``n_chunks``
  steps); pass 2 adds each piece's carry times the running product of its
  decays, in the EMA form only until that product is below rounding. The
  chunking is fixed (it does not depend on the thread count), so results are
  reproducible.
"""

import numpy as np
from numba import types as nbtypes
from numba.extending import overload

from ._jit import LANES, inline, kernel, prange, row_view3

__all__ = ["scan_rows", "scan_cols", "scan_rows_chunked"]


@kernel(writes=("out",))
def scan_rows(c, x, h0, out, ema, reverse):
    """Scan ``(P, L)`` rows. ``c``: ``(Pc, Lc)``; ``h0``: ``(P,)``; writes ``out`` and returns final states."""
    P, L = x.shape
    cp = 1 if c.shape[0] > 1 else 0
    ct = 1 if c.shape[1] > 1 else 0
    hf = np.empty_like(h0)
    ntiles = (P + LANES - 1) // LANES
    for tile in prange(ntiles):
        p0 = tile * LANES
        n = min(LANES, P - p0)
        if n == LANES:
            h = h0[p0:p0 + LANES].copy()
            for i in range(L):
                t = L - 1 - i if reverse else i
                for k in range(LANES):
                    ck = c[(p0 + k) * cp, t * ct]
                    if ema:
                        h[k] = h[k] + ck * (x[p0 + k, t] - h[k])
                    else:
                        h[k] = ck * h[k] + x[p0 + k, t]
                    out[p0 + k, t] = h[k]
            for k in range(LANES):
                hf[p0 + k] = h[k]
        else:
            for p in range(p0, p0 + n):
                hp = h0[p]
                for i in range(L):
                    t = L - 1 - i if reverse else i
                    cv = c[p * cp, t * ct]
                    if ema:
                        hp = hp + cv * (x[p, t] - hp)
                    else:
                        hp = cv * hp + x[p, t]
                    out[p, t] = hp
                hf[p] = hp
    return hf


@kernel(writes=("out",))
def scan_cols(c, x, h0, out, ema, reverse, qb):
    """Scan time-major ``(P, L, Q)`` in blocks of ``qb`` channels.

    ``c``: ``(Pc, Lc, Qc)``; ``h0``: ``(P, Q)``; returns final states ``(P, Q)``.
    Per job, the block's coefficients are gathered into a contiguous row (once,
    or once per sample when they vary in time), so the inner loop over channels
    is a plain contiguous loop that LLVM vectorises. The block size only decides
    how channels are shared among threads; it does not change any result.
    """
    P, L, Q = x.shape
    cp = 1 if c.shape[0] > 1 else 0
    ct = 1 if c.shape[1] > 1 else 0
    cq = 1 if c.shape[2] > 1 else 0
    hf = np.empty_like(h0)
    nqb = (Q + qb - 1) // qb
    for job in prange(P * nqb):
        p = job // nqb
        q0 = (job % nqb) * qb
        m = min(qb, Q - q0)
        h = h0[p, q0:q0 + m].copy()
        cr = np.empty(m, dtype=c.dtype)
        for j in range(m):
            cr[j] = c[p * cp, 0, (q0 + j) * cq]
        for i in range(L):
            t = L - 1 - i if reverse else i
            # 1-D row views: the loops over them run ~3x faster than with 3-D (or flat)
            # indexing (measured); row_view3 is pointer arithmetic, without a slice's
            # bookkeeping every sample (docs/performance.md)
            xr = row_view3(x, p, t, q0)
            orow = row_view3(out, p, t, q0)
            if ct == 1 and cq == 0:
                # one coefficient per sample shared by the block (times=, adjust=True)
                cv = c[p * cp, t, 0]
                if ema:
                    for j in range(m):
                        hj = h[j] + cv * (xr[j] - h[j])
                        h[j] = hj
                        orow[j] = hj
                else:
                    for j in range(m):
                        hj = cv * h[j] + xr[j]
                        h[j] = hj
                        orow[j] = hj
                continue
            if ct == 1:
                for j in range(m):
                    cr[j] = c[p * cp, t, q0 + j]
            if ema:
                for j in range(m):
                    hj = h[j] + cr[j] * (xr[j] - h[j])
                    h[j] = hj
                    orow[j] = hj
            else:
                for j in range(m):
                    hj = cr[j] * h[j] + xr[j]
                    h[j] = hj
                    orow[j] = hj
        for j in range(m):
            hf[p, q0 + j] = h[j]
    return hf


@inline
def _decay(cv, ema):
    """The factor a step applies to the state: ``1 - c`` (EMA form) or ``c``."""
    return 1 - cv if ema else cv


@inline
def _step(h, cv, xv, ema):
    """One step of either rule: the new state and the step's decay."""
    if ema:
        return h + cv * (xv - h), _decay(cv, ema)
    return cv * h + xv, _decay(cv, ema)


def _real_finfo(t):
    """``numpy.finfo`` of a Numba scalar type's real part (while compiling)."""
    return np.finfo(np.dtype(str(t.underlying_float if isinstance(t, nbtypes.Complex) else t)))


def _tiny(v):
    """The smallest normal number of ``v``'s (real part's) type; in kernels only."""


@overload(_tiny, jit_options={"nogil": True})
def _ov_tiny(v):
    tiny = float(_real_finfo(v).tiny)
    return lambda v: tiny


def _fix_tol(arr):
    """The dtype's epsilon / 1024 for ``arr``'s (real part's) dtype; in kernels only."""


@overload(_fix_tol, jit_options={"nogil": True})
def _ov_fix_tol(arr):
    tol = float(_real_finfo(arr.dtype).eps) / 1024
    return lambda arr: tol


@inline
def _flush(g):
    """A product of decays below the smallest normal number is taken as zero: its
    weight is far below rounding, and products of subnormal numbers are slow."""
    return g if abs(g) >= _tiny(g) else g * 0


@inline
def _fix_pieces(c, x, out, carry, p, k0, n_chunks, lc, L, cp, ct, ema, reverse, may_stop, tol):
    """Pass 2 of :func:`scan_rows_chunked` for the ``LANES`` pieces from ``k0`` of row
    ``p`` (piece 0 has no carry): re-run a piece from a NaN or inf carry; add the
    other carries times the running product of their piece's decays, advanced
    together, until every product is zero, or below ``tol`` where ``may_stop``."""
    step = -1 if reverse else 1
    g = np.ones(LANES, dtype=out.dtype)
    cr = np.zeros(LANES, dtype=out.dtype)
    base = np.empty(LANES, dtype=np.int64)
    k1 = 1 if k0 == 0 else 0
    last = k0 + LANES == n_chunks               # its last piece takes the remainder
    for k in range(k1, LANES):
        base[k] = L - 1 - (k0 + k) * lc if reverse else (k0 + k) * lc
        n = L - (n_chunks - 1) * lc if last and k == LANES - 1 else lc
        cr[k] = carry[p, k0 + k]
        if not np.isfinite(cr[k]):
            h = cr[k]
            for i in range(n):
                t = base[k] + step * i
                h = _step(h, c[p * cp, t * ct], x[p, t], ema)[0]
                out[p, t] = h
            cr[k] = 0                           # its outputs are NaN or inf already
            g[k] = 0
    for i0 in range(0, lc, 64):
        done = True
        for k in range(k1, LANES):
            done = done and (g[k] == 0 or (may_stop and abs(g[k]) <= tol))
        if done:
            return
        for i in range(i0, min(i0 + 64, lc)):
            for k in range(k1, LANES):
                t = base[k] + step * i
                g[k] = _flush(g[k] * _decay(c[p * cp, t * ct], ema))
                out[p, t] = out[p, t] + g[k] * cr[k]
    if last:
        k = LANES - 1
        for s in range(n_chunks * lc, L):
            if g[k] == 0 or (may_stop and abs(g[k]) <= tol):
                return
            t = L - 1 - s if reverse else s
            g[k] = _flush(g[k] * _decay(c[p * cp, t * ct], ema))
            out[p, t] = out[p, t] + g[k] * cr[k]


@kernel(writes=("out",))
def scan_rows_chunked(c, x, h0, out, ema, reverse, n_chunks):
    """Scan a few long ``(P, L)`` rows in ``n_chunks`` pieces per row (a multiple of ``LANES``).

    Scan, then fix: pass 1 runs every piece from zero state (the first from
    ``h0``), ``LANES`` pieces advanced together, and writes the output, keeping
    each piece's end state and product of decays; the carries between pieces
    are combined serially (``n_chunks`` steps per row); pass 2 adds to each
    later piece its carry times the running product of its decays (:func:`_fix_pieces`).
    In the EMA form the decays ``1 - c`` lie in ``[0, 1]``, and a constant
    ``|c| <= 1`` in the linear form gives the same, so that product only
    shrinks: pass 2 stops where it is below :func:`_fix_tol` (the dtype's
    epsilon / 1024, relative to the carry), after a few hundred samples for
    ``c = 0.1`` (pass 1 reads the input and writes the output once; the rest is
    small). Otherwise pass 2 runs until the product is zero (products below the
    smallest normal number are flushed to zero, :func:`_flush`), at most the
    whole piece. A carry that is NaN or inf re-runs its piece from it, so that
    non-finite values propagate as in one sequential pass. Requires
    ``L >= n_chunks``. Returns final states like :func:`scan_rows` (the last
    output).
    """
    P, L = x.shape
    cp = 1 if c.shape[0] > 1 else 0
    ct = 1 if c.shape[1] > 1 else 0
    lc = L // n_chunks              # piece length; the last piece also takes the remainder
    tiles = n_chunks // LANES
    step = -1 if reverse else 1
    hloc = np.zeros((P, n_chunks), dtype=h0.dtype)   # each piece's end state from zero
    gprod = np.ones((P, n_chunks), dtype=h0.dtype)   # each piece's product of decays
    carry = np.zeros((P, n_chunks), dtype=h0.dtype)  # the state entering each piece
    hf = np.empty_like(h0)
    tol = _fix_tol(out)
    for job in prange(P * tiles):
        p = job // tiles
        k0 = (job % tiles) * LANES
        h = np.zeros(LANES, dtype=h0.dtype)
        g = np.ones(LANES, dtype=h0.dtype)
        base = np.empty(LANES, dtype=np.int64)
        for k in range(LANES):
            base[k] = L - 1 - (k0 + k) * lc if reverse else (k0 + k) * lc
        if k0 == 0:
            h[0] = h0[p]            # the first piece starts from the true initial state
        for i in range(lc):
            for k in range(LANES):
                t = base[k] + step * i
                h[k], d = _step(h[k], c[p * cp, t * ct], x[p, t], ema)
                g[k] = _flush(g[k] * d)
                out[p, t] = h[k]
        if k0 + LANES == n_chunks:
            k = LANES - 1                           # the last piece takes the remainder
            for s in range(n_chunks * lc, L):
                t = L - 1 - s if reverse else s
                h[k], d = _step(h[k], c[p * cp, t * ct], x[p, t], ema)
                g[k] = _flush(g[k] * d)
                out[p, t] = h[k]
        for k in range(LANES):
            hloc[p, k0 + k] = h[k]
            gprod[p, k0 + k] = g[k]
    # carries between pieces: serial over the pieces of a row
    for p in range(P):
        hin = hloc[p, 0]                        # piece 0 already includes h0
        for k in range(1, n_chunks):
            carry[p, k] = hin
            hin = gprod[p, k] * hin + hloc[p, k]
    for job in prange(P * tiles):
        p = job // tiles
        k0 = (job % tiles) * LANES
        # may a lane stop once its weight is below tol? In the EMA form the decays
        # 1 - c lie in [0, 1]; in the linear form only a constant |c| <= 1 is known
        # not to grow the weight again
        may_stop = ema or (ct == 0 and abs(c[p * cp, 0]) <= 1)
        _fix_pieces(c, x, out, carry, p, k0, n_chunks, lc, L, cp, ct, ema, reverse,
                    may_stop, tol)
    for p in range(P):
        hf[p] = out[p, 0] if reverse else out[p, L - 1]
    return hf
