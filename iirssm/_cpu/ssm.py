"""Fused kernel for a bank of diagonal state-space systems (modal IIR filters).

For every channel and mode ``m`` (``M`` modes per channel), with the modal state
scaled so that its input coefficient ``beta`` is 1 (or 0 for a mode that takes
no input)::

    g[m, t] = lam[m] * g[m, t-1] + beta[m] * x[t]          (complex state)
    y[t]    = d * x[t] + sum_m w[m] * g[m, t]               (real part only for real output)

The front-end maps the user's modal states ``h = B * g`` and read-out ``C`` onto
this form (``w = C * B``, doubled for one mode of a conjugate pair whose partner
is skipped). The form costs 12 floating-point operations per mode and sample
for a real output, against 14 for the unscaled ``h``.

No ``(M, L)`` array is formed: the ``M`` complex states of a channel stay in a
small local array while time is walked.

Layout and vectorisation. The input is the ``(P, L, Q)`` work view of
``_arraytools``. A *job* is a tile of ``LANES`` channels: consecutive rows ``p``
when ``Q == 1`` (time contiguous), else consecutive channels ``q`` of one ``p``
(time-major). A job copies ``T_BLOCK`` samples of its channels into a
transposed buffer (lanes contiguous), advances every mode of every lane through
those samples with loops whose innermost index is the lane, and copies the
outputs back. Each lane's sums run over the modes in the same order as a
one-channel loop would, so nothing is reassociated. Numba leaves LLVM's SLP
vectoriser off, so the lane loops are written for the *loop* vectoriser: the
trip count is a run-time value (``n_lanes``, a constant loop would be fully
unrolled into scalar code first), all coefficients and states of a job live in
one local array whose row distances are compile-time constants, and the I/O
blocks in a second one, so a single run-time alias check guards the vector
loop. Measured on the development machine (AVX-512, no FMA contraction since
kernels keep IEEE semantics), one core: 8 complex modes (a 16th-order filter)
cost ~6.4 ns per sample, ~0.8 ns per mode and sample, where the same loop
compiled to scalar code took ~20 ns. The arithmetic, not memory, is the bound.
The job body is a plain function called from the ``prange`` loop: compiled
inside the parallel region it ran ~1.5x slower.

In the time-major layout the lanes of a job are contiguous channels of one row
of ``x`` and of the output already; a full tile of a real system on a real
signal (``case`` 0, the common one) reads and writes those rows in place
(``row_view3``), without the transposed buffer. The arithmetic and its order
are those of the buffered loop, so results are bitwise the same; measured on the
2-core VM (AVX2), C-ordered (n, 64) float64 along axis 0, butter(16) as 8 modes,
two threads: 0.63x the time in cache ((20000, 64)), 0.74x on (10^6, 64), where
the fresh output's page faults are a fixed part. The other cases, and a partial
last tile, keep the buffer.

A partial tile pads its unused lanes with zeros and discards them. Jobs run in
parallel (``prange``); the work of a channel never depends on the number of
threads, so results are reproducible.

Real and complex data share one source: inputs and outputs are passed as
separate real and imaginary arrays, and ``case`` says which exist:
0 real input and real output (a real system), 1 real input and complex output,
2 complex input and complex output (a dummy array stands in for a missing part).

Coefficients come as ``(Pc, Qc, M)`` arrays where ``Pc`` is 1 or ``P`` and ``Qc``
is 1 or ``Q`` (a bank of systems varying over some channel dimensions only).
"""

import numpy as np

from ._jit import inline, jit, kernel, prange, row_view3, transpose_blocks

__all__ = ["SSM_LANES", "T_BLOCK", "ssm_scan"]

#: channels advanced together by one job. The loop vectoriser needs a trip count
#: of at least its vector width times its interleave (8 x 2 float64 on AVX-512).
SSM_LANES = 16
#: samples per block of the transposed I/O buffers (4 x T_BLOCK x SSM_LANES values).
T_BLOCK = 64

# rows of a job's coefficient/state array st[m, row, lane]
_LR, _LI, _BETA, _WR, _WI, _GR, _GI = 0, 1, 2, 3, 4, 5, 6
_ROWS = 8
# rows of a job's I/O array io[s, row, lane]
_UR, _UI, _YR, _YI = 0, 1, 2, 3


