"""DiagonalSSM: the fused kernel against the reference loop, and the conversions against scipy."""

import numba
import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

from iirssm import _reference
from iirssm._ssm import DiagonalSSM
from conftest import DTYPES, assert_close, random_array

# ------------------------------------------------------------------ helpers


def real_system(rng, bank=(), n_pairs=2, n_real=1, radius=0.9, k=0):
    """Conjugate-symmetric modes: n_pairs complex pairs then n_real real modes."""
    r = rng.uniform(0.2, radius, bank + (n_pairs,))
    th = rng.uniform(0.1, 3.0, bank + (n_pairs,))
    pc = r * np.exp(1j * th)
    bc = rng.standard_normal(bank + (n_pairs,)) + 1j * rng.standard_normal(bank + (n_pairs,))
    cc = rng.standard_normal(bank + (n_pairs,)) + 1j * rng.standard_normal(bank + (n_pairs,))
    pr = rng.uniform(-radius, radius, bank + (n_real,))
    br = rng.standard_normal(bank + (n_real,))
    cr = rng.standard_normal(bank + (n_real,))
    poles = np.concatenate([pc, np.conj(pc), pr], axis=-1)
    B = np.concatenate([bc, np.conj(bc), br], axis=-1)
    C = np.concatenate([cc, np.conj(cc), cr], axis=-1)
    D = rng.standard_normal(bank)
    kk = rng.standard_normal(bank + (k,)) if k else None
    return DiagonalSSM(poles, B, C, D, k=kk)


def complex_system(rng, bank=(), n=3, radius=0.9, k=0):
    p = rng.uniform(0.1, radius, bank + (n,)) * np.exp(1j * rng.uniform(-3, 3, bank + (n,)))
    B = rng.standard_normal(bank + (n,)) + 1j * rng.standard_normal(bank + (n,))
    C = rng.standard_normal(bank + (n,)) + 1j * rng.standard_normal(bank + (n,))
    D = rng.standard_normal(bank) + 1j * rng.standard_normal(bank)
    kk = (rng.standard_normal(bank + (k,)) + 1j) if k else None
    return DiagonalSSM(p, B, C, D, k=kk)


def symmetric_state(rng, ssm, batch):
    """Modal states (batch..., N) that are conjugate-symmetric for a real system."""
    N = ssm.n_modes
    h = rng.standard_normal(batch + (N,)) + 1j * rng.standard_normal(batch + (N,))
    if ssm.is_real:
        npair = int(np.sum(ssm.poles.reshape(-1, N)[0].imag > 0))
        h[..., npair:2 * npair] = np.conj(h[..., :npair])
        h[..., 2 * npair:] = h[..., 2 * npair:].real
    return h


def reference(ssm, u, axis=-1, zi_modes=None):
    """The reference loop on time-last data; returns (y, zf_modes) with time back at ``axis``."""
    ut = np.moveaxis(np.asarray(u), axis, -1)
    y, zf = _reference.diagonal_ssm(ssm.poles, ssm.B, ssm.C, ssm._D, ut, zi=zi_modes,
                                    k=ssm._k if ssm._k.shape[-1] else None)
    return np.moveaxis(y, -1, axis), zf


def expected_dtype(ssm, udtype):
    udtype = np.dtype(udtype)
    if ssm.is_real and udtype.kind != "c":
        return udtype
    return np.result_type(udtype, np.complex64)


SHAPES_AXES = [
    ((37,), 0),
    ((3, 40), -1),          # fewer rows than a tile
    ((19, 23), 1),          # a full tile of 16 and a partial one
    ((19, 70), -1),         # and 64 + 6 samples: whole 16 x 16 blocks, then the loop
    ((31, 5), 0),           # time-major
    ((2, 21, 3), 1),        # time in the middle
    ((23, 2, 19), 0),       # time-major with more than a tile of channels (two full
                            # tiles read and written in place, then a partial one)
]

# ----------------------------------------------------------- kernel vs reference


@pytest.mark.parametrize("udtype", DTYPES)
@pytest.mark.parametrize("kind", ["real", "complex"])
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
@pytest.mark.parametrize("with_zi", [False, True])
def test_against_reference(rng, udtype, kind, shape, axis, with_zi):
    ssm = real_system(rng) if kind == "real" else complex_system(rng)
    u = random_array(rng, shape, udtype)
    zshape = list(shape)
    zshape[axis] = ssm.n_states
    batch = tuple(np.delete(np.array(shape), axis % len(shape)))
    zi_modes = symmetric_state(rng, ssm, batch) if with_zi else None
    if zi_modes is not None:      # a state in the signal's precision (complex128 would widen)
        zi_modes = zi_modes.astype(np.result_type(udtype, np.complex64))
    zi = None if zi_modes is None else np.moveaxis(zi_modes, -1, axis % len(shape))
    y, zf = ssm.filter(u, axis=axis, zi=zi, return_zf=True)
    ry, rzf = reference(ssm, u, axis, zi_modes)
    edt = expected_dtype(ssm, udtype)
    assert y.dtype == edt and y.shape == shape
    assert zf.dtype == np.result_type(edt, np.complex64) and zf.shape == tuple(zshape)
    if edt.kind != "c":
        assert_close(ry.imag, 0 * ry.real, np.float64, scale=np.max(np.abs(ry)))
        ry = ry.real
    assert_close(y, ry, edt)
    assert_close(np.moveaxis(zf, axis % len(shape), -1), rzf, zf.dtype)


