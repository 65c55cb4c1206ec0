"""NumPy mirror of ``selective.cu``: the kernels' association order, on the CPU.

Each function reproduces what the kernels compute, in the same order of
operations: the blocks' channel rows (``_selective.plan``/``geometry``), chunks of
``NT·NI`` samples, per state the thread aggregates (samples in order), the
Kogge-Stone warp scans (distances 1, 2, 4, 8, 16), the warp totals folded in
warp order into the chunk's entering state, the sequential pass per thread, the
carry of the last thread and the checkpoints; in the backward the recomputation
from the checkpoints, the mirrored reverse scan (``shfl_down``, warps from the
last), the per-sample gradients (samples from the last), the butterfly warp sums,
the per-warp accumulators, the row sums of time-varying dB/dC, the per-block
partials summed in block order, and the batch sums in order.

It is vectorised over (batch, blocks, rows, threads) and loops over chunks,
states, samples and scan steps, so it is slow but not very: it is the CI check
that the kernels' chunking, carries and reductions are right at every length
(``tests/test_cuda_selective.py``). Differences left to the hardware: fused
multiply-adds, and ``exp2``/``sincos``/``expm1`` accurate to a few ulp.
"""

from __future__ import annotations

import numpy as np

from ._selective import finish_grad, grad_inputs, plan

__all__ = ["selective_scan", "selective_scan_grad"]

_LOG2E = 1.4426950408889634


def _c(x, dtype):
    return np.asarray(x, dtype=dtype)[()]


# ------------------------------------------------------------------ discretisations

_INVPI = 0.31830988618379067


def _scale_A(A, rdt):
    """``(Re A·log2 e, Im A/pi)`` (the kernels' A2)."""
    if A.dtype.kind == "c":
        return (A.real * _c(_LOG2E, rdt)) + 1j * (A.imag * _c(_INVPI, rdt))
    return A * _c(_LOG2E, rdt)


def _sincospi(x):
    """``sincospi``: sin and cos of pi·x (x reduced mod 2 first, as exactly as the kernel)."""
    r = np.remainder(x.astype(np.float64), 2.0) * np.pi
    return np.sin(r).astype(x.dtype), np.cos(r).astype(x.dtype)


def _exp_scaled(dt, A2):
    if np.iscomplexobj(A2):
        m = np.exp2(dt * A2.real)
        s, c = _sincospi(dt * A2.imag)
        return (m * c + 1j * (m * s)).astype(A2.dtype)
    return np.exp2(dt * A2)


def _expm1_s(z, zpi):
    if np.iscomplexobj(z):
        em = np.expm1(z.real)
        s, c = _sincospi(zpi)
        sh, _ = _sincospi(0.5 * zpi)
        return (em * c - 2 * sh * sh) + 1j * ((em + 1) * s)
    return np.expm1(z)


def _phi1(z, em):
    zero = z == 0
    return np.where(zero, 1, em / np.where(zero, 1, z)).astype(z.dtype)


_DPHI1 = [0.5, 0.3333333333333333, 0.125, 0.03333333333333333, 0.006944444444444444,
          0.0011904761904761906, 0.00017361111111111112, 2.2045855379188714e-05,
          2.48015873015873e-06, 2.505210838544172e-07, 2.296443268665491e-08,
          1.9270852604185937e-09, 1.4911969277048643e-10, 1.0706029224547743e-11,
          7.169215998581078e-13]


def _dphi1(z, em):
    rdt = z.real.dtype
    p = np.full_like(z, _DPHI1[14])
    for k in range(13, -1, -1):
        p = p * z + _c(_DPHI1[k], rdt)
    small = (z * np.conj(z)).real < 0.25
    zs = np.where(small, 1, z).astype(z.dtype)
    closed = ((em + 1) * (zs - 1) + 1) / (zs * zs)
    return np.where(small, p, closed).astype(z.dtype)


def _disc_fwd(disc, dt, A, A2, cdt):
    """``(a, g)`` of every sample (the kernels' disc_fwd)."""
    if disc == 0:
        return _exp_scaled(dt, A2).astype(cdt), dt.astype(cdt)
    if disc == 1:
        z = dt * A
        e = _expm1_s(z, dt * A2.imag if np.iscomplexobj(A2) else None)
        return (e + 1).astype(cdt), (dt * _phi1(z, e)).astype(cdt)
    if disc == 2:
        return (1 + dt * A).astype(cdt), dt.astype(cdt)
    hz = (0.5 * dt) * A
    den = 1 - hz
    return ((1 + hz) / den).astype(cdt), (dt / den).astype(cdt)