@kernel(writes=("g_r", "g_i", "yr", "yi"))
def ssm_scan(xr, xi, lam_r, lam_i, beta, w_r, w_i, d_r, d_i, g_r, g_i, yr, yi, case, free,
             n_lanes):
    """Run the modal recurrence over ``(P, L, Q)``.

    ``xr``/``xi``: input parts (``xi`` read only if ``case == 2``); ``lam_*``,
    ``beta``, ``w_*``: ``(Pc, Qc, M)``; ``d_*``: ``(Pc, Qc)``; ``g_r``/``g_i``:
    ``(P, Q, M)`` initial states, overwritten with the final states;
    ``yr``/``yi``: outputs (``yi`` written only if ``case > 0``). With ``free``
    the input is taken as zero (``xr``/``xi`` are not read; they only give the
    shape) and the outputs are *added* to ``yr``/``yi``: the free response of the
    initial states, used by the time-chunked scan. ``n_lanes`` must equal
    ``SSM_LANES`` (it is passed at run time on purpose, see the module docstring).
    """
    P, _, Q = xr.shape
    if Q == 1:
        njobs = (P + SSM_LANES - 1) // SSM_LANES
    else:
        njobs = P * ((Q + SSM_LANES - 1) // SSM_LANES)
    for job in prange(njobs):
        # an intp index (the parallel loop index is unsigned: a second compilation of _job)
        _job(np.intp(job), xr, xi, lam_r, lam_i, beta, w_r, w_i, d_r, d_i, g_r, g_i, yr, yi, case,
             free, n_lanes)


@jit
def _job(job, xr, xi, lam_r, lam_i, beta, w_r, w_i, d_r, d_i, g_r, g_i, yr, yi, case, free,
         n_lanes):
    """One tile of ``SSM_LANES`` channels, all of time (a plain function: compiled
    outside the parallel region, it vectorises as well as the serial code)."""
    P, L, Q = xr.shape
    M = g_r.shape[2]
    cp = 1 if lam_r.shape[0] > 1 else 0
    cq = 1 if lam_r.shape[1] > 1 else 0
    dt = xr.dtype
    cin = case == 2
    cout = case > 0
    # the channels of this job are (p0 + k*dp, q0 + k*dq) for lanes k < n
    if Q == 1:
        p0 = job * SSM_LANES
        q0 = 0
        dp = 1
        dq = 0
        n = min(SSM_LANES, P - p0)
    else:
        per_p = (Q + SSM_LANES - 1) // SSM_LANES
        p0 = job // per_p
        q0 = (job % per_p) * SSM_LANES
        dp = 0
        dq = 1
        n = min(SSM_LANES, Q - q0)
    st = np.zeros((M, _ROWS, SSM_LANES), dtype=dt)
    dd = np.zeros((2, SSM_LANES), dtype=dt)
    io = np.zeros((T_BLOCK, 4, SSM_LANES), dtype=dt)
    for k in range(n):
        p = p0 + k * dp
        q = q0 + k * dq
        pc = p * cp
        qc = q * cq
        dd[0, k] = d_r[pc, qc]
        dd[1, k] = d_i[pc, qc]
        for m in range(M):
            st[m, _LR, k] = lam_r[pc, qc, m]
            st[m, _LI, k] = lam_i[pc, qc, m]
            st[m, _BETA, k] = beta[pc, qc, m]
            st[m, _WR, k] = w_r[pc, qc, m]
            st[m, _WI, k] = w_i[pc, qc, m]
            st[m, _GR, k] = g_r[p, q, m]
            st[m, _GI, k] = g_i[p, q, m]
    # time-major, a full tile, real: the lanes are contiguous in x and y already
    in_place = Q > 1 and n == n_lanes and case == 0 and not free
    if in_place:
        for t in range(L):
            xrow = row_view3(xr, p0, t, q0)
            yrow = row_view3(yr, p0, t, q0)
            for k in range(n_lanes):
                yrow[k] = dd[0, k] * xrow[k]
            for m in range(M):
                for k in range(n_lanes):
                    a, c = _advance(st, m, k, xrow[k])
                    yrow[k] += st[m, _WR, k] * a - st[m, _WI, k] * c
    for t0 in range(0, 0 if in_place else L, T_BLOCK):   # the buffered blocks
        nt = min(T_BLOCK, L - t0)
        # gather the block of every lane, transposed (lanes contiguous); a free
        # response keeps the zero input the buffer was created with
        if not free:
            _gather(io, _UR, xr, p0, q0, dp, dq, n, t0, nt)
            if cin:
                _gather(io, _UI, xi, p0, q0, dp, dq, n, t0, nt)
        for s in range(nt):
            # direct term
            if cin:
                for k in range(n_lanes):
                    io[s, _YR, k] = dd[0, k] * io[s, _UR, k] - dd[1, k] * io[s, _UI, k]
                    io[s, _YI, k] = dd[1, k] * io[s, _UR, k] + dd[0, k] * io[s, _UI, k]
            elif cout:
                for k in range(n_lanes):
                    io[s, _YR, k] = dd[0, k] * io[s, _UR, k]
                    io[s, _YI, k] = dd[1, k] * io[s, _UR, k]
            else:
                for k in range(n_lanes):
                    io[s, _YR, k] = dd[0, k] * io[s, _UR, k]
            # the modes, in order
            if case == 0:
                for m in range(M):
                    for k in range(n_lanes):
                        a, c = _advance(st, m, k, io[s, _UR, k])
                        io[s, _YR, k] += st[m, _WR, k] * a - st[m, _WI, k] * c
            elif case == 1:
                for m in range(M):
                    for k in range(n_lanes):
                        a, c = _advance(st, m, k, io[s, _UR, k])
                        io[s, _YR, k] += st[m, _WR, k] * a - st[m, _WI, k] * c
                        io[s, _YI, k] += st[m, _WR, k] * c + st[m, _WI, k] * a
            else:
                for m in range(M):
                    for k in range(n_lanes):
                        gr = st[m, _GR, k]
                        gi = st[m, _GI, k]
                        lr = st[m, _LR, k]
                        li = st[m, _LI, k]
                        a = lr * gr - li * gi + st[m, _BETA, k] * io[s, _UR, k]
                        c = lr * gi + li * gr + st[m, _BETA, k] * io[s, _UI, k]
                        st[m, _GR, k] = a
                        st[m, _GI, k] = c
                        io[s, _YR, k] += st[m, _WR, k] * a - st[m, _WI, k] * c
                        io[s, _YI, k] += st[m, _WR, k] * c + st[m, _WI, k] * a
        # scatter the outputs back (added to them for a free response)
        _scatter(yr, io, _YR, p0, q0, dp, dq, n, t0, nt, free)
        if cout:
            _scatter(yi, io, _YI, p0, q0, dp, dq, n, t0, nt, free)
    for k in range(n):
        p = p0 + k * dp
        q = q0 + k * dq
        for m in range(M):
            g_r[p, q, m] = st[m, _GR, k]
            g_i[p, q, m] = st[m, _GI, k]


@inline
def _advance(st, m, k, u):
    """Mode ``m`` of lane ``k`` one sample on, from a real input ``u``; returns the new
    state ``(re, im)``."""
    gr = st[m, _GR, k]
    gi = st[m, _GI, k]
    lr = st[m, _LR, k]
    li = st[m, _LI, k]
    a = lr * gr - li * gi + st[m, _BETA, k] * u
    c = lr * gi + li * gr
    st[m, _GR, k] = a
    st[m, _GI, k] = c
    return a, c


@jit
def _gather(io, row, x, p0, q0, dp, dq, n, t0, nt):
    """io[s, row, k] = x[p0 + k*dp, t0 + s, q0 + k*dq]: along time for rows (dq == 0),
    across the contiguous channels for the time-major layout."""
    if dq == 0:
        if n == SSM_LANES and nt % 16 == 0 and transpose_blocks(
                x, p0 * x.shape[1] + t0, x.shape[1], io, row * SSM_LANES, 4 * SSM_LANES, n, nt):
            return
        for k in range(n):
            for s in range(nt):
                io[s, row, k] = x[p0 + k * dp, t0 + s, q0]
    else:
        for s in range(nt):
            for k in range(n):
                io[s, row, k] = x[p0, t0 + s, q0 + k]


@jit
def _scatter(y, io, row, p0, q0, dp, dq, n, t0, nt, add):
    """The inverse of :func:`_gather` (``y += ...`` when ``add``)."""
    if dq == 0:
        if not add and n == SSM_LANES and nt % 16 == 0 and transpose_blocks(
                io, row * SSM_LANES, 4 * SSM_LANES, y, p0 * y.shape[1] + t0, y.shape[1], nt, n):
            return
        for k in range(n):
            for s in range(nt):
                if add:
                    y[p0 + k * dp, t0 + s, q0] += io[s, row, k]
                else:
                    y[p0 + k * dp, t0 + s, q0] = io[s, row, k]
    else:
        for s in range(nt):
            for k in range(n):
                if add:
                    y[p0, t0 + s, q0 + k] += io[s, row, k]
                else:
                    y[p0, t0 + s, q0 + k] = io[s, row, k]