def test_kept_work_coefficients_follow_the_call(rng):
    """filter keeps the coefficients it last laid out for a geometry: calls of other
    shapes, axes, memory orders and dtypes in any order equal a fresh system's."""
    for ssm in (real_system(rng, k=1), real_system(rng, bank=(3,)), complex_system(rng)):
        x = rng.standard_normal((40, 3))
        calls = [(x, 0), (x.T.copy(), -1), (np.asfortranarray(x), 0), (x.astype(np.float32), 0),
                 (x + 0.5j * x, 0), (x[:, :1], 0), (x, 0)]
        for u, axis in calls + calls[::-1]:
            fresh = DiagonalSSM(ssm.poles, ssm.B, ssm.C, ssm.D, k=ssm._k)
            y, zf = ssm.filter(u, axis=axis, return_zf=True)
            y2, zf2 = fresh.filter(u, axis=axis, return_zf=True)
            np.testing.assert_array_equal(y, y2)
            np.testing.assert_array_equal(zf, zf2)


@pytest.mark.parametrize("kind", ["real", "complex"])
@pytest.mark.parametrize("bank,ushape,axis", [
    ((4,), (4, 30), -1),           # one system per channel
    ((5,), (30, 5), 0),            # per channel, time-major
    ((18,), (30, 18), 0),          # per channel, time-major: a full tile read in place
    ((3,), (25,), -1),             # the bank adds a dimension: (3, 25)
    ((2, 1), (4, 20), -1),         # bank and channels broadcast: (2, 4, 20)
    ((3,), (20, 1), 0),            # (20, 3)
])
def test_bank_against_reference(rng, kind, bank, ushape, axis):
    ssm = real_system(rng, bank) if kind == "real" else complex_system(rng, bank)
    u = rng.standard_normal(ushape)
    ut = np.moveaxis(u, axis, -1)
    out_nontime = np.broadcast_shapes(ut.shape[:-1], bank)
    zi_modes = symmetric_state(rng, ssm, out_nontime)
    oax = axis if axis < 0 else axis - len(ushape)
    zi = np.moveaxis(zi_modes, -1, oax)
    y, zf = ssm.filter(u, axis=axis, zi=zi, return_zf=True)
    ry, rzf = _reference.diagonal_ssm(ssm.poles, ssm.B, ssm.C, ssm._D, ut, zi=zi_modes)
    ry = np.moveaxis(ry, -1, oax)
    assert y.shape == ry.shape
    assert_close(y, ry.real if kind == "real" else ry, np.float64)
    assert_close(np.moveaxis(zf, oax, -1), rzf, np.complex128)


def test_bank_with_different_pair_structure(rng):
    # channel 0: one conjugate pair and two real modes; channel 1: two pairs. The kernel
    # runs 3 and 2 modes (the second padded), then rebuilds all four states.
    poles = np.array([[0.5 + 0.5j, 0.5 - 0.5j, 0.3, -0.7], [0.2 + 0.8j, 0.2 - 0.8j, -0.6j, 0.6j]])
    B = np.array([[1 + 1j, 1 - 1j, 2, 1], [1, 1, 1j, -1j]])
    C = np.array([[0.5j, -0.5j, 1, 1], [2, 2, 1 + 1j, 1 - 1j]])
    ssm = DiagonalSSM(poles, B, C, [0.1, -0.2])
    assert ssm.is_real
    u = rng.standard_normal((2, 40))
    zi = symmetric_state(rng, DiagonalSSM(poles[0], B[0], C[0]), (2,))
    zi[1] = [0.3 + 0.1j, 0.3 - 0.1j, 1 - 2j, 1 + 2j]
    y, zf = ssm.filter(u, zi=zi, return_zf=True)
    ry, rzf = _reference.diagonal_ssm(poles, B, C, [0.1, -0.2], u, zi=zi)
    assert y.dtype == np.float64
    assert_close(y, ry.real, np.float64)
    assert_close(zf, rzf, np.complex128)


@pytest.mark.parametrize("kind", ["real", "complex"])
def test_fir_terms_against_reference(rng, kind):
    ssm = (real_system(rng, k=3) if kind == "real" else complex_system(rng, k=2))
    u = rng.standard_normal((3, 30))
    y, zf = ssm.filter(u, return_zf=True)
    ry, rzf = reference(ssm, u)
    assert zf.shape == (3, ssm.n_states)
    assert_close(y, ry.real if kind == "real" else ry, np.float64)
    assert_close(zf[:, :ssm.n_modes], rzf, np.complex128)
    # the FIR part of the state holds the last inputs, newest first
    K = ssm.n_states - ssm.n_modes
    assert_close(zf[:, ssm.n_modes:].real, u[:, ::-1][:, :K], np.float64)


