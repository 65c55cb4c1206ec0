"""selective_scan_vjp: the forward that keeps checkpoints, and its pullback."""

import numpy as np
import pytest

from iirssm import selective_scan, selective_scan_grad, selective_scan_vjp
from iirssm._cpu.selective import TB_BWD

from test_selective import DISCS, _GRAD_NAMES, make_problem


def _split(kw):
    a = dict(kw)
    return (a.pop("u"), a.pop("delta"), a.pop("A"), a.pop("B"), a.pop("C")), a


def _assert_same_grads(g1, g2):
    """Bitwise: the pullback runs the same reverse pass from the same checkpoints."""
    for name, a, b in zip(g1._fields, g1, g2):
        if b is None:
            assert a is None, name
        else:
            assert a.dtype == b.dtype and a.shape == b.shape, name
            np.testing.assert_array_equal(a, b, err_msg=name)


# Lengths around the 32-sample checkpoint segments (and the 64-sample forward blocks).
LENGTHS = [1, TB_BWD - 1, TB_BWD, TB_BWD + 1, 2 * TB_BWD, 2 * TB_BWD + 1, 150]


@pytest.mark.parametrize("L", LENGTHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cplx", [False, True])
def test_equals_scan_and_grad(rng, L, dtype, cplx):
    kw = make_problem(rng, L=L, dtype=dtype, cplx=cplx, dim=20, state=True)
    args, opt = _split(kw)
    (out, last), pullback = selective_scan_vjp(*args, return_last_state=True, **opt)
    out2, last2 = selective_scan(*args, return_last_state=True, **opt)
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(last, last2)
    dout = rng.standard_normal(out.shape).astype(out.dtype)
    dlast = rng.standard_normal(last.shape).astype(last.dtype)
    _assert_same_grads(pullback(dout, dlast),
                       selective_scan_grad(dout, *args, dlast_state=dlast, **opt))


@pytest.mark.parametrize("disc", DISCS)
@pytest.mark.parametrize("B_layout,C_layout", [("invariant", "invariant"), ("shared", "grouped"),
                                               ("grouped", "shared")])
@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("dtype,cplx", [(np.float64, False), (np.float32, True),
                                        (np.float64, True)])
def test_layouts_options_discretizations(rng, disc, B_layout, C_layout, extras, dtype, cplx):
    # complex states: the backward's first pass keeps its checkpoints without the
    # read-out for real states only (_advance's readout); these must still agree
    kw = make_problem(rng, L=70, B_layout=B_layout, C_layout=C_layout, extras=extras,
                      softplus=extras, dim=36, G=2, dtype=dtype, cplx=cplx)
    args, opt = _split(kw)
    out, pullback = selective_scan_vjp(*args, discretization=disc, **opt)
    np.testing.assert_array_equal(out, selective_scan(*args, discretization=disc, **opt))
    dout = rng.standard_normal(out.shape).astype(out.dtype)
    _assert_same_grads(pullback(dout),
                       selective_scan_grad(dout, *args, discretization=disc, **opt))


def test_unbatched_and_repeated_calls(rng):
    kw = make_problem(rng, batch=1, L=45, B_layout="invariant", C_layout="invariant")
    kw = {k: (v[0] if k in ("u", "delta", "z") else v) for k, v in kw.items()}
    args, opt = _split(kw)
    before = {k: np.copy(v) for k, v in kw.items() if isinstance(v, np.ndarray)}
    out, pullback = selective_scan_vjp(*args, **opt)
    assert out.shape == kw["u"].shape
    dout = rng.standard_normal(out.shape)
    g1 = pullback(dout)
    g2 = pullback(dout)
    _assert_same_grads(g1, g2)
    _assert_same_grads(g1, selective_scan_grad(dout, *args, **opt))
    assert g1.du is not g2.du and not np.shares_memory(g1.du, dout)
    for k, v in before.items():
        np.testing.assert_array_equal(kw[k], v, err_msg=f"{k} was modified")
    assert "pullback" in repr(pullback)


def test_against_finite_differences(rng):
    """An independent check (the equality tests above lean on selective_scan_grad)."""
    kw = make_problem(rng, L=40, dim=6, state=True)
    args, opt = _split(kw)
    dout = rng.standard_normal(kw["u"].shape)
    _, pullback = selective_scan_vjp(*args, **opt)
    g = pullback(dout)

    def loss(**over):
        a = dict(kw)
        a.update(over)
        x, o = _split(a)
        return float(np.sum(dout * selective_scan(*x, **o)))

    eps = 1e-6
    for name, gname in _GRAD_NAMES.items():
        x = kw[name]
        idx = tuple(int(rng.integers(0, n)) for n in x.shape)
        e = np.zeros_like(x)
        e[idx] = eps
        fd = (loss(**{name: x + e}) - loss(**{name: x - e})) / (2 * eps)
        got = getattr(g, gname)[idx]
        assert abs(got - fd) <= 1e-6 * max(1.0, abs(fd)), (name, got, fd)


@pytest.mark.parametrize("name", ["u", "delta", "A", "B", "delta_bias", "initial_state"])
def test_inputs_modified_before_pullback_are_refused(rng, name):
    """Never a wrong gradient: a change is refused, or did not reach the kept inputs."""
    kw = make_problem(rng, L=100, state=True)
    args, opt = _split(kw)
    out, pullback = selective_scan_vjp(*args, **opt)
    dout = np.ones_like(out)
    want = selective_scan_grad(dout, *args, **opt)
    x = kw[name]
    x[(0,) * (x.ndim - 1) + (x.shape[-1] // 3,)] += 0.5     # in place, mid-sequence
    if name in ("B", "initial_state"):
        # a time-varying B is transposed to (batch, G, L, N) by the forward, and the
        # initial state is kept as the first checkpoint: the pullback holds those
        # copies, so the change does not reach it and the gradient is the forward's
        _assert_same_grads(pullback(dout), want)
        return
    with pytest.raises(ValueError, match="changed between the forward call and the pullback"):
        pullback(dout)


def test_nonfinite_values_are_not_mistaken_for_a_change(rng):
    kw = make_problem(rng, L=90)
    kw["u"][0, 1, 20] = np.nan
    kw["u"][1, 2, 50] = np.inf
    args, opt = _split(kw)
    out, pullback = selective_scan_vjp(*args, **opt)
    assert np.isnan(out).any()
    dout = np.ones_like(out)
    _assert_same_grads(pullback(dout), selective_scan_grad(dout, *args, **opt))


def test_cotangent_checks(rng):
    kw = make_problem(rng, L=30, dtype=np.float32)
    args, opt = _split(kw)
    (out, last), pullback = selective_scan_vjp(*args, return_last_state=True, **opt)
    with pytest.raises(ValueError, match="dout"):
        pullback(np.ones(out.shape[:-1] + (out.shape[-1] + 1,), np.float32))
    with pytest.raises(ValueError, match="dlast_state"):
        pullback(np.ones_like(out), np.ones(last.shape[:-1] + (7,), np.float32))
    with pytest.raises(TypeError, match="forward ran in float32"):
        pullback(np.ones(out.shape, np.float64))
    with pytest.raises(TypeError, match="dout must be real"):
        pullback(np.ones(out.shape, np.complex64))


def test_dask_arrays_use_the_dask_gradient(rng):
    da = pytest.importorskip("dask.array")
    kw = make_problem(rng, L=64, B_layout="invariant", C_layout="invariant")
    args, opt = _split(kw)
    dargs = (da.from_array(args[0], chunks=(2, 6, 20)),) + args[1:]
    dargs = (dargs[0], da.from_array(args[1], chunks=(2, 6, 20))) + dargs[2:]
    opt_d = dict(opt, z=da.from_array(opt["z"], chunks=(2, 6, 20)))
    out, pullback = selective_scan_vjp(*dargs, **opt_d)
    assert isinstance(out, da.Array)
    np.testing.assert_allclose(out.compute(scheduler="sync"), selective_scan(*args, **opt),
                               rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(kw["u"].shape)
    g = pullback(da.from_array(dout, chunks=(2, 6, 20)))
    want = selective_scan_grad(dout, *args, **opt)
    for name, a, b in zip(g._fields, g, want):
        if b is not None:
            a = a.compute(scheduler="sync") if hasattr(a, "compute") else a
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=name)
