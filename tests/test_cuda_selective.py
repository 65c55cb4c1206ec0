"""CUDA selective scan: the kernels' NumPy mirror against the reference, the planner,
the compile matrix, and (on a GPU) the kernels against the CPU backend."""

import numpy as np
import pytest

from iirssm import _reference
from iirssm._cuda import _compile
from iirssm._cuda import _selective as cs
from iirssm._cuda import _selective_mirror as mirror
from iirssm._selective import selective_scan, selective_scan_grad
from conftest import assert_close
from test_selective import make_problem

CH32 = cs.config(np.float32, False, 0).chunk      # 1024 (forward)
CH32B = cs.config(np.float32, False, 0, backward=True).chunk   # 512
CH64 = cs.config(np.float64, False, 0).chunk      # 512
CHG = cs.config(np.float64, False, 1).chunk       # 512 (zoh / euler / bilinear)


def _lengths(ch):
    return [1, 31, 32, 33, ch - 1, ch, ch + 1, 3 * ch + 5]


def _args(kw):
    a = dict(kw)
    return (a.pop("u"), a.pop("delta"), a.pop("A"), a.pop("B"), a.pop("C")), a


# ------------------------------------------------------------------ forward mirror

@pytest.mark.parametrize("L", _lengths(CH64))
def test_mirror_forward_float64_against_reference(rng, L):
    # one block of R=2 rows and one of 1 (dim=3), grouped B, time-invariant C, h0, extras
    kw = make_problem(rng, batch=1, dim=3, N=2, L=L, B_layout="grouped", C_layout="invariant",
                      G=1, state=True)
    pos, kw2 = _args(kw)
    got, last = mirror.selective_scan(*pos, **kw2, return_last_state=True)
    want, wlast = _reference.selective_scan(*pos, **kw2, return_last_state=True)
    assert_close(got, want, np.float64)
    assert_close(last, wlast, np.float64)


@pytest.mark.parametrize("L", [1, 33, CH32 - 1, CH32 + 1, 3 * CH32 + 5])
@pytest.mark.parametrize("cplx", [False, True])
def test_mirror_forward_float32_against_reference(rng, L, cplx):
    kw = make_problem(rng, batch=1, dim=2, N=2, L=L, dtype=np.float32, cplx=cplx,
                      B_layout="shared", C_layout="shared", state=True)
    pos, kw2 = _args(kw)
    got, last = mirror.selective_scan(*pos, **kw2, return_last_state=True)
    want, wlast = _reference.selective_scan(*pos, **kw2, return_last_state=True)
    assert got.dtype == np.float32
    assert_close(got, want, np.float32)
    assert_close(last, wlast, np.float32)


def test_mirror_forward_long_float32(rng):
    """10^5 samples, 98 chunks: float32 carries stay within the float32 tolerance."""
    L = 100_000
    kw = make_problem(rng, batch=1, dim=1, N=1, L=L, dtype=np.float32, B_layout="shared",
                      C_layout="shared", state=True)
    pos, kw2 = _args(kw)
    got, last = mirror.selective_scan(*pos, **kw2, return_last_state=True)
    kw64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    pos64, kw264 = _args(kw64)
    want, wlast = _reference.selective_scan(*pos64, **kw264, return_last_state=True)
    assert_close(got, want, np.float32)
    assert_close(last, wlast, np.float32)


@pytest.mark.parametrize("B_layout,C_layout", [("invariant", "invariant"), ("shared", "grouped"),
                                               ("grouped", "shared")])
@pytest.mark.parametrize("disc", ["mamba", "zoh", "euler", "bilinear"])
@pytest.mark.parametrize("cplx", [False, True])
def test_mirror_forward_layouts_discretizations(rng, B_layout, C_layout, disc, cplx):
    # dim=6 with G=2 groups of 3: blocks of 2 and 1 rows inside each group
    kw = make_problem(rng, batch=2, dim=6, N=3, L=CHG + 7, cplx=cplx, B_layout=B_layout,
                      C_layout=C_layout, G=2, state=True)
    pos, kw2 = _args(kw)
    got, last = mirror.selective_scan(*pos, **kw2, return_last_state=True,
                                      discretization=disc)
    want, wlast = selective_scan(*pos, **kw2, return_last_state=True, discretization=disc)
    assert_close(got, want, np.float64)
    assert_close(last, wlast, np.float64)


