"""Dask backend: filter dask arrays chunked in time, carrying the state between chunks.

Opt-in (``import iirssm`` never imports dask). The public functions
(:func:`iirssm.linear_recurrence`, :func:`iirssm.ema`, :func:`iirssm.lfilter`,
:func:`iirssm.sosfilt`, :func:`iirssm.filtfilt`, :func:`iirssm.sosfiltfilt`,
:meth:`iirssm.DiagonalSSM.filter`, :func:`iirssm.selective_scan`,
:func:`iirssm.selective_scan_grad`) send a call here when one of their array
arguments is a :class:`dask.array.Array`; the functions of this module can also
be called directly, with the same arguments.

How it works: the output has the chunks of the signal (time and the other
axes). For every block of channels the time chunks are filtered one after the
other with the NumPy backend: the task for time chunk ``k`` takes the input
chunk ``k`` and the final state ``zf`` of task ``k - 1`` (as ``zi``), and
returns its output chunk and its own final state. Only the state (the signal's
shape with the time axis replaced by the state size) travels between tasks, so
memory stays bounded by a few chunks. Calling a function builds a lazy graph
and computes nothing; the result equals the NumPy result to rounding.

Coefficients that are NumPy arrays or scalars are used as they are;
per-channel and per-sample coefficients may also be dask arrays (they are
rechunked to the signal's chunks). ``return_zf=True`` (``return_last_state``,
``zi`` for the scipy drop-ins) gives the final state as a dask array (an
:class:`~iirssm.EMAState` of dask arrays for :func:`ema`). ``out=`` is not
supported: write the result with :func:`dask.array.store` or ``to_zarr``.
See ``docs/dask.md``.

Examples
--------
>>> import numpy as np, dask.array as da
>>> import iirssm
>>> x = np.random.default_rng(0).standard_normal((4, 1000))
>>> xd = da.from_array(x, chunks=(2, 300))
>>> y = iirssm.ema(xd, alpha=0.1)              # lazy: nothing computed yet
>>> y.chunks
((2, 2), (300, 300, 300, 100))
>>> np.allclose(y.compute(), iirssm.ema(x, alpha=0.1))
True
"""

from __future__ import annotations

import functools
import itertools
import operator

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.graph_manipulation import clone
from dask.highlevelgraph import HighLevelGraph

from . import _ema, _lfilter, _pandas, _selective
from ._ema import EMAState
from ._validation import compute_dtype, normalize_axis

__all__ = ["linear_recurrence", "ema", "lfilter", "sosfilt", "filtfilt", "sosfiltfilt",
           "diagonal_ssm_filter", "selective_scan", "selective_scan_grad"]


# =============================================================================== plumbing

def _is_dask(x) -> bool:
    return isinstance(x, da.Array)


def _shape(x) -> tuple:
    return tuple(x.shape) if _is_dask(x) else np.shape(x)


def _ndim(x) -> int:
    return len(_shape(x))


def _no_out(out, op):
    if out is not None:
        raise ValueError(f"{op}: out= is not supported for dask arrays (got {type(out).__name__}); "
                         "the result is a lazy dask array: write it with dask.array.store(...) "
                         "or .to_zarr(...)")


def _no_pandas(value, name, op):
    if _pandas.is_pandas(value):
        raise TypeError(f"{op}: {name} is a pandas object but another argument is a dask array; "
                        "pass a NumPy or dask array (e.g. .to_numpy() or dask.array.from_array)")


def _check_known_chunks(arr, name):
    if any(isinstance(c, float) and c != c for cs in arr.chunks for c in cs):
        raise ValueError(f"{name} has unknown chunk sizes (NaN); call "
                         f"{name}.compute_chunk_sizes() first")


class _Grid:
    """The output's shape and chunks, with the time axis."""

    def __init__(self, shape, chunks, axis):
        self.shape = tuple(shape)
        self.chunks = tuple(tuple(int(c) for c in cs) for cs in chunks)
        self.axis = axis
        self.nd = len(shape)
        self.numblocks = tuple(len(c) for c in self.chunks)
        self.nt = self.numblocks[axis]

    def channel_blocks(self):
        """Block indices of the channel blocks (time index 0)."""
        ranges = [range(1) if d == self.axis else range(n) for d, n in enumerate(self.numblocks)]
        return itertools.product(*ranges)

    def at(self, cidx, k):
        return cidx[:self.axis] + (k,) + cidx[self.axis + 1:]

    def state_chunks(self, lead_shape, size):
        ch = list(self.chunks)
        ch[self.axis] = (size,)
        return tuple((n,) for n in lead_shape) + tuple(ch)


def _right_dims(ndim, nd, lead=0):
    """Grid dimensions of an array whose trailing ``ndim - lead`` axes align with the grid's."""
    m = ndim - lead
    if m > nd:
        return None
    return (None,) * lead + tuple(range(nd - m, nd))


def _grid_from(shape, axis, candidates):
    """Chunks for the output: per dimension, those of the first dask candidate spanning it."""
    chunks = []
    for d, n in enumerate(shape):
        c = None
        for arr, dims in candidates:
            if not _is_dask(arr) or dims is None:
                continue
            for j, dd in enumerate(dims):
                if dd == d and arr.shape[j] == n and n != 1:
                    c = arr.chunks[j]
                    break
            if c is not None:
                break
        chunks.append(c if c is not None else (n,))
    return _Grid(shape, chunks, axis)


class _In:
    """A dask array aligned with the grid, and the key of its block for a grid block."""

    def __init__(self, value, dims, grid, name, state=False, override=None):
        shp = _shape(value)
        if dims is None or len(dims) != len(shp):
            raise ValueError(f"{name} of shape {shp} does not broadcast against the output "
                             f"shape {grid.shape}")
        target = []
        self.map = []
        for j, (n, d) in enumerate(zip(shp, dims)):
            if state and d == grid.axis:
                d = None
            if override and j in override:
                target.append(override[j])
                self.map.append(d if len(override[j]) > 1 else None)
            elif d is None:
                target.append((n,))
                self.map.append(None)
            elif n == grid.shape[d]:
                target.append(grid.chunks[d])
                self.map.append(d if len(grid.chunks[d]) > 1 else None)
            elif n == 1:
                target.append((1,))
                self.map.append(None)
            else:
                raise ValueError(f"{name} has length {n} on its axis {j} where the output "
                                 f"(shape {grid.shape}) has {grid.shape[d]}: expected "
                                 f"{grid.shape[d]} or 1")
        if _is_dask(value):
            _check_known_chunks(value, name)
            arr = value.rechunk(tuple(target)) if value.chunks != tuple(target) else value
        else:
            arr = da.from_array(np.asarray(value), chunks=tuple(target))
        self.arr = arr

    def key(self, idx):
        return (self.arr.name,) + tuple(0 if d is None else idx[d] for d in self.map)


def _probe_value(value, dims, grid, fill, state=False):
    """A small NumPy stand-in for ``value`` over one time sample (all channels)."""
    shp = list(_shape(value))
    sl = []
    for j, d in enumerate(dims):
        if d == grid.axis and not state and shp[j] > 1:
            shp[j] = 1
            sl.append(slice(0, 1))
        else:
            sl.append(slice(None))
    if _is_dask(value):
        return np.full(shp, fill, dtype=value.dtype)
    return np.asarray(value)[tuple(sl)]


