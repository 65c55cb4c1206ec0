"""The CUDA backend of the public functions (CuPy arrays in, CuPy arrays out).

``iirssm._backend.foreign`` sends a call here when one of its arrays is a CuPy
array; each function below has the public function's signature (without
``backend``). Rules common to all of them:

* **The signal must be a CuPy array.** A NumPy (or pandas) signal together with
  CuPy coefficients or state is a ``TypeError``: iirssm never copies a signal
  between host and device behind the caller's back.
* **Coefficients and states** given as Python scalars, lists or NumPy arrays are
  moved to the device (``cupy.asarray``: one small host-to-device copy).
  Coefficients that must be inspected on the host to be validated or factored
  (``ema``'s decay parameters and ``times``, the ``b``/``a``/``sos`` of
  ``lfilter``/``sosfilt``, the modes of a ``DiagonalSSM``) are read back if they
  are CuPy arrays: they are small next to the signal.
* The result is on the signal's device, computed on the current stream; nothing
  is synchronised except where a check needs one boolean on the host (``ema``'s
  missing-value check and, with a state, its weight checks; the checks of a
  ``DiagonalSSM`` state).
* Argument checks and parameter resolution are the CPU front-ends' own helpers
  (``_ema._check_args``/``_decay_params``, ``DiagonalSSM._filter_shape``/
  ``_computed_modes``, ``_lfilter._coef_array``/``_normalized``/``_sos_array``).
* Kernel launches pass ``np.int64``/``np.int32`` scalars matching each kernel's
  ``long long``/``int`` parameters and arrays of the kernel's dtype (checked by
  ``tests/test_cuda_plan.py`` against the signatures in the sources).
* Layout: the time axis is moved last; when that view is not rows of unit time
  stride with one row stride, the signal is copied once
  (``cupy.ascontiguousarray``). Results are allocated with time last and
  returned as views with ``axis`` back in place (C-contiguous for ``axis=-1``).
* Cases not implemented on the GPU raise ``NotImplementedError`` naming the
  option; the CPU backend runs them on NumPy arrays.
"""

from __future__ import annotations

import numpy as np

from .._recurrence import _broadcast_shape
from .._validation import check_broadcast, compute_dtype, normalize_axis, real_dtype
from . import _plan

__all__ = ["linear_recurrence", "ema", "lfilter", "sosfilt", "diagonal_ssm_filter",
           "linear_recurrence_backward"]


# ------------------------------------------------------------------------------ helpers

def _cp():
    import cupy

    return cupy


def _is_cupy(x) -> bool:
    return type(x).__module__.startswith("cupy")


def _signal(x, name, op, others=()):
    """The signal as a CuPy array; a host signal is a TypeError (no implicit transfer)."""
    if _is_cupy(x):
        return x
    dev = [n for n, v in others if _is_cupy(v)]
    raise TypeError(
        f"{op}: the signal {name} is a {type(x).__module__.split('.')[0]} "
        f"{type(x).__name__}, but {', '.join(dev) or 'another argument'} is a CuPy array; "
        f"move the signal to the GPU with cupy.asarray({name}) (or everything to the host "
        "with cupy.asnumpy) - iirssm never copies a signal between host and device implicitly")


def _host(v):
    """A coefficient as a NumPy array (read back from the device if needed)."""
    if _is_cupy(v):
        return _cp().asnumpy(v)
    return v


def _device(v, name, dtype):
    """A coefficient or state on the device with ``dtype`` (policy checks on host values)."""
    cp = _cp()
    if _is_cupy(v):
        if v.dtype.kind not in "biufc":
            raise TypeError(f"{name} must hold real or complex numbers; got dtype {v.dtype}")
        return v.astype(dtype, copy=False)
    from .._validation import as_float_array
    return cp.asarray(as_float_array(v, name, dtype))


def _rows_view(xm):
    """``(R, L)`` view of an array with time last, copying once if needed."""
    cp = _cp()
    from cupy.lib.stride_tricks import as_strided

    lay = _plan.rows_layout(xm.shape, xm.strides, xm.itemsize, -1)
    if lay.row_stride is None:
        xm = cp.ascontiguousarray(xm)     # the one documented copy (strided layouts)
        lay = _plan.rows_layout(xm.shape, xm.strides, xm.itemsize, -1)
    return as_strided(xm, shape=(lay.R, lay.L), strides=(lay.row_stride * xm.itemsize,
                                                          xm.itemsize))


