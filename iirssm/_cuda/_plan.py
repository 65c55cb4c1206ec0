"""Launch planning for the CUDA kernels: pure Python, no CuPy, unit-tested on any machine.

What is decided here (and nowhere else):

* **layout**: the rows ``(R, L)`` view of an array with its time axis moved last,
  and whether it exists without a copy (unit time stride, one row stride);
* **alignment**: 16-byte vector loads only when every stream's rows start on a
  vector boundary (pointer and row stride);
* **split**: one block per row, or the reduce-then-scan path that cuts each row
  into ``nchunks`` chunks of ``tpc`` tiles for few long rows. The choice depends
  on ``R``, ``L`` and the dtype only (never on the device), so a given call runs
  the same association order, hence gives the same bits, on every GPU;
* **launch geometry** and the kernel argument dtypes (CuPy does not check them:
  ``np.int64`` for lengths and strides, ``np.int32`` for counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

__all__ = ["NT", "UV", "CTYPES", "ctype", "vlen", "uvec", "tile_size", "RowsLayout", "rows_layout",
           "is_aligned", "SplitPlan", "split_plan", "Launch", "scan_launches", "i64", "i32",
           "TARGET_BLOCKS", "MIN_TILES_PER_CHUNK", "MAX_GRID"]

NT = 128                      # threads per block (common.cuh)
UV = 4                        # vectors per lane per tile (common.cuh)
#: blocks wanted in flight for a memory-bound scan: ~8 per SM on a 132-SM H200.
TARGET_BLOCKS = 1024
#: a chunk of the split path spans at least this many tiles (amortises its carry).
MIN_TILES_PER_CHUNK = 8
MAX_GRID = 2**31 - 1

CTYPES = {
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
    np.dtype(np.complex64): "complex<float>",
    np.dtype(np.complex128): "complex<double>",
}


def ctype(dtype) -> str:
    """The C++ type of a NumPy dtype in the kernels' templates."""
    try:
        return CTYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"the CUDA kernels run float32, float64, complex64 or complex128; "
                        f"got {np.dtype(dtype)}") from None


def vlen(dtype) -> int:
    """Elements per 16-byte vector: 4 (float32), 2 (float64, complex64), 1 (complex128)."""
    return 16 // np.dtype(dtype).itemsize


def uvec(dtype) -> int:
    """Vectors per lane per tile (``uvec<T>`` in common.cuh): 4, but 2 for complex128."""
    return 2 if np.dtype(dtype) == np.complex128 else UV


def tile_size(dtype) -> int:
    """Elements per tile: NT threads x uvec x vlen = 2048 / 1024 / 1024 / 256."""
    return NT * uvec(dtype) * vlen(dtype)


def i64(v) -> np.int64:
    return np.int64(v)


def i32(v) -> np.int32:
    if not -2**31 <= int(v) < 2**31:
        raise OverflowError(f"{v} does not fit a 32-bit kernel argument")
    return np.int32(v)


# ------------------------------------------------------------------------------ layout

@dataclass(frozen=True)
class RowsLayout:
    """An array as rows: ``moved_shape`` is its shape with the time axis last."""

    R: int
    L: int
    moved_shape: tuple
    row_stride: int | None   # in elements; None: no (R, L) view, a copy is needed


def rows_layout(shape, strides, itemsize, axis) -> RowsLayout:
    """The ``(R, L)`` rows view of an array whose time ``axis`` is moved last.

    ``strides`` in bytes (NumPy/CuPy convention). The view exists when the time
    stride is one element (or L == 1) and the other dimensions collapse to one
    row stride; size-1 dimensions are ignored.
    """
    nd = len(shape)
    axis = axis % nd
    L = shape[axis]
    others = [(shape[i], strides[i]) for i in range(nd) if i != axis]
    moved = tuple(s for s, _ in others) + (L,)
    R = prod(s for s, _ in others)
    if L > 1 and strides[axis] != itemsize:
        return RowsLayout(R, L, moved, None)
    dims = [(s, st) for s, st in others if s != 1]
    if not dims:
        return RowsLayout(R, L, moved, L)
    # collapse the non-time dims (C order) into one stride
    for (s0, st0), (s1, st1) in zip(dims[:-1], dims[1:]):
        if st0 != s1 * st1:
            return RowsLayout(R, L, moved, None)
    st = dims[-1][1]
    if st % itemsize:
        return RowsLayout(R, L, moved, None)
    rs = st // itemsize
    if R > 1 and rs < L:          # overlapping rows (e.g. broadcast views) are not rows
        return RowsLayout(R, L, moved, None)
    return RowsLayout(R, L, moved, rs)


def is_aligned(ptr: int, row_stride: int, itemsize: int, nvec: int) -> bool:
    """Vector loads of ``nvec`` elements are legal on every row: pointer and stride aligned.

    A row stride of 0 (one row shared by all) only needs the pointer aligned.
    """
    nbytes = nvec * itemsize
    return ptr % nbytes == 0 and (row_stride * itemsize) % nbytes == 0


# ------------------------------------------------------------------------------- split

@dataclass(frozen=True)
class SplitPlan:
    """How a row scan is cut: ``nchunks`` chunks of ``tpc`` tiles per row."""

    R: int
    L: int
    tile: int
    ntiles: int
    nchunks: int
    tpc: int

    @property
    def split(self) -> bool:
        return self.nchunks > 1

    @property
    def grid(self) -> int:
        return self.R * self.nchunks


def split_plan(R: int, L: int, dtype, target_blocks: int = TARGET_BLOCKS,
               min_tiles: int = MIN_TILES_PER_CHUNK) -> SplitPlan:
    """One block per row when there are enough rows; else chunks of at least ``min_tiles``.

    ``nchunks = min(ceil(target_blocks / R), ntiles // min_tiles)`` (at least 1),
    then ``tpc = ceil(ntiles / nchunks)`` and ``nchunks = ceil(ntiles / tpc)`` so no
    chunk is empty. Depends on ``(R, L, dtype)`` only.
    """
    if R < 1 or L < 1:
        raise ValueError(f"a scan needs R >= 1 rows of L >= 1 samples; got R={R}, L={L}")
    tile = tile_size(dtype)
    ntiles = -(-L // tile)
    want = -(-target_blocks // R)
    nchunks = max(1, min(want, ntiles // min_tiles))
    tpc = -(-ntiles // nchunks)
    nchunks = -(-ntiles // tpc)
    if R * nchunks > MAX_GRID:
        raise ValueError(f"{R} rows exceed the CUDA grid limit ({MAX_GRID} blocks)")
    return SplitPlan(R, L, tile, ntiles, nchunks, tpc)


# ------------------------------------------------------------------------------ launches

@dataclass(frozen=True)
class Launch:
    """One kernel launch: which pass, its grid and block (shared memory is static)."""

    kind: str        # "reduce", "carry", "scan"
    grid: tuple
    block: tuple


def scan_launches(plan: SplitPlan) -> list:
    """The launches of a row scan: one, or reduce + carry + scan on the split path."""
    scan = Launch("scan", (plan.grid,), (NT,))
    if not plan.split:
        return [scan]
    return [Launch("reduce", (plan.grid,), (NT,)), Launch("carry", (plan.R,), (NT,)), scan]
