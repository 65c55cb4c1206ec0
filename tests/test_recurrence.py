"""linear_recurrence against the reference loop, scipy.signal.lfilter and its invariants."""

import numba
import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

import iirssm
from iirssm import _reference
from iirssm._cpu.scan import CHUNKED_MIN_LENGTH
from conftest import DTYPES, assert_close, random_array

SHAPES_AXES = [
    ((37,), 0),
    ((3, 50), -1),          # fewer rows than a tile
    ((19, 41), 1),          # two full tiles and a partial one
    ((41, 5), 0),           # time-major, Q > 1
    ((2, 33, 3), 1),        # time in the middle
    ((4, 3, 2, 29), 3),
    ((29, 2, 3), 0),
]


def _coef(rng, kind, shape, axis, dtype):
    """A decay coefficient that is a scalar, per channel, or per sample, |a| < 1."""
    rdt = np.empty(0, dtype).real.dtype
    if kind == "scalar":
        return rdt.type(0.8)
    cshape = list(shape)
    if kind == "channel":
        cshape[axis] = 1
    a = rng.uniform(-0.95, 0.95, cshape)
    if np.dtype(dtype).kind == "c":
        a = a * np.exp(1j * rng.uniform(0, np.pi, cshape))
    return a.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
@pytest.mark.parametrize("kind", ["scalar", "channel", "sample"])
@pytest.mark.parametrize("reverse", [False, True])
def test_against_reference(rng, dtype, shape, axis, kind, reverse):
    b = random_array(rng, shape, dtype)
    a = _coef(rng, kind, shape, axis, dtype)
    zshape = list(shape)
    zshape[axis] = 1
    zi = random_array(rng, zshape, dtype)
    y, zf = iirssm.linear_recurrence(a, b, axis=axis, zi=zi, reverse=reverse, return_zf=True)
    ry, rzf = _reference.linear_recurrence(a, b, zi=zi, axis=axis, reverse=reverse,
                                           dtype=np.dtype(dtype))
    assert y.dtype == np.dtype(dtype) and zf.dtype == np.dtype(dtype)
    assert y.shape == shape and zf.shape == tuple(zshape)
    assert_close(y, ry, dtype)
    assert_close(zf, rzf, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["scalar", "sample"])
@pytest.mark.parametrize("rows", [1, 3, 7])
@pytest.mark.parametrize("reverse", [False, True])
def test_chunked_long_rows_against_reference(rng, dtype, kind, rows, reverse):
    # Long and few rows take the chunked-in-time scan; the length is not a multiple
    # of the number of pieces, so the last piece carries a remainder.
    L = CHUNKED_MIN_LENGTH + 77
    b = random_array(rng, (rows, L), dtype)
    a = _coef(rng, kind, (rows, L), -1, dtype)
    zi = random_array(rng, (rows, 1), dtype)
    y, zf = iirssm.linear_recurrence(a, b, zi=zi, reverse=reverse, return_zf=True)
    ry, rzf = _reference.linear_recurrence(a, b, zi=zi, reverse=reverse, dtype=np.dtype(dtype))
    assert_close(y, ry, dtype)
    assert_close(zf, rzf, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((5, 200), -1), ((200, 6), 0), ((2, CHUNKED_MIN_LENGTH + 5), 1)])
def test_against_scipy_lfilter(rng, dtype, shape, axis):
    a = 0.93
    b = random_array(rng, shape, dtype)
    zshape = list(shape)
    zshape[axis] = 1
    h0 = random_array(rng, zshape, dtype)
    # Direct form II transposed keeps a*y[t-1] as its state: zi = a * h[-1].
    ref, ref_zf = scipy.signal.lfilter([1.0], [1.0, -a], b, axis=axis, zi=(a * h0).astype(dtype))
    y, zf = iirssm.linear_recurrence(np.asarray(a, dtype), b, axis=axis, zi=h0, return_zf=True)
    assert_close(y, ref, dtype)
    assert_close(a * zf, ref_zf, dtype)


