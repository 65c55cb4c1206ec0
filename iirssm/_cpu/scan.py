"""Choose and run the recurrence kernel for a ``(P, L, Q)`` work array."""

import numba
import numpy as np

from ._jit import LANES
from .recurrence import scan_cols, scan_rows, scan_rows_chunked

__all__ = ["run_scan", "N_CHUNKS", "CHUNKED_MIN_LENGTH"]

#: pieces per row in the chunked-in-time scan (a multiple of LANES; fixed, so
#: results do not depend on the number of threads).
N_CHUNKS = 4 * LANES
#: rows at least this long, and fewer than LANES of them, use the chunked scan.
CHUNKED_MIN_LENGTH = 1 << 15


def run_scan(c3: np.ndarray, x3: np.ndarray, h0: np.ndarray, out3: np.ndarray,
             ema: bool, reverse: bool) -> np.ndarray:
    """Run ``h = c*h + x`` (or the EMA form) over a ``(P, L, Q)`` array.

    ``c3`` is ``(Pc, Lc, Qc)`` (each 1 or full), ``h0`` is ``(P, Q)``; writes
    ``out3`` and returns the final states ``(P, Q)``.
    """
    P, L, Q = x3.shape
    if P * L * Q == 0:
        return h0.copy()
    if Q == 1:
        c2 = c3.reshape(c3.shape[0], c3.shape[1])
        x2 = x3.reshape(P, L)
        o2 = out3.reshape(P, L)
        h1 = np.ascontiguousarray(h0.reshape(P))
        if P < LANES and L >= CHUNKED_MIN_LENGTH:
            hf = scan_rows_chunked.pick(P * L)(c2, x2, h1, o2, ema, reverse, N_CHUNKS)
        else:
            hf = scan_rows.pick(P * L)(c2, x2, h1, o2, ema, reverse)
        return hf.reshape(P, 1)
    return scan_cols.pick(P * L * Q)(c3, x3, np.ascontiguousarray(h0), out3, ema, reverse,
                                     col_block(P, Q))


def col_block(P: int, Q: int) -> int:
    """Channels per job in the time-major kernels.

    A multiple of 32 (LLVM vectorises the channel loops 8 doubles wide and 4
    deep, so shorter loops would run on its scalar remainder path), at most 256
    (the state stays in L1), and otherwise small enough to give every thread a
    job when the channels allow it. Channels are independent, so this choice
    never changes a result, only how the work is shared.
    """
    jobs_wanted = numba.get_num_threads()
    per_p = -(-jobs_wanted // max(P, 1))
    qb = -(-Q // per_p)
    qb = -(-qb // 32) * 32
    return int(min(256, max(32, qb)))
