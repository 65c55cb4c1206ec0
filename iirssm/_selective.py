r"""Selective filters: Mamba's token-wise Δ/B/C as time-varying IIR coefficients.

A selective scan (Mamba's S6 layer) is a bank of first-order IIR filters, one
per (batch, channel, state), whose pole and input gain change every sample:

.. math::

    \Delta_t = \operatorname{softplus}(\delta_t + b), \quad
    h_t = \bar A_t\, h_{t-1} + \bar B_t\, u_t, \quad
    y_t = \sum_n C_{t,n} h_{t,n} + D u_t, \quad
    \mathrm{out}_t = y_t \cdot \operatorname{silu}(z_t)

with :math:`\bar A_t = e^{\Delta_t A}` and :math:`\bar B_t = \Delta_t B_t`
(mamba-ssm's rule). :func:`selective_scan` follows mamba-ssm's
``selective_scan_fn`` (names, shapes, defaults, results), adds an initial state
and other discretisations, and runs as one fused Numba kernel that never forms
the ``(batch, dim, N, L)`` tensors. :func:`selective_scan_grad` is its
vector-Jacobian product. The coefficient view (:func:`selective_coefficients`,
:func:`halflife`, :func:`frozen_freqz`) shows the filter bank a set of inputs
selects.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._backend import foreign
from ._cpu import selective as _k
from ._validation import as_float_array, compute_dtype, real_dtype

__all__ = [
    "selective_scan",
    "selective_scan_grad",
    "selective_scan_vjp",
    "SelectiveScanGrad",
    "complex_from_interleaved",
    "interleaved_from_complex",
    "selective_coefficients",
    "SelectiveCoefficients",
    "halflife",
    "frozen_freqz",
    "SelectiveSSM",
    "ssd_scan",
]

DISCRETIZATIONS = _k.DISCRETIZATIONS

#: number of accumulation slots for the gradients of time-varying B/C: a fixed
#: number (not the thread count), so the summation order, hence the result, is
#: the same however many threads run.
_NSLOT = 16


# ------------------------------------------------------------------ argument handling

class _Prepared(NamedTuple):
    batched: bool
    Bt: int
    dim: int
    L: int
    N: int
    rdt: np.dtype           # real compute dtype (output)
    cdt: np.dtype           # state dtype (complex when A, B, C or the state are)
    u: np.ndarray           # (Bt, dim, L) rdt
    delta: np.ndarray
    z: np.ndarray           # (Bt, dim, L) or a (1, 1, 1) dummy
    has_z: bool
    bias: np.ndarray        # (dim,) rdt
    sp: bool
    disc: int
    A: np.ndarray           # (dim, N) cdt
    Bw: np.ndarray          # (1, dim, 1, N) time-invariant, else (Bt, G, L, N); cdt
    btv: bool
    gsB: int
    B_layout: tuple         # ("invariant"|"shared"|"grouped", user shape, user dtype kind)
    Cw: np.ndarray
    ctv: bool
    gsC: int
    C_layout: tuple
    Dv: np.ndarray          # (dim,) rdt
    h0: np.ndarray          # (Bt, dim, N) cdt
    tiles: np.ndarray       # (ntiles, 2) int64
    A_complex: bool


def _shape_error(name, expected, actual):
    return ValueError(f"{name} must have shape {expected}; got {tuple(actual)}")


def _real(value, name, dtype):
    arr = as_float_array(value, name)
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real; got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def _bc_layout(arr, name, batched, Bt, dim, N, L):
    """Classify B or C: time-invariant (dim, N), shared (batch, N, L), grouped (batch, G, N, L)."""
    shp = arr.shape
    lead = (Bt,) if batched else ()
    bshape = "(batch, " if batched else "("
    if arr.ndim == 2 and shp == (dim, N):
        return "invariant", 1
    if arr.ndim == 2 + len(lead) and shp == lead + (N, L):
        return "shared", 1
    if arr.ndim == 3 + len(lead) and shp[len(lead) + 1:] == (N, L) and shp[:len(lead)] == lead:
        G = shp[len(lead)]
        if G < 1 or dim % G:
            raise ValueError(
                f"{name} has {G} groups (shape {shp}), which does not divide dim={dim}: "
                f"channel d uses group d // (dim // G), so G must divide dim")
        return "grouped", G
    raise ValueError(
        f"{name} must have shape (dim, N)=({dim}, {N}) (time-invariant), "
        f"{bshape}N, L)={lead + (N, L)} (shared) or {bshape}G, N, L) with G dividing dim "
        f"(grouped); got {shp}. For mamba-ssm's interleaved complex layout (a real "
        f"length-2L last axis) use complex_from_interleaved({name}) first")


def _bc_work(arr, layout, G, cdt, batched, dim):
    """The kernels' (batch, G, L, N) form (one transposing copy; time-invariant: (1, dim, 1, N))."""
    if layout == "invariant":
        return np.ascontiguousarray(arr.astype(cdt, copy=False)[None, :, None, :]), False, 1
    if not batched:
        arr = arr[None]
    if layout == "shared":
        arr = arr[:, None]
    # (Bt, G, N, L) -> (Bt, G, L, N): time-major so a sample's N values are contiguous.
    w = np.ascontiguousarray(np.swapaxes(arr, -1, -2), dtype=cdt)
    return w, True, dim // G