def _apply(fn, names, consts, state, *blocks):
    kw = dict(consts)
    kw.update(zip(names, blocks))
    return fn(state, **kw)


def _apply_init(fn, names, consts, *blocks):
    kw = dict(consts)
    kw.update(zip(names, blocks))
    return fn(**kw)


class _Plan:
    """Arguments of a chunked call: aligned dask inputs, constants, initial-state inputs."""

    def __init__(self, grid):
        self.grid = grid
        self.names, self.ins, self.probe = [], [], {}
        self.consts = {}
        self.init_names, self.init_ins, self.init_probe = [], [], {}
        self.init_consts = {}

    def add(self, name, value, dims, fill=0.0, override=None):
        """A per-block argument (NumPy or dask array aligned with ``dims``), or a constant."""
        if value is None or (not _is_dask(value) and np.ndim(value) == 0):
            self.consts[name] = value
            return
        self.ins.append(_In(value, dims, self.grid, name, override=override))
        self.names.append(name)
        self.probe[name] = _probe_value(value, dims, self.grid, fill)

    def add_init(self, name, value, dims, fill=0.0):
        """An argument of the initial state (time axis replaced by the state size)."""
        if value is None or (not _is_dask(value) and np.ndim(value) == 0):
            self.init_consts[name] = value
            return
        self.init_ins.append(_In(value, dims, self.grid, name, state=True))
        self.init_names.append(name)
        self.init_probe[name] = _probe_value(value, dims, self.grid, fill, state=True)

    @property
    def has_init(self):
        return bool(self.init_names) or bool(self.init_consts)

    def deps(self):
        return [i.arr for i in self.ins] + [i.arr for i in self.init_ins]


def _second(first, pair):
    return pair[1]


def _run_probe(plan, block_fn, init_fn):
    """Run the NumPy backend on one time sample: validates the arguments, gives dtypes."""
    state = None
    if plan.has_init:
        kw = dict(plan.init_consts)
        kw.update(plan.init_probe)
        state = init_fn(**kw)
    kw = dict(plan.consts)
    kw.update(plan.probe)
    return block_fn(state, **kw)


def _chain(label, plan, block_fn, init_fn, reverse, dtype, token):
    """The graph: per channel block, time chunks in order, the state passed along.

    Returns the output dask array and ``{channel block: key of the final state}``.
    """
    grid = plan.grid
    yname = f"{label}-{token}"
    pair = f"{label}-pair-{token}"
    sname = f"{label}-state-{token}"
    init = functools.partial(_apply_init, init_fn, tuple(plan.init_names), plan.init_consts)
    dsk, last = {}, {}
    order = range(grid.nt - 1, -1, -1) if reverse else range(grid.nt)
    for cidx in grid.channel_blocks():
        fn = block_fn[cidx] if isinstance(block_fn, dict) else block_fn
        step = functools.partial(_apply, fn, tuple(plan.names), plan.consts)
        prev = None
        if plan.has_init:
            prev = (sname + "-init",) + cidx
            dsk[prev] = (init,) + tuple(i.key(cidx) for i in plan.init_ins)
        for k in order:
            idx = grid.at(cidx, k)
            dsk[(pair,) + idx] = (step, prev) + tuple(i.key(idx) for i in plan.ins)
            dsk[(yname,) + idx] = (operator.getitem, (pair,) + idx, 0)
            # the state is taken after the output chunk: with this shape dask's ordering
            # runs read -> filter -> consumer of the output for a chunk before the next
            dsk[(sname,) + idx] = (_second, (yname,) + idx, (pair,) + idx)
            prev = (sname,) + idx
        last[cidx] = prev
    graph = HighLevelGraph.from_collections(yname, dsk, dependencies=plan.deps())
    y = da.Array(graph, yname, chunks=grid.chunks, dtype=dtype,
                 meta=np.empty((0,) * grid.nd, dtype=dtype))
    return y, last


def _state_array(label, token, grid, last, parent, probe_state, extract=None):
    """A dask array of the final states ``(lead..., grid with time -> size)``."""
    lead = probe_state.ndim - grid.nd
    size = probe_state.shape[lead + grid.axis]
    name = f"{label}-zf-{token}"
    dsk = {}
    for cidx, key in last.items():
        dsk[(name,) + (0,) * lead + cidx] = (_identity if extract is None else extract, key)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[parent])
    return da.Array(graph, name, chunks=grid.state_chunks(probe_state.shape[:lead], size),
                    dtype=probe_state.dtype, meta=np.empty((0,) * probe_state.ndim,
                                                           dtype=probe_state.dtype))


def _identity(x):
    return x


def _as_dtype(y, dtype):
    return y if y.dtype == dtype else y.astype(dtype)


# ====================================================================== linear_recurrence

def _lr_block(state, *, a, b, axis, reverse):
    from ._recurrence import linear_recurrence as lr
    return lr(a, b, axis=axis, zi=state, reverse=reverse, return_zf=True)


def _zi_init(*, zi):
    return zi


def linear_recurrence(a, b, *, axis=-1, zi=None, reverse=False, return_zf=False, out=None):
    """:func:`iirssm.linear_recurrence` on dask arrays, chunk by chunk along time.

    The output has ``b``'s chunks (``a``'s where ``b`` is not a dask array);
    ``reverse=True`` runs the chunks from the last to the first. See
    :func:`iirssm.linear_recurrence` for the parameters.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import iirssm
    >>> b = da.ones(6, chunks=2)
    >>> h, zf = iirssm.linear_recurrence(0.5, b, return_zf=True)
    >>> h.compute(), zf.compute()
    (array([1.     , 1.5    , 1.75   , 1.875  , 1.9375 , 1.96875]), array([1.96875]))
    """
    op = "linear_recurrence"
    _no_out(out, op)
    for name, v in (("a", a), ("b", b), ("zi", zi)):
        _no_pandas(v, name, op)
    try:
        shape = np.broadcast_shapes(_shape(a), _shape(b))
    except ValueError:
        raise ValueError(f"shapes do not broadcast together: a {_shape(a)}, b {_shape(b)}") \
            from None
    if len(shape) == 0:
        raise ValueError("a and b are both scalars: b needs a time axis")
    nd = len(shape)
    ax = normalize_axis(axis, nd)
    if shape[ax] == 0:
        raise ValueError(f"b has no samples along axis {ax} (shape {shape})")
    da_, db_ = _right_dims(_ndim(a), nd), _right_dims(_ndim(b), nd)
    grid = _grid_from(shape, ax, [(b, db_), (a, da_)])
    plan = _Plan(grid)
    plan.add("a", a, da_, fill=0.5)
    plan.add("b", b, db_)
    if zi is not None:
        if _ndim(zi) > nd:
            raise ValueError(f"zi must have shape {shape[:ax] + (1,) + shape[ax + 1:]} or "
                             f"broadcast to it; got {_shape(zi)}")
        plan.add_init("zi", zi, _right_dims(_ndim(zi), nd))
    block = functools.partial(_lr_block, axis=ax, reverse=bool(reverse))
    y0, zf0 = _run_probe(plan, block, _zi_init)
    token = tokenize(op, [i.arr.name for i in plan.ins + plan.init_ins], plan.consts, ax,
                     bool(reverse))
    y, last = _chain("linear-recurrence", plan, block, _zi_init, reverse, y0.dtype, token)
    if not return_zf:
        return y
    return y, _state_array("linear-recurrence", token, grid, last, y, zf0)


