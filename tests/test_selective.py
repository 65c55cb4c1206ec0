"""Selective scan (Mamba's S6) against the reference loops, finite differences and invariants."""

import numba
import numpy as np
import pytest

from iirssm import _reference
from iirssm._cpu import selective as sk
from iirssm._selective import (complex_from_interleaved, interleaved_from_complex,
                               selective_scan, selective_scan_grad)
from conftest import assert_close

LAYOUTS = ["invariant", "shared", "grouped"]
DISCS = ["mamba", "zoh", "euler", "bilinear"]


def make_problem(rng, *, batch=2, dim=6, N=3, L=23, dtype=np.float64, cplx=False,
                 B_layout="shared", C_layout="grouped", G=2, softplus=True, extras=True,
                 state=False):
    """A small, well-conditioned selective-scan problem (dict of keyword arguments)."""
    rdt = np.dtype(dtype)
    cdt = np.result_type(rdt, np.complex64)

    def bc(layout):
        shape = {"invariant": (dim, N), "shared": (batch, N, L), "grouped": (batch, G, N, L)}
        x = rng.standard_normal(shape[layout])
        if cplx:
            x = x + 1j * rng.standard_normal(shape[layout])
        return x.astype(cdt if cplx else rdt)

    A = -rng.uniform(0.3, 3.0, (dim, N))
    if cplx:
        A = A + 1j * rng.uniform(-3, 3, (dim, N))
    kw = dict(
        u=rng.standard_normal((batch, dim, L)).astype(rdt),
        # with softplus: dt in about (0.05, 0.7); without: dt in (0.02, 0.3)
        delta=(rng.uniform(-3, 0, (batch, dim, L)) if softplus
               else rng.uniform(0.02, 0.3, (batch, dim, L))).astype(rdt),
        A=A.astype(cdt if cplx else rdt), B=bc(B_layout), C=bc(C_layout),
        delta_softplus=softplus)
    if extras:
        kw.update(D=rng.standard_normal(dim).astype(rdt),
                  z=rng.standard_normal((batch, dim, L)).astype(rdt),
                  delta_bias=rng.uniform(0, 0.2, dim).astype(rdt))
    if state:
        h0 = rng.standard_normal((batch, dim, N))
        if cplx:
            h0 = h0 + 1j * rng.standard_normal((batch, dim, N))
        kw["initial_state"] = h0.astype(cdt if cplx else rdt)
    return kw


def run(kw, **extra):
    a = dict(kw)
    a.update(extra)
    return selective_scan(a.pop("u"), a.pop("delta"), a.pop("A"), a.pop("B"), a.pop("C"), **a)


# --------------------------------------------------------------------- the exp routine

@numba.njit(error_model="numpy")
def _map_exp(x, out):
    for i in range(x.size):
        out[i] = sk.vexp(x[i])


@numba.njit(error_model="numpy")
def _map_expm1(x, out):
    for i in range(x.size):
        out[i] = sk.vexpm1(x[i])


@numba.njit(error_model="numpy")
def _map_softplus(x, out):
    for i in range(x.size):
        out[i] = sk.softplus(x[i])


def _ulp_error(got, want64, dtype):
    """|got - want| in units of the last place of ``want`` in ``dtype`` (normal range)."""
    want = want64.astype(dtype)
    return np.abs(got.astype(np.float64) - want64) / np.spacing(np.abs(want)).astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vexp_accuracy(dtype):
    fi = np.finfo(dtype)
    hi = float(np.log(fi.max))
    lo = float(np.log(fi.tiny))
    x = np.concatenate([np.linspace(lo, hi, 200001), np.linspace(-1, 1, 10001),
                        np.geomspace(1e-30, 1, 1000), -np.geomspace(1e-30, 1, 1000)])
    x = x.astype(dtype)
    got = np.empty_like(x)
    _map_exp(x, got)
    want = np.exp(x.astype(np.longdouble)).astype(np.float64)
    ok = want < float(fi.max)
    err = _ulp_error(got[ok], want[ok], dtype)
    assert err.max() <= 1.5, (x[ok][np.argmax(err)], err.max())
    # special values: exactly 1 at 0, 0 far below, inf above, NaN kept
    sp = np.array([0.0, -0.0, -1e4, -np.inf, 1e4, np.inf, np.nan, lo - 60], dtype=dtype)
    got = np.empty_like(sp)
    _map_exp(sp, got)
    assert got[0] == 1 and got[1] == 1
    assert got[2] == 0 and got[3] == 0 and got[7] == 0
    assert np.isposinf(got[4]) and np.isposinf(got[5]) and np.isnan(got[6])
    # subnormal results: rounded once, within one subnormal step
    xs = np.linspace(lo - 20, lo, 1001).astype(dtype)
    got = np.empty_like(xs)
    _map_exp(xs, got)
    want = np.exp(xs.astype(np.longdouble))
    assert np.all(np.abs(got - want) <= np.float64(fi.smallest_subnormal) * 1.01)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vexpm1_and_softplus_accuracy(dtype):
    x = np.concatenate([np.linspace(-80, 80, 100001), np.geomspace(1e-35, 1, 2000),
                        -np.geomspace(1e-35, 1, 2000)]).astype(dtype)
    got = np.empty_like(x)
    _map_expm1(x, got)
    want = np.expm1(x.astype(np.longdouble)).astype(np.float64)
    err = _ulp_error(got, want, dtype)
    assert err.max() <= 2.0, (x[np.argmax(err)], err.max())
    sp = np.array([0.0, -np.inf, np.inf, np.nan, -1e4], dtype=dtype)
    got = np.empty_like(sp)
    _map_expm1(sp, got)
    assert got[0] == 0 and got[1] == -1 and np.isposinf(got[2]) and np.isnan(got[3])
    assert got[4] == -1
    # softplus: log1p(exp(x)) to a few ulp, the identity above 20 (as mamba-ssm)
    x = np.linspace(-60, 40, 20001).astype(dtype)
    got = np.empty_like(x)
    _map_softplus(x, got)
    xl = x.astype(np.longdouble)
    want = np.where(xl > 20, xl, np.log1p(np.exp(xl))).astype(np.float64)
    assert _ulp_error(got, want, dtype).max() <= 3.0
    assert np.array_equal(got[x > 20], x[x > 20])


