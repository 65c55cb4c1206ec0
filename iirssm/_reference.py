"""Slow, obviously-correct loops: the specification the fast kernels are tested against.

Nothing here is fast or clever. Each function works on plain NumPy arrays, one
signal at a time, one sample at a time, in float64/complex128 unless told
otherwise, and follows its published definition line by line.
"""

from __future__ import annotations

import numpy as np

__all__ = ["linear_recurrence", "ewm_mean", "ewm_mean_weights"]


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
