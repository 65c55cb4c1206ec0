"""Kernels of the scikit-learn feature banks (``iirssm.sklearn``).

:func:`bank_kernel` filters each case through a bank of real EMAs and damped
complex resonators block by block and pools the outputs as it goes (PPV against
learned biases, mean, max, last value), so the full ``(n_outputs, n_timepoints)``
array is never formed; :func:`selective_bank_kernel` does the same for a bank of
selective SSMs (time step, input and read-out matrices computed from the input at
every sample). Parallel over cases.
"""

import math

import numpy as np

from ._jit import inline, jit, prange
from .selective import _c, softplus as _softplus, vexp as _vexp

__all__ = ["bank_kernel", "selective_bank_kernel"]


@inline
def _pool_block(z, nt, f, r, biases, ssum, smax, cnt):
    """Add a block's ``nt`` values ``z`` of output ``f`` to the running pool slot ``r``.

    Sum and max, and per bias of ``f`` the count of values above it (the PPV's
    numerator). Each loop is a simple reduction, which LLVM vectorises.
    """
    s_acc = 0.0
    m_acc = smax[r]
    for j in range(nt):
        s_acc += z[j]
        m_acc = max(m_acc, z[j])
    ssum[r] += s_acc
    smax[r] = m_acc
    for k in range(biases.shape[1]):
        b = biases[f, k]
        c_acc = 0
        for j in range(nt):
            c_acc += z[j] > b
        cnt[r, k] += c_acc


@inline
def _write_pooled(pooled, i, o, offsets, r, cnt, ssum, smax, last, L):
    """Write pool slot ``r`` to ``pooled[i, o:]``: PPVs, mean, max, last (by ``offsets``)."""
    if offsets[0] >= 0:
        for k in range(cnt.shape[1]):
            pooled[i, o + k] = cnt[r, k] / L
    if offsets[1] >= 0:
        pooled[i, o + offsets[1]] = ssum[r] / L
    if offsets[2] >= 0:
        pooled[i, o + offsets[2]] = smax[r]
    if offsets[3] >= 0:
        pooled[i, o + offsets[3]] = last[r]


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
                _pool_block(zbuf, nt, f, f, biases, ssum, smax, cnt)
                if full:
                    for j in range(nt):
                        Z[i, f, t0 + j] = zbuf[j]
                if t0 + nt == L:
                    last[f] = zbuf[nt - 1]
        if not full:
            P = pooled.shape[1] // F
            for f in range(F):
                _write_pooled(pooled, i, f * P, offsets, f, cnt, ssum, smax, last, L)