def _tiles(dim, gsB, btv, gsC, ctv):
    seg = math.gcd(gsB if btv else dim, gsC if ctv else dim)
    rows = [(s + j, min(_k.W, seg - j)) for s in range(0, dim, seg) for j in range(0, seg, _k.W)]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def _real_work_dtype(u, delta, A, B, C, D, z, delta_bias, initial_state, discretization,
                     extra=()):
    """Check ``discretization`` and settle the real dtype of the computation.

    Shared by every backend's argument handling (the CUDA plan too).
    """
    if discretization not in DISCRETIZATIONS:
        raise ValueError(f"discretization must be one of {DISCRETIZATIONS}; "
                         f"got {discretization!r}")
    named = [("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
             ("delta_bias", delta_bias), ("initial_state", initial_state)] + list(extra)
    dtype = compute_dtype(*named, real_only=("u", "delta", "D", "z", "delta_bias"))
    return np.dtype(real_dtype(dtype))


def _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
             discretization, extra=()):
    rdt = _real_work_dtype(u, delta, A, B, C, D, z, delta_bias, initial_state, discretization,
                           extra)
    u_arr = _real(u, "u", rdt)
    if u_arr.ndim not in (2, 3):
        raise ValueError(f"u must have shape (batch, dim, L) or (dim, L); got {u_arr.shape}")
    batched = u_arr.ndim == 3
    if not batched:
        u_arr = u_arr[None]
    Bt, dim, L = u_arr.shape
    ushape = u_arr.shape if batched else u_arr.shape[1:]
    uname = "(batch, dim, L)" if batched else "(dim, L)"
    if L == 0:
        raise ValueError(f"u has no samples (shape {ushape}): the time axis (last) is empty")
    d_arr = _real(delta, "delta", rdt)
    if d_arr.shape != ushape:
        raise _shape_error("delta", f"{uname}={ushape} like u", d_arr.shape)
    if not batched:
        d_arr = d_arr[None]
    if not np.isfinite(d_arr).all():
        bad = d_arr[~np.isfinite(d_arr)].flat[0]
        raise ValueError(f"delta must be finite (it is a time step); got {bad!r}")
    A_arr = as_float_array(A, "A")
    if A_arr.ndim != 2 or A_arr.shape[0] != dim:
        raise _shape_error("A", f"(dim, N) with dim={dim}", A_arr.shape)
    N = A_arr.shape[1]
    if N == 0:
        raise ValueError("A must have at least one state (shape (dim, N) with N >= 1)")
    B_arr = as_float_array(B, "B")
    C_arr = as_float_array(C, "C")
    h0_arr = None if initial_state is None else as_float_array(initial_state, "initial_state")
    A_complex = A_arr.dtype.kind == "c"
    is_complex = A_complex or B_arr.dtype.kind == "c" or C_arr.dtype.kind == "c" or (
        h0_arr is not None and h0_arr.dtype.kind == "c")
    cdt = np.result_type(rdt, np.complex64) if is_complex else rdt
    lB, GB = _bc_layout(B_arr, "B", batched, Bt, dim, N, L)
    lC, GC = _bc_layout(C_arr, "C", batched, Bt, dim, N, L)
    Bw, btv, gsB = _bc_work(B_arr, lB, GB, cdt, batched, dim)
    Cw, ctv, gsC = _bc_work(C_arr, lC, GC, cdt, batched, dim)
    if z is not None:
        z_arr = _real(z, "z", rdt)
        if z_arr.shape != ushape:
            raise _shape_error("z", f"{uname}={ushape} like u", z_arr.shape)
        z_arr = np.ascontiguousarray(z_arr if batched else z_arr[None])
    else:
        z_arr = np.zeros((1, 1, 1), dtype=rdt)
    Dv = _per_channel(D, "D", dim, rdt, 0.0)
    bias = _per_channel(delta_bias, "delta_bias", dim, rdt, 0.0)
    if not np.isfinite(bias).all():
        raise ValueError("delta_bias must be finite")
    if h0_arr is None:
        h0 = np.zeros((Bt, dim, N), dtype=cdt)
    else:
        expect = (Bt, dim, N) if batched else (dim, N)
        if h0_arr.shape != expect:
            raise _shape_error("initial_state", f"{'(batch, dim, N)' if batched else '(dim, N)'}"
                               f"={expect}", h0_arr.shape)
        h0 = np.ascontiguousarray((h0_arr if batched else h0_arr[None]), dtype=cdt)
    return _Prepared(
        batched=batched, Bt=Bt, dim=dim, L=L, N=N, rdt=np.dtype(rdt), cdt=np.dtype(cdt),
        u=np.ascontiguousarray(u_arr), delta=np.ascontiguousarray(d_arr), z=z_arr,
        has_z=z is not None, bias=bias, sp=bool(delta_softplus),
        disc=DISCRETIZATIONS.index(discretization),
        A=np.ascontiguousarray(A_arr, dtype=cdt), Bw=Bw, btv=btv, gsB=gsB,
        B_layout=(lB, B_arr.shape, B_arr.dtype.kind), Cw=Cw, ctv=ctv, gsC=gsC,
        C_layout=(lC, C_arr.shape, C_arr.dtype.kind), Dv=Dv, h0=h0,
        tiles=_tiles(dim, gsB, btv, gsC, ctv), A_complex=A_complex)


def _per_channel(value, name, dim, rdt, default):
    if value is None:
        return np.full(dim, default, dtype=rdt)
    arr = _real(value, name, rdt)
    if arr.ndim == 0:
        return np.full(dim, arr, dtype=rdt)
    if arr.shape != (dim,):
        raise _shape_error(name, f"(dim,)=({dim},)", arr.shape)
    return np.ascontiguousarray(arr)


def _work_size(p):
    return p.Bt * p.dim * p.L * p.N


# ----------------------------------------------------------------------------- forward

def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, initial_state=None, discretization="mamba"):
    r"""Mamba's selective scan: a bank of IIR filters with per-sample poles and gains.

    Computes, for every batch entry ``b``, channel ``d`` and state ``n``::

        dt[t]   = delta[t] + delta_bias            then softplus if delta_softplus
        h[t, n] = exp(dt[t]·A[d, n]) · h[t-1, n] + dt[t] · B[n, t] · u[t]
        y[t]    = Σ_n C[n, t] · h[t, n]            (2·Re(...) for complex states)
        out[t]  = (y[t] + D[d]·u[t]) · silu(z[t])

    with mamba-ssm's argument names, shapes, defaults and results
    (``selective_scan_fn`` / ``selective_scan_ref``), plus an initial state and a
    choice of discretisation. One fused kernel, parallel over (batch, channels);
    nothing of size ``(batch, dim, N, L)`` is formed.

    Parameters
    ----------
    u : array_like, shape (batch, dim, L) or (dim, L)
        Input. Real.
    delta : array_like, same shape as u
        Time steps Δ (before ``delta_bias`` and softplus). Real and finite.
    A : array_like, shape (dim, N)
        Continuous-time poles; real (negative for a decaying filter) or complex.
    B, C : array_like
        Input and read-out matrices: time-invariant ``(dim, N)``; shared by all
        channels ``(batch, N, L)``; or grouped ``(batch, G, N, L)``, channel ``d``
        using group ``d // (dim // G)`` (G must divide dim). For an unbatched ``u``
        drop the batch axis (``(N, L)``, ``(G, N, L)``; a 2-D array of shape
        ``(dim, N)`` is time-invariant). Real or complex: complex B/C are natural
        complex arrays; convert mamba-ssm's interleaved real layout with
        :func:`complex_from_interleaved`.
    D : array_like, shape (dim,), optional
        Skip connection ``D·u``.
    z : array_like, same shape as u, optional
        Gate: the output is multiplied by ``silu(z) = z·sigmoid(z)``.
    delta_bias : array_like, shape (dim,), optional
        Added to ``delta`` before the softplus.
    delta_softplus : bool, optional
        Apply ``softplus(x) = log(1 + exp(x))`` to the time steps; like mamba-ssm
        (and PyTorch) it is the identity above 20.
    return_last_state : bool, optional
        Also return the state after the last sample, ``(batch, dim, N)``.
    initial_state : array_like, shape (batch, dim, N), optional
        State before the first sample (default zeros; mamba-ssm has none). Feeding
        a chunk's ``last_state`` to the next chunk reproduces the whole sequence.
    discretization : {"mamba", "zoh", "euler", "bilinear"}, optional
        How ``(Δ, A, B)`` become the per-sample pole ``Ā`` and gain ``B̄``:
        ``mamba`` (default, what mamba-ssm computes): ``Ā = exp(ΔA)``, ``B̄ = Δ·B``;
        ``zoh`` (exact for a piecewise-constant input): ``Ā = exp(ΔA)``,
        ``B̄ = (exp(ΔA) - 1)/A · B`` (``Δ·B`` in the limit ``A → 0``);
        ``euler``: ``Ā = 1 + ΔA``, ``B̄ = Δ·B``;
        ``bilinear``: ``Ā = (1 + ΔA/2)/(1 - ΔA/2)``, ``B̄ = Δ/(1 - ΔA/2) · B``.

    Returns
    -------
    out : ndarray, shape like u
        Real, float32 if every input is float32, else float64 (integers compute
        in float64). Unlike mamba-ssm (which computes in float32 and casts back),
        float64 inputs are computed in float64.
    last_state : ndarray, shape (batch, dim, N)
        Only with ``return_last_state``; complex when A, B, C or the initial
        state are complex.

    Notes
    -----
    **Complex states.** With complex A (or B, C), mamba-ssm treats the states as
    halves of conjugate pairs and returns ``2·Re(Σ_n C·h)``; ``D·u`` is added
    *after* the doubling. This function does the same, so a complex ``(dim, N)``
    A describes a real filter of order ``2N``.

    **Accuracy.** The decay is applied as ``h + (Ā - 1)·h`` with ``Ā - 1``
    computed as ``expm1`` to full relative precision, so float32 runs stay close
    to float64 ones even when ``Ā`` is within 1e-6 of 1 (a float32 ``Ā`` alone
    would carry a 6 % error in ``1 - Ā``). Over 10^5 samples the float32 result
    is within about 1e-6 of a float64 run, relative to its largest value.

    **Speed.** Channels are advanced 16 at a time in SIMD lanes, with a
    vectorised ``exp`` evaluated once per (channel, state, sample); complex
    states use ``cos``/``sin`` from libm and are several times slower.

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm._selective import selective_scan
    >>> rng = np.random.default_rng(0)
    >>> batch, dim, N, L = 2, 4, 3, 10
    >>> u = rng.standard_normal((batch, dim, L))
    >>> delta = rng.uniform(-3, 0, (batch, dim, L))
    >>> A = -np.tile(np.arange(1.0, N + 1), (dim, 1))        # S4D-real
    >>> B = rng.standard_normal((batch, N, L))
    >>> C = rng.standard_normal((batch, N, L))
    >>> out, last = selective_scan(u, delta, A, B, C, D=np.ones(dim),
    ...                            delta_softplus=True, return_last_state=True)
    >>> out.shape, last.shape
    ((2, 4, 10), (2, 4, 3))

    Two chunks carrying the state reproduce the whole:

    >>> y1, h = selective_scan(u[..., :6], delta[..., :6], A, B[..., :6], C[..., :6],
    ...                        delta_softplus=True, return_last_state=True)
    >>> y2 = selective_scan(u[..., 6:], delta[..., 6:], A, B[..., 6:], C[..., 6:],
    ...                     delta_softplus=True, initial_state=h)
    >>> whole = selective_scan(u, delta, A, B, C, delta_softplus=True)
    >>> np.allclose(np.concatenate([y1, y2], axis=-1), whole)
    True

    A one-channel, one-state scan with ``Δ = 1`` and ``A = log(0.5)`` is the
    recurrence ``h[t] = 0.5·h[t-1] + u[t]``:

    >>> selective_scan(np.array([[1.0, 0, 0, 2]]), np.ones((1, 4)), [[np.log(0.5)]],
    ...                [[1.0]], [[1.0]])
    array([[1.   , 0.5  , 0.25 , 2.125]])
    """
    impl = foreign(None, "selective_scan", u, delta, A, B, C, D, z, delta_bias, initial_state)
    if impl is not None:
        return impl(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
                    return_last_state=return_last_state, initial_state=initial_state,
                    discretization=discretization)
    p = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                 discretization)
    out, hlast, _ = _forward_run(p, keep=False)
    if not p.batched:
        out, hlast = out[0], hlast[0]
    return (out, hlast) if return_last_state else out


