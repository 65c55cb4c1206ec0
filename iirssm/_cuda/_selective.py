"""CUDA selective scan: launchers of ``selective.cu`` and their planning.

:func:`selective_scan` and :func:`selective_scan_grad` have the signatures of
:func:`iirssm.selective_scan` / :func:`iirssm.selective_scan_grad`, take CuPy
arrays (NumPy arrays and scalars among the arguments are copied to the current
device) and return CuPy arrays on the current device, computed on the current
stream without a host round trip.

Everything except the launches is pure Python and runs without CuPy:
:func:`plan` (argument checks, the kernels' layouts, the block geometry) is
shared with the NumPy mirror of the kernels (``_selective_mirror.py``), which CI
runs against the reference loops. CuPy is imported inside the launchers only.

Differences from the CPU backend (documented, deliberate):

* a non-finite ``delta`` is not refused (checking would cost a device
  synchronisation); it propagates NaN/inf into the results instead;
* strided or non-contiguous inputs are copied to contiguous ones first
  (``cupy.ascontiguousarray``: one extra read and write of each);
* float32 decays are ``exp2(Δ·A·log2 e)`` as in mamba-ssm (not ``1 + expm1``):
  ``1 - Ā`` carries float32's relative rounding of ``Ā``, so decays within
  ~1e-4 of 1 are less accurate than on the CPU (see docs/gpu.md).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._selective import (DISCRETIZATIONS, SelectiveScanGrad, _bc_layout,
                          _real_work_dtype, _shape_error)
from .._validation import compute_dtype
from . import _compile

__all__ = ["selective_scan", "selective_scan_grad", "plan", "Plan", "config", "expressions",
           "SOURCE", "F_SOFTPLUS", "F_Z", "F_BTV", "F_CTV", "F_PREP", "F_ATOMIC"]

SOURCE = "selective.cu"

# flags of the kernels (selective.cu, enum F_*)
F_SOFTPLUS, F_Z, F_BTV, F_CTV, F_PREP, F_ATOMIC = 1, 2, 4, 8, 16, 32
_F_DISC_SHIFT = 8

_CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


class Config(NamedTuple):
    """Block shape of one kernel instantiation: NT threads x NI samples, R channel rows."""

    NT: int
    NI: int
    R: int

    @property
    def chunk(self):
        return self.NT * self.NI

    @property
    def NW(self):
        return self.NT // 32


def config(rdt, cplx: bool, disc: int, backward: bool = False) -> Config:
    """The block shape for a dtype / state kind / discretisation (no device query).

    Chosen so that no instantiation spills (nvcc: at most 255 registers with two
    blocks of 128 threads per SM); not yet tuned on a GPU. The backward (and the
    forward pass that writes its checkpoints, which must use the same chunks) of
    the float32 real "mamba" kernel uses half the forward's samples per thread.
    """
    rdt = np.dtype(rdt)
    if disc != 0 or rdt == np.float64:
        return Config(128, 4, 1)
    if not cplx and not backward:
        return Config(128, 8, 2)
    return Config(128, 4, 2)


def _disc_arg(disc: int) -> int:
    """Template value: 0 for mamba, -1 for the run-time discretisations."""
    return 0 if disc == 0 else -1


def _stype(rdt, cplx):
    t = _CTYPE[np.dtype(rdt)]
    return f"cx<{t}>" if cplx else t


def expressions(rdt, cplx: bool, disc: int) -> tuple[str, str, str]:
    """Name expressions ``(forward, prep forward, backward)`` for these arguments.

    The prep forward (checkpoints for the backward) has the backward's block shape.
    """
    t = _CTYPE[np.dtype(rdt)]
    out = []
    for kern, bwd in (("ss_fwd", False), ("ss_fwd", True), ("ss_bwd", True)):
        cfg = config(rdt, cplx, disc, bwd)
        out.append(_compile.expr(kern, t, cplx, _disc_arg(disc), cfg.NT, cfg.NI, cfg.R))
    return tuple(out)


def _reduce_expr(dtype_name: str) -> str:
    return _compile.expr("ss_reduce", dtype_name)


def _all_expressions():
    out = []
    for rdt in (np.float32, np.float64):
        for cplx in (False, True):
            for disc in (0, 1):
                out.extend(expressions(rdt, cplx, disc))
            out.append(_reduce_expr(_stype(rdt, cplx)))
    return out


_compile.register(SOURCE, _all_expressions())


# ---------------------------------------------------------------------------- planning

class Plan(NamedTuple):
    """Checked arguments in the kernels' layouts, and the launch geometry."""

    batched: bool
    Bt: int
    dim: int
    L: int
    N: int
    rdt: np.dtype
    cdt: np.dtype
    cplx: bool              # complex states
    A_complex: bool
    disc: int
    sp: bool
    u: object               # (Bt, dim, L) rdt, contiguous
    delta: object
    z: object               # (Bt, dim, L) or None
    bias: object            # (dim,) rdt
    Dv: object              # (dim,) rdt
    A: object               # (dim, N) cdt
    Bk: object              # (dim, N) time-invariant, else (Bt, G, N, L); cdt
    btv: bool
    GB: int
    gsB: int
    B_layout: tuple         # (layout, user shape, user dtype kind)
    Ck: object
    ctv: bool
    GC: int
    gsC: int
    C_layout: tuple
    h0: object              # (Bt, dim, N) cdt
    cfg: Config
    seg: int                # channels per segment (never straddles a B or C group)
    tps: int                # blocks per segment
    nblk: int               # blocks per batch entry
    nch: int                # chunks

    def flags(self) -> int:
        f = (F_SOFTPLUS if self.sp else 0) | (F_Z if self.z is not None else 0)
        f |= (F_BTV if self.btv else 0) | (F_CTV if self.ctv else 0)
        return f | (self.disc << _F_DISC_SHIFT)

    def rows(self):
        """``(first channel, rows)`` of every block (NumPy; for the mirror and the tests)."""
        x = np.arange(self.nblk)
        s, j = x // self.tps, x % self.tps
        d0 = s * self.seg + j * self.cfg.R
        m = np.minimum(self.cfg.R, self.seg - j * self.cfg.R)
        return d0, m