@pytest.mark.parametrize("layout", ["C", "F", "strided", "negative", "transposed"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_layout_independence(rng, layout, axis):
    base = rng.standard_normal((6, 40, 5))
    a = rng.uniform(0.1, 0.9, (6, 40, 5))
    expected = iirssm.linear_recurrence(a, base, axis=axis)
    if layout == "C":
        b = base.copy(order="C")
    elif layout == "F":
        b = np.asfortranarray(base)
    elif layout == "strided":
        big = np.zeros((12, 80, 10))
        big[::2, ::2, ::2] = base
        b = big[::2, ::2, ::2]
    elif layout == "negative":
        b = base[::-1, ::-1, ::-1].copy()[::-1, ::-1, ::-1]
    else:
        b = np.ascontiguousarray(base.transpose(2, 0, 1)).transpose(1, 2, 0)
    assert np.array_equal(b, base)
    y = iirssm.linear_recurrence(np.asfortranarray(a) if layout == "F" else a, b, axis=axis)
    assert_close(y, expected, np.float64)


def test_fortran_input_gives_fortran_output(rng):
    b = np.asfortranarray(rng.standard_normal((50, 4)))
    y = iirssm.linear_recurrence(0.5, b, axis=0)
    assert y.flags.f_contiguous
    assert_close(y, _reference.linear_recurrence(0.5, b, axis=0)[0], np.float64)


def test_inputs_not_modified_and_output_fresh(rng):
    a = rng.uniform(0, 1, (3, 20))
    b = rng.standard_normal((3, 20))
    zi = rng.standard_normal((3, 1))
    copies = [a.copy(), b.copy(), zi.copy()]
    y, zf = iirssm.linear_recurrence(a, b, zi=zi, return_zf=True)
    for orig, cp in zip((a, b, zi), copies):
        assert np.array_equal(orig, cp)
    for arr in (a, b, zi):
        assert not np.shares_memory(y, arr) and not np.shares_memory(zf, arr)


def test_out_parameter(rng):
    b = rng.standard_normal((4, 30))
    out = np.empty_like(b)
    y = iirssm.linear_recurrence(0.7, b, out=out)
    assert y is out
    assert_close(out, _reference.linear_recurrence(0.7, b)[0], np.float64)
    fout = np.empty_like(b, order="F")  # different layout: computed then copied in
    assert iirssm.linear_recurrence(0.7, b, out=fout) is fout
    assert_close(fout, out, np.float64)


@pytest.mark.parametrize("bad,match", [
    (dict(out=np.empty((4, 29))), "shape"),
    (dict(out=np.empty((4, 30), np.float32)), "dtype"),
])
def test_out_errors(rng, bad, match):
    b = rng.standard_normal((4, 30))
    with pytest.raises((ValueError, TypeError), match=match):
        iirssm.linear_recurrence(0.7, b, **bad)


def test_out_must_not_overlap_input(rng):
    b = rng.standard_normal((4, 30))
    with pytest.raises(ValueError, match="overlap"):
        iirssm.linear_recurrence(0.7, b, out=b)


def test_nan_and_inf_propagate_forward():
    b = np.array([1.0, np.nan, 1.0, 1.0])
    y = iirssm.linear_recurrence(0.5, b)
    assert y[0] == 1.0 and np.isnan(y[1:]).all()
    y = iirssm.linear_recurrence(0.5, np.array([1.0, np.inf, 1.0]))
    assert np.isinf(y[1:]).all()
    # a zero decay forgets everything except NaN: 0 * NaN is NaN (IEEE)
    y = iirssm.linear_recurrence(np.array([1.0, 1.0, 0.0]), np.array([np.nan, 1.0, 1.0]))
    assert np.isnan(y).all()


@pytest.mark.parametrize("a,b,expected", [
    (0.5, np.arange(4), np.float64),                            # ints compute in float64
    (0.5, np.ones(4, np.float32), np.float32),                  # python float is weak
    (np.float64(0.5), np.ones(4, np.float32), np.float64),       # numpy scalars are strong (NEP 50)
    (np.full(4, 0.5), np.ones(4, np.float32), np.float64),       # never downcast
    (0.5, np.ones(4, np.float16), np.float32),                  # float16 computes in float32
    (0.5, np.ones(4, bool), np.float64),
    (0.5j, np.ones(4, np.float32), np.complex64),
    (0.5, np.ones(4, np.complex128), np.complex128),
])
def test_dtype_policy(a, b, expected):
    assert iirssm.linear_recurrence(a, b).dtype == np.dtype(expected)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(a=np.ones(3), b=np.ones((2, 4))), ValueError, "broadcast"),
    (dict(a=0.5, b=np.ones((2, 4)), zi=np.ones((2, 2))), ValueError, "zi must have shape"),
    (dict(a=0.5, b=np.ones((2, 4)), zi=np.ones(3)), ValueError, "zi must have shape"),
    (dict(a=0.5, b=np.array(["a", "b"])), TypeError, "b must hold real or complex"),
    (dict(a=0.5, b=np.array([1, None], dtype=object)), TypeError, "b must hold"),
    (dict(a=np.array([1, 2], dtype="datetime64[s]"), b=np.ones(2)), TypeError, "a must hold"),
    (dict(a=0.5, b=np.ones((2, 0))), ValueError, "no samples"),
    (dict(a=0.5, b=np.ones((2, 3)), axis=2), ValueError, "axis=2 is out of range"),
    (dict(a=0.5, b=np.ones((2, 3)), axis=1.0), TypeError, "axis must be an integer"),
    (dict(a=0.5, b=3.0), ValueError, "time axis"),
    (dict(a=0.5, b=np.ones(3), backend="cuda"), ValueError, "backend"),
])
def test_bad_input(kwargs, exc, match):
    a = kwargs.pop("a")
    b = kwargs.pop("b")
    with pytest.raises(exc, match=match):
        iirssm.linear_recurrence(a, b, **kwargs)