class _Frame:
    """A signal of ``shape`` filtered along ``axis``: rows ``(R, L)`` with time last."""

    def __init__(self, shape, axis):
        self.shape = tuple(shape)
        self.axis = axis
        self.moved = self.shape[:axis] + self.shape[axis + 1:] + (self.shape[axis],)
        self.L = self.shape[axis]
        self.R = int(np.prod(self.moved[:-1], dtype=np.int64))

    def rows(self, x):
        return _rows_view(_cp().moveaxis(x, self.axis, -1))

    def output(self, dtype, out, inputs):
        """``(result, rows, finish)``: the result array, its rows view, a finisher."""
        cp = _cp()
        if out is not None:
            if not _is_cupy(out):
                raise TypeError(f"out must be a cupy.ndarray for CuPy inputs; got "
                                f"{type(out).__name__}")
            if out.shape != self.shape:
                raise ValueError(f"out must have shape {self.shape}; got {out.shape}")
            if out.dtype != dtype:
                raise TypeError(f"out must have dtype {np.dtype(dtype)} (the result dtype); "
                                f"got {out.dtype}")
            for nm, arr in inputs:
                if _is_cupy(arr) and cp.may_share_memory(out, arr):
                    raise ValueError(f"out must not overlap the input {nm}")
            om = cp.moveaxis(out, self.axis, -1)
            lay = _plan.rows_layout(om.shape, om.strides, om.itemsize, -1)
            if lay.row_stride is not None:
                return out, _rows_view(om), lambda: out
        y = cp.empty(self.moved, dtype=dtype)
        res = cp.moveaxis(y, -1, self.axis)
        if out is None:
            return res, y.reshape(self.R, self.L), lambda: res

        def finish():
            out[...] = res
            return out
        return out, y.reshape(self.R, self.L), finish

    def coef(self, c, name):
        """A coefficient broadcasting against the signal -> ``(Ra, L)`` or ``(Ra,)``."""
        cp = _cp()
        check_broadcast(name, c.shape, self.shape, self.axis)
        nd = len(self.shape)
        c = c.reshape((1,) * (nd - c.ndim) + c.shape)
        cm = cp.moveaxis(c, self.axis, -1)
        tv = cm.shape[-1] != 1 and self.L > 1
        per_row = any(d != 1 for d in cm.shape[:-1])
        if not tv:
            if not per_row:
                return cp.ascontiguousarray(cm.reshape(1))
            return cp.ascontiguousarray(cp.broadcast_to(cm[..., 0], self.moved[:-1])).reshape(
                self.R)
        if not per_row:
            return cp.ascontiguousarray(cm.reshape(1, self.L))
        full = cp.broadcast_to(cm, self.moved)
        if full.strides != cm.strides or cm.shape != self.moved:
            full = cp.ascontiguousarray(full)   # partly broadcast: expanded once
        return _rows_view(full)

    def state_in(self, z, name, dtype, size=1):
        """A state (signal's shape, time axis of length ``size``) -> ``(R, size)`` contiguous."""
        cp = _cp()
        z = _device(z, name, dtype)
        expect = list(self.shape)
        expect[self.axis] = size
        expect = tuple(expect)
        ok = z.ndim <= len(expect) and all(d == 1 or d == e for d, e in
                                           zip(z.shape[::-1], expect[::-1]))
        if ok and z.ndim == len(expect) and z.shape[self.axis] != size:
            ok = False
        if not ok:
            raise ValueError(f"{name} must have shape {expect} (the signal's shape with axis "
                             f"{self.axis} of length {size}), or broadcast to it; got {z.shape}")
        z = z.reshape((1,) * (len(expect) - z.ndim) + z.shape)
        zm = cp.moveaxis(cp.broadcast_to(z, expect), self.axis, -1)
        return cp.ascontiguousarray(zm).reshape(self.R, size)

    def state_out(self, z2):
        """``(R, size)`` -> the user's state shape (time axis of length ``size``)."""
        cp = _cp()
        size = z2.shape[1]
        return cp.moveaxis(z2.reshape(self.moved[:-1] + (size,)), -1, self.axis)


def _reject_pandas(x, name, op):
    mod = type(x).__module__
    if mod.startswith("pandas"):
        raise TypeError(f"{op}: {name} is a pandas object; the CUDA backend takes CuPy arrays")


# ---------------------------------------------------------------------- linear_recurrence

def linear_recurrence(a, b, *, axis=-1, zi=None, reverse=False, return_zf=False, out=None):
    """``iirssm.linear_recurrence`` for CuPy arrays (recurrence.cu)."""
    from . import _rec

    cp = _cp()
    _reject_pandas(b, "b", "linear_recurrence")
    b = _signal(b, "b", "linear_recurrence", (("a", a), ("zi", zi)))
    dtype = compute_dtype(("a", a), ("b", b), ("zi", zi))
    a_d = _device(a, "a", dtype)
    b_d = b.astype(dtype, copy=False)
    shape = _broadcast_shape(a=a_d, b=b_d)
    if len(shape) == 0:
        raise ValueError("a and b are both scalars: b needs a time axis")
    axis = normalize_axis(axis, len(shape))
    if shape[axis] == 0:
        raise ValueError(f"b has no samples along axis {axis} (shape {shape})")
    if b_d.shape != shape:
        b_d = cp.ascontiguousarray(cp.broadcast_to(b_d, shape))
    fr = _Frame(shape, axis)
    res, y2, finish = fr.output(dtype, out, (("a", a), ("b", b), ("zi", zi)))
    h0 = (cp.zeros(fr.R, dtype=dtype) if zi is None
          else fr.state_in(zi, "zi", dtype).reshape(fr.R))
    hf = cp.empty(fr.R, dtype=dtype)
    if fr.R > 0:
        _rec.scan(fr.coef(a_d, "a"), fr.rows(b_d), h0, y2,
                  mode="rrev" if reverse else "rec", hf=hf)
    y = finish()
    if return_zf:
        return y, fr.state_out(hf.reshape(fr.R, 1))
    return y


