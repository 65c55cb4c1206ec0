"""``ema``: exponential moving averages with pandas ``ewm(...).mean()`` semantics.

How the computation is split:

* every signal first runs on the fast EMA scan ``h += c[t] * (x[t] - h)``
  (``_cpu/recurrence.py``), with ``c[t] = alpha`` (``adjust=False``),
  ``c[t] = 1 - 0.5 ** (dt/halflife)`` (``times=``, ``adjust=False``) or
  ``c[t] = 1 / W[t]`` with ``W[t] = decay[t] * W[t-1] + 1`` (``adjust=True``: the
  weighted mean of pandas is an EMA whose gain is the inverse of the running sum
  of weights; ``W`` is computed once per distinct decay pattern, usually O(L));
* a NaN or inf anywhere in a signal makes its final state non-finite (NaN
  never leaves the scan), so those signals, and only those, are re-run through the exact pandas
  state machine (``_cpu/ema.py``) that implements missing-value rules.
"""

from __future__ import annotations

import datetime
import numbers
from typing import NamedTuple

import numpy as np

from . import _pandas
from ._arraytools import (check_no_overlap, coef_to_work, finish_output, frame_of, new_output,
                          state_from_work, state_to_work, to_work)
from ._backend import check_backend, foreign
from ._cpu.ema import ewm_state
from ._cpu.scan import run_scan
from ._validation import (as_float_array, check_finite_range, compute_dtype, real_dtype,
                          signal_array)

__all__ = ["ema", "EMAState"]


class EMAState(NamedTuple):
    """The state of :func:`ema` between chunks of a signal (``return_zf=True`` gives one).

    Each array has the signal's shape with the time axis of length 1.

    Attributes
    ----------
    mean : ndarray
        The current average (NaN before the first observation).
    weight : ndarray
        pandas' weight of the past relative to a new observation (1 after an
        observation with ``adjust=False``; the running sum of weights with
        ``adjust=True``).
    count : ndarray
        Number of observations so far (for ``min_periods``).
    last_time : scalar or None
        The timestamp of the last sample, when ``times=`` was used; needed to
        decay the state into the first sample of the next chunk.
    """

    mean: np.ndarray
    weight: np.ndarray
    count: np.ndarray
    last_time: object = None


# --------------------------------------------------------------------------- parameters

def _param_array(value, name):
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real number or an array of real numbers; got "
                        f"{type(value).__name__} with dtype {arr.dtype}")
    return arr.astype(np.float64)