def _forward_run(p, keep):
    """Run the forward kernel; ``keep``: also return the backward's checkpoints."""
    out = np.empty((p.Bt, p.dim, p.L), dtype=p.rdt)
    hlast = np.empty((p.Bt, p.dim, p.N), dtype=p.cdt)
    nblk = -(-p.L // _k.TB_BWD) if keep else -1
    ck = np.empty((p.Bt, p.tiles.shape[0], nblk + 1, p.N, _k.W), dtype=p.cdt)
    fn = _k.scan_fwd.pick(_work_size(p))
    fn(p.u, p.delta, p.bias, p.sp, p.disc, p.A, p.Bw, p.btv, p.gsB, p.Cw, p.ctv, p.gsC,
       p.Dv, p.z, p.has_z, p.h0, p.tiles, out, hlast, ck)
    return out, hlast, ck


# ---------------------------------------------------------------------------- gradient

class SelectiveScanGrad(NamedTuple):
    """Gradients of :func:`selective_scan`, one per argument (None where it was None).

    For complex arguments the gradient is ``∂L/∂Re + i·∂L/∂Im`` (PyTorch's
    convention); a real argument gets a real gradient even when the states are
    complex.
    """

    du: np.ndarray
    ddelta: np.ndarray
    dA: np.ndarray
    dB: np.ndarray
    dC: np.ndarray
    dD: np.ndarray | None
    dz: np.ndarray | None
    ddelta_bias: np.ndarray | None
    dinitial_state: np.ndarray | None


def _grad_bc(layout, part_l, slots, batched):
    kind_layout, _, kind = layout
    if kind_layout == "invariant":
        g = part_l.sum(axis=0)
    else:
        g = slots.sum(axis=1)                       # (Bt, G, L, N), fixed summation order
        g = np.swapaxes(g, -1, -2)                  # (Bt, G, N, L)
        if kind_layout == "shared":
            g = g[:, 0]
        if not batched:
            g = g[0]
    g = np.ascontiguousarray(g)
    if kind != "c" and g.dtype.kind == "c":
        g = np.ascontiguousarray(g.real)
    return g


def selective_scan_grad(dout, u, delta, A, B, C, D=None, z=None, delta_bias=None,
                        delta_softplus=False, dlast_state=None, *, initial_state=None,
                        discretization="mamba"):
    r"""Vector-Jacobian product of :func:`selective_scan`: the gradients of all arguments.

    Given ``dout = ∂L/∂out`` (and optionally ``dlast_state = ∂L/∂last_state``),
    returns ``∂L/∂`` of every argument. The arguments are those of
    :func:`selective_scan`, with the same meaning and shapes.

    The states are not stored: a forward pass keeps them every 64 samples, then
    each 64-sample segment is recomputed from its checkpoint and walked backwards
    with the adjoint recurrence ``λ[t-1] = conj(Ā[t])·λ[t] + conj(C[t-1])·dy[t-1]``.
    Memory beyond the outputs is ``L/64 × N × 16`` values per thread, and the
    summed gradients of time-varying B/C take ``16 × (batch, G, L, N)``.

    Parameters
    ----------
    dout : array_like, shape like u
        Gradient of the loss with respect to the output.
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, discretization
        As in :func:`selective_scan`.
    dlast_state : array_like, shape (batch, dim, N), optional
        Gradient with respect to the last state (default zero).

    Returns
    -------
    SelectiveScanGrad
        Named tuple ``(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias,
        dinitial_state)``, each of its argument's shape; ``None`` for ``D``, ``z``,
        ``delta_bias`` and ``initial_state`` when they were not given. For complex
        arguments the gradient is ``∂L/∂Re + i·∂L/∂Im``. Time-invariant and grouped
        B/C gradients are summed over the channels (and the batch) that share them.
        ``ddelta`` is the gradient with respect to ``delta`` itself, i.e. after the
        chain rule through ``delta_bias`` and the softplus (whose derivative is 1
        above 20).

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm._selective import selective_scan, selective_scan_grad
    >>> rng = np.random.default_rng(1)
    >>> u, delta = rng.standard_normal((2, 1, 3, 8))
    >>> A = -rng.uniform(0.5, 2, (3, 2))
    >>> B, C = rng.standard_normal((2, 1, 2, 8))
    >>> dout = rng.standard_normal((1, 3, 8))
    >>> g = selective_scan_grad(dout, u, delta, A, B, C, delta_softplus=True)
    >>> g.dA.shape, g.dB.shape, g.dD is None
    ((3, 2), (1, 2, 8), True)

    The gradient of ``L = Σ dout·out`` with respect to ``A[0, 0]``, against a
    central difference:

    >>> def loss(A):
    ...     return np.sum(dout * selective_scan(u, delta, A, B, C, delta_softplus=True))
    >>> E = np.zeros_like(A); E[0, 0] = 1e-6
    >>> fd = (loss(A + E) - loss(A - E)) / 2e-6
    >>> bool(np.isclose(g.dA[0, 0], fd, rtol=1e-6))
    True
    """
    impl = foreign(None, "selective_scan_grad", dout, u, delta, A, B, C, D, z, delta_bias, dlast_state, initial_state)
    if impl is not None:
        return impl(dout, u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                    delta_softplus=delta_softplus, dlast_state=dlast_state,
                    initial_state=initial_state, discretization=discretization)
    p = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                 discretization, extra=[("dout", dout), ("dlast_state", dlast_state)])
    g, dl = _cotangents(p, dout, dlast_state)
    with np.errstate(all="ignore"):   # NaN/inf propagate silently, as in the kernels
        return _grad_run(p, g, dl, D, delta_bias, initial_state)


