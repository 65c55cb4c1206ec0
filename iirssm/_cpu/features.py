"""Kernels of the scikit-learn feature banks (``iirssm.sklearn``).

:func:`bank_kernel` filters each case through a bank of real EMAs and damped
complex resonators block by block and pools the outputs as it goes (PPV against
learned biases, mean, max, last value), so the full ``(n_outputs, n_timepoints)``
array is never formed; :func:`pool_kernel` pools outputs that were computed
elsewhere (the selective bank). Parallel over cases.
"""

import numpy as np

from ._jit import jit, prange

__all__ = ["bank_kernel", "pool_kernel"]


@jit(parallel=True)
def pool_kernel(Z, biases, offsets, out):
    """Pool ``Z`` (n, F, L) into ``out`` (n, F * P), see ``iirssm.sklearn._pooling_layout``."""
    n, F, L = Z.shape
    K = biases.shape[1]
    P = out.shape[1] // F
    for i in prange(n):
        for f in range(F):
            o = f * P
            if offsets[0] >= 0:
                for k in range(K):
                    b = biases[f, k]
                    c = 0
                    for t in range(L):
                        c += Z[i, f, t] > b
                    out[i, o + k] = c / L
            s = 0.0
            mx = -np.inf
            for t in range(L):
                s += Z[i, f, t]
                mx = max(mx, Z[i, f, t])
            if offsets[1] >= 0:
                out[i, o + offsets[1]] = s / L
            if offsets[2] >= 0:
                out[i, o + offsets[2]] = mx
            if offsets[3] >= 0:
                out[i, o + offsets[3]] = Z[i, f, L - 1]



#: Time points per block of the filter-bank kernel: the block's filter outputs
#: (signals x rows x block) stay in the core's cache between the filtering and the pooling.
_BLOCK = 128


@jit(parallel=True)
def bank_kernel(U, p_real, p_re, p_im, g_cplx, out_row, ch_ptr, ch_sig, biases, offsets,
                 pooled, Z):
    """Filter-bank outputs, pooled (``pooled``) or in full (``Z``, when it has a time axis).

    U (n, S, L): input signals. Real modes ``p_real`` (R,): EMAs started at the first
    value. Complex modes ``p_re + i p_im`` (Q,) with gains ``g_cplx``, started in the
    steady state of the first value. Per signal the rows of the bank are

        0            u
        1 .. R       EMA_r                          (r = 0 .. R-1)
        R+1 .. 2R    u - EMA_r
        2R+1 .. 3R-1 EMA_r - EMA_{r+1}
        3R ..        Re h_q, then Im h_q, then |h_q|  (Q each)

    Output ``f`` is row ``out_row[f]`` summed over the signals
    ``ch_sig[ch_ptr[f]:ch_ptr[f + 1]]``. ``pooled`` (n, F * P): PPV against each
    bias, mean, max, last, placed by ``offsets`` (``iirssm.sklearn._pooling_layout``).
    """
    n, S, L = U.shape
    R = p_real.shape[0]
    Q = p_re.shape[0]
    NB = 3 * R + 3 * Q
    F = out_row.shape[0]
    K = biases.shape[1]
    full = Z.shape[2] == L
    T = _BLOCK
    for i in prange(n):
        bas = np.empty((S, NB, T), dtype=U.dtype)
        er = np.empty((S, R), dtype=U.dtype)
        hr = np.empty((S, Q), dtype=U.dtype)
        hi = np.empty((S, Q), dtype=U.dtype)
        zbuf = np.empty(T, dtype=U.dtype)
        cnt = np.zeros((F, K), dtype=np.int64)
        ssum = np.zeros(F, dtype=np.float64)
        smax = np.full(F, -np.inf, dtype=np.float64)
        last = np.zeros(F, dtype=np.float64)
        for s in range(S):
            u0 = U[i, s, 0]
            for r in range(R):
                er[s, r] = u0
            for q in range(Q):
                # steady state of a constant input u0: h = g u0 / (1 - p)
                dr = 1.0 - p_re[q]
                di = -p_im[q]
                den = dr * dr + di * di
                hr[s, q] = g_cplx[q] * u0 * dr / den
                hi[s, q] = -g_cplx[q] * u0 * di / den
        for t0 in range(0, L, T):
            nt = min(T, L - t0)
            # ---- filtering: the bank's rows for this block. One recurrence at a time
            # along the block (a chain of a few cycles per sample); the rows derived
            # from the states are then simple loops that LLVM vectorises.
            for s in range(S):
                for j in range(nt):
                    bas[s, 0, j] = U[i, s, t0 + j]
                for r in range(R):
                    pr = p_real[r]
                    gr = 1.0 - pr
                    e = er[s, r]
                    for j in range(nt):
                        e = pr * e + gr * bas[s, 0, j]
                        bas[s, 1 + r, j] = e
                    er[s, r] = e
                    for j in range(nt):
                        bas[s, R + 1 + r, j] = bas[s, 0, j] - bas[s, 1 + r, j]
                for r in range(R - 1):
                    for j in range(nt):
                        bas[s, 2 * R + 1 + r, j] = bas[s, 1 + r, j] - bas[s, 2 + r, j]
                for q in range(Q):
                    pre = p_re[q]
                    pim = p_im[q]
                    gq = g_cplx[q]
                    a = hr[s, q]
                    b = hi[s, q]
                    for j in range(nt):
                        nr = pre * a - pim * b + gq * bas[s, 0, j]
                        b = pre * b + pim * a
                        a = nr
                        bas[s, 3 * R + q, j] = a
                        bas[s, 3 * R + Q + q, j] = b
                    hr[s, q] = a
                    hi[s, q] = b
                    for j in range(nt):
                        x_r = bas[s, 3 * R + q, j]
                        x_i = bas[s, 3 * R + Q + q, j]
                        bas[s, 3 * R + 2 * Q + q, j] = np.sqrt(x_r * x_r + x_i * x_i)
            # ---- outputs: sums over the signals of each output, then pooling. Each
            # loop over the block's samples is a simple reduction, which LLVM vectorises.
            for f in range(F):
                row = out_row[f]
                c0 = ch_ptr[f]
                c1 = ch_ptr[f + 1]
                for j in range(nt):
                    zbuf[j] = bas[ch_sig[c0], row, j]
                for c in range(c0 + 1, c1):
                    for j in range(nt):
                        zbuf[j] += bas[ch_sig[c], row, j]
                s_acc = 0.0
                m_acc = smax[f]
                for j in range(nt):
                    s_acc += zbuf[j]
                    m_acc = max(m_acc, zbuf[j])
                ssum[f] += s_acc
                smax[f] = m_acc
                for k in range(K):
                    b = biases[f, k]
                    c_acc = 0
                    for j in range(nt):
                        c_acc += zbuf[j] > b
                    cnt[f, k] += c_acc
                if full:
                    for j in range(nt):
                        Z[i, f, t0 + j] = zbuf[j]
                if t0 + nt == L:
                    last[f] = zbuf[nt - 1]
        if not full:
            P = pooled.shape[1] // F
            for f in range(F):
                o = f * P
                if offsets[0] >= 0:
                    for k in range(K):
                        pooled[i, o + k] = cnt[f, k] / L
                if offsets[1] >= 0:
                    pooled[i, o + offsets[1]] = ssum[f] / L
                if offsets[2] >= 0:
                    pooled[i, o + offsets[2]] = smax[f]
                if offsets[3] >= 0:
                    pooled[i, o + offsets[3]] = last[f]