# ==================================================================================== ema

def _ema_block(state, *, x, times=None, coefs, **kw):
    from ._ema import ema as ema_np
    args = {k: kw.pop(k) for k in coefs}
    if times is not None:
        times = np.asarray(times).reshape(-1)
    return ema_np(x, **args, times=times, zi=state, return_zf=True, **kw)


def _ema_init(*, mean=None, weight=None, count=None, last_time=None, plain=None):
    if plain is not None:
        return plain
    if last_time is not None and np.ndim(last_time) == 1:
        last_time = last_time[0]
    return EMAState(mean, weight, count, last_time)


def _ema_field(state, i):
    return state[i]


def ema(x, alpha=None, *, com=None, span=None, halflife=None, times=None, adjust=False,
        ignore_na=False, min_periods=0, axis=-1, zi=None, return_zf=False, out=None):
    """:func:`iirssm.ema` on dask arrays, chunk by chunk along time.

    ``x`` (and per-channel or per-sample ``alpha``/``com``/``span``/``halflife``)
    may be dask arrays; ``times`` may be a NumPy array (or DatetimeIndex) or a
    1-D dask array of the signal's length. The :class:`~iirssm.EMAState`
    carried between chunks (average, weight, observation count, last timestamp)
    makes ``adjust=True``, ``min_periods``, ``ignore_na`` and the NaN rules
    equal pandas on the whole signal. With ``return_zf=True`` the state is an
    ``EMAState`` of dask arrays; its ``last_time`` is a 0-d dask array when
    ``times`` is a dask array. See :func:`iirssm.ema` for the parameters.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import iirssm
    >>> x = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    >>> t = np.array([0.0, 1.0, 3.0, 4.0, 7.0])
    >>> y = iirssm.ema(da.from_array(x, chunks=2), halflife=2.0, times=t, adjust=True)
    >>> np.allclose(y.compute(), iirssm.ema(x, halflife=2.0, times=t, adjust=True))
    True
    """
    op = "ema"
    _no_out(out, op)
    for name, v in (("x", x), ("alpha", alpha), ("com", com), ("span", span), ("zi", zi)):
        _no_pandas(v, name, op)
    if not _ema._is_timedelta(halflife):
        _no_pandas(halflife, "halflife", op)
    shape = _shape(x)
    nd = len(shape)
    if nd == 0:
        raise ValueError("x is a scalar: it needs a time axis")
    ax = normalize_axis(axis, nd)
    L = shape[ax]
    if L == 0:
        raise ValueError(f"x has no samples along axis {ax} (shape {shape})")
    coefs = {n: v for n, v in (("alpha", alpha), ("com", com), ("span", span),
                               ("halflife", halflife)) if v is not None}
    cand = [(x, _right_dims(nd, nd))]
    for n, v in coefs.items():
        if not _ema._is_timedelta(v):
            cand.append((v, _right_dims(_ndim(v), nd)))
    tdims = (ax,)
    times_v = times
    if times is not None:
        if _is_dask(times):
            if times.ndim != 1:
                raise ValueError(f"times must be 1-D (one timestamp per sample); got shape "
                                 f"{times.shape}")
            if times.shape[0] != L:
                raise ValueError(f"times must have the signal's length {L} along the time "
                                 f"axis; got {times.shape[0]}")
        else:
            times_v = _ema._times_array(times, L)[1]     # tz-aware -> UTC, validated
        cand.append((times_v, tdims))
    grid = _grid_from(shape, ax, cand)
    plan = _Plan(grid)
    plan.add("x", x, _right_dims(nd, nd))
    for n, v in coefs.items():
        if _ema._is_timedelta(v):
            plan.consts[n] = v
        else:
            plan.add(n, v, _right_dims(_ndim(v), nd), fill=1.0)
    plan.consts["coefs"] = tuple(coefs)
    last_eager = None
    if times is not None:
        fill = 0
        if isinstance(zi, EMAState) and zi.last_time is not None and not _is_dask(zi.last_time):
            fill = zi.last_time
        plan.add("times", times_v, tdims, fill=fill)
        if not _is_dask(times_v):
            last_eager = times_v[-1]
    plan.consts.update(adjust=adjust, ignore_na=ignore_na, min_periods=min_periods, axis=ax)
    if zi is not None:
        if isinstance(zi, EMAState):
            for n, fill in (("mean", np.nan), ("weight", 1.0), ("count", 0.0)):
                v = getattr(zi, n)
                plan.add_init(n, v, _right_dims(_ndim(v), nd), fill=fill)
            lt = zi.last_time
            if lt is not None and _is_dask(lt):
                plan.init_ins.append(_In(lt.reshape(1), (None,), grid, "zi.last_time"))
                plan.init_names.append("last_time")
                plan.init_probe["last_time"] = np.zeros(1, dtype=lt.dtype)
            else:
                plan.init_consts["last_time"] = lt
        else:
            plan.add_init("plain", zi, _right_dims(_ndim(zi), nd))
    y0, zf0 = _run_probe(plan, _ema_block, _ema_init)
    token = tokenize(op, [i.arr.name for i in plan.ins + plan.init_ins], plan.consts,
                     plan.init_consts)
    y, last = _chain("ema", plan, _ema_block, _ema_init, False, y0.dtype, token)
    if not return_zf:
        return y
    fields = [_state_array(f"ema-{n}", token, grid, last, y, getattr(zf0, n),
                           functools.partial(_ema_field, i=i))
              for i, n in enumerate(("mean", "weight", "count"))]
    if times is None:
        lt = None
    elif last_eager is not None:
        lt = last_eager
    else:
        lt = times_v[-1]
    return y, EMAState(*fields, lt)


# ========================================================================= lfilter, sosfilt

def _lfilter_block(state, *, x, b, a, axis, zdtype):
    from ._lfilter import lfilter as lf
    if state is None:
        K = max(np.shape(b)[0], np.shape(a)[0]) - 1
        shp = list(x.shape)
        shp[axis] = K
        state = np.zeros(shp, dtype=zdtype)
    return lf(b, a, x, axis=axis, zi=state)


def _sosfilt_block(state, *, x, sos, axis, zdtype):
    from ._lfilter import sosfilt as sf
    if state is None:
        shp = list(x.shape)
        shp[axis] = 2
        state = np.zeros([np.shape(sos)[0]] + shp, dtype=zdtype)
    return sf(sos, x, axis=axis, zi=state)


def _coef_dims(c, nd, lead, name, op):
    """Coefficients ``(n_coef, *S)`` (``lead=1``) or ``(n_sections, 6, *S)`` (``lead=2``)."""
    if _ndim(c) <= lead:
        return (None,) * _ndim(c)
    dims = _right_dims(_ndim(c), nd, lead)
    if dims is None:
        raise ValueError(f"{op}: {name} of shape {_shape(c)} has more dimensions than the "
                         f"signal ({nd}) after its leading coefficient axis(es)")
    return dims