def test_mirror_unbatched_and_chunks_carry(rng):
    kw = make_problem(rng, batch=1, dim=4, N=2, L=2 * CH64 + 3, B_layout="shared",
                      C_layout="shared")
    u, delta, A, B, C = kw["u"][0], kw["delta"][0], kw["A"], kw["B"][0], kw["C"][0]
    whole = mirror.selective_scan(u, delta, A, B, C, delta_softplus=True)
    cut = CH64 + 5
    y1, h = mirror.selective_scan(u[:, :cut], delta[:, :cut], A, B[:, :cut], C[:, :cut],
                                  delta_softplus=True, return_last_state=True)
    y2 = mirror.selective_scan(u[:, cut:], delta[:, cut:], A, B[:, cut:], C[:, cut:],
                               delta_softplus=True, initial_state=h)
    assert whole.shape == u.shape
    assert_close(np.concatenate([y1, y2], axis=-1), whole, np.float64)


# ------------------------------------------------------------------ backward mirror

def _grad_pair(rng, kw, disc="mamba", dlast=True):
    pos, kw2 = _args(kw)
    out, last = selective_scan(*pos, **kw2, return_last_state=True, discretization=disc)
    dout = rng.standard_normal(out.shape).astype(out.dtype)
    dl = None
    if dlast:
        dl = rng.standard_normal(last.shape)
        if np.iscomplexobj(last):
            dl = dl + 1j * rng.standard_normal(last.shape)
        dl = dl.astype(last.dtype)
    got = mirror.selective_scan_grad(dout, *pos, **kw2, dlast_state=dl, discretization=disc)
    want = selective_scan_grad(dout, *pos, **kw2, dlast_state=dl, discretization=disc)
    return got, want


def _assert_grads(got, want, dtype):
    for name, g, w in zip(want._fields, got, want):
        if w is None:
            assert g is None, name
            continue
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (name, g.shape, w.shape, g.dtype)
        try:
            assert_close(g, w, dtype)
        except AssertionError as exc:
            raise AssertionError(f"gradient {name}: {exc}") from None


@pytest.mark.parametrize("L", _lengths(CH64))
def test_mirror_grad_float64_lengths(rng, L):
    kw = make_problem(rng, batch=1, dim=3, N=2, L=L, B_layout="shared", C_layout="grouped",
                      G=1, state=True)
    got, want = _grad_pair(rng, kw)
    _assert_grads(got, want, np.float64)


@pytest.mark.parametrize("B_layout,C_layout", [("invariant", "invariant"), ("shared", "grouped"),
                                               ("grouped", "invariant")])
@pytest.mark.parametrize("disc", ["mamba", "zoh", "euler", "bilinear"])
@pytest.mark.parametrize("cplx", [False, True])
def test_mirror_grad_layouts_discretizations(rng, B_layout, C_layout, disc, cplx):
    kw = make_problem(rng, batch=2, dim=6, N=2, L=CHG + 3, cplx=cplx, B_layout=B_layout,
                      C_layout=C_layout, G=2, state=True)
    got, want = _grad_pair(rng, kw, disc)
    _assert_grads(got, want, np.float64)


@pytest.mark.parametrize("cplx", [False, True])
def test_mirror_grad_float32(rng, cplx):
    """float32 mirror against the float64 CPU gradient (of the same, upcast, inputs)."""
    kw = make_problem(rng, batch=1, dim=3, N=2, L=2 * CH32B + 33, dtype=np.float32, cplx=cplx,
                      B_layout="shared", C_layout="shared", state=True)
    pos, kw2 = _args(kw)
    out = mirror.selective_scan(*pos, **kw2)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    got = mirror.selective_scan_grad(dout, *pos, **kw2)

    def up(v):
        if isinstance(v, np.ndarray):
            return v.astype(np.complex128 if v.dtype.kind == "c" else np.float64)
        return v
    want = selective_scan_grad(up(dout), *map(up, pos), **{k: up(v) for k, v in kw2.items()})
    for name, g, w in zip(want._fields, got, want):
        if w is not None:
            assert np.asarray(g).dtype == np.asarray(w).dtype.type(0).astype(
                np.complex64 if np.iscomplexobj(w) else np.float32).dtype, name
            # float32 sums over ~1000 samples: relative to the largest gradient
            assert_close(g, w, np.float32, rtol=1e-4, atol=1e-4)


