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
from .selective import _c, _sel, softplus as _softplus, vexp as _vexp

__all__ = ["bank_kernel", "selective_bank_kernel"]


@inline
def _pool_block(z, nt, f, r, biases, ssum, smax, cnt):
    """Add a block's ``nt`` values ``z`` of output ``f`` to the running pool slot ``r``.

    Sum and max, and per bias of ``f`` the count of values above it (the PPV's
    numerator). Each loop is a simple reduction, which LLVM vectorises; one pass
    over the block counts against four biases, so each value is loaded once per
    four biases instead of once per bias (integer counts: the same results).
    """
    s_acc = 0.0
    m_acc = smax[r]
    for j in range(nt):
        s_acc += z[j]
        m_acc = max(m_acc, z[j])
    ssum[r] += s_acc
    smax[r] = m_acc
    K = biases.shape[1]
    k = 0
    while k + 4 <= K:
        b0 = biases[f, k]
        b1 = biases[f, k + 1]
        b2 = biases[f, k + 2]
        b3 = biases[f, k + 3]
        c0 = 0
        c1 = 0
        c2 = 0
        c3 = 0
        for j in range(nt):
            x = z[j]
            c0 += x > b0
            c1 += x > b1
            c2 += x > b2
            c3 += x > b3
        cnt[r, k] += c0
        cnt[r, k + 1] += c1
        cnt[r, k + 2] += c2
        cnt[r, k + 3] += c3
        k += 4
    while k < K:
        b = biases[f, k]
        c_acc = 0
        for j in range(nt):
            c_acc += z[j] > b
        cnt[r, k] += c_acc
        k += 1


@inline
def _cmode(pwr, pwi, gm, buf, N, m, j, a_r, a_i, one):
    """One sample of complex mode ``m``: ``h <- abar h + (1 - abar) g`` with ``abar``
    ``pwr/pwi[m, j]`` and the real input ``g = gm[m, j]``; ``Re h``/``Im h`` go to
    rows ``m`` and ``N + m`` of ``buf``. Returns the new ``(Re h, Im h)``."""
    p_r = pwr[m, j]
    p_i = pwi[m, j]
    g = gm[m, j]
    nre = p_r * a_r - p_i * a_i + (one - p_r) * g
    a_i = p_r * a_i + p_i * a_r - p_i * g
    buf[m, j] = nre
    buf[N + m, j] = a_i
    return nre, a_i


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


@jit(parallel=True, writes=("pooled", "Z"))
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


# pi/2 in three parts (fdlibm's pio2_1, pio2_2, pio2_2t): k * _PIO2_1 and k * _PIO2_2
# are exact for |k| < 2**20, so r = x - k pi/2 keeps full precision up to |x| ~ 1e6.
_TWO_OVER_PI = 0.6366197723675814
_PIO2_1 = 1.57079632673412561417e+00
_PIO2_2 = 6.07710050630396597660e-11
_PIO2_3 = 2.02226624879595063154e-21


@inline
def _sincos(x):
    """``(sin x, cos x)`` of a float64 ``x``, vectorisable (no libm call).

    Cody-Waite reduction ``x = k pi/2 + r`` (``|r| <= pi/4``), Taylor polynomials
    of ``sin r`` (to ``r**15``) and ``cos r`` (to ``r**16``; truncation below
    5e-17), and the quadrant ``k mod 4`` applied with selects. Within about 1 ulp
    of ``math.sin``/``math.cos`` for ``|x|`` up to about 1e6 (tested to 3e5); NaN and
    inf give NaN.
    """
    kf = np.floor(x * _TWO_OVER_PI + 0.5)
    kf = _sel(kf == kf, kf, 0.0)   # noqa: PLR0124  (NaN: k = 0, r carries the NaN)
    r = ((x - kf * _PIO2_1) - kf * _PIO2_2) - kf * _PIO2_3
    r2 = r * r
    ps = -1.0 / 1307674368000.0
    ps = ps * r2 + 1.0 / 6227020800.0
    ps = ps * r2 - 1.0 / 39916800.0
    ps = ps * r2 + 1.0 / 362880.0
    ps = ps * r2 - 1.0 / 5040.0
    ps = ps * r2 + 1.0 / 120.0
    ps = ps * r2 - 1.0 / 6.0
    s = r + r * (r2 * ps)
    pc = -1.0 / 20922789888000.0
    pc = pc * r2 + 1.0 / 87178291200.0
    pc = pc * r2 - 1.0 / 479001600.0
    pc = pc * r2 + 1.0 / 3628800.0
    pc = pc * r2 - 1.0 / 40320.0
    pc = pc * r2 + 1.0 / 720.0
    pc = pc * r2 - 1.0 / 24.0
    pc = pc * r2 + 0.5
    c = 1.0 - r2 * pc
    q = kf - 4.0 * np.floor(0.25 * kf)          # k mod 4, exactly (0, 1, 2 or 3)
    odd = (q == 1.0) | (q == 3.0)
    sw = _sel(odd, c, s)
    cw = _sel(odd, s, c)
    sn = _sel(q >= 2.0, -sw, sw)
    cs = _sel((q == 1.0) | (q == 2.0), -cw, cw)
    return sn, cs