def _scipy_like(op, x, coefs, lead, axis, zi, block_fn, zi_lead):
    for name, v in list(coefs.items()) + [("x", x), ("zi", zi)]:
        _no_pandas(v, name, op)
    shape = _shape(x)
    nd = len(shape)
    if nd == 0:
        raise ValueError(f"{op}: x is a scalar: it needs a time axis")
    ax = normalize_axis(axis, nd)
    if shape[ax] == 0:
        raise ValueError(f"{op}: x has no samples along axis {ax} (shape {shape})")
    cdims = {n: _coef_dims(v, nd, lead, n, op) for n, v in coefs.items()}
    grid = _grid_from(shape, ax, [(x, _right_dims(nd, nd))] + [
        (v, cdims[n]) for n, v in coefs.items()])
    plan = _Plan(grid)
    plan.add("x", x, _right_dims(nd, nd))
    for n, v in coefs.items():
        plan.add(n, v, cdims[n], fill=1.0)
    zdtype = compute_dtype(*[(n, _meta(v)) for n, v in coefs.items()], ("x", _meta(x)),
                           ("zi", None if zi is None else _meta(zi)), promote_first=True)
    plan.consts.update(axis=ax, zdtype=zdtype)
    if zi is not None:
        zd = _right_dims(_ndim(zi), nd, zi_lead) if _ndim(zi) > zi_lead else None
        if zd is None:
            raise ValueError(f"{op}: zi of shape {_shape(zi)} does not have the state's "
                             f"shape (the signal's, axis {ax} replaced by the state size"
                             f"{', after the section index' if zi_lead else ''})")
        plan.add_init("zi", zi, zd)
    y0, zf0 = _run_probe(plan, block_fn, _zi_init)
    token = tokenize(op, [i.arr.name for i in plan.ins + plan.init_ins],
                     {k: v for k, v in plan.consts.items()})
    y, last = _chain(op, plan, block_fn, _zi_init, False, y0.dtype, token)
    if zi is None:
        return y
    return y, _state_array(op, token, grid, last, y, zf0)


def _meta(v):
    """A 0-d stand-in with ``v``'s dtype (dask arrays) or ``v`` itself, for dtype rules."""
    if _is_dask(v):
        return np.zeros((1,) * max(v.ndim, 1), dtype=v.dtype)
    return v


def lfilter(b, a, x, axis=-1, zi=None):
    """:func:`iirssm.lfilter` on dask arrays, chunk by chunk along time.

    Returns ``y`` or, when ``zi`` is given, ``(y, zf)`` as scipy does, both dask
    arrays. ``b`` and ``a`` may be dask arrays when they are per-channel or
    time-varying (``(n_coef, *S)``). See :func:`iirssm.lfilter`.

    Examples
    --------
    >>> import numpy as np, scipy.signal, dask.array as da
    >>> import iirssm
    >>> b, a = scipy.signal.butter(3, 0.1)
    >>> x = np.random.default_rng(0).standard_normal((3, 500))
    >>> y = iirssm.lfilter(b, a, da.from_array(x, chunks=(1, 128)))
    >>> np.allclose(y.compute(), scipy.signal.lfilter(b, a, x))
    True
    """
    return _scipy_like("lfilter", x, {"b": b, "a": a}, 1, axis, zi, _lfilter_block, 0)


def sosfilt(sos, x, axis=-1, zi=None):
    """:func:`iirssm.sosfilt` on dask arrays, chunk by chunk along time.

    Returns ``y`` or, when ``zi`` is given, ``(y, zf)``; ``sos`` may be a dask
    array of per-channel or time-varying sections ``(n_sections, 6, *S)``.
    See :func:`iirssm.sosfilt`.

    Examples
    --------
    >>> import numpy as np, scipy.signal, dask.array as da
    >>> import iirssm
    >>> sos = scipy.signal.butter(6, 0.1, output="sos")
    >>> x = np.random.default_rng(0).standard_normal(1000)
    >>> y = iirssm.sosfilt(sos, da.from_array(x, chunks=300))
    >>> np.allclose(y.compute(), scipy.signal.sosfilt(sos, x))
    True
    """
    return _scipy_like("sosfilt", x, {"sos": sos}, 2, axis, zi, _sosfilt_block, 1)


# ======================================================================= filtfilt, sosfiltfilt

class _FF:
    """Forward-backward filtering of one block, with scipy's padding and initial states."""

    def __init__(self, kind, axis, edge, padtype, dtype):
        self.kind, self.axis, self.edge, self.padtype, self.dtype = kind, axis, edge, padtype, dtype

    def filt(self, x, zi, c):
        if self.kind == "ba":
            return _lfilter.lfilter(c["b"], c["a"], x, axis=self.axis, zi=zi)
        return _lfilter.sosfilt(c["sos"], x, axis=self.axis, zi=zi)

    def zi_base(self, shape, c):
        ax = self.axis
        if self.kind == "ba":
            z = _lfilter._state_for(_lfilter.lfilter_zi(c["b"], c["a"]), shape, ax)
        else:
            zs = _lfilter.sosfilt_zi(c["sos"])
            z = np.stack([_lfilter._state_for(zs[s], shape, ax) for s in range(zs.shape[0])])
        return z.astype(self.dtype)

    def cast(self, x):
        return np.asarray(x).astype(self.dtype, copy=False)

    def take(self, x, start, stop):
        return np.take(x, np.arange(start, stop), axis=self.axis)


def _ff_init(state, *, ff, head, **c):
    """State after the left padding (the forward filter started at zi * ext[0])."""
    head = ff.cast(head)
    e = ff.edge
    ext = _lfilter._ext(head, e, ff.axis, ff.padtype)
    zb = ff.zi_base(head.shape, c)
    x0 = np.take(ext, [0], axis=ff.axis)
    s = zb * x0
    if e > 0:
        _, s = ff.filt(ff.take(ext, 0, e), s, c)
    return None, s


def _ff_fwd(state, *, ff, x, **c):
    _, s = ff.filt(ff.cast(x), state, c)
    return None, s


def _ff_back(fstate, bstate, *, ff, x, tail=None, **c):
    """Backward pass of one block: forward output recomputed from its starting state."""
    x = ff.cast(x)
    yf, s = ff.filt(x, fstate, c)
    if tail is not None:                       # the last block: turn around at the right end
        tail = ff.cast(tail)
        e = ff.edge
        if e > 0:
            ext = _lfilter._ext(tail, e, ff.axis, ff.padtype)
            right = ff.take(ext, ext.shape[ff.axis] - e, ext.shape[ff.axis])
            yr, _ = ff.filt(right, s, c)
            y0 = np.take(yr, [-1], axis=ff.axis)
        else:
            yr = None
            y0 = np.take(yf, [-1], axis=ff.axis)
        bstate = ff.zi_base(x.shape, c) * y0
        if yr is not None:
            _, bstate = ff.filt(np.flip(yr, axis=ff.axis), bstate, c)
    yb, bstate = ff.filt(np.flip(yf, axis=ff.axis), bstate, c)
    return np.ascontiguousarray(np.flip(yb, axis=ff.axis)), bstate


