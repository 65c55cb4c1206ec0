"""``linear_recurrence``: the primitive every filter in iirssm is built on."""

from __future__ import annotations

import numpy as np

from . import _pandas
from ._arraytools import (check_no_overlap, coef_to_work, finish_output, frame_of,
                          new_output, state_from_work, state_to_work, to_work)
from ._backend import check_backend, foreign
from ._cpu.scan import run_scan
from ._validation import as_float_array, compute_dtype, normalize_axis

__all__ = ["linear_recurrence"]


def _broadcast_shape(**arrays) -> tuple:
    try:
        return np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        desc = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
        raise ValueError(f"shapes do not broadcast together: {desc}") from None


def linear_recurrence(a, b, *, axis=-1, zi=None, reverse=False, return_zf=False, out=None,
                      backend=None):
    r"""First-order linear recurrence ``h[t] = a[t] * h[t-1] + b[t]``, elementwise.

    Runs along ``axis`` independently for every other index: an exponential
    moving average whose forgetting factor ``a`` may be a scalar, one value per
    channel, or one value per sample.

    Parameters
    ----------
    a : array_like
        Decay (forgetting) factors. Broadcasts against ``b`` with time on ``axis``:
        a scalar, a per-channel array (length 1 along ``axis``) or one value per
        sample. Real or complex; any value is allowed (``|a| > 1`` grows).
    b : array_like
        Input terms, with time along ``axis``. A pandas Series or DataFrame gives
        the same type back (DataFrames run along their index).
    axis : int, optional
        The time axis. Default -1.
    zi : array_like, optional
        Initial state ``h[-1]``: ``b``'s shape with ``axis`` of length 1 (or
        anything broadcasting to it). Default zeros.
    reverse : bool, optional
        Run backwards in time: ``h[t] = a[t] * h[t+1] + b[t]`` with ``zi`` the
        state after the last sample. Equals flipping ``a`` and ``b`` along
        ``axis``, filtering, and flipping back.
    return_zf : bool, optional
        Also return the final state (``zi``'s shape), to continue on the next
        chunk of a signal.
    out : ndarray, optional
        Array to write the result to (``b``'s broadcast shape and the result
        dtype, not overlapping any input). Saves allocating (and page-faulting)
        a fresh output when filtering many blocks.
    backend : {None, "numba"}, optional
        Force a backend (for tests). Default: chosen from the array types.

    Returns
    -------
    h : ndarray
        The states ``h[t]``, of ``broadcast(a, b)``'s shape and the result dtype:
        float32/float64/complex64/complex128 as in ``numpy.result_type`` of the
        inputs (integers compute in float64; Python scalars do not widen arrays).
    zf : ndarray
        Final state, only when ``return_zf=True``.

    Notes
    -----
    NaN or inf in ``a`` or ``b`` propagate forward in time from where they occur.
    Memory layout does not change the result: C- and Fortran-ordered arrays are
    filtered in place of a view; other strided views are copied once.

    Examples
    --------
    >>> import numpy as np
    >>> import iirssm
    >>> iirssm.linear_recurrence(0.5, np.array([1.0, 0.0, 0.0, 2.0]))
    array([1.   , 0.5  , 0.25 , 2.125])

    Per-sample decays (an irregular-time EMA's forgetting factors) and a carried state:

    >>> a = np.array([0.9, 0.5, 0.0])
    >>> y, zf = iirssm.linear_recurrence(a, np.ones(3), zi=[10.0], return_zf=True)
    >>> y, zf
    (array([10.,  6.,  1.]), array([1.]))
    """
    impl = foreign(backend, "linear_recurrence", a, b, zi)
    if impl is not None:
        return impl(a, b, axis=axis, zi=zi, reverse=reverse, return_zf=return_zf, out=out)
    check_backend(backend, a, b, zi)
    b_in, template = _pandas.unwrap(b, "b")
    axis = _pandas.pandas_axis(template, axis)
    dtype = compute_dtype(("a", a), ("b", b_in), ("zi", zi))
    a_arr = as_float_array(a, "a", dtype)
    b_arr = as_float_array(b_in, "b", dtype)
    shape = _broadcast_shape(a=a_arr, b=b_arr)
    if len(shape) == 0:
        raise ValueError("a and b are both scalars: b needs a time axis")
    axis = normalize_axis(axis, len(shape))
    if shape[axis] == 0:
        raise ValueError(f"b has no samples along axis {axis} (shape {shape})")
    if b_arr.shape != shape:
        # b smaller than a (e.g. one input per channel): expanded once to the output's shape.
        b_arr = np.ascontiguousarray(np.broadcast_to(b_arr, shape))
    check_no_overlap(out, a=np.asarray(a), b=np.asarray(b_in), zi=zi)
    frame = frame_of(b_arr, axis)
    x3 = to_work(b_arr, frame)
    c3 = coef_to_work(a_arr, frame, "a", dtype)
    P, L, Q = frame.plq
    if zi is None:
        h0 = np.zeros((P, Q), dtype=dtype)
    else:
        h0 = state_to_work(as_float_array(zi, "zi", dtype), frame, "zi", dtype).reshape(P, Q)
    out_nd, out3 = new_output(frame, dtype, out)
    hf = run_scan(c3, x3, h0, out3, False, bool(reverse))
    y = _pandas.rewrap(finish_output(out_nd, out3, frame), template)
    if return_zf:
        return y, state_from_work(hf.reshape(P, 1, Q), frame)
    return y
