"""The kernels' entry points take their inputs read-only (``iirssm/_cpu/_jit.py``):
one compiled version per dtype and layout, whatever the writable flag of an input.
Also the cascade's versions per section order, and the row views and addresses the
kernels take by pointer arithmetic."""

import numba
import numpy as np
import pytest
import scipy.signal

import iirssm
from iirssm._cpu._jit import (ReadOnlyInputs, data_address, jit, row_view, row_view3,
                              transpose16, transpose_blocks)
from iirssm._cpu.iir import MAX_UNROLLED, cascade_spec, df2t
from iirssm._cpu.recurrence import scan_rows


@jit(writes=("out",))
def _add_one(x, out):
    for i in range(x.size):
        out[i] = x[i] + 1.0


def test_writable_and_read_only_inputs_share_one_compilation():
    x = np.arange(5.0)
    out = np.empty(5)
    _add_one(x, out)
    ro = np.arange(5.0)
    ro.flags.writeable = False
    _add_one(ro, out)
    _add_one(np.broadcast_to(np.float64(2.0), (5,)), out)     # read-only and strided
    np.testing.assert_array_equal(out, 3.0)
    sigs = _add_one.dispatcher.signatures
    assert len([s for s in sigs if s[0].layout == "C"]) == 1, sigs
    assert all(not s[0].mutable and s[1].mutable for s in sigs), sigs


def test_caller_arrays_keep_their_flags_and_values():
    x = np.arange(5.0)
    out = np.empty(5)
    _add_one(x, out)
    assert x.flags.writeable and out.flags.writeable
    np.testing.assert_array_equal(x, np.arange(5.0))
    np.testing.assert_array_equal(out, np.arange(5.0) + 1)


def test_writing_an_undeclared_input_does_not_compile():
    def writes_x(x, out):
        x[0] = 1.0
        out[0] = 0.0

    bad = jit(writes_x, writes=("out",))
    with pytest.raises(numba.core.errors.TypingError, match="readonly"):
        bad(np.zeros(2), np.zeros(2))


def test_writes_must_name_arguments():
    def f(x, out):
        out[0] = x[0]

    with pytest.raises(ValueError, match=r"unknown arguments \['y'\]"):
        jit(f, writes=("out", "y"))
    assert isinstance(jit(f, writes=("out",)), ReadOnlyInputs)


def _cascade_versions(dtype, K, lf=True):
    """The serial cascade's compiled versions for ``dtype``, sections of order ``K`` and
    a C-contiguous signal (other layouts of the signal are versions of their own)."""
    spec = numba.typeof(cascade_spec(K, lf))
    return [s for s in df2t.serial.dispatcher.signatures
            if s[2].dtype == numba.from_dtype(np.dtype(dtype)) and s[2].layout == "C"
            and s[-1] == spec]


@pytest.mark.parametrize("make_read_only", [
    lambda x: np.broadcast_to(x, (2,) + x.shape)[0],
    lambda x: np.frombuffer(x.tobytes()).reshape(x.shape),
])
def test_library_kernels_compile_once_for_both_flags(rng, make_read_only):
    # time-major, so that lfilter runs the kernel (a few rows go to scipy's own loop)
    x = rng.standard_normal((200, 3))
    ro = make_read_only(x)
    assert not ro.flags.writeable
    b, a = scipy.signal.butter(2, 0.2)
    y = iirssm.lfilter(b, a, x, axis=0)
    np.testing.assert_array_equal(iirssm.lfilter(b, a, ro, axis=0), y)
    assert len(_cascade_versions(np.float64, 2)) == 1
    rows = np.ascontiguousarray(x.T)
    before = len(scan_rows.serial.dispatcher.signatures)
    e = iirssm.ema(rows, alpha=0.2)
    mid = len(scan_rows.serial.dispatcher.signatures)
    np.testing.assert_array_equal(iirssm.ema(make_read_only(rows), alpha=0.2), e)
    assert len(scan_rows.serial.dispatcher.signatures) == mid <= before + 1


def test_cascade_compiles_one_version_per_order(rng):
    """Orders up to MAX_UNROLLED each get a version with only their own generated
    bodies; higher orders share one version that runs the generic loop."""
    x = rng.standard_normal((100, 3))
    for K in (3, MAX_UNROLLED + 1, MAX_UNROLLED + 4):
        b, a = scipy.signal.butter(K, 0.3)
        np.testing.assert_allclose(iirssm.lfilter(b, a, x, axis=0),
                                   scipy.signal.lfilter(b, a, x, axis=0), rtol=1e-9, atol=1e-9)
    assert len(_cascade_versions(np.float64, 3)) == 1
    assert cascade_spec(MAX_UNROLLED + 1, True) == cascade_spec(MAX_UNROLLED + 4, True) == ()
    assert len(_cascade_versions(np.float64, MAX_UNROLLED + 1)) == 1
    # sosfilt's summing order is a version of its own
    assert numba.typeof(cascade_spec(2, False)) != numba.typeof(cascade_spec(2, True))


def test_cascade_rejects_a_spec_of_another_order():
    bc = np.ones((1, 4, 1, 1, 1))               # one section of order 3
    x = np.zeros((1, 8, 1))
    with pytest.raises(ValueError, match="spec does not match"):
        df2t.serial(bc, bc, x, np.zeros((1, 1, 1, 3)), np.zeros_like(x), 16,
                    cascade_spec(2, True))
    b0 = np.ones((1, 1, 1, 1, 1))               # order 0: the front ends run it as order 1
    with pytest.raises(ValueError, match="spec does not match"):
        df2t.serial(b0, b0, x, np.zeros((1, 1, 1, 0)), np.zeros_like(x), 16,
                    cascade_spec(0, True))