@numba.njit(error_model="numpy")
def _map_hsum16(G, out):
    for i in range(out.size):
        out[i] = sk._hsum16(G, 16 * i)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_hsum16_is_the_fixed_tree(rng, dtype):
    """The lane sums of the backward (vector code for real dtypes): the documented
    tree of additions, bitwise, NaN and inf included."""
    G = rng.standard_normal(16 * 300) * np.exp(rng.uniform(-30, 30, 16 * 300))
    if np.dtype(dtype).kind == "c":
        G = G + 1j * rng.standard_normal(G.size)
    G = G.astype(dtype)
    G[16 * 7 + 3] = np.nan
    G[16 * 9 + 12] = np.inf
    G[16 * 9 + 4] = -np.inf
    got = np.empty(300, dtype)
    _map_hsum16(G, got)
    r = G.reshape(300, 16)
    with np.errstate(invalid="ignore"):                 # inf - inf in row 9
        s = r[:, :8] + r[:, 8:]
        s = s[:, :4] + s[:, 4:]
        s = s[:, :2] + s[:, 2:]
        want = s[:, 0] + s[:, 1]
        seq = np.add.reduce(r, axis=1)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[7]) and np.isnan(got[9])
    # and not another order of the same additions (NumPy's pairwise reduction)
    assert not np.array_equal(got, seq, equal_nan=True)


# ----------------------------------------------------------- forward against reference

