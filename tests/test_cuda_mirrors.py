"""The CUDA scans' association order (NumPy mirrors) against the reference loops.

``iirssm/_cuda/_mirror.py`` composes the affine elements in exactly the order of
the kernels (lanes, V, U, shuffles, warp totals, tile carries, reversed lanes,
identity padding, split-path chunks and their parallel carry scan). Here it is
compared with the float64/complex128 loops of ``iirssm/_reference.py`` over the
awkward lengths of each dtype's tile.
"""

import numpy as np
import pytest

from iirssm import _reference as ref
from iirssm._cuda import _mirror as M
from iirssm._cuda._plan import split_plan, tile_size

from conftest import assert_close


def lengths(dtype):
    T = tile_size(dtype)
    return sorted({1, 2, 31, 32, 33, T - 1, T, T + 1, 3 * T + 5})


def _decays(rng, L, dtype, lo=0.5, hi=0.999):
    a = rng.uniform(lo, hi, L)
    if np.dtype(dtype).kind == "c":
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, L))
    return a.astype(dtype)


def _signal(rng, L, dtype):
    x = rng.standard_normal(L)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(L)
    return x.astype(dtype)


CASES = [(dt, L) for dt in (np.float32, np.complex64) for L in lengths(dt)]


@pytest.mark.parametrize("mode", ["rec", "rrev"])
@pytest.mark.parametrize("dtype,L", CASES)
def test_recurrence_mirror(rng, dtype, L, mode):
    a = _decays(rng, L, dtype)
    b = _signal(rng, L, dtype)
    y, hf = M.scan_row(a, b, 0.7, mode=mode)
    r, zf = ref.linear_recurrence(a.astype(np.complex128), b, zi=[0.7], reverse=mode == "rrev")
    assert y.dtype == dtype
    assert_close(y, r, dtype)
    assert_close(hf, zf[0], dtype)
    assert hf == (y[0] if mode == "rrev" else y[-1])


@pytest.mark.parametrize("dtype,L", CASES)
def test_recurrence_mirror_constant_decay(rng, dtype, L):
    a = _decays(rng, 1, dtype)[0]
    b = _signal(rng, L, dtype)
    y, _ = M.scan_row(a, b, 0.0)
    r, _ = ref.linear_recurrence(np.complex128(a), b)
    assert_close(y, r, dtype)


@pytest.mark.parametrize("dtype,L", CASES)
def test_ema_mirror(rng, dtype, L):
    rdt = np.empty(0, dtype).real.dtype
    c = rng.uniform(0.001, 0.6, L).astype(rdt)
    x = _signal(rng, L, dtype)
    y, hf = M.scan_row(c, x, x[0], mode="ema")
    r, _ = ref.linear_recurrence(1 - c.astype(np.float64), c * x.astype(np.complex128), zi=[x[0]])
    assert_close(y, r, dtype)
    # pandas' recursive EMA (adjust=False) from the first sample
    if dtype == np.float32:
        e, _ = ref.ewm_mean(x, 1 - c.astype(np.float64), c.astype(np.float64), adjust=False)
        assert_close(y, e, dtype)


@pytest.mark.parametrize("dtype,L", CASES)
def test_adjoint_mirror(rng, dtype, L):
    a = _decays(rng, L, dtype)
    b = _signal(rng, L, dtype)
    g = _signal(rng, L, dtype)
    h, _ = M.scan_row(a, b, 0.3)
    db, da, dh0 = M.adjoint_row(a, g, h, 0.3, lam_in=0.5)
    # lam[t] = g[t] + conj(a[t+1]) lam[t+1], lam[L-1] = g[L-1] + lam_in
    ash = np.ones(L, dtype=np.complex128)
    ash[:-1] = np.conj(a[1:])
    gg = g.astype(np.complex128)
    gg[-1] += 0.5
    lam, _ = ref.linear_recurrence(ash, gg, reverse=True)
    assert_close(db, lam, dtype)
    hp = np.concatenate([[0.3], h[:-1]]).astype(np.complex128)
    assert_close(da, lam * np.conj(hp), dtype)
    assert_close(dh0, np.conj(np.complex128(a[0])) * lam[0], dtype, scale=np.abs(lam).max())