def _ff_graph(op, kind, x, coefs, lead, axis, padtype, padlen):
    for name, v in list(coefs.items()) + [("x", x)]:
        _no_pandas(v, name, op)
    shape = _shape(x)
    nd = len(shape)
    if nd == 0:
        raise ValueError(f"{op}: x is a scalar: it needs a time axis")
    ax = normalize_axis(axis, nd)
    L = shape[ax]
    # validation and constants exactly as the NumPy front-end computes them (dask
    # coefficients are checked for shape here and for values block by block)
    metas = {n: _meta_full(v) for n, v in coefs.items()}
    dtype = compute_dtype(*[(n, _meta(v)) for n, v in coefs.items()], ("x", _meta(x)),
                          promote_first=True)
    if kind == "ba":
        b_m = _lfilter._coef_array(metas["b"], "b", dtype)
        a_m = _lfilter._coef_array(metas["a"], "a", dtype)
        _lfilter._no_time_variation(b_m, shape, ax, "b", 1)
        _lfilter._no_time_variation(a_m, shape, ax, "a", 1)
        ntaps = max(b_m.shape[0], a_m.shape[0])
    else:
        sos_m = _lfilter._sos_array(metas["sos"], dtype)
        _lfilter._no_time_variation(sos_m, shape, ax, "sos", 2)
        if _is_dask(coefs["sos"]) and padlen is None and padtype is not None:
            raise ValueError(f"{op}: sos is a dask array and padlen is None: scipy's default "
                             "padlen depends on the values of sos; pass sos as a NumPy array "
                             "or give padlen")
        ns = sos_m.shape[0]
        zeros_b = (sos_m[:, 2] == 0).reshape(ns, -1).all(axis=1).sum()
        zeros_a = (sos_m[:, 5] == 0).reshape(ns, -1).all(axis=1).sum()
        ntaps = 2 * ns + 1 - min(int(zeros_b), int(zeros_a))
    if padtype not in ("even", "odd", "constant", None):
        raise ValueError(f"Unknown value '{padtype}' given to padtype. padtype must be 'even', "
                         "'odd', 'constant', or None.")
    edge = 0 if padtype is None else (3 * ntaps if padlen is None else padlen)
    if isinstance(edge, bool) or not isinstance(edge, (int, np.integer)) or edge < 0:
        raise ValueError(f"padlen must be a non-negative integer; got {padlen!r}")
    edge = int(edge)
    if L <= edge:
        raise ValueError("The length of the input vector x must be greater than padlen, "
                         f"which is {edge}.")
    ff = _FF(kind, ax, edge, padtype, dtype)

    cdims = {n: _coef_dims(v, nd, lead, n, op) for n, v in coefs.items()}
    grid = _grid_from(shape, ax, [(x, _right_dims(nd, nd))])

    def add_coefs(plan):
        for n, v in coefs.items():
            plan.add(n, v, cdims[n], fill=1.0)

    sl = [slice(None)] * nd
    sl[ax] = slice(0, edge + 1)
    head = x[tuple(sl)] if _is_dask(x) else np.asarray(x)[tuple(sl)]
    sl[ax] = slice(L - edge - 1, L)
    tail = x[tuple(sl)] if _is_dask(x) else np.asarray(x)[tuple(sl)]
    xdims = _right_dims(nd, nd)

    # forward pass: states only (the outputs are recomputed in the backward pass, so that
    # no chunk of the forward output has to be kept until the backward pass reaches it)
    fwd = _Plan(grid)
    fwd.add("x", x, xdims)
    add_coefs(fwd)
    fwd.consts["ff"] = ff
    ini = _Plan(grid)
    ini.add("head", head, xdims, override={ax: (edge + 1,)})
    add_coefs(ini)
    ini.consts["ff"] = ff
    # the backward pass reads x again: a clone, so the scheduler does not keep the first
    # reading of every chunk in memory until the backward pass needs it
    x2 = clone(x) if _is_dask(x) else x
    bwd = _Plan(grid)
    bwd.add("x", x2, xdims)
    add_coefs(bwd)
    bwd.consts["ff"] = ff
    tl = _Plan(grid)
    tl.add("tail", tail, xdims, override={ax: (edge + 1,)})

    # probe: validates the coefficients per channel and gives the output dtype
    probe_c = {n: fwd.probe.get(n, fwd.consts.get(n)) for n in coefs}
    hp = np.zeros([1 if d == ax else n for d, n in enumerate(shape)], dtype=dtype)
    hp = np.repeat(hp, edge + 1, axis=ax)
    _, s0 = _ff_init(None, ff=ff, head=hp, **probe_c)
    y0, _ = _ff_back(s0, None, ff=ff, x=np.take(hp, [0], axis=ax), tail=hp, **probe_c)

    token = tokenize(op, x.name if _is_dask(x) else x, [i.arr.name for i in fwd.ins],
                     {k: v for k, v in fwd.consts.items() if k != "ff"}, ax, edge, padtype)
    name = f"{op}-{token}"
    sname = f"{op}-fwd-{token}"
    pair = f"{op}-pair-{token}"
    bname = f"{op}-bwd-{token}"
    fnames = tuple(fwd.names)
    cnames = tuple(n for n in fnames if n != "x")

    def keys(plan, idx, names):
        return tuple(i.key(idx) for i, n in zip(plan.ins, plan.names) if n in names)

    dsk = {}
    nt = grid.nt
    init = functools.partial(_apply, _ff_init, tuple(ini.names), ini.consts)
    step = functools.partial(_apply, _ff_fwd, fnames, fwd.consts)
    for cidx in grid.channel_blocks():
        # forward states: f[k] = state before block k
        fk = {}
        k0 = (sname, -1) + cidx
        dsk[k0 + ("p",)] = (init, None) + tuple(i.key(cidx) for i in ini.ins)
        dsk[k0] = (operator.getitem, k0 + ("p",), 1)
        fk[0] = k0
        for k in range(nt - 1):
            idx = grid.at(cidx, k)
            kk = (sname, k) + cidx
            dsk[kk + ("p",)] = (step, fk[k]) + tuple(i.key(idx) for i in fwd.ins)
            dsk[kk] = (operator.getitem, kk + ("p",), 1)
            fk[k + 1] = kk
        bprev = None
        for k in range(nt - 1, -1, -1):
            idx = grid.at(cidx, k)
            xk = (bwd.ins[0].key(idx),)
            if k == nt - 1:
                names = ("x", "tail") + cnames
                fn = functools.partial(_ff_bwd_apply, names, bwd.consts)
                dsk[(pair,) + idx] = (fn, fk[k], None) + xk + (tl.ins[0].key(cidx),) \
                    + keys(bwd, idx, cnames)
            else:
                names = ("x",) + cnames
                fn = functools.partial(_ff_bwd_apply, names, bwd.consts)
                dsk[(pair,) + idx] = (fn, fk[k], bprev) + xk + keys(bwd, idx, cnames)
            dsk[(name,) + idx] = (operator.getitem, (pair,) + idx, 0)
            dsk[(bname,) + idx] = (_second, (name,) + idx, (pair,) + idx)
            bprev = (bname,) + idx
    deps = fwd.deps() + ini.deps() + bwd.deps() + tl.deps()
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    return da.Array(graph, name, chunks=grid.chunks, dtype=y0.dtype,
                    meta=np.empty((0,) * nd, dtype=y0.dtype))


def _ff_bwd_apply(names, consts, fstate, bstate, *blocks):
    kw = dict(consts)
    kw.update(zip(names, blocks))
    return _ff_back(fstate, bstate, **kw)


def _meta_full(v):
    """Coefficients for validation: ones of a dask array's shape (values checked per block)."""
    if _is_dask(v):
        return np.ones(v.shape, dtype=v.dtype)
    return v