def linear_recurrence_backward(a, h, g, *, axis=-1, zi=None, dzf=None):
    """Gradients of ``h = linear_recurrence(a, b, zi=zi)`` for the output gradient ``g``.

    Not a public function (the GPU harness uses it). Returns ``(da, db, dzi)``:
    ``db = lam`` with ``lam[t] = g[t] + conj(a[t+1]) lam[t+1]``,
    ``da[t] = lam[t] conj(h[t-1])`` (summed over time for an ``a`` constant in
    time, over broadcast dimensions otherwise left to the caller) and
    ``dzi = conj(a[0]) lam[0]``. All CuPy arrays; ``a`` broadcasting as in the
    forward call; ``dzf`` the gradient flowing into the final state.
    """
    from . import _rec

    cp = _cp()
    dtype = np.dtype(h.dtype)
    axis = normalize_axis(axis, h.ndim)
    fr = _Frame(h.shape, axis)
    a_d = _device(a, "a", dtype)
    ar = fr.coef(a_d, "a")
    g_r = fr.rows(g.astype(dtype, copy=False))
    h_r = fr.rows(h)
    h0 = (cp.zeros(fr.R, dtype=dtype) if zi is None
          else fr.state_in(zi, "zi", dtype).reshape(fr.R))
    lam_in = None if dzf is None else fr.state_in(dzf, "dzf", dtype).reshape(fr.R)
    db = cp.empty((fr.R, fr.L), dtype=dtype)
    dh0 = cp.empty(fr.R, dtype=dtype)
    da = cp.empty((fr.R, fr.L), dtype=dtype) if ar.ndim == 2 else None
    _rec.adjoint(ar, g_r, h_r, h0, db, da=da, dh0=dh0, lam_in=lam_in)
    if da is None:
        hp = cp.concatenate([h0[:, None], h_r[:, :-1]], axis=1)
        da = cp.sum(db * cp.conj(hp), axis=1)
        da_out = da.reshape(fr.moved[:-1] + (1,))
    else:
        da_out = da.reshape(fr.moved)
    mv = (lambda z: cp.moveaxis(z, -1, axis))
    return mv(da_out), mv(db.reshape(fr.moved)), fr.state_out(dh0.reshape(fr.R, 1))


# -------------------------------------------------------------------------------- ema

