"""NumPy mirrors of the CUDA scans: the kernels' association order, on the CPU.

Floating-point results depend on the order in which the affine elements
``(A, B)`` (the map ``h -> A*h + B``) are composed. These functions compose them
in exactly the order the kernels of ``scan.cuh``/``common.cuh`` do, in the
kernels' dtype, so CI can check the algorithm (tile geometry, identity padding,
lanes, shuffle distances, segment and warp carries, reversed traversal, shifted
decays of the adjoint, chunk aggregates and the parallel carry scan of the
split path) without a GPU. They reproduce the order, not the bits: the GPU
contracts multiply-adds into FMAs and flushes subnormals to zero.

Geometry (per tile, physical order): ``pos = tile*TILE + w*32*V*U + u*32*V +
lane*V + v`` with NW = 4 warps, U vectors per lane (4; 2 for complex128) and V
elements per 16-byte vector; arrays here are shaped ``(ntiles, NW, U, 32, V)``.
Reverse scans flip every one of those axes to get the logical order.
"""

from __future__ import annotations

import numpy as np

from ._plan import NT, split_plan, uvec, vlen

__all__ = ["geometry", "tile_scan", "scan_row", "adjoint_row", "carry_scan", "uvec"]

NW = NT // 32


def geometry(dtype, U=None, V=None):
    """``(NW, U, V, TILE)`` of the tile scan for ``dtype``."""
    V = vlen(dtype) if V is None else V
    U = uvec(dtype) if U is None else U
    return NW, U, V, NT * U * V