def _disc_bwd(disc, dt, A, A2, cdt):
    """``(g, da/dz, dg/ddt, dg/dA)`` (the kernels' disc_bwd, disc != 0)."""
    if disc == 1:
        z = dt * A
        e = _expm1_s(z, dt * A2.imag if np.iscomplexobj(A2) else None)
        a = e + 1
        out = (dt * _phi1(z, e), a, a, (dt * dt) * _dphi1(z.astype(cdt), e.astype(cdt)))
    elif disc == 2:
        one = np.ones_like(dt * A)
        out = (dt * one, one, one, 0 * one)
    else:
        hz = (0.5 * dt) * A
        den = 1 - hz
        r = 1 / (den * den)
        out = (dt / den, r, r, ((0.5 * dt) * dt) * r)
    return tuple(np.asarray(x).astype(cdt) for x in out)


# ------------------------------------------------------------------ layout helpers

class _Blocks:
    """Rows of every block, gathered (Bt, nblk, R, ...) and scattered back."""

    def __init__(self, p):
        self.p = p
        d0, m = p.rows()
        R = p.cfg.R
        self.rows = d0[:, None] + np.arange(R)[None, :]            # (nblk, R)
        self.valid = np.arange(R)[None, :] < m[:, None]
        self.safe = np.where(self.valid, self.rows, 0)
        self.gB = (d0 // p.gsB) if p.btv else np.zeros_like(d0)
        self.gC = (d0 // p.gsC) if p.ctv else np.zeros_like(d0)

    def rows_of(self, x, fill=0):
        """``x[:, rows]`` for per-(batch, channel) arrays (Bt, dim, ...); invalid rows 0."""
        g = x[:, self.safe]
        mask = self.valid.reshape(self.valid.shape + (1,) * (g.ndim - 3))
        return np.where(mask, g, fill).astype(x.dtype)

    def chan(self, x):
        """Per-channel (dim, ...) -> (nblk, R, ...), invalid rows 0."""
        g = x[self.safe]
        mask = self.valid.reshape(self.valid.shape + (1,) * (g.ndim - 2))
        return np.where(mask, g, 0).astype(x.dtype)

    def scatter(self, xb, out):
        """(Bt, nblk, R, ...) -> out[:, rows] for the valid rows."""
        for r in range(self.p.cfg.R):
            v = self.valid[:, r]
            out[:, self.rows[v, r]] = xb[:, v, r]
        return out


def _pad(x, Lp):
    pad = [(0, 0)] * (x.ndim - 1) + [(0, Lp - x.shape[-1])]
    return np.pad(x, pad)


def _shift_up(x, o, fill):
    """``shfl_up``: lane l gets lane l - o (lanes < o: ``fill``; the kernel keeps its own
    value there but masks it)."""
    y = np.empty_like(x)
    y[..., o:] = x[..., :-o]
    y[..., :o] = fill
    return y


def _shift_down(x, o, fill):
    y = np.empty_like(x)
    y[..., :-o] = x[..., o:]
    y[..., -o:] = fill
    return y


def _warp_sum(v):
    """Butterfly over the lanes (last axis, 32): v + shfl_xor(v, o), o = 16, 8, 4, 2, 1."""
    lanes = np.arange(32)
    for o in (16, 8, 4, 2, 1):
        v = v + v[..., lanes ^ o]
    return v[..., 0]


# ------------------------------------------------------------------ the chunk scans

def _chunk_scan(a, b, hc, NW):
    """Forward scan of one chunk: a, b (..., NT, NI); hc (...,). Returns (h, h entering
    each thread)."""
    NI = a.shape[-1]
    P, Q = a[..., 0].copy(), b[..., 0].copy()
    for i in range(1, NI):
        Q = a[..., i] * Q + b[..., i]
        P = a[..., i] * P
    sh = P.shape[:-1] + (NW, 32)
    P, Q = P.reshape(sh), Q.reshape(sh)
    lane = np.arange(32)
    for o in (1, 2, 4, 8, 16):
        Pp, Qp = _shift_up(P, o, 1), _shift_up(Q, o, 0)
        m = lane >= o
        Q = np.where(m, P * Qp + Q, Q)
        P = np.where(m, P * Pp, P)
    Pe, Qe = _shift_up(P, 1, 1), _shift_up(Q, 1, 0)
    hw = np.empty(sh[:-1], dtype=b.dtype)
    h = hc
    for w in range(NW):
        hw[..., w] = h
        h = P[..., w, 31] * h + Q[..., w, 31]
    hin = (Pe * hw[..., None] + Qe).reshape(sh[:-2] + (NW * 32,))
    hs = np.empty_like(b)
    hh = hin
    for i in range(NI):
        hh = a[..., i] * hh + b[..., i]
        hs[..., i] = hh
    return hs, hin


def _chunk_rscan(ca, beta, mu, NW):
    """Reverse scan of the adjoint: elements rho -> ca·(beta + rho); returns rho entering
    each thread from the right."""
    NI = ca.shape[-1]
    P = np.ones_like(ca[..., 0])
    Q = np.zeros_like(ca[..., 0])
    for i in range(NI - 1, -1, -1):
        Q = ca[..., i] * (beta[..., i] + Q)
        P = ca[..., i] * P
    sh = P.shape[:-1] + (NW, 32)
    P, Q = P.reshape(sh), Q.reshape(sh)
    lane = np.arange(32)
    for o in (1, 2, 4, 8, 16):
        Pn, Qn = _shift_down(P, o, 1), _shift_down(Q, o, 0)
        m = lane + o < 32
        Q = np.where(m, P * Qn + Q, Q)
        P = np.where(m, P * Pn, P)
    Pe, Qe = _shift_down(P, 1, 1), _shift_down(Q, 1, 0)
    rw = np.empty(sh[:-1], dtype=Q.dtype)
    rho = mu
    for w in range(NW - 1, -1, -1):
        rw[..., w] = rho
        rho = P[..., w, 0] * rho + Q[..., w, 0]
    return (Pe * rw[..., None] + Qe).reshape(sh[:-2] + (NW * 32,))


# ------------------------------------------------------------------ forward

def _softplus(v):
    with np.errstate(over="ignore"):
        return np.where(v <= 20, np.log1p(np.exp(v)), v).astype(v.dtype)


def _sigmoid(v):
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-v))).astype(v.dtype)