@pytest.mark.parametrize("B_layout", LAYOUTS)
@pytest.mark.parametrize("C_layout", LAYOUTS)
@pytest.mark.parametrize("cplx", [False, True])
def test_layouts_against_reference(rng, B_layout, C_layout, cplx):
    kw = make_problem(rng, B_layout=B_layout, C_layout=C_layout, cplx=cplx, state=True,
                      dim=18, G=3)   # 18 channels: a full tile of 16 and a partial one
    out, last = run(kw, return_last_state=True)
    ref, rlast = _reference.selective_scan(**kw, return_last_state=True)
    assert out.dtype == np.float64 and out.shape == kw["u"].shape
    assert last.dtype == (np.complex128 if cplx else np.float64)
    assert_close(out, ref, np.float64)
    assert_close(last, rlast, np.complex128 if cplx else np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cplx", [False, True])
def test_block_transposes_against_reference(rng, dtype, cplx):
    """A full tile and whole 16-sample blocks, which the kernels move between rows and
    their (time, lane) buffers by 16 x 16 transposes (64 + 36 samples: one block that
    way, one by the loops), with D and the gate, against the reference loop. (Tiles
    hold the channels of one B/C group: groups of 17 give a full tile.)"""
    kw = make_problem(rng, dim=34, G=2, L=100, dtype=dtype, cplx=cplx, state=True)
    out, last = run(kw, return_last_state=True)
    ref, rlast = _reference.selective_scan(**kw, return_last_state=True)
    assert_close(out, ref, dtype)
    assert_close(last, rlast, np.result_type(dtype, np.complex64) if cplx else dtype)


@pytest.mark.parametrize("disc", DISCS)
@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("softplus", [False, True])
def test_discretizations_against_reference(rng, disc, cplx, softplus):
    kw = make_problem(rng, cplx=cplx, softplus=softplus, state=True)
    out = run(kw, discretization=disc)
    ref = _reference.selective_scan(**kw, discretization=disc)
    assert_close(out, ref, np.float64)


@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cplx", [False, True])
def test_dtypes_and_options_against_reference(rng, extras, dtype, cplx):
    kw = make_problem(rng, dtype=dtype, cplx=cplx, extras=extras)
    out, last = run(kw, return_last_state=True)
    assert out.dtype == np.dtype(dtype)
    assert last.dtype == (np.result_type(dtype, np.complex64) if cplx else np.dtype(dtype))
    ref, rlast = _reference.selective_scan(**kw, return_last_state=True)
    # float32 runs compare with the float64 reference at the float32 tolerance
    assert_close(out, ref, dtype)
    assert_close(last, rlast, dtype)


def test_zoh_at_A_zero_is_dt_B(rng):
    # the A -> 0 limit of (exp(dt A) - 1)/A is dt (no 0/0), for exact zeros and tiny A
    kw = make_problem(rng, extras=False)
    kw["A"] = kw["A"].copy()
    kw["A"][:, 0] = 0.0
    kw["A"][:, 1] = -1e-300
    out = run(kw, discretization="zoh")
    assert np.isfinite(out).all()
    assert_close(out, _reference.selective_scan(**kw, discretization="zoh"), np.float64)
    # with A = 0 everywhere, zoh and mamba (B̄ = dt·B) coincide: both integrate
    kw["A"][:] = 0.0
    assert_close(run(kw, discretization="zoh"), run(kw), np.float64)


def test_unbatched_equals_batch_of_one(rng):
    kw = make_problem(rng, batch=1, B_layout="shared", C_layout="grouped", state=True)
    out, last = run(kw, return_last_state=True)
    ub = {k: (v[0] if k in ("u", "delta", "z", "B", "C", "initial_state") else v)
          for k, v in kw.items()}
    out1, last1 = run(ub, return_last_state=True)
    assert out1.shape == kw["u"].shape[1:] and last1.shape == last.shape[1:]
    assert_close(out1, out[0], np.float64)
    assert_close(last1, last[0], np.float64)


# ----------------------------------------------------------------- mamba-ssm semantics

def test_one_state_is_a_first_order_filter():
    # Δ = 1, A = log(0.5), B = C = 1: h[t] = 0.5 h[t-1] + u[t] (mamba's B̄ = Δ·B)
    out = selective_scan(np.array([[[1.0, 0, 0, 2]]]), np.ones((1, 1, 4)), [[np.log(0.5)]],
                         [[1.0]], [[1.0]])
    np.testing.assert_allclose(out, [[[1.0, 0.5, 0.25, 2.125]]], rtol=1e-15)


def test_complex_doubling_then_D():
    # mamba-ssm returns 2·Re(Σ C h) for complex states and adds D·u after the doubling
    u = np.array([[[1.0, 0.0, 0.0]]])
    A = np.array([[np.log(0.5) + 0.0j]])
    kw = dict(u=u, delta=np.ones((1, 1, 3)), A=A, B=np.array([[1.0 + 0j]]),
              C=np.array([[1.0 + 0j]]))
    out = selective_scan(**kw, D=np.array([3.0]))
    np.testing.assert_allclose(out, [[[2 * 1 + 3, 2 * 0.5, 2 * 0.25]]], rtol=1e-14)


def test_softplus_identity_above_20_and_silu_gate():
    # delta = 25: softplus is the identity (dt = 25), A = -1/25 gives a decay of e^-1
    u = np.array([[[1.0, 0.0]]])
    out = selective_scan(u, np.full((1, 1, 2), 25.0), [[-1 / 25]], [[1.0]], [[1.0]],
                         delta_softplus=True)
    np.testing.assert_allclose(out, [[[25.0, 25.0 * np.exp(-1)]]], rtol=1e-14)
    z = np.array([[[0.5, -2.0]]])
    gated = selective_scan(u, np.full((1, 1, 2), 25.0), [[-1 / 25]], [[1.0]], [[1.0]],
                           z=z, delta_softplus=True)
    np.testing.assert_allclose(gated, out * z / (1 + np.exp(-z)), rtol=1e-14)


def test_interleaved_complex_layout(rng):
    kw = make_problem(rng, cplx=True, B_layout="grouped", C_layout="shared")
    inter = interleaved_from_complex(kw["B"])
    assert inter.dtype == np.float64 and inter.shape[-1] == 2 * kw["B"].shape[-1]
    np.testing.assert_array_equal(inter[..., 0::2], kw["B"].real)
    np.testing.assert_array_equal(inter[..., 1::2], kw["B"].imag)
    back = complex_from_interleaved(inter)
    np.testing.assert_array_equal(back, kw["B"])
    assert_close(run(kw, B=back), run(kw), np.float64)
    assert complex_from_interleaved(inter.astype(np.float32)).dtype == np.complex64
    with pytest.raises(ValueError, match="even-length"):
        complex_from_interleaved(np.ones((2, 3)))
    with pytest.raises(TypeError, match="real"):
        complex_from_interleaved(np.ones(4, complex))


# ------------------------------------------------------------------ chunks and states

@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("cuts", [[1], [7, 8, 30], [16, 32]])
def test_chunks_carrying_state_equal_whole(rng, cplx, cuts):
    kw = make_problem(rng, L=41, cplx=cplx, state=True)
    whole, last = run(kw, return_last_state=True)
    parts, h = [], kw["initial_state"]
    for lo, hi in zip([0] + cuts, cuts + [41]):
        ck = {k: (v[..., lo:hi] if k in ("u", "delta", "z") or
                  (k in ("B", "C") and v.ndim >= 3) else v) for k, v in kw.items()}
        ck["initial_state"] = h
        y, h = run(ck, return_last_state=True)
        parts.append(y)
    assert_close(np.concatenate(parts, axis=-1), whole, np.float64)
    assert_close(h, last, np.float64)


def test_float32_long_sequence_close_to_float64(rng):
    # 10^5 samples, Mamba's Δ range (log-uniform in [1e-3, 0.1], through softplus) and
    # poles from S4D-real's -1..-16 down to -1e-3 (memories up to ~10^6 samples):
    # float32 keeps 1 - Ā to full relative precision (expm1), and the result stays
    # within 1e-5 of a float64 run on the same inputs.
    L, dim, N = 100_000, 16, 8
    u = rng.standard_normal((1, dim, L))
    dt = np.exp(rng.uniform(np.log(1e-3), np.log(0.1), (1, dim, L)))
    delta = np.log(np.expm1(dt))                                  # inverse softplus
    A = -np.tile(np.geomspace(1e-3, 16, N), (dim, 1))
    B = rng.standard_normal((1, N, L))
    C = rng.standard_normal((1, N, L))
    args32 = [a.astype(np.float32) for a in (u, delta, A, B, C)]
    y32 = selective_scan(*args32, delta_softplus=True)
    y64 = selective_scan(*(a.astype(np.float64) for a in args32), delta_softplus=True)
    assert y32.dtype == np.float32
    assert np.max(np.abs(y32 - y64)) / np.max(np.abs(y64)) <= 1e-5


# ------------------------------------------------------------------------- gradients

def _loss_and_grad(kw, dout, dlast, disc):
    def loss(**over):
        out, last = run(kw, return_last_state=True, discretization=disc, **over)
        return float(np.sum(dout * out) + np.sum((np.conj(dlast) * last).real))
    a = dict(kw)
    g = selective_scan_grad(dout, a.pop("u"), a.pop("delta"), a.pop("A"), a.pop("B"),
                            a.pop("C"), dlast_state=dlast, discretization=disc, **a)
    return loss, g


_GRAD_NAMES = dict(u="du", delta="ddelta", A="dA", B="dB", C="dC", D="dD", z="dz",
                   delta_bias="ddelta_bias", initial_state="dinitial_state")


def check_grad_fd(rng, kw, disc="mamba", n_probe=3, eps=1e-6, rtol=2e-6):
    dout = rng.standard_normal(kw["u"].shape)
    N = kw["A"].shape[1]
    last_shape = kw["u"].shape[:2] + (N,)
    cplx_state = any(np.iscomplexobj(kw[k]) for k in ("A", "B", "C"))
    dlast = rng.standard_normal(last_shape) + (1j * rng.standard_normal(last_shape)
                                               if cplx_state else 0)
    loss, g = _loss_and_grad(kw, dout, dlast, disc)
    for name, gname in _GRAD_NAMES.items():
        if name not in kw:
            assert getattr(g, gname) is None
            continue
        x = kw[name]
        gx = getattr(g, gname)
        assert gx.shape == x.shape and (gx.dtype.kind == "c") == (x.dtype.kind == "c"), name
        flat = np.flatnonzero(np.ones(x.shape, bool))
        for i in rng.choice(flat, size=min(n_probe, flat.size), replace=False):
            idx = np.unravel_index(i, x.shape)
            for part in ([1, 1j] if x.dtype.kind == "c" else [1]):
                e = np.zeros_like(x)
                e[idx] = eps * part
                fd = (loss(**{name: x + e}) - loss(**{name: x - e})) / (2 * eps)
                an = gx[idx].real if part == 1 else gx[idx].imag
                scale = max(1.0, abs(fd))
                assert abs(an - fd) <= rtol * scale * 50, (name, idx, part, an, fd)


@pytest.mark.parametrize("B_layout,C_layout", [("invariant", "shared"), ("shared", "grouped"),
                                               ("grouped", "invariant")])
@pytest.mark.parametrize("cplx", [False, True])
def test_grad_layouts_fd(rng, B_layout, C_layout, cplx):
    kw = make_problem(rng, B_layout=B_layout, C_layout=C_layout, cplx=cplx, state=True,
                      L=37, dim=4, G=2)
    check_grad_fd(rng, kw)


@pytest.mark.parametrize("cplx", [False, True])
def test_grad_block_transposes_fd(rng, cplx):
    """The backward with a full tile and whole 16-sample blocks (transposed in and out,
    lane sums of time-varying B and C by vector code): 72 samples, one 64-sample
    segment that way, the last 8 by the loops."""
    kw = make_problem(rng, cplx=cplx, state=True, L=72, dim=17, G=1,
                      B_layout="shared", C_layout="grouped")
    check_grad_fd(rng, kw, n_probe=4)


@pytest.mark.parametrize("disc", DISCS)
@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("extras,softplus", [(True, True), (False, False)])
def test_grad_options_fd(rng, disc, cplx, extras, softplus):
    kw = make_problem(rng, cplx=cplx, extras=extras, softplus=softplus, L=19, dim=3,
                      B_layout="grouped", C_layout="shared", G=3, state=extras)
    check_grad_fd(rng, kw, disc=disc)


def test_grad_through_softplus_identity_region(rng):
    kw = make_problem(rng, extras=True, L=9, dim=2, G=2)
    kw["delta"] = kw["delta"] + 21.0           # above 20: softplus is the identity
    kw["A"] = kw["A"] / 40
    check_grad_fd(rng, kw)


def test_grad_chunks_equal_whole(rng):
    # reverse-mode over two chunks: the second chunk's d(initial_state) is the first
    # chunk's d(last_state)
    kw = make_problem(rng, L=70, state=True, dim=6, C_layout="invariant")
    dout = rng.standard_normal(kw["u"].shape)
    a = dict(kw)
    whole = selective_scan_grad(dout, a.pop("u"), a.pop("delta"), a.pop("A"), a.pop("B"),
                                a.pop("C"), **a)
    cut = 45
    k1 = {k: (v[..., :cut] if k in ("u", "delta", "z", "B") else v) for k, v in kw.items()}
    k2 = {k: (v[..., cut:] if k in ("u", "delta", "z", "B") else v) for k, v in kw.items()}
    _, h = run(k1, return_last_state=True)
    k2["initial_state"] = h
    a2 = dict(k2)
    g2 = selective_scan_grad(dout[..., cut:], a2.pop("u"), a2.pop("delta"), a2.pop("A"),
                             a2.pop("B"), a2.pop("C"), **a2)
    a1 = dict(k1)
    g1 = selective_scan_grad(dout[..., :cut], a1.pop("u"), a1.pop("delta"), a1.pop("A"),
                             a1.pop("B"), a1.pop("C"), dlast_state=g2.dinitial_state, **a1)
    assert_close(np.concatenate([g1.du, g2.du], -1), whole.du, np.float64)
    assert_close(np.concatenate([g1.ddelta, g2.ddelta], -1), whole.ddelta, np.float64)
    assert_close(np.concatenate([g1.dB, g2.dB], -1), whole.dB, np.float64)
    assert_close(g1.dA + g2.dA, whole.dA, np.float64)
    assert_close(g1.dC + g2.dC, whole.dC, np.float64)
    assert_close(g1.dinitial_state, whole.dinitial_state, np.float64)


def test_grad_float32_close_to_float64(rng):
    kw = make_problem(rng, L=150, dim=20, state=True, B_layout="grouped", G=4)
    dout = rng.standard_normal(kw["u"].shape)
    a = dict(kw)
    g64 = selective_scan_grad(dout, a.pop("u"), a.pop("delta"), a.pop("A"), a.pop("B"),
                              a.pop("C"), **a)
    a = {k: v.astype(np.complex64 if np.iscomplexobj(v) else np.float32) for k, v in kw.items()
         if k != "delta_softplus"}
    g32 = selective_scan_grad(dout.astype(np.float32), a.pop("u"), a.pop("delta"), a.pop("A"),
                              a.pop("B"), a.pop("C"), delta_softplus=True, **a)
    for f in g64._fields:
        assert getattr(g32, f).dtype in (np.float32, np.complex64)
        assert_close(getattr(g32, f), getattr(g64, f), np.float32, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------- threads, buffers, errors

def test_thread_count_independence(rng):
    # big enough for the parallel kernels; work is split over fixed tiles/slots
    kw = make_problem(rng, batch=1, dim=40, N=16, L=200, dtype=np.float32,
                      B_layout="shared", C_layout="grouped", G=2)
    dout = rng.standard_normal(kw["u"].shape).astype(np.float32)
    n = numba.get_num_threads()

    def both():
        a = dict(kw)
        return run(kw), selective_scan_grad(dout, a.pop("u"), a.pop("delta"), a.pop("A"),
                                            a.pop("B"), a.pop("C"), **a)
    try:
        numba.set_num_threads(1)
        y1, g1 = both()
    finally:
        numba.set_num_threads(n)
    y2, g2 = both()
    assert np.array_equal(y1, y2)
    for f in g1._fields:
        assert np.array_equal(getattr(g1, f), getattr(g2, f)), f


def test_inputs_not_modified_outputs_fresh(rng):
    kw = make_problem(rng, state=True, B_layout="invariant")
    copies = {k: np.copy(v) for k, v in kw.items()}
    out, last = run(kw, return_last_state=True)
    a = dict(kw)
    dout = rng.standard_normal(kw["u"].shape)
    g = selective_scan_grad(dout, a.pop("u"), a.pop("delta"), a.pop("A"), a.pop("B"),
                            a.pop("C"), **a)
    for k, v in kw.items():
        assert np.array_equal(np.asarray(v), copies[k]), k
    results = [out, last] + [x for x in g if x is not None]
    for r in results:
        for v in kw.values():
            if isinstance(v, np.ndarray):
                assert not np.shares_memory(r, v)


@pytest.mark.parametrize("change,exc,match", [
    (dict(delta=np.ones((2, 6, 22))), ValueError, r"delta must have shape .*\(2, 6, 23\)"),
    (dict(z=np.ones((2, 5, 23))), ValueError, r"z must have shape"),
    (dict(A=np.ones((5, 3))), ValueError, r"A must have shape \(dim, N\) with dim=6"),
    (dict(B=np.ones((2, 4, 3, 23))), ValueError, r"B has 4 groups .* does not divide dim=6"),
    (dict(C=np.ones((2, 3, 22))), ValueError, r"C must have shape \(dim, N\)=\(6, 3\)"),
    (dict(B=np.ones((2, 3, 46))), ValueError, r"complex_from_interleaved"),
    (dict(D=np.ones(5)), ValueError, r"D must have shape \(dim,\)=\(6,\)"),
    (dict(delta_bias=np.ones((6, 1))), ValueError, r"delta_bias must have shape"),
    (dict(initial_state=np.ones((2, 6, 4))), ValueError, r"initial_state must have shape"),
    (dict(u=np.ones((2, 6, 23), complex)), TypeError, r"u must be real"),
    (dict(z=np.ones((2, 6, 23), complex)), TypeError, r"z must be real"),
    (dict(u=np.array([["a"]])), TypeError, r"u must hold real or complex"),
    (dict(A=np.ones((6, 3), "datetime64[s]")), TypeError, r"A must hold"),
    (dict(discretization="foh"), ValueError, r"discretization must be one of"),
    (dict(u=np.ones(5)), ValueError, r"u must have shape \(batch, dim, L\) or \(dim, L\)"),
    (dict(u=np.ones((2, 6, 0)), delta=np.ones((2, 6, 0))), ValueError, r"no samples"),
])
def test_bad_input(rng, change, exc, match):
    kw = make_problem(rng)
    kw.update(change)
    with pytest.raises(exc, match=match):
        run(kw)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_delta_refused(rng, bad):
    kw = make_problem(rng)
    kw["delta"] = kw["delta"].copy()
    kw["delta"][1, 2, 3] = bad
    with pytest.raises(ValueError, match="delta must be finite"):
        run(kw)


def test_grad_bad_input(rng):
    kw = make_problem(rng)
    a = dict(kw)
    args = [a.pop(k) for k in ("u", "delta", "A", "B", "C")]
    with pytest.raises(ValueError, match="dout must have shape"):
        selective_scan_grad(np.ones((2, 6, 22)), *args, **a)
    with pytest.raises(ValueError, match="dlast_state must have shape"):
        selective_scan_grad(np.ones((2, 6, 23)), *args, dlast_state=np.ones((2, 6)), **a)


@pytest.mark.parametrize("u_dtype,A_dtype,expected", [
    (np.float32, np.float32, np.float32),
    (np.float32, np.float64, np.float64),       # never a silent downcast
    (np.float16, np.float32, np.float32),
    (np.int64, np.float32, np.float64),
    (np.float32, np.complex64, np.float32),
])
def test_dtype_policy(rng, u_dtype, A_dtype, expected):
    kw = make_problem(rng, dtype=np.float32, extras=False, B_layout="invariant",
                      C_layout="invariant")
    kw["u"] = (kw["u"] * 10).astype(u_dtype)
    kw["A"] = kw["A"].astype(A_dtype)
    kw["B"] = kw["B"].astype(A_dtype)
    out, last = run(kw, return_last_state=True)
    assert out.dtype == np.dtype(expected)
    assert last.dtype.kind == np.dtype(A_dtype).kind


# ------------------------------------------------------------- the coefficient view

@pytest.mark.parametrize("disc", DISCS)
@pytest.mark.parametrize("cplx", [False, True])
def test_coefficients_reproduce_the_scan(rng, disc, cplx):
    from iirssm._selective import selective_coefficients
    kw = make_problem(rng, cplx=cplx, extras=False, B_layout="grouped", C_layout="shared")
    co = selective_coefficients(kw["delta"], kw["A"], kw["B"], kw["C"], None,
                                kw["delta_softplus"], discretization=disc)
    shape = kw["u"].shape[:2] + (kw["A"].shape[1], kw["u"].shape[2])
    assert co.A_bar.shape == co.B_bar.shape == co.C.shape == shape
    # the bank of first-order filters they describe, run by plain NumPy in time
    h = np.zeros(shape[:3], dtype=co.A_bar.dtype)
    ys = []
    for t in range(shape[-1]):
        h = co.A_bar[..., t] * h + co.B_bar[..., t] * kw["u"][:, :, None, t]
        y = np.sum(co.C[..., t] * h, axis=-1)
        ys.append(2 * y.real if cplx else y)
    assert_close(np.stack(ys, -1), run(kw, discretization=disc), np.float64)


def test_halflife_and_frozen_freqz(rng):
    from iirssm._selective import frozen_freqz, halflife, selective_coefficients
    scipy_signal = pytest.importorskip("scipy.signal")
    kw = make_problem(rng, extras=False, B_layout="shared", C_layout="shared")
    hl = halflife(kw["delta"], kw["A"], delta_softplus=True)
    co = selective_coefficients(kw["delta"], kw["A"], kw["B"], kw["C"], delta_softplus=True)
    np.testing.assert_allclose(co.A_bar ** hl, 0.5, rtol=1e-12)
    for disc in ("euler", "bilinear"):
        hd = halflife(kw["delta"], kw["A"], delta_softplus=True, discretization=disc)
        cd = selective_coefficients(kw["delta"], kw["A"], kw["B"], kw["C"],
                                    delta_softplus=True, discretization=disc)
        np.testing.assert_allclose(np.abs(cd.A_bar) ** hd, 0.5, rtol=1e-12)
    w, H = frozen_freqz(kw["delta"], kw["A"], kw["B"], kw["C"], t=[3, -1], worN=64,
                        D=np.arange(6.0), delta_softplus=True)
    assert H.shape == (2, 6, 2, 64)
    b, d, t = 1, 4, kw["u"].shape[-1] - 1
    ref = np.zeros(64, complex)
    for n in range(kw["A"].shape[1]):
        _, hn = scipy_signal.freqz([co.C[b, d, n, t] * co.B_bar[b, d, n, t]],
                                   [1, -co.A_bar[b, d, n, t]], worN=w)
        ref += hn
    np.testing.assert_allclose(H[b, d, 1], ref + 4.0, rtol=1e-12)
    # complex states: the conjugate partner makes the response Hermitian (a real filter)
    kc = make_problem(rng, cplx=True, extras=False, B_layout="invariant",
                      C_layout="invariant")
    w, Hc = frozen_freqz(kc["delta"], kc["A"], kc["B"], kc["C"], t=0, worN=8, whole=True,
                         delta_softplus=True)
    np.testing.assert_allclose(Hc[..., 1], np.conj(Hc[..., -1]), rtol=1e-12)
    with pytest.raises(ValueError, match="t must lie in"):
        frozen_freqz(kw["delta"], kw["A"], kw["B"], kw["C"], t=99)


# ------------------------------------------------------------------ SelectiveSSM

def test_selective_ssm_init_step_save_load(rng, tmp_path):
    from iirssm._selective import SelectiveSSM
    ssm = SelectiveSSM.random_state(dim=32, d_state=5, seed=3, dt_min=1e-3, dt_max=0.1)
    assert ssm.dt_rank == 2 and ssm.dtype == np.float32
    assert ssm.x_proj_weight.shape == (2 + 10, 32) and ssm.dt_proj_weight.shape == (32, 2)
    np.testing.assert_allclose(ssm.A, -np.tile(np.arange(1, 6), (32, 1)), rtol=1e-6)
    dt0 = np.log1p(np.exp(ssm.dt_proj_bias.astype(np.float64)))   # softplus(bias)
    assert np.all(dt0 >= 1e-3 * 0.999) and np.all(dt0 <= 0.1 * 1.001)
    assert np.all(ssm.D == 1)
    x = rng.standard_normal((2, 32, 30)).astype(np.float32)
    z = rng.standard_normal((2, 32, 30)).astype(np.float32)
    y, h = ssm.filter(x, z, return_last_state=True)
    assert y.dtype == np.float32 and h.shape == (2, 32, 5)
    state, ys = None, []
    for t in range(30):
        yt, state = ssm.step(x[:, :, t], state, z[:, :, t])
        ys.append(yt)
    assert np.array_equal(np.stack(ys, -1), y) and np.array_equal(state, h)
    co = ssm.coefficients(x)
    assert co.A_bar.shape == (2, 32, 5, 30) and np.all((co.A_bar > 0) & (co.A_bar < 1))
    path = tmp_path / "ssm.npz"
    ssm.save(path)
    back = SelectiveSSM.load(path)
    assert np.array_equal(back.filter(x, z), y)
    with pytest.raises(ValueError, match="x must have shape"):
        ssm.filter(x[:, :10])
    with pytest.raises(ValueError, match="dt_proj_bias must have shape"):
        SelectiveSSM(ssm.x_proj_weight, ssm.dt_proj_weight, np.ones(3), ssm.A_log, ssm.D)


# ------------------------------------------------------------------- Mamba-2 SSD

@pytest.mark.parametrize("groups,Dshape,states", [(1, "heads", False), (2, "heads_p", True),
                                                   (4, None, True)])
def test_ssd_scan_against_reference(rng, groups, Dshape, states):
    from iirssm._selective import ssd_scan
    Bt, L, H, P, N = 2, 17, 4, 3, 5
    x = rng.standard_normal((Bt, L, H, P))
    dt = rng.uniform(0.01, 0.3, (Bt, L, H))
    A = -rng.uniform(0.5, 4, H)
    B = rng.standard_normal((Bt, L, groups, N))
    C = rng.standard_normal((Bt, L, groups, N))
    D = {"heads": rng.standard_normal(H), "heads_p": rng.standard_normal((H, P)),
         None: None}[Dshape]
    h0 = rng.standard_normal((Bt, H, P, N)) if states else None
    y, hf = ssd_scan(x, dt, A, B, C, D, initial_states=h0, return_final_states=True)
    Dr = None if D is None else (D if D.ndim == 2 else D[:, None])
    ry, rhf = _reference.ssd_scan(x, dt, A, B, C, Dr, initial_states=h0)
    assert y.shape == x.shape and hf.shape == (Bt, H, P, N)
    assert_close(y, ry, np.float64)
    assert_close(hf, rhf, np.float64)
    with pytest.raises(ValueError, match="dt must have shape"):
        ssd_scan(x, dt[:, :-1], A, B, C)
    with pytest.raises(ValueError, match="does not divide heads"):
        ssd_scan(x, dt, A, B[:, :, :1].repeat(3, 2), C[:, :, :1].repeat(3, 2))


# ------------------------------------------------- the state loops as explicit vector code

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_expm1_is_vexpm1_bitwise(rng, dtype):
    """The vector code's expm1 for x <= 0 (no upper clamp, no final doubling) gives
    vexpm1's bits: across the range reduction's k, the clamp, the underflow to -1 and
    signed zeros. Read from the (a - 1) the state loop stores, with dt = 1 and A = x,
    so it is the emitted code that is tested. Tiny x (x/2 subnormal) are the
    exception, where vexpm1's halving (s·q with s = 1/2) drops low bits: the vector
    code returns x itself there, the correctly rounded value."""
    W = sk.W
    fi = np.finfo(dtype)
    x = np.concatenate([
        -np.geomspace(float(fi.smallest_subnormal), 1e4, 20001),
        -rng.uniform(0, 120, 20000), np.linspace(-0.4, 0.0, 4001),
        [0.0, -0.0, -30.0, -29.999998, -30.000002, -60.0, -87.3, -88.5, -103.9, -745.0,
         -1e30, -float(fi.max), -np.inf, np.nan]])
    x = np.concatenate([x, -np.ones(-x.size % W)]).astype(dtype)
    N = x.size // W
    Al = x.reshape(N, W)
    dtb = np.ones((sk.TB, W), dtype)
    ub = np.zeros((sk.TB, W), dtype)
    Bw = np.zeros((2, 3, 1, N), dtype)
    Bw.flags.writeable = False
    es = []
    for nonpos in (True, False):
        he = np.zeros(2 * N * 2 * W, dtype)
        _advance_both(np.int64(0), nonpos, Al, np.zeros((N, W), dtype), dtb, ub, np.int64(1),
                      np.int64(0), Bw, True, np.int64(W), np.zeros((N, W), dtype), Bw, True,
                      np.zeros((N, W), dtype), np.int64(1), np.int64(W),
                      np.zeros((sk.TB, W), dtype), he, np.int64(2))
        es.append(he.reshape(2, N, 2, W)[1, :, 0].ravel())
    b, a = es                                   # vector code, vexpm1 in the loop
    ity = np.int32 if dtype == np.float32 else np.int64
    sub = (x != 0) & (np.abs(x) < 2 * fi.tiny)      # where x/2 is subnormal
    same = (a.view(ity) == b.view(ity)) | (np.isnan(a) & np.isnan(b))
    assert same[~sub].all(), x[~sub & ~same][:5]
    assert sub.sum() > 100 and np.array_equal(b[sub], x[sub])
    assert np.all(np.abs(a[sub] - x[sub]) <= np.abs(x[sub]))   # vexpm1: close, not exact


def test_nonpos_decides_per_block(rng):
    A = -rng.uniform(0, 2, (5, sk.W))
    dt = rng.uniform(0, 1, (sk.TB, sk.W))
    assert sk._nonpos(A, dt, 10, False) and sk._nonpos(A, dt, 10, True)
    A[3, 7] = 0.0
    assert sk._nonpos(A, dt, 10, False)                  # zero is fine
    dt[9, 2] = -1e-3                                     # inside the block: no (unless softplus)
    assert not sk._nonpos(A, dt, 10, False) and sk._nonpos(A, dt, 10, True)
    assert sk._nonpos(A, dt, 9, False)                   # outside the block's nt samples
    dt[9, 2] = np.nan
    assert not sk._nonpos(A, dt, 10, False)
    A[1, 0] = 1e-30
    assert not sk._nonpos(A, dt, 5, True)
    assert not sk._nonpos(A.astype(np.complex128) - 1.0, dt, 5, True)   # complex: never


@numba.njit(error_model="numpy")
def _advance_both(disc, nonpos, Al, hl, dtb, ub, nt, t0, Bw, btv, gs, Bl, Cw, ctv, Cl, b, d0,
                  yb, he, which):
    # the kernels' three literal (store, readout) combinations
    if which == 0:
        sk._advance(disc, nonpos, Al, hl, dtb, ub, nt, t0, Bw, btv, gs, Bl, Cw, ctv, gs, Cl,
                    b, d0, yb, he, False, True)
    elif which == 1:
        sk._advance(disc, nonpos, Al, hl, dtb, ub, nt, t0, Bw, btv, gs, Bl, Cw, ctv, gs, Cl,
                    b, d0, yb, he, False, False)
    else:
        sk._advance(disc, nonpos, Al, hl, dtb, ub, nt, t0, Bw, btv, gs, Bl, Cw, ctv, gs, Cl,
                    b, d0, yb, he, True, True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("btv,ctv", [(True, True), (False, True), (True, False), (False, False)])
def test_vector_state_loop_is_the_loop_bitwise(rng, dtype, btv, ctv):
    """_advance's vector code (mamba rule, dt·A <= 0) against its loops in Python: states,
    read-out and the stored (a - 1, h) pairs bit for bit, for the forward's, the first
    backward pass's and the second's combinations of store/read-out, and every mix of
    time-varying and time-invariant B and C, with dt·A down to where expm1 is -1."""
    W, N, nt, t0 = sk.W, 5, 23, 3
    Al = -rng.exponential(2.0, (N, W)).astype(dtype)
    Al[0, :3] = 0.0
    dtb = rng.exponential(1.0, (sk.TB, W)).astype(dtype)
    dtb[4, :5] = 0.0
    dtb[5, :5] = 80.0                                     # dt·A far below -30
    ub = rng.standard_normal((sk.TB, W)).astype(dtype)
    h0 = rng.standard_normal((N, W)).astype(dtype)
    Bl = rng.standard_normal((N, W)).astype(dtype)
    Cl = rng.standard_normal((N, W)).astype(dtype)
    Bw = rng.standard_normal((2, 3, t0 + nt + 4, N)).astype(dtype)
    Cw = rng.standard_normal((2, 3, t0 + nt + 4, N)).astype(dtype)
    Bw.flags.writeable = False                            # as the kernels get them
    Cw.flags.writeable = False
    for which in range(3):
        outs = []
        for nonpos in (True, False):
            hl = h0.copy()
            yb = np.zeros((sk.TB, W), dtype)
            he = np.zeros((nt + 1) * N * 2 * W if which == 2 else 1, dtype)
            _advance_both(np.int64(0), nonpos, Al, hl, dtb, ub, np.int64(nt), np.int64(t0),
                          Bw, btv, np.int64(W), Bl, Cw, ctv, Cl, np.int64(1), np.int64(W), yb,
                          he, np.int64(which))
            outs.append((hl, yb, he))
        for got, want in zip(*outs):
            assert np.array_equal(got, want), which
        assert np.all(np.isfinite(outs[0][0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("btv,ctv", [(True, True), (False, True), (True, False), (False, False)])
def test_vector_reverse_step_is_the_loop_bitwise(rng, dtype, btv, ctv):
    """_reverse_block's vector step (mamba rule, real states) against its loop in Python,
    bit for bit: the adjoints and A gradients, the dt/u gradients, and the B/C
    gradients where each is used (per lane for time-varying B/C, summed over the
    block; per state otherwise)."""
    W, N, nt, t0, tb = sk.W, 5, 21, 7, sk.TB_BWD
    Bw = rng.standard_normal((2, 3, t0 + nt + 2, N)).astype(dtype)
    Cw = rng.standard_normal((2, 3, t0 + nt + 2, N)).astype(dtype)
    Bw.flags.writeable = False
    Cw.flags.writeable = False
    dtb = rng.exponential(0.5, (tb, W)).astype(dtype)
    ub = rng.standard_normal((tb, W)).astype(dtype)
    dob = rng.standard_normal(tb * W).astype(dtype)
    he = np.empty((tb + 1) * N * 2 * W, dtype)
    pairs = he.reshape(tb + 1, N, 2, W)
    pairs[:, :, 0] = -rng.uniform(0, 1, (tb + 1, N, W))      # a - 1
    pairs[:, :, 1] = rng.standard_normal((tb + 1, N, W))     # h
    T = rng.standard_normal(N * 3 * W).astype(dtype)
    T.reshape(N, 3, W)[:, 0] = -np.abs(T.reshape(N, 3, W)[:, 0])
    S0 = rng.standard_normal(N * sk._NS * W).astype(dtype)
    outs = []
    for vec in (True, False):
        S = S0.copy()
        V = np.zeros(sk._NV * W, dtype)
        GB = np.zeros(tb * N * W, dtype)
        GC = np.zeros(tb * N * W, dtype)
        dBs = np.zeros((2, 2, 3, t0 + nt + 2, N), dtype)
        dCs = np.zeros((2, 2, 3, t0 + nt + 2, N), dtype)
        gdb = np.zeros(tb * W, dtype)
        gub = np.zeros(tb * W, dtype)
        sk._reverse_block(np.int64(0), vec, np.int64(nt), np.int64(t0), np.int64(1),
                          np.int64(1), Bw, btv, np.int64(2), Cw, ctv, np.int64(1),
                          dtype(1), dtb, ub, dob, he, T, S, V, GB, GC, dBs, dCs, gdb, gub)
        outs.append(dict(S=S.reshape(N, sk._NS, W), gdb=gdb, gub=gub, dBs=dBs, dCs=dCs))
    a, b = outs
    assert np.array_equal(a["gdb"], b["gdb"]) and np.array_equal(a["gub"], b["gub"])
    rows = (sk._S_LAM, sk._S_GA) + (() if btv else (sk._S_GB,)) + (() if ctv else (sk._S_GC,))
    for row in rows:
        assert np.array_equal(a["S"][:, row], b["S"][:, row]), row
    assert np.array_equal(a["dBs"], b["dBs"]) and np.array_equal(a["dCs"], b["dCs"])
    if btv:
        assert np.any(a["dBs"] != 0)


@pytest.mark.parametrize("softplus", [False, True])
def test_general_and_vector_paths_against_reference(rng, softplus):
    """Blocks where dt·A may be positive (a positive A in a tile, or dt < 0 without
    softplus) take the loops in Python, the others the vector code: both in one call,
    against the reference loop, and the gradients against finite differences."""
    kw = make_problem(rng, dim=40, N=3, L=150, G=2, softplus=softplus, state=True)
    kw["A"] = kw["A"].copy()
    kw["A"][21, 1] = 0.05                                   # the second tile of group 1
    kw["delta"] = kw["delta"].copy()
    kw["delta"][:, 5, 70:75] = -0.5 if not softplus else kw["delta"][:, 5, 70:75]
    out, last = run(kw, return_last_state=True)
    ref, rlast = _reference.selective_scan(**kw, return_last_state=True)
    assert_close(out, ref, np.float64)
    assert_close(last, rlast, np.float64)
    check_grad_fd(rng, kw, n_probe=3)
