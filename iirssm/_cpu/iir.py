"""Cascades of direct-form II transposed sections: ``lfilter`` (one section of order K)
and ``sosfilt`` (S sections of order 2) share this one kernel source.

Per section ``s`` and sample ``t`` (coefficients already divided by ``a0``)::

    y      = b[0] x + z[0]
    z[i]   = z[i+1] + b[i+1] x - a[i+1] y      (i = 0 .. K-2; lfilter's order)
    z[i]   = b[i+1] x - a[i+1] y + z[i+1]      (sosfilt's order)
    z[K-1] = b[K] x - a[K] y

and ``y`` is the next section's ``x``. Coefficients may change every sample
(they act on the sample they multiply: the state ``z`` carries products formed
with earlier samples' coefficients), which for fixed coefficients is exactly
scipy's ``lfilter``/``sosfilt``. The two orders of the middle sum are scipy's own
(``_lfilter.cc`` sums ``z + b x - a y``, ``_sosfilt.pyx`` ``b x - a y + z``); the
type of the kernel's ``spec`` argument picks one (:func:`cascade_spec`). With
multiply-adds fused (``fma=True``) lfilter's order is two fused operations per
state and sosfilt's three (a product, a fused multiply-subtract, an add), so
lfilter's is also the faster one. Keeping each
function's own order keeps results within the tolerance table of scipy's for
long cascades: summing a 10-section complex64 cascade in lfilter's order moved it
outside (tests/test_lfilter.py).

Layout and vectorisation (the scheme of ``ssm.py``). The input is the ``(P, L, Q)``
work view of ``_arraytools``; coefficients are ``(S, K+1, Pc, Lc, Qc)`` with each
of ``Pc``, ``Lc``, ``Qc`` 1 or full; states are ``(P, Q, S, K)``. A *job* is a
tile of ``n_lanes`` channels: consecutive rows ``p`` when ``Q == 1`` (time
contiguous), else consecutive channels ``q`` of one ``p`` (time-major). A job
runs ``T_BLOCK`` samples at a time through the cascade *section by section*
(each section over all the block's samples). For rows it transposes the block
into a buffer with the lanes contiguous, and back. The time-major layout has its
lanes contiguous already: with coefficients shared by the lanes, the first
section reads the rows of ``x`` and the last one writes the rows of ``out``, the
sections between them working in the buffer (measured on the 2-core VM,
(100000, 64) float64, output preallocated, butter(4): 1.35 -> 0.85 ns per sample
for lfilter, 1.29 -> 0.85 for sosfilt, against copying each block in and out);
with coefficients in rows the block is copied in and out. Every lane loop is a
plain loop over a run-time number of lanes (a constant one would be unrolled
into scalar code first: Numba leaves LLVM's SLP vectoriser off) over one local
state array with a compile-time lane stride, so that LLVM's loop vectoriser
turns it into packed multiply-adds (``vfmadd...pd`` on ymm registers with AVX2)
behind one run-time alias check. The block's input and output are indexed
through 2-D views whose indices come from ``range`` loops only, which spares
the wraparound checks of negative indices in the copy loops.

Coefficients:

* coefficients shared by a job's lanes (fixed 1-D ``b``/``a`` or ``sos``,
  coefficients that vary only over dimensions that are not the lanes',
  time-varying ones that are the same for every channel), for sections of order
  up to :data:`MAX_UNROLLED`, are copied into a small array ``cf`` (once per job
  when fixed, once per sample when they vary in time) and read from it into
  locals before each lane loop (``_make_shared``), so the loop holds them in
  registers; two consecutive second-order sections of ``sosfilt`` share one lane
  loop, the first one's output staying in a register. For real dtypes these loops
  are :func:`~iirssm._cpu.iir_vec.cascade_block`'s vector code (the same
  operations, bit for bit), which runs a group of lanes through all of a block's
  samples with the states in registers: always in place on the block buffer, and
  between ``x`` and ``out`` (time-major) where one group holds all of the job's
  lanes. Where it would take several groups, each group would stream the job's
  rows from memory again, and on the AVX-512 VM two passes over half rows cost
  more than the registers saved (a plain copy by half rows, per 64-row block:
  1.9x the time of one pass); there the generated loops run, one pass per block;
* otherwise (coefficients that differ between lanes, or orders above 8) they
  live in rows of the state array, gathered (or broadcast) once, or once per
  sample when they vary in time. Orders 1 to 8 then run one generated lane loop
  per section and sample (``_make_lanes``); higher orders run one lane loop per
  state.

Memory. A job alternates between copying a block in or out and computing on it,
and the hardware prefetchers do not run far enough ahead to keep memory busy
while it computes: during its first section each block asks for the next
block's input and its own output lines (``prefetch``), spread over the block's
samples. Measured on the 2-core AMD EPYC VM, butter(4), output preallocated:
time-major (400000, 64) 1.8-1.9 -> 1.5 ns per sample; rows unchanged. The
buffers' rows are :data:`LANE_STRIDE` long (a 64-byte line more than the lanes).

Unused lanes of a partial tile run on zeros and are discarded. Jobs run in
parallel (``prange``); the work of a channel never depends on the number of
threads or on the number of lanes, so results are reproducible.

Compilation. The generated bodies are 29 (orders 1 to 8 in lfilter's summing
order and order 2 in sosfilt's, one or two sections per lane loop; in place,
direct and per-lane), and Numba inlines each at its call site. A kernel holding
all of them took 78-115 s to compile per dtype. So the kernel takes a ``spec``
argument (:func:`cascade_spec`) whose *type* names the section order and the
summing order, and the three dispatchers (``_make_dispatch``) are Numba
overloads that generate and compile only the bodies of that order: a version of
the kernel per dtype and order up to :data:`MAX_UNROLLED` (plus one for
sosfilt's order), and one shared by every higher order, which runs the generic
loop. Each compiles in 13-36 s on the 2-core VM, and the code of the lane loops
is the code they had in the kernel with every body (same outputs, bitwise, and
the same speed: ``docs/performance.md``, "Compilation").
"""