def test_adjoint_is_the_gradient():
    """Finite differences in float64 of a real-valued loss, complex conjugate conventions."""
    rng = np.random.default_rng(5)
    L = 300
    a = _decays(rng, L, np.complex128, 0.3, 0.9)
    b = _signal(rng, L, np.complex128)
    w = _signal(rng, L, np.complex128)
    h0 = 0.2 - 0.1j

    def loss(a_, b_, h0_):
        h, _ = ref.linear_recurrence(a_, b_, zi=[h0_])
        return float(np.real(np.sum(np.conj(w) * h)))

    h, _ = M.scan_row(a, b, h0)
    # dloss/dconj(h) = w / 2 -> with Wirtinger conventions the adjoint of g = w gives
    # dloss/dRe(x) + i dloss/dIm(x) for x in (a, b, h0)
    db, da, dh0 = M.adjoint_row(a, w, h, h0)
    eps = 1e-6
    for t in (0, 1, 150, L - 1):
        for unit in (1, 1j):
            e = np.zeros(L, complex)
            e[t] = eps * unit
            num_b = (loss(a, b + e, h0) - loss(a, b - e, h0)) / (2 * eps)
            num_a = (loss(a + e, b, h0) - loss(a - e, b, h0)) / (2 * eps)
            part = np.real if unit == 1 else np.imag
            assert abs(num_b - part(db[t])) < 1e-6
            assert abs(num_a - part(da[t])) < 1e-6
    num_h0 = (loss(a, b, h0 + eps) - loss(a, b, h0 - eps)) / (2 * eps)
    assert abs(num_h0 - dh0.real) < 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_split_path_long_row(rng, dtype):
    L = 10**5
    p = split_plan(1, L, dtype)
    assert p.split  # the reduce-then-scan path is what this length exercises
    a = _decays(rng, L, dtype, 0.9, 0.9999)
    b = _signal(rng, L, dtype)
    for mode in ("rec", "rrev"):
        y, _ = M.scan_row(a, b, 1.0, mode=mode)
        r, _ = ref.linear_recurrence(a.astype(np.complex128), b, zi=[1.0],
                                     reverse=mode == "rrev")
        assert_close(y, r, dtype)
    g = _signal(rng, L, dtype)
    h, _ = M.scan_row(a, b, 1.0)
    db, _, _ = M.adjoint_row(a, g, h, 1.0)
    ash = np.ones(L, dtype=np.complex128)
    ash[:-1] = np.conj(a[1:])
    lam, _ = ref.linear_recurrence(ash, g, reverse=True)
    assert_close(db, lam, dtype)