def filtfilt(b, a, x, axis=-1, padtype="odd", padlen=None, method="pad", irlen=None):
    """:func:`iirssm.filtfilt` on dask arrays: forward over the chunks, then backward.

    Equals :func:`scipy.signal.filtfilt` (``method="pad"``) to rounding, with
    scipy's padding: the odd/even/constant extension of ``padlen`` samples
    (default ``3 * max(len(a), len(b))``) is built from the first and last
    ``padlen + 1`` samples, the forward filter starts at ``lfilter_zi * ext[0]``
    and runs over the left extension, the chunks and the right extension; the
    backward filter starts at ``lfilter_zi`` times the last forward output and
    runs back over the right extension and the chunks. The forward pass keeps
    only the state at each chunk boundary; the backward pass reads each chunk
    again and recomputes its forward output from that state, so memory stays
    bounded by a few chunks (the forward filter runs twice). ``method="gust"``
    is not supported for dask arrays.

    Examples
    --------
    >>> import numpy as np, scipy.signal, dask.array as da
    >>> import iirssm
    >>> b, a = scipy.signal.butter(3, 0.1)
    >>> x = np.random.default_rng(0).standard_normal((2, 600))
    >>> y = iirssm.filtfilt(b, a, da.from_array(x, chunks=(1, 100)))
    >>> np.allclose(y.compute(), scipy.signal.filtfilt(b, a, x))
    True
    """
    if method not in ("pad", "gust"):
        raise ValueError(f"method must be 'pad' or 'gust'; got {method!r}")
    if method == "gust":
        raise NotImplementedError(
            "filtfilt(method='gust') is not supported for dask arrays (Gustafsson's initial "
            "states depend on the whole signal at once); use method='pad' or compute() first")
    return _ff_graph("filtfilt", "ba", x, {"b": b, "a": a}, 1, axis, padtype, padlen)


def sosfiltfilt(sos, x, axis=-1, padtype="odd", padlen=None):
    """:func:`iirssm.sosfiltfilt` on dask arrays: forward over the chunks, then backward.

    Equals :func:`scipy.signal.sosfiltfilt` to rounding; padding and memory as
    in :func:`filtfilt` (scipy's default ``padlen`` for sections).

    Examples
    --------
    >>> import numpy as np, scipy.signal, dask.array as da
    >>> import iirssm
    >>> sos = scipy.signal.butter(4, 0.1, output="sos")
    >>> x = np.random.default_rng(0).standard_normal(700)
    >>> y = iirssm.sosfiltfilt(sos, da.from_array(x, chunks=200))
    >>> np.allclose(y.compute(), scipy.signal.sosfiltfilt(sos, x))
    True
    """
    return _ff_graph("sosfiltfilt", "sos", x, {"sos": sos}, 2, axis, padtype, padlen)


# ============================================================================ DiagonalSSM

def _ssm_block(state, *, u, ssm, axis, dtype):
    y, zf = ssm.filter(u, axis=axis, zi=state, return_zf=True)
    return _as_dtype(y, dtype), zf


def diagonal_ssm_filter(ssm, u, axis=-1, zi=None, return_zf=False, method="scan", out=None):
    """:meth:`iirssm.DiagonalSSM.filter` on a dask array, chunk by chunk along time.

    The output has ``u``'s chunks; dimensions that the system's bank adds (or
    broadcasts ``u`` along) are one chunk. Each channel block is filtered by its
    slice of the bank (``ssm[...]``). Only ``method="scan"`` carries a state, so
    ``method="fft"`` is refused for dask arrays. See
    :meth:`iirssm.DiagonalSSM.filter`.

    Examples
    --------
    >>> import numpy as np, scipy.signal, dask.array as da
    >>> import iirssm
    >>> ssm = iirssm.DiagonalSSM.from_zpk(*scipy.signal.butter(4, 0.2, output="zpk"))
    >>> x = np.random.default_rng(0).standard_normal((2, 500))
    >>> y, zf = ssm.filter(da.from_array(x, chunks=(1, 128)), return_zf=True)
    >>> np.allclose(y.compute(), ssm.filter(x)), zf.shape
    (True, (2, 4))
    """
    op = "DiagonalSSM.filter"
    _no_out(out, op)
    _no_pandas(u, "u", op)
    _no_pandas(zi, "zi", op)
    if method not in ("scan", "fft"):
        raise ValueError(f"method must be 'scan' or 'fft'; got {method!r}")
    if method == "fft":
        raise ValueError("method='fft' is not supported for dask arrays (it convolves the "
                         "whole signal at once and carries no state); use method='scan'")
    ushape = _shape(u)
    ax, L, nontime, nd, oax, oshape = ssm._filter_shape(ushape, axis)
    bank = ssm.bank_shape
    if nd > len(ushape):          # the bank adds leading dimensions: u gets them with length 1
        lead = (None,) * (nd - len(ushape))
        u = u[lead] if _is_dask(u) else np.asarray(u)[lead]
    udims = tuple(range(nd))
    grid = _grid_from(oshape, oax, [(u, udims)])
    # which output dimension each bank dimension is (aligned from the right, time removed)
    out_dims = [d for d in range(nd) if d != oax]
    bdims = out_dims[len(out_dims) - len(bank):]
    table = {}
    for cidx in grid.channel_blocks():
        if not bank:
            table[cidx] = ssm
            continue
        idx = []
        for j, d in enumerate(bdims):
            if bank[j] == 1 or grid.numblocks[d] == 1:
                idx.append(slice(None))
            else:
                start = sum(grid.chunks[d][:cidx[d]])
                idx.append(slice(start, start + grid.chunks[d][cidx[d]]))
        table[cidx] = ssm[tuple(idx)] if any(s != slice(None) for s in idx) else ssm
    plan = _Plan(grid)
    plan.add("u", u, udims)
    if zi is not None:
        if _ndim(zi) > nd:
            raise ValueError(f"zi must have the output's shape {oshape} with axis {oax} of "
                             f"length n_states={ssm.n_states}; got {_shape(zi)}")
        plan.add_init("zi", zi, _right_dims(_ndim(zi), nd))
    # dtype of the whole bank (a sub-bank may be real where the whole is complex)
    probe_u = plan.probe["u"]
    pz = None
    if zi is not None:
        pz = plan.init_probe.get("zi", plan.init_consts.get("zi"))
    y0, zf0 = ssm.filter(probe_u, axis=oax, zi=pz, return_zf=True)
    plan.consts.update(axis=oax, dtype=y0.dtype)
    token = tokenize(op, id(ssm), ssm.poles, ssm.B, ssm.C, ssm.D, ssm.k,
                     [i.arr.name for i in plan.ins + plan.init_ins], oax)
    fns = {cidx: functools.partial(_ssm_block, ssm=sub) for cidx, sub in table.items()}
    y, last = _chain("ssm-filter", plan, fns, _zi_init, False, y0.dtype, token)
    if not return_zf:
        return y
    return y, _state_array("ssm-filter", token, grid, last, y, zf0,
                           functools.partial(_astype, dtype=zf0.dtype))


def _astype(z, dtype):
    return np.asarray(z).astype(dtype, copy=False)


# ========================================================================== selective scan

def _sel_block(state, *, u, delta, A, B, C, D=None, z=None, delta_bias=None, **kw):
    from ._selective import selective_scan as ss
    return ss(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, return_last_state=True,
              initial_state=state, **kw)


def _sel_state_block(state, **kw):
    _, h = _sel_block(state, **kw)
    return None, h


def _sel_grad_block(fstate, lam, *, dout, u, delta, A, B, C, D=None, z=None,
                    delta_bias=None, **kw):
    from ._selective import selective_scan_grad as ssg
    g = ssg(dout, u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, dlast_state=lam,
            initial_state=fstate, **kw)
    return g, g.dinitial_state