@jit(parallel=True, fma=True, writes=("pooled", "Z"))
def selective_bank_kernel(U, k_ptr, k_sig, sig_w, sig_mu, kind, dt, theta, a_w, b_w, c0_w,
                          c1_w, row_ptr, biases, offsets, pooled, Z, pick):
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
    ``Z`` (n, F, L): every output of every case; with ``pick`` (F,) not empty, ``Z``
    is (1, F, L) and holds output ``f`` of case ``pick[f]`` only (what the PPV
    biases are read from), and a kernel runs on a case only if one of its outputs
    is picked from that case.

    Per block of ``_BLOCK`` samples everything that does not depend on the states is
    computed first, in loops over the block that LLVM vectorises: the time steps,
    the poles ``abar_n`` (powers of ``abar_1``, whose ``exp``, ``sin`` and ``cos``
    are the vectorisable :func:`~iirssm._cpu.selective.vexp` and :func:`_sincos`)
    and the modes' inputs. The recurrences then advance three modes together, three
    independent multiply-add chains, so the loop is not bound by the latency of
    one chain.
    """
    n, S, L = U.shape
    D, N = b_w.shape
    F = row_ptr[D]
    K = biases.shape[1]
    full = Z.shape[2] == L
    picked = pick.shape[0] > 0
    T = _BLOCK
    dty = U.dtype
    z0 = sig_w[0]
    one = _c(1.0, z0)
    half = _c(0.5, z0)
    pi = _c(np.pi, z0)
    zero = _c(0.0, z0)
    R = 3 * N + 1
    N3 = N - N % 3
    for i in prange(n):
        buf = np.empty((R, T), dtype=dty)
        vb = np.empty(T, dtype=dty)
        db = np.empty(T, dtype=dty)
        rb = np.empty(T, dtype=dty)
        pwr = np.empty((N, T), dtype=dty)    # abar_n: real part (the pole, real modes)
        pwi = np.empty((N, T), dtype=dty)    # abar_n: imaginary part
        gm = np.empty((N, T), dtype=dty)     # the modes' inputs
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
            if picked:
                need = False
                for r in range(nr):
                    need = need or pick[r0 + r] == i
                if not need:
                    continue
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
                    # ---- poles abar_m = abar_1^m, abar_1 = e^(-delta/2) e^(i pi delta),
                    # and inputs; then the recurrences, three modes at a time
                    for j in range(nt):
                        rb[j] = _vexp(-half * db[j])
                    for j in range(nt):
                        sn, cs = _sincos(np.float64(pi * db[j]))
                        pwr[0, j] = rb[j] * dty.type(cs)
                        pwi[0, j] = rb[j] * dty.type(sn)
                    for m in range(1, N):
                        for j in range(nt):
                            p_r = pwr[0, j]
                            p_i = pwi[0, j]
                            q_r = pwr[m - 1, j]
                            q_i = pwi[m - 1, j]
                            pwr[m, j] = q_r * p_r - q_i * p_i
                            pwi[m, j] = q_r * p_i + q_i * p_r
                    for m in range(N):
                        bm = b_w[k, m]
                        for j in range(nt):
                            gm[m, j] = (one + bm * vb[j]) * vb[j]
                    for m in range(0, N3, 3):
                        a_r0 = hr[m]
                        a_i0 = hi[m]
                        a_r1 = hr[m + 1]
                        a_i1 = hi[m + 1]
                        a_r2 = hr[m + 2]
                        a_i2 = hi[m + 2]
                        for j in range(nt):
                            a_r0, a_i0 = _cmode(pwr, pwi, gm, buf, N, m, j, a_r0, a_i0, one)
                            a_r1, a_i1 = _cmode(pwr, pwi, gm, buf, N, m + 1, j, a_r1, a_i1, one)
                            a_r2, a_i2 = _cmode(pwr, pwi, gm, buf, N, m + 2, j, a_r2, a_i2, one)
                        hr[m] = a_r0
                        hi[m] = a_i0
                        hr[m + 1] = a_r1
                        hi[m + 1] = a_i1
                        hr[m + 2] = a_r2
                        hi[m + 2] = a_i2
                    for m in range(N3, N):
                        a_r = hr[m]
                        a_i = hi[m]
                        for j in range(nt):
                            a_r, a_i = _cmode(pwr, pwi, gm, buf, N, m, j, a_r, a_i, one)
                        hr[m] = a_r
                        hi[m] = a_i
                    # ---- rows derived from the states
                    for j in range(nt):
                        buf[3 * N, j] = zero
                    for m in range(N):
                        cm0 = 2 * c0_w[k, m]
                        cm1 = 2 * c1_w[k, m]
                        for j in range(nt):
                            x_r = buf[m, j]
                            x_i = buf[N + m, j]
                            buf[2 * N + m, j] = math.sqrt(x_r * x_r + x_i * x_i)
                            buf[3 * N, j] += (cm0 + cm1 * vb[j]) * x_r
                else:
                    for j in range(nt):
                        pwr[0, j] = _vexp(-db[j])
                    for m in range(1, N):
                        for j in range(nt):
                            pwr[m, j] = pwr[m - 1, j] * pwr[0, j]
                    for m in range(N):
                        bm = b_w[k, m]
                        for j in range(nt):
                            p = pwr[m, j]
                            gm[m, j] = (one - p) * ((one + bm * vb[j]) * vb[j])
                    for m in range(0, N3, 3):
                        h0 = hr[m]
                        h1 = hr[m + 1]
                        h2 = hr[m + 2]
                        for j in range(nt):
                            h0 = pwr[m, j] * h0 + gm[m, j]
                            h1 = pwr[m + 1, j] * h1 + gm[m + 1, j]
                            h2 = pwr[m + 2, j] * h2 + gm[m + 2, j]
                            buf[m, j] = h0
                            buf[m + 1, j] = h1
                            buf[m + 2, j] = h2
                        hr[m] = h0
                        hr[m + 1] = h1
                        hr[m + 2] = h2
                    for m in range(N3, N):
                        h = hr[m]
                        for j in range(nt):
                            h = pwr[m, j] * h + gm[m, j]
                            buf[m, j] = h
                        hr[m] = h
                    for j in range(nt):
                        buf[2 * N, j] = zero
                    for m in range(N):
                        cm0 = c0_w[k, m]
                        cm1 = c1_w[k, m]
                        for j in range(nt):
                            buf[N + m, j] = vb[j] - buf[m, j]
                            buf[2 * N, j] += (cm0 + cm1 * vb[j]) * buf[m, j]
                # ---- pooling of the block's rows (or their copy to Z)
                for r in range(nr):
                    f = r0 + r
                    if picked:
                        if pick[f] == i:
                            for j in range(nt):
                                Z[0, f, t0 + j] = buf[r, j]
                        continue
                    if full:
                        for j in range(nt):
                            Z[i, f, t0 + j] = buf[r, j]
                        continue
                    _pool_block(buf[r], nt, f, r, biases, ssum, smax, cnt)
                    if t0 + nt == L:
                        last[r] = buf[r, nt - 1]
            if not full:
                P = pooled.shape[1] // F
                for r in range(nr):
                    _write_pooled(pooled, i, (r0 + r) * P, offsets, r, cnt, ssum, smax, last, L)
