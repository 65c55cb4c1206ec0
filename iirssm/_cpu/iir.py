"""Cascades of direct-form II transposed sections: ``lfilter`` (one section of order K)
and ``sosfilt`` (S sections of order 2) share this one kernel source.

Per section ``s`` and sample ``t`` (coefficients already divided by ``a0``)::

    y      = b[0] x + z[0]
    z[i]   = b[i+1] x - a[i+1] y + z[i+1]      (i = 0 .. K-2)
    z[K-1] = b[K] x - a[K] y

and ``y`` is the next section's ``x``. Coefficients may change every sample
(they act on the sample they multiply: the state ``z`` carries products formed
with earlier samples' coefficients), which for fixed coefficients is exactly
scipy's ``lfilter``/``sosfilt``.

Layout and vectorisation (the scheme of ``ssm.py``). The input is the ``(P, L, Q)``
work view of ``_arraytools``; coefficients are ``(S, K+1, Pc, Lc, Qc)`` with each
of ``Pc``, ``Lc``, ``Qc`` 1 or full; states are ``(P, Q, S, K)``. A *job* is a
tile of ``n_lanes`` channels: consecutive rows ``p`` when ``Q == 1`` (time
contiguous), else consecutive channels ``q`` of one ``p`` (time-major). A job
copies ``T_BLOCK`` samples of its channels into a buffer with the lanes
contiguous (a transpose for rows, a plain copy for the time-major layout), runs
the block through the cascade *section by section* (each section over all the
block's samples), and copies the block's outputs back. Every lane loop is a
plain loop over a run-time number of lanes (a constant one would be unrolled
into scalar code first: Numba leaves LLVM's SLP vectoriser off) over one local
state array with a compile-time lane stride, so that LLVM's loop vectoriser
turns it into packed multiply-adds (``vfmadd...pd`` on ymm registers with AVX2)
behind one run-time alias check. The block's input and output are indexed
through 2-D views whose indices come from ``range`` loops only, which spares
the wraparound checks of negative indices in the copy loops.

Coefficients:

* second-order sections whose coefficients are shared by a job's lanes (fixed
  1-D ``sos``, coefficients that vary only over dimensions that are not the
  lanes', time-varying sections that are the same for every channel) are read
  as scalars, once per section and block when fixed, once per sample when they
  vary in time; two consecutive sections share one lane loop, the first one's
  output staying in a register;
* otherwise (coefficients that differ between lanes, or a section of order
  ``K != 2``: ``lfilter``) they live in rows of the state array, gathered (or
  broadcast) once, or once per sample when they vary in time. Orders 1 to 8
  then run one generated lane loop per section and sample (``_make_lanes``);
  higher orders run one lane loop per state.

Arithmetic follows scipy's order (``b[i+1] x - a[i+1] y + z[i+1]``) with
multiply-adds fused (``fma=True``). Reordering the sum, as
``(z[i+1] + b[i+1] x) - a[i+1] y`` (one operation fewer), moved complex64 results
of a 10-section cascade outside the tolerance table (tests/test_lfilter.py).

Unused lanes of a partial tile run on zeros and are discarded. Jobs run in
parallel (``prange``); the work of a channel never depends on the number of
threads or on the number of lanes, so results are reproducible.
"""

import numba
import numpy as np

from ._jit import inline, jit, kernel, prange

__all__ = ["df2t", "cascade_lanes", "MAX_LANES", "T_BLOCK"]

#: lane stride of a job's local arrays (the largest ``n_lanes``).
MAX_LANES = 64
#: samples per block of a job's I/O buffer (T_BLOCK x MAX_LANES values).
T_BLOCK = 64