def _tiles(arr, L, U, V, fill):
    """Row values laid out as ``(ntiles, NW, U, 32, V)`` with ``fill`` beyond L."""
    tile = NT * U * V
    nt = -(-L // tile)
    buf = np.full(nt * tile, fill, dtype=arr.dtype)
    buf[:L] = arr[:L]
    return buf.reshape(nt, NW, U, 32, V)


def _flip(x):
    return x[:, ::-1, ::-1, ::-1, ::-1]


def tile_scan(A, B):
    """The tile scan on logical-order elements ``(nt, NW, U, 32, V)``.

    Returns ``preA, preB`` ``(nt, NW, U, 32)`` (each lane's prefix inside its warp,
    before its segment-u vector), ``wA, wB`` ``(nt, NW)`` (each warp's prefix inside
    the tile) and ``tA, tB`` ``(nt,)`` (the tile total), all in logical order.
    """
    nt, nw, U, nl, V = A.shape
    a = np.ones(A.shape[:4], dtype=A.dtype)
    b = np.zeros(B.shape[:4], dtype=B.dtype)
    for v in range(V):                                   # 1. lane aggregate
        b = A[..., v] * b + B[..., v]
        a = A[..., v] * a
    lane = np.arange(nl)
    for d in (1, 2, 4, 8, 16):                           # 2. Kogge-Stone shuffles
        pa = np.roll(a, d, axis=3)
        pb = np.roll(b, d, axis=3)
        m = lane >= d
        b = np.where(m, a * pb + b, b)
        a = np.where(m, a * pa, a)
    ea = np.roll(a, 1, axis=3)
    eb = np.roll(b, 1, axis=3)
    ea[..., 0] = 1
    eb[..., 0] = 0
    sa, sb = a[..., nl - 1], b[..., nl - 1]              # segment totals (logical lane 31)
    preA = np.empty_like(ea)
    preB = np.empty_like(eb)
    cA = np.ones((nt, nw), dtype=A.dtype)
    cB = np.zeros((nt, nw), dtype=B.dtype)
    for u in range(U):                                   # 3. carry across segments
        preA[:, :, u] = ea[:, :, u] * cA[..., None]
        preB[:, :, u] = ea[:, :, u] * cB[..., None] + eb[:, :, u]
        cB = sa[:, :, u] * cB + sb[:, :, u]
        cA = sa[:, :, u] * cA
    wA = np.empty_like(cA)
    wB = np.empty_like(cB)
    pa = np.ones(nt, dtype=A.dtype)
    pb = np.zeros(nt, dtype=B.dtype)
    for i in range(nw):                                  # 4. warp prefixes, tile total
        wA[:, i] = pa
        wB[:, i] = pb
        pb = cA[:, i] * pb + cB[:, i]
        pa = cA[:, i] * pa
    return preA, preB, wA, wB, pa, pb


def _outputs(raw_a, raw_b, preA, preB, wA, wB, h_in, step):
    """Each element's output from the tile's entering states ``h_in`` (nt,), logical order."""
    hw = wA * h_in[:, None] + wB                          # (nt, NW)
    hl = preA * hw[:, :, None, None] + preB               # (nt, NW, U, 32)
    out = np.empty(raw_b.shape, dtype=raw_b.dtype)
    for v in range(raw_b.shape[-1]):
        hl = step(hl, raw_a[..., v], raw_b[..., v])
        out[..., v] = hl
    return out


def _compose_serial(tA, tB, h0):
    """States entering each element of a serial chain of (tA, tB) from h0."""
    h = np.empty(tB.shape[0], dtype=tB.dtype)
    cur = tB.dtype.type(h0)
    for k in range(tB.shape[0]):
        h[k] = cur
        cur = tA[k] * cur + tB[k]
    return h


def carry_scan(aggA, aggB, h0):
    """Pass 2 (``carry_body``): the state entering each chunk, in logical order."""
    n = aggB.shape[0]
    V, U = 4, 1
    A = _tiles(aggA, n, U, V, 1)
    B = _tiles(aggB, n, U, V, 0)
    preA, preB, wA, wB, tA, tB = tile_scan(A, B)
    hg = _compose_serial(tA, tB, h0)
    hw = wA * hg[:, None] + wB
    hl = preA * hw[:, :, None, None] + preB
    out = np.empty(B.shape, dtype=B.dtype)
    for j in range(V):
        out[..., j] = hl
        hl = A[..., j] * hl + B[..., j]
    return out.reshape(-1)[:n]


def _prepare(mode, a, b, L, dtype, adtype):
    """Raw per-element registers (a or c, b or x) in physical tile layout, and the fill."""
    a = np.broadcast_to(np.asarray(a, dtype=adtype), (L,))
    b = np.asarray(b, dtype=dtype)
    fill = 0 if mode == "ema" else 1
    return a, b, fill


def scan_row(a, b, h0=0, *, mode="rec", dtype=None, adtype=None, nchunks=None, tpc=None):
    """One row through the kernel's scan; returns ``(y, hf)``.

    ``mode``: ``"rec"`` (``h = a*h + b``), ``"rrev"`` (the same, time reversed) or
    ``"ema"`` (``h = h + c*(x - h)`` with ``a`` = c real). ``a`` is a scalar (one
    value per row) or ``(L,)``. ``nchunks``/``tpc`` default to
    :func:`iirssm._cuda._plan.split_plan` for one row (the split path when long).
    """
    b = np.asarray(b)
    dtype = np.dtype(dtype or b.dtype)
    adtype = np.dtype(adtype or (np.empty(0, dtype).real.dtype if mode == "ema" else dtype))
    L = b.shape[0]
    _, U, V, TILE = geometry(dtype)
    ntiles = -(-L // TILE)
    if nchunks is None:
        p = split_plan(1, L, dtype)
        nchunks, tpc = p.nchunks, p.tpc
    rev = mode == "rrev"
    ra, rb, fill = _prepare(mode, a, b, L, dtype, adtype)
    RA = _tiles(ra, L, U, V, fill)
    RB = _tiles(rb, L, U, V, 0)
    if mode == "ema":
        A, B = (1 - RA).astype(adtype), (RA * RB).astype(dtype)

        def step(h, c, x):
            return h + c * (x - h)
    else:
        A, B = RA, RB

        def step(h, c, x):
            return c * h + x
    if rev:
        A, B, RA, RB = _flip(A), _flip(B), _flip(RA), _flip(RB)
    preA, preB, wA, wB, tA, tB = tile_scan(A, B)
    # logical tile order: physical order, reversed for a reverse scan
    order = np.arange(ntiles)[::-1] if rev else np.arange(ntiles)
    chunk_of = order // tpc                                  # physical chunk of each tile
    lchunk = (nchunks - 1 - chunk_of) if rev else chunk_of   # its logical chunk index
    tA_l, tB_l = tA[order], tB[order]
    h0 = dtype.type(h0)
    if nchunks > 1:
        gA = np.ones(nchunks, dtype=adtype)
        gB = np.zeros(nchunks, dtype=dtype)
        for k in range(ntiles):                              # pass 1, logical order
            c = lchunk[k]
            gB[c] = tA_l[k] * gB[c] + tB_l[k]
            gA[c] = tA_l[k] * gA[c]
        hin = carry_scan(gA, gB, h0)                         # pass 2
    else:
        hin = np.array([h0], dtype=dtype)
    h_tile = np.empty(ntiles, dtype=dtype)                   # pass 3: entering state per tile
    for k in range(ntiles):
        if k == 0 or lchunk[k] != lchunk[k - 1]:
            h = hin[lchunk[k]]
        h_tile[order[k]] = h
        h = tA_l[k] * h + tB_l[k]
    out = _outputs(RA, RB, preA, preB, wA, wB, h_tile, step)
    if rev:
        out = _flip(out)
    y = out.reshape(-1)[:L]
    return y, (y[0] if rev else y[L - 1])


def adjoint_row(a, g, h, h0=0, lam_in=0, *, dtype=None, nchunks=None, tpc=None):
    """The adjoint kernel (``bwd_body``) on one row; returns ``(db, da, dh0)``.

    ``lam[t] = g[t] + conj(a[t+1]) lam[t+1]`` (``lam[L-1] = g[L-1] + lam_in``),
    ``db = lam``, ``da[t] = lam[t] conj(h[t-1])`` (``h[-1] = h0``),
    ``dh0 = conj(a[0]) lam[0]``: a reverse scan of ``(conj(a[t+1]), g[t])``.
    """
    g = np.asarray(g)
    dtype = np.dtype(dtype or g.dtype)
    L = g.shape[0]
    _, U, V, TILE = geometry(dtype)
    ntiles = -(-L // TILE)
    if nchunks is None:
        p = split_plan(1, L, dtype)
        nchunks, tpc = p.nchunks, p.tpc
    a = np.broadcast_to(np.asarray(a, dtype=dtype), (L,))
    ash = np.ones(L, dtype=dtype)
    ash[:L - 1] = np.conj(a[1:])
    A = _flip(_tiles(ash, L, U, V, 1))
    B = _flip(_tiles(g.astype(dtype), L, U, V, 0))
    preA, preB, wA, wB, tA, tB = tile_scan(A, B)
    order = np.arange(ntiles)[::-1]
    lchunk = nchunks - 1 - order // tpc
    tA_l, tB_l = tA[order], tB[order]
    if nchunks > 1:
        gA = np.ones(nchunks, dtype=dtype)
        gB = np.zeros(nchunks, dtype=dtype)
        for k in range(ntiles):
            c = lchunk[k]
            gB[c] = tA_l[k] * gB[c] + tB_l[k]
            gA[c] = tA_l[k] * gA[c]
        lin = carry_scan(gA, gB, dtype.type(lam_in))
    else:
        lin = np.array([lam_in], dtype=dtype)
    l_tile = np.empty(ntiles, dtype=dtype)
    for k in range(ntiles):
        if k == 0 or lchunk[k] != lchunk[k - 1]:
            lam = lin[lchunk[k]]
        l_tile[order[k]] = lam
        lam = tA_l[k] * lam + tB_l[k]
    out = _outputs(A, B, preA, preB, wA, wB, l_tile,
                   lambda lv, A_, B_: A_ * lv + B_)
    db = _flip(out).reshape(-1)[:L]
    hprev = np.empty(L, dtype=dtype)
    hprev[0] = h0
    hprev[1:] = np.asarray(h, dtype=dtype)[:L - 1]
    da = db * np.conj(hprev)
    dh0 = np.conj(a[0]) * db[0]
    return db, da, dh0


def ssm_row(u, lam, beta, wgt, D, g0):
    """``ssm_fwd`` on one row: modes looped inside each tile; returns ``(y, g_final)``.

    ``u`` real (a real system: ``y = Re(sum w g) + D u``) or complex
    (``y = sum w g + D u``); ``lam``, ``wgt``, ``g0`` complex ``(M,)``, ``beta`` real.
    Tiles of NT x 2 vectors (``ssm_u<T>``).
    """
    u = np.asarray(u)
    dt = u.dtype
    cdt = np.result_type(dt, np.complex64)
    L = u.shape[0]
    V, U = vlen(dt), 2
    RU = _tiles(u, L, U, V, 0)
    pad = _tiles(np.zeros(L, dtype=bool), L, U, V, True)
    acc = np.zeros(RU.shape, dtype=cdt)
    g = np.asarray(g0, dtype=cdt).copy()
    for m in range(len(lam)):
        lm = cdt.type(lam[m])
        A = np.where(pad, cdt.type(1), lm).astype(cdt)
        B = (RU * np.asarray(beta, dtype=np.empty(0, cdt).real.dtype)[m]).astype(cdt)
        preA, preB, wA, wB, tA, tB = tile_scan(A, B)
        h_tile = _compose_serial(tA, tB, g[m])
        hw = wA * h_tile[:, None] + wB
        hl = preA * hw[:, :, None, None] + preB
        for v in range(V):
            hl = lm * hl + B[..., v]
            acc[..., v] = acc[..., v] + cdt.type(wgt[m]) * hl
        g[m] = tA[-1] * h_tile[-1] + tB[-1]
    y = (acc if dt.kind == "c" else acc.real).astype(dt) + dt.type(D) * RU
    return y.reshape(-1)[:L], g


def lfilter_row(bn, an, x, zi=None):
    """The GPU ``lfilter`` plan on one row: ``(1/A)(B x + zi)`` as FIR then pole cascade.

    ``bn``, ``an``: normalised ``(K+1,)``. Each pole runs :func:`scan_row` (complex
    for complex poles). Returns ``(y, zf)`` with the final DF2T state of
    ``dispatch.iir_zf``.
    """
    from .dispatch import iir_poles, iir_zf

    x = np.asarray(x)
    dt = x.dtype
    L = x.shape[0]
    K = len(bn) - 1
    u = np.zeros(L, dtype=dt)
    for k in range(K + 1):
        u[k:] += (bn[k] * x[:L - k]).astype(dt)
    if zi is not None:
        n = min(K, L)
        u[:n] += np.asarray(zi, dtype=dt)[:n]
    poles = iir_poles(np.asarray(an)[None, :])[0]
    real_poles = not np.any(poles.imag)
    sdt = dt if (real_poles or dt.kind == "c") else np.result_type(dt, np.complex64)
    cur = u.astype(sdt)
    for p in poles:
        cur, _ = scan_row(np.asarray(p.real if real_poles else p, dtype=sdt), cur, 0)
    y = cur if dt.kind == "c" else cur.real.astype(dt)
    zf = None
    if zi is not None:
        zf = iir_zf(np, np.asarray(bn, dtype=dt)[None, :], np.asarray(an, dtype=dt)[None, :],
                    x[None, :], y[None, :], np.asarray(zi, dtype=dt)[None, :], K)[0]
    return y, zf