@pytest.mark.parametrize("kind", ["real", "complex"])
@pytest.mark.parametrize("k", [0, 2])
def test_parallel_path_and_thread_independence(rng, kind, k):
    # enough work for the parallel kernel (>= 2**16 mode-samples)
    ssm = real_system(rng, k=k) if kind == "real" else complex_system(rng, k=k)
    u = rng.standard_normal((37, 2000))
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ssm.filter(u)
    finally:
        numba.set_num_threads(n)
    many = ssm.filter(u)
    assert np.array_equal(one, many)
    ry, _ = reference(ssm, u[:3, :200])
    assert_close(many[:3, :200], ry.real if kind == "real" else ry, np.float64)


@pytest.mark.parametrize("kind", ["real", "complex", "complex_in", "float32"])
@pytest.mark.parametrize("rows", [1, 3])
def test_few_long_rows_chunked_in_time(rng, kind, rows):
    # fewer rows than lanes and at least CHUNKED_MIN_LENGTH samples: each row is cut into
    # pieces scanned as lanes, then the carries are added. Same answer as the plain scan
    # (which runs when the rows are part of a full tile), streaming included.
    from iirssm._ssm import CHUNKED_MIN_LENGTH
    make = complex_system if kind == "complex" else real_system
    ssm = make(rng, radius=0.999)
    L = CHUNKED_MIN_LENGTH + 77                      # not a multiple of the piece count
    dtype = {"float32": np.float32, "complex_in": np.complex128}.get(kind, np.float64)
    u = random_array(rng, (rows, L), dtype)
    zi = symmetric_state(rng, ssm, (rows,)).astype(np.result_type(dtype, np.complex64))
    y, zf = ssm.filter(u, zi=zi, return_zf=True)
    pad = np.concatenate([u, random_array(rng, (16, L), dtype)])
    zpad = np.concatenate([zi, symmetric_state(rng, ssm, (16,)).astype(zi.dtype)])
    yp, zfp = ssm.filter(pad, zi=zpad, return_zf=True)
    assert_close(y, yp[:rows], y.dtype)
    assert_close(zf, zfp[:rows], zf.dtype)
    y1, z1 = ssm.filter(u[:, :5000], zi=zi, return_zf=True)
    y2 = ssm.filter(u[:, 5000:], zi=z1)
    assert_close(np.concatenate([y1, y2], axis=1), y, y.dtype)
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ssm.filter(u, zi=zi)
    finally:
        numba.set_num_threads(n)
    assert np.array_equal(one, y)


def test_growing_modes_are_not_chunked(rng):
    from iirssm._ssm import CHUNKED_MIN_LENGTH
    ssm = DiagonalSSM([1.00001, 0.5], 1.0, 1.0)       # |p| > 1: carries would overflow
    u = rng.standard_normal((1, CHUNKED_MIN_LENGTH + 5))
    y = ssm.filter(u)
    assert_close(y, ssm.filter(np.concatenate([u, np.zeros((16, u.shape[1]))]))[:1], np.float64)


@pytest.mark.parametrize("layout", ["C", "F", "strided", "transposed"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_layout_independence(rng, layout, axis):
    ssm = real_system(rng)
    base = rng.standard_normal((6, 30, 5))
    expected = ssm.filter(base, axis=axis)
    if layout == "C":
        u = base.copy()
    elif layout == "F":
        u = np.asfortranarray(base)
    elif layout == "strided":
        big = np.zeros((12, 60, 10))
        big[::2, ::2, ::2] = base
        u = big[::2, ::2, ::2]
    else:
        u = np.ascontiguousarray(base.transpose(2, 0, 1)).transpose(1, 2, 0)
    y = ssm.filter(u, axis=axis)
    assert_close(y, expected, np.float64)
    if layout == "F":
        assert y.flags.f_contiguous


# ------------------------------------------------------------- streaming


@st.composite
def problems(draw):
    L = draw(st.integers(1, 50))
    C = draw(st.integers(1, 20))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["real", "complex", "real_fir"]))
    r = np.random.default_rng(seed)
    ssm = {"real": lambda: real_system(r), "complex": lambda: complex_system(r),
           "real_fir": lambda: real_system(r, k=2)}[kind]()
    u = r.standard_normal((C, L))
    zi = symmetric_state(r, ssm, (C,))
    if ssm.n_states > ssm.n_modes:
        zi = np.concatenate([zi, r.standard_normal((C, ssm.n_states - ssm.n_modes))], axis=1)
    return ssm, u, zi


@given(problems(), st.data())
def test_chunks_with_carried_state_equal_whole(prob, data):
    ssm, u, zi = prob
    L = u.shape[1]
    cuts = sorted(data.draw(st.lists(st.integers(1, max(L - 1, 1)), max_size=4)))
    whole, zf_whole = ssm.filter(u, zi=zi, return_zf=True)
    parts, z = [], zi
    for lo, hi in zip([0] + cuts, cuts + [L]):
        if hi <= lo:
            continue
        y, z = ssm.filter(u[:, lo:hi], zi=z, return_zf=True)
        parts.append(y)
    assert_close(np.concatenate(parts, axis=1), whole, whole.dtype)
    assert_close(z, zf_whole, np.complex128)


