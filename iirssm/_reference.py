"""Slow, obviously-correct loops: the specification the fast kernels are tested against.

Nothing here is fast or clever. Each function works on plain NumPy arrays, one
signal at a time, one sample at a time, in float64/complex128 unless told
otherwise, and follows its published definition line by line.
"""

from __future__ import annotations

import numpy as np

__all__ = ["linear_recurrence", "ewm_mean", "ewm_mean_weights", "lfilter", "sosfilt",
           "diagonal_ssm", "selective_scan", "ssd_scan"]


def linear_recurrence(a, b, zi=None, axis=-1, reverse=False, dtype=None):
    """``h[t] = a[t] * h[t-1] + b[t]`` along ``axis`` by a Python loop.

    ``a`` broadcasts against ``b``; ``zi`` has ``b``'s shape with ``axis`` of
    length 1. Returns ``(h, zf)``.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    shape = np.broadcast_shapes(a.shape, b.shape)
    if dtype is None:
        dtype = np.result_type(a, b, np.float64)
    a = np.moveaxis(np.broadcast_to(a, shape).astype(dtype), axis, -1)
    b = np.moveaxis(np.broadcast_to(b, shape).astype(dtype), axis, -1)
    L = shape[axis]
    if zi is None:
        h = np.zeros(b.shape[:-1], dtype=dtype)
    else:
        zshape = list(shape)
        zshape[axis] = 1
        z = np.moveaxis(np.broadcast_to(np.asarray(zi), tuple(zshape)), axis, -1)
        h = z[..., 0].astype(dtype).copy()
    y = np.empty(b.shape, dtype=dtype)
    order = range(L - 1, -1, -1) if reverse else range(L)
    for idx in np.ndindex(*b.shape[:-1]):
        s = h[idx]
        for t in order:
            s = a[idx + (t,)] * s + b[idx + (t,)]
            y[idx + (t,)] = s
        h[idx] = s
    return np.moveaxis(y, -1, axis), np.expand_dims(h, axis % len(shape))


def ewm_mean(x, decay, new_weight, adjust, ignore_na=False, min_periods=0,
             mean0=np.nan, weight0=1.0, count0=0):
    """pandas' exponentially weighted mean of one 1-D signal, step by step.

    A transcription of the algorithm pandas documents for ``ewm(...).mean()``
    (``pandas/_libs/window/aggregations.pyx``, function ``ewm``), written for one
    signal with per-step parameters:

    * ``decay[t]``: how much the weight of the past shrinks from sample ``t-1``
      to ``t`` (``1 - alpha``, or ``(1 - alpha) ** (dt / halflife)`` with times);
    * ``new_weight[t]``: ``alpha`` (used when ``adjust=False``); pandas' ``com == 1``
      path uses ``1 - old_weight`` instead, which we apply where it equals 0.5.

    Returns ``(y, (mean, weight, count))``.
    """
    x = np.asarray(x)
    L = x.shape[0]
    decay = np.broadcast_to(np.asarray(decay, dtype=np.float64), (L,))
    new_weight = np.broadcast_to(np.asarray(new_weight, dtype=np.float64), (L,))
    minp = max(int(min_periods), 1)
    out = np.empty(L, dtype=np.result_type(x.dtype, np.float64))
    weighted = mean0
    old_wt = float(weight0)
    nobs = count0
    for t in range(L):
        cur = x[t]
        is_obs = bool(np.isfinite(cur))  # pandas replaces +-inf by NaN first
        nobs += int(is_obs)
        if not np.isnan(weighted):
            if is_obs or not ignore_na:
                old_wt *= decay[t]
                if is_obs:
                    if adjust:
                        new_wt = 1.0
                    elif new_weight[t] == 0.5:
                        new_wt = 1.0 - old_wt
                    else:
                        new_wt = new_weight[t]
                    if weighted != cur:
                        weighted = (old_wt * weighted + new_wt * cur) / (old_wt + new_wt)
                    old_wt = old_wt + new_wt if adjust else 1.0
        elif is_obs:
            weighted = cur
        out[t] = weighted if nobs >= minp else np.nan
    return out, (weighted, old_wt, nobs)


def ewm_mean_weights(x, alpha, adjust):
    """The textbook weighted-average definition of the EMA of a NaN-free 1-D signal.

    ``adjust=True``: ``y[t] = sum_i (1-alpha)**i x[t-i] / sum_i (1-alpha)**i``.
    ``adjust=False``: ``y[0] = x[0]``, ``y[t] = (1-alpha) y[t-1] + alpha x[t]``
    written as its closed form ``(1-alpha)**t x[0] + sum_{i<t} alpha (1-alpha)**i x[t-i]``.
    O(L^2); for small tests only.
    """
    x = np.asarray(x, dtype=np.float64)
    L = x.shape[0]
    y = np.empty(L)
    for t in range(L):
        i = np.arange(t + 1)
        w = (1 - alpha) ** i
        if not adjust:
            w = w * alpha
            w[t] = (1 - alpha) ** t
        y[t] = np.sum(w * x[t - i]) / (np.sum(w) if adjust else 1.0)
    return y


def lfilter(b, a, x, zi=None):
    """One signal through a (possibly time-varying) IIR filter, by its difference equation.

    ``x`` is 1-D of length ``L``; ``b`` and ``a`` are ``(n_b,)``/``(n_a,)`` or
    ``(n_b, L)``/``(n_a, L)`` (one set of coefficients per sample). Coefficients act
    on the sample they multiply, each normalised by ``a_0`` of its own sample::

        y[t] = sum_k b_k[t-k] x[t-k] - sum_{k>=1} a_k[t-k] y[t-k]  (+ zi[t] for t < K)

    ``zi`` is scipy's direct form II transposed state (the contribution of the
    samples before 0 to ``y[0]``, ``y[1]``, ...). Returns ``(y, zf)``.
    """
    x = np.asarray(x)
    L = x.shape[0]
    b = np.asarray(b)
    a = np.asarray(a)
    K = max(b.shape[0], a.shape[0]) - 1
    dtype = np.result_type(b, a, x, np.float64)
    bb = np.zeros((K + 1, L), dtype=dtype)
    aa = np.zeros((K + 1, L), dtype=dtype)
    bb[:b.shape[0]] = b.reshape(b.shape[0], -1)
    aa[:a.shape[0]] = a.reshape(a.shape[0], -1)
    bb = bb / aa[0]
    aa = aa / aa[0]
    z = np.zeros(K, dtype=dtype) if zi is None else np.asarray(zi, dtype=dtype)
    y = np.zeros(L, dtype=dtype)
    for t in range(L):
        acc = z[t] if t < K else 0
        for k in range(0, min(t, K) + 1):
            acc += bb[k, t - k] * x[t - k]
            if k >= 1:
                acc -= aa[k, t - k] * y[t - k]
        y[t] = acc
    zf = np.zeros(K, dtype=dtype)
    T = L - 1
    for i in range(K):
        acc = z[T + 1 + i] if T + 1 + i < K else 0
        for j in range(i + 1, K + 1):
            s = T + 1 + i - j
            if 0 <= s <= T:
                acc += bb[j, s] * x[s] - aa[j, s] * y[s]
        zf[i] = acc
    return y, zf


def sosfilt(sos, x, zi=None):
    """One signal through a cascade of (possibly time-varying) second-order sections.

    ``sos`` is ``(n_sections, 6)`` or ``(n_sections, 6, L)``; ``zi`` is ``(n_sections, 2)``.
    Each section is :func:`lfilter` of its six coefficients. Returns ``(y, zf)``.
    """
    sos = np.asarray(sos)
    y = np.asarray(x)
    zf = []
    for s in range(sos.shape[0]):
        y, z = lfilter(sos[s, :3], sos[s, 3:], y, None if zi is None else zi[s])
        zf.append(z)
    return y, np.array(zf)


def diagonal_ssm(poles, B, C, D, u, zi=None, k=None):
    """A bank of diagonal state-space systems, mode by mode and sample by sample.

    Time is the last axis of ``u``. ``poles``, ``B``, ``C`` are ``(..., N)`` and ``D``
    is ``(...)``, broadcasting against ``u.shape[:-1]``; ``zi`` is the modal state
    ``(..., N)`` (default 0); ``k`` holds extra FIR terms ``(..., K)`` at delays
    1..K (inputs before t = 0 are 0)::

        h_n[t] = p_n h_n[t-1] + B_n u[t]
        y[t]   = sum_n C_n h_n[t] + D u[t] + sum_j k_j u[t-j]

    Computes in complex128 and returns ``(y, zf)``, both complex.
    """
    u = np.asarray(u, dtype=np.complex128)
    p = np.asarray(poles, dtype=np.complex128)
    Bv = np.asarray(B, dtype=np.complex128)
    Cv = np.asarray(C, dtype=np.complex128)
    Dv = np.asarray(D, dtype=np.complex128)
    N = np.broadcast_shapes(p.shape, Bv.shape, Cv.shape)[-1]
    K = 0 if k is None else np.shape(k)[-1]
    kv = np.zeros((0,)) if k is None else np.asarray(k, dtype=np.complex128)
    batch = np.broadcast_shapes(u.shape[:-1], p.shape[:-1], Bv.shape[:-1], Cv.shape[:-1],
                                Dv.shape, kv.shape[:-1])
    L = u.shape[-1]
    u = np.broadcast_to(u, batch + (L,))
    p = np.broadcast_to(p, batch + (N,))
    Bv = np.broadcast_to(Bv, batch + (N,))
    Cv = np.broadcast_to(Cv, batch + (N,))
    Dv = np.broadcast_to(Dv, batch)
    kv = np.broadcast_to(kv, batch + (K,))
    h = np.zeros(batch + (N,), dtype=np.complex128)
    if zi is not None:
        h[...] = np.broadcast_to(np.asarray(zi, dtype=np.complex128), batch + (N,))
    y = np.zeros(batch + (L,), dtype=np.complex128)
    for idx in np.ndindex(*batch):
        s = h[idx].copy()
        for t in range(L):
            acc = Dv[idx] * u[idx + (t,)]
            for n in range(N):
                s[n] = p[idx + (n,)] * s[n] + Bv[idx + (n,)] * u[idx + (t,)]
                acc += Cv[idx + (n,)] * s[n]
            for j in range(1, K + 1):
                if t - j >= 0:
                    acc += kv[idx + (j - 1,)] * u[idx + (t - j,)]
            y[idx + (t,)] = acc
        h[idx] = s
    return y, h


# ------------------------------------------------------------ selective scan (Mamba)

def _softplus_ref(x):
    """PyTorch's ``F.softplus`` (beta 1, threshold 20): ``log1p(exp(x))``, ``x`` above 20."""
    return x if x > 20 else float(np.log1p(np.exp(x)))


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, initial_state=None, discretization="mamba",
                   dtype=None):
    """mamba-ssm's ``selective_scan_ref``, one (batch, channel, state, sample) at a time.

    Transcribed from the semantics of ``mamba_ssm.ops.selective_scan_interface.
    selective_scan_ref``: ``delta`` plus ``delta_bias``, then softplus; per state
    ``x = exp(delta·A)·x + delta·B·u``; ``y = Σ_n C·x``, ``2·Re(y)`` when the states
    are complex; ``out = y + D·u``, then ``out·silu(z)``. Plus an ``initial_state``
    and the discretisations of :func:`iirssm._selective.selective_scan`.
    ``u``: (batch, dim, L); B/C: (dim, N), (batch, N, L) or (batch, G, N, L),
    natural complex arrays. Computes in ``dtype`` (default complex128 when A, B, C
    or the initial state are complex, else float64); returns float64-like ``out``
    and, if asked, the last state.
    """
    u = np.asarray(u)
    Bt, dim, L = u.shape
    A = np.asarray(A)
    N = A.shape[1]
    arrays = [A, np.asarray(B), np.asarray(C)]
    if initial_state is not None:
        arrays.append(np.asarray(initial_state))
    cplx = any(np.iscomplexobj(a) for a in arrays)
    if dtype is None:
        dtype = np.complex128 if cplx else np.float64
    rdtype = np.empty(0, dtype).real.dtype
    B = np.asarray(B, dtype=dtype)
    C = np.asarray(C, dtype=dtype)
    A = A.astype(dtype)

    def coef(M, b, d, n, t):
        if M.ndim == 2:                      # time-invariant (dim, N)
            return M[d, n]
        if M.ndim == 3:                      # shared (batch, N, L)
            return M[b, n, t]
        G = M.shape[1]                       # grouped (batch, G, N, L)
        return M[b, d // (dim // G), n, t]

    out = np.empty((Bt, dim, L), dtype=rdtype)
    last = np.empty((Bt, dim, N), dtype=dtype)
    for b in range(Bt):
        for d in range(dim):
            x = np.zeros(N, dtype=dtype)
            if initial_state is not None:
                x[:] = np.asarray(initial_state)[b, d]
            for t in range(L):
                dt = rdtype.type(delta[b, d, t])
                if delta_bias is not None:
                    dt = dt + rdtype.type(np.asarray(delta_bias)[d])
                if delta_softplus:
                    dt = rdtype.type(_softplus_ref(float(dt)))
                y = dtype(0) if np.dtype(dtype).kind == "c" else rdtype.type(0)
                for n in range(N):
                    a = A[d, n]
                    zz = dt * a
                    if discretization == "mamba":
                        abar, bbar = np.exp(zz), dt
                    elif discretization == "zoh":
                        abar = np.exp(zz)
                        bbar = np.expm1(zz) / a if zz != 0 else dt
                    elif discretization == "euler":
                        abar, bbar = 1 + zz, dt
                    elif discretization == "bilinear":
                        abar, bbar = (1 + zz / 2) / (1 - zz / 2), dt / (1 - zz / 2)
                    else:
                        raise ValueError(discretization)
                    x[n] = abar * x[n] + bbar * coef(B, b, d, n, t) * u[b, d, t]
                    y = y + coef(C, b, d, n, t) * x[n]
                if np.iscomplexobj(y):
                    y = 2 * y.real
                o = y + (0 if D is None else np.asarray(D)[d] * u[b, d, t])
                if z is not None:
                    zz = float(z[b, d, t])
                    o = o * (zz / (1 + np.exp(-zz)))
                out[b, d, t] = o
            last[b, d] = x
    return (out, last) if return_last_state else out


def ssd_scan(x, dt, A, B, C, D=None, initial_states=None):
    """Mamba-2's scalar-decay SSM, one head and one sample at a time (``ssd_minimal``'s
    recurrence): ``h[t] = exp(dt[t]·A)·h[t-1] + dt[t]·x[t] ⊗ B[t]``,
    ``y[t] = h[t]·C[t] + D·x[t]``. ``x``: (batch, L, heads, headdim); ``dt``:
    (batch, L, heads); ``A``: (heads,); ``B``, ``C``: (batch, L, groups, N).
    Returns ``(y, final_states)``, states (batch, heads, headdim, N)."""
    x = np.asarray(x, dtype=np.float64)
    Bt, L, H, P = x.shape
    B = np.asarray(B, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    G, N = B.shape[2], B.shape[3]
    y = np.empty_like(x)
    hf = np.empty((Bt, H, P, N))
    for b in range(Bt):
        for h in range(H):
            g = h // (H // G)
            s = np.zeros((P, N)) if initial_states is None else np.array(
                initial_states[b, h], dtype=np.float64)
            for t in range(L):
                a = np.exp(dt[b, t, h] * A[h])
                s = a * s + dt[b, t, h] * np.outer(x[b, t, h], B[b, t, g])
                y[b, t, h] = s @ C[b, t, g] + (0 if D is None else D[h] * x[b, t, h])
            hf[b, h] = s
    return y, hf