def ema(x, alpha=None, *, com=None, span=None, halflife=None, times=None, adjust=False,
        ignore_na=False, min_periods=0, axis=-1, zi=None, return_zf=False, out=None):
    """``iirssm.ema`` for CuPy signals (ema.cu).

    Runs the EMA scan ``h += c[t] (x[t] - h)`` on the GPU for fixed, per-channel,
    time-varying and ``times=`` decays, ``adjust`` True or False, ``min_periods``
    and states. Not on the GPU (``NotImplementedError``): signals with missing
    values (NaN or inf: pandas' missing-value rules, hence ``ignore_na``, run on
    the CPU backend only), and continuing from an ``EMAState`` whose weight is
    not the one the scan implies (``adjust=False`` with a weight other than 1).
    """
    from .. import _ema as E
    from . import _rec

    cp = _cp()
    _reject_pandas(x, "x", "ema")
    x = _signal(x, "x", "ema", (("alpha", alpha), ("com", com), ("span", span),
                                ("halflife", halflife), ("times", times), ("zi", zi)))
    dtype, rdtype = E._check_args(x, alpha, com, span, halflife, times, min_periods)
    times_given = times is not None
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension (time)")
    axis = normalize_axis(axis, x.ndim)
    L = x.shape[axis]
    if L == 0:
        raise ValueError(f"x has no samples along axis {axis} (shape {x.shape})")
    xd = x.astype(dtype, copy=False)
    fr = _Frame(x.shape, axis)
    R = fr.R

    # ---- state
    if zi is None:
        fresh = cp.ones(R, dtype=bool)
        mean0 = cp.full(R, np.nan, dtype=dtype)
        wt0 = cp.ones(R, dtype=rdtype)
        cnt0 = cp.zeros(R, dtype=np.float64)
        last_time = None
        has_state = False
    elif isinstance(zi, E.EMAState):
        mean0 = fr.state_in(zi.mean, "zi.mean", dtype).reshape(R)
        wt0 = fr.state_in(zi.weight, "zi.weight", rdtype).reshape(R)
        cnt0 = fr.state_in(zi.count, "zi.count", np.float64).reshape(R)
        last_time = zi.last_time
        fresh = cp.isnan(mean0)
        has_state = True
        if times_given and last_time is None and bool(cp.isfinite(mean0).any()):
            raise ValueError("zi has no last_time: continuing a times= EMA needs the state "
                             "returned by return_zf=True with times")
    else:
        if times_given:
            raise ValueError("with times=, zi must be an EMAState (it carries the last "
                             "timestamp); use the one returned by return_zf=True")
        mean0 = fr.state_in(zi, "zi", dtype).reshape(R)
        wt0 = cp.ones(R, dtype=rdtype)
        cnt0 = cp.zeros(R, dtype=np.float64)
        last_time = None
        fresh = cp.isnan(mean0)
        has_state = True
    if has_state:
        off = wt0 != 1          # (no boolean-mask indexing: one reduction, one sync each)
        if not adjust and bool((off & ~fresh).any()):
            raise NotImplementedError(
                "ema on the CUDA backend: continuing adjust=False from an EMAState whose "
                "weight is not 1 (a state left by missing values) runs on the CPU backend only")
        if bool((off & fresh).any()):
            raise NotImplementedError(
                "ema on the CUDA backend: an EMAState with a weight but no average is not "
                "supported on the GPU; use the CPU backend")

    # ---- decays (host): al = new-observation weight, d = decay per step
    al, deltas, new_last = E._decay_params(
        _host(alpha), _host(com), _host(span), _host(halflife), _host(times), adjust, L,
        _host(last_time) if last_time is not None else None)
    al = np.asarray(al, dtype=np.float64)
    if times_given:
        dl = _time_axis(deltas, x.ndim, axis)
        if adjust:
            d_host = (1.0 - al) ** dl
        else:
            c_host = -np.expm1(dl * np.log(1.0 - al))     # 1 - 0.5**delta, as on the CPU
    elif adjust:
        d_host = 1.0 - al
    else:
        c_host = al

    res, y2, finish = fr.output(dtype, out, (("x", x),))
    if R == 0:
        y = finish()
        if return_zf:
            return y, E.EMAState(fr.state_out(cp.empty((0, 1), dtype=dtype)),
                                 fr.state_out(cp.empty((0, 1), dtype=rdtype)),
                                 fr.state_out(cp.empty((0, 1))), new_last)
        return y
    xr = fr.rows(xd)
    h0 = cp.where(fresh, xr[:, 0], mean0).astype(dtype)
    if adjust:
        # W[t] = d[t] W[t-1] + 1 (W = 1 at a fresh start, the state's weight otherwise)
        # in float64 on the device; the gain is 1/W.
        d_rows = fr.coef(cp.asarray(np.asarray(d_host, dtype=np.float64)), "alpha")
        w0 = cp.where(fresh, 0.0, wt0.astype(np.float64))
        # one W row for all when the decays and the starting weights are shared (a fresh
        # start: every w0 is 0, no need to ask the device)
        shared = d_rows.shape[0] == 1 and (not has_state or bool((w0 == w0[0]).all()))
        Rw = 1 if shared else R
        ones = cp.ones((Rw, L), dtype=np.float64)
        W = cp.empty((Rw, L), dtype=np.float64)
        w0r = w0[:1].copy() if shared else cp.ascontiguousarray(w0)
        _rec.scan(d_rows, ones, w0r, W, mode="rec")
        c_rows = (1.0 / W).astype(rdtype)
        wt_end = cp.broadcast_to(W[:, -1].astype(rdtype), (R,)).copy()
    else:
        c_rows = fr.coef(cp.asarray(np.asarray(c_host, dtype=rdtype)), "alpha")
        wt_end = cp.ones(R, dtype=rdtype)
    hf = cp.empty(R, dtype=dtype)
    _rec.scan(c_rows, xr, h0, y2, mode="ema", hf=hf)
    if not bool(cp.isfinite(hf).all()):
        raise NotImplementedError(
            "ema on the CUDA backend: x contains missing values (NaN or inf); pandas' "
            "missing-value rules (and ignore_na) run on the CPU backend only - filter "
            "cupy.asnumpy(x) there")
    _blank_min_periods(y2, cnt0, max(int(min_periods), 1))
    y = finish()
    if not return_zf:
        return y
    st = E.EMAState(fr.state_out(hf.reshape(R, 1)), fr.state_out(wt_end.reshape(R, 1)),
                    fr.state_out((cnt0 + L).reshape(R, 1)), new_last)
    return y, st