def cascade_lanes(P: int, Q: int, itemsize: int) -> int:
    """Lanes per job: 16 (float64) or 32 (float32), a multiple of the widest
    vector (8 float64 with AVX-512), doubled up to :data:`MAX_LANES` as long as
    every thread still gets a job: a longer lane loop spreads its fixed cost per
    sample and section over more channels (measured with one thread, 64 rows,
    lfilter butter(8): 54 instructions per sample with 16 lanes, 28 with 64)."""
    threads = numba.get_num_threads()
    n = 32 if itemsize <= 4 else 16

    def jobs(nl):
        return -(-P // nl) if Q == 1 else P * (-(-Q // nl))
    while n * 2 <= MAX_LANES and jobs(n * 2) >= threads:
        n *= 2
    return n


@kernel(fma=True)
def df2t(bc, ac, x, z, out, n_lanes):
    """Filter ``(P, L, Q)`` through the section cascade into ``out``.

    ``bc``/``ac``: ``(S, K+1, Pc, Lc, Qc)`` (``a`` without its first row used);
    ``z``: ``(P, Q, S, K)`` initial states, overwritten with the final states.
    ``n_lanes`` (at most :data:`MAX_LANES`) is passed at run time on purpose
    (see the module docstring).
    """
    P, L, Q = x.shape
    if Q == 1:
        njobs = (P + n_lanes - 1) // n_lanes
    else:
        njobs = P * ((Q + n_lanes - 1) // n_lanes)
    for job in prange(njobs):
        _job(job, bc, ac, x, z, out, n_lanes)


@jit(fma=True)
def _job(job, bc, ac, x, z, out, nl):
    """One tile of ``nl`` channels, all of time (a plain function: compiled outside
    the parallel region, its loops vectorise as in serial code)."""
    P, L, Q = x.shape
    S = bc.shape[0]
    K = bc.shape[1] - 1
    cp = 1 if bc.shape[2] > 1 else 0
    ct = 1 if bc.shape[3] > 1 else 0
    cq = 1 if bc.shape[4] > 1 else 0
    # the channels of this job are (p0 + k*dp, q0 + k*dq) for lanes k < n
    if Q == 1:
        p0 = job * nl
        q0 = 0
        dp = 1
        dq = 0
        n = min(nl, P - p0)
        per_lane = cp == 1
    else:
        per_p = (Q + nl - 1) // nl
        p0 = job // per_p
        q0 = (job % per_p) * nl
        dp = 0
        dq = 1
        n = min(nl, Q - q0)
        per_lane = cq == 1
    # rows of st per section: K states, then b0..bK, a1..aK when the coefficients live in
    # rows (they differ between lanes, or the section is not second-order: then the
    # shared coefficients are broadcast into the rows and one loop runs the section)
    in_rows = per_lane or K != 2
    R = 3 * K + 1 if in_rows else K
    yr = S * R                       # one scratch row: a section's outputs (order K > 2)
    st = np.zeros((S * R + 1, MAX_LANES), dtype=z.dtype)
    io = np.zeros((T_BLOCK, MAX_LANES), dtype=out.dtype)
    for k in range(n):
        for s in range(S):
            for i in range(K):
                st[s * R + i, k] = z[p0 + k * dp, q0 + k * dq, s, i]
    pc = p0 * cp                     # a shared coefficient's channel (not per_lane)
    qc = q0 * cq
    if in_rows and ct == 0:
        for s in range(S):
            if per_lane:
                _lane_coefs(st, bc, ac, s, s * R, K, p0, q0, dp, dq, cp, cq, n, 0)
            else:
                _bcast_coefs(st, bc, ac, s, s * R, K, pc, qc, 0, nl)
    for blk in range((L + T_BLOCK - 1) // T_BLOCK):
        t0 = blk * T_BLOCK
        nt = min(T_BLOCK, L - t0)
        # the block's inputs and outputs as 2-D views (lane, sample) or (sample, lane):
        # indices from range() are known non-negative, so no wraparound checks per element
        if dq == 0:
            xb = x[p0:p0 + n, t0:t0 + nt, 0]
            ob = out[p0:p0 + n, t0:t0 + nt, 0]
            for k in range(n):
                for j in range(nt):
                    io[j, k] = xb[k, j]
        else:
            xb = x[p0, t0:t0 + nt, q0:q0 + n]
            ob = out[p0, t0:t0 + nt, q0:q0 + n]
            for j in range(nt):
                for k in range(n):
                    io[j, k] = xb[j, k]
        s = 0
        while s < S:
            r = s * R
            if in_rows:
                # the section's rows as a view: its row offsets are then constants, and
                # the lane loop's accesses to them one group for the vectoriser's checks
                sec = st[r:r + R]
                for j in range(nt):
                    if ct == 1:
                        if per_lane:
                            _lane_coefs(st, bc, ac, s, r, K, p0, q0, dp, dq, cp, cq, n, t0 + j)
                        else:
                            _bcast_coefs(st, bc, ac, s, r, K, pc, qc, t0 + j, nl)
                    if K == 2:
                        _lanes_k2(sec, io, j, nl)
                    elif K == 1:
                        _lanes_k1(sec, io, j, nl)
                    elif K == 3:
                        _lanes_k3(sec, io, j, nl)
                    elif K == 4:
                        _lanes_k4(sec, io, j, nl)
                    elif K == 5:
                        _lanes_k5(sec, io, j, nl)
                    elif K == 6:
                        _lanes_k6(sec, io, j, nl)
                    elif K == 7:
                        _lanes_k7(sec, io, j, nl)
                    elif K == 8:
                        _lanes_k8(sec, io, j, nl)
                    else:
                        _gen_lanes_v(st, io, j, r, yr, K, nl)
            elif K == 2 and s + 1 < S:
                # two sections per lane loop: the first one's output stays in a register
                if ct == 0:
                    b0 = bc[s, 0, pc, 0, qc]
                    b1 = bc[s, 1, pc, 0, qc]
                    b2 = bc[s, 2, pc, 0, qc]
                    a1 = ac[s, 1, pc, 0, qc]
                    a2 = ac[s, 2, pc, 0, qc]
                    c0 = bc[s + 1, 0, pc, 0, qc]
                    c1 = bc[s + 1, 1, pc, 0, qc]
                    c2 = bc[s + 1, 2, pc, 0, qc]
                    d1 = ac[s + 1, 1, pc, 0, qc]
                    d2 = ac[s + 1, 2, pc, 0, qc]
                    for j in range(nt):
                        _sos2_lanes(st, io, j, r, b0, b1, b2, a1, a2, c0, c1, c2, d1, d2, nl)
                else:
                    for j in range(nt):
                        t = t0 + j
                        _sos2_lanes(st, io, j, r, bc[s, 0, pc, t, qc], bc[s, 1, pc, t, qc],
                                    bc[s, 2, pc, t, qc], ac[s, 1, pc, t, qc],
                                    ac[s, 2, pc, t, qc], bc[s + 1, 0, pc, t, qc],
                                    bc[s + 1, 1, pc, t, qc], bc[s + 1, 2, pc, t, qc],
                                    ac[s + 1, 1, pc, t, qc], ac[s + 1, 2, pc, t, qc], nl)
                s += 1
            else:
                if ct == 0:
                    b0 = bc[s, 0, pc, 0, qc]
                    b1 = bc[s, 1, pc, 0, qc]
                    b2 = bc[s, 2, pc, 0, qc]
                    a1 = ac[s, 1, pc, 0, qc]
                    a2 = ac[s, 2, pc, 0, qc]
                    for j in range(nt):
                        _sos_lanes(st, io, j, r, b0, b1, b2, a1, a2, nl)
                else:
                    for j in range(nt):
                        t = t0 + j
                        _sos_lanes(st, io, j, r, bc[s, 0, pc, t, qc], bc[s, 1, pc, t, qc],
                                   bc[s, 2, pc, t, qc], ac[s, 1, pc, t, qc],
                                   ac[s, 2, pc, t, qc], nl)
            s += 1
        if dq == 0:
            for k in range(n):
                for j in range(nt):
                    ob[k, j] = io[j, k]
        else:
            for j in range(nt):
                for k in range(n):
                    ob[j, k] = io[j, k]
    for k in range(n):
        for s in range(S):
            for i in range(K):
                z[p0 + k * dp, q0 + k * dq, s, i] = st[s * R + i, k]


@inline
def _sos_lanes(st, io, j, r, b0, b1, b2, a1, a2, nl):
    """One second-order section, one sample, every lane; coefficients shared."""
    for k in range(nl):
        v = io[j, k]
        y = b0 * v + st[r, k]
        st[r, k] = b1 * v - a1 * y + st[r + 1, k]
        st[r + 1, k] = b2 * v - a2 * y
        io[j, k] = y


@inline
def _sos2_lanes(st, io, j, r, b0, b1, b2, a1, a2, c0, c1, c2, d1, d2, nl):
    """Two consecutive second-order sections, one sample, every lane; coefficients shared."""
    for k in range(nl):
        v = io[j, k]
        y = b0 * v + st[r, k]
        st[r, k] = b1 * v - a1 * y + st[r + 1, k]
        st[r + 1, k] = b2 * v - a2 * y
        w = c0 * y + st[r + 2, k]
        st[r + 2, k] = c1 * y - d1 * w + st[r + 3, k]
        st[r + 3, k] = c2 * y - d2 * w
        io[j, k] = w


@inline
def _gen_lanes_v(st, io, j, r, yr, K, nl):
    """One section of order K, one sample, every lane; coefficients per lane."""
    for k in range(nl):
        st[yr, k] = st[r + K, k] * io[j, k] + st[r, k]
    for i in range(K - 1):
        for k in range(nl):
            st[r + i, k] = st[r + K + i + 1, k] * io[j, k] - st[r + 2 * K + i + 1, k] * st[yr, k] \
                + st[r + i + 1, k]
    for k in range(nl):
        st[r + K - 1, k] = st[r + 2 * K, k] * io[j, k] - st[r + 3 * K, k] * st[yr, k]
        io[j, k] = st[yr, k]


def _make_lanes(K):
    """One section of the constant order ``K``, one sample, every lane, coefficients in
    rows, as one loop over the lanes with ``x`` and ``y`` in registers.

    The body is generated with one statement per state: a loop over the states
    would have to be unrolled by LLVM before the lane loop vectorises, which it
    does for some orders and not others (measured: 4, 5, 6 and 8, not 7).
    """
    lines = ["def lanes(sec, io, j, nl):",
             "    for k in range(nl):",
             "        v = io[j, k]",
             f"        y = sec[{K}, k] * v + sec[0, k]"]
    for i in range(K - 1):
        lines.append(f"        sec[{i}, k] = sec[{K + i + 1}, k] * v - sec[{2 * K + i + 1}, k] * y"
                     f" + sec[{i + 1}, k]")
    lines.append(f"        sec[{K - 1}, k] = sec[{2 * K}, k] * v - sec[{3 * K}, k] * y")
    lines.append("        io[j, k] = y")
    namespace = {}
    exec("\n".join(lines), namespace)   # noqa: S102 (generated from the constant K only)
    namespace["lanes"].__qualname__ = namespace["lanes"].__name__ = f"_lanes_k{K}"
    return inline(namespace["lanes"])


_lanes_k1 = _make_lanes(1)
_lanes_k2 = _make_lanes(2)
_lanes_k3 = _make_lanes(3)
_lanes_k4 = _make_lanes(4)
_lanes_k5 = _make_lanes(5)
_lanes_k6 = _make_lanes(6)
_lanes_k7 = _make_lanes(7)
_lanes_k8 = _make_lanes(8)


@inline
def _bcast_coefs(st, bc, ac, s, r, K, pc, qc, t, nl):
    """Broadcast section ``s``'s shared coefficients of sample ``t`` into its rows of ``st``."""
    for i in range(K + 1):
        c = bc[s, i, pc, t, qc]
        for k in range(nl):
            st[r + K + i, k] = c
    for i in range(1, K + 1):
        c = ac[s, i, pc, t, qc]
        for k in range(nl):
            st[r + 2 * K + i, k] = c


@inline
def _lane_coefs(st, bc, ac, s, r, K, p0, q0, dp, dq, cp, cq, n, t):
    """Gather section ``s``'s coefficients of sample ``t`` into its rows of ``st``."""
    for i in range(K + 1):
        for k in range(n):
            st[r + K + i, k] = bc[s, i, (p0 + k * dp) * cp, t, (q0 + k * dq) * cq]
    for i in range(1, K + 1):
        for k in range(n):
            st[r + 2 * K + i, k] = ac[s, i, (p0 + k * dp) * cp, t, (q0 + k * dq) * cq]