def _center_of_mass(com, span, halflife, alpha):
    """pandas' ``get_center_of_mass`` for scalars or arrays, with pandas' checks."""
    given = [n for n, v in (("com", com), ("span", span), ("halflife", halflife),
                            ("alpha", alpha)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"com, span, halflife and alpha are mutually exclusive; got {given}")
    if not given:
        raise ValueError("give exactly one of com, span, halflife or alpha")
    if com is not None:
        c = _param_array(com, "com")
        check_finite_range("com", c, 0, np.inf, False, True, ">= 0 and finite")
        return c
    if span is not None:
        s = _param_array(span, "span")
        check_finite_range("span", s, 1, np.inf, False, True, ">= 1 and finite")
        return (s - 1) / 2
    if halflife is not None:
        h = _param_array(halflife, "halflife")
        check_finite_range("halflife", h, 0, np.inf, True, True, "> 0 and finite")
        decay = 1 - np.exp(np.log(0.5) / h)
        return 1 / decay - 1
    a = _param_array(alpha, "alpha")
    check_finite_range("alpha", a, 0, 1, True, False, "in (0, 1]")
    return 1 / a - 1


def _is_timedelta(value) -> bool:
    return isinstance(value, (str, datetime.timedelta, np.timedelta64)) or (
        _pandas.is_pandas(value) and type(value).__name__ == "Timedelta")


def _to_timedelta64(value) -> np.timedelta64:
    if isinstance(value, str):
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is a test dependency
            raise TypeError("a string halflife such as '7D' needs pandas to parse it; pass "
                            "numpy.timedelta64 or datetime.timedelta instead") from None
        try:
            return pd.Timedelta(value).to_timedelta64()
        except ValueError as exc:
            raise ValueError(f"halflife {value!r} is not a valid time span: {exc}") from None
    if _pandas.is_pandas(value):
        return value.to_timedelta64()
    return np.timedelta64(value)


def _times_array(times, L):
    """Validate ``times`` (numbers, datetime64, DatetimeIndex); return (values, kind, unit)."""
    if _pandas.is_pandas(times):
        tz = getattr(times, "tz", None)
        if tz is None and hasattr(times, "dt") and str(times.dtype).startswith("datetime64["):
            tz = getattr(times.dt, "tz", None)
        if tz is not None:  # tz-aware: absolute instants, compare in UTC
            times = times.tz_convert("UTC").tz_localize(None) if hasattr(times, "tz_convert") \
                else times.dt.tz_convert("UTC").dt.tz_localize(None)
        times = times.to_numpy()
    t = np.asarray(times)
    if t.ndim != 1:
        raise ValueError(f"times must be 1-D (one timestamp per sample); got shape {t.shape}")
    if t.shape[0] != L:
        raise ValueError(f"times must have the signal's length {L} along the time axis; "
                         f"got {t.shape[0]}")
    if t.dtype.kind == "M":
        if np.isnat(t).any():
            raise ValueError("times must not contain NaT")
        unit = np.datetime_data(t.dtype)[0]
        vals = t.view(np.int64)
        kind = "datetime"
    elif t.dtype.kind in "iuf":
        vals = t.astype(np.float64)
        if not np.isfinite(vals).all():
            raise ValueError("times must be finite")
        unit, kind = None, "number"
    else:
        raise TypeError(f"times must be numbers, datetime64 or a DatetimeIndex; got dtype {t.dtype}")
    if L > 1 and np.any(np.diff(vals) < 0):
        i = int(np.argmax(np.diff(vals) < 0))
        raise ValueError(f"times must be non-decreasing; times[{i + 1}] < times[{i}]")
    return vals, t, kind, unit


def _time_deltas(times, halflife, L, last_time):
    """Per-step elapsed time in half-lives, ``(L,)``; entry 0 measured from ``last_time``."""
    vals, traw, kind, unit = _times_array(times, L)
    if halflife is None:
        raise ValueError("times= needs halflife (a number for numeric times, a timedelta "
                         "for datetime times)")
    if kind == "datetime":
        if not _is_timedelta(halflife):
            raise ValueError("halflife must be a timedelta (e.g. np.timedelta64(7, 'D'), "
                             "datetime.timedelta or '7D') when times are datetimes; "
                             f"got {halflife!r}")
        # pandas truncates the half-life to the resolution of the times.
        hl = float(_to_timedelta64(halflife).astype(f"timedelta64[{unit}]").astype(np.int64))
    else:
        if _is_timedelta(halflife):
            raise ValueError("halflife is a timedelta but times are plain numbers; give "
                             "halflife in the units of times")
        hl = float(_param_array(halflife, "halflife"))
    if not (np.isfinite(hl) and hl > 0):
        raise ValueError(f"halflife must be > 0; got {halflife!r}")
    deltas = np.empty(L, dtype=np.float64)
    deltas[1:] = np.diff(vals) / hl
    if last_time is None:
        deltas[0] = 0.0
    else:
        lt = np.asarray(last_time)
        if kind == "datetime":
            if lt.dtype.kind != "M":
                raise TypeError("zi.last_time must be a datetime64 when times are datetimes")
            prev = lt.astype(traw.dtype).view(np.int64)
        else:
            prev = float(lt)
        deltas[0] = (vals[0] - prev) / hl
        if deltas[0] < 0:
            raise ValueError("times must continue from zi.last_time without going back")
    return deltas, traw[-1]


# --------------------------------------------------------------------------- state

def _state_in(zi, frame, dtype, rdtype, times_given):
    P, _, Q = frame.plq
    if zi is None:
        return (np.full((P, Q), np.nan, dtype=dtype), np.ones((P, Q), dtype=rdtype),
                np.zeros((P, Q), dtype=np.float64), None, False)
    if isinstance(zi, EMAState):
        mean = state_to_work(as_float_array(zi.mean, "zi.mean", dtype), frame, "zi.mean", dtype)
        weight = state_to_work(as_float_array(zi.weight, "zi.weight", rdtype), frame,
                               "zi.weight", rdtype)
        count = state_to_work(as_float_array(zi.count, "zi.count", np.float64), frame,
                              "zi.count", np.float64)
        last = zi.last_time
        if times_given and last is None and np.isfinite(mean).any():
            raise ValueError("zi has no last_time: continuing a times= EMA needs the state "
                             "returned by return_zf=True with times")
        return mean.reshape(P, Q), weight.reshape(P, Q), count.reshape(P, Q), last, True
    if times_given:
        raise ValueError("with times=, zi must be an EMAState (it carries the last timestamp); "
                         "use the one returned by return_zf=True")
    mean = state_to_work(as_float_array(zi, "zi", dtype), frame, "zi", dtype).reshape(P, Q)
    return (mean, np.ones((P, Q), dtype=rdtype), np.zeros((P, Q), dtype=np.float64), None,
            True)


def _check_args(x, alpha, com, span, halflife, times, min_periods):
    """Checks of :func:`ema`'s arguments that need no signal values; ``(dtype, rdtype)``.

    ``min_periods``, a timedelta ``halflife`` without ``times``, and the result
    dtype of ``x`` with the decay parameters (real only). Shared by the CPU and
    CUDA front-ends (``x`` may be a CuPy array: only its dtype is read).
    """
    if type(min_periods) is not int and (
            isinstance(min_periods, bool) or not isinstance(min_periods, numbers.Integral)) \
            or min_periods < 0:
        raise ValueError(f"min_periods must be an integer >= 0; got {min_periods!r}")
    coef_named = [(n, v) for n, v in (("alpha", alpha), ("com", com), ("span", span))
                  if v is not None]
    if halflife is not None and _is_timedelta(halflife):
        if times is None:
            raise ValueError("a timedelta halflife needs times= (datetime timestamps)")
    else:
        coef_named.append(("halflife", halflife))
    dtype = compute_dtype(("x", x), *coef_named, real_only=("alpha", "com", "span", "halflife"))
    return dtype, real_dtype(dtype)


def _decay_params(alpha, com, span, halflife, times, adjust, L, last_time):
    """pandas' decay parameters on the host: ``(al, deltas, new_last)``.

    ``al`` (float64, the parameters' shape) is the weight of a new observation
    (``1 / (1 + com)``); with ``times``, ``deltas`` are the ``L`` gaps in
    half-lives (the decay per step is ``(1 - al) ** deltas``) and ``new_last``
    the last timestamp; without, both are None. Shared by the CPU and CUDA
    front-ends (host values only).
    """
    if times is not None:
        others = [(n, v) for n, v in (("com", com), ("span", span), ("alpha", alpha))
                  if v is not None]
        if others and not adjust:
            raise ValueError("with times= and adjust=False only halflife may be given "
                             f"(as in pandas); got {[n for n, _ in others]} too")
        if len(others) > 1:
            raise ValueError("com, span and alpha are mutually exclusive; got "
                             f"{[n for n, _ in others]}")
        deltas, new_last = _time_deltas(times, halflife, L, last_time)
        if others:
            n = others[0][0]
            comv = _center_of_mass(com if n == "com" else None, span if n == "span" else None,
                                   None, alpha if n == "alpha" else None)
        else:
            comv = np.float64(1.0)
        return 1.0 / (1.0 + comv), deltas, new_last
    if halflife is not None and _is_timedelta(halflife):
        raise ValueError("a timedelta halflife needs times=")
    comv = _center_of_mass(com, span, halflife, alpha)
    return 1.0 / (1.0 + comv), None, None


# --------------------------------------------------------------------------- main

def ema(x, alpha=None, *, com=None, span=None, halflife=None, times=None, adjust=False,
        ignore_na=False, min_periods=0, axis=-1, zi=None, return_zf=False, out=None,
        backend=None):
    r"""Exponential moving average with pandas ``ewm(...).mean()`` semantics.

    ``adjust=False`` is the recursive filter ``y[t] = (1 - alpha) y[t-1] + alpha x[t]``
    (``y[0] = x[0]``); ``adjust=True`` is the weighted mean
    ``sum_i (1-alpha)**i x[t-i] / sum_i (1-alpha)**i``. The decay may be fixed,
    one value per channel, one per sample (a time-varying, "selective" EMA), or
    set by irregular timestamps through ``times`` and ``halflife``.

    Parameters
    ----------
    x : array_like, pandas Series or DataFrame
        The signal, time along ``axis``. Real or complex. A Series or DataFrame
        gives the same type back with its index and columns (DataFrames run
        along their index).
    alpha, com, span, halflife : float or array_like, optional
        Exactly one (as in pandas): ``0 < alpha <= 1``; ``com >= 0``
        (``alpha = 1/(1+com)``); ``span >= 1`` (``alpha = 2/(span+1)``);
        ``halflife > 0`` (``alpha = 1 - exp(-ln 2 / halflife)``). Arrays broadcast
        against ``x`` with time on ``axis``: length 1 on ``axis`` means one value
        per channel, full length one value per sample.
    times : array_like, optional
        One timestamp per sample (numbers, datetime64, or a DatetimeIndex),
        non-decreasing. The weight of the past then decays by
        ``0.5 ** (dt / halflife)`` over a gap ``dt``. ``halflife`` is required
        (a number in the units of numeric times; a timedelta, ``np.timedelta64``
        or a string such as ``"7D"`` for datetimes, truncated to the times'
        resolution as pandas does). ``com``/``span``/``alpha`` may be given in
        addition only with ``adjust=True``, as in pandas.
    adjust : bool, optional
        Weighted-mean form (True) or recursive form (False, the default here;
        pandas' default is True).
    ignore_na : bool, optional
        pandas' rule for missing values: with False (default) the weights decay
        by absolute position across NaN gaps; with True the gaps are skipped.
    min_periods : int, optional
        Output NaN until this many observations have been seen (0 counts as 1).
    axis : int, optional
        Time axis. Default -1. pandas objects always run along their index.
    zi : EMAState or array_like, optional
        State to start from: an :class:`EMAState` from an earlier call with
        ``return_zf=True`` (continues that signal exactly), or an array of
        initial averages (``x``'s shape with ``axis`` of length 1), taken as an
        average of weight 1 and no observations.
    return_zf : bool, optional
        Also return the final :class:`EMAState`.
    out : ndarray, optional
        Array to write the result into (``x``'s shape and the result dtype).
    backend : {None, "numba"}, optional
        Force a backend (for tests).

    Returns
    -------
    y : ndarray, Series or DataFrame
        The averages; float32 input stays float32, float64 stays float64,
        integers give float64.
    zf : EMAState
        Only when ``return_zf=True``.

    Notes
    -----
    Missing values (NaN) keep the previous average, exactly as pandas does,
    including its special case for ``alpha = 0.5`` (``com = 1``) with
    ``adjust=False``, which iirssm applies wherever a per-sample ``alpha`` equals 0.5.
    Infinite values are missing values too, as in pandas (which replaces them by NaN).
    Calls on consecutive chunks that pass ``zf`` on as ``zi`` equal one call on
    the whole signal, for every option.

    Examples
    --------
    >>> import numpy as np
    >>> import iirssm
    >>> x = np.array([1.0, 2.0, np.nan, 4.0])
    >>> iirssm.ema(x, alpha=0.5)
    array([1.   , 1.5  , 1.5  , 3.375])
    >>> iirssm.ema(x, alpha=0.5, adjust=True).round(4)
    array([1.    , 1.6667, 1.6667, 3.3636])

    Irregular timestamps with a half-life:

    >>> t = np.array([0.0, 1.0, 3.0, 4.0])
    >>> iirssm.ema(np.array([0.0, 1.0, 1.0, 0.0]), halflife=1.0, times=t).round(4)
    array([0.    , 0.5   , 0.875 , 0.4375])
    """
    impl = foreign(backend, "ema", x, alpha, com, span, halflife, times, zi)
    if impl is not None:
        return impl(x, alpha, com=com, span=span, halflife=halflife, times=times, adjust=adjust, ignore_na=ignore_na,
                    min_periods=min_periods, axis=axis, zi=zi, return_zf=return_zf, out=out)
    check_backend(backend, x, alpha, com, span, halflife, zi)
    x_in, template = _pandas.unwrap(x, "x")
    axis = _pandas.pandas_axis(template, axis)
    dtype, rdtype = _check_args(x_in, alpha, com, span, halflife, times, min_periods)
    times_given = times is not None
    x_arr, axis = signal_array(x_in, "x", dtype, axis)
    L = x_arr.shape[axis]
    check_no_overlap(out, x=x_arr)
    frame = frame_of(x_arr, axis)
    P, _, Q = frame.plq
    x3 = to_work(x_arr, frame)

    mean0, wt0, cnt0, last_time, has_state = _state_in(zi, frame, dtype, rdtype, times_given)

    # ---- per-step decay d[t] and new-observation weight al[t], in the work frame
    al_user, deltas, new_last = _decay_params(alpha, com, span, halflife, times, adjust, L,
                                              last_time)
    al3 = coef_to_work(al_user, frame, "alpha", np.float64)
    if times_given:
        dlt3 = deltas.reshape(1, L, 1)
        d3 = np.ascontiguousarray((1.0 - al3) ** dlt3)  # pandas: old_wt_factor ** delta
    else:
        d3 = 1.0 - al3
        dlt3 = None

    minp = max(int(min_periods), 1)
    out_nd, out3 = new_output(frame, dtype, out)

    # ---- fast path: every signal on the EMA scan
    fast_ok = True
    if has_state:
        fresh = np.isnan(mean0)
        # adjust=False continues exactly only from a state whose weight was reset by an
        # observation (weight 1); other states go through the exact state machine.
        if not adjust and np.any(wt0[~fresh] != 1):
            fast_ok = False
        if np.any(wt0[fresh] != 1):
            fast_ok = False
    else:
        fresh = np.ones((P, Q), dtype=bool)

    if fast_ok:
        if has_state:
            h0 = np.where(fresh, x3[:, 0, :], mean0).astype(dtype, copy=False)
        else:
            h0 = x3[:, 0, :].copy()
        if not adjust:
            if times_given:
                # 1 - 0.5**delta, accurately for small steps
                c3 = -np.expm1(dlt3 * np.log(1.0 - al3))
            else:
                c3 = al3
            wt_end = np.ones((P, Q), dtype=rdtype)
        else:
            # W[t] = d[t] W[t-1] + 1, W starting at 1 for a fresh signal; gain 1/W.
            if has_state:
                w0 = np.where(fresh, 0.0, wt0)
                w_p = P if (d3.shape[0] > 1 or np.any(w0 != w0[:1, :])) else 1
                w_q = Q if (d3.shape[2] > 1 or np.any(w0 != w0[:, :1])) else 1
                w0c = np.ascontiguousarray(np.broadcast_to(w0, (P, Q))[:w_p, :w_q],
                                           dtype=np.float64)
            else:                               # every signal fresh: w0 is all zeros
                w_p = P if d3.shape[0] > 1 else 1
                w_q = Q if d3.shape[2] > 1 else 1
                w0c = np.zeros((w_p, w_q), dtype=np.float64)
            ones = np.ones((w_p, L, w_q), dtype=np.float64)
            W = np.empty_like(ones)
            run_scan(np.ascontiguousarray(d3, dtype=np.float64), ones, w0c, W, False, False)
            c3 = 1.0 / W
            wt_end = np.ascontiguousarray(np.broadcast_to(W[:, -1, :], (P, Q)), dtype=rdtype)
        c3 = np.ascontiguousarray(c3, dtype=rdtype)
        hf = run_scan(c3, x3, h0, out3, True, False)
        # NaN never leaves the scan and an inf turns into inf or NaN for good, so a
        # non-finite final state marks exactly the signals with a missing value.
        redo = ~np.isfinite(hf)
        mean_f = hf
        wt_f = wt_end
        cnt_f = cnt0 + L
        if minp > 1:
            first_ok = np.clip(minp - 1 - cnt0, 0, L).astype(np.int64)  # (P, Q)
            for k in np.unique(first_ok):
                if k > 0:
                    sel = (first_ok == k) & ~redo
                    out3[:, :k, :][np.broadcast_to(sel[:, None, :], (P, k, Q))] = np.nan
    else:
        redo = np.ones((P, Q), dtype=bool)
        mean_f, wt_f, cnt_f = mean0, wt0, cnt0

    if redo.any():
        m2, w2, c2 = ewm_state.pick(P * L * Q)(np.ascontiguousarray(d3, dtype=rdtype),
                               np.ascontiguousarray(al3, dtype=rdtype), x3, mean0,
                               wt0.astype(rdtype), cnt0, redo, out3, bool(adjust),
                               bool(ignore_na), float(minp))
        mean_f = np.where(redo, m2, mean_f)
        wt_f = np.where(redo, w2, wt_f)
        cnt_f = np.where(redo, c2, cnt_f)

    y = _pandas.rewrap(finish_output(out_nd, out3, frame), template)
    if not return_zf:
        return y

    def back(z, dt):
        return state_from_work(np.ascontiguousarray(z, dtype=dt).reshape(P, 1, Q), frame)

    state = EMAState(back(mean_f, dtype), back(wt_f, rdtype), back(cnt_f, np.float64),
                     new_last)
    return y, state