def _blank_min_periods(y2, cnt0, minp):
    """NaN where a row has fewer than ``minp`` observations (``cnt0`` before this chunk).

    Only the first ``min(minp - 1, L)`` columns can be blanked: they are rewritten
    through a slice of the rows view (``y2`` may be a strided view of ``out``), with
    no boolean-mask scatter and no host synchronisation.
    """
    cp = _cp()
    R, L = y2.shape
    k = min(minp - 1, L)
    if k <= 0:
        return
    first_ok = cp.clip(minp - 1 - cnt0, 0, L)                 # (R,) samples to blank
    head = y2[:, :k]
    blank = cp.arange(k)[None, :] < first_ok[:, None]
    head[...] = cp.where(blank, y2.dtype.type(np.nan), head)


def _time_axis(v, ndim, axis):
    """A per-sample (L,) host array shaped to broadcast along ``axis`` of an ndim signal."""
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


# ------------------------------------------------------------------- lfilter / sosfilt

def iir_poles(an_rows):
    """Poles of each row's normalised denominator ``(Rc, K+1)`` (host): ``(Rc, K)`` complex.

    Factoring ``A(z) = prod_j (1 - p_j z^-1)`` turns the all-pole part into a cascade of
    first-order recurrences ``h = p_j h + u`` (exact for a time-invariant filter).
    """
    an_rows = np.asarray(an_rows)
    K = an_rows.shape[1] - 1
    out = np.zeros((an_rows.shape[0], K), dtype=np.complex128)
    for r in range(an_rows.shape[0]):
        if K:
            rt = np.roots(an_rows[r].astype(np.complex128))
            out[r, :rt.size] = rt          # trailing zero coefficients: poles at 0
    return out


def iir_zf(xp, bn, an, x, y, zi, K):
    """scipy's final DF2T state from the last ``K`` samples: ``(R, K)``.

    ``zf[i] = sum_{j > i} (b_j x[L+i-j] - a_j y[L+i-j])`` (+ ``zi[L+i]`` while
    ``L + i < K``); ``bn``/``an`` ``(Rc, K+1)`` broadcast over rows.
    """
    R, L = x.shape
    zf = xp.zeros((R, K), dtype=y.dtype)
    for i in range(K):
        acc = zf[:, i]
        if zi is not None and L + i < K:
            acc = acc + zi[:, L + i]
        for j in range(i + 1, K + 1):
            s = L + i - j
            if 0 <= s < L:
                acc = acc + bn[:, j] * x[:, s] - an[:, j] * y[:, s]
        zf[:, i] = acc
    return zf


def _coef_rows_host(c, fr, name):
    """A host coefficient tail (broadcasting against the signal) as ``(Rc, Lc)`` rows."""
    c = np.asarray(c)
    check_broadcast(name, c.shape, fr.shape, fr.axis)
    nd = len(fr.shape)
    c = c.reshape((1,) * (nd - c.ndim) + c.shape)
    cm = np.moveaxis(c, fr.axis, -1)
    Lc = cm.shape[-1] if fr.L > 1 else 1
    cm = cm[..., :Lc] if Lc == 1 else cm
    if all(d == 1 for d in cm.shape[:-1]):
        return np.ascontiguousarray(cm.reshape(1, Lc))
    return np.ascontiguousarray(np.broadcast_to(cm, fr.moved[:-1] + (Lc,))).reshape(fr.R, Lc)


def _lti_rows(bn, an, xr, zi_r, yr, dtype):
    """Fixed coefficients (rows ``(Rc, K+1)`` host): FIR + pole cascade on the device."""
    from . import _filters, _rec

    cp = _cp()
    R, L = xr.shape
    K = bn.shape[1] - 1
    u = cp.empty((R, L), dtype=dtype)
    _filters.fir(xr, cp.asarray(bn, dtype=dtype), zi_r, u)
    poles = iir_poles(an)
    poles = poles[:, np.any(poles != 0, axis=0)]    # a pole at 0 (padding) is the identity
    K = poles.shape[1]
    if K == 0:
        yr[...] = u
        return
    real_poles = not np.any(poles.imag)
    sdt = np.dtype(dtype) if (real_poles or np.dtype(dtype).kind == "c") else \
        np.result_type(dtype, np.complex64)
    cur = u if u.dtype == sdt else u.astype(sdt)
    h0 = cp.zeros(R, dtype=sdt)
    for j in range(K):
        pj = poles[:, j].real if real_poles else poles[:, j]
        p_d = cp.asarray(np.ascontiguousarray(pj), dtype=sdt)
        nxt = yr if (j == K - 1 and sdt == np.dtype(dtype)) else cp.empty((R, L), dtype=sdt)
        _rec.scan(p_d, cur, h0, nxt, mode="rec")
        cur = nxt
    if cur is not yr:
        yr[...] = cur.real if np.dtype(dtype).kind != "c" else cur