def _cotangents(p, dout, dlast_state):
    """``dout`` and ``dlast_state`` checked against the prepared inputs, as work arrays."""
    ushape = (p.Bt, p.dim, p.L) if p.batched else (p.dim, p.L)
    g = _real(dout, "dout", p.rdt)
    if g.shape != ushape:
        raise _shape_error("dout", f"{ushape} like u", g.shape)
    g = np.ascontiguousarray(g if p.batched else g[None])
    if dlast_state is None:
        dl = np.zeros((p.Bt, p.dim, p.N), dtype=p.cdt)
    else:
        dl = as_float_array(dlast_state, "dlast_state")
        sshape = (p.Bt, p.dim, p.N) if p.batched else (p.dim, p.N)
        if dl.shape != sshape:
            raise _shape_error("dlast_state", f"{sshape} like last_state", dl.shape)
        if dl.dtype.kind == "c" and p.cdt.kind != "c":
            raise TypeError("dlast_state is complex but the states are real")
        dl = np.ascontiguousarray(dl if p.batched else dl[None], dtype=p.cdt)
    return g, dl


def _grad_run(p, g, dl, D, delta_bias, initial_state, ck=None):
    Bt, dim, L, N = p.Bt, p.dim, p.L, p.N
    ntiles = p.tiles.shape[0]
    nslot = min(_NSLOT, ntiles)
    du = np.empty((Bt, dim, L), dtype=p.rdt)
    ddelta = np.empty((Bt, dim, L), dtype=p.rdt)
    dz = np.empty((Bt, dim, L), dtype=p.rdt) if p.has_z else np.empty((1, 1, 1), p.rdt)
    dA_p = np.empty((Bt, dim, N), dtype=p.cdt)
    dBl_p = np.zeros((Bt, dim, N) if not p.btv else (1, 1, 1), dtype=p.cdt)
    dCl_p = np.zeros((Bt, dim, N) if not p.ctv else (1, 1, 1), dtype=p.cdt)
    dBs = np.zeros((Bt, nslot, p.Bw.shape[1], L, N) if p.btv else (1, 1, 1, 1, 1), p.cdt)
    dCs = np.zeros((Bt, nslot, p.Cw.shape[1], L, N) if p.ctv else (1, 1, 1, 1, 1), p.cdt)
    dD_p = np.empty((Bt, dim), dtype=p.rdt)
    dbias_p = np.empty((Bt, dim), dtype=p.rdt)
    dh0 = np.empty((Bt, dim, N), dtype=p.cdt)
    yscale = p.rdt.type(2 if p.cdt.kind == "c" else 1)
    if ck is None:
        ck = np.empty((1, 1, 0, 1, 1), dtype=p.cdt)
    stale = np.zeros(Bt * nslot, dtype=np.int64)
    fn = _k.scan_bwd.pick((3 if ck.shape[2] == 0 else 2) * _work_size(p))
    fn(p.u, p.delta, p.bias, p.sp, p.disc, p.A, p.Bw, p.btv, p.gsB, p.Cw, p.ctv, p.gsC,
       p.Dv, p.z, p.has_z, p.h0, p.tiles, nslot, yscale, g, dl, ck,
       du, ddelta, dz, dA_p, dBl_p, dCl_p, dBs, dCs, dD_p, dbias_p, dh0, stale)
    if stale.any():
        raise ValueError(
            "the inputs of selective_scan_vjp changed between the forward call and the "
            "pullback (the states recomputed from them differ from the ones the forward "
            "kept); call selective_scan_vjp again, or pass copies that are not modified")
    dA = dA_p.sum(axis=0)
    if not p.A_complex and dA.dtype.kind == "c":
        dA = np.ascontiguousarray(dA.real)
    dB = _grad_bc(p.B_layout, dBl_p, dBs, p.batched)
    dC = _grad_bc(p.C_layout, dCl_p, dCs, p.batched)
    unb = (lambda a: a) if p.batched else (lambda a: a[0])
    dinit = None
    if initial_state is not None:
        dinit = unb(dh0)
        if np.asarray(initial_state).dtype.kind != "c" and dinit.dtype.kind == "c":
            dinit = np.ascontiguousarray(dinit.real)
    return SelectiveScanGrad(
        du=unb(du), ddelta=unb(ddelta), dA=dA, dB=dB, dC=dC,
        dD=None if D is None else _scalar_like(dD_p.sum(axis=0), D),
        dz=unb(dz) if p.has_z else None,
        ddelta_bias=None if delta_bias is None else _scalar_like(dbias_p.sum(axis=0),
                                                                 delta_bias),
        dinitial_state=dinit)