@pytest.mark.parametrize("nchunks,tpc", [(2, 2), (3, 1), (5, 1)])
def test_split_path_uneven_chunks(rng, nchunks, tpc):
    """Chunk counts that leave the last (or, reversed, the first) chunk short."""
    dtype = np.float32
    T = tile_size(dtype)
    ntiles = nchunks * tpc - (1 if tpc > 1 else 0)
    L = ntiles * T - 7
    a = _decays(rng, L, dtype)
    b = _signal(rng, L, dtype)
    for mode in ("rec", "rrev"):
        y, _ = M.scan_row(a, b, -0.4, mode=mode, nchunks=-(-ntiles // tpc), tpc=tpc)
        r, _ = ref.linear_recurrence(a, b, zi=[-0.4], reverse=mode == "rrev")
        assert_close(y, r, dtype)


def test_carry_scan_mirror(rng):
    n = 1234                                    # more than one group of 512 chunks
    A = rng.uniform(0.5, 1.0, n).astype(np.float32)
    B = rng.standard_normal(n).astype(np.float32)
    hin = M.carry_scan(A, B, np.float32(0.25))
    h = 0.25
    expect = []
    for k in range(n):
        expect.append(h)
        h = A[k] * h + B[k]
    assert_close(hin, np.array(expect), np.float32)


def test_mirror_order_is_not_sequential(rng):
    """The mirror reassociates (it is not the serial loop in disguise)."""
    L = 3 * 2048 + 5
    a = rng.uniform(0.9, 1.0, L).astype(np.float32)
    b = rng.standard_normal(L).astype(np.float32)
    y, _ = M.scan_row(a, b, 0.0)
    serial = np.empty(L, np.float32)
    h = np.float32(0)
    for t in range(L):
        h = a[t] * h + b[t]
        serial[t] = h
    assert not np.array_equal(y, serial)
    assert_close(y, serial, np.float32)


def test_growing_decays_overflow_in_tile_products():
    """|a| > 1: a tile's product of decays can overflow where the serial loop does not.

    Documented limitation (docs/gpu.md): here 2**200 per tile overflows float32
    even though the states stay small because b cancels the growth exactly at
    h = 0. The serial reference gives 0; the reassociated scan gives NaN.
    """
    L = 2048
    a = np.full(L, 2.0, np.float32)
    b = np.zeros(L, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        y, _ = M.scan_row(a, b, 0.0)
    r, _ = ref.linear_recurrence(a, b)
    assert np.all(r == 0)
    assert not np.all(np.isfinite(y))


# ------------------------------------------------------------- lfilter / DiagonalSSM plans

@pytest.mark.parametrize("L", [1, 2, 33, 2049, 5000])
@pytest.mark.parametrize("order", [1, 2, 4])
def test_lfilter_plan_matches_scipy(rng, L, order):
    """FIR first with zi injected, then one recurrence per pole; zf from the last samples."""
    import scipy.signal

    b, a = scipy.signal.butter(order, 0.15)
    a = a / a[0]
    b = b / a[0]
    x = rng.standard_normal(L).astype(np.float32)
    zi = rng.standard_normal(order).astype(np.float32)
    y, zf = M.lfilter_row(b, a, x, zi)
    ry, rzf = scipy.signal.lfilter(b, a, x.astype(np.float64), zi=zi.astype(np.float64))
    assert y.dtype == np.float32
    assert_close(y, ry, np.float32, rtol=1e-4, atol=1e-4)
    assert_close(zf, rzf, np.float32, rtol=1e-4, atol=1e-4)


def test_lfilter_plan_first_order_and_complex(rng):
    x = rng.standard_normal(3000).astype(np.complex64)
    b = np.array([0.3, 0.2])
    a = np.array([1.0, -0.9])
    y, _ = M.lfilter_row(b, a, x)
    r, _ = ref.lfilter(b, a, x)
    assert_close(y, r, np.complex64)


@pytest.mark.parametrize("L", [1, 31, 1024, 1025, 3 * 1024 + 5])
def test_ssm_mirror_real_and_complex(rng, L):
    """ssm_fwd's order (modes inside tiles, per-mode carries) vs the modal reference loop."""
    M_ = 3
    lam = 0.97 * np.exp(1j * rng.uniform(0, np.pi, M_))
    beta = np.array([1.0, 1.0, 0.0])
    w = rng.standard_normal(M_) + 1j * rng.standard_normal(M_)
    g0 = rng.standard_normal(M_) + 1j * rng.standard_normal(M_)
    u = rng.standard_normal(L).astype(np.float32)
    y, gf = M.ssm_row(u, lam, beta, w, 0.5, g0)
    r, hf = ref.diagonal_ssm(lam, beta, w, 0.5, u, zi=g0)
    assert y.dtype == np.float32
    assert_close(y, r.real, np.float32, scale=np.abs(r).max())
    assert_close(gf, hf, np.complex64, scale=np.abs(hf).max())
    uc = (rng.standard_normal(L) + 1j * rng.standard_normal(L)).astype(np.complex64)
    y, _ = M.ssm_row(uc, lam, beta, w, 0.5, g0)
    r, _ = ref.diagonal_ssm(lam, beta, w, 0.5, uc, zi=g0)
    assert_close(y, r, np.complex64)