def _sel_grad_apply(names, consts, fstate, lam, *blocks):
    kw = dict(consts)
    kw.update(zip(names, blocks))
    return _sel_grad_block(fstate, lam, **kw)


def _sel_plan(op, u, delta, A, B, C, D, z, delta_bias, initial_state, extra=()):
    """Grid and aligned inputs of a selective scan (u's chunks; groups of B/C kept whole)."""
    for name, v in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D),
                    ("z", z), ("delta_bias", delta_bias), ("initial_state", initial_state)) \
            + tuple(extra):
        _no_pandas(v, name, op)
    ushape = _shape(u)
    if len(ushape) not in (2, 3):
        raise ValueError(f"u must have shape (batch, dim, L) or (dim, L); got {ushape}")
    nd = len(ushape)
    batched = nd == 3
    cd, t = nd - 2, nd - 1
    L = ushape[t]
    if L == 0:
        raise ValueError(f"u has no samples (shape {ushape}): the time axis (last) is empty")
    for name, v in (("delta", delta), ("z", z)) + tuple(e for e in extra if e[0] == "dout"):
        if v is not None and _shape(v) != ushape:
            raise ValueError(f"{name} must have shape {ushape} like u; got {_shape(v)}")
    dim = ushape[cd]
    lead = (0,) if batched else ()

    N = _shape(A)[-1] if _ndim(A) == 2 else None

    def bc_dims(v):
        """Dimensions of B or C, as ``_selective._bc_layout`` classifies them."""
        s = _shape(v)
        if len(s) == 2 and s == (dim, N):            # time-invariant (dim, N)
            return (cd, None), None
        if len(s) == len(lead) + 2:                 # shared (batch, N, L)
            return lead + (None, t), None
        if len(s) == len(lead) + 3:                 # grouped (batch, G, N, L)
            G = s[len(lead)]
            if G >= 1 and dim % G == 0:
                return lead + (cd if G > 1 else None, None, t), dim // G
        return (None,) * len(s), None               # invalid: the NumPy checks will say why

    dims_B, gsB = bc_dims(B)
    dims_C, gsC = bc_dims(C)
    grid = _grid_from(ushape, t, [(u, tuple(range(nd))), (delta, tuple(range(nd)))])
    gs = int(np.lcm.reduce([g for g in (gsB, gsC) if g] or [1]))
    chunks = list(grid.chunks)
    if gs > 1 and len(chunks[cd]) > 1:
        bounds = np.cumsum(chunks[cd])
        if np.any(bounds % gs):
            # channel chunks must hold whole groups of B/C: round the boundaries up
            nb = sorted({int(-(-b // gs) * gs) for b in bounds})
            chunks[cd] = tuple(np.diff([0] + nb).tolist())
            grid = _Grid(ushape, chunks, t)
    plan = _Plan(grid)
    alld = tuple(range(nd))

    def group_override(v, dims, g):
        if g is None or dims[len(lead)] is None:
            return None
        return {len(lead): tuple(c // g for c in grid.chunks[cd])}

    return plan, alld, cd, (dims_B, group_override(B, dims_B, gsB)), \
        (dims_C, group_override(C, dims_C, gsC)), batched


def _sel_add(plan, names, values, alld, cd, bspec, cspec):
    u, delta, A, B, C, D, z, delta_bias = values
    for n, v, dims, fill, ov in (("u", u, alld, 0.0, None), ("delta", delta, alld, 1.0, None),
                                 ("A", A, (cd, None), -1.0, None),
                                 ("B", B, bspec[0], 1.0, bspec[1]),
                                 ("C", C, cspec[0], 1.0, cspec[1]),
                                 ("D", D, (cd,), 0.0, None), ("z", z, alld, 0.0, None),
                                 ("delta_bias", delta_bias, (cd,), 0.0, None)):
        if n not in names:
            continue
        if v is not None and _ndim(v) != len(dims):
            dims = (None,) * _ndim(v)              # wrong shape: the NumPy checks will say why
        plan.add(n, v, dims, fill=fill, override=ov)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, initial_state=None, discretization="mamba"):
    """:func:`iirssm.selective_scan` on dask arrays, chunk by chunk along time.

    ``u``, ``delta`` and ``z`` ``(batch, dim, L)`` may be chunked along batch,
    channels and time; per-sample ``B``/``C`` (shared ``(batch, N, L)`` or
    grouped ``(batch, G, N, L)``) are rechunked like them (channel chunks are
    widened to whole groups of grouped B/C where needed); ``A``, ``D`` and
    ``delta_bias`` are sliced per channel block. The ``(batch, dim, N)`` state
    is carried between time chunks. See :func:`iirssm.selective_scan`.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import iirssm
    >>> rng = np.random.default_rng(0)
    >>> u, delta = rng.standard_normal((2, 2, 4, 64))
    >>> A = -np.tile(np.arange(1.0, 4.0), (4, 1))
    >>> B, C = rng.standard_normal((2, 2, 3, 64))
    >>> ud, dd, Bd, Cd = (da.from_array(v, chunks=(1,) + v.shape[1:-1] + (16,))
    ...                   for v in (u, delta, B, C))
    >>> y, h = iirssm.selective_scan(ud, dd, A, Bd, Cd, delta_softplus=True,
    ...                              return_last_state=True)
    >>> y0, h0 = iirssm.selective_scan(u, delta, A, B, C, delta_softplus=True,
    ...                                return_last_state=True)
    >>> np.allclose(y.compute(), y0), np.allclose(h.compute(), h0)
    (True, True)
    """
    op = "selective_scan"
    plan, alld, cd, bspec, cspec, batched = _sel_plan(op, u, delta, A, B, C, D, z, delta_bias,
                                                      initial_state)
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    _sel_add(plan, names, (u, delta, A, B, C, D, z, delta_bias), alld, cd, bspec, cspec)
    plan.consts.update(delta_softplus=delta_softplus, discretization=discretization)
    if initial_state is not None:
        dims = alld if _ndim(initial_state) == len(alld) else (None,) * _ndim(initial_state)
        plan.add_init("zi", initial_state, dims)
    y0, h0 = _run_probe(plan, _sel_block, _zi_init)
    token = tokenize(op, [i.arr.name for i in plan.ins + plan.init_ins], plan.consts)
    y, last = _chain("selective-scan", plan, _sel_block, _zi_init, False, y0.dtype, token)
    if not return_last_state:
        return y
    return y, _state_array("selective-scan", token, plan.grid, last, y, h0)


_GRAD_FIELDS = _selective.SelectiveScanGrad._fields


def _sum_parts(parts):
    return functools.reduce(np.add, parts)


def selective_scan_grad(dout, u, delta, A, B, C, D=None, z=None, delta_bias=None,
                        delta_softplus=False, dlast_state=None, *, initial_state=None,
                        discretization="mamba"):
    """:func:`iirssm.selective_scan_grad` on dask arrays: the adjoint carried backwards.

    A forward pass over the time chunks keeps only the state at each chunk
    boundary; a backward pass then runs the chunks from last to first, each
    with the gradient of its final state (the previous task's gradient of its
    initial state) and its starting state, reading its inputs again (so memory
    stays bounded by a few chunks). Time-local gradients (``du``, ``ddelta``,
    ``dz``, per-sample ``dB``/``dC``) come out with the inputs' chunks; the
    gradients of shared parameters (``dA``, ``dD``, ``ddelta_bias``,
    time-invariant ``dB``/``dC``) are sums over the blocks, so they equal the
    NumPy result to rounding (not bit for bit). See
    :func:`iirssm.selective_scan_grad`.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import iirssm
    >>> rng = np.random.default_rng(1)
    >>> u, delta, dout = rng.standard_normal((3, 3, 40))
    >>> A = -rng.uniform(0.5, 2, (3, 2))
    >>> B, C = rng.standard_normal((2, 2, 40))
    >>> ch = lambda v: da.from_array(v, chunks=(v.shape[0], 16))
    >>> g = iirssm.selective_scan_grad(ch(dout), ch(u), ch(delta), A, ch(B), ch(C))
    >>> g0 = iirssm.selective_scan_grad(dout, u, delta, A, B, C)
    >>> np.allclose(g.dA.compute(), g0.dA), np.allclose(g.du.compute(), g0.du)
    (True, True)
    """
    op = "selective_scan_grad"
    plan, alld, cd, bspec, cspec, batched = _sel_plan(
        op, u, delta, A, B, C, D, z, delta_bias, initial_state,
        extra=(("dout", dout), ("dlast_state", dlast_state)))
    grid = plan.grid
    kw = dict(delta_softplus=delta_softplus, discretization=discretization)
    # forward pass: the states at the chunk boundaries only
    fwd = plan
    _sel_add(fwd, ("u", "delta", "A", "B", "C", "delta_bias"),
             (u, delta, A, B, C, None, None, delta_bias), alld, cd, bspec, cspec)
    fwd.consts.update(kw)
    if initial_state is not None:
        dims = alld if _ndim(initial_state) == len(alld) else (None,) * _ndim(initial_state)
        fwd.add_init("zi", initial_state, dims)
    # backward pass: a second reading of every per-sample input (a clone of its graph)
    lazy = [v for v in (dout, u, delta, B, C, z) if _is_dask(v)]
    copies = dict(zip(map(id, lazy), clone(*lazy))) if lazy else {}

    def again(v):
        return copies.get(id(v), v)

    bwd = _Plan(grid)
    bwd.add("dout", again(dout), alld)
    _sel_add(bwd, ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"),
             (again(u), again(delta), A, again(B), again(C), D, again(z), delta_bias),
             alld, cd, bspec, cspec)
    bwd.consts.update(kw)
    lam = _Plan(grid)
    if dlast_state is not None:
        dims = alld if _ndim(dlast_state) == len(alld) else (None,) * _ndim(dlast_state)
        lam.add_init("dl", dlast_state, dims)
    # probe: one sample through the NumPy gradient gives every output's dtype and shape
    h0 = None
    if fwd.has_init:
        h0 = fwd.init_probe.get("zi", fwd.init_consts.get("zi"))
    pk = dict(bwd.consts)
    pk.update(bwd.probe)
    gp, _ = _sel_grad_block(h0, lam.init_probe.get("dl", lam.init_consts.get("dl")), **pk)

    token = tokenize(op, [i.arr.name for i in fwd.ins + fwd.init_ins + bwd.ins + lam.init_ins],
                     {k: v for k, v in bwd.consts.items()})
    sname = f"selective-scan-grad-fwd-{token}"
    pair = f"selective-scan-grad-pair-{token}"
    lname = f"selective-scan-grad-adjoint-{token}"
    gname = f"selective-scan-grad-blocks-{token}"
    step = functools.partial(_apply, _sel_state_block, tuple(fwd.names), fwd.consts)
    init = functools.partial(_apply_init, _zi_init, tuple(fwd.init_names), fwd.init_consts)
    back = functools.partial(_sel_grad_apply, tuple(bwd.names), bwd.consts)
    dsk = {}
    first = {}
    for cidx in grid.channel_blocks():
        fk = {0: None}
        if fwd.has_init:
            fk[0] = (sname, "init") + cidx
            dsk[fk[0]] = (init,) + tuple(i.key(cidx) for i in fwd.init_ins)
        for k in range(grid.nt - 1):
            idx = grid.at(cidx, k)
            kk = (sname,) + idx
            dsk[kk + ("p",)] = (step, fk[k]) + tuple(i.key(idx) for i in fwd.ins)
            dsk[kk] = (operator.getitem, kk + ("p",), 1)
            fk[k + 1] = kk
        prev = None
        if lam.init_ins:
            prev = lam.init_ins[0].key(cidx)
        elif lam.init_consts:
            prev = (lname, "init") + cidx
            dsk[prev] = (_identity, lam.init_consts["dl"])
        for k in range(grid.nt - 1, -1, -1):
            idx = grid.at(cidx, k)
            dsk[(pair,) + idx] = (back, fk[k], prev) + tuple(i.key(idx) for i in bwd.ins)
            dsk[(gname,) + idx] = (operator.getitem, (pair,) + idx, 0)
            dsk[(lname,) + idx] = (_second, (gname,) + idx, (pair,) + idx)
            prev = (lname,) + idx
        first[cidx] = (gname,) + grid.at(cidx, 0)
    deps = fwd.deps() + bwd.deps() + lam.deps()
    graph = HighLevelGraph.from_collections(gname, dsk, dependencies=deps)
    blocks = da.Array(graph, gname, chunks=grid.chunks, dtype=float)  # container, never computed

    def field_array(field, like):
        """Gradient ``field`` assembled (or summed) onto the blocks of input ``like``."""
        i = _GRAD_FIELDS.index(field)
        probe = getattr(gp, field)
        if probe is None:
            return None
        name = f"selective-scan-grad-{field}-{token}"
        parts = {}
        for cidx in grid.channel_blocks():
            for k in range(grid.nt):
                idx = grid.at(cidx, k)
                target = like.key(idx)[1:] if like is not None else ()
                parts.setdefault(target, []).append((gname,) + idx)
        dsk2 = {}
        for target, keys in parts.items():
            if len(keys) == 1:
                dsk2[(name,) + target] = (_field, keys[0], i)
            else:
                dsk2[(name,) + target] = (_sum_parts, [(_field, k_, i) for k_ in keys])
        chunks = like.arr.chunks if like is not None else ()
        g = HighLevelGraph.from_collections(name, dsk2, dependencies=[blocks])
        return da.Array(g, name, chunks=chunks, dtype=probe.dtype,
                        meta=np.empty((0,) * len(chunks), dtype=probe.dtype))

    ins = dict(zip(bwd.names, bwd.ins))
    out = {}
    for field, arg in (("du", "u"), ("ddelta", "delta"), ("dz", "z")):
        out[field] = field_array(field, ins[arg]) if arg in ins else None
    for field, arg in (("dA", "A"), ("dB", "B"), ("dC", "C"), ("dD", "D"),
                       ("ddelta_bias", "delta_bias")):
        out[field] = field_array(field, ins.get(arg))
    if initial_state is None:
        out["dinitial_state"] = None
    else:
        dinit = {cidx: key for cidx, key in first.items()}
        out["dinitial_state"] = _state_array(
            "selective-scan-grad-dinit", token, grid, dinit, blocks, gp.dinitial_state,
            functools.partial(_field, i=_GRAD_FIELDS.index("dinitial_state")))
    return _selective.SelectiveScanGrad(**out)


def _field(g, i):
    return g[i]