def _iir_rows(bn_host, an_host, fr, xr, zi_r, yr, dtype):
    """One DF2T filter (host coefficients ``(K+1, *tail)``) over rows; returns zf rows or None."""
    cp = _cp()
    K = bn_host.shape[0] - 1
    rows_b = [_coef_rows_host(bn_host[k], fr, "b") for k in range(K + 1)]
    rows_a = [_coef_rows_host(an_host[k], fr, "a") for k in range(K + 1)]
    tv = any(r.shape[1] > 1 for r in rows_b + rows_a)
    Rc = max(r.shape[0] for r in rows_b + rows_a)
    if not tv:
        bn = np.concatenate([np.broadcast_to(r, (Rc, 1)) for r in rows_b], axis=1)
        an = np.concatenate([np.broadcast_to(r, (Rc, 1)) for r in rows_a], axis=1)
        _lti_rows(bn, an, xr, zi_r, yr, dtype)
        if zi_r is None:
            return None
        return iir_zf(cp, cp.asarray(bn, dtype=dtype), cp.asarray(an, dtype=dtype), xr, yr,
                      zi_r, K)
    from . import _filters

    Lc = fr.L
    b3 = np.stack([np.broadcast_to(r, (Rc, Lc)) for r in rows_b])
    a3 = np.stack([np.broadcast_to(r, (Rc, Lc)) for r in rows_a])
    zf = None if zi_r is None else cp.empty((fr.R, K), dtype=dtype)
    _filters.df2t(xr, cp.asarray(b3, dtype=dtype), cp.asarray(a3, dtype=dtype), K, zi_r, zf,
                  yr)
    return zf


def lfilter(b, a, x, axis=-1, zi=None):
    """``iirssm.lfilter`` for CuPy signals (iir.cu + recurrence.cu).

    Fixed coefficients (1-D or per channel): the numerator as an FIR, then one
    first-order recurrence per pole of ``a`` (complex for complex poles), exact for
    a time-invariant filter and run parallel in time. Time-varying coefficients:
    scipy's DF2T loop, one GPU thread per signal (order <= 8). ``b`` and ``a`` are
    small: CuPy coefficient arrays are read back to the host to be factored.
    """
    from .._lfilter import _coef_array, _normalized

    cp = _cp()
    _reject_pandas(x, "x", "lfilter")
    x = _signal(x, "x", "lfilter", (("b", b), ("a", a), ("zi", zi)))
    dtype = compute_dtype(("b", b), ("a", a), ("x", x), ("zi", zi), promote_first=True)
    b_arr = _coef_array(_host(b), "b", dtype)
    a_arr = _coef_array(_host(a), "a", dtype)
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension (time)")
    axis = normalize_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        raise ValueError(f"x has no samples along axis {axis} (shape {x.shape})")
    bn, an, K = _normalized(b_arr, a_arr, dtype)
    fr = _Frame(x.shape, axis)
    res, yr, finish = fr.output(dtype, None, (("x", x),))
    Kw = bn.shape[0] - 1
    zi_r = None
    if zi is not None:
        if K == 0:
            fr.state_in(zi, "zi", dtype, size=0)          # shape check only
            zi_r = None
        else:
            zi_r = fr.state_in(zi, "zi", dtype, size=K)
            if Kw > K:
                zi_r = cp.concatenate([zi_r, cp.zeros((fr.R, Kw - K), dtype)], axis=1)
    zf = None
    if fr.R > 0:
        zf = _iir_rows(bn, an, fr, fr.rows(x.astype(dtype, copy=False)), zi_r, yr, dtype)
    y = finish()
    if zi is None:
        return y
    if zf is None:
        zf = cp.zeros((fr.R, Kw), dtype=dtype)
    return y, fr.state_out(cp.ascontiguousarray(zf[:, :K]))


def sosfilt(sos, x, axis=-1, zi=None):
    """``iirssm.sosfilt`` for CuPy signals: each section as in :func:`lfilter`."""
    from .._lfilter import _sos_array

    cp = _cp()
    _reject_pandas(x, "x", "sosfilt")
    x = _signal(x, "x", "sosfilt", (("sos", sos), ("zi", zi)))
    dtype = compute_dtype(("sos", sos), ("x", x), ("zi", zi), promote_first=True)
    sos_arr = _sos_array(_host(sos), dtype)
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension (time)")
    axis = normalize_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        raise ValueError(f"x has no samples along axis {axis} (shape {x.shape})")
    ns = sos_arr.shape[0]
    fr = _Frame(x.shape, axis)
    zi_sec = None
    if zi is not None:
        zd = _device(zi, "zi", dtype)
        if zd.ndim < 1 or zd.shape[0] != ns:
            raise ValueError(f"zi must have shape (n_sections={ns}, ...) with the signal's shape "
                             f"(axis {axis} of length 2) after it; got {zd.shape}")
        zi_sec = [fr.state_in(zd[s], f"zi[{s}]", dtype, size=2) for s in range(ns)]
    res, yr, finish = fr.output(dtype, None, (("x", x),))
    zfs = []
    if fr.R > 0:
        cur = fr.rows(x.astype(dtype, copy=False))
        for s in range(ns):
            dst = yr if s == ns - 1 else cp.empty((fr.R, fr.L), dtype=dtype)
            z = _iir_rows(sos_arr[s, :3], sos_arr[s, 3:], fr, cur,
                          None if zi_sec is None else zi_sec[s], dst, dtype)
            zfs.append(z)
            cur = dst
    y = finish()
    if zi is None:
        return y
    if fr.R == 0:
        zfs = [cp.zeros((0, 2), dtype=dtype)] * ns
    return y, cp.stack([fr.state_out(cp.ascontiguousarray(z)) for z in zfs])