def test_zero_channels_gives_empty():
    y, zf = iirssm.linear_recurrence(0.5, np.ones((0, 5)), return_zf=True)
    assert y.shape == (0, 5) and zf.shape == (0, 1)


def test_pandas_in_pandas_out():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"u": [1.0, 0.0, 0.0], "v": [0.0, 2.0, 0.0]}, index=[10, 20, 30])
    y = iirssm.linear_recurrence(0.5, df)
    assert isinstance(y, pd.DataFrame) and list(y.columns) == ["u", "v"]
    assert list(y.index) == [10, 20, 30]
    np.testing.assert_allclose(y["u"], [1.0, 0.5, 0.25])
    s = iirssm.linear_recurrence(0.5, df["v"])
    assert isinstance(s, pd.Series) and s.name == "v"
    with pytest.raises(ValueError, match="index"):
        iirssm.linear_recurrence(0.5, df, axis=1)


# ----------------------------------------------------------------- properties

finite = st.floats(-1e3, 1e3, allow_nan=False)
decays = st.floats(-0.99, 0.99, allow_nan=False)


@st.composite
def problems(draw):
    L = draw(st.integers(1, 60))
    C = draw(st.integers(1, 11))
    seed = draw(st.integers(0, 2**32 - 1))
    r = np.random.default_rng(seed)
    b = r.standard_normal((C, L))
    per_sample = draw(st.booleans())
    a = r.uniform(-0.99, 0.99, (C, L) if per_sample else (C, 1))
    zi = r.standard_normal((C, 1))
    return a, b, zi


@given(problems(), st.data())
def test_chunks_with_carried_state_equal_whole(prob, data):
    a, b, zi = prob
    L = b.shape[1]
    cuts = sorted(data.draw(st.lists(st.integers(1, max(L - 1, 1)), max_size=4)))
    whole, zf_whole = iirssm.linear_recurrence(a, b, zi=zi, return_zf=True)
    parts, z = [], zi
    for lo, hi in zip([0] + cuts, cuts + [L]):
        if hi <= lo:
            continue
        ac = a if a.shape[1] == 1 else a[:, lo:hi]
        y, z = iirssm.linear_recurrence(ac, b[:, lo:hi], zi=z, return_zf=True)
        parts.append(y)
    assert_close(np.concatenate(parts, axis=1), whole, np.float64)
    assert_close(z, zf_whole, np.float64)


@given(problems())
def test_reverse_equals_flip_filter_flip(prob):
    a, b, zi = prob
    y = iirssm.linear_recurrence(a, b, zi=zi, reverse=True)
    af = a if a.shape[1] == 1 else a[:, ::-1]
    yf = iirssm.linear_recurrence(af, b[:, ::-1], zi=zi)[:, ::-1]
    assert_close(y, yf, np.float64)


@given(problems(), st.integers(0, 1))
def test_axis_independence(prob, axis):
    a, b, zi = prob
    ref = iirssm.linear_recurrence(a, b, zi=zi)
    if axis == 0:
        y = iirssm.linear_recurrence(a.T, b.T, zi=zi.T, axis=0).T
    else:
        y = iirssm.linear_recurrence(a[:, None, :], b[:, None, :], zi=zi[:, None, :], axis=2)[:, 0]
    assert_close(y, ref, np.float64)


