"""The IIR cascade's kernel paths: the vector sections (iirssm/_cpu/iir_vec.py) against
the generated loops they replace, bit for bit, and the time-major arrangement that
leaves a core to fault the output in (iirssm/_prefault.py)."""

import types

import numba
import numpy as np
import pytest
import scipy.signal

import iirssm
from iirssm import _lfilter, _prefault, _timesplit
from iirssm._cpu._jit import FMA_FLAGS
from iirssm._cpu.iir import LANE_STRIDE, _make_shared, cascade_spec
from iirssm._cpu.iir_vec import cascade_block, group_lanes
from conftest import assert_close


def _runners(K, G, lf):
    """``cascade_block`` and the generated direct body for the same sections, as
    functions of ``(sec, src, dst, cf, tv, n, nt, pf)``."""
    loops = _make_shared(K, G, lf, True)
    spec = cascade_spec(K, lf)
    njit = numba.njit(fastmath=set(FMA_FLAGS))

    @njit
    def run_loops(sec, src, dst, cf, tv, n, nt, pf):
        loops(sec, src, 0, 0, dst, 0, 0, nt, cf, tv, n, False,
              src.reshape(1, src.shape[0], src.shape[1]),
              dst.reshape(1, dst.shape[0], dst.shape[1]), 0, 0, n, 1, 0)

    # G must reach the intrinsic as a literal: one function per value
    if G == 1:
        @njit
        def run_vec(sec, src, dst, cf, tv, n, nt, pf):
            cascade_block(sec, src, 0, 0, dst, 0, 0, nt, n, cf, tv, pf, spec, 1)
    else:
        @njit
        def run_vec(sec, src, dst, cf, tv, n, nt, pf):
            cascade_block(sec, src, 0, 0, dst, 0, 0, nt, n, cf, tv, pf, spec, 2)
    return run_loops, run_vec


# (dtype, order K, sections per call G, lfilter's summing order): every K and G runs the
# same generator, so a few cover it; each pair costs two small compilations.
VEC_CASES = [(np.float64, 1, 1, True), (np.float64, 8, 1, True), (np.float64, 2, 2, False),
             (np.float32, 4, 1, True), (np.float32, 2, 1, False)]


@pytest.mark.parametrize("dtype,K,G,lf", VEC_CASES)
def test_vector_sections_are_the_loops_bitwise(rng, dtype, K, G, lf):
    run_loops, run_vec = _runners(K, G, lf)
    nt, width = 50, 80
    wide = group_lanes(np.dtype(dtype).itemsize * 8, G * K)
    # lane counts: below one vector, ragged, one full group, past it, and the most
    for n in sorted({3, 37, wide, min(wide + 5, 64), 64}):
        for tv in (0, 1):
            src = rng.standard_normal((nt, width)).astype(dtype)
            src[:, n:] = np.nan              # lanes past n must not be read
            cf = (0.2 * rng.standard_normal((nt, G * (2 * K + 1)))).astype(dtype)
            sec = rng.standard_normal((G * K, LANE_STRIDE)).astype(dtype)
            d_loop = np.full((nt, width), 7.0, dtype)
            d_vec = d_loop.copy()
            s_loop, s_vec = sec.copy(), sec.copy()
            # the prefetch arguments point into src (any address is allowed)
            pf = (src.ctypes.data, src.strides[0], d_vec.ctypes.data, d_vec.strides[0], 2,
                  nt)
            run_loops(s_loop, src, d_loop, cf, tv, n, nt, pf)
            run_vec(s_vec, src, d_vec, cf, tv, n, nt, pf)
            np.testing.assert_array_equal(d_vec, d_loop, err_msg=f"n={n} tv={tv}")
            assert np.all(d_vec[:, n:] == 7.0)       # lanes past n are not written
            np.testing.assert_array_equal(s_vec[:, :n], s_loop[:, :n])
            assert np.isfinite(d_vec[:, :n]).all()


def test_vector_sections_in_place(rng):
    """``src`` and ``dst`` the same array (the block buffer of the rows layout)."""
    run_loops, run_vec = _runners(4, 1, True)
    nt = 40
    io = rng.standard_normal((nt, LANE_STRIDE))
    cf = 0.3 * rng.standard_normal((1, 9))
    sec = rng.standard_normal((4, LANE_STRIDE))
    expect, s_loop = io.copy(), sec.copy()
    out = io.copy()
    run_loops(s_loop, io.copy(), expect, cf, 0, 64, nt, (0,) * 6)
    run_vec(sec, out, out, cf, 0, 64, nt, (0,) * 6)
    np.testing.assert_array_equal(out[:, :64], expect[:, :64])


# ------------------------------------------------------------- one job and a faulting core

def _fake(nbytes):
    return types.SimpleNamespace(nbytes=nbytes)


@pytest.mark.skipif(not _prefault.supported(), reason="needs Linux's MADV_POPULATE_WRITE")
def test_spare_core_faults_rule(monkeypatch):
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    big = _fake(64 << 20)
    f8 = np.float64
    assert _lfilter._spare_core_faults(1, 64, 32, big, 9, f8)            # butter(4) lfilter
    assert not _lfilter._spare_core_faults(1, 64, 32, big, 24, f8)       # 4 sos sections
    assert not _lfilter._spare_core_faults(1, 64, 32, big, 9, np.complex128)
    assert not _lfilter._spare_core_faults(1, 1, 32, big, 9, f8)         # rows layout
    assert not _lfilter._spare_core_faults(1, 64, 64, big, 9, f8)        # already one job
    assert not _lfilter._spare_core_faults(2, 64, 32, big, 9, f8)        # 2 wide jobs
    assert not _lfilter._spare_core_faults(1, 64, 32, _fake(1 << 20), 9, f8)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)
    assert not _lfilter._spare_core_faults(1, 64, 32, big, 9, f8)


def test_prefault_writes_no_data():
    arr = np.arange((_prefault.MIN_BYTES + (3 << 20)) // 8, dtype=np.float64)
    before = arr.copy()
    thread = _prefault.start(arr[1:])               # not page-aligned at either end
    if _prefault.supported():
        assert thread is not None
    if thread is not None:
        thread.join()
    np.testing.assert_array_equal(arr, before)
    assert _prefault.start(np.zeros(1000)) is None


@pytest.mark.parametrize("kind", ["lfilter", "sosfilt"])
def test_arrangement_does_not_change_results(rng, monkeypatch, kind):
    """Time-major, big enough for the helper: one job of 64 lanes with the helper, two
    jobs of 32 without it, and without the helper at all: the same bits, and scipy's
    result to rounding."""
    x = rng.standard_normal((40000, 64))              # 20 MB, above _prefault.MIN_BYTES
    if kind == "lfilter":
        b, a = scipy.signal.butter(4, 0.05)

        def run():
            return iirssm.lfilter(b, a, x, axis=0)
        ref = scipy.signal.lfilter(b, a, x, axis=0)
    else:
        sos = scipy.signal.butter(4, 0.05, output="sos")

        def run():
            return iirssm.sosfilt(sos, x, axis=0)
        ref = scipy.signal.sosfilt(sos, x, axis=0)
    outs = []
    monkeypatch.setattr(_timesplit, "plan", lambda *args: None)    # the arrangements in time
    for light, ok in ((1000, True), (0, True), (1000, False)):
        monkeypatch.setattr(_lfilter, "LIGHT_OPS", light)
        monkeypatch.setattr(_prefault, "_supported", ok and _prefault.supported())
        outs.append(run())
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])
    assert_close(outs[0], ref, np.float64, scale=np.abs(ref).max())
