"""Parallel in time (iirssm/_timesplit.py): a few long signals cut into chunks filtered
side by side, each corrected by the zero-input response of the state it starts in.
Checked against scipy.signal, against the sequential kernel, and for the invariants
(state carried across calls, thread count, NaN and inf)."""

import numba
import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

import iirssm
from iirssm import _lfilter, _timesplit
from iirssm._arraytools import coef_to_work, frame_of
from iirssm._cpu.iir import cascade_spec
from conftest import assert_close

# (shape, axis): one signal; several rows of one (P > 1, a head of L mod C samples);
# time-major channels (a head); time-major in a 3-D array. Every one is split.
LAYOUTS = [((50000,), -1), ((3, 50011), -1), ((50005, 5), 0), ((1, 40000, 3, 2), 1)]


def _filters(kind, dtype):
    if kind == "lfilter":
        b, a = scipy.signal.cheby1(4, 1, 0.3)     # direct form: well conditioned in float32
    elif kind == "fir":
        b, a = scipy.signal.firwin(31, 0.2), np.array([1.0])
    else:
        return scipy.signal.butter(8, 0.1, output="sos").astype(dtype), None
    if np.dtype(dtype).kind == "c":       # complex coefficients for complex signals
        b = b * np.exp(0.3j)
    return b.astype(dtype), a.astype(dtype)


def _call(kind, coefs, x, axis, zi=None):
    b, a = coefs
    if kind == "sosfilt":
        return iirssm.sosfilt(b, x, axis=axis, zi=zi)
    return iirssm.lfilter(b, a, x, axis=axis, zi=zi)


def _scipy(kind, coefs, x, axis, zi=None):
    b, a = coefs
    if kind == "sosfilt":
        return scipy.signal.sosfilt(b, x, axis=axis, zi=zi)
    return scipy.signal.lfilter(b, a, x, axis=axis, zi=zi)


def _plan(kind, coefs, x, axis):
    """The split the call will use (None: sequential)."""
    b, a = (None if c is None else np.asarray(c, dtype=x.dtype) for c in coefs)
    frame = frame_of(x, axis % x.ndim)
    if kind == "sosfilt":
        bw = coef_to_work(b[:, :3], frame, "sos", x.dtype, lead=2)
        aw = coef_to_work(b[:, 3:], frame, "sos", x.dtype, lead=2)
        spec = cascade_spec(2, False)
    else:
        bn, an, K = _lfilter._normalized(b, a, x.dtype)
        bw = coef_to_work(bn, frame, "b", x.dtype, lead=1)[None]
        aw = coef_to_work(an, frame, "a", x.dtype, lead=1)[None]
        spec = cascade_spec(max(K, 1), True)
    P, L, Q = frame.plq
    return _timesplit.plan(P, Q, L, bw, aw, spec, x.dtype)


def _zi_shape(kind, coefs, x, axis):
    shape = list(x.shape)
    if kind == "sosfilt":
        shape[axis] = 2
        return (coefs[0].shape[0],) + tuple(shape)
    shape[axis] = max(len(coefs[0]), len(coefs[1])) - 1
    return tuple(shape)


def _signal(rng, shape, dtype):
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


