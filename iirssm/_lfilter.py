"""scipy.signal drop-ins: lfilter, lfilter_zi, lfiltic, filtfilt, sosfilt, sosfilt_zi, sosfiltfilt.

Same names, signatures, dtype rules, return conventions and errors as scipy
(1.17). One extension where scipy raises: coefficient arrays with more than one
dimension. ``b`` of shape ``(n_b, *S)``, ``a`` of shape ``(n_a, *S)`` and ``sos``
of shape ``(n_sections, 6, *S)``, where ``S`` broadcasts against ``x`` with time
on ``axis``, give per-channel coefficients (``S`` of length 1 along ``axis``)
and/or time-varying coefficients (full length along ``axis``).

Time-varying coefficients act in the direct form II transposed structure: the
coefficients of sample ``t`` multiply ``x[t]`` and ``y[t]``, so that

    y[t] = sum_k b_k[t-k] x[t-k] - sum_{k>=1} a_k[t-k] y[t-k]

with every coefficient divided by ``a_0`` of its own sample. The state
(``zi``/``zf``) is then the same as scipy's, and a signal filtered in chunks
with the state carried over equals the whole.
"""

from __future__ import annotations

import cmath

import numba
import numpy as np

from . import _pandas, _prefault, _timesplit
from ._arraytools import (check_state, coef_to_work, finish_output, frame_of, new_output,
                          state_from_work, state_to_work, to_work)
from ._backend import foreign
from ._cpu.iir import MAX_LANES, cascade_lanes, cascade_spec, df2t
from ._cpu._jit import LANES
from ._validation import as_float_array, compute_dtype, signal_array

__all__ = ["lfilter", "lfilter_zi", "lfiltic", "filtfilt", "sosfilt", "sosfilt_zi",
           "sosfiltfilt"]


# ----------------------------------------------------------------------------- helpers

def _coef_array(c, name, dtype=None):
    arr = as_float_array(c, name, dtype)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"Parameter {name} is not a non-empty array of coefficients "
                         f"(shape {arr.shape}); give at least one coefficient")
    if not _all_finite(arr):
        raise ValueError(f"{name} contains non-finite coefficients (NaN or inf)")
    return arr


def _all_finite(arr):
    """``np.isfinite(arr).all()``; a few coefficients are checked in Python, which for
    them takes a third of the time of the ufunc and its reduction."""
    if arr.size <= 32:
        return all(map(cmath.isfinite, arr.ravel().tolist()))
    return bool(np.isfinite(arr).all())


def _run_cascade(bw, aw, x_arr, frame, dtype, z0, lf, few_rows=False):
    """Run the DF2T cascade. ``bw``/``aw``: ``(S, K+1) + (Pc, Lc, Qc)``; ``z0``: ``(P, S, K, Q)``;
    ``lf``: sum in ``lfilter``'s order, else in ``sosfilt``'s (``iirssm/_cpu/iir.py``).

    Returns ``(out_nd, zf)`` with ``zf`` shaped ``(P, S, K, Q)``. A few long signals
    with shared coefficients run parallel in time (``iirssm/_timesplit.py``);
    ``few_rows`` (:func:`_few_rows`): return None where they cannot, for the
    caller to hand the call to scipy.
    """
    P, L, Q = frame.plq
    x3 = to_work(x_arr, frame)
    out_nd, out3 = new_output(frame, dtype)
    z = z0.transpose(0, 3, 1, 2).copy()   # (P, Q, S, K), C-ordered, updated in place
    S, K = bw.shape[0], bw.shape[1] - 1
    spec = cascade_spec(K, lf)
    split = _timesplit.plan(P, Q, L, bw, aw, spec, dtype)
    if split is not None and _timesplit.run(split, bw, aw, x3, out3, z, spec,
                                            df2t.pick(P * L * Q)):
        return finish_output(out_nd, out3, frame), z.transpose(0, 2, 3, 1)
    if few_rows:
        return None
    lanes = cascade_lanes(P, Q, np.dtype(dtype).itemsize)
    helper = None
    if _spare_core_faults(P, Q, lanes, out_nd, S * (2 * K + 1 if lf else 6), dtype):
        lanes = MAX_LANES
        helper = _prefault.start(out_nd)
    try:
        df2t.pick(P * L * Q)(bw, aw, x3, z, out3, lanes, spec)
    finally:
        if helper is not None:
            helper.join()
    return finish_output(out_nd, out3, frame), z.transpose(0, 2, 3, 1)


