"""Parallel in time: a few long signals through one fixed cascade, in chunks side by side.

The cascade kernel (``iirssm/_cpu/iir.py``) runs channels side by side in vector
lanes. One long signal gives it one lane: a direct form cascade is then one
latency-bound chain of multiply-adds, 6-8 ns per sample whoever runs it. A
linear filter does not need its chunks in order, though. Over a chunk of
samples, the output is

    (response to the chunk's input from a zero state)
  + (response to no input from the state the chunk starts in),

and the second term, the zero-input response, is a linear combination of the
``M`` responses to unit states (``M`` = sections x order), which in a stable
filter decay geometrically. So :func:`run` cuts each signal into ``C`` chunks of
``n`` samples, filters all chunks from zero states at once as ``C`` lanes of the
ordinary kernel (the first chunk from the true initial state), and then adds to
the first samples of each later chunk the zero-input response of the state the
chunk before ended in: one matrix product with the unit-state responses ``G``
(``(n_decay, M)``, computed once per filter by the kernel itself, :func:`basis`).

What is neglected, and why it is rounding. The search runs until the state
left over from any unit state, times the largest state and response seen, is
below ``tol`` (the dtype's epsilon / 1024; ``Φ`` in :func:`_search`), and ``G``
is kept up to its last sample above ``tol x max|G|``. A chunk at least as long
as the search ran (and :data:`SETTLE` times ``G``) therefore starts from the
previous chunk's zero-state final state to within ``tol`` of the state's size,
and its correction is cut where it is below ``tol`` of its own peak: errors
about a thousandth of the rounding the sequential filter itself makes on states
of that size. The results differ from
the sequential ones by rounding, not bit for bit; they do not depend on the
thread count (the chunking depends only on the shapes and the filter).

Non-finite values: NaN or inf in a chunk makes its final state non-finite,
and from there the sequential filter's output is NaN to the end. The split
result would not be (the later chunks start from zero): :func:`run` then
reports failure and the caller filters sequentially.

Used by ``iirssm/_lfilter.py`` for fixed coefficients shared by all channels
when there are fewer than :data:`TARGET_LANES` channels (one channel of 10⁷,
or a C-ordered ``(n, 64)`` along axis 0) and the signal is long against the
filter's decay. Measured on the 2-core AVX-512 VM: ``docs/performance.md``,
"Parallel in time".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ._cpu._jit import LANES
from ._cpu.iir import cascade_lanes, df2t

__all__ = ["Split", "long_enough", "plan", "basis", "run", "TARGET_LANES", "MIN_CHUNK",
           "MIN_SPLIT", "SETTLE", "MAX_BASIS", "MAX_ORDER"]

#: Lanes a split aims at: enough for two full 64-lane jobs.
TARGET_LANES = 128
#: Shortest chunk: below this the kernel's per-block and the correction's fixed costs
#: are not repaid.
MIN_CHUNK = 4096
#: Shortest signal split: below it the per-signal fixed costs of a split (a kernel
#: call, the correction) are not repaid (seven rows of 8192 samples: 0.5 ms split,
#: 0.4 ms through scipy; of 20000: 0.8 against 0.9).
MIN_SPLIT = 16384
#: A chunk is at least this many times the length of the unit-state responses (the
#: correction re-reads and re-writes at most 1/SETTLE of the output), and at least
#: as long as the decay search ran.
SETTLE = 8
#: Highest section order split. Above it (long FIR filters through ``lfilter``) the
#: kernel's generic loop, which also runs the zero denominator, costs more per
#: sample than scipy's own loop: 101 taps on one channel of 2·10⁶, 64 ms split
#: against 42 ms; 31 taps, 24.5 against 29.5 ms (2 cores, a loaded machine).
MAX_ORDER = 32
#: Most values the decay search keeps (samples x unit states; 32 MB of float64):
#: filters whose responses need more are not split.
MAX_BASIS = 1 << 22
#: First block of the decay search.
_FIRST_BLOCK = 256

_BASIS_CACHE: dict = {}
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Split:
    chunks: int        # C: chunks per signal, filtered side by side
    n: int             # samples per chunk
    head: int          # samples before the first chunk, filtered first (L - C*n)
    G: np.ndarray      # (n_decay, M): responses to unit states


def _tol(dtype) -> float:
    return float(np.finfo(dtype).eps) / 1024


def basis(bw, aw, spec, dtype, cap):
    """Responses of the cascade to its ``M = S*K`` unit states, ``(n_decay, M)``, and
    the samples searched until the states had decayed; None when they have not
    decayed within ``cap`` samples (a slow or unstable filter).

    ``bw``/``aw``: the kernel's shared coefficients ``(S, K+1, 1, 1, 1)``. Cached per
    coefficients, dtype and ``spec`` (a search that failed is repeated only with a
    larger ``cap``). The search keeps at most :data:`MAX_BASIS` values.
    """
    cap = min(cap, MAX_BASIS // (bw.shape[0] * (bw.shape[1] - 1)))
    key = (bw.tobytes(), aw.tobytes(), bw.shape, np.dtype(dtype).str, spec)
    hit = _BASIS_CACHE.get(key)
    if hit is not None and (hit[0] is not None or hit[1] >= cap):
        return hit[0]
    found = _search(bw, aw, spec, dtype, cap)
    with _CACHE_LOCK:                        # callers may be threads (dask)
        while len(_BASIS_CACHE) >= _CACHE_SIZE:
            _BASIS_CACHE.pop(next(iter(_BASIS_CACHE)))
        _BASIS_CACHE[key] = (found, cap)
    return found


def _search(bw, aw, spec, dtype, cap):
    S, K = bw.shape[0], bw.shape[1] - 1
    M = S * K
    tol = _tol(dtype)
    z = np.zeros((1, M, S, K), dtype=dtype)
    z.reshape(M, M)[np.arange(M), np.arange(M)] = 1     # lane m starts in unit state m
    lanes = cascade_lanes(1, M, np.dtype(dtype).itemsize)
    blocks, total = [], 0
    gmax, phimax = 0.0, 1.0
    while total < cap:
        # blocks of a quarter of what was searched: the decay is found to within 25 %
        size = min(max(_FIRST_BLOCK, total // 4), cap - total)
        zeros = np.zeros((1, size, M), dtype=dtype)
        out = np.empty((1, size, M), dtype=dtype)
        df2t.serial(bw, aw, zeros, z, out, lanes, spec)
        blocks.append(out[0])
        total += size
        if not np.isfinite(out).all():
            return None
        gmax = max(gmax, float(np.abs(out).max()))
        # Φ: for each unit state, the 1-norm of the state it has become
        phi = float(np.abs(z[0]).reshape(M, M).sum(axis=1).max())
        phimax = max(phimax, phi)
        if phi * max(1.0, gmax, phimax) <= tol:
            G = np.concatenate(blocks)
            above = np.nonzero(np.abs(G).max(axis=1) > tol * gmax)[0]
            keep = int(above[-1]) + 1 if above.size else 1
            return np.ascontiguousarray(G[:keep]), total
    return None


def long_enough(L) -> bool:
    """Whether ``L`` samples could be split at all (:data:`MIN_SPLIT`)."""
    return L >= MIN_SPLIT


def plan(P, Q, L, bw, aw, spec, dtype):
    """The :class:`Split` for ``P`` signals of ``Q`` channels and ``L`` samples, or None.

    Splits only where there are fewer than :data:`TARGET_LANES` channels, the
    coefficients are shared, the sections' order is at most :data:`MAX_ORDER`,
    and either time is contiguous and there are fewer signals than one vector of
    lanes (the chunks become lanes; the signals are filtered one after the
    other), or the channels are time-major in one block (``P == 1``: the chunks
    become jobs for the threads; the kernel takes the lanes of a job from ``Q``,
    so chunks of several blocks would add nothing to blocks that already give
    every thread a job), and at least two chunks fit, each of :data:`MIN_CHUNK`
    samples, as long as the decay search ran and :data:`SETTLE` times the
    unit-state responses. Chunks per signal: the smallest power of
    two giving :data:`TARGET_LANES` lanes, halved until chunks are long enough.
    Depends on the shapes and the filter only, never on the thread count.
    """
    if P * Q >= TARGET_LANES or bw.shape[2:] != (1, 1, 1) or aw.shape[2:] != (1, 1, 1):
        return None
    if bw.shape[1] - 1 > MAX_ORDER:
        return None
    if (P >= LANES) if Q == 1 else (P > 1):
        return None
    if not long_enough(L):
        return None
    C = 2
    while C * Q < TARGET_LANES:
        C *= 2
    while C >= 2 and L // C < MIN_CHUNK:
        C //= 2
    if C < 2:
        return None
    found = basis(bw, aw, spec, dtype, cap=(L // 2) // SETTLE)
    if found is None:
        return None
    G, settle = found
    while C >= 2 and L // C < max(settle, SETTLE * G.shape[0]):
        C //= 2
    if C < 2:
        return None
    n = L // C
    return Split(C, n, L - C * n, G)


def run(split, bw, aw, x3, out3, z, spec, kern) -> bool:
    """Filter ``x3`` (``(P, L, Q)``) into ``out3`` as ``split`` says; ``z``
    (``(P, Q, S, K)``): initial states, replaced by the final ones.

    Returns False, with ``z`` unchanged and ``out3`` partly written, when a chunk
    ended in a non-finite state (NaN or inf in the signal): the caller then
    filters sequentially. ``kern``: the variant of :func:`df2t` for the chunks
    (``df2t.pick`` of the whole size); a head shorter than a chunk runs serially.
    """
    P, L, Q = x3.shape
    S, K = z.shape[2], z.shape[3]
    M = S * K
    C, n, r, G = split.chunks, split.n, split.head, split.G
    nd = G.shape[0]
    itemsize = x3.dtype.itemsize
    finals = np.empty_like(z)
    for p in range(P):
        zc = np.zeros((C, Q, S, K), dtype=z.dtype)
        zc[0] = z[p]
        if r:
            head = zc[:1]                               # filtered in place
            df2t.serial(bw, aw, x3[p:p + 1, :r], head, out3[p:p + 1, :r],
                        cascade_lanes(1, Q, itemsize), spec)
        xs = x3[p, r:].reshape(C, n, Q)
        os = out3[p, r:].reshape(C, n, Q)
        kern(bw, aw, xs, zc, os, cascade_lanes(C, Q, itemsize), spec)
        starts = zc[:-1].reshape(C - 1, Q, M)            # the states chunks 1.. start in
        if not np.isfinite(starts).all():
            return False
        # os[j, t, q] += sum_m G[t, m] * starts[j-1, q, m]
        os[1:, :nd] += np.matmul(G, starts.transpose(0, 2, 1))
        finals[p] = zc[-1]
    z[...] = finals
    return True