def selective_scan_vjp(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                       delta_softplus=False, return_last_state=False, *, initial_state=None,
                       discretization="mamba"):
    r"""Forward :func:`selective_scan` that keeps what its gradient needs, and a pullback.

    Returns ``(result, pullback)``: ``result`` is exactly what
    :func:`selective_scan` returns for these arguments, and ``pullback(dout,
    dlast_state=None)`` returns the same :class:`SelectiveScanGrad` as
    :func:`selective_scan_grad` would for them (``jax.vjp``'s pattern, and what
    mamba-ssm's autograd function does). The forward keeps the state entering
    every 64-sample segment, ``N/64`` values per input value (``N × ceil(L/64) ×
    16`` per tile of 16 channels; for N = 16 a quarter of the size of ``u``), so the
    pullback skips the forward pass that :func:`selective_scan_grad` starts with.

    Parameters
    ----------
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state, discretization
        As in :func:`selective_scan`.

    Returns
    -------
    result : ndarray or tuple of ndarray
        ``out``, or ``(out, last_state)`` with ``return_last_state``.
    pullback : callable
        ``pullback(dout, dlast_state=None) -> SelectiveScanGrad``; may be called
        any number of times.

    Notes
    -----
    The pullback reads the arguments again: it holds references to them (or
    to the work copies the forward made), not copies of its own. Do not modify
    them in place in between. If such a change alters the states the pullback
    recomputes, it raises ``ValueError`` rather than return wrong gradients:
    every recomputed 64-sample segment is compared with the forward's next kept
    state (this detects a change of ``u``, ``delta``, ``A`` or ``delta_bias``;
    a change of ``C``, ``D`` or ``z`` alone is not seen). For CuPy and dask
    arrays the pullback calls that backend's :func:`selective_scan_grad`.

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm._selective import selective_scan_vjp, selective_scan_grad
    >>> rng = np.random.default_rng(2)
    >>> u, delta, z = rng.standard_normal((3, 2, 4, 100))
    >>> A = -rng.uniform(0.5, 2, (4, 3))
    >>> B, C = rng.standard_normal((2, 2, 3, 100))
    >>> out, pullback = selective_scan_vjp(u, delta, A, B, C, z=z, delta_softplus=True)
    >>> dout = np.ones_like(out)
    >>> g = pullback(dout)
    >>> g2 = selective_scan_grad(dout, u, delta, A, B, C, z=z, delta_softplus=True)
    >>> all(np.array_equal(a, b) for a, b in zip(g, g2) if a is not None)
    True
    >>> u[0, 0, 50] += 1.0                       # modified in place: refused
    >>> pullback(dout)
    Traceback (most recent call last):
    ...
    ValueError: the inputs of selective_scan_vjp changed between the forward call and the pullback (the states recomputed from them differ from the ones the forward kept); call selective_scan_vjp again, or pass copies that are not modified
    """
    args = dict(D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
                initial_state=initial_state, discretization=discretization)
    impl = foreign(None, "selective_scan", u, delta, A, B, C, D, z, delta_bias, initial_state)
    if impl is not None:
        result = impl(u, delta, A, B, C, return_last_state=return_last_state, **args)

        def pullback(dout, dlast_state=None):
            return selective_scan_grad(dout, u, delta, A, B, C, dlast_state=dlast_state,
                                       **args)
        return result, pullback
    p = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                 discretization)
    out, hlast, ck = _forward_run(p, keep=True)
    if not p.batched:
        out, hlast = out[0], hlast[0]
    result = (out, hlast) if return_last_state else out
    return result, _Pullback(p, ck, D, delta_bias, initial_state)


class _Pullback:
    """The pullback of :func:`selective_scan_vjp`: ``pullback(dout, dlast_state=None)``."""

    def __init__(self, p, ck, D, delta_bias, initial_state):
        self._p, self._ck = p, ck
        self._D, self._delta_bias, self._initial_state = D, delta_bias, initial_state

    def __call__(self, dout, dlast_state=None):
        p = self._p
        cd = real_dtype(compute_dtype(("dout", dout), ("dlast_state", dlast_state),
                                      real_only=("dout",)))
        if cd.itemsize > p.rdt.itemsize:
            # selective_scan_grad would compute in float64; the kept states are float32
            raise TypeError(
                f"dout/dlast_state are {cd} but the forward ran in {p.rdt}; cast them "
                f"to {p.rdt}, or call selective_scan_grad to compute in {cd}")
        g, dl = _cotangents(p, dout, dlast_state)
        with np.errstate(all="ignore"):
            return _grad_run(p, g, dl, self._D, self._delta_bias, self._initial_state,
                             self._ck)

    def __repr__(self):
        p = self._p
        shape = (p.Bt, p.dim, p.L) if p.batched else (p.dim, p.L)
        return (f"<selective_scan pullback: u {shape} {p.rdt}, N={p.N}, "
                f"checkpoints {self._ck.nbytes / 2**20:.1f} MiB>")


def _scalar_like(g, arg):
    """A per-channel gradient summed to a scalar when the argument was a scalar."""
    return g.sum() if np.ndim(arg) == 0 else g


# ---------------------------------------------------------------- complex layouts