def test_float32_streaming(rng):
    ssm = DiagonalSSM.from_sos(scipy.signal.butter(6, 0.2, output="sos"))
    u = rng.standard_normal((4, 300)).astype(np.float32)
    whole = ssm.filter(u)
    y1, z = ssm.filter(u[:, :111], return_zf=True)
    y2, z = ssm.filter(u[:, 111:], zi=z, return_zf=True)
    assert whole.dtype == np.float32 and z.dtype == np.complex64
    assert_close(np.concatenate([y1, y2], axis=1), whole, np.float32)
    assert_close(whole, ssm.filter(u.astype(np.float64)), np.float32)


# ------------------------------------------------------------------ scipy


def _butter4():
    return DiagonalSSM.from_zpk(*scipy.signal.butter(4, 0.2, output="zpk"))


@pytest.mark.parametrize("make", [
    lambda: DiagonalSSM.from_zpk(*scipy.signal.butter(4, 0.2, output="zpk")),
    lambda: DiagonalSSM.from_zpk(*scipy.signal.cheby1(6, 1, 0.3, output="zpk")),
    lambda: DiagonalSSM.from_tf([0.3, 0.2, 0.1, 0.05], [1.0, -0.5]),       # improper
    lambda: DiagonalSSM.from_tf([1.0, 2.0, 1.0], [1.0, -0.9, 0.0]),          # a pole at 0
])
def test_filter_equals_lfilter_and_dlsim(rng, make):
    ssm = make()
    u = rng.standard_normal(200)
    b, a = ssm.to_tf()
    y = ssm.filter(u)
    assert_close(y, scipy.signal.lfilter(b, a, u), np.float64, rtol=1e-9, atol=1e-10)
    _, yd = scipy.signal.dlsim(ssm.to_dlti(), u)
    assert_close(y, yd[:, 0], np.float64, rtol=1e-9, atol=1e-10)
    # streaming through lfilter's own state agrees too
    u2 = rng.standard_normal((3, 50))
    assert_close(ssm.filter(u2, axis=-1), scipy.signal.lfilter(b, a, u2, axis=-1), np.float64,
                 rtol=1e-9, atol=1e-10)


def test_complex_system_equals_lfilter(rng):
    ssm = complex_system(rng, n=3)
    b, a = ssm.to_tf()
    assert np.iscomplexobj(b) and np.iscomplexobj(a)
    u = rng.standard_normal(100)
    assert_close(ssm.filter(u), scipy.signal.lfilter(b, a, u), np.complex128, rtol=1e-9,
                 atol=1e-10)


@pytest.mark.parametrize("worN,whole", [(512, False), (100, True), (None, False),
                                        (np.linspace(0, 3, 17), False)])
def test_freqz_equals_scipy(worN, whole):
    ssm = DiagonalSSM.from_zpk(*scipy.signal.cheby1(5, 1, 0.3, output="zpk"))
    w, h = ssm.freqz(worN, whole=whole)
    ws, hs = scipy.signal.freqz(*ssm.to_tf(), worN=worN, whole=whole)
    np.testing.assert_allclose(w, ws, rtol=1e-14, atol=0)
    assert_close(h, hs, np.complex128, rtol=1e-10, atol=1e-11)


def test_freqz_of_a_bank(rng):
    bank = real_system(rng, (3,), k=1)
    _, h = bank.freqz(64)
    assert h.shape == (3, 64)
    for i in range(3):
        hs = scipy.signal.freqz(*bank[i].to_tf(), worN=64)[1]
        assert_close(h[i], hs, np.complex128, rtol=1e-10, atol=1e-11)


SYS_REAL = (np.array([-1.0, -0.3 + 2j, -0.3 - 2j, -5.0]),
            np.array([1.0, 0.5 + 0.1j, 0.5 - 0.1j, 2.0]),
            np.array([0.7, 1 + 1j, 1 - 1j, -0.2]), 0.3)
SYS_CPLX = (np.array([-1.0 + 1j, -0.2 + 3j]), np.array([1.0, 2.0 - 1j]), np.array([0.5j, 1.0]), 0.1)


@pytest.mark.parametrize("method", ["zoh", "bilinear", "tustin", "euler", "forward_diff",
                                    "backward_diff"])