import functools

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

from ._jit import (data_address, inline, jit, kernel, prange, prefetch, row_view,
                   transpose_blocks)
from .iir_vec import cascade_block, group_lanes

__all__ = ["df2t", "cascade_lanes", "cascade_spec", "MAX_LANES", "T_BLOCK"]

#: lane stride of a job's local arrays (the largest ``n_lanes``).
MAX_LANES = 64
#: samples per block of a job's I/O buffer (T_BLOCK x LANE_STRIDE values).
T_BLOCK = 64
#: row length of a job's local arrays: MAX_LANES plus one 64-byte line (float64), so
#: that consecutive rows do not map to the same few L1 sets (rows of exactly 512
#: bytes made the transposing copies of the row layout 10-20 % slower).
LANE_STRIDE = MAX_LANES + 8
#: highest section order with generated, fully unrolled lane loops (higher orders run
#: one lane loop per state, ``_gen_lanes_v``).
MAX_UNROLLED = 8


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


def cascade_spec(K: int, lf: bool) -> tuple:
    """The ``spec`` argument of :func:`df2t` for sections of order ``K`` summed in
    ``lfilter``'s order (``lf``) or ``sosfilt``'s: ``K`` ints or ``K`` floats up to
    :data:`MAX_UNROLLED`, else empty (only the generic loop is needed)."""
    if K > MAX_UNROLLED:
        return ()
    return (0,) * K if lf else (0.0,) * K


