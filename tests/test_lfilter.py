"""scipy drop-ins (lfilter, sosfilt, filtfilt, ...) against scipy.signal and the reference loops."""

import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

import iirssm
from iirssm import _reference
from conftest import DTYPES, assert_close, random_array


def random_filter(rng, order, radius=0.95, complex_=False):
    """A random stable (b, a) of the given order: poles inside |z| < radius."""
    n_pairs = order // 2
    r = rng.uniform(0.2, radius, n_pairs)
    th = rng.uniform(0.05, np.pi - 0.05, n_pairs)
    poles = np.concatenate([r * np.exp(1j * th), r * np.exp(-1j * th),
                            rng.uniform(-radius, radius, order - 2 * n_pairs)])
    a = np.real(np.poly(poles))
    b = rng.standard_normal(rng.integers(1, order + 2))
    if complex_:
        b = b + 1j * rng.standard_normal(b.size)
    return b, a


def random_sos(rng, n):
    sos = np.zeros((n, 6))
    for s in range(n):
        r, th = rng.uniform(0.3, 0.95), rng.uniform(0.05, np.pi - 0.05)
        sos[s, 3:] = [1.0, -2 * r * np.cos(th), r * r]
        sos[s, :3] = rng.standard_normal(3)
    return sos


AXES = [((40,), 0), ((3, 40), -1), ((40, 5), 0), ((2, 30, 3), 1), ((11, 35), 1)]


# (dtype, order) pairs. Each dtype and order up to 8 is a version of the kernel of its
# own, compiled on first use (20-36 s each on the 2-core VM; iirssm/_cpu/iir.py), so
# not every order is crossed with every dtype: float64 checks every order's generated
# body (0 runs as order 1; 12 runs the generic loop), and the other dtypes, whose
# bodies come from the same generated text, check unrolled orders and the generic loop.
LFILTER_CASES = ([(np.float64, k) for k in (0, 1, 2, 3, 4, 5, 6, 7, 8, 12)]
                 + [(np.float32, k) for k in (4, 12)]
                 + [(np.complex64, k) for k in (5, 12)]
                 + [(np.complex128, k) for k in (8, 12)])


@pytest.mark.parametrize("dtype,order", LFILTER_CASES)
@pytest.mark.parametrize("shape,axis", AXES)
@pytest.mark.parametrize("with_zi", [False, True])
def test_lfilter_matches_scipy(rng, order, shape, axis, dtype, with_zi):
    b, a = random_filter(rng, order, complex_=np.dtype(dtype).kind == "c") if order else \
        (np.array([2.0]), np.array([4.0]))
    x = random_array(rng, shape, dtype)
    b, a = b.astype(dtype), a.astype(dtype)
    if with_zi:
        zs = list(shape)
        zs[axis] = max(len(a), len(b)) - 1
        zi = random_array(rng, zs, dtype)
        y, zf = iirssm.lfilter(b, a, x, axis=axis, zi=zi)
        ry, rzf = scipy.signal.lfilter(b, a, x, axis=axis, zi=zi)
        assert zf.shape == rzf.shape and zf.dtype == rzf.dtype
        assert_close(zf, rzf, dtype)
    else:
        y = iirssm.lfilter(b, a, x, axis=axis)
        ry = scipy.signal.lfilter(b, a, x, axis=axis)
    assert y.dtype == ry.dtype and y.shape == ry.shape
    assert_close(y, ry, dtype)