#: Arithmetic operations per sample and channel (``2K+1`` for an order-``K`` section
#: in lfilter's order, 6 per sosfilt section; x4 for complex) up to which one job of
#: :data:`MAX_LANES` time-major channels with a helper faulting the output in beats
#: splitting the channels between threads (``_spare_core_faults``).
LIGHT_OPS = 13


def _spare_core_faults(P, Q, lanes, out_nd, ops, dtype) -> bool:
    """Whether to run time-major jobs of :data:`MAX_LANES` channels and leave a core to
    fault the fresh output in (``iirssm/_prefault.py``) rather than narrow the jobs so
    that every thread gets one.

    Narrower jobs split each row of the signal between threads, and the threads
    fault the fresh output in as they write it (faulting 512 MB in takes 43 ms of
    one core). One job leaves the other core to fault the output in ahead of it.
    On the 2-core VM, C-ordered (10⁶, 64) float64 along axis 0, against two jobs
    of 32: butter(4) ``lfilter`` 0.82-0.91x the time, butter(6) 0.91x, butter(8)
    1.00-1.05x; ``sosfilt`` butter(4) 1.04-1.05x, butter(6) 1.06x, butter(8)
    1.00-1.35x (compute-bound on one core; ``docs/performance.md``, "Axis 0").
    Hence :data:`LIGHT_OPS` = 13: ``lfilter`` up to order 6, ``sosfilt`` up to two
    sections (whose ±5 % is within this VM's noise). The constant comes from one
    machine; where a core has more memory bandwidth, the crossover moves.
    """
    if Q == 1 or lanes >= MAX_LANES or out_nd.nbytes < _prefault.MIN_BYTES:
        return False
    if not _prefault.supported() or numba.get_num_threads() < 2:
        return False
    if P * -(-Q // MAX_LANES) >= numba.get_num_threads():
        return False        # wide jobs would fill every thread anyway (cascade_lanes)
    return ops * (4 if np.dtype(dtype).kind == "c" else 1) <= LIGHT_OPS


def _few_rows(frame) -> bool:
    """Fewer signals than one tile of lanes, time contiguous: nothing to run side by side.

    There a DF2T cascade is one latency-bound chain per signal, and scipy's C loop
    runs it faster than a lane-tiled kernel with a single filled lane (measured:
    one channel of 10^7, butter(4): scipy 7.6 ns/sample, the tiled kernel 33).
    With fixed 1-D coefficients, signals long enough run in chunks side by side
    (``iirssm/_timesplit.py``: one channel of 10^7, butter(4), 3.0-4.0x faster
    than scipy on 2 cores); the others are handed to scipy.signal itself.
    """
    P, L, Q = frame.plq
    return Q == 1 and P < LANES


_A0_IS_ZERO = ("filter coefficient a[0] must be nonzero (the filter is normalised by it); "
               "got a[0] == 0")


def _normalized(b, a, dtype):
    """Pad ``b`` and ``a`` to one length ``K+1`` (K >= 1) and divide by ``a[0]``."""
    nb, na = b.shape[0], a.shape[0]
    n = max(nb, na, 2)
    if (b.ndim == 1 and a.ndim == 1 and nb == n and na == n and b.dtype == dtype
            and a.dtype == dtype):              # the common case: nothing to pad
        if a[0] == 0:
            raise ValueError(_A0_IS_ZERO)
        return b / a[0], a / a[0], n - 1       # new arrays, as below
    tail = np.broadcast_shapes(b.shape[1:], a.shape[1:])
    bb = np.zeros((n,) + tail, dtype=dtype)
    aa = np.zeros((n,) + tail, dtype=dtype)
    bb[:nb] = b
    aa[:na] = a
    a0 = aa[0].copy()
    if np.any(a0 == 0):
        raise ValueError(_A0_IS_ZERO)
    return bb / a0, aa / a0, max(nb, na) - 1


# ----------------------------------------------------------------------------- lfilter

def lfilter(b, a, x, axis=-1, zi=None):
    """Filter data along one dimension with an IIR or FIR filter (``scipy.signal.lfilter``).

    Direct form II transposed, normalised by ``a[0]``:
    ``a[0] y[n] = b[0] x[n] + ... + b[M] x[n-M] - a[1] y[n-1] - ... - a[N] y[n-N]``.

    Parameters
    ----------
    b, a : array_like
        Numerator and denominator coefficients. 1-D as in scipy, or, as an
        extension, ``(n_coef, *S)`` with ``S`` broadcasting against ``x`` (time
        on ``axis``): per-channel and/or per-sample (time-varying) coefficients.
    x : array_like
        The signal (a pandas Series/DataFrame is filtered along its index and
        returned as the same type).
    axis : int, optional
        Time axis. Default -1.
    zi : array_like, optional
        Initial state: ``x``'s shape with ``axis`` of length
        ``max(len(a), len(b)) - 1`` (singleton dimensions broadcast).

    Returns
    -------
    y : ndarray
        The output; dtype ``numpy.result_type(b, a, x)`` (integers as float64).
    zf : ndarray
        Final state, returned only when ``zi`` is given.

    Notes
    -----
    Non-finite coefficients are refused (scipy accepts them and returns NaN).
    NaN or inf in ``x`` propagate to every later output.

    Examples
    --------
    >>> import numpy as np, scipy.signal
    >>> import iirssm
    >>> b, a = scipy.signal.butter(2, 0.2)
    >>> x = np.random.default_rng(0).standard_normal(100)
    >>> np.allclose(iirssm.lfilter(b, a, x), scipy.signal.lfilter(b, a, x))
    True

    A resonance sweeping in frequency: one pair of poles per sample.

    >>> t = np.arange(1000)
    >>> theta = np.linspace(0.05, 0.5, t.size) * np.pi
    >>> a_tv = np.stack([np.ones(t.size), -2 * 0.98 * np.cos(theta), np.full(t.size, 0.98**2)])
    >>> y = iirssm.lfilter([1 - 0.98], a_tv, np.random.default_rng(1).standard_normal(t.size))
    >>> y.shape
    (1000,)
    """
    impl = foreign(None, "lfilter", b, a, x, zi)
    if impl is not None:
        return impl(b, a, x, axis=axis, zi=zi)
    x_in, template = _pandas.unwrap(x, "x")
    axis = _pandas.pandas_axis(template, axis)
    dtype = compute_dtype(("b", b), ("a", a), ("x", x_in), ("zi", zi), promote_first=True)
    b_arr = _coef_array(b, "b", dtype)
    a_arr = _coef_array(a, "a", dtype)
    x_arr, axis = signal_array(x_in, "x", dtype, axis)
    zi_arr = None if zi is None else as_float_array(zi, "zi", dtype)
    y, zf = _lfilter(b_arr, a_arr, x_arr, axis, dtype, zi_arr)
    y = _pandas.rewrap(y, template)
    return y if zi is None else (y, zf)


def _lfilter(b_arr, a_arr, x_arr, axis, dtype, zi_arr, zi_checked=False):
    """``lfilter`` of checked arrays of ``dtype`` (``axis`` non-negative); ``(y, zf)``,
    ``zf`` None without ``zi_arr``. ``zi_checked``: ``zi_arr`` already has the
    state's full shape (callers that built it)."""
    frame = frame_of(x_arr, axis)
    few = b_arr.ndim == 1 and a_arr.ndim == 1 and _few_rows(frame)
    if few and not _timesplit.long_enough(frame.plq[1]):
        return _scipy_lfilter(b_arr, a_arr, x_arr, axis, zi_arr, zi_checked, frame)
    bn, an, K = _normalized(b_arr, a_arr, dtype)
    bw = coef_to_work(bn, frame, "b", dtype, lead=1)
    if an.shape != bn.shape:
        an = np.broadcast_to(an, bn.shape)
    aw = coef_to_work(an, frame, "a", dtype, lead=1)
    if bw.shape != aw.shape:
        aw = np.ascontiguousarray(np.broadcast_to(aw, bw.shape))
    Kw = bw.shape[0] - 1   # >= 1: a pure gain runs as order 1 with zero coefficients
    P, L, Q = frame.plq
    z0 = np.zeros((P, 1, Kw, Q), dtype=dtype)
    if zi_arr is not None:
        if K == 0:
            state_to_work(zi_arr, frame, "zi", dtype, size=0)  # shape check only
        else:
            z0[:, 0] = state_to_work(zi_arr, frame, "zi", dtype, size=K)
    done = _run_cascade(bw[None], aw[None], x_arr, frame, dtype, z0, True, few)
    if done is None:
        return _scipy_lfilter(b_arr, a_arr, x_arr, axis, zi_arr, zi_checked, frame)
    y, zf = done
    if zi_arr is None:
        return y, None
    return y, state_from_work(np.ascontiguousarray(zf[:, 0, :K]), frame)


def _scipy_lfilter(b_arr, a_arr, x_arr, axis, zi_arr, zi_checked, frame):
    """scipy.signal.lfilter itself, for a few signals it runs faster (:func:`_few_rows`)."""
    import scipy.signal
    if a_arr[0] == 0:
        raise ValueError(_A0_IS_ZERO)
    K = max(b_arr.shape[0], a_arr.shape[0]) - 1
    if zi_arr is None:
        return scipy.signal.lfilter(b_arr, a_arr, x_arr, axis=axis), None
    if not zi_checked:
        expect = check_state(zi_arr, frame, "zi", K)   # our shape check and message
        if zi_arr.shape != expect:
            zi_arr = np.broadcast_to(zi_arr, expect)
    return scipy.signal.lfilter(b_arr, a_arr, x_arr, axis=axis, zi=zi_arr)


_POLE_AT_ONE = ("the filter has a pole at z = 1 (sum(a) == 0): its step response has no "
                "steady state, so lfilter_zi is undefined")


def lfilter_zi(b, a):
    """Initial state for ``lfilter`` that gives the step response's steady state.

    Scale by ``x[0]`` to start a filter at the value of the signal's first sample
    (``scipy.signal.lfilter_zi``). Computed in closed form: with
    ``y_ss = sum(b) / sum(a)``, ``zi[i] = sum_{j > i} (b[j] - a[j] * y_ss)``.

    Parameters
    ----------
    b, a : array_like
        Coefficients, 1-D, or ``(n_coef, *S)`` for a bank of filters.

    Returns
    -------
    zi : ndarray
        Shape ``(max(len(a), len(b)) - 1, *S)``.

    Raises
    ------
    ValueError
        ``a`` is all zeros.
    numpy.linalg.LinAlgError
        The filter has a pole at z = 1 (``sum(a) == 0``): no steady state exists.

    Examples
    --------
    >>> import iirssm
    >>> iirssm.lfilter_zi([0.5], [1.0, -0.5])
    array([0.5])
    """
    b = _coef_array(b, "b")
    a = _coef_array(a, "a")
    if a.ndim == 1:
        # scipy strips leading zeros of a here (not in lfilter)
        nz = np.flatnonzero(a)
        if nz.size == 0:
            raise ValueError("There must be at least one nonzero `a` coefficient.")
        a = a[nz[0]:]
    dtype = np.result_type(b, a)
    bn, an, K = _normalized(b, a, dtype)
    sa = an.sum(axis=0)
    if np.any(sa == 0):
        raise np.linalg.LinAlgError(_POLE_AT_ONE)
    y_ss = bn.sum(axis=0) / sa
    terms = bn[1:K + 1] - an[1:K + 1] * y_ss
    return np.cumsum(terms[::-1], axis=0)[::-1].copy()


def lfiltic(b, a, y, x=None):
    """Initial state for ``lfilter`` from past outputs and inputs (``scipy.signal.lfiltic``).

    Parameters
    ----------
    b, a : array_like
        1-D coefficients.
    y : array_like
        Past outputs, newest first: ``y[-1], y[-2], ...`` (missing ones are 0).
    x : array_like, optional
        Past inputs, newest first (missing ones are 0).

    Returns
    -------
    zi : ndarray
        Shape ``(max(len(a), len(b)) - 1,)``.

    Examples
    --------
    >>> import numpy as np, scipy.signal
    >>> import iirssm
    >>> b, a = [1.0, 2.0, 3.0], [2.0, 0.5, 0.1]
    >>> np.allclose(iirssm.lfiltic(b, a, [1.0, 2.0], [3.0, 4.0]),
    ...             scipy.signal.lfiltic(b, a, [1.0, 2.0], [3.0, 4.0]))
    True
    """
    b = _coef_array(b, "b")
    a = _coef_array(a, "a")
    if b.ndim != 1 or a.ndim != 1:
        raise ValueError("lfiltic takes 1-D b and a")
    yp = as_float_array(y, "y")
    xp = np.zeros(0) if x is None else as_float_array(x, "x")
    if yp.ndim != 1 or xp.ndim != 1:
        raise ValueError("y and x must be 1-D (newest sample first)")
    dtype = np.result_type(b, a, yp, xp, np.float64)
    bn, an, K = _normalized(b, a, dtype)
    if K == 0:
        return np.zeros(0, dtype=dtype)
    ypad = np.zeros(K, dtype=dtype)
    xpad = np.zeros(K, dtype=dtype)
    ypad[:min(K, yp.size)] = yp[:K]
    xpad[:min(K, xp.size)] = xp[:K]
    zi = np.zeros(K, dtype=dtype)
    # z_i = sum_{j > i} (b_j x[i-j] - a_j y[i-j]), with x[-1] = xpad[0], x[-2] = xpad[1], ...
    for i in range(K):
        for j in range(i + 1, K + 1):
            zi[i] += bn[j] * xpad[j - i - 1] - an[j] * ypad[j - i - 1]
    return zi


# ----------------------------------------------------------------------------- sosfilt

def _sos_array(sos, dtype=None):
    arr = as_float_array(sos, "sos", dtype)
    if arr.ndim < 2 or arr.shape[1] != 6 or arr.shape[0] == 0:
        raise ValueError(f"sos array must be shape (n_sections, 6) (or (n_sections, 6, *S) "
                         f"for per-channel/time-varying sections); got {arr.shape}")
    if not _all_finite(arr):
        raise ValueError("sos contains non-finite coefficients (NaN or inf)")
    if not (arr[:, 3] == 1).all():
        raise ValueError("sos[:, 3] should be all ones (each section normalised by a0)")
    return arr


def sosfilt(sos, x, axis=-1, zi=None):
    """Filter data with cascaded second-order sections (``scipy.signal.sosfilt``).

    Parameters
    ----------
    sos : array_like
        ``(n_sections, 6)`` rows ``[b0, b1, b2, a0, a1, a2]`` with ``a0 == 1``; or,
        as an extension, ``(n_sections, 6, *S)`` with ``S`` broadcasting against
        ``x``: per-channel and/or time-varying sections.
    x : array_like
        The signal.
    axis : int, optional
        Time axis. Default -1.
    zi : array_like, optional
        Initial states, shape ``(n_sections, ..., 2, ...)``: ``x``'s shape with
        ``axis`` of length 2, preceded by the section index.

    Returns
    -------
    y : ndarray
    zf : ndarray
        Only when ``zi`` is given.

    Examples
    --------
    >>> import numpy as np, scipy.signal
    >>> import iirssm
    >>> sos = scipy.signal.butter(6, 0.1, output="sos")
    >>> x = np.random.default_rng(0).standard_normal((3, 500))
    >>> np.allclose(iirssm.sosfilt(sos, x), scipy.signal.sosfilt(sos, x))
    True
    """
    impl = foreign(None, "sosfilt", sos, x, zi)
    if impl is not None:
        return impl(sos, x, axis=axis, zi=zi)
    x_in, template = _pandas.unwrap(x, "x")
    axis = _pandas.pandas_axis(template, axis)
    dtype = compute_dtype(("sos", sos), ("x", x_in), ("zi", zi), promote_first=True)
    sos_arr = _sos_array(sos, dtype)
    x_arr, axis = signal_array(x_in, "x", dtype, axis)
    zi_arr = None if zi is None else as_float_array(zi, "zi", dtype)
    y, zf = _sosfilt(sos_arr, x_arr, axis, dtype, zi_arr)
    y = _pandas.rewrap(y, template)
    return y if zi is None else (y, zf)


def _sosfilt(sos_arr, x_arr, axis, dtype, zi_arr, zi_checked=False):
    """``sosfilt`` of checked arrays of ``dtype`` (``axis`` non-negative); ``(y, zf)``,
    ``zf`` None without ``zi_arr``. ``zi_checked``: ``zi_arr`` already has the
    states' full shape (callers that built it)."""
    ns = sos_arr.shape[0]
    frame = frame_of(x_arr, axis)
    if zi_arr is not None and not zi_checked and (zi_arr.ndim < 1 or zi_arr.shape[0] != ns):
        raise ValueError(f"zi must have shape (n_sections={ns}, ...) with the signal's shape "
                         f"(axis {axis} of length 2) after it; got {zi_arr.shape}")
    few = sos_arr.ndim == 2 and _few_rows(frame)
    if few and not _timesplit.long_enough(frame.plq[1]):
        return _scipy_sosfilt(sos_arr, x_arr, axis, zi_arr, zi_checked, frame)
    bw = coef_to_work(sos_arr[:, :3], frame, "sos", dtype, lead=2)
    aw = coef_to_work(sos_arr[:, 3:], frame, "sos", dtype, lead=2)
    if bw.shape != aw.shape:
        shape = np.broadcast_shapes(bw.shape, aw.shape)
        bw = np.ascontiguousarray(np.broadcast_to(bw, shape))
        aw = np.ascontiguousarray(np.broadcast_to(aw, shape))
    P, L, Q = frame.plq
    z0 = np.zeros((P, ns, 2, Q), dtype=dtype)
    if zi_arr is not None:
        for s in range(ns):
            z0[:, s] = state_to_work(zi_arr[s], frame, f"zi[{s}]", dtype, size=2)
    done = _run_cascade(bw, aw, x_arr, frame, dtype, z0, False, few)
    if done is None:
        return _scipy_sosfilt(sos_arr, x_arr, axis, zi_arr, zi_checked, frame)
    y, zf = done
    if zi_arr is None:
        return y, None
    return y, np.stack([state_from_work(np.ascontiguousarray(zf[:, s]), frame)
                        for s in range(ns)])


def _scipy_sosfilt(sos_arr, x_arr, axis, zi_arr, zi_checked, frame):
    """scipy.signal.sosfilt itself, for a few signals it runs faster (:func:`_few_rows`)."""
    import scipy.signal
    ns = sos_arr.shape[0]
    if zi_arr is None:
        return scipy.signal.sosfilt(sos_arr, x_arr, axis=axis), None
    if not zi_checked:
        for sec in range(ns):
            expect = (ns,) + check_state(zi_arr[sec], frame, f"zi[{sec}]", 2)
        if zi_arr.shape != expect:
            zi_arr = np.broadcast_to(zi_arr, expect)
    return scipy.signal.sosfilt(sos_arr, x_arr, axis=axis, zi=zi_arr)


def sosfilt_zi(sos):
    """Initial states for ``sosfilt`` giving the step response's steady state.

    Each section's ``lfilter_zi`` scaled by the DC gain of the sections before it
    (``scipy.signal.sosfilt_zi``).

    Returns
    -------
    zi : ndarray
        Shape ``(n_sections, 2)`` (or ``(n_sections, 2, *S)`` for an N-D ``sos``).

    Examples
    --------
    >>> import numpy as np, scipy.signal
    >>> import iirssm
    >>> sos = scipy.signal.butter(4, 0.2, output="sos")
    >>> np.allclose(iirssm.sosfilt_zi(sos), scipy.signal.sosfilt_zi(sos))
    True
    """
    sos = _sos_array(sos)
    b, a = sos[:, :3], sos[:, 3:]                # a[:, 0] == 1: already normalised
    sb, sa = b.sum(axis=1), a.sum(axis=1)
    if np.any(sa == 0):
        raise np.linalg.LinAlgError(_POLE_AT_ONE)
    t = b[:, 1:] - a[:, 1:] * (sb / sa)[:, None]  # lfilter_zi's terms, every section at once
    zi = np.empty((sos.shape[0], 2) + sos.shape[2:], dtype=np.result_type(sos, np.float64))
    scale = 1.0
    for s in range(sos.shape[0]):
        zi[s, 0] = scale * (t[s, 1] + t[s, 0])
        zi[s, 1] = scale * t[s, 1]
        scale = scale * sb[s] / sa[s]
    return zi


# ----------------------------------------------------------------------------- filtfilt

def _ext(x, n, axis, padtype):
    """Extend ``x`` by ``n`` samples at both ends along ``axis`` (odd, even or constant)."""
    if n == 0 or padtype is None:
        return x

    def part(sl):                               # x[..., sl, ...] with sl on axis
        return x[(slice(None),) * axis + (sl,)]
    first, last = part(slice(0, 1)), part(slice(-1, None))
    left = part(slice(n, 0, -1))                # x[n], ..., x[1]
    right = part(slice(-2, -n - 2, -1))         # x[-2], ..., x[-n-1]
    if padtype == "odd":
        left, right = 2 * first - left, 2 * last - right
    elif padtype == "constant":
        left = np.repeat(first, n, axis=axis)
        right = np.repeat(last, n, axis=axis)
    return np.concatenate([left, x, right], axis=axis)


def _pad(x, axis, padtype, padlen, ntaps):
    if padtype not in ("even", "odd", "constant", None):
        raise ValueError(f"Unknown value '{padtype}' given to padtype. padtype must be 'even', "
                         "'odd', 'constant', or None.")
    if padtype is None:
        padlen = 0
    edge = 3 * ntaps if padlen is None else padlen
    if isinstance(edge, bool) or not isinstance(edge, (int, np.integer)) or edge < 0:
        raise ValueError(f"padlen must be a non-negative integer; got {padlen!r}")
    if x.shape[axis] <= edge:
        raise ValueError("The length of the input vector x must be greater than padlen, "
                         f"which is {edge}.")
    return int(edge), _ext(x, int(edge), axis, padtype)


def _state_for(zi_k, x_shape, axis):
    """Arrange a ``(K, *S)`` steady state as an ``lfilter`` zi: the signal's shape, axis -> K."""
    K = zi_k.shape[0]
    ndim = len(x_shape)
    tail = zi_k.shape[1:]
    if not tail:                                # one filter: K on axis, 1 elsewhere
        return zi_k.reshape((1,) * axis + (K,) + (1,) * (ndim - axis - 1))
    z = zi_k.reshape((K,) + (1,) * (ndim - len(tail)) + tail)
    # the coefficients are constant in time, so S has length 1 on axis: K takes its place
    return np.squeeze(np.moveaxis(z, 0, axis), axis=axis + 1)


def _no_time_variation(c, x_shape, axis, name, lead):
    tail = np.asarray(c).shape[lead:]
    full = (1,) * (len(x_shape) - len(tail)) + tail
    if len(full) == len(x_shape) and full[axis] != 1:
        raise ValueError(f"{name} varies in time: forward-backward filtering pads the signal, "
                         "so it needs coefficients that are constant in time (per channel is fine)")


def filtfilt(b, a, x, axis=-1, padtype="odd", padlen=None, method="pad", irlen=None):
    """Zero-phase forward-backward filtering (``scipy.signal.filtfilt``).

    Parameters
    ----------
    b, a : array_like
        Coefficients, 1-D or per channel ``(n_coef, *S)`` (not time-varying).
    x : array_like
        The signal.
    axis : int, optional
    padtype : {'odd', 'even', 'constant', None}, optional
    padlen : int, optional
        Default ``3 * max(len(a), len(b))``; requires ``x.shape[axis] > padlen``.
    method : {'pad', 'gust'}, optional
        ``'gust'`` chooses the initial states by Gustafsson's method so that
        forward-backward equals backward-forward filtering.
    irlen : int, optional
        With ``'gust'``: the length of the impulse response to consider.

    Returns
    -------
    y : ndarray

    Examples
    --------
    >>> import numpy as np, scipy.signal
    >>> import iirssm
    >>> b, a = scipy.signal.butter(3, 0.1)
    >>> x = np.random.default_rng(0).standard_normal((2, 300))
    >>> np.allclose(iirssm.filtfilt(b, a, x), scipy.signal.filtfilt(b, a, x))
    True
    """
    impl = foreign(None, "filtfilt", b, a, x)
    if impl is not None:
        return impl(b, a, x, axis=axis, padtype=padtype, padlen=padlen, method=method, irlen=irlen)
    if method not in ("pad", "gust"):
        raise ValueError(f"method must be 'pad' or 'gust'; got {method!r}")
    x_in, template = _pandas.unwrap(x, "x")
    axis = _pandas.pandas_axis(template, axis)
    dtype = compute_dtype(("b", b), ("a", a), ("x", x_in), promote_first=True)
    b_arr = _coef_array(b, "b", dtype)
    a_arr = _coef_array(a, "a", dtype)
    x_arr, axis = signal_array(x_in, "x", dtype, axis)
    _no_time_variation(b_arr, x_arr.shape, axis, "b", 1)
    _no_time_variation(a_arr, x_arr.shape, axis, "a", 1)
    if method == "gust":
        from ._gust import filtfilt_gust
        y = filtfilt_gust(b_arr, a_arr, x_arr, axis, irlen, lfilter)
        return _pandas.rewrap(y, template)
    ntaps = max(b_arr.shape[0], a_arr.shape[0])
    edge, ext = _pad(x_arr, axis, padtype, padlen, ntaps)
    zi = _state_for(lfilter_zi(b_arr, a_arr), x_arr.shape, axis).astype(dtype)
    x0 = np.take(ext, [0], axis=axis)
    y, _ = _lfilter(b_arr, a_arr, ext, axis, dtype, zi * x0, zi_checked=True)
    y0 = np.take(y, [-1], axis=axis)
    y, _ = _lfilter(b_arr, a_arr, np.flip(y, axis=axis), axis, dtype, zi * y0,
                    zi_checked=True)
    y = np.flip(y, axis=axis)
    if edge > 0:
        y = np.take(y, np.arange(edge, y.shape[axis] - edge), axis=axis)
    return _pandas.rewrap(np.ascontiguousarray(y) if y.ndim == 1 else y.copy(), template)


def sosfiltfilt(sos, x, axis=-1, padtype="odd", padlen=None):
    """Zero-phase forward-backward filtering with second-order sections (``scipy.signal.sosfiltfilt``).

    Default ``padlen`` is scipy's: ``3 * (2 * n_sections + 1 - min(#(sos[:, 2] == 0),
    #(sos[:, 5] == 0)))``.

    Examples
    --------
    >>> import numpy as np, scipy.signal
    >>> import iirssm
    >>> sos = scipy.signal.butter(4, 0.1, output="sos")
    >>> x = np.random.default_rng(0).standard_normal(400)
    >>> np.allclose(iirssm.sosfiltfilt(sos, x), scipy.signal.sosfiltfilt(sos, x))
    True
    """
    impl = foreign(None, "sosfiltfilt", sos, x)
    if impl is not None:
        return impl(sos, x, axis=axis, padtype=padtype, padlen=padlen)
    x_in, template = _pandas.unwrap(x, "x")
    axis = _pandas.pandas_axis(template, axis)
    dtype = compute_dtype(("sos", sos), ("x", x_in), promote_first=True)
    sos_arr = _sos_array(sos, dtype)
    x_arr, axis = signal_array(x_in, "x", dtype, axis)
    _no_time_variation(sos_arr, x_arr.shape, axis, "sos", 2)
    ns = sos_arr.shape[0]
    zeros_b = (sos_arr[:, 2] == 0).reshape(ns, -1).all(axis=1).sum()
    zeros_a = (sos_arr[:, 5] == 0).reshape(ns, -1).all(axis=1).sum()
    ntaps = 2 * ns + 1 - min(int(zeros_b), int(zeros_a))
    edge, ext = _pad(x_arr, axis, padtype, padlen, ntaps)
    zi_s = sosfilt_zi(sos_arr)                       # (ns, 2, *S)
    zi = np.stack([_state_for(zi_s[s], x_arr.shape, axis) for s in range(ns)]).astype(dtype)
    x0 = np.take(ext, [0], axis=axis)
    y, _ = _sosfilt(sos_arr, ext, axis, dtype, zi * x0, zi_checked=True)
    y0 = np.take(y, [-1], axis=axis)
    y, _ = _sosfilt(sos_arr, np.flip(y, axis=axis), axis, dtype, zi * y0, zi_checked=True)
    y = np.flip(y, axis=axis)
    if edge > 0:
        y = np.take(y, np.arange(edge, y.shape[axis] - edge), axis=axis)
    return _pandas.rewrap(y.copy(), template)