@pytest.mark.parametrize("shape,axis", [((64, 3000), -1), ((3000, 64), 0),
                                        ((2, CHUNKED_MIN_LENGTH * 2), -1)])
def test_thread_count_independence(rng, shape, axis):
    b = rng.standard_normal(shape)
    a = rng.uniform(0.5, 0.999, shape)
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = iirssm.linear_recurrence(a, b, axis=axis)
    finally:
        numba.set_num_threads(n)
    many = iirssm.linear_recurrence(a, b, axis=axis)
    # Work is split over signals or fixed pieces of time, never by thread count:
    # results are identical, not merely close.
    assert np.array_equal(one, many)


# ----------------------------------------------------------------- planning

@pytest.mark.parametrize("P,Q,threads,expected", [
    (1, 64, 2, 32),      # 64 channels, 2 threads: 2 jobs of 32
    (1, 1000, 2, 256),   # capped at 256 (the state stays in L1)
    (1, 3, 2, 32),       # at least one full vectorised iteration
    (64, 64, 2, 64),     # many outer rows already give enough jobs
    (1, 64, 1, 64),
    (1, 100, 4, 32),
])
def test_col_block(P, Q, threads, expected, monkeypatch):
    from iirssm._cpu import scan
    monkeypatch.setattr(scan.numba, "get_num_threads", lambda: threads)
    assert scan.col_block(P, Q) == expected


def test_kernel_pick_serial_for_small_work():
    from iirssm._cpu._jit import PARALLEL_MIN_SAMPLES
    from iirssm._cpu.recurrence import scan_rows
    assert scan_rows.pick(PARALLEL_MIN_SAMPLES - 1) is scan_rows.serial
    if numba.get_num_threads() > 1:
        assert scan_rows.pick(PARALLEL_MIN_SAMPLES) is scan_rows.parallel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.1, 1e-4])
@pytest.mark.parametrize("reverse", [False, True])
def test_chunked_ema_form_fix_stops_below_rounding(rng, dtype, alpha, reverse):
    """The EMA form's chunked scan adds each piece's carry only while its weight
    (1 - alpha)**t is above epsilon / 1024: alpha = 1 (weight 0 at once), 0.1 (a
    few hundred samples) and 1e-4 (longer than a piece: never stops). Equal to
    the one-pass reference to the table's tolerance, final state included."""
    from iirssm._cpu.recurrence import scan_rows, scan_rows_chunked
    from iirssm._cpu.scan import N_CHUNKS
    L = CHUNKED_MIN_LENGTH + 77
    x = (rng.standard_normal((2, L)) + 5).astype(dtype)   # an offset: carries matter
    c = np.full((1, 1), alpha, dtype=dtype)
    h0 = np.array([3.0, -2.0], dtype=dtype)
    out = np.empty_like(x)
    hf = scan_rows_chunked.serial(c, x, h0, out, True, reverse, N_CHUNKS)
    ref = np.empty_like(x)
    rhf = scan_rows.serial(c, x, h0, ref, True, reverse)
    assert_close(out, ref, dtype)
    assert_close(hf, rhf, dtype)
    np.testing.assert_array_equal(hf, out[:, 0] if reverse else out[:, -1])


@pytest.mark.parametrize("ema", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("where", [10, 5 * 1026 + 3, CHUNKED_MIN_LENGTH // 2])
def test_chunked_non_finite_as_one_pass(rng, ema, bad, where):
    """NaN or inf inside a piece makes the carries after it non-finite; those
    pieces are run again from the carry, so the output is NaN/inf exactly where a
    single pass gives NaN/inf (a carried correction would restart clean)."""
    from iirssm._cpu.recurrence import scan_rows, scan_rows_chunked
    from iirssm._cpu.scan import N_CHUNKS
    L = CHUNKED_MIN_LENGTH + 77
    x = rng.standard_normal((1, L))
    x[0, where] = bad
    c = np.full((1, 1), 0.1 if ema else 0.9)
    h0 = np.zeros(1)
    out = np.empty_like(x)
    ref = np.empty_like(x)
    scan_rows_chunked.serial(c, x, h0, out, ema, False, N_CHUNKS)
    scan_rows.serial(c, x, h0, ref, ema, False)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(ref))
    assert_close(out, ref, np.float64)