@pytest.mark.parametrize("shape,axis", LAYOUTS)
@pytest.mark.parametrize("kind", ["lfilter", "sosfilt", "fir"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_split_equals_scipy_and_the_sequential_kernel(rng, monkeypatch, shape, axis, kind,
                                                      dtype):
    coefs = _filters(kind, dtype)
    x = _signal(rng, shape, dtype)
    split = _plan(kind, coefs, x, axis)
    assert split is not None and split.chunks >= 2
    zi = _signal(rng, _zi_shape(kind, coefs, x, axis), dtype)
    y, zf = _call(kind, coefs, x, axis, zi)
    y_ref, zf_ref = _scipy(kind, coefs, x, axis, zi)
    assert y.dtype == y_ref.dtype and zf.shape == zf_ref.shape
    assert_close(y, y_ref, dtype)
    assert_close(zf, zf_ref, dtype)
    y0 = _call(kind, coefs, x, axis)
    assert_close(y0, _scipy(kind, coefs, x, axis), dtype)
    # against iirssm's own sequential kernel (or scipy, for rows it hands over)
    monkeypatch.setattr(_timesplit, "plan", lambda *args: None)
    y_seq, zf_seq = _call(kind, coefs, x, axis, zi)
    assert_close(y, y_seq, dtype)
    assert_close(zf, zf_seq, dtype)


def test_the_correction_is_what_joins_the_chunks(rng):
    """Without the zero-input correction (or with chunks starting from the wrong
    state) the first samples of every chunk but the first are off by far more than
    rounding; the correction is confined to them."""
    b, a = scipy.signal.butter(4, 0.1)
    x = rng.standard_normal(40000)
    split = _plan("lfilter", (b, a), x, -1)
    y = iirssm.lfilter(b, a, x)
    ref = scipy.signal.lfilter(b, a, x)
    assert_close(y, ref, np.float64)
    n, r, nd = split.n, split.head, split.G.shape[0]
    zs = np.concatenate([scipy.signal.lfilter(b, a, x[:r + n])]
                        + [scipy.signal.lfilter(b, a, x[r + j * n:r + (j + 1) * n])
                           for j in range(1, split.chunks)])
    off = np.abs(zs - ref)
    starts = [r + j * n for j in range(1, split.chunks)]
    assert all(off[s:s + 5].max() > 1e-3 for s in starts)
    assert max(off[s + nd:s + n].max() for s in starts) < 1e-13 * np.abs(ref).max()


@pytest.mark.parametrize("kind", ["lfilter", "sosfilt"])
def test_basis_is_the_unit_state_responses(kind):
    """``basis``: column m is the response to no input from unit state m (scipy's
    lfilter/sosfilt from that zi), kept until it is below rounding for good."""
    if kind == "lfilter":
        b, a = scipy.signal.ellip(5, 1, 40, 0.3)
        K = 5
        M = K
    else:
        b, a = scipy.signal.butter(6, 0.05, output="sos"), None
        M = 6
    x = np.zeros(30000)
    split = _plan(kind, (b, a), x, -1)
    G = split.G
    nd = G.shape[0]
    long = 4 * nd
    ref = np.empty((long, M))
    for m in range(M):
        if kind == "lfilter":
            zi = np.zeros(K)
            zi[m] = 1
            ref[:, m] = scipy.signal.lfilter(b, a, np.zeros(long), zi=zi)[0]
        else:
            zi = np.zeros((3, 2))
            zi.reshape(-1)[m] = 1
            ref[:, m] = scipy.signal.sosfilt(b, np.zeros(long), zi=zi)[0]
    assert_close(G, ref[:nd], np.float64, scale=np.abs(ref).max())
    tail = np.abs(ref[nd:]).max()
    assert tail <= np.finfo(np.float64).eps * np.abs(ref).max()


def test_plan_declines(rng):
    x = rng.standard_normal(20000)
    b, a = scipy.signal.butter(4, 0.1)
    assert _plan("lfilter", (b, a), x, -1) is not None
    # too short for two chunks
    assert _plan("lfilter", (b, a), x[:_timesplit.MIN_SPLIT - 1], -1) is None
    # a decay longer than the chunks could be: pole at 0.9999 (~4e5 samples to rounding)
    assert _plan("lfilter", ([1e-4], [1, -0.9999]), x, -1) is None
    # enough channels already; rows that fill the vector lanes; time-major in several
    # blocks (they already give the threads jobs)
    wide = rng.standard_normal((20000, _timesplit.TARGET_LANES))
    assert _plan("lfilter", (b, a), wide, 0) is None
    assert _plan("lfilter", (b, a), rng.standard_normal((8, 20000)), -1) is None
    assert _plan("lfilter", (b, a), rng.standard_normal((7, 20000)), -1) is not None
    assert _plan("lfilter", (b, a), rng.standard_normal((2, 20000, 4)), 1) is None
    # a long FIR filter (order above MAX_ORDER) goes to scipy's loop
    long_fir = np.ones(_timesplit.MAX_ORDER + 2) / (_timesplit.MAX_ORDER + 2)
    assert _plan("fir", (long_fir, np.array([1.0])), x, -1) is None
    assert _plan("fir", (long_fir[1:], np.array([1.0])), x, -1) is not None
    # per-channel coefficients
    bw = np.stack([b, b], axis=-1)[None, :, :, None, None]      # (S, K+1, Pc, Lc, Qc)
    aw = np.stack([a, a], axis=-1)[None, :, :, None, None]
    assert _timesplit.plan(1, 1, 20000, bw, aw, cascade_spec(4, True), np.float64) is None
    # an unstable filter never decays
    assert _plan("lfilter", ([1.0], [1, -1.01]), x, -1) is None
    # chunks shrink to what the signal holds: one signal of 10^6 -> 128 chunks
    big = np.zeros(10**6)
    assert _plan("lfilter", (b, a), big, -1).chunks == _timesplit.TARGET_LANES


def test_slow_filter_still_exact(rng):
    """Declined splits run as before: the pole at 0.9999 through the sequential path."""
    x = rng.standard_normal((3, 20000))
    b, a = [1e-4], [1, -0.9999]
    assert_close(iirssm.lfilter(b, a, x), scipy.signal.lfilter(b, a, x), np.float64)
    xt = np.ascontiguousarray(x.T)
    assert_close(iirssm.lfilter(b, a, xt, axis=0), scipy.signal.lfilter(b, a, xt, axis=0),
                 np.float64)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("where", [5000, 30000, 49999])
@pytest.mark.parametrize("layout", LAYOUTS[:3])
def test_non_finite_propagates_as_sequentially(rng, bad, where, layout):
    """NaN or inf in one chunk: every later output is NaN (or inf) as in scipy, not a
    fresh start at the next chunk."""
    shape, axis = layout
    x = rng.standard_normal(shape)
    idx = [0] * x.ndim
    idx[axis] = where
    x[tuple(idx)] = bad
    b, a = scipy.signal.butter(4, 0.1)
    y = iirssm.lfilter(b, a, x, axis=axis)
    ref = scipy.signal.lfilter(b, a, x, axis=axis)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(ref))
    assert_close(y, ref, np.float64)
    sos = scipy.signal.butter(4, 0.1, output="sos")
    y = iirssm.sosfilt(sos, x, axis=axis)
    ref = scipy.signal.sosfilt(sos, x, axis=axis)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert_close(y, ref, np.float64)


def test_thread_count_does_not_change_the_bits(rng):
    """The chunking depends on the shapes and the filter, not on the threads."""
    x = rng.standard_normal(300000)
    xt = rng.standard_normal((100000, 16))
    sos = scipy.signal.butter(6, 0.1, output="sos")
    before = numba.get_num_threads()
    outs = []
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            outs.append((iirssm.sosfilt(sos, x), iirssm.sosfilt(sos, xt, axis=0)))
    finally:
        numba.set_num_threads(before)
    for y, yt in outs[1:]:
        np.testing.assert_array_equal(y, outs[0][0])
        np.testing.assert_array_equal(yt, outs[0][1])


def test_inputs_untouched_and_outputs_fresh(rng):
    x = rng.standard_normal(20000)
    zi = rng.standard_normal(4)
    x0, zi0 = x.copy(), zi.copy()
    b, a = scipy.signal.butter(4, 0.1)
    y, zf = iirssm.lfilter(b, a, x, zi=zi)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(zi, zi0)
    assert not np.shares_memory(y, x) and not np.shares_memory(zf, zi)


@settings(max_examples=12, deadline=None)
@given(cut=st.integers(1, 29999), order=st.integers(1, 8), wc=st.floats(0.02, 0.8),
       sos=st.booleans())
def test_chunks_with_the_state_carried_equal_the_whole(cut, order, wc, sos):
    """Two calls with zf carried into zi equal one call, whether or not either call
    (or the whole) is split."""
    x = np.random.default_rng(cut).standard_normal(30000)
    if sos:
        s = scipy.signal.butter(order, wc, output="sos")
        zi = np.zeros((s.shape[0], 2))
        whole = iirssm.sosfilt(s, x)
        y1, z1 = iirssm.sosfilt(s, x[:cut], zi=zi)
        y2, _ = iirssm.sosfilt(s, x[cut:], zi=z1)
        ref = scipy.signal.sosfilt(s, x)
    else:
        b, a = scipy.signal.butter(order, wc)
        zi = np.zeros(order)
        whole = iirssm.lfilter(b, a, x)
        y1, z1 = iirssm.lfilter(b, a, x[:cut], zi=zi)
        y2, _ = iirssm.lfilter(b, a, x[cut:], zi=z1)
        ref = scipy.signal.lfilter(b, a, x)
    assert_close(np.concatenate([y1, y2]), whole, np.float64)
    assert_close(whole, ref, np.float64)


@pytest.mark.parametrize("b,a", [([2.5], [1.0]), ([1, 2, 3, 4], [1, -0.5]),
                                 ([0.2, 0.1], [1, -0.3, 0.4, -0.1])])
def test_gains_and_unequal_lengths(rng, b, a):
    """A pure gain (run as order 1 with zero coefficients), a numerator longer than
    the denominator and the reverse, split, with zi and zf of the true order."""
    x = rng.standard_normal(40000)
    assert _plan("lfilter", (b, a), x, -1) is not None
    K = max(len(a), len(b)) - 1
    zi = rng.standard_normal(K)
    if K:
        y, zf = iirssm.lfilter(b, a, x, zi=zi)
        y_ref, zf_ref = scipy.signal.lfilter(b, a, x, zi=zi)
        assert_close(zf, zf_ref, np.float64)
    else:
        y, y_ref = iirssm.lfilter(b, a, x), scipy.signal.lfilter(b, a, x)
    assert_close(y, y_ref, np.float64)


def test_search_is_bounded(rng, monkeypatch):
    """A filter whose unit-state responses would need more than MAX_BASIS values is
    not split (and still filtered right)."""
    monkeypatch.setattr(_timesplit, "_BASIS_CACHE", {})
    monkeypatch.setattr(_timesplit, "MAX_BASIS", 4096)
    b, a = scipy.signal.butter(4, 0.01)        # ~3600 samples x 4 states
    x = rng.standard_normal(200000)
    assert _plan("lfilter", (b, a), x, -1) is None
    assert_close(iirssm.lfilter(b, a, x), scipy.signal.lfilter(b, a, x), np.float64)
    monkeypatch.setattr(_timesplit, "MAX_BASIS", 1 << 22)
    assert _plan("lfilter", (b, a), x, -1) is not None


def test_bad_zi_on_the_split_path(rng):
    """Signals long enough to be split check zi as every other call does: the
    parameter, the expected and the actual shape in the message."""
    x = rng.standard_normal((3, 40000))
    b, a = scipy.signal.butter(4, 0.1)
    assert _plan("lfilter", (b, a), x, -1) is not None
    with pytest.raises(ValueError, match=r"zi.*\(3, 4\).*\(3, 3\)"):
        iirssm.lfilter(b, a, x, zi=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="zi"):
        iirssm.lfilter(b, a, x, zi=np.zeros((2, 4)))
    sos = scipy.signal.butter(4, 0.1, output="sos")
    with pytest.raises(ValueError, match="zi"):
        iirssm.sosfilt(sos, x, zi=np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="zi"):
        iirssm.sosfilt(sos, x, zi=np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="a\\[0\\]"):
        iirssm.lfilter(b, np.r_[0.0, a[1:]], x)