class _Chunks:
    """Per-chunk views (Bt, nblk, R|1, NT, NI) of the gathered, padded inputs."""

    def __init__(self, p, blk):
        self.p, self.blk = p, blk
        cfg = p.cfg
        Lp = p.nch * cfg.chunk
        self.Lp = Lp
        v = _pad(blk.rows_of(p.delta) + blk.chan(p.bias)[None, :, :, None], Lp)
        self.v = v                                                    # pre-softplus
        dt = _softplus(v) if p.sp else v
        tmask = np.arange(Lp) < p.L
        self.dt = np.where(tmask & blk.valid[None, :, :, None], dt, 0).astype(p.rdt)
        self.u = _pad(blk.rows_of(p.u), Lp)
        self.tmask = tmask
        self.A = blk.chan(np.ascontiguousarray(p.A))                  # (nblk, R, N)
        self.A2 = _scale_A(self.A, p.rdt).astype(p.cdt)

    def view(self, x, c):
        cfg = self.p.cfg
        s = x[..., c * cfg.chunk:(c + 1) * cfg.chunk]
        return s.reshape(s.shape[:-1] + (cfg.NT, cfg.NI))

    def bc(self, Mk, tv, groups, n, c):
        """B or C of state n for chunk c: (Bt, nblk, 1, NT, NI) or (1, nblk, R, 1, 1)."""
        if tv:
            rowsB = Mk[:, groups, n, :]                               # (Bt, nblk, L)
            return self.view(_pad(rowsB, self.Lp), c)[:, :, None]
        return self.blk.chan(Mk)[None, :, :, n, None, None]

    def valid_t(self, c):
        return self.view(self.tmask, c)