# ------------------------------------------------------------------------ DiagonalSSM

def _bank_rows(bank_shape, nontime):
    """Flat bank index of every row (non-time dims in order), host ``(R,)``."""
    nb = int(np.prod(bank_shape, dtype=np.int64)) if bank_shape else 1
    idx = np.arange(nb).reshape(bank_shape) if bank_shape else np.zeros((), np.int64)
    return np.ascontiguousarray(np.broadcast_to(idx, nontime)).reshape(-1), nb


def diagonal_ssm_filter(ssm, u, axis=-1, zi=None, return_zf=False, method="scan", out=None):
    """``DiagonalSSM.filter`` for CuPy signals (ssm.cu; ``method="fft"`` with cupy.fft).

    The modes of every row are the system's (broadcast bank); the per-row mode
    parameters (``R x modes`` complex values) are prepared on the host and copied
    to the device. One block per row: parallel over rows, not in time.
    """
    from . import _filters

    cp = _cp()
    if method not in ("scan", "fft"):
        raise ValueError(f"method must be 'scan' or 'fft'; got {method!r}")
    _reject_pandas(u, "u", "DiagonalSSM.filter")
    u = _signal(u, "u", "DiagonalSSM.filter", (("zi", zi),))
    dtype = compute_dtype(("u", u), ("zi", zi))
    rdt = real_dtype(dtype)
    if u.dtype.kind not in "biufc":
        raise TypeError(f"u must hold real or complex numbers; got dtype {u.dtype}")
    ax, L, nontime, nd, oax, oshape = ssm._filter_shape(u.shape, axis)
    cin = u.dtype.kind == "c"
    real_path = ssm.is_real and not cin
    cdt = np.result_type(rdt, np.complex64)
    ydt = np.dtype(rdt if real_path else cdt)
    if method == "fft":
        if zi is not None or return_zf:
            raise ValueError("method='fft' supports neither zi nor return_zf; use "
                             "method='scan' to carry a state")
    # u in the output's shape (a copy only if the bank adds dimensions), time last
    ub = cp.moveaxis(u, ax, -1)
    ub = ub.reshape((1,) * (nd - ub.ndim) + ub.shape)
    ub = cp.moveaxis(ub, -1, oax)
    if ub.shape != oshape:
        ub = cp.ascontiguousarray(cp.broadcast_to(ub, oshape))
    ub = ub.astype(ydt, copy=False)
    fr = _Frame(oshape, oax)
    res, yr, finish = fr.output(ydt, out, (("u", u), ("zi", zi)))
    R = fr.R
    N, K = ssm.n_modes, ssm._k.shape[-1]
    S = N + K
    bidx, nb = _bank_rows(ssm.bank_shape, nontime)
    shared = nb == 1
    rows = (lambda v: v) if shared else (lambda v: v[bidx])
    ur = fr.rows(ub) if R else None
    Dv = (ssm._D.real if real_path else ssm._D).reshape(nb)
    kv = (ssm._k.real if real_path else ssm._k).reshape(nb, K)
    if method == "fft":
        if R:
            kern = ssm.kernel(L).reshape(nb, L)
            kd = cp.asarray(rows(kern).astype(cdt if (np.iscomplexobj(kern) or not real_path)
                                              else rdt))
            n = 1 << int(np.ceil(np.log2(max(2 * L - 1, 1))))
            if real_path and kd.dtype.kind != "c":
                Y = cp.fft.irfft(cp.fft.rfft(ur, n, axis=1) * cp.fft.rfft(kd, n, axis=1), n,
                                 axis=1)[:, :L]
            else:
                Y = cp.fft.ifft(cp.fft.fft(ur.astype(cdt), n, axis=1)
                                * cp.fft.fft(kd.astype(cdt), n, axis=1), n, axis=1)[:, :L]
            yr[...] = (Y.real if real_path else Y).astype(ydt)
            _direct_terms(cp, yr, ur, cp.asarray(rows(Dv)).astype(ydt),
                          cp.asarray(rows(kv)).astype(ydt), None)
        return finish()
    # ---- modes computed by the kernel (conjugate pairs once on the real path)
    sel, safe, lam, beta, wgt, gain = ssm._computed_modes(real_path)   # as on the CPU
    M = sel.shape[1]
    if zi is None:
        z = cp.zeros((R, S), dtype=cdt)
    else:
        z = fr.state_in(zi, "zi", cdt, size=S)
    h0 = z[:, :N]
    hist = z[:, N:]
    if real_path and zi is not None and N and R:
        part = cp.asarray(rows(ssm._partner.reshape(nb, N)))
        mate = cp.take_along_axis(h0, cp.broadcast_to(part, (R, N)), axis=1)
        tol = 10 * np.sqrt(np.finfo(rdt).eps)
        scale = cp.maximum(cp.abs(h0), cp.abs(mate))
        bad = (cp.abs(h0 - cp.conj(mate)) > tol * scale) & cp.isfinite(h0) & cp.isfinite(mate)
        if bool(bad.any()):
            raise ValueError(
                "zi is not conjugate-symmetric: this is a real system (its modes come in "
                "conjugate pairs) filtering a real signal, so the state of each mode must be "
                "the conjugate of its partner's (and real for real modes), as the zf of a "
                "previous call is. With any other state the output would be complex: filter "
                "a complex signal (u.astype(complex)) to use it.")
    if real_path and K and bool((hist.imag != 0).any()):
        raise ValueError("zi's last entries (the previous inputs of the FIR terms) must be "
                         "real when a real system filters a real signal")
    sel_r = cp.asarray(np.broadcast_to(rows(safe), (R, M)) if M else np.zeros((R, 0), np.int64))
    gain_r = cp.asarray(np.broadcast_to(rows(gain), (R, M)).astype(cdt)) if M else None
    g = cp.zeros((R, M), dtype=cdt)
    if M and R:
        valid = cp.asarray(np.broadcast_to(rows(sel >= 0), (R, M)))
        g = cp.ascontiguousarray(cp.where(valid, cp.take_along_axis(h0, sel_r, axis=1) / gain_r,
                                          0).astype(cdt))
    if R:
        D_r = cp.asarray(np.ascontiguousarray(rows(Dv)).astype(ydt))
        if M:
            _filters.ssm(ur, yr, cp.asarray(np.ascontiguousarray(rows(lam)), dtype=cdt),
                         cp.asarray(np.ascontiguousarray(rows(beta)), dtype=rdt),
                         cp.asarray(np.ascontiguousarray(rows(wgt)), dtype=cdt), D_r, g)
        else:
            yr[...] = D_r.reshape(-1, 1) * ur
        if K:
            _direct_terms(cp, yr, ur, None, cp.asarray(np.ascontiguousarray(rows(kv))).astype(ydt),
                          hist.real.astype(ydt) if real_path else hist)
    y = finish()
    if not return_zf:
        return y
    zf = cp.zeros((R, S), dtype=cdt)
    if M and R:
        hf = g * gain_r
        idx = sel_r
        valid = cp.asarray(np.broadcast_to(rows(sel >= 0), (R, M)))
        rr = cp.broadcast_to(cp.arange(R)[:, None], (R, M))
        zf[rr[valid], idx[valid]] = hf[valid]
        if real_path:
            part = cp.asarray(np.broadcast_to(rows(ssm._partner.reshape(nb, N)), (R, N)))
            pm = cp.take_along_axis(part, idx, axis=1)
            other = valid & (pm != idx)
            zf[rr[other], pm[other]] = cp.conj(hf[other])
    if K and R:
        ext = cp.concatenate([hist[:, ::-1].astype(cdt), ur.astype(cdt)], axis=1)
        zf[:, N:] = ext[:, ::-1][:, :K]
    return y, fr.state_out(zf)


def _direct_terms(cp, yr, ur, D_r, k_r, hist):
    """``y += D u + sum_j k_j u[t-j]`` on rows; ``hist`` (R, K): earlier inputs, newest first."""
    R, L = ur.shape
    if D_r is not None:
        yr += D_r.reshape(-1, 1) * ur
    if k_r is None or k_r.shape[-1] == 0:
        return
    K = k_r.shape[-1]
    past = hist if hist is not None else cp.zeros((R, K), dtype=ur.dtype)
    ext = cp.concatenate([past[:, ::-1].astype(ur.dtype), ur], axis=1)   # oldest first
    for j in range(1, K + 1):
        yr += k_r[:, j - 1:j] * ext[:, K - j:K - j + L]


# ---------------------------------------------------------------- the selective scan
try:  # built separately (iirssm/_cuda/_selective.py); absent until then
    from ._selective import selective_scan, selective_scan_grad  # noqa: F401
    __all__ += ["selective_scan", "selective_scan_grad"]
except ImportError:  # pragma: no cover - depends on the other module
    pass