@pytest.mark.parametrize("n_sections", [1, 3, 10, 20])
@pytest.mark.parametrize("shape,axis", AXES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_zi", [False, True])
def test_sosfilt_matches_scipy(rng, n_sections, shape, axis, dtype, with_zi):
    sos = random_sos(rng, n_sections).astype(dtype)
    x = random_array(rng, shape, dtype)
    if with_zi:
        zs = list(shape)
        zs[axis] = 2
        zi = random_array(rng, [n_sections] + zs, dtype)
        y, zf = iirssm.sosfilt(sos, x, axis=axis, zi=zi)
        ry, rzf = scipy.signal.sosfilt(sos, x, axis=axis, zi=zi)
        assert_close(zf, rzf, dtype, scale=np.abs(rzf).max())
    else:
        y = iirssm.sosfilt(sos, x, axis=axis)
        ry = scipy.signal.sosfilt(sos, x, axis=axis)
    assert y.dtype == ry.dtype and y.shape == ry.shape
    assert_close(y, ry, dtype)


# Large enough for the parallel kernel variant (>= 65536 samples) and for several
# lane groups per job and several jobs (more channels than one group of lanes holds,
# and a ragged last group), fixed and per-channel coefficients, both layouts.
@pytest.mark.parametrize("kind", ["lfilter", "sosfilt", "lfilter_per_channel"])
@pytest.mark.parametrize("shape,axis", [((150, 700), -1), ((700, 150), 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_many_channels_parallel_matches_scipy(rng, kind, shape, axis, dtype):
    x = random_array(rng, shape, dtype)
    n_ch = shape[1 - (axis % 2)]
    if kind == "sosfilt":
        sos = random_sos(rng, 4).astype(dtype)
        y, ry = iirssm.sosfilt(sos, x, axis=axis), scipy.signal.sosfilt(sos, x, axis=axis)
    elif kind == "lfilter":
        # order 4, as the per-channel case: one kernel version per dtype (see above)
        b, a = (c.astype(dtype) for c in random_filter(rng, 4))
        y, ry = iirssm.lfilter(b, a, x, axis=axis), scipy.signal.lfilter(b, a, x, axis=axis)
    else:
        filters = [random_filter(rng, 4) for _ in range(n_ch)]
        nb = max(len(f[0]) for f in filters)
        B = np.zeros((nb, n_ch), dtype)
        A = np.stack([f[1] for f in filters], axis=1).astype(dtype)
        for k, f in enumerate(filters):
            B[:len(f[0]), k] = f[0]
        if axis == -1:                      # coefficients (n_coef, channels, 1): time last
            B, A = B[:, :, None], A[:, :, None]
        y = iirssm.lfilter(B, A, x, axis=axis)
        ry = np.stack([scipy.signal.lfilter(B[:, k].ravel(), A[:, k].ravel(),
                                            x[k] if axis == -1 else x[:, k])
                       for k in range(n_ch)], axis=0 if axis == -1 else 1)
    assert y.dtype == ry.dtype
    assert_close(y, ry, dtype, scale=np.abs(ry).max())


@pytest.mark.parametrize("xdt,cdt", [(np.float32, None), (np.float32, np.float32),
                                     (np.int64, None), (np.complex64, np.float32),
                                     (np.float64, np.complex64), (np.int16, np.float32)])
def test_dtype_rules_match_scipy(xdt, cdt):
    b, a = [0.5, 0.25], [1.0, -0.3]
    if cdt is not None:
        b, a = np.array(b, cdt), np.array(a, cdt)
    x = np.arange(8).astype(xdt)
    assert iirssm.lfilter(b, a, x).dtype == scipy.signal.lfilter(b, a, x).dtype
    sos = np.array([[0.5, 0.25, 0.0, 1.0, -0.3, 0.0]], dtype=cdt or np.float64)
    assert iirssm.sosfilt(sos, x).dtype == scipy.signal.sosfilt(sos, x).dtype


# ----------------------------------------------------------- N-D coefficients (extension)

@pytest.mark.parametrize("kind", ["channel", "time", "both"])
@pytest.mark.parametrize("layout", ["rows", "cols"])
def test_lfilter_nd_coefficients_against_reference(rng, kind, layout):
    C, T, order = 5, 150, 3       # T: two whole blocks of the kernel (64) and a partial one
    if kind == "channel":
        coef_shape = (C, 1)
    elif kind == "time":
        coef_shape = (1, T)
    else:
        coef_shape = (C, T)
    b = rng.standard_normal((order + 1,) + coef_shape)
    a = np.empty((order + 1,) + coef_shape)
    a[0] = rng.uniform(0.5, 2.0, coef_shape)
    a[1:] = rng.uniform(-0.3, 0.3, (order,) + coef_shape) * a[0]
    x = rng.standard_normal((C, T))
    zi = rng.standard_normal((C, order))
    if layout == "rows":
        y, zf = iirssm.lfilter(b, a, x, zi=zi)
    else:
        y, zf = iirssm.lfilter(np.swapaxes(b, 1, 2), np.swapaxes(a, 1, 2), x.T, axis=0, zi=zi.T)
        y, zf = y.T, zf.T
    for c in range(C):
        bc = np.broadcast_to(b[:, c if coef_shape[0] > 1 else 0], (order + 1, T))
        ac = np.broadcast_to(a[:, c if coef_shape[0] > 1 else 0], (order + 1, T))
        ry, rzf = _reference.lfilter(bc, ac, x[c], zi[c])
        assert_close(y[c], ry, np.float64)
        assert_close(zf[c], rzf, np.float64)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12])
def test_per_channel_equals_separate_calls(rng, order):
    """Coefficients that differ between channels run the kernel's per-lane bodies, one
    generated body per order up to 8, then the generic loop."""
    filters = [random_filter(rng, order) for _ in range(3)]
    n = max(max(len(b), len(a)) for b, a in filters)
    B = np.zeros((n, 3, 1))
    A = np.zeros((n, 3, 1))
    for c, (b, a) in enumerate(filters):
        B[:len(b), c, 0] = b
        A[:len(a), c, 0] = a
    x = rng.standard_normal((3, 200))
    y = iirssm.lfilter(B, A, x)
    for c, (b, a) in enumerate(filters):
        assert_close(y[c], scipy.signal.lfilter(b, a, x[c]), np.float64)


@pytest.mark.parametrize("kind", ["channel", "time"])
def test_sosfilt_nd_against_reference(rng, kind):
    C, T, ns = 4, 150, 3          # T: two whole blocks of the kernel (64) and a partial one
    shape = (C, 1) if kind == "channel" else (T,)
    sos = np.stack([random_sos(rng, ns) for _ in range(int(np.prod(shape)))], axis=-1)
    sos = sos.reshape((ns, 6) + shape)
    x = rng.standard_normal((C, T))
    zi = rng.standard_normal((ns, C, 2))
    y, zf = iirssm.sosfilt(sos, x, zi=zi)
    for c in range(C):
        sc = sos[:, :, c, 0] if kind == "channel" else sos
        sc = np.broadcast_to(sc if sc.ndim == 3 else sc[..., None], (ns, 6, T))
        ry, rzf = _reference.sosfilt(sc, x[c], zi[:, c])
        assert_close(y[c], ry, np.float64)
        assert_close(zf[:, c], rzf, np.float64)


@pytest.mark.parametrize("ns", [1, 2, 5])
def test_sosfilt_time_varying_time_major_against_reference(rng, ns):
    """Axis 0 of C-ordered data with coefficients shared by the channels and varying in
    time: the kernel's first section reads x and its last one writes out directly, the
    sections between them (ns = 5: pairs, then a single one) work in its buffer. 40
    channels: a full tile of lanes and a ragged one; 150 samples: three blocks."""
    T, C = 150, 40
    sos = np.stack([random_sos(rng, ns) for _ in range(T)], axis=-1)      # (ns, 6, T)
    x = rng.standard_normal((T, C))
    zi = rng.standard_normal((ns, 2, C))
    y, zf = iirssm.sosfilt(sos[..., None], x, axis=0, zi=zi)
    for c in range(C):
        ry, rzf = _reference.sosfilt(sos, x[:, c], zi[:, :, c])
        assert_close(y[:, c], ry, np.float64)
        assert_close(zf[:, :, c], rzf, np.float64)


def test_constant_time_varying_equals_fixed(rng):
    sos = random_sos(rng, 4)
    x = rng.standard_normal((3, 80))
    tv = np.repeat(sos[..., None], 80, axis=-1)
    assert_close(iirssm.sosfilt(tv, x), iirssm.sosfilt(sos, x), np.float64)


@given(seed=st.integers(0, 2**31), cuts=st.lists(st.integers(1, 59), max_size=3, unique=True))
def test_time_varying_chunks_equal_whole(seed, cuts):
    r = np.random.default_rng(seed)
    T = 60
    b = r.standard_normal((3, 2, T))
    a = np.concatenate([np.ones((1, 2, T)), r.uniform(-0.4, 0.4, (2, 2, T))])
    x = r.standard_normal((2, T))
    whole, zf_whole = iirssm.lfilter(b, a, x, zi=np.zeros((2, 2)))
    z, parts = np.zeros((2, 2)), []
    bounds = [0] + sorted(cuts) + [T]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        y, z = iirssm.lfilter(b[..., lo:hi], a[..., lo:hi], x[:, lo:hi], zi=z)
        parts.append(y)
    assert_close(np.concatenate(parts, axis=1), whole, np.float64)
    assert_close(z, zf_whole, np.float64)


# ----------------------------------------------------------- zi helpers and filtfilt

@pytest.mark.parametrize("order", [1, 2, 5, 9])
def test_lfilter_zi_and_lfiltic(rng, order):
    b, a = random_filter(rng, order)
    assert_close(iirssm.lfilter_zi(b, a), scipy.signal.lfilter_zi(b, a), np.float64)
    y, x = rng.standard_normal(order), rng.standard_normal(len(b))
    assert_close(iirssm.lfiltic(b, a, y, x), scipy.signal.lfiltic(b, a, y, x), np.float64)
    assert_close(iirssm.lfiltic(b, a, y[:1]), scipy.signal.lfiltic(b, a, y[:1]), np.float64)


def test_lfilter_zi_gives_steady_state():
    b, a = scipy.signal.butter(4, 0.2)
    y = iirssm.lfilter(b, a, np.ones(30), zi=iirssm.lfilter_zi(b, a))[0]
    np.testing.assert_allclose(y, 1.0, rtol=1e-12)


def test_lfilter_zi_bank(rng):
    filters = [random_filter(rng, 3) for _ in range(2)]
    B = np.stack([np.pad(b, (0, 4 - len(b))) for b, _ in filters], axis=1)
    A = np.stack([a for _, a in filters], axis=1)
    zi = iirssm.lfilter_zi(B, A)
    for c, (b, a) in enumerate(filters):
        assert_close(zi[:, c], scipy.signal.lfilter_zi(np.pad(b, (0, 4 - len(b))), a), np.float64)


def test_sosfilt_zi(rng):
    sos = scipy.signal.cheby1(8, 1, 0.3, output="sos")
    assert_close(iirssm.sosfilt_zi(sos), scipy.signal.sosfilt_zi(sos), np.float64)


@pytest.mark.parametrize("padtype", ["odd", "even", "constant", None])
@pytest.mark.parametrize("padlen", [None, 0, 7])
@pytest.mark.parametrize("shape,axis", [((120,), 0), ((3, 120), -1), ((120, 4), 0)])
def test_filtfilt_matches_scipy(rng, padtype, padlen, shape, axis):
    b, a = scipy.signal.butter(4, 0.15)
    x = rng.standard_normal(shape)
    assert_close(iirssm.filtfilt(b, a, x, axis=axis, padtype=padtype, padlen=padlen),
                 scipy.signal.filtfilt(b, a, x, axis=axis, padtype=padtype, padlen=padlen),
                 np.float64)
    sos = scipy.signal.butter(4, 0.15, output="sos")
    assert_close(iirssm.sosfiltfilt(sos, x, axis=axis, padtype=padtype, padlen=padlen),
                 scipy.signal.sosfiltfilt(sos, x, axis=axis, padtype=padtype, padlen=padlen),
                 np.float64)


@pytest.mark.parametrize("irlen", [None, 25])
@pytest.mark.parametrize("order", [1, 3, 6])
@pytest.mark.parametrize("shape,axis", [((150,), 0), ((150, 3), 0), ((2, 150), -1)])
def test_filtfilt_gust_matches_scipy(rng, irlen, order, shape, axis):
    b, a = scipy.signal.butter(order, 0.2)
    x = rng.standard_normal(shape)
    assert_close(iirssm.filtfilt(b, a, x, axis=axis, method="gust", irlen=irlen),
                 scipy.signal.filtfilt(b, a, x, axis=axis, method="gust", irlen=irlen),
                 np.float64, rtol=1e-9)


def test_filtfilt_per_channel(rng):
    (b1, a1), (b2, a2) = scipy.signal.butter(3, 0.1), scipy.signal.butter(3, 0.3)
    x = rng.standard_normal((2, 100))
    y = iirssm.filtfilt(np.stack([b1, b2], 1)[..., None], np.stack([a1, a2], 1)[..., None], x)
    assert_close(y[0], scipy.signal.filtfilt(b1, a1, x[0]), np.float64)
    assert_close(y[1], scipy.signal.filtfilt(b2, a2, x[1]), np.float64)


def test_pandas_roundtrip(rng):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(rng.standard_normal((50, 2)), columns=["p", "q"])
    b, a = scipy.signal.butter(2, 0.3)
    y = iirssm.lfilter(b, a, df)
    assert isinstance(y, pd.DataFrame) and list(y.columns) == ["p", "q"]
    assert_close(y.to_numpy(), scipy.signal.lfilter(b, a, df.to_numpy(), axis=0), np.float64)


# ----------------------------------------------------------- bad input

@pytest.mark.parametrize("call,exc,match", [
    (lambda: iirssm.lfilter([1.0], [0.0, 1.0], np.ones(5)), ValueError, r"a\[0\]"),
    (lambda: iirssm.lfilter([], [1.0], np.ones(5)), ValueError, "non-empty"),
    (lambda: iirssm.lfilter([1.0], [], np.ones(5)), ValueError, "non-empty"),
    (lambda: iirssm.lfilter([1.0], [1.0, np.nan], np.ones(5)), ValueError, "non-finite"),
    (lambda: iirssm.lfilter([1.0], [1.0, 0.5], np.ones((3, 5)), zi=np.zeros((3, 2))),
     ValueError, "zi must have shape"),
    (lambda: iirssm.lfilter([1.0], [1.0, 0.5], np.ones((3, 0))), ValueError, "no samples"),
    (lambda: iirssm.lfilter(np.ones((2, 4)), [1.0], np.ones((3, 5))), ValueError, "broadcast"),
    (lambda: iirssm.lfilter(["a"], [1.0], np.ones(3)), TypeError, "b must hold"),
    (lambda: iirssm.sosfilt(np.ones((2, 5)), np.ones(5)), ValueError, r"\(n_sections, 6\)"),
    (lambda: iirssm.sosfilt(np.array([[1, 0, 0, 2, 0, 0.0]]), np.ones(5)), ValueError,
     r"sos\[:, 3\]"),
    (lambda: iirssm.sosfilt(np.array([[1, 0, 0, 1, 0, np.inf]]), np.ones(5)), ValueError,
     "non-finite"),
    (lambda: iirssm.sosfilt(np.array([[1, 0, 0, 1, 0, 0.0]]), np.ones(5), zi=np.zeros((2, 2))),
     ValueError, "n_sections"),
    (lambda: iirssm.filtfilt([1.0, 1.0], [1.0, -0.5], np.ones(6)), ValueError, "padlen"),
    (lambda: iirssm.filtfilt([1.0], [1.0, -0.5], np.ones(60), padtype="bad"), ValueError,
     "padtype"),
    (lambda: iirssm.filtfilt([1.0], [1.0, -0.5], np.ones(60), method="x"), ValueError, "method"),
    (lambda: iirssm.filtfilt(np.ones((1, 60)), [1.0, -0.5], np.ones(60)), ValueError,
     "varies in time"),
    (lambda: iirssm.sosfiltfilt(np.array([[1, 0, 0, 1, 0, 0.0]]), np.ones(3)), ValueError,
     "padlen"),
    (lambda: iirssm.lfilter_zi([1.0], [1.0, -1.0]), np.linalg.LinAlgError, "pole at z = 1"),
    (lambda: iirssm.lfilter_zi([1.0], [0.0, 0.0]), ValueError, "nonzero"),
    # the same checks on both paths: one signal (handed to scipy) and 64 (the kernels)
    (lambda: iirssm.lfilter([1.0], [0.0, 1.0], np.ones((64, 5))), ValueError, r"a\[0\]"),
    (lambda: iirssm.lfilter([1.0], [1.0, 0.5], np.ones(5), zi=np.zeros(3)), ValueError,
     "zi must have shape"),
    (lambda: iirssm.sosfilt([[1, 0, 0, 1, 0, 0.0]], np.ones(5), zi=np.zeros((1, 3))),
     ValueError, r"zi\[0\] must have shape"),
    (lambda: iirssm.sosfilt([[1, 0, 0, 1, 0, 0.0]], np.ones((64, 5)), zi=np.zeros((1, 64, 3))),
     ValueError, r"zi\[0\] must have shape"),
    (lambda: iirssm.sosfilt_zi([[1, 0, 0, 1, -2, 1.0]]), np.linalg.LinAlgError,
     "pole at z = 1"),
    # non-finite coefficients among more than a few (checked by the ufunc, not in Python)
    (lambda: iirssm.lfilter(np.r_[np.ones(39), np.inf], [1.0], np.ones(50)), ValueError,
     "non-finite"),
    (lambda: iirssm.sosfilt(np.r_[np.tile([1, 0, 0, 1, 0, 0.0], (7, 1)),
                                  [[1, 0, np.nan, 1, 0, 0]]], np.ones(5)),
     ValueError, "non-finite"),
    (lambda: iirssm.lfilter([1.0], [1.0, 1j * np.inf], np.ones(5)), ValueError, "non-finite"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_inputs_not_modified(rng):
    b, a = random_filter(rng, 4)
    sos = random_sos(rng, 3)
    x = rng.standard_normal((3, 60))
    zi = rng.standard_normal((3, 4))
    copies = [v.copy() for v in (b, a, sos, x, zi)]
    y, _ = iirssm.lfilter(b, a, x, zi=zi)
    y2 = iirssm.sosfilt(sos, x)
    y3 = iirssm.filtfilt(b, a, x)
    for v, c in zip((b, a, sos, x, zi), copies):
        np.testing.assert_array_equal(v, c)
    for out in (y, y2, y3):
        assert not np.shares_memory(out, x)