def _fwd_run(p, prep=False, dout=None):
    blk = _Blocks(p)
    ch = _Chunks(p, blk)
    cfg = p.cfg
    NW = cfg.NW
    Bt, nblk, R, N = p.Bt, p.nblk, cfg.R, p.N
    carry = blk.rows_of(p.h0)                                           # (Bt, nblk, R, N)
    ckpt = np.zeros((Bt, nblk, R, p.nch, N), dtype=p.cdt)
    y = np.zeros((Bt, nblk, R, p.nch * cfg.chunk), dtype=p.rdt)
    yscale = p.rdt.type(2 if p.cplx else 1)
    for c in range(p.nch):
        dt = ch.view(ch.dt, c)
        u = ch.view(ch.u, c)
        du = dt * u if p.disc == 0 else u
        vt = ch.valid_t(c)
        yc = ch.view(y, c)
        for n in range(N):
            A = ch.A[None, :, :, n, None, None]
            A2 = ch.A2[None, :, :, n, None, None]
            Bn = ch.bc(p.Bk, p.btv, blk.gB, n, c)
            Cn = ch.bc(p.Ck, p.ctv, blk.gC, n, c)
            a, g = _disc_fwd(p.disc, dt, A, A2, p.cdt)
            bb = du * Bn if p.disc == 0 else (g * du) * Bn
            a = np.where(vt, a, 1).astype(p.cdt)
            bb = np.where(vt, bb, 0).astype(p.cdt)
            hc = carry[..., n].copy()
            ckpt[..., c, n] = hc
            hs, _ = _chunk_scan(a, bb, hc, NW)
            yc += np.real(Cn * hs).astype(p.rdt)
            carry[..., n] = hs[..., -1, -1]
    y = y[..., :p.L]
    uu = blk.rows_of(p.u)
    o = yscale * y + blk.chan(p.Dv)[None, :, :, None] * uu
    res = {"carry": carry, "ckpt": ckpt, "blk": blk, "ch": ch}
    if p.z is not None:
        zz = blk.rows_of(p.z)
        sg = _sigmoid(zz)
    if not prep:
        if p.z is not None:
            o = o * (zz * sg)
        res["out"] = o
    else:
        g = blk.rows_of(dout)
        if p.z is not None:
            res["dz"] = g * o * (sg * (1 + zz * (1 - sg)))
            g = g * (zz * sg)
        res["dy"] = g
    return res


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, initial_state=None, discretization="mamba"):
    """The forward kernel ``ss_fwd``, in NumPy (same arguments and results as the CPU one)."""
    p = plan(np, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
             discretization)
    with np.errstate(all="ignore"):
        res = _fwd_run(p)
    blk = res["blk"]
    out = blk.scatter(res["out"], np.zeros((p.Bt, p.dim, p.L), dtype=p.rdt))
    hlast = blk.scatter(res["carry"], np.zeros((p.Bt, p.dim, p.N), dtype=p.cdt))
    if not p.batched:
        out, hlast = out[0], hlast[0]
    return (out, hlast) if return_last_state else out


# ------------------------------------------------------------------ backward

def selective_scan_grad(dout, u, delta, A, B, C, D=None, z=None, delta_bias=None,
                        delta_softplus=False, dlast_state=None, *, initial_state=None,
                        discretization="mamba"):
    """The backward kernels (prep forward, ``ss_bwd``, ``ss_reduce``), in NumPy."""
    p = plan(np, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
             discretization, extra=[("dout", dout), ("dlast_state", dlast_state)],
             backward=True)
    g, dl = grad_inputs(np, p, dout, dlast_state)
    with np.errstate(all="ignore"):
        return _grad_run(p, g, dl, D, delta_bias, initial_state)


