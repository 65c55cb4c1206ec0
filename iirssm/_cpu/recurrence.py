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
  ``n_chunks`` pieces scanned from zero state as lanes (pass 1); the carries
  between pieces are combined serially (``n_chunks`` steps); pass 2 adds each
  piece's carry times the running product of its decays. The chunking is fixed
  (it does not depend on the thread count), so results are reproducible.
"""

import numpy as np

from ._jit import LANES, kernel, prange, row_view3

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


@kernel(writes=("out",))
def scan_rows_chunked(c, x, h0, out, ema, reverse, n_chunks):
    """Scan a few long ``(P, L)`` rows in ``n_chunks`` pieces per row (a multiple of ``LANES``).

    Reduce, then scan: pass 1 runs every piece from zero state without writing
    anything (its end state and the product of its decays); the carries between
    pieces are combined serially (``n_chunks`` steps per row); pass 2 runs every
    piece again from its true entering state and writes the output. That reads
    the input twice and writes the output once (24 bytes per float64 sample),
    with ``LANES`` pieces advanced together in both passes.
    Requires ``L >= n_chunks``. Returns final states like :func:`scan_rows`.
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
    for phase in range(2):
        for job in prange(P * tiles):
            p = job // tiles
            k0 = (job % tiles) * LANES
            h = np.zeros(LANES, dtype=h0.dtype)
            g = np.ones(LANES, dtype=h0.dtype)
            base = np.empty(LANES, dtype=np.int64)
            for k in range(LANES):
                base[k] = L - 1 - (k0 + k) * lc if reverse else (k0 + k) * lc
                if phase == 1:
                    h[k] = carry[p, k0 + k]
            if k0 == 0:
                h[0] = h0[p]            # the first piece starts from the true initial state
            for i in range(lc):
                for k in range(LANES):
                    t = base[k] + step * i
                    cv = c[p * cp, t * ct]
                    if ema:
                        h[k] = h[k] + cv * (x[p, t] - h[k])
                    else:
                        h[k] = cv * h[k] + x[p, t]
                    if phase == 0:
                        g[k] = g[k] * (1 - cv) if ema else g[k] * cv
                    else:
                        out[p, t] = h[k]
            if k0 + LANES == n_chunks:
                k = LANES - 1                           # the last piece takes the remainder
                for s in range(n_chunks * lc, L):
                    t = L - 1 - s if reverse else s
                    cv = c[p * cp, t * ct]
                    if ema:
                        h[k] = h[k] + cv * (x[p, t] - h[k])
                    else:
                        h[k] = cv * h[k] + x[p, t]
                    if phase == 0:
                        g[k] = g[k] * (1 - cv) if ema else g[k] * cv
                    else:
                        out[p, t] = h[k]
            if phase == 0:
                for k in range(LANES):
                    hloc[p, k0 + k] = h[k]
                    gprod[p, k0 + k] = g[k]
            elif k0 + LANES == n_chunks:
                hf[p] = h[LANES - 1]    # the final state is the last output, exactly
        if phase == 0:
            # carries between pieces: serial over the pieces of a row
            for p in range(P):
                hin = hloc[p, 0]                        # piece 0 already includes h0
                for k in range(1, n_chunks):
                    carry[p, k] = hin
                    hin = gprod[p, k] * hin + hloc[p, k]
    return hf