def complex_from_interleaved(x):
    """Convert mamba-ssm's interleaved real layout of complex B/C to a complex array.

    With complex ``A``, mamba-ssm passes time-varying ``B``/``C`` as real arrays
    whose last axis has length ``2L`` and holds ``(re, im)`` pairs:
    ``x[..., 2t] + 1j·x[..., 2t + 1]`` is the value at sample ``t``.

    Parameters
    ----------
    x : array_like, shape (..., 2L)
        Real.

    Returns
    -------
    ndarray, shape (..., L)
        complex64 for float32 input, else complex128. A new array.

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm._selective import complex_from_interleaved
    >>> complex_from_interleaved(np.array([[1.0, 2.0, 3.0, 4.0]]))
    array([[1.+2.j, 3.+4.j]])
    """
    arr = as_float_array(x, "x")
    if arr.dtype.kind == "c":
        raise TypeError(f"x must be real (interleaved (re, im) pairs); got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[-1] % 2:
        raise ValueError(f"x must have an even-length last axis of (re, im) pairs; "
                         f"got shape {arr.shape}")
    cdt = np.result_type(arr.dtype, np.complex64)
    out = np.empty(arr.shape[:-1] + (arr.shape[-1] // 2,), dtype=cdt)
    out.real = arr[..., 0::2]
    out.imag = arr[..., 1::2]
    return out


def interleaved_from_complex(x):
    """The inverse of :func:`complex_from_interleaved` (also converts gradients).

    A gradient ``∂L/∂Re + i·∂L/∂Im`` of a complex B becomes the gradient of
    mamba-ssm's interleaved real B.

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm._selective import interleaved_from_complex
    >>> interleaved_from_complex(np.array([1 + 2j, 3 + 4j]))
    array([1., 2., 3., 4.])
    """
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise ValueError("x must have a time axis")
    arr = arr.astype(np.result_type(arr.dtype, np.complex64), copy=False)
    out = np.empty(arr.shape[:-1] + (2 * arr.shape[-1],), dtype=arr.real.dtype)
    out[..., 0::2] = arr.real
    out[..., 1::2] = arr.imag
    return out


# ------------------------------------------------------------------ coefficient view

class SelectiveCoefficients(NamedTuple):
    """Per-sample coefficients of a selective scan, each ``(batch, dim, N, L)``.

    ``h[t] = A_bar[t]·h[t-1] + B_bar[t]·u[t]`` and ``y[t] = Σ_n C[t]·h[t]``
    (``2·Re`` for complex states), per (batch, channel, state).
    """

    A_bar: np.ndarray
    B_bar: np.ndarray
    C: np.ndarray


def _time_steps(delta, delta_bias, delta_softplus, rdt):
    dt = np.asarray(delta, dtype=rdt)
    if delta_bias is not None:
        dt = dt + np.asarray(delta_bias, dtype=rdt)[:, None]
    if delta_softplus:
        dt = _k.softplus(dt)
    return dt


def _discretize(dt, A, disc):
    """``(A_bar, g)`` with ``B_bar = g·B`` for time steps ``dt`` (…, 1, L) and poles (…, N, 1)."""
    z = dt * A
    if disc == "mamba":
        return np.exp(z), dt + 0 * z
    if disc == "zoh":
        zero = z == 0
        em = np.expm1(z)
        return np.exp(z), dt * np.where(zero, 1, em / np.where(zero, 1, z))
    if disc == "euler":
        return 1 + z, dt + 0 * z
    return (1 + z / 2) / (1 - z / 2), dt / (1 - z / 2)


def selective_coefficients(delta, A, B, C, delta_bias=None, delta_softplus=False, *,
                           discretization="mamba"):
    r"""The per-sample poles, input gains and read-outs a selective scan applies.

    For every batch entry ``b``, channel ``d``, state ``n`` and sample ``t``, the
    selective scan is the first-order IIR filter ``h[t] = A_bar·h[t-1] +
    B_bar·u[t]`` read out by ``C``: this returns those three arrays.

    **This materialises** ``(batch, dim, N, L)`` arrays (what the fused kernels of
    :func:`selective_scan` never do): it is meant for inspecting small inputs.

    Parameters
    ----------
    delta, A, B, C, delta_bias, delta_softplus, discretization
        As in :func:`selective_scan` (``delta`` of shape ``(batch, dim, L)`` or
        ``(dim, L)``).

    Returns
    -------
    SelectiveCoefficients
        ``(A_bar, B_bar, C)``, each ``(batch, dim, N, L)`` (no batch axis for an
        unbatched ``delta``); complex when A, B or C are.

    See Also
    --------
    halflife : the memory of each mode, in samples.
    frozen_freqz : the frequency response frozen at chosen samples.

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm._selective import selective_coefficients
    >>> delta = np.array([[[1.0, 2.0, 4.0]]])               # Δ = 1, 2, 4 (no softplus)
    >>> co = selective_coefficients(delta, [[np.log(0.5)]], [[1.0]], [[1.0]])
    >>> co.A_bar                                           # 0.5**Δ
    array([[[[0.5   , 0.25  , 0.0625]]]])
    >>> co.B_bar                                           # mamba's Δ·B
    array([[[[1., 2., 4.]]]])
    """
    p = _prepare(np.zeros(np.shape(delta)), delta, A, B, C, None, None, delta_bias,
                 delta_softplus, None, discretization)
    dt = _time_steps(p.delta, p.bias, p.sp, p.rdt)[:, :, None, :]       # (Bt, dim, 1, L)
    Abar, g = _discretize(dt, p.A[None, :, :, None], discretization)
    Bf = _bc_full(p.Bw, p.btv, p)
    Cf = _bc_full(p.Cw, p.ctv, p)
    out = SelectiveCoefficients(np.ascontiguousarray(Abar, dtype=p.cdt),
                                np.ascontiguousarray(g * Bf, dtype=p.cdt),
                                np.ascontiguousarray(np.broadcast_to(Cf, Abar.shape),
                                                     dtype=p.cdt))
    if not p.batched:
        out = SelectiveCoefficients(*(a[0] for a in out))
    return out


def _bc_full(w, tv, p):
    """B or C of the kernels' layout as a broadcastable ``(Bt|1, dim, N, L|1)`` array."""
    if not tv:                                        # (1, dim, 1, N)
        return np.swapaxes(w, -1, -2)                 # (1, dim, N, 1)
    g = np.swapaxes(w, -1, -2)                        # (Bt, G, N, L)
    return np.repeat(g, p.dim // g.shape[1], axis=1)  # (Bt, dim, N, L)


def halflife(delta, A, delta_bias=None, delta_softplus=False, *, discretization="mamba"):
    r"""Per-sample half-life, in samples, of every mode of a selective scan.

    The number of samples ``τ`` after which a mode's state would have decayed to
    half if its pole ``A_bar[t]`` were held: ``|A_bar|**τ = 1/2``, i.e.
    ``τ = -ln 2 / ln|A_bar|``. For ``mamba``/``zoh`` this is ``ln 2 / (Δ·|Re A|)``:
    Δ is literally the time that passes per sample.

    Parameters
    ----------
    delta, A, delta_bias, delta_softplus, discretization
        As in :func:`selective_scan`.

    Returns
    -------
    ndarray, shape (batch, dim, N, L)
        Real. ``inf`` for a pole on the unit circle, negative for a growing mode
        (minus its doubling time), 0 for a pole at 0. Materialises the full array.

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm._selective import halflife
    >>> halflife(np.array([[[1.0, 2.0]]]), [[-np.log(2)]])   # Δ = 1, 2; Ā = 2**-Δ
    array([[[[1. , 0.5]]]])
    """
    dshape = np.shape(delta)
    A_arr = as_float_array(A, "A")
    N = A_arr.shape[-1] if A_arr.ndim == 2 else 1
    dim = dshape[-2] if len(dshape) >= 2 else 1
    p = _prepare(np.zeros(dshape), delta, A_arr, np.zeros((dim, N)), np.zeros((dim, N)),
                 None, None, delta_bias, delta_softplus, None, discretization)
    dt = _time_steps(p.delta, p.bias, p.sp, p.rdt)[:, :, None, :]
    Abar, _ = _discretize(dt, p.A[None, :, :, None], discretization)
    with np.errstate(divide="ignore"):
        if discretization in ("mamba", "zoh"):
            lna = dt * np.real(p.A)[None, :, :, None]            # ln|e^{ΔA}| exactly
        else:
            lna = np.log(np.abs(Abar))
        tau = np.where(lna == 0, np.inf, -np.log(2) / np.where(lna == 0, 1, lna))
    tau = np.ascontiguousarray(tau, dtype=p.rdt)
    return tau if p.batched else tau[0]


def frozen_freqz(delta, A, B, C, t, worN=512, D=None, delta_bias=None, delta_softplus=False,
                 *, discretization="mamba", whole=False):
    r"""Frequency response of the selective filter frozen at chosen samples.

    Holding the coefficients of sample ``t`` fixed gives a linear time-invariant
    bank of first-order filters; its response from ``u`` to ``y + D·u`` is

    .. math::

        H_t(e^{j\omega}) = \sum_n \frac{C_{n,t}\,\bar B_{n,t}}{1 - \bar A_{n,t} e^{-j\omega}} + D

    (for complex states the conjugate-pair terms are added, matching the
    ``2·Re`` read-out). The SiLU gate ``z`` is a time-varying multiplication and
    is not part of it.

    Parameters
    ----------
    delta, A, B, C, D, delta_bias, delta_softplus, discretization
        As in :func:`selective_scan`.
    t : int or sequence of int
        Sample index (or indices; negative counts from the end).
    worN : int or array_like, optional
        Number of frequencies on ``[0, π)`` (``[0, 2π)`` with ``whole``), as in
        :func:`scipy.signal.freqz`, or the frequencies themselves (rad/sample).
    whole : bool, optional
        Cover the whole unit circle.

    Returns
    -------
    w : ndarray
        Frequencies, rad/sample.
    H : ndarray, complex
        ``(batch, dim, len(t), len(w))``; without the ``len(t)`` axis for a scalar
        ``t`` and without the batch axis for an unbatched ``delta``.

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm._selective import frozen_freqz
    >>> # one channel, one state: Ā = 0.5 and B̄ = 1 at t = 0, an EMA-like low-pass
    >>> w, H = frozen_freqz(np.ones((1, 1, 3)), [[np.log(0.5)]], [[1.0]], [[1.0]], t=0,
    ...                     worN=[0.0, np.pi])
    >>> np.round(np.abs(H), 6)                              # 1/(1 - 0.5), 1/(1 + 0.5)
    array([[[2.      , 0.666667]]])
    """
    co = selective_coefficients(delta, A, B, C, delta_bias, delta_softplus,
                                discretization=discretization)
    Abar, Bbar, Cc = (a if a.ndim == 4 else a[None] for a in co)
    batched = np.ndim(delta) == 3
    L = Abar.shape[-1]
    ts = np.atleast_1d(np.asarray(t))
    if ts.dtype.kind not in "iu" or ts.ndim != 1:
        raise TypeError(f"t must be an integer or a 1-D sequence of integers; got {t!r}")
    if np.any(ts < -L) or np.any(ts >= L):
        raise ValueError(f"t must lie in [-{L}, {L}) (L = {L} samples); got {t!r}")
    ts = ts % L
    if np.ndim(worN) == 0:
        n = int(worN)
        if n < 1:
            raise ValueError(f"worN must be a positive number of frequencies; got {worN!r}")
        w = np.linspace(0, 2 * np.pi if whole else np.pi, n, endpoint=False)
    else:
        w = np.asarray(worN, dtype=np.float64).ravel()
    zinv = np.exp(-1j * w)                                   # (nw,)
    a = Abar[..., ts][..., None]                             # (Bt, dim, N, nt, 1)
    cb = (Cc[..., ts] * Bbar[..., ts])[..., None]
    H = np.sum(cb / (1 - a * zinv), axis=2)                  # (Bt, dim, nt, nw)
    if np.iscomplexobj(Abar):                                # conjugate partners
        H = H + np.sum(np.conj(cb) / (1 - np.conj(a) * zinv), axis=2)
    if D is not None:
        dim = Abar.shape[1]
        H = H + _per_channel(D, "D", dim, np.float64, 0.0)[None, :, None, None]
    if np.ndim(t) == 0:
        H = H[:, :, 0]
    return w, (H if batched else H[0])


# ------------------------------------------------------------ Mamba-1 SSM layer

def _proj(W, x):
    """``W @ x`` over the channel axis of ``x`` (batch, dim, L) -> (batch, R, L).

    ``np.einsum`` without BLAS: the sum over channels runs in the same order for
    every sample whatever the length, so one sample at a time (``step``) gives
    bit-for-bit what a whole sequence (``filter``) does.
    """
    return np.einsum("rd,bdl->brl", W, x, optimize=False)


class SelectiveSSM:
    r"""The selective SSM of one Mamba-1 block, with its parameters as NumPy arrays.

    Input-dependent Δ, B and C are projections of the input ``x`` (the SSM's
    input in a Mamba block, after its convolution and activation)::

        x_dbl       = x_proj_weight @ x                        (dt_rank + 2N rows)
        dt, B, C    = split(x_dbl, [dt_rank, N, N])
        delta       = dt_proj_weight @ dt                      (dim rows)
        y           = selective_scan(x, delta, A, B, C, D, z,
                                     delta_bias=dt_proj_bias, delta_softplus=True)

    with ``A = -exp(A_log)``. B and C are shared by all channels (mamba's
    ``(batch, N, L)`` layout).

    Parameters
    ----------
    x_proj_weight : array_like, shape (dt_rank + 2·N, dim)
    dt_proj_weight : array_like, shape (dim, dt_rank)
    dt_proj_bias : array_like, shape (dim,)
        The inverse softplus of the initial time steps.
    A_log : array_like, shape (dim, N)
    D : array_like, shape (dim,)

    Attributes
    ----------
    dim, d_state, dt_rank : int
    A : ndarray
        ``-exp(A_log)``, the continuous-time poles.

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm._selective import SelectiveSSM
    >>> ssm = SelectiveSSM.random_state(dim=8, d_state=4, seed=0)
    >>> x = np.random.default_rng(1).standard_normal((2, 8, 20))
    >>> y = ssm.filter(x)
    >>> y.shape, y.dtype
    ((2, 8, 20), dtype('float64'))

    One sample at a time reproduces the whole sequence exactly:

    >>> state = None
    >>> ys = []
    >>> for t in range(20):
    ...     yt, state = ssm.step(x[:, :, t], state)
    ...     ys.append(yt)
    >>> np.array_equal(np.stack(ys, axis=-1), y)
    True
    """

    _FIELDS = ("x_proj_weight", "dt_proj_weight", "dt_proj_bias", "A_log", "D")

    def __init__(self, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D):
        dtype = compute_dtype(("x_proj_weight", x_proj_weight),
                              ("dt_proj_weight", dt_proj_weight),
                              ("dt_proj_bias", dt_proj_bias), ("A_log", A_log), ("D", D),
                              real_only=self._FIELDS)
        arrs = {k: np.array(_real(v, k, dtype), copy=True) for k, v in zip(
            self._FIELDS, (x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D))}
        A_log_ = arrs["A_log"]
        if A_log_.ndim != 2:
            raise ValueError(f"A_log must have shape (dim, N); got {A_log_.shape}")
        dim, N = A_log_.shape
        dtw = arrs["dt_proj_weight"]
        if dtw.ndim != 2 or dtw.shape[0] != dim:
            raise ValueError(f"dt_proj_weight must have shape (dim, dt_rank) with dim={dim}; "
                             f"got {dtw.shape}")
        R = dtw.shape[1]
        checks = {"x_proj_weight": (R + 2 * N, dim), "dt_proj_bias": (dim,), "D": (dim,)}
        for k, shp in checks.items():
            if arrs[k].shape != shp:
                raise ValueError(f"{k} must have shape {shp} (dt_rank={R}, N={N}, "
                                 f"dim={dim}); got {arrs[k].shape}")
        for k, v in arrs.items():
            setattr(self, k, v)
        self.dim, self.d_state, self.dt_rank = dim, N, R

    @property
    def A(self):
        return -np.exp(self.A_log)

    @property
    def dtype(self):
        return self.A_log.dtype

    @classmethod
    def random_state(cls, dim, d_state=16, dt_rank="auto", *, dt_min=1e-3, dt_max=0.1,
                     dt_init_floor=1e-4, dt_scale=1.0, dt_init="random", seed=None,
                     dtype=np.float32):
        """Parameters initialised as in mamba-ssm's ``Mamba`` block.

        ``A_log = log(1..N)`` for every channel (S4D-real: ``A = -(1..N)``);
        ``D = 1``; the time steps ``exp(U(log dt_min, log dt_max))`` (floored at
        ``dt_init_floor``) stored through an inverse softplus in ``dt_proj_bias``;
        ``dt_proj_weight`` uniform in ``±dt_scale/sqrt(dt_rank)`` (or that constant
        with ``dt_init="constant"``); ``x_proj_weight`` uniform in ``±1/sqrt(dim)``
        (PyTorch's ``nn.Linear`` default). ``dt_rank="auto"`` is ``ceil(dim/16)``.
        ``seed`` is anything :func:`numpy.random.default_rng` accepts.
        """
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant'; got {dt_init!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max; got {dt_min}, {dt_max}")
        rng = np.random.default_rng(seed)
        R = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
        std = R ** -0.5 * dt_scale
        dtw = (rng.uniform(-std, std, (dim, R)) if dt_init == "random"
               else np.full((dim, R), std))
        dt = np.exp(rng.uniform(math.log(dt_min), math.log(dt_max), dim))
        dt = np.maximum(dt, dt_init_floor)
        inv_dt = dt + np.log(-np.expm1(-dt))                     # softplus^-1(dt)
        bound = 1 / math.sqrt(dim)
        xw = rng.uniform(-bound, bound, (R + 2 * d_state, dim))
        A_log = np.log(np.tile(np.arange(1, d_state + 1, dtype=np.float64), (dim, 1)))
        return cls(*(np.asarray(a, dtype=dtype) for a in (xw, dtw, inv_dt, A_log,
                                                         np.ones(dim))))

    def _inputs(self, x):
        x = _real(x, "x", np.result_type(self.dtype, as_float_array(x, "x").dtype))
        if x.ndim != 3 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, dim={self.dim}, L); got {x.shape}")
        dbl = _proj(self.x_proj_weight.astype(x.dtype, copy=False), x)   # no copy per call
        R, N = self.dt_rank, self.d_state
        delta = _proj(self.dt_proj_weight.astype(x.dtype, copy=False), dbl[:, :R])
        return x, delta, np.ascontiguousarray(dbl[:, R:R + N]), np.ascontiguousarray(dbl[:, R + N:])

    def filter(self, x, z=None, *, initial_state=None, return_last_state=False):
        """Run the SSM over ``x`` of shape ``(batch, dim, L)``; see :func:`selective_scan`."""
        x, delta, B, C = self._inputs(x)
        return selective_scan(x, delta, self.A, B, C, self.D, z, self.dt_proj_bias, True,
                              return_last_state, initial_state=initial_state)

    def coefficients(self, x):
        """The per-sample ``(A_bar, B_bar, C)`` the input ``x`` selects (materialised)."""
        x, delta, B, C = self._inputs(x)
        return selective_coefficients(delta, self.A, B, C, self.dt_proj_bias, True)

    def step(self, x_t, state=None, z_t=None):
        """One sample: ``x_t`` of shape ``(batch, dim)``; returns ``(y_t, new_state)``.

        ``state`` is ``(batch, dim, N)`` (None: zeros). Feeding a sequence one
        sample at a time reproduces :meth:`filter` exactly (the same arithmetic).
        """
        x_t = np.asarray(x_t)
        if x_t.ndim != 2:
            raise ValueError(f"x_t must have shape (batch, dim); got {x_t.shape}")
        zt = None if z_t is None else np.asarray(z_t)[..., None]
        y, h = self.filter(x_t[..., None], zt, initial_state=state, return_last_state=True)
        return y[..., 0], h

    def save(self, path):
        """Save the parameters to a ``.npz`` file (NumPy's format; ``load`` reads it)."""
        np.savez(path, **{k: getattr(self, k) for k in self._FIELDS})

    @classmethod
    def load(cls, path):
        """Load parameters written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in cls._FIELDS if k not in f]
            if missing:
                raise ValueError(f"{path} is not a SelectiveSSM file: missing {missing}")
            return cls(*(f[k] for k in cls._FIELDS))

    def __repr__(self):
        return (f"SelectiveSSM(dim={self.dim}, d_state={self.d_state}, "
                f"dt_rank={self.dt_rank}, dtype={self.dtype})")


# ------------------------------------------------------------------- Mamba-2 (SSD)

def ssd_scan(x, dt, A, B, C, D=None, *, initial_states=None, return_final_states=False):
    r"""Mamba-2's scalar-decay SSM ("SSD") in mamba-ssm's layout, by the recurrence.

    For every head ``h`` (with group ``g = h // (heads // groups)``)::

        H[t] = exp(dt[t, h]·A[h])·H[t-1] + dt[t, h]·x[t, h] ⊗ B[t, g]   (headdim x N)
        y[t, h] = H[t]·C[t, g] + D[h]·x[t, h]

    which is :func:`selective_scan` with one channel per (head, headdim) pair, a
    pole shared by a head's states and grouped B/C; it is computed that way. The
    result equals mamba-ssm's ``mamba_chunk_scan_combined`` / ``ssd_minimal``
    (no ``dt_bias``/softplus/``z`` here: apply them to ``dt`` and ``y`` yourself).

    Parameters
    ----------
    x : array_like, shape (batch, L, heads, headdim)
    dt : array_like, shape (batch, L, heads)
    A : array_like, shape (heads,)
    B, C : array_like, shape (batch, L, groups, N)
        ``groups`` divides ``heads``.
    D : array_like, shape (heads,) or (heads, headdim), optional
    initial_states : array_like, shape (batch, heads, headdim, N), optional
    return_final_states : bool, optional

    Returns
    -------
    y : ndarray, shape (batch, L, heads, headdim)
    final_states : ndarray, shape (batch, heads, headdim, N)
        Only with ``return_final_states``.

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm._selective import ssd_scan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((1, 10, 4, 2))               # batch, L, heads, headdim
    >>> dt = rng.uniform(0.01, 0.1, (1, 10, 4))
    >>> B, C = rng.standard_normal((2, 1, 10, 2, 3))         # 2 groups, N = 3
    >>> y, h = ssd_scan(x, dt, -np.arange(1.0, 5), B, C, return_final_states=True)
    >>> y.shape, h.shape
    ((1, 10, 4, 2), (1, 4, 2, 3))
    """
    xa = as_float_array(x, "x")
    if xa.ndim != 4:
        raise ValueError(f"x must have shape (batch, L, heads, headdim); got {xa.shape}")
    Bt, L, H, P = xa.shape
    dta = as_float_array(dt, "dt")
    if dta.shape != (Bt, L, H):
        raise _shape_error("dt", f"(batch, L, heads)={(Bt, L, H)}", dta.shape)
    Aa = as_float_array(A, "A")
    if Aa.shape != (H,):
        raise _shape_error("A", f"(heads,)=({H},)", Aa.shape)
    Ba, Ca = as_float_array(B, "B"), as_float_array(C, "C")
    if Ba.ndim != 4 or Ba.shape[:2] != (Bt, L):
        raise _shape_error("B", f"(batch, L, groups, N) with batch={Bt}, L={L}", Ba.shape)
    if Ca.shape != Ba.shape:
        raise _shape_error("C", f"{Ba.shape} like B", Ca.shape)
    G, N = Ba.shape[2], Ba.shape[3]
    if H % G:
        raise ValueError(f"B has {G} groups, which does not divide heads={H}")
    dim = H * P
    u = np.moveaxis(xa.reshape(Bt, L, dim), 1, 2)                      # (Bt, dim, L)
    delta = np.repeat(np.moveaxis(dta, 1, 2), P, axis=1)               # (Bt, dim, L)
    A_ch = np.repeat(np.repeat(Aa[:, None], P, axis=0), N, axis=1)     # (dim, N)
    Bg = np.transpose(Ba, (0, 2, 3, 1))                                # (Bt, G, N, L)
    Cg = np.transpose(Ca, (0, 2, 3, 1))
    D_ch = None
    if D is not None:
        Da = as_float_array(D, "D")
        if Da.shape == (H,):
            D_ch = np.repeat(Da, P)
        elif Da.shape == (H, P):
            D_ch = Da.reshape(dim)
        else:
            raise _shape_error("D", f"(heads,)=({H},) or (heads, headdim)={(H, P)}", Da.shape)
    h0 = None
    if initial_states is not None:
        h0 = as_float_array(initial_states, "initial_states")
        if h0.shape != (Bt, H, P, N):
            raise _shape_error("initial_states", f"(batch, heads, headdim, N)={(Bt, H, P, N)}",
                               h0.shape)
        h0 = h0.reshape(Bt, dim, N)
    out, hf = selective_scan(u, delta, A_ch, Bg, Cg, D_ch, return_last_state=True,
                             initial_state=h0)
    y = np.ascontiguousarray(np.moveaxis(out, 2, 1).reshape(Bt, L, H, P))
    if return_final_states:
        return y, hf.reshape(Bt, H, P, N)
    return y