# ------------------------------------------------ row views by pointer arithmetic

@jit
def _rows_by_view(a, j):
    s = 0.0
    for i in range(a.shape[0]):
        r = row_view(a, i, j)
        for k in range(r.size):
            s += r[k] * (k + 1)
    return s


@jit
def _rows_by_slice(a, j):
    s = 0.0
    for i in range(a.shape[0]):
        r = a[i, j:]
        for k in range(r.size):
            s += r[k] * (k + 1)
    return s


@jit(writes=("out",))
def _copy_rows3(x, out, q0):
    for p in range(x.shape[0]):
        for t in range(x.shape[1]):
            src = row_view3(x, p, t, q0)
            dst = row_view3(out, p, t, q0)
            for k in range(src.size):
                dst[k] = src[k] + 1.0


@jit
def _address(a):
    return data_address(a)


def test_row_view_reads_the_slice():
    a = np.arange(30.0).reshape(5, 6)
    for j in (0, 2, 5):
        assert _rows_by_view(a, j) == _rows_by_slice(a, j)


def test_row_view3_writes_through_to_the_array():
    x = np.arange(24.0).reshape(2, 3, 4)
    out = np.zeros_like(x)
    _copy_rows3(x, out, 1)
    want = np.zeros_like(x)
    want[:, :, 1:] = x[:, :, 1:] + 1.0
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(x, np.arange(24.0).reshape(2, 3, 4))   # input untouched


def test_row_view_of_a_read_only_array_is_read_only():
    @jit
    def write_view(a):
        r = row_view(a, 0, 0)
        r[0] = 1.0

    ro = np.zeros((2, 2))
    ro.flags.writeable = False
    with pytest.raises(numba.core.errors.TypingError):
        write_view(ro)


def test_row_view_needs_a_c_contiguous_array_of_its_rank():
    @numba.njit
    def first(a):
        return row_view(a, 0, 0)[0]

    @numba.njit
    def first3(a):
        return row_view3(a, 0, 0, 0)[0]

    a = np.arange(12.0).reshape(3, 4)
    assert first(a) == 0.0 and first3(a.reshape(1, 3, 4)) == 0.0
    for bad in (np.asfortranarray(a), a[:, ::2]):
        with pytest.raises(numba.core.errors.TypingError):
            first(bad)
    with pytest.raises(numba.core.errors.TypingError):
        first3(a)


def test_data_address_is_the_buffer_address():
    a = np.arange(10.0)
    assert _address(a) == a.ctypes.data
    assert _address(a[3:]) == a.ctypes.data + 3 * a.itemsize


@numba.njit(error_model="numpy")
def _blocks_t16(src, so, ss, sq, dst, do, ds, dq, n):
    for q in range(n):
        transpose16(src, so + q * sq, ss, dst, do + q * dq, ds)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose16_blocks(rng, dtype):
    """The 16 x 16 transposes between channel rows and the kernels' (time, lane)
    buffers, at offsets and strides that are not multiples of 16; nothing else
    written."""
    src = rng.standard_normal((3, 20, 75)).astype(dtype)
    src[1, 5, 9] = np.nan
    dst = np.full((50, 16), -7.0, dtype)
    # rows 2..17 of src[1], samples 3..50 (three blocks), into dst rows 1..48
    _blocks_t16(src, (1 * 20 + 2) * 75 + 3, 75, 16, dst, 16, 16, 256, 3)
    np.testing.assert_array_equal(dst[1:49], src[1, 2:18, 3:51].T)
    assert np.all(dst[0] == -7) and np.all(dst[49] == -7)
    # and back, into rows of another array
    back = np.full_like(src, 5.0)
    _blocks_t16(dst, 16, 16, 256, back, (2 * 20 + 4) * 75 + 10, 75, 16, 3)
    want = np.full_like(src, 5.0)
    want[2, 4:20, 10:58] = src[1, 2:18, 3:51]
    np.testing.assert_array_equal(back, want)


@numba.njit(error_model="numpy")
def _try_blocks(src, so, ss, dst, do, ds, ni, nj):
    return transpose_blocks(src, so, ss, dst, do, ds, ni, nj)


def test_transpose_blocks_only_where_the_types_allow(rng):
    """transpose_blocks does the work and says so for C-contiguous arrays of one real
    dtype; for any other types it compiles to False and writes nothing (the kernels
    then take their loops)."""
    src = rng.standard_normal((32, 48))
    dst = np.zeros((48, 40))
    assert _try_blocks(src, 0, 48, dst, 3, 40, 32, 48)
    np.testing.assert_array_equal(dst[:, 3:35], src.T)
    assert np.all(dst[:, :3] == 0) and np.all(dst[:, 35:] == 0)
    for s, d in [(src.astype(np.complex128), np.zeros((48, 40), np.complex128)),
                 (src.astype(np.float32), np.zeros((48, 40))),          # dtypes differ
                 (np.asfortranarray(src), np.zeros((48, 40)))]:        # not C-contiguous
        assert not _try_blocks(s, 0, 48, d, 3, 40, 32, 48)
        assert not d.any()
