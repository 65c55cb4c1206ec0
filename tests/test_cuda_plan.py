"""Launch planning of the CUDA backend (pure Python: runs without a GPU or CuPy)."""

import numpy as np
import pytest

from iirssm._cuda import _plan as P


def test_types_and_tiles():
    assert P.ctype(np.float32) == "float"
    assert P.ctype(np.complex128) == "complex<double>"
    with pytest.raises(TypeError, match="float32, float64, complex64 or complex128"):
        P.ctype(np.int32)
    assert [P.vlen(d) for d in (np.float32, np.float64, np.complex64, np.complex128)] == \
        [4, 2, 2, 1]
    assert [P.tile_size(d) for d in (np.float32, np.float64, np.complex64, np.complex128)] == \
        [2048, 1024, 1024, 256]


def _strides(a):
    return a.shape, a.strides, a.itemsize


@pytest.mark.parametrize("shape,axis", [((5, 7), -1), ((5, 7), 0), ((2, 3, 4), 1),
                                        ((3, 1, 4), -1), ((1, 9), -1), ((9,), 0)])
def test_rows_layout_c_order(shape, axis):
    x = np.zeros(shape, np.float32)
    xm = np.moveaxis(x, axis, -1)
    lay = P.rows_layout(xm.shape, xm.strides, xm.itemsize, -1)
    assert lay.R * lay.L == x.size and lay.moved_shape == xm.shape
    copy_free = xm.strides[-1] == 4 or xm.shape[-1] == 1
    if axis in (-1, len(shape) - 1):
        assert lay.row_stride == lay.L
    elif not copy_free:
        assert lay.row_stride is None


def test_rows_layout_views():
    x = np.zeros((6, 10), np.float64)
    lay = P.rows_layout(*_strides(x[:, 2:9]), -1)            # sliced rows keep stride 10
    assert (lay.R, lay.L, lay.row_stride) == (6, 7, 10)
    lay = P.rows_layout(*_strides(x[::2]), -1)                # every other row
    assert lay.row_stride == 20
    assert P.rows_layout(*_strides(x[:, ::2]), -1).row_stride is None  # strided time
    y = np.zeros((4, 5, 6), np.float32)
    assert P.rows_layout(*_strides(y[:, :3]), -1).row_stride is None   # two row strides
    assert P.rows_layout(*_strides(y.transpose(1, 0, 2)), -1).row_stride is None
    b = np.broadcast_to(np.zeros(6), (4, 6))                   # overlapping rows
    assert P.rows_layout(*_strides(b), -1).row_stride is None
    f = np.asfortranarray(np.zeros((8, 3)))                    # Fortran, axis 0 -> rows
    fm = np.moveaxis(f, 0, -1)
    lay = P.rows_layout(*_strides(fm), -1)
    assert (lay.R, lay.L, lay.row_stride) == (3, 8, 8)


def test_alignment():
    assert P.is_aligned(4096, 16, 4, 4)
    assert not P.is_aligned(4096 + 4, 16, 4, 4)      # misaligned base
    assert not P.is_aligned(4096, 17, 4, 4)          # rows drift off the vector grid
    assert P.is_aligned(4096, 0, 4, 4)               # one shared row
    assert P.is_aligned(4104, 6, 4, 2)               # 8-byte vectors (float2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_split_plan_covers_every_tile_once(dtype):
    for R in (1, 2, 7, 100, 512, 5000):
        for L in (1, 31, 2048, 2049, 10**5, 2**22):
            p = P.split_plan(R, L, dtype)
            assert p.ntiles == -(-L // p.tile)
            assert p.nchunks * p.tpc >= p.ntiles > (p.nchunks - 1) * p.tpc  # none empty
            assert p.grid == R * p.nchunks
            if p.split:
                assert p.tpc >= P.MIN_TILES_PER_CHUNK


def test_split_plan_choices():
    assert not P.split_plan(4096, 65536, np.float32).split       # many rows: one block each
    p = P.split_plan(1, 2**28, np.float32)                       # one huge row: ~1024 chunks
    assert p.split and 900 <= p.nchunks <= P.TARGET_BLOCKS and p.R == 1
    assert P.split_plan(4, 10**7, np.float32).nchunks >= 200
    assert not P.split_plan(1, 1000, np.float32).split           # short: one tile
    # depends on the problem only, never on the device
    assert P.split_plan(3, 10**6, np.float64) == P.split_plan(3, 10**6, np.float64)
    with pytest.raises(ValueError, match="R >= 1"):
        P.split_plan(0, 10, np.float32)


def test_launches_and_argument_types():
    one = P.scan_launches(P.split_plan(4096, 4096, np.float32))
    assert [x.kind for x in one] == ["scan"] and one[0].grid == (4096,) and one[0].block == (128,)
    three = P.scan_launches(P.split_plan(1, 2**24, np.float32))
    assert [x.kind for x in three] == ["reduce", "carry", "scan"]
    assert three[1].grid == (1,)
    assert type(P.i64(3)) is np.int64 and type(P.i32(3)) is np.int32
    with pytest.raises(OverflowError):
        P.i32(2**31)


def test_dispatch_refuses_host_signal_with_device_coefficients():
    """A NumPy signal with CuPy coefficients is a TypeError, before any device work."""
    from iirssm._cuda import dispatch

    class FakeCupy:                      # stands for a cupy.ndarray (type module 'cupy...')
        pass
    FakeCupy.__module__ = "cupy._core.core"
    with pytest.raises(TypeError, match=r"cupy.asarray\(b\)"):
        dispatch.linear_recurrence(FakeCupy(), np.ones(4))
    with pytest.raises(TypeError, match=r"cupy.asarray\(x\)"):
        dispatch.ema(np.ones(4), alpha=FakeCupy())


def test_cuda_modules_import_without_cupy():
    """Nothing in iirssm._cuda imports CuPy at import time (checked in a fresh process)."""
    import subprocess
    import sys

    code = ("import sys, importlib\n"
            "for m in ('iirssm', 'iirssm._cuda._compile', 'iirssm._cuda._plan', "
            "'iirssm._cuda._mirror', 'iirssm._cuda._rec', 'iirssm._cuda._filters',\n"
            "          'iirssm._cuda.dispatch'):\n"
            "    importlib.import_module(m)\n"
            "assert 'cupy' not in sys.modules, sorted(m for m in sys.modules if 'cupy' in m)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