def _grad_run(p, g, dl, D, delta_bias, initial_state):
    cfg = p.cfg
    NW, NT, NI, R = cfg.NW, cfg.NT, cfg.NI, cfg.R
    Bt, nblk, N, L = p.Bt, p.nblk, p.N, p.L
    rdt, cdt = p.rdt, p.cdt
    yscale = rdt.type(2 if p.cplx else 1)
    fw = _fwd_run(p, prep=True, dout=g)
    blk, ch = fw["blk"], fw["ch"]
    ckpt = fw["ckpt"]
    dy_all = _pad(fw["dy"].astype(rdt), ch.Lp)
    Dd = blk.chan(p.Dv)[None, :, :, None, None]
    mu = blk.rows_of(dl).astype(cdt)                                  # (Bt, nblk, R, N)
    dh0 = np.zeros_like(mu)
    acc = np.zeros((Bt, nblk, NW, 3, N, R), dtype=cdt)                # per-warp sums
    accD = np.zeros((Bt, nblk, R, NT), dtype=rdt)
    accb = np.zeros((Bt, nblk, R, NT), dtype=rdt)
    partB = np.zeros((Bt, nblk, N, ch.Lp), dtype=cdt) if p.btv else None
    partC = np.zeros((Bt, nblk, N, ch.Lp), dtype=cdt) if p.ctv else None
    gdu_all = np.zeros((Bt, nblk, R, ch.Lp), dtype=rdt)
    gdt_all = np.zeros((Bt, nblk, R, ch.Lp), dtype=rdt)
    for k in range(p.nch):
        c = p.nch - 1 - k
        dt = ch.view(ch.dt, c)
        uv = ch.view(ch.u, c)
        dy = ch.view(dy_all, c)
        vt = ch.valid_t(c)
        gdu = np.zeros_like(dt)
        gdt = np.zeros_like(dt)
        for n in range(N):
            A = ch.A[None, :, :, n, None, None]
            A2 = ch.A2[None, :, :, n, None, None]
            Bn = ch.bc(p.Bk, p.btv, blk.gB, n, c)
            Cn = ch.bc(p.Ck, p.ctv, blk.gC, n, c)
            a, gg = _disc_fwd(p.disc, dt, A, A2, cdt)
            bb = (dt * uv) * Bn if p.disc == 0 else (gg * uv) * Bn
            a = np.where(vt, a, 1).astype(cdt)
            bb = np.where(vt, bb, 0).astype(cdt)
            hs, hin = _chunk_scan(a, bb, ckpt[..., c, n], NW)
            beta = np.conj(Cn) * (yscale * dy)
            ca = np.conj(a)
            rho = _chunk_rscan(ca, beta.astype(cdt), mu[..., n], NW)
            shp = np.broadcast_shapes(a.shape, Bn.shape)[:-1]
            gA = np.zeros(shp, dtype=cdt)
            gB = np.zeros(shp, dtype=cdt)
            gC = np.zeros(shp, dtype=cdt)
            dbs = np.zeros(np.broadcast_shapes(a.shape, Bn.shape), dtype=cdt)
            dcs = np.zeros_like(dbs)
            if p.disc != 0:
                gq, da, dgdt, dgdA = _disc_bwd(p.disc, dt, A, A2, cdt)
            Bb = np.broadcast_to(Bn, a.shape)
            Cb = np.broadcast_to(Cn, a.shape)
            for i in range(NI - 1, -1, -1):
                Ci, Bi = Cb[..., i], Bb[..., i]
                dyf = yscale * dy[..., i]
                lam = np.conj(Ci) * dyf + rho
                hp = hs[..., i - 1] if i > 0 else hin
                vi = vt[..., i]
                if p.disc == 0:
                    Gz = np.conj(a[..., i]) * (lam * np.conj(hp))
                    q = np.real(np.conj(Bi) * lam)
                    gdu[..., i] += dt[..., i] * q
                    gdt[..., i] += uv[..., i] * q + np.real(np.conj(A[..., 0]) * Gz)
                    gA = np.where(vi, gA + dt[..., i] * Gz, gA)
                    db = (dt[..., i] * uv[..., i]) * lam
                else:
                    Gg = np.conj(Bi) * (uv[..., i] * lam)
                    Gz = np.conj(da[..., i]) * (lam * np.conj(hp))
                    gdu[..., i] += np.real(np.conj(gq[..., i] * Bi) * lam)
                    gdt[..., i] += (np.real(np.conj(A[..., 0]) * Gz)
                                    + np.real(np.conj(dgdt[..., i]) * Gg))
                    gA = np.where(vi, gA + (dt[..., i] * Gz + np.conj(dgdA[..., i]) * Gg), gA)
                    db = np.conj(gq[..., i]) * (uv[..., i] * lam)
                dc = dyf * np.conj(hs[..., i])
                gB = np.where(vi, gB + db, gB)
                gC = np.where(vi, gC + dc, gC)
                dbs[..., i] = db
                dcs[..., i] = dc
                rho = np.conj(a[..., i]) * lam
            # thread 0's rho is the carry to the previous chunk (and dh0 at chunk 0)
            mu[..., n] = rho[..., 0]
            if c == 0:
                dh0[..., n] = rho[..., 0]
            for q, v in ((0, gA), (1, gB), (2, gC)):
                ws = _warp_sum(v.reshape(v.shape[:-1] + (NW, 32)))     # (Bt, nblk, R, NW)
                ws = np.moveaxis(ws, -1, 2)                               # (Bt, nblk, NW, R)
                acc[:, :, :, q, n, :] = ws if k == 0 else acc[:, :, :, q, n, :] + ws
            sl = slice(c * cfg.chunk, (c + 1) * cfg.chunk)
            for part, vals, tv in ((partB, dbs, p.btv), (partC, dcs, p.ctv)):
                if tv:
                    s = vals[:, :, 0]
                    for r in range(1, R):
                        s = s + vals[:, :, r]
                    part[:, :, n, sl] = s.reshape(Bt, nblk, -1)
        # chunk epilogue
        v = ch.view(ch.v, c)
        gd = np.where(p.sp & (v <= 20), gdt * _sigmoid(v), gdt) if p.sp else gdt
        gdu = gdu + Dd * dy
        valid = vt & blk.valid[None, :, :, None, None]
        for i in range(NI):
            accb = np.where(valid[..., i], accb + gd[..., i], accb)
            accD = np.where(valid[..., i], accD + dy[..., i] * uv[..., i], accD)
        sl = slice(c * cfg.chunk, (c + 1) * cfg.chunk)
        gdu_all[..., sl] = gdu.reshape(gdu.shape[:-2] + (-1,))
        gdt_all[..., sl] = gd.reshape(gd.shape[:-2] + (-1,))
    # block sums: dD, dbias (butterfly, warps in order); dA, dB, dC (warps in order)
    def warps_in_order(ws):
        s = ws[..., 0]
        for w in range(1, ws.shape[-1]):
            s = s + ws[..., w]
        return s

    dDb = warps_in_order(_warp_sum(accD.reshape(Bt, nblk, R, NW, 32)))
    dbb = warps_in_order(_warp_sum(accb.reshape(Bt, nblk, R, NW, 32)))
    accs = acc[:, :, 0]
    for w in range(1, NW):
        accs = accs + acc[:, :, w]                                     # (Bt, nblk, 3, N, R)
    accs = np.moveaxis(accs, -1, 2)                                    # (Bt, nblk, R, 3, N)

    def per_channel(xb, shape):
        return blk.scatter(xb, np.zeros(shape, dtype=xb.dtype))

    def batch_sum(x):
        s = x[0]
        for b in range(1, x.shape[0]):
            s = s + x[b]
        return s

    dAo = per_channel(accs[..., 0, :], (Bt, p.dim, N))
    du = per_channel(gdu_all[..., :L], (Bt, p.dim, L))
    ddelta = per_channel(gdt_all[..., :L], (Bt, p.dim, L))
    dz = per_channel(fw["dz"], (Bt, p.dim, L)) if p.z is not None else None
    dh0 = per_channel(dh0, (Bt, p.dim, N))

    def tv_sum(part, G):
        K = nblk // G
        out = np.empty((Bt, G, N, L), dtype=cdt)
        for gi in range(G):
            s = part[:, gi * K, :, :L]
            for kk in range(1, K):
                s = s + part[:, gi * K + kk, :, :L]
            out[:, gi] = s
        return out

    dB = (tv_sum(partB, p.GB) if p.btv
          else batch_sum(per_channel(accs[..., 1, :], (Bt, p.dim, N))))
    dC = (tv_sum(partC, p.GC) if p.ctv
          else batch_sum(per_channel(accs[..., 2, :], (Bt, p.dim, N))))
    dD = batch_sum(per_channel(dDb, (Bt, p.dim)))
    dbias = batch_sum(per_channel(dbb, (Bt, p.dim)))
    return finish_grad(np, p, du, ddelta, dz, batch_sum(dAo), dB, dC, dD, dbias, dh0,
                       D, delta_bias, initial_state)