@kernel(fma=True, writes=("z", "out"))
def df2t(bc, ac, x, z, out, n_lanes, spec):
    """Filter ``(P, L, Q)`` through the section cascade into ``out``.

    ``bc``/``ac``: ``(S, K+1, Pc, Lc, Qc)`` (``a`` without its first row used);
    ``z``: ``(P, Q, S, K)`` initial states, overwritten with the final states.
    ``n_lanes`` (at most :data:`MAX_LANES`) is passed at run time on purpose
    (see the module docstring). ``spec``: :func:`cascade_spec` of the sections'
    order and summing order (scipy ``lfilter``'s or ``sosfilt``'s); its type
    selects the generated lane loops compiled into this version of the kernel.
    """
    P, L, Q = x.shape
    K = bc.shape[1] - 1
    if K < 1 or (K <= MAX_UNROLLED and len(spec) != K):
        raise ValueError("df2t: spec does not match the order of the sections (at least 1)")
    if Q == 1:
        njobs = (P + n_lanes - 1) // n_lanes
    else:
        njobs = P * ((Q + n_lanes - 1) // n_lanes)
    for job in prange(njobs):
        # an intp index: the parallel variant's loop index is unsigned, and _job would be
        # compiled a second time for it (one compilation of _job is 15-30 s)
        _job(np.intp(job), bc, ac, x, z, out, n_lanes, spec)


@jit(fma=True)
def _job(job, bc, ac, x, z, out, nl, spec):
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
    # rows (they differ between lanes, or the order is above MAX_UNROLLED: then the
    # shared coefficients are broadcast into the rows); else the shared coefficients
    # are in cf, one row per sample of a block when they vary in time
    in_rows = per_lane or K > MAX_UNROLLED
    R = 3 * K + 1 if in_rows else K
    yr = S * R                       # one scratch row: a section's outputs (order K > 8)
    st = np.zeros((S * R + 1, LANE_STRIDE), dtype=z.dtype)
    io = np.zeros((T_BLOCK, LANE_STRIDE), dtype=out.dtype)
    cf = np.zeros((T_BLOCK if ct == 1 and not in_rows else 1, 0 if in_rows else S * (2 * K + 1)),
                  dtype=z.dtype)
    for k in range(n):
        for s in range(S):
            for i in range(K):
                st[s * R + i, k] = z[p0 + k * dp, q0 + k * dq, s, i]
    pc = p0 * cp                     # a shared coefficient's channel (not per_lane)
    qc = q0 * cq
    if ct == 0:
        for s in range(S):
            if not in_rows:
                _fill_cf(cf, 0, bc, ac, s, 1, K, pc, 0, qc)
            elif per_lane:
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
            # whole 16 x 16 blocks by transposes: as a loop, one element per load and
            # store (docs/performance.md)
            if not (n % 16 == 0 and nt % 16 == 0
                    and transpose_blocks(x, p0 * L + t0, L, io, 0, LANE_STRIDE, n, nt)):
                for k in range(n):
                    for j in range(nt):
                        io[j, k] = xb[k, j]
        elif in_rows:
            # time-major with coefficients in rows: a plain copy (with shared ones, the
            # first section reads x and the last one writes out directly)
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
                    if s == 0:
                        _prefetch_step(x, out, p0, q0, n, dq, t0, j)
                    if ct == 1:
                        if per_lane:
                            _lane_coefs(st, bc, ac, s, r, K, p0, q0, dp, dq, cp, cq, n, t0 + j)
                        else:
                            _bcast_coefs(st, bc, ac, s, r, K, pc, qc, t0 + j, nl)
                    if K <= MAX_UNROLLED:
                        _rows_lanes(sec, io, j, nl, spec)
                    else:
                        _gen_lanes_v(st, io, j, r, yr, K, nl)
            else:
                # coefficients shared by the lanes; two second-order sections per lane
                # loop where there are two (the first one's output stays in a register)
                G = 2 if _sos_pairs(spec) and s + 1 < S else 1
                sec = st[r:r + G * K]
                if ct == 1:
                    for j in range(nt):
                        _fill_cf(cf, j, bc, ac, s, G, K, pc, t0 + j, qc)
                cfs = cf[:, s * (2 * K + 1):(s + G) * (2 * K + 1)]
                if dq == 1 and (s == 0 or s + G >= S):
                    # time-major: the first section reads its rows of x, the last one
                    # writes its rows of out, with no copy through io (one call site:
                    # the dispatch is inlined at each)
                    if s == 0:
                        src, rs, cs = x[p0], t0, q0
                    else:
                        src, rs, cs = io, 0, 0
                    if s + G >= S:
                        dst, rd, cd = out[p0], t0, q0
                    else:
                        dst, rd, cd = io, 0, 0
                    _direct_lanes(sec, src, rs, cs, dst, rd, cd, nt, cfs, ct, n, s == 0, x,
                                  out, p0, q0, n, dq, t0, spec, G)
                else:
                    _shared_lanes(sec, io, nt, cfs, ct, nl, s == 0, x, out, p0, q0, n, dq,
                                  t0, spec, G)
                s += G - 1
            s += 1
        if dq == 0:
            if not (n % 16 == 0 and nt % 16 == 0
                    and transpose_blocks(io, 0, LANE_STRIDE, out, p0 * L + t0, L, nt, n)):
                for k in range(n):
                    for j in range(nt):
                        ob[k, j] = io[j, k]
        elif in_rows:
            for j in range(nt):
                for k in range(n):
                    ob[j, k] = io[j, k]
    for k in range(n):
        for s in range(S):
            for i in range(K):
                z[p0 + k * dp, q0 + k * dq, s, i] = st[s * R + i, k]


def _section_lines(K, z, c, lf):
    """Statements of one section of order K: input ``v``, output ``y``; ``z(i)`` and
    ``c(i)`` name state i and coefficient i (b0..bK, then a1..aK). ``lf``: scipy's
    ``lfilter`` order, else its ``sosfilt`` order (module docstring)."""
    lines = [f"y = {c(0)} * v + {z(0)}"]
    for i in range(K - 1):
        if lf:
            lines.append(f"{z(i)} = {z(i + 1)} + {c(i + 1)} * v - {c(K + i + 1)} * y")
        else:
            lines.append(f"{z(i)} = {c(i + 1)} * v - {c(K + i + 1)} * y + {z(i + 1)}")
    lines.append(f"{z(K - 1)} = {c(K)} * v - {c(2 * K)} * y")
    return lines


def _compile(lines, name, namespace=None):
    ns = dict(namespace or {})
    exec("\n".join(lines), ns)   # noqa: S102 (generated from constants only)
    f = ns[lines[0].split()[1].split("(")[0]]
    f.__qualname__ = f.__name__ = name
    return inline(f)


_SHARED_ARGS = "sec, io, nt, cf, tv, nl, pf, x, out, p0, q0, nj, dq, t0"
_DIRECT_ARGS = "sec, src, rs, cs, dst, rd, cd, nt, cf, tv, nl, pf, x, out, p0, q0, nj, dq, t0"


@functools.cache   # one generated body per key and process, shared by the versions
def _make_shared(K, G, lf, direct=False):
    """G consecutive sections of order K, every sample of a block, every lane; the
    coefficients, shared by the lanes, are read from row ``j * tv`` of ``cf`` into
    locals before each sample's lane loop (loads from ``cf`` inside it would keep
    LLVM from vectorising the loop). The loop over the block's samples is in here
    (not in the caller) so that the dispatch on (K, G, lf) is paid once per block:
    a lane loop is only 4-16 vector iterations long. ``pf``: also issue the block's
    prefetches (``_prefetch_step``).

    ``direct=False``: in place on the block buffer ``io``. ``direct=True``: from rows
    ``rs + j`` (columns from ``cs``) of the 2-D ``src`` to rows ``rd + j`` of ``dst``,
    so that the time-major layout is filtered straight from ``x`` into ``out``. The
    two never share a body: with ``src`` and ``dst`` the same array, LLVM's run-time
    overlap check would fail and run the lane loop unvectorised.
    """
    n = 2 * K + 1
    lines = [f"def shared({_DIRECT_ARGS if direct else _SHARED_ARGS}):",
             "    for j in range(nt):",
             "        if pf:",
             "            prefetch_step(x, out, p0, q0, nj, dq, t0, j)",
             "        jc = j * tv"]
    if direct:
        # a 1-D C-contiguous row of each: the lane loop then indexes with k alone
        # (row_view: pointer arithmetic, without a slice's bookkeeping every sample)
        lines += ["        srow = row_view(src, rs + j, cs)",
                  "        drow = row_view(dst, rd + j, cd)"]
        load, store = "srow[k]", "drow[k]"
    else:
        load = store = "io[j, k]"
    lines += [f"        c{i} = cf[jc, {i}]" for i in range(G * n)]
    lines += ["        for k in range(nl):", f"            v = {load}"]
    for g in range(G):
        body = _section_lines(K, lambda i, g=g: f"sec[{g * K + i}, k]",
                              lambda i, g=g: f"c{g * n + i}", lf)
        lines += ["            " + s for s in body] + ["            v = y"]
    lines.append(f"            {store} = v")
    name = f"_{'direct' if direct else 'shared'}_k{K}_g{G}_{'lf' if lf else 'sos'}"
    return _compile(lines, name, {"prefetch_step": _prefetch_step, "row_view": row_view})


@functools.cache
def _make_lanes(K, lf):
    """One section of order K, one sample, every lane, coefficients in rows of ``sec``
    (states 0..K-1, b0..bK at K..2K, a1..aK at 2K+1..3K).

    The bodies are generated with one statement per state: a loop over the states
    would have to be unrolled by LLVM before the lane loop vectorises, which it
    does for some orders and not others (measured: 4, 5, 6 and 8, not 7).
    """
    lines = ["def lanes(sec, io, j, nl):", "    for k in range(nl):", "        v = io[j, k]"]
    lines += ["        " + s for s in _section_lines(K, lambda i: f"sec[{i}, k]",
                                                    lambda i: f"sec[{K + i}, k]", lf)]
    lines.append("        io[j, k] = y")
    return _compile(lines, f"_lanes_k{K}_{'lf' if lf else 'sos'}")


def _make_dispatch(kind):
    """A function callable from the kernel, ``f(<_make_shared's arguments>, spec, G)``
    ("shared": in place; "direct") or ``f(sec, io, j, nl, spec)`` ("rows", the
    ``_make_lanes`` bodies), that runs the generated body for the order and summing
    order that the *type* of ``spec`` (:func:`cascade_spec`) gives: ``K`` ints,
    lfilter's order; ``K`` floats, sosfilt's (order 2, one or two sections by ``G``
    at run time); an empty ``spec`` (orders above :data:`MAX_UNROLLED`) runs none of
    them. The choice is made while the kernel is compiled, and only the bodies it
    needs are generated and compiled (module docstring, "Compilation")."""
    rows = kind == "rows"
    args = "sec, io, j, nl" if rows else (_DIRECT_ARGS if kind == "direct" else _SHARED_ARGS)
    params = f"{args}, spec" if rows else f"{args}, spec, G"
    ns = {}
    exec(f"def {kind}_lanes({params}):\n    pass", ns)   # noqa: S102 (a stub)
    stub = ns[f"{kind}_lanes"]

    def typer(*types_):
        spec = types_[-1 if rows else -2]
        K = spec.count if isinstance(spec, types.UniTuple) else 0
        lf = K == 0 or isinstance(spec.dtype, types.Integer)
        if K == 0:
            # never run: orders above MAX_UNROLLED take the generic loop, and df2t
            # rejects a spec that does not match the order of its sections
            lines = [f"def impl({params}):", "    pass"]
            ns = {}
        elif rows:
            lines = [f"def impl({params}):", f"    body({args})"]
            ns = {"body": _make_lanes(K, lf)}
        elif isinstance(types_[0].dtype, types.Float):
            # real dtypes: iir_vec's vector code (the same operations), in place on the
            # block buffer, or between x and out where one lane group is the whole job
            # (several groups would each stream the job's rows again: module docstring)
            if kind == "direct":
                call = "src, rs, cs, dst, rd, cd, nt, nl, cf, tv, pft, spec"
            else:
                call = "io, 0, 0, io, 0, 0, nt, nl, cf, tv, pft, spec"
            lines = [f"def impl({params}):"]
            ns = {"block": cascade_block, "prefetch_args": _prefetch_args}
            for g in ((1,) if lf else (2, 1)):
                gl = group_lanes(types_[0].dtype.bitwidth, g * K)
                if not lf:
                    lines.append(f"    {'if' if g == 2 else 'elif'} G == {g}:")
                ind = "    " if lf else "        "
                vec = ["pft = prefetch_args(pf, x, out, p0, q0, nj, dq, t0, nt)",
                       f"block(sec, {call}, {g})"]
                if kind == "shared":
                    lines += [ind + v for v in vec]
                else:
                    lines += [f"{ind}if nl <= {gl}:"] + [ind + "    " + v for v in vec]
                    lines += [f"{ind}else:", f"{ind}    body{g}({args})"]
                    ns[f"body{g}"] = _make_shared(K, g, lf, True)
        elif lf:
            lines = [f"def impl({params}):", f"    body({args})"]
            ns = {"body": _make_shared(K, 1, True, kind == "direct")}
        else:
            lines = [f"def impl({params}):", "    if G == 2:", f"        two({args})",
                     "    else:", f"        one({args})"]
            ns = {"two": _make_shared(K, 2, False, kind == "direct"),
                  "one": _make_shared(K, 1, False, kind == "direct")}
        exec("\n".join(lines), ns)   # noqa: S102 (generated from constants only)
        return ns["impl"]

    # the typer's parameters must be the stub's
    exec(f"def ov({params}):\n    return typer({params})", ns2 := {"typer": typer})  # noqa: S102
    overload(stub, inline="always")(ns2["ov"])
    return stub


def _sos_pairs(spec):
    """Whether ``spec`` (:func:`cascade_spec`) is sosfilt's, whose consecutive
    second-order sections share a lane loop in pairs: a constant of the compiled
    version (an overload, below)."""


@overload(_sos_pairs, inline="always")
def _ov_sos_pairs(spec):
    pairs = isinstance(spec, types.UniTuple) and isinstance(spec.dtype, types.Float)
    return lambda spec: pairs


@inline
def _gen_lanes_v(st, io, j, r, yr, K, nl):
    """One section of order K > MAX_UNROLLED, one sample, every lane; coefficients in
    rows; lfilter's order."""
    for k in range(nl):
        st[yr, k] = st[r + K, k] * io[j, k] + st[r, k]
    for i in range(K - 1):
        for k in range(nl):
            st[r + i, k] = st[r + i + 1, k] + st[r + K + i + 1, k] * io[j, k] \
                - st[r + 2 * K + i + 1, k] * st[yr, k]
    for k in range(nl):
        st[r + K - 1, k] = st[r + 2 * K, k] * io[j, k] - st[r + 3 * K, k] * st[yr, k]
        io[j, k] = st[yr, k]


@inline
def _fill_cf(cf, j, bc, ac, s, G, K, pc, t, qc):
    """The shared coefficients of sections ``s .. s+G-1`` at sample ``t`` into row ``j``
    of ``cf`` (``2K+1`` per section: b0..bK, a1..aK)."""
    for g in range(G):
        o = (s + g) * (2 * K + 1)
        for i in range(K + 1):
            cf[j, o + i] = bc[s + g, i, pc, t, qc]
        for i in range(K):
            cf[j, o + K + 1 + i] = ac[s + g, i + 1, pc, t, qc]


@inline
def _prefetch_step(x, out, p0, q0, n, dq, t0, j):
    """Step ``j`` of a block's first section: ask for the next block's input, and for
    this block's output (to be written), while the cascade computes. Time-major: row
    ``j`` of each (the job's ``n`` channels); rows: every line of lane ``j`` (steps
    ``j < n``). Spread over the steps so that few requests are in flight at once."""
    bx, sx, bo, so, lines, jmax = _prefetch_args(True, x, out, p0, q0, n, dq, t0, T_BLOCK)
    if j < jmax:
        for m in range(lines):
            prefetch(bx + j * sx + 64 * m, False)
            prefetch(bo + j * so + 64 * m, True)


@inline
def _prefetch_args(pf, x, out, p0, q0, n, dq, t0, nt):
    """The prefetches of a block of ``nt`` samples (:func:`_prefetch_step`) as
    ``(bx, sx, bo, so, lines, jmax)``: at step ``j < jmax``, ``lines`` lines from
    ``bx + j·sx`` and from ``bo + j·so`` (``cascade_block``'s ``pf``; none when not
    ``pf``)."""
    if not pf:
        return (0, 0, 0, 0, 0, 0)
    isz = x.itemsize
    sx0, sx1, sx2 = x.strides
    so0, so1, so2 = out.strides
    ax = data_address(x)
    ao = data_address(out)
    if dq == 1:
        return (ax + p0 * sx0 + (t0 + T_BLOCK) * sx1 + q0 * sx2, sx1,
                ao + p0 * so0 + t0 * so1 + q0 * so2, so1, (n * isz + 63) // 64, nt)
    return (ax + p0 * sx0 + (t0 + T_BLOCK) * sx1, sx0, ao + p0 * so0 + t0 * so1, so0,
            (T_BLOCK * isz + 63) // 64, min(n, nt))


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


_shared_lanes = _make_dispatch("shared")
_direct_lanes = _make_dispatch("direct")
_rows_lanes = _make_dispatch("rows")