def geometry(dim, R, gsB, btv, gsC, ctv):
    """``(seg, tps, nblk)``: blocks of at most ``R`` channels inside segments of ``seg``.

    A segment never straddles a group of time-varying B or C, so the rows of a
    block share their B and C rows; block ``x`` takes channels ``d0 = (x // tps)·seg
    + (x % tps)·R`` onwards (``min(R, seg - (x % tps)·R)`` of them). The blocks of
    B group ``g`` are then exactly ``x`` in ``[g·K, (g+1)·K)`` with ``K = nblk / G``,
    which is how the backward's per-block partials of dB are summed.
    """
    seg = math.gcd(gsB if btv else dim, gsC if ctv else dim)
    tps = -(-seg // R)
    return seg, tps, (dim // seg) * tps


def _kind(x):
    return np.dtype(x.dtype).kind


def plan(xp, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
         initial_state=None, discretization="mamba", extra=(), backward=False) -> Plan:
    """Check the arguments (as :func:`iirssm.selective_scan` does) and lay them out.

    ``xp`` is ``numpy`` (the mirror) or ``cupy`` (the launchers); ``backward``
    selects the backward's block shape. Raises the CPU
    backend's errors for the same mistakes (shapes, groups, dtypes), except that a
    non-finite ``delta`` is checked only with NumPy.
    """
    rdt = _real_work_dtype(u, delta, A, B, C, D, z, delta_bias, initial_state, discretization,
                           extra)

    def arr(v, name):
        a = xp.asarray(v)
        compute_dtype((name, a))          # TypeError for unsupported dtypes, naming it
        return a

    def real(v, name):
        a = arr(v, name)
        if _kind(a) == "c":
            raise TypeError(f"{name} must be real; got dtype {a.dtype}")
        return a

    u_arr = real(u, "u")
    if u_arr.ndim not in (2, 3):
        raise ValueError(f"u must have shape (batch, dim, L) or (dim, L); got {u_arr.shape}")
    batched = u_arr.ndim == 3
    ushape = tuple(u_arr.shape)
    if not batched:
        u_arr = u_arr[None]
    Bt, dim, L = (int(s) for s in u_arr.shape)
    uname = "(batch, dim, L)" if batched else "(dim, L)"
    if L == 0:
        raise ValueError(f"u has no samples (shape {ushape}): the time axis (last) is empty")
    if L >= 2**31 - 2**16 or dim >= 2**31:
        raise ValueError(f"u is too long for the CUDA kernels (32-bit lengths); got {ushape}")
    d_arr = real(delta, "delta")
    if tuple(d_arr.shape) != ushape:
        raise _shape_error("delta", f"{uname}={ushape} like u", d_arr.shape)
    if not batched:
        d_arr = d_arr[None]
    if xp is np and not np.isfinite(d_arr).all():
        bad = d_arr[~np.isfinite(d_arr)].flat[0]
        raise ValueError(f"delta must be finite (it is a time step); got {bad!r}")
    A_arr = arr(A, "A")
    if A_arr.ndim != 2 or A_arr.shape[0] != dim:
        raise _shape_error("A", f"(dim, N) with dim={dim}", A_arr.shape)
    N = int(A_arr.shape[1])
    if N == 0:
        raise ValueError("A must have at least one state (shape (dim, N) with N >= 1)")
    B_arr = arr(B, "B")
    C_arr = arr(C, "C")
    h0_arr = None if initial_state is None else arr(initial_state, "initial_state")
    A_complex = _kind(A_arr) == "c"
    cplx = A_complex or _kind(B_arr) == "c" or _kind(C_arr) == "c" or (
        h0_arr is not None and _kind(h0_arr) == "c")
    cdt = np.dtype(np.result_type(rdt, np.complex64)) if cplx else rdt
    lB, GB = _bc_layout(B_arr, "B", batched, Bt, dim, N, L)
    lC, GC = _bc_layout(C_arr, "C", batched, Bt, dim, N, L)

    def work(a, layout, G):
        if layout == "invariant":
            return xp.ascontiguousarray(a.astype(cdt, copy=False)), False, 1, dim
        if not batched:
            a = a[None]
        if layout == "shared":
            a = a[:, None]
        return xp.ascontiguousarray(a.astype(cdt, copy=False)), True, G, dim // G

    Bk, btv, GB, gsB = work(B_arr, lB, GB)
    Ck, ctv, GC, gsC = work(C_arr, lC, GC)
    z_arr = None
    if z is not None:
        z_arr = real(z, "z")
        if tuple(z_arr.shape) != ushape:
            raise _shape_error("z", f"{uname}={ushape} like u", z_arr.shape)
        z_arr = xp.ascontiguousarray((z_arr if batched else z_arr[None]).astype(rdt, copy=False))

    def per_channel(v, name):
        if v is None:
            return xp.zeros(dim, dtype=rdt)
        a = real(v, name).astype(rdt, copy=False)
        if a.ndim == 0:
            return xp.full(dim, a, dtype=rdt)
        if tuple(a.shape) != (dim,):
            raise _shape_error(name, f"(dim,)=({dim},)", a.shape)
        return xp.ascontiguousarray(a)

    Dv = per_channel(D, "D")
    bias = per_channel(delta_bias, "delta_bias")
    if xp is np and not np.isfinite(bias).all():
        raise ValueError("delta_bias must be finite")
    if h0_arr is None:
        h0 = xp.zeros((Bt, dim, N), dtype=cdt)
    else:
        expect = (Bt, dim, N) if batched else (dim, N)
        if tuple(h0_arr.shape) != expect:
            raise _shape_error("initial_state", f"{'(batch, dim, N)' if batched else '(dim, N)'}"
                               f"={expect}", h0_arr.shape)
        h0 = xp.ascontiguousarray((h0_arr if batched else h0_arr[None]).astype(cdt, copy=False))
    disc = DISCRETIZATIONS.index(discretization)
    cfg = config(rdt, cplx, disc, backward)
    seg, tps, nblk = geometry(dim, cfg.R, gsB, btv, gsC, ctv)
    return Plan(
        batched=batched, Bt=Bt, dim=dim, L=L, N=N, rdt=rdt, cdt=np.dtype(cdt), cplx=cplx,
        A_complex=A_complex, disc=disc, sp=bool(delta_softplus),
        u=xp.ascontiguousarray(u_arr.astype(rdt, copy=False)),
        delta=xp.ascontiguousarray(d_arr.astype(rdt, copy=False)), z=z_arr, bias=bias, Dv=Dv,
        A=xp.ascontiguousarray(A_arr.astype(cdt, copy=False)),
        Bk=Bk, btv=btv, GB=GB, gsB=gsB, B_layout=(lB, tuple(B_arr.shape), _kind(B_arr)),
        Ck=Ck, ctv=ctv, GC=GC, gsC=gsC, C_layout=(lC, tuple(C_arr.shape), _kind(C_arr)),
        h0=h0, cfg=cfg, seg=seg, tps=tps, nblk=nblk, nch=-(-L // cfg.chunk))


def grad_inputs(xp, p: Plan, dout, dlast_state):
    """``dout`` as (Bt, dim, L) rdt and ``dlast_state`` as (Bt, dim, N) cdt (zeros if None)."""
    ushape = (p.Bt, p.dim, p.L) if p.batched else (p.dim, p.L)
    g = xp.asarray(dout)
    compute_dtype(("dout", g), real_only=("dout",))
    if tuple(g.shape) != ushape:
        raise _shape_error("dout", f"{ushape} like u", g.shape)
    g = xp.ascontiguousarray((g if p.batched else g[None]).astype(p.rdt, copy=False))
    if dlast_state is None:
        return g, xp.zeros((p.Bt, p.dim, p.N), dtype=p.cdt)
    dl = xp.asarray(dlast_state)
    compute_dtype(("dlast_state", dl))
    sshape = (p.Bt, p.dim, p.N) if p.batched else (p.dim, p.N)
    if tuple(dl.shape) != sshape:
        raise _shape_error("dlast_state", f"{sshape} like last_state", dl.shape)
    if _kind(dl) == "c" and not p.cplx:
        raise TypeError("dlast_state is complex but the states are real")
    return g, xp.ascontiguousarray((dl if p.batched else dl[None]).astype(p.cdt, copy=False))


def finish_grad(xp, p: Plan, du, ddelta, dz, dA, dB, dC, dD, dbias, dh0, D, delta_bias,
                initial_state):
    """Shape the kernels' gradients like the arguments (shared by launcher and mirror).

    ``dA`` ``(dim, N)``; ``dB``/``dC`` ``(dim, N)`` (time-invariant) or ``(Bt, G, N, L)``;
    ``dD``/``dbias`` ``(dim,)``; the rest per batch entry.
    """
    unb = (lambda a: a) if p.batched else (lambda a: a[0])

    def realify(g, kind):
        return xp.ascontiguousarray(g.real) if kind != "c" and _kind(g) == "c" else g

    def bc(g, layout):
        lay, _, kind = layout
        if lay != "invariant":
            if lay == "shared":
                g = g[:, 0]
            g = unb(g)
        return realify(xp.ascontiguousarray(g), kind)

    def scalar_like(g, arg):
        return g.sum() if np.ndim(arg) == 0 else g

    dinit = None
    if initial_state is not None:
        dinit = realify(unb(dh0), _kind(xp.asarray(initial_state)))
    return SelectiveScanGrad(
        du=unb(du), ddelta=unb(ddelta), dA=realify(dA, "c" if p.A_complex else "f"),
        dB=bc(dB, p.B_layout), dC=bc(dC, p.C_layout),
        dD=None if D is None else scalar_like(dD, D),
        dz=unb(dz) if p.z is not None else None,
        ddelta_bias=None if delta_bias is None else scalar_like(dbias, delta_bias),
        dinitial_state=dinit)


# ---------------------------------------------------------------------------- launches

_MAX_GRID_Y = 65535


def _batches(Bt):
    """Batch ranges of at most 65535 (the grid's y limit)."""
    return [(b0, min(Bt, b0 + _MAX_GRID_Y)) for b0 in range(0, Bt, _MAX_GRID_Y)]


def _function(expr, smem):
    fn = _compile.get_function(SOURCE, expr)
    if smem > 48 * 1024:
        fn.max_dynamic_shared_size_bytes = smem
    return fn


def _i32(*xs):
    return tuple(np.int32(x) for x in xs)


def _null():
    return np.uint64(0)


def _forward(cp, p: Plan, out, hlast, ckpt=None, dout=None, dz=None):
    """Launch ss_fwd (prep mode when ``ckpt`` is given: dy into ``out``, dz, checkpoints)."""
    fexpr, pexpr, _ = expressions(p.rdt, p.cplx, p.disc)
    fexpr = pexpr if ckpt is not None else fexpr
    cfg = p.cfg
    smem = 2 * p.N * cfg.R * p.cdt.itemsize
    fn = _function(fexpr, smem)
    flags = p.flags() | (F_PREP if ckpt is not None else 0)
    dummy = p.u
    for b0, b1 in _batches(p.Bt):
        def sl(a, tv=True):
            return a if (a is None or not tv) else a[b0:b1]
        args = (sl(p.u), sl(p.delta), p.bias, p.A, sl(p.Bk, p.btv), sl(p.Ck, p.ctv), p.Dv,
                sl(p.z) if p.z is not None else dummy, sl(p.h0),
                sl(dout) if dout is not None else dummy,
                sl(out), sl(hlast) if hlast is not None else _null(),
                sl(ckpt) if ckpt is not None else _null(),
                sl(dz) if dz is not None else dummy,
                *_i32(p.L, p.dim, p.N, p.GB, p.GC, p.gsB, p.gsC, p.seg, p.tps, flags))
        fn((p.nblk, b1 - b0), (cfg.NT,), args, shared_mem=smem)


def _sum_leading(cp, part, name):
    """Σ over the leading axis of ``part`` (K, ...) in order (ss_reduce, deterministic)."""
    K = part.shape[0]
    inner = int(np.prod(part.shape[1:]))
    out = cp.empty(part.shape[1:], dtype=part.dtype)
    _reduce(cp, part, out, inner, K, 1, 1)
    return out


def _reduce(cp, part, out, inner, K, G, nbg):
    cplx = part.dtype.kind == "c"
    rdt = np.dtype(part.real.dtype if cplx else part.dtype)
    fn = _compile.get_function(SOURCE, _reduce_expr(_stype(rdt, cplx)))
    grid_x = -(-inner // 256)
    for y0 in range(0, nbg, _MAX_GRID_Y):
        y1 = min(nbg, y0 + _MAX_GRID_Y)
        # part rows of batch-groups y0..y1: offset by y0·K·inner elements
        fn((grid_x, y1 - y0), (256,),
           (part.reshape(-1)[y0 * K * inner:], out.reshape(-1)[y0 * inner:],
            np.int64(inner), np.int32(K), np.int32(G)))


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, initial_state=None, discretization="mamba"):
    """:func:`iirssm.selective_scan` on the GPU (CuPy arrays in, CuPy arrays out)."""
    import cupy as cp

    p = plan(cp, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
             discretization)
    out = cp.empty((p.Bt, p.dim, p.L), dtype=p.rdt)
    hlast = cp.empty((p.Bt, p.dim, p.N), dtype=p.cdt) if return_last_state else None
    _forward(cp, p, out, hlast)
    if not p.batched:
        out = out[0]
        hlast = hlast[0] if hlast is not None else None
    return (out, hlast) if return_last_state else out


def selective_scan_grad(dout, u, delta, A, B, C, D=None, z=None, delta_bias=None,
                        delta_softplus=False, dlast_state=None, *, initial_state=None,
                        discretization="mamba"):
    """:func:`iirssm.selective_scan_grad` on the GPU (deterministic reductions)."""
    return _grad(dout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, dlast_state,
                 initial_state, discretization, deterministic=True)


def _grad(dout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, dlast_state,
          initial_state, discretization, deterministic=True):
    """The gradient; ``deterministic=False`` adds time-varying dB/dC with atomics."""
    import cupy as cp

    p = plan(cp, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
             discretization, extra=[("dout", dout), ("dlast_state", dlast_state)],
             backward=True)
    g, dl = grad_inputs(cp, p, dout, dlast_state)
    Bt, dim, L, N, cfg = p.Bt, p.dim, p.L, p.N, p.cfg
    # 1. forward in prep mode: checkpoints, dz, dy = dout·silu(z) (into du)
    ckpt = cp.empty((Bt, dim, p.nch, N), dtype=p.cdt)
    du = cp.empty((Bt, dim, L), dtype=p.rdt)
    dz = cp.empty((Bt, dim, L), dtype=p.rdt) if p.z is not None else None
    _forward(cp, p, du, None, ckpt=ckpt, dout=g, dz=dz)
    # 2. backward
    ddelta = cp.empty((Bt, dim, L), dtype=p.rdt)
    dh0 = cp.empty((Bt, dim, N), dtype=p.cdt)
    accw = cp.empty((Bt * p.nblk * cfg.NW * 3 * N * cfg.R,), dtype=p.cdt)
    dAo = cp.empty((Bt, dim, N), dtype=p.cdt)
    dBo = cp.empty((Bt, dim, N), dtype=p.cdt) if not p.btv else None
    dCo = cp.empty((Bt, dim, N), dtype=p.cdt) if not p.ctv else None
    dDo = cp.empty((Bt, dim), dtype=p.rdt)
    dbo = cp.empty((Bt, dim), dtype=p.rdt)

    def target(tv, G):
        if not tv:
            return None
        if deterministic:
            return cp.empty((Bt, p.nblk, N, L), dtype=p.cdt)
        return cp.zeros((Bt, G, N, L), dtype=p.cdt)

    dBp, dCp = target(p.btv, p.GB), target(p.ctv, p.GC)
    _, _, bexpr = expressions(p.rdt, p.cplx, p.disc)
    smem = 2 * N * cfg.R * p.cdt.itemsize
    fn = _function(bexpr, smem)
    flags = p.flags() | (0 if deterministic else F_ATOMIC)
    for b0, b1 in _batches(Bt):
        def sl(a, tv=True):
            return _null() if a is None else (a[b0:b1] if tv else a)
        acc = accw[b0 * p.nblk * cfg.NW * 3 * N * cfg.R:]
        args = (sl(p.u), sl(p.delta), p.bias, p.A, sl(p.Bk, p.btv), sl(p.Ck, p.ctv), p.Dv,
                sl(ckpt), sl(dl), sl(du), sl(ddelta), sl(dh0), sl(dBp), sl(dCp), acc,
                sl(dAo), sl(dBo), sl(dCo), sl(dDo), sl(dbo),
                *_i32(L, dim, N, p.GB, p.GC, p.gsB, p.gsC, p.seg, p.tps, flags))
        fn((p.nblk, b1 - b0), (cfg.NT,), args, shared_mem=smem)
    # 3. deterministic sums: per-block partials of dB/dC in block order, the batch in order
    def tv_sum(part, G):
        if not deterministic:
            return part
        out = cp.empty((Bt, G, N, L), dtype=p.cdt)
        _reduce(cp, part, out, N * L, p.nblk // G, G, Bt * G)
        return out

    dB = tv_sum(dBp, p.GB) if p.btv else _sum_leading(cp, dBo, "dB")
    dC = tv_sum(dCp, p.GC) if p.ctv else _sum_leading(cp, dCo, "dC")
    return finish_grad(cp, p, du, ddelta, dz, _sum_leading(cp, dAo, "dA"), dB, dC,
                       _sum_leading(cp, dDo, "dD"), _sum_leading(cp, dbo, "dbias"), dh0,
                       D, delta_bias, initial_state)
