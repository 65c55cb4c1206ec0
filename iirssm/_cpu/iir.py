"""Cascades of direct-form II transposed sections: ``lfilter`` (one section of order K)
and ``sosfilt`` (S sections of order 2) share this one kernel source.

Per section ``s`` and sample ``t`` (coefficients already divided by ``a0``)::

    y      = b[0] x + z[0]
    z[i]   = b[i+1] x - a[i+1] y + z[i+1]      (i = 0 .. K-2)
    z[K-1] = b[K] x - a[K] y

and ``y`` is the next section's ``x``. Coefficients may change every sample
(they act on the sample they multiply: the state ``z`` carries products formed
with earlier samples' coefficients), which for fixed coefficients is exactly
scipy's ``lfilter``/``sosfilt``.

Coefficient arrays have shape ``(S, K+1, Pc, Lc)`` (rows) or ``(S, K+1, Pc, Lc, Qc)``
(time-major), each of ``Pc``, ``Lc``, ``Qc`` 1 or full (see ``_arraytools``).
States are ``(P, S, K)`` (rows) or ``(P, Q, S, K)`` (time-major).
"""

import numpy as np

from ._jit import LANES, kernel, prange

__all__ = ["df2t_rows", "df2t_cols"]


@kernel(fma=True)
def df2t_rows(bc, ac, x, z0, out):
    """Filter ``(P, L)`` rows through the section cascade; returns the final states ``(P, S, K)``.

    Tiles of ``LANES`` signals advance together: each lane runs its whole
    cascade per sample, and the lanes' independent chains overlap in the
    processor. A tile's coefficients are gathered into small section-major
    arrays (once, or once per sample when they vary in time). Second-order
    sections (``K == 2``) run a loop with their two states in separate arrays
    (about 20% faster than the general loop over ``K``).
    """
    P, L = x.shape
    S = bc.shape[0]
    K = bc.shape[1] - 1
    cp = 1 if bc.shape[2] > 1 else 0
    ct = 1 if bc.shape[3] > 1 else 0
    zf = np.empty_like(z0)
    ntiles = (P + LANES - 1) // LANES
    for tile in prange(ntiles):
        p0 = tile * LANES
        n = min(LANES, P - p0)
        z = np.zeros((S, K, LANES), dtype=z0.dtype)
        bl = np.zeros((S, K + 1, LANES), dtype=bc.dtype)
        al = np.zeros((S, K + 1, LANES), dtype=bc.dtype)
        vv = np.zeros(LANES, dtype=out.dtype)
        yv = np.zeros(LANES, dtype=out.dtype)
        for k in range(n):
            for s in range(S):
                for i in range(K):
                    z[s, i, k] = z0[p0 + k, s, i]
        for t in range(L):
            if t == 0 or ct == 1:
                for s in range(S):
                    for i in range(K + 1):
                        for k in range(n):
                            bl[s, i, k] = bc[s, i, (p0 + k) * cp, t * ct]
                            al[s, i, k] = ac[s, i, (p0 + k) * cp, t * ct]
            if K == 2:
                for k in range(n):
                    v = x[p0 + k, t]
                    for s in range(S):
                        y = bl[s, 0, k] * v + z[s, 0, k]
                        z[s, 0, k] = bl[s, 1, k] * v - al[s, 1, k] * y + z[s, 1, k]
                        z[s, 1, k] = bl[s, 2, k] * v - al[s, 2, k] * y
                        v = y
                    out[p0 + k, t] = v
            else:
                # general order: lanes innermost, one statement per state index
                for k in range(n):
                    vv[k] = x[p0 + k, t]
                for s in range(S):
                    for k in range(n):
                        yv[k] = bl[s, 0, k] * vv[k] + z[s, 0, k]
                    for i in range(K - 1):
                        for k in range(n):
                            z[s, i, k] = bl[s, i + 1, k] * vv[k] - al[s, i + 1, k] * yv[k] \
                                + z[s, i + 1, k]
                    for k in range(n):
                        z[s, K - 1, k] = bl[s, K, k] * vv[k] - al[s, K, k] * yv[k]
                        vv[k] = yv[k]
                for k in range(n):
                    out[p0 + k, t] = vv[k]
        for k in range(n):
            for s in range(S):
                for i in range(K):
                    zf[p0 + k, s, i] = z[s, i, k]
    return zf


@kernel(fma=True)
def df2t_cols(bc, ac, x, z0, out, qb):
    """Filter time-major ``(P, L, Q)`` through the cascade in blocks of ``qb`` channels.

    Returns the final states ``(P, Q, S, K)``. The innermost loops run over the
    block's contiguous channels, with the block's coefficients gathered into
    ``(S, K+1, qb)`` arrays (once, or once per sample when they vary in time).
    """
    P, L, Q = x.shape
    S = bc.shape[0]
    K = bc.shape[1] - 1
    cp = 1 if bc.shape[2] > 1 else 0
    ct = 1 if bc.shape[3] > 1 else 0
    cq = 1 if bc.shape[4] > 1 else 0
    zf = np.empty_like(z0)
    nqb = (Q + qb - 1) // qb
    for job in prange(P * nqb):
        p = job // nqb
        q0 = (job % nqb) * qb
        m = min(qb, Q - q0)
        z = np.zeros((S, K, m), dtype=z0.dtype)
        bl = np.zeros((S, K + 1, m), dtype=bc.dtype)
        al = np.zeros((S, K + 1, m), dtype=bc.dtype)
        v = np.zeros(m, dtype=out.dtype)
        y = np.zeros(m, dtype=out.dtype)
        for j in range(m):
            for s in range(S):
                for i in range(K):
                    z[s, i, j] = z0[p, q0 + j, s, i]
        for t in range(L):
            if t == 0 or ct == 1:
                for s in range(S):
                    for i in range(K + 1):
                        for j in range(m):
                            bl[s, i, j] = bc[s, i, p * cp, t * ct, (q0 + j) * cq]
                            al[s, i, j] = ac[s, i, p * cp, t * ct, (q0 + j) * cq]
            for j in range(m):
                v[j] = x[p, t, q0 + j]
            for s in range(S):
                for j in range(m):
                    y[j] = bl[s, 0, j] * v[j] + z[s, 0, j]
                for i in range(K - 1):
                    for j in range(m):
                        z[s, i, j] = bl[s, i + 1, j] * v[j] - al[s, i + 1, j] * y[j] \
                            + z[s, i + 1, j]
                for j in range(m):
                    z[s, K - 1, j] = bl[s, K, j] * v[j] - al[s, K, j] * y[j]
                    v[j] = y[j]
            for j in range(m):
                out[p, t, q0 + j] = v[j]
        for j in range(m):
            for s in range(S):
                for i in range(K):
                    zf[p, q0 + j, s, i] = z[s, i, j]
    return zf