def test_mirror_grad_options_absent(rng):
    """No D, z, delta_bias, initial_state or dlast_state: those gradients are None."""
    kw = make_problem(rng, batch=1, dim=2, N=2, L=40, extras=False, softplus=False)
    got, want = _grad_pair(rng, kw, dlast=False)
    assert got.dD is None and got.dz is None and got.ddelta_bias is None
    assert got.dinitial_state is None
    _assert_grads(got, want, np.float64)


def test_mirror_grad_scalar_D_and_bias(rng):
    kw = make_problem(rng, batch=1, dim=4, N=2, L=20)
    kw["D"], kw["delta_bias"] = 0.5, 0.1
    got, want = _grad_pair(rng, kw)
    assert np.ndim(got.dD) == 0 and np.ndim(got.ddelta_bias) == 0
    _assert_grads(got, want, np.float64)


# ------------------------------------------------------------------ planner

@pytest.mark.parametrize("dim,gsB,btv,gsC,ctv,R", [
    (6, 3, True, 6, True, 2), (7, 7, True, 7, False, 2), (12, 4, True, 6, True, 4),
    (5, 5, False, 1, True, 2), (16, 16, True, 16, True, 2), (3, 3, False, 3, False, 1)])
def test_geometry_covers_channels_within_groups(dim, gsB, btv, gsC, ctv, R):
    seg, tps, nblk = cs.geometry(dim, R, gsB, btv, gsC, ctv)
    x = np.arange(nblk)
    d0 = (x // tps) * seg + (x % tps) * R
    m = np.minimum(R, seg - (x % tps) * R)
    assert (m >= 1).all() and (m <= R).all()
    chans = np.concatenate([np.arange(a, a + k) for a, k in zip(d0, m)])
    np.testing.assert_array_equal(chans, np.arange(dim))          # each channel once, in order
    for a, k in zip(d0, m):                                       # never straddles a group
        if btv:
            assert a // gsB == (a + k - 1) // gsB
        if ctv:
            assert a // gsC == (a + k - 1) // gsC
    if btv:                                  # group g owns blocks [g·K, (g+1)·K)
        G = dim // gsB
        K = nblk // G
        assert K * G == nblk
        np.testing.assert_array_equal(d0 // gsB, x // K)


def test_plan_layouts_and_flags(rng):
    kw = make_problem(rng, batch=2, dim=6, N=3, L=10, B_layout="shared", C_layout="grouped",
                      G=3)
    pos, kw2 = _args(kw)
    p = cs.plan(np, *pos, kw2["D"], kw2["z"], kw2["delta_bias"], True)
    assert p.Bk.shape == (2, 1, 3, 10) and p.Ck.shape == (2, 3, 3, 10)
    assert (p.GB, p.gsB, p.GC, p.gsC) == (1, 6, 3, 2)
    assert p.cfg.R == 1 and p.seg == 2 and p.nblk == 6 and p.nch == 1      # float64: R = 1
    assert p.flags() == cs.F_SOFTPLUS | cs.F_Z | cs.F_BTV | cs.F_CTV
    assert p.Bk.flags.c_contiguous and p.u.dtype == np.float64
    p32 = cs.plan(np, *(np.asarray(a, np.float32) for a in pos), discretization="zoh")
    assert p32.cfg == cs.config(np.float32, False, 1) and p32.flags() == cs.F_BTV | cs.F_CTV | (
        1 << 8)


@pytest.mark.parametrize("change,exc,match", [
    (dict(B=np.zeros((2, 4, 3, 10))), ValueError, "does not divide dim"),
    (dict(delta=np.zeros((2, 6, 9))), ValueError, "delta must have shape"),
    (dict(u=np.zeros((2, 6, 10), complex)), TypeError, "u must be real"),
    (dict(A=np.zeros((5, 3))), ValueError, "A must have shape"),
    (dict(D=np.zeros(5)), ValueError, "D must have shape"),
    (dict(u=np.zeros((2, 6, 0)), delta=np.zeros((2, 6, 0))), ValueError, "no samples"),
    (dict(discretization="foh"), ValueError, "discretization must be one of"),
    (dict(u=np.array([["a"] * 10] * 6 * 2).reshape(2, 6, 10)), TypeError, "u must hold"),
])
def test_plan_errors_like_the_cpu(rng, change, exc, match):
    kw = make_problem(rng, batch=2, dim=6, N=3, L=10)
    kw.update(change)
    pos, kw2 = _args(kw)
    with pytest.raises(exc, match=match):
        cs.plan(np, *pos, **{k: v for k, v in kw2.items() if k != "delta_softplus"})
    with pytest.raises(exc, match=match):        # the CPU backend says the same
        selective_scan(*pos, **kw2)


def test_registered_expressions():
    exprs = _compile.MODULES[cs.SOURCE]
    assert len(exprs) == len(set(exprs)) == 21
    for rdt in (np.float32, np.float64):
        for cplx in (False, True):
            for disc in range(4):
                assert set(cs.expressions(rdt, cplx, disc)) <= set(exprs)
    assert cs.expressions(np.float32, False, 0) == (
        "ss_fwd<float, false, 0, 128, 8, 2>", "ss_fwd<float, false, 0, 128, 4, 2>",
        "ss_bwd<float, false, 0, 128, 4, 2>")


# ------------------------------------------------------------------ compile matrix

_nvrtc = pytest.mark.skipif(not _compile.nvrtc_available(), reason="NVRTC not available")
_nvcc = pytest.mark.skipif(not _compile.nvcc_available(), reason="nvcc not available")
# The whole NVRTC and nvcc matrix (every registered instantiation of selective.cu,
# sm_80 and sm_90) runs in test_cuda_compile.py; here only what is specific to it.


def _check_nvcc(exprs, arch):
    res = _compile.nvcc_compile(cs.SOURCE, exprs, arch)
    kernels = {k: v for k, v in res.resources.items() if "ss_" in k}
    assert len(kernels) == len(exprs), res.log
    for name, r in kernels.items():
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, (name, r)
        assert r.get("local", 0) == 0 and r.get("stack", 0) == 0, (name, r)
        assert r["registers"] <= 255, (name, r)
    return res


@_nvcc
def test_nvcc_no_warnings_no_spills_subset():
    res = _check_nvcc([cs.expressions(np.float32, True, 0)[2]], 90)
    assert "shfl.sync.down" in res.ptx and "shfl.sync.bfly" in res.ptx
    assert "ex2.approx" in res.ptx and "ld.global.nc.v4" in res.ptx


# ------------------------------------------------------------------ on a GPU

def _cupy_device():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


gpu = pytest.mark.skipif(not _cupy_device(), reason="no CUDA device")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("disc", ["mamba", "zoh"])
@pytest.mark.parametrize("L", [1, 33, 1025, 3 * 1024 + 5])
def test_gpu_against_cpu(rng, dtype, cplx, disc, L):
    import cupy as cp

    kw = make_problem(rng, batch=2, dim=6, N=3, L=L, dtype=dtype, cplx=cplx,
                      B_layout="shared", C_layout="grouped", G=2, state=True)
    pos, kw2 = _args(kw)
    want, wlast = selective_scan(*pos, **kw2, return_last_state=True, discretization=disc)
    dpos = [cp.asarray(a) for a in pos]
    dkw = {k: (cp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kw2.items()}
    got, last = cs.selective_scan(*dpos, **dkw, return_last_state=True, discretization=disc)
    assert isinstance(got, cp.ndarray) and got.dtype == want.dtype
    assert_close(got.get(), want, dtype)
    assert_close(last.get(), wlast, dtype)
    dout = rng.standard_normal(want.shape).astype(want.dtype)
    gw = selective_scan_grad(dout, *pos, **kw2, discretization=disc)
    gg = cs.selective_scan_grad(cp.asarray(dout), *dpos, **dkw, discretization=disc)
    gg2 = cs.selective_scan_grad(cp.asarray(dout), *dpos, **dkw, discretization=disc)
    for name, g, w, g2 in zip(gw._fields, gg, gw, gg2):
        if w is None:
            assert g is None
            continue
        assert_close(cp.asnumpy(g), w, dtype, rtol=1e-4 if dtype == np.float32 else 1e-10,
                     atol=1e-4 if dtype == np.float32 else 1e-10)
        np.testing.assert_array_equal(cp.asnumpy(g), cp.asnumpy(g2))    # deterministic