@jit(parallel=True, fma=True)
def selective_bank_kernel(U, k_ptr, k_sig, sig_w, sig_mu, kind, dt, theta, a_w, b_w, c0_w,
                          c1_w, row_ptr, biases, offsets, pooled, Z):
    """A bank of selective SSMs, pooled (``pooled``) or in full (``Z``, with a time axis).

    U (n, S, L): input signals. Kernel ``k`` reads ``v_t = sum_s (U[s, t] - sig_mu[s]) *
    sig_w[s]`` over ``s`` in ``k_sig[k_ptr[k]:k_ptr[k + 1]]`` and runs ``N`` modes with
    the per-sample time step ``delta_t = dt[k] * softplus(theta[k] + a_w[k] v_t)``,
    zero-order hold and ``B_t = -A (1 + b_w[k, n] v_t)``, so that every mode is

        h_n <- abar_n h_n + (1 - abar_n) (1 + b_w[k, n] v_t) v_t

    with ``abar_n = exp(-n delta_t)`` (``kind[k] == 0``, S4D-real: ``A = -dt (1..N)``)
    or ``exp(n delta_t (-1/2 + i pi))`` (``kind[k] == 1``, harmonics of constant Q:
    ``A = (1..N) (-1/2 + i pi)``). States
    start in the steady state of the first sample. Rows of kernel ``k`` (from
    ``row_ptr[k]``): real: ``h_n`` (N), ``v - h_n`` (N), ``y``; complex: ``Re h_n``,
    ``Im h_n``, ``|h_n|`` (N each), ``y``; ``y_t = sum_n C_tn h_n`` (real) or
    ``2 sum_n C_tn Re h_n`` (complex) with ``C_tn = c0_w[k, n] + c1_w[k, n] v_t``.
    ``pooled`` (n, F * P): PPV, mean, max, last as in :func:`bank_kernel`.
    """
    n, S, L = U.shape
    D, N = b_w.shape
    F = row_ptr[D]
    K = biases.shape[1]
    full = Z.shape[2] == L
    T = _BLOCK
    dty = U.dtype
    z0 = sig_w[0]
    one = _c(1.0, z0)
    half = _c(0.5, z0)
    pi = _c(np.pi, z0)
    zero = _c(0.0, z0)
    R = 3 * N + 1
    for i in prange(n):
        buf = np.empty((R, T), dtype=dty)
        vb = np.empty(T, dtype=dty)
        db = np.empty(T, dtype=dty)
        rb = np.empty(T, dtype=dty)
        gb = np.empty(T, dtype=dty)
        qr_b = np.empty(T, dtype=dty)
        qi_b = np.empty(T, dtype=dty)
        pr_b = np.empty(T, dtype=dty)
        pi_b = np.empty(T, dtype=dty)
        hr = np.empty(N, dtype=dty)
        hi = np.empty(N, dtype=dty)
        cnt = np.zeros((R, K), dtype=np.int64)
        ssum = np.zeros(R, dtype=np.float64)
        smax = np.empty(R, dtype=np.float64)
        last = np.zeros(R, dtype=np.float64)
        for k in range(D):
            r0 = row_ptr[k]
            nr = row_ptr[k + 1] - r0
            cx = kind[k] == 1
            dtk = dt[k]
            thk = theta[k]
            ak = a_w[k]
            s0 = k_ptr[k]
            s1 = k_ptr[k + 1]
            for r in range(nr):
                for q in range(K):
                    cnt[r, q] = 0
                ssum[r] = 0.0
                smax[r] = -np.inf
            for t0 in range(0, L, T):
                nt = min(T, L - t0)
                # ---- the kernel's input and its time steps for this block
                for j in range(nt):
                    vb[j] = 0
                for c in range(s0, s1):
                    sg = k_sig[c]
                    w = sig_w[sg]
                    mu = sig_mu[sg]
                    for j in range(nt):
                        vb[j] += (U[i, sg, t0 + j] - mu) * w
                if t0 == 0:
                    v0 = vb[0]
                    for m in range(N):
                        hr[m] = (one + b_w[k, m] * v0) * v0
                        hi[m] = 0
                for j in range(nt):
                    db[j] = dtk * _softplus(thk + ak * vb[j])
                if cx:
                    for j in range(nt):
                        rb[j] = _vexp(-half * db[j])
                else:
                    for j in range(nt):
                        rb[j] = _vexp(-db[j])
                # ---- the modes: one recurrence at a time along the block (a chain of
                # one multiply-add per sample); the rows derived from the states, the
                # powers of the pole and the inputs are simple loops LLVM vectorises.
                if cx:
                    for j in range(nt):
                        ph = pi * db[j]
                        pr_b[j] = math.cos(ph)
                        pi_b[j] = math.sin(ph)
                    for j in range(nt):      # abar_1 = e^(-delta/2) e^(i pi delta)
                        qr_b[j] = rb[j] * pr_b[j]
                        qi_b[j] = rb[j] * pi_b[j]
                        pr_b[j] = qr_b[j]
                        pi_b[j] = qi_b[j]
                    for j in range(nt):
                        buf[3 * N, j] = zero
                    for m in range(N):
                        if m > 0:            # abar_m = abar_(m-1) abar_1 = abar_1^m
                            for j in range(nt):
                                t = qr_b[j] * pr_b[j] - qi_b[j] * pi_b[j]
                                qi_b[j] = qr_b[j] * pi_b[j] + qi_b[j] * pr_b[j]
                                qr_b[j] = t
                        bm = b_w[k, m]
                        for j in range(nt):
                            gb[j] = (one + bm * vb[j]) * vb[j]
                        a_r = hr[m]
                        a_i = hi[m]
                        for j in range(nt):
                            p_r = qr_b[j]
                            p_i = qi_b[j]
                            g = gb[j]
                            nre = p_r * a_r - p_i * a_i + (one - p_r) * g
                            a_i = p_r * a_i + p_i * a_r - p_i * g
                            a_r = nre
                            buf[m, j] = a_r
                            buf[N + m, j] = a_i
                        hr[m] = a_r
                        hi[m] = a_i
                        cm0 = 2 * c0_w[k, m]
                        cm1 = 2 * c1_w[k, m]
                        for j in range(nt):
                            x_r = buf[m, j]
                            x_i = buf[N + m, j]
                            buf[2 * N + m, j] = math.sqrt(x_r * x_r + x_i * x_i)
                            buf[3 * N, j] += (cm0 + cm1 * vb[j]) * x_r
                else:
                    for j in range(nt):
                        qr_b[j] = rb[j]
                        buf[2 * N, j] = zero
                    for m in range(N):
                        if m > 0:            # abar_m = abar_1^m
                            for j in range(nt):
                                qr_b[j] *= rb[j]
                        bm = b_w[k, m]
                        for j in range(nt):
                            p = qr_b[j]
                            gb[j] = (one - p) * ((one + bm * vb[j]) * vb[j])
                        h = hr[m]
                        for j in range(nt):
                            h = qr_b[j] * h + gb[j]
                            buf[m, j] = h
                        hr[m] = h
                        cm0 = c0_w[k, m]
                        cm1 = c1_w[k, m]
                        for j in range(nt):
                            buf[N + m, j] = vb[j] - buf[m, j]
                            buf[2 * N, j] += (cm0 + cm1 * vb[j]) * buf[m, j]
                # ---- pooling of the block's rows
                for r in range(nr):
                    f = r0 + r
                    _pool_block(buf[r], nt, f, r, biases, ssum, smax, cnt)
                    if full:
                        for j in range(nt):
                            Z[i, f, t0 + j] = buf[r, j]
                    if t0 + nt == L:
                        last[r] = buf[r, nt - 1]
            if not full:
                P = pooled.shape[1] // F
                for r in range(nr):
                    _write_pooled(pooled, i, (r0 + r) * P, offsets, r, cnt, ssum, smax, last, L)