@pytest.mark.parametrize("system", [SYS_REAL, SYS_CPLX], ids=["real", "complex"])
@pytest.mark.parametrize("dt", [0.1, 0.7])
def test_from_continuous_matches_cont2discrete(method, system, dt):
    A, B, C, D = system
    ssm = DiagonalSSM.from_continuous(A, B, C, D, dt=dt, method=method)
    ad, bd, cd, dd, _ = scipy.signal.cont2discrete(
        (np.diag(A), B[:, None], C[None, :], np.array([[D]])), dt, method=method)
    num, den = scipy.signal.ss2tf(ad, bd, cd, dd)
    b, a = ssm.to_tf()
    assert ssm.is_real == (system is SYS_REAL)
    assert_close(a, den, np.complex128, rtol=1e-10, atol=1e-12)
    assert_close(b, num[0], np.complex128, rtol=1e-10, atol=1e-12)
    if system is SYS_REAL:
        u = np.random.default_rng(3).standard_normal(60)
        # the state space is complex-diagonal; its transfer function is real
        _, yd = scipy.signal.dlsim((num[0].real, den.real, dt), u)
        assert_close(ssm.filter(u), yd[:, 0], np.float64, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("method", ["zoh", "bilinear", "euler", "backward_diff", "mamba"])
def test_from_continuous_ssm_convention(method):
    A, B, C, D = SYS_CPLX
    dt = 0.3
    ssm = DiagonalSSM.from_continuous(A, B, C, D, dt=dt, method=method, convention="ssm")
    x = dt * A
    Abar = {"zoh": np.exp(x), "mamba": np.exp(x), "bilinear": (1 + x / 2) / (1 - x / 2),
            "euler": 1 + x, "backward_diff": 1 / (1 - x)}[method]
    Bbar = {"zoh": (np.exp(x) - 1) / A * B, "mamba": dt * B, "bilinear": dt * B / (1 - x / 2),
            "euler": dt * B, "backward_diff": dt * B / (1 - x)}[method]
    assert_close(ssm.poles, Abar, np.complex128)
    assert_close(ssm.B, Bbar, np.complex128)
    assert_close(ssm.C, C, np.complex128)
    assert_close(ssm._D, D, np.complex128)
    # kernel K[t] = sum C Bbar Abar**t (S4's convolution kernel)
    t = np.arange(20)
    K = np.sum(C[:, None] * Bbar[:, None] * Abar[:, None] ** t, axis=0)
    assert_close(ssm.kernel(20), K, np.complex128)


def test_mamba_defaults_to_ssm_convention():
    A, B, C, D = SYS_REAL
    m = DiagonalSSM.from_continuous(A, B, C, D, dt=0.05, method="mamba")
    assert_close(m.poles, np.exp(0.05 * A), np.complex128)
    assert_close(m.B, 0.05 * B, np.complex128)
    assert_close(m.C, C, np.complex128)


def test_zoh_limit_for_vanishing_poles():
    A = np.array([0.0, 1e-20, -1e-9, 2.0])
    ssm = DiagonalSSM.from_continuous(A, 1.0, 1.0, dt=0.5, convention="ssm")
    x = 0.5 * A
    expected = 0.5 * np.array([1.0, 1.0, np.expm1(x[2]) / x[2], np.expm1(x[3]) / x[3]])
    assert_close(ssm.B, expected, np.complex128, rtol=1e-15)


def test_from_continuous_dt_per_channel():
    dts = np.array([0.01, 0.1, 1.0])
    bank = DiagonalSSM.from_continuous([-1.0, -2.0], 1.0, 1.0, dt=dts, method="zoh")
    assert bank.bank_shape == (3,)
    assert_close(bank.poles[:, 0], np.exp(-dts), np.complex128)


@pytest.mark.parametrize("order", range(2, 13))
@pytest.mark.parametrize("design", ["butter", "cheby1", "ellip"])
@pytest.mark.parametrize("wn", [0.05, 0.3])
def test_zpk_and_sos_round_trips(design, order, wn):
    kwargs = dict(butter=(), cheby1=(1,), ellip=(1, 60))[design]
    fn = getattr(scipy.signal, design)
    z, p, k = fn(order, *kwargs, wn, output="zpk")
    sos = fn(order, *kwargs, wn, output="sos")
    for ssm in (DiagonalSSM.from_zpk(z, p, k), DiagonalSSM.from_sos(sos)):
        assert ssm.is_real and ssm.n_modes == order and ssm.is_stable
        _, h = ssm.freqz(256)
        _, hz = scipy.signal.freqz_zpk(z, p, k, worN=256)
        assert_close(h, hz, np.complex128, rtol=1e-9, atol=1e-10)
        _, pp, kk = ssm.to_zpk()
        assert_close(np.sort_complex(pp), np.sort_complex(p), np.complex128, rtol=1e-12)
        assert np.isrealobj(kk)
    if order <= 6:          # beyond, the tf coefficients themselves are ill-conditioned
        for mine, (bs, as_) in ((DiagonalSSM.from_zpk(z, p, k), scipy.signal.zpk2tf(z, p, k)),
                                (ssm, scipy.signal.sos2tf(sos))):
            b, a = mine.to_tf()
            # an odd order's first-order section pads sos2tf's b and a with a trailing 0
            as_, bs = np.trim_zeros(as_, "b"), bs[:len(b)]
            assert_close(a, as_, np.float64, rtol=1e-10, atol=1e-13)
            assert_close(b, bs, np.float64, rtol=1e-8, atol=1e-10)
    x = np.random.default_rng(order).standard_normal(300)
    assert_close(ssm.filter(x), scipy.signal.sosfilt(sos, x), np.float64, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("order", range(2, 9))
@pytest.mark.parametrize("design", ["butter", "cheby1", "ellip"])
def test_tf_round_trip(design, order):
    kwargs = dict(butter=(), cheby1=(1,), ellip=(1, 60))[design]
    b, a = getattr(scipy.signal, design)(order, *kwargs, 0.3)
    ssm = DiagonalSSM.from_tf(b, a)
    b2, a2 = ssm.to_tf()
    assert ssm.is_real and np.isrealobj(b2)
    assert_close(a2, a / a[0], np.float64, rtol=1e-9, atol=1e-12)
    assert_close(b2, b / a[0], np.float64, rtol=1e-8, atol=1e-11)
    x = np.random.default_rng(order).standard_normal(200)
    assert_close(ssm.filter(x), scipy.signal.lfilter(b, a, x), np.float64, rtol=1e-8,
                 atol=1e-10)


def test_from_tf_matches_residuez():
    b, a = [0.5, 0.1, 0.3, 0.2, 0.05], [1.0, -0.6, 0.3]
    ssm = DiagonalSSM.from_tf(b, a)
    r, p, k = scipy.signal.residuez(b, a, tol=1e-12)
    order = np.argsort(np.angle(p))
    mine = np.argsort(np.angle(ssm.poles))
    assert_close(ssm.residues[mine], r[order], np.complex128)
    assert_close(np.concatenate([[ssm.D], ssm.k]), k, np.float64)


def test_odd_butterworth_at_half_band_has_a_delay_not_a_tiny_pole():
    # scipy puts the real pole of butter(3, 0.5) at ~5.6e-17: it is a pole at 0 (a delay)
    z, p, k = scipy.signal.butter(3, 0.5, output="zpk")
    ssm = DiagonalSSM.from_zpk(z, p, k)
    assert ssm.n_modes == 2
    x = np.random.default_rng(0).standard_normal(100)
    assert_close(ssm.filter(x), scipy.signal.sosfilt(scipy.signal.butter(3, 0.5, output="sos"),
                                                     x), np.float64, rtol=1e-10, atol=1e-12)


def test_to_sos_and_to_zpk():
    ssm = _butter4()
    sos = ssm.to_sos()
    x = np.random.default_rng(1).standard_normal(200)
    assert_close(scipy.signal.sosfilt(sos, x), ssm.filter(x), np.float64, rtol=1e-10,
                 atol=1e-12)
    z, _, k = ssm.to_zpk()
    z2, _, k2 = scipy.signal.tf2zpk(*ssm.to_tf())
    assert_close(np.sort_complex(z), np.sort_complex(z2), np.complex128, rtol=1e-6, atol=1e-7)
    assert_close(k, k2, np.float64)


@pytest.mark.parametrize("bad", [
    lambda: DiagonalSSM.from_tf([1.0], np.poly([0.5, 0.5, 0.2])),
    lambda: DiagonalSSM.from_tf([1.0], np.poly([0.5, 0.5 * (1 + 1e-9), 0.2])),
    lambda: DiagonalSSM.from_zpk([], [0.5, 0.5, 0.1], 1.0),
    lambda: DiagonalSSM.from_zpk([], [0.8 + 0.1j, 0.8 - 0.1j, 0.8 + 0.1j, 0.8 - 0.1j], 1.0),
    lambda: DiagonalSSM.from_sos(np.tile(scipy.signal.butter(2, 0.2, output="sos"), (2, 1))),
])
def test_repeated_poles_raise(bad):
    with pytest.raises(ValueError, match="repeated or nearly repeated poles.*sosfilt"):
        bad()


def test_ill_conditioned_tf_raises_unless_asked():
    z, p, k = scipy.signal.butter(12, 0.02, output="zpk")
    b, a = scipy.signal.zpk2tf(z, p, k)     # the tf scipy would give, without its warning
    with pytest.raises(ValueError, match="does not reproduce.*from_zpk / from_sos"):
        DiagonalSSM.from_tf(b, a)
    DiagonalSSM.from_tf(b, a, rtol=None)    # accepted, at the caller's risk
    assert DiagonalSSM.from_zpk(z, p, k).n_modes == 12


# ------------------------------------------------------ analysis and initialisers


def test_impulse_and_kernel():
    ssm = DiagonalSSM.from_tf([0.3, 0.2, 0.1, 0.05], [1.0, -0.5, 0.2])
    delta = np.zeros(30)
    delta[0] = 1
    h = ssm.impulse(30)
    assert_close(h, scipy.signal.lfilter(*ssm.to_tf(), delta), np.float64)
    K = ssm.kernel(30)
    t = np.arange(30)
    expected = np.sum(ssm.residues[:, None] * ssm.poles[:, None] ** t, axis=0)
    assert_close(K, expected.real, np.float64)
    direct = h - K
    assert_close(direct[:2], [ssm.D, ssm.k[0]], np.float64)
    assert_close(direct[2:], np.zeros(28), np.float64, scale=1.0)


def test_cancellation(rng):
    assert DiagonalSSM([0.5], 1.0, 1.0).cancellation == pytest.approx(1.0)
    big = DiagonalSSM.from_sos(scipy.signal.butter(16, 0.1, output="sos")).cancellation
    assert 1e3 < big < 1e4
    # nearly repeated poles: huge opposite residues
    near = DiagonalSSM([0.9, 0.9 * (1 + 1e-4)], 1.0, [1e4, -1e4 * (1 + 1e-4)])
    assert near.cancellation > 1e3
    assert real_system(rng, (2, 3)).cancellation.shape == (2, 3)


def test_halflife_and_stability():
    ssm = DiagonalSSM([0.5, 1.0, 0.0, -0.25, 2.0], 1.0, 1.0)
    np.testing.assert_allclose(ssm.halflife, [1.0, np.inf, 0.0, 0.5, -1.0])
    assert not ssm.is_stable
    assert DiagonalSSM([0.5, 0.9j, -0.9j], 1.0, 1.0).is_stable


def test_s4d_real():
    s = DiagonalSSM.s4d_real(5, dt=0.2)
    assert s.is_real and s.n_modes == 5
    A = -(np.arange(5) + 1.0)
    assert_close(s.poles, np.exp(0.2 * A), np.complex128)
    assert_close(s.B, np.expm1(0.2 * A) / A, np.complex128)
    bank = DiagonalSSM.s4d_real(3, dt=[0.01, 0.1])
    assert bank.bank_shape == (2,)


def test_s4d_lin_matches_s4d_kernel(rng):
    N, dt = 8, 0.05
    C = rng.standard_normal(N // 2) + 1j * rng.standard_normal(N // 2)
    s = DiagonalSSM.s4d_lin(N, dt=dt, C=C)
    assert s.is_real and s.n_modes == N
    A = -0.5 + 1j * np.pi * np.arange(N // 2)
    dA = np.exp(dt * A)
    dB = (dA - 1) / A
    t = np.arange(40)
    K = 2 * np.real(np.sum(C[:, None] * dB[:, None] * dA[:, None] ** t, axis=0))
    assert_close(s.kernel(40), K, np.float64)
    u = rng.standard_normal(40)
    assert_close(s.filter(u), np.convolve(u, K)[:40], np.float64)


def test_log_halflives():
    s = DiagonalSSM.log_halflives(4, 2.0, 250.0)
    np.testing.assert_allclose(s.halflife, np.geomspace(2.0, 250.0, 4), rtol=1e-12)
    assert_close(s.freqz([0.0])[1], [1.0], np.complex128)
    y = s.filter(np.ones(5000))
    assert abs(y[-1] - 1.0) < 1e-5
    with pytest.raises(ValueError, match="min_halflife"):
        DiagonalSSM.log_halflives(3, 5.0, 1.0)


# -------------------------------------------------------------------- fft method


@pytest.mark.parametrize("kind", ["real", "complex", "real_fir"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
def test_fft_method_equals_scan(rng, kind, dtype):
    ssm = {"real": lambda: real_system(rng, (3,)), "complex": lambda: complex_system(rng, (3,)),
           "real_fir": lambda: real_system(rng, (3,), k=2)}[kind]()
    u = random_array(rng, (40, 3), dtype)
    y = ssm.filter(u, axis=0, method="fft")
    ys = ssm.filter(u, axis=0)
    assert y.dtype == ys.dtype and y.shape == ys.shape
    assert_close(y, ys, y.dtype, rtol=tol_fft(y.dtype), atol=tol_fft(y.dtype))


def tol_fft(dtype):
    return 1e-10 if np.dtype(dtype) in (np.float64, np.complex128) else 1e-4


def test_fft_method_refuses_state():
    with pytest.raises(ValueError, match="method='fft' supports neither"):
        _butter4().filter(np.ones(10), method="fft", zi=np.zeros(4))
    with pytest.raises(ValueError, match="method='fft' supports neither"):
        _butter4().filter(np.ones(10), method="fft", return_zf=True)


# ---------------------------------------------------------------- API details


def test_real_and_complex_rule(rng):
    real = _butter4()
    assert real.is_real and real.D.dtype == np.float64
    assert real.filter(np.ones(5)).dtype == np.float64
    assert real.filter(np.ones(5, np.float32)).dtype == np.float32
    assert real.filter(np.ones(5, np.int16)).dtype == np.float64
    assert real.filter(np.ones(5, np.complex64)).dtype == np.complex64
    # breaking the conjugate symmetry makes the system (and its output) complex
    p = real.poles.copy()
    p[0] *= 1.001
    cplx = DiagonalSSM(p, real.B, real.C, real.D)
    assert not cplx.is_real
    assert cplx.filter(np.ones(5, np.float32)).dtype == np.complex64
    assert not DiagonalSSM([0.5], 1.0, 1.0, 1j).is_real


def test_real_system_needs_conjugate_state():
    ssm = _butter4()
    with pytest.raises(ValueError, match="zi is not conjugate-symmetric"):
        ssm.filter(np.ones(10), zi=np.ones(4) * (1 + 1j))
    # a complex signal accepts any state
    y = ssm.filter(np.ones(10, complex), zi=np.ones(4) * (1 + 1j))
    assert np.iscomplexobj(y)
    fir = DiagonalSSM.from_tf([1.0, 0.5, 0.25], [1.0, -0.5])      # one mode, one FIR term
    with pytest.raises(ValueError, match="previous inputs of the FIR terms"):
        fir.filter(np.ones(10), zi=[0.0, 1j])


def test_inputs_not_modified_and_outputs_fresh(rng):
    poles = np.array([0.5 + 0.2j, 0.5 - 0.2j, 0.1])
    B = np.array([1.0, 1.0, 2.0])
    C = np.array([1j, -1j, 0.5])
    copies = [poles.copy(), B.copy(), C.copy()]
    ssm = DiagonalSSM(poles, B, C, 0.2)
    poles[0] = 99.0                                  # the system kept its own copy
    assert ssm.poles[0] == copies[0][0]
    assert not ssm.poles.flags.writeable
    u = rng.standard_normal((3, 20))
    zi = symmetric_state(rng, ssm, (3,))
    uc, zc = u.copy(), zi.copy()
    y, zf = ssm.filter(u, zi=zi, return_zf=True)
    assert np.array_equal(u, uc) and np.array_equal(zi, zc)
    for arr in (u, zi):
        assert not np.shares_memory(y, arr) and not np.shares_memory(zf, arr)
    assert np.array_equal(B, copies[1]) and np.array_equal(C, copies[2])


def test_out_parameter(rng):
    ssm = _butter4()
    u = rng.standard_normal((4, 30))
    out = np.empty_like(u)
    assert ssm.filter(u, out=out) is out
    assert_close(out, ssm.filter(u), np.float64)
    with pytest.raises(ValueError, match="overlap"):
        ssm.filter(u, out=u)


def test_nan_propagates_forward():
    ssm = _butter4()
    u = np.ones(20)
    u[7] = np.nan
    y = ssm.filter(u)
    assert np.all(np.isfinite(y[:7])) and np.all(np.isnan(y[7:]))


def test_getitem_repr_and_to_tf_of_a_bank(rng):
    bank = real_system(rng, (2, 3))
    assert bank[1, 2].bank_shape == () and bank[0].bank_shape == (3,)
    assert_close(bank[1, 2].poles, bank.poles[1, 2], np.complex128)
    b, a = bank.to_tf()
    assert b.shape == (2, 3, 6) and a.shape == (2, 3, 6)
    assert_close(b[1, 2], bank[1, 2].to_tf()[0], np.float64)
    assert "n_modes=5" in repr(bank) and "bank_shape=(2, 3)" in repr(bank)
    assert "poles=" in repr(_butter4())
    with pytest.raises(TypeError, match="cannot be indexed"):
        _butter4()[0]
    with pytest.raises(ValueError, match="single system"):
        bank.to_zpk()


def test_pandas_in_pandas_out():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": np.arange(6.0), "b": np.ones(6)}, index=list("uvwxyz"))
    y = _butter4().filter(df)
    assert isinstance(y, pd.DataFrame) and list(y.index) == list("uvwxyz")
    assert_close(y["a"].to_numpy(), _butter4().filter(np.arange(6.0)), np.float64)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: DiagonalSSM(0.5, 1.0, 1.0), ValueError, "poles must have at least one dimension"),
    (lambda: DiagonalSSM([0.5, 0.2], [1.0, 2.0, 3.0], 1.0), ValueError, "broadcast"),
    (lambda: DiagonalSSM(np.full((3, 2), 0.5), 1.0, 1.0, D=[1.0, 2.0]), ValueError, "bank"),
    (lambda: DiagonalSSM([0.5, np.nan], 1.0, 1.0), ValueError, "poles must be finite"),
    (lambda: DiagonalSSM([0.5], [np.inf], 1.0), ValueError, "B must be finite"),
    (lambda: DiagonalSSM([0.5], 1.0, 1.0, D=np.nan), ValueError, "D must be finite"),
    (lambda: DiagonalSSM(["a"], 1.0, 1.0), TypeError, "poles must hold"),
    (lambda: DiagonalSSM.from_tf([1.0], [0.0, 1.0]), ValueError, r"a\[0\] must be nonzero"),
    (lambda: DiagonalSSM.from_tf([[1.0]], [1.0, 0.5]), ValueError, "b must be a non-empty 1-D"),
    (lambda: DiagonalSSM.from_zpk([0.1, 0.2], [0.5], 1.0), ValueError, "not causal"),
    (lambda: DiagonalSSM.from_sos(np.ones((2, 5))), ValueError, r"sos must have shape"),
    (lambda: DiagonalSSM.from_continuous([-1.0], 1.0, 1.0, dt=0.0), ValueError,
     "dt must be positive"),
    (lambda: DiagonalSSM.from_continuous([-1.0], 1.0, 1.0, method="foh"), ValueError,
     "method must be"),
    (lambda: DiagonalSSM.from_continuous([-1.0], 1.0, 1.0, dt=1.0, method="euler"),
     ValueError, "pole at exactly 0"),
    (lambda: DiagonalSSM.from_continuous([-1.0], 1.0, 1.0, convention="x"), ValueError,
     "convention"),
    (lambda: DiagonalSSM.s4d_lin(5), ValueError, "N must be even"),
    (lambda: DiagonalSSM.s4d_real(0), ValueError, "N must be at least 1"),
])
def test_bad_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(u=np.ones((2, 0))), ValueError, "no samples"),
    (dict(u=3.0), ValueError, "time axis"),
    (dict(u=np.ones((3, 10)), zi=np.zeros((3, 3))), ValueError, "zi must have shape"),
    (dict(u=np.ones((3, 10)), zi=np.zeros(5)), ValueError, "zi must have shape"),
    (dict(u=np.array(["a", "b"])), TypeError, "u must hold"),
    (dict(u=np.ones((3, 10)), axis=2), ValueError, "axis=2 is out of range"),
    (dict(u=np.ones(10), method="direct"), ValueError, "method must be"),
    (dict(u=np.ones(10), backend="cuda"), ValueError, "backend"),
])
def test_bad_filter_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _butter4().filter(**kwargs)


def test_bank_must_broadcast_against_signal(rng):
    with pytest.raises(ValueError, match=r"bank shape \(3,\) does not broadcast"):
        real_system(rng, (3,)).filter(np.ones((4, 10)))
