"""iirssm.sklearn: scikit-learn's estimator checks and behaviour against the direct iirssm calls."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.signal  # noqa: E402
from sklearn.linear_model import RidgeClassifierCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import iirssm  # noqa: E402
from iirssm.sklearn import (EMASmoother, FilterBankFeatures, IIRFilter,  # noqa: E402
                            SelectiveFeatures)

from conftest import assert_close  # noqa: E402

SOS = scipy.signal.butter(2, 0.3, output="sos")

ESTIMATORS = [
    EMASmoother(),
    EMASmoother(halflife=3.0, adjust=True),
    IIRFilter(),
    IIRFilter(b=[0.2, 0.3], a=[1.0, -0.5]),
    IIRFilter(sos=SOS),
    FilterBankFeatures(n_timescales=3, n_frequencies=2, n_biases=3, random_state=0),
    SelectiveFeatures(n_kernels=4, d_state=2, n_biases=3, random_state=0),
]

# Every check holds: the transformers treat each row as one series, rows are
# independent, and 2-D input of any width (number of time points) is accepted.
EXPECTED_FAILED = {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- helpers

def _series(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def _task(rng, n=60, L=96):
    """Two classes: a burst of oscillation at period 6 (class 1) or 16 (class 0) in noise."""
    y = np.arange(n) % 2
    t = np.arange(L)
    X = rng.standard_normal((n, L))
    for i in range(n):
        start = rng.integers(0, L - 32)
        period = 6.0 if y[i] else 16.0
        X[i, start:start + 32] += 2.0 * np.sin(2 * np.pi * t[:32] / period + rng.uniform(0, 6))
    return X, y


# --------------------------------------------------------------------------- import

def test_import_iirssm_does_not_import_sklearn():
    code = ("import sys, iirssm; print('sklearn' in sys.modules, "
            "'iirssm.sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


# --------------------------------------------------------------------------- filters

@pytest.mark.parametrize("kw", [{}, {"alpha": 0.3}, {"span": 5}, {"com": 2.0},
                                {"halflife": 4.0, "adjust": True, "min_periods": 2}])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ema_smoother_equals_ema(rng, kw, dtype):
    X = _series(rng, (4, 3, 50), dtype)
    X[1, 2, 7] = np.nan
    est = EMASmoother(**kw)
    Y = est.fit_transform(X)
    ref = iirssm.ema(X, **(kw or {"alpha": 0.1}), axis=-1)
    assert Y.dtype == dtype and Y.shape == X.shape
    np.testing.assert_array_equal(Y, ref)
    Y2 = est.fit_transform(X[:, 0])            # 2-D: each row is a series
    np.testing.assert_array_equal(Y2, iirssm.ema(X[:, 0], **(kw or {"alpha": 0.1})))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_iir_filter_equals_lfilter_and_sosfilt(rng, dtype):
    X = _series(rng, (3, 2, 80), dtype)
    b, a = scipy.signal.butter(3, 0.2)
    Y = IIRFilter(b=b, a=a).fit_transform(X)
    assert Y.dtype == dtype
    np.testing.assert_array_equal(
        Y, iirssm.lfilter(b.astype(dtype), a.astype(dtype), X, axis=-1))
    Y = IIRFilter(sos=SOS).fit_transform(X)
    np.testing.assert_array_equal(Y, iirssm.sosfilt(SOS.astype(dtype), X, axis=-1))
    Y = IIRFilter(sos=SOS, zero_phase=True).fit_transform(X)
    np.testing.assert_array_equal(Y, iirssm.sosfiltfilt(SOS.astype(dtype), X, axis=-1))
    Y = IIRFilter(b=b, a=a, zero_phase=True).fit_transform(X[:, 0])
    np.testing.assert_array_equal(
        Y, iirssm.filtfilt(b.astype(dtype), a.astype(dtype), X[:, 0], axis=-1))
    if dtype == np.float64:
        assert_close(IIRFilter(b=b, a=a).fit_transform(X), scipy.signal.lfilter(b, a, X))


def test_filter_input_not_modified_and_output_not_aliased(rng):
    X = _series(rng, (3, 40))
    X0 = X.copy()
    for est in (EMASmoother(), IIRFilter()):
        Y = est.fit_transform(X)
        np.testing.assert_array_equal(X, X0)
        assert not np.shares_memory(X, Y)


@pytest.mark.parametrize("est, match", [
    (EMASmoother(alpha=0.5, span=3), "mutually exclusive"),
    (EMASmoother(alpha=1.5), "alpha"),
    (EMASmoother(span="3"), "span"),
    (EMASmoother(min_periods=-1), "min_periods"),
    (EMASmoother(n_jobs=0), "n_jobs"),
    (IIRFilter(a=[0.0, 1.0]), r"a\[0\]"),
    (IIRFilter(b=[[1.0]]), "b must be 1-D"),
    (IIRFilter(b=[1.0, 2.0], sos=SOS), "either sos or"),
    (IIRFilter(sos=[[1.0, 0.0, 0.0]]), "sos"),
    (FilterBankFeatures(n_timescales=0), "n_timescales"),
    (FilterBankFeatures(n_timescales=2.5), "n_timescales"),
    (FilterBankFeatures(dampings=(0.5, -1)), "dampings"),
    (FilterBankFeatures(differences=(0, 3)), "differences"),
    (FilterBankFeatures(pooling=("ppv", "median")), "pooling"),
    (FilterBankFeatures(n_biases=0), "n_biases is 0"),
    (FilterBankFeatures(max_timescale=0.5), "max_timescale"),
    (FilterBankFeatures(n_channel_combinations=0), "n_channel_combinations"),
    (SelectiveFeatures(n_kernels=0), "n_kernels"),
    (SelectiveFeatures(selectivity=-1.0), "selectivity"),
    (SelectiveFeatures(d_state=0), "d_state"),
    (SelectiveFeatures(min_timescale=0.0), "min_timescale"),
    (SelectiveFeatures(differences=(0, 0)), "differences"),
    (SelectiveFeatures(n_biases=0), "n_biases is 0"),
])
def test_bad_parameters_fail_in_fit(rng, est, match):
    with pytest.raises((ValueError, TypeError), match=match):
        est.fit(_series(rng, (3, 20)))


def test_transform_checks_shape(rng):
    for est in (EMASmoother(), FilterBankFeatures(n_timescales=2, n_frequencies=1)):
        est.fit(_series(rng, (3, 2, 20)))
        with pytest.raises(ValueError, match="time points"):
            est.transform(_series(rng, (3, 2, 21)))
        with pytest.raises(ValueError, match="3 features|channels|features"):
            est.transform(_series(rng, (3, 3, 20)))
        with pytest.raises(ValueError, match="dimensions"):
            est.transform(_series(rng, (3, 20)))


def test_filters_pandas_output(rng):
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(_series(rng, (3, 10)), columns=[f"t{i}" for i in range(10)])
    Y = EMASmoother(alpha=0.5).set_output(transform="pandas").fit_transform(X)
    assert isinstance(Y, pd.DataFrame) and list(Y.columns) == list(X.columns)
    np.testing.assert_array_equal(Y.to_numpy(), iirssm.ema(X.to_numpy(), alpha=0.5))
    est = EMASmoother().set_output(transform="pandas").fit(_series(rng, (2, 2, 10)))
    with pytest.raises(ValueError, match="needs 2-D input"):
        est.transform(_series(rng, (2, 2, 10)))


# --------------------------------------------------------------------------- filter bank

def _bank_reference(X, est):
    """Every output of the bank from the direct iirssm calls: (n, F, L)."""
    R = est.timescales_.size
    Q = est.periods_.size
    p_real = est.poles_[:R].real
    p_c = est.poles_[R:]
    X3 = X[:, None] if X.ndim == 2 else X
    rows = {}
    for d in est.differences:
        U = X3
        for _ in range(d):
            U = np.diff(U, axis=-1, prepend=U[..., :1])
        for c in range(X3.shape[1]):
            u = U[:, c]
            E = np.stack([iirssm.ema(u, alpha=1 - p) for p in p_real], axis=1)
            H = np.stack([iirssm.linear_recurrence(p, (1 - abs(p)) * u.astype(complex),
                                                   zi=((1 - abs(p)) * u[:, :1] / (1 - p)))
                          for p in p_c], axis=1).reshape(u.shape[0], Q, -1)
            named = {"x": u}
            named.update({f"ema{r}": E[:, r] for r in range(R)})
            named.update({f"hp{r}": u - E[:, r] for r in range(R)})
            named.update({f"bp{r}": E[:, r] - E[:, r + 1] for r in range(R - 1)})
            for q in range(Q):
                named[f"res{q}_re"] = H[:, q].real
                named[f"res{q}_im"] = H[:, q].imag
                named[f"res{q}_abs"] = np.abs(H[:, q])
            for k, v in named.items():
                rows[(c, d, k)] = v
    out = []
    for name in est.outputs_:
        chans, d, row = name.split("_", 2)
        chans = [int(c) for c in chans[1:].split("+")]
        out.append(sum(rows[(c, int(d[1:]), row)] for c in chans))
    return np.stack(out, axis=1)


def _pool_reference(Z, biases, pooling=("ppv", "mean", "max", "last")):
    parts = []
    if "ppv" in pooling:
        parts.append((Z[:, :, None, :] > biases[None, :, :, None]).mean(axis=-1))
    for name, fn in (("mean", lambda z: z.mean(-1)), ("max", lambda z: z.max(-1)),
                     ("last", lambda z: z[..., -1])):
        if name in pooling:
            parts.append(fn(Z)[:, :, None])
    return np.concatenate(parts, axis=2).reshape(Z.shape[0], -1)


@pytest.mark.parametrize("shape", [(5, 150), (5, 3, 40)])
def test_filter_bank_outputs_equal_iirssm_calls(rng, shape):
    X = _series(rng, shape)
    est = FilterBankFeatures(n_timescales=4, n_frequencies=3, differences=(0, 1, 2),
                             n_biases=5, random_state=1).fit(X)
    Z = est.filter_outputs(X)
    ref = _bank_reference(X, est)
    assert Z.shape == (shape[0], len(est.outputs_), shape[-1])
    assert_close(Z, ref, np.float64, rtol=1e-9, atol=1e-9)
    F = est.transform(X)
    assert_close(F, _pool_reference(Z, est.biases_))   # the means are summed in blocks
    assert F.shape == (shape[0], est.n_features_out_)
    assert len(est.get_feature_names_out()) == F.shape[1]


def test_filter_bank_pooling_subset_and_names(rng):
    X = _series(rng, (4, 60))
    est = FilterBankFeatures(n_timescales=2, n_frequencies=1, pooling=("max", "ppv"),
                             n_biases=2, random_state=0).fit(X)
    F = est.transform(X)
    Z = est.filter_outputs(X)
    assert_close(F, _pool_reference(Z, est.biases_, ("ppv", "max")))
    names = est.get_feature_names_out()
    assert list(names[:3]) == ["c0_d0_x_ppv0", "c0_d0_x_ppv1", "c0_d0_x_max"]
    assert F.shape[1] == len(names) == len(est.outputs_) * 3


def test_filter_bank_fitted_attributes(rng):
    X = _series(rng, (6, 2, 100))
    est = FilterBankFeatures(n_timescales=5, n_frequencies=4, dampings=(1.0,), n_biases=7,
                             random_state=0).fit(X)
    np.testing.assert_allclose(est.timescales_, np.geomspace(1, 50, 5))
    np.testing.assert_allclose(est.periods_, np.geomspace(3, 100, 4))
    np.testing.assert_allclose(np.abs(est.poles_[5:]), np.exp(-1 / est.decay_times_))
    assert est.biases_.shape == (len(est.outputs_), 7)
    assert np.all(np.diff(est.biases_, axis=1) >= 0)
    assert est.n_channels_in_ == 2 and est.n_timepoints_in_ == 100 and est.n_features_in_ == 2
    assert len(est.outputs_) == 3 * (3 * 5 + 3 * 4)   # 3 differences, one channel subset each


@pytest.mark.parametrize("cls", [FilterBankFeatures, SelectiveFeatures])
def test_features_deterministic_and_seeded(rng, cls):
    X = _series(rng, (8, 2, 64))
    small = dict(n_biases=4)
    small.update(dict(n_timescales=3, n_frequencies=2) if cls is FilterBankFeatures
                 else dict(n_kernels=6, d_state=3))
    a = cls(random_state=3, **small).fit(X).transform(X)
    b = cls(random_state=3, **small).fit(X).transform(X)
    c = cls(random_state=4, **small).fit(X).transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("cls", [FilterBankFeatures, SelectiveFeatures])
def test_features_float32_preserved(rng, cls):
    X = _series(rng, (6, 80))
    small = dict(n_timescales=3, n_frequencies=2) if cls is FilterBankFeatures \
        else dict(n_kernels=5, d_state=3)
    F64 = cls(random_state=0, **small).fit_transform(X)
    F32 = cls(random_state=0, **small).fit_transform(X.astype(np.float32))
    assert F32.dtype == np.float32 and F64.dtype == np.float64
    # PPV counts may differ by a sample or two where a value ties with a bias in float32.
    assert np.mean(np.abs(F32 - F64) <= 1e-3 * (1 + np.abs(F64))) > 0.97


@pytest.mark.parametrize("cls", [FilterBankFeatures, SelectiveFeatures])
def test_features_n_jobs_identical(rng, cls):
    X = _series(rng, (12, 2, 70))
    small = dict(n_timescales=3, n_frequencies=3) if cls is FilterBankFeatures \
        else dict(n_kernels=8, d_state=3)
    a = cls(random_state=0, n_jobs=1, **small).fit(X).transform(X)
    b = cls(random_state=0, n_jobs=2, **small).fit(X).transform(X)
    np.testing.assert_array_equal(a, b)


def test_features_pandas_output(rng):
    pd = pytest.importorskip("pandas")
    X = _series(rng, (5, 30))
    est = FilterBankFeatures(n_timescales=2, n_frequencies=1, n_biases=2, random_state=0)
    F = est.set_output(transform="pandas").fit_transform(X)
    assert isinstance(F, pd.DataFrame)
    assert list(F.columns) == list(est.get_feature_names_out())


# --------------------------------------------------------------------------- selective

def _selective_reference(X, est):
    """Every output of SelectiveFeatures from iirssm.selective_scan (zoh), one mode at a time."""
    X3 = X[:, None] if X.ndim == 2 else X
    U = np.concatenate([np.asarray(X3, dtype=np.float64)[:, :, None]]
                       + [np.diff(X3, n=1, axis=-1, prepend=X3[..., :1])[:, :, None]]
                       + [np.diff(np.diff(X3, axis=-1, prepend=X3[..., :1]), axis=-1,
                                  prepend=np.zeros_like(X3[..., :1]))[:, :, None]],
                       axis=2)[:, :, list(est.differences)]
    n, L = U.shape[0], U.shape[-1]
    U = U.reshape(n, -1, L)                       # signal c * nd + j
    Usd = (U - est.signal_mean_[:, None]) / est.signal_scale_[:, None]
    theta = np.log(np.expm1(1.0))
    out = []
    for k, sigs in enumerate(est.kernel_signals_):
        v = Usd[:, list(sigs)].sum(axis=1)[:, None]          # (n, 1, L)
        A = est.A_[k][None] / est.timescales_[k]              # dt * A
        N = A.shape[1]
        cx = bool(est.kernel_complex_[k])
        if not cx:
            A = A.real
        B = -A[0][None, None, :, None] * (1 + est.B_weights_[k][None, None, :, None]
                                          * v[:, :, None])   # (n, 1, N, L)
        h0 = ((1 + est.B_weights_[k][None, None] * v[:, :, :1]) * v[:, :, :1]).astype(A.dtype)

        def scan(C, v=v, A=A, B=B, h0=h0, k=k):
            return iirssm.selective_scan(v, est.delta_weights_[k] * v, A, B, C,
                                         delta_bias=[theta], delta_softplus=True,
                                         initial_state=h0, discretization="zoh")[:, 0]

        eye = np.eye(N)
        if cx:
            re = [scan(0.5 * eye[m][None]) for m in range(N)]
            im = [scan(-0.5j * eye[m][None]) for m in range(N)]
            rows = re + im + [np.hypot(a, b) for a, b in zip(re, im)]
        else:
            h = [scan(eye[m][None]) for m in range(N)]
            rows = h + [v[:, 0] - hm for hm in h]
        C = est.C_bias_[k][None, :, None] + est.C_weights_[k][None, :, None] * v
        rows.append(scan(C))
        out += rows
    return np.stack(out, axis=1)


@pytest.mark.parametrize("shape, diffs, d_state, n_biases", [
    ((4, 90), (0, 1, 2), 3, 4),
    ((3, 3, 50), (1, 0), 3, 4),
    # several blocks of 128 samples; modes three at a time plus a remainder of two;
    # biases four at a time plus a remainder (and fewer than four)
    ((3, 300), (0, 1, 2), 5, 6),
    ((2, 2, 260), (2,), 2, 3),
])
def test_selective_outputs_equal_selective_scan(rng, shape, diffs, d_state, n_biases):
    X = _series(rng, shape) + 0.3
    est = SelectiveFeatures(n_kernels=8, d_state=d_state, differences=diffs,
                            n_biases=n_biases, random_state=2).fit(X)
    Z = est.filter_outputs(X)
    assert Z.shape == (shape[0], len(est.outputs_), shape[-1])
    assert est.kernel_complex_.any() and not est.kernel_complex_.all()
    assert_close(Z, _selective_reference(X, est), np.float64, rtol=1e-9, atol=1e-9)
    F = est.transform(X)
    assert_close(F, _pool_reference(Z, est.biases_, pooling=("ppv", "mean", "max")))
    assert F.shape == (shape[0], est.n_features_out_)
    assert len(est.get_feature_names_out()) == F.shape[1]
    assert np.all(np.diff(est.biases_, axis=1) >= 0)
    last = SelectiveFeatures(n_kernels=8, d_state=d_state, differences=diffs,
                             n_biases=n_biases, pooling=("ppv", "mean", "max", "last"),
                             random_state=2).fit(X)
    assert_close(last.transform(X), _pool_reference(Z, last.biases_))


def test_selective_sincos_matches_libm():
    """The kernel's vectorisable sin/cos (complex poles) against NumPy's, over many periods."""
    numba = pytest.importorskip("numba")
    from iirssm._cpu.features import _sincos

    @numba.njit
    def both(x):
        s = np.empty_like(x)
        c = np.empty_like(x)
        for j in range(x.size):
            s[j], c[j] = _sincos(x[j])
        return s, c

    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-20, 20, 4001), rng.uniform(-1e4, 1e4, 2000),
                        np.arange(-8, 9) * (np.pi / 4), [0.0, -0.0, 1e-300, 3e5]])
    s, c = both(x)
    assert np.max(np.abs(s - np.sin(x))) <= 4e-16
    assert np.max(np.abs(c - np.cos(x))) <= 4e-16
    small = np.abs(x) < 0.5                      # relative accuracy near 0
    np.testing.assert_allclose(s[small], np.sin(x[small]), rtol=4e-16, atol=1e-300)
    s, c = both(np.array([np.nan, np.inf, -np.inf]))
    assert np.isnan(s).all() and np.isnan(c).all()


def test_selective_fitted_attributes_and_names(rng):
    X = _series(rng, (6, 2, 100))
    est = SelectiveFeatures(n_kernels=12, d_state=2, pooling=("max", "ppv"), n_biases=2,
                            random_state=0).fit(X)
    nd = 3
    # every kernel reads one difference order of a subset of the channels
    for k, sigs in enumerate(est.kernel_signals_):
        assert len({s % nd for s in sigs}) == 1 and sigs[0] % nd == k % nd
    assert est.kernel_complex_.tolist() == [(k // nd) % 2 == 1 for k in range(12)]
    assert np.all((est.timescales_ >= 1.0) & (est.timescales_ <= 50.0))
    A_real, A_lin = est.A_[~est.kernel_complex_], est.A_[est.kernel_complex_]
    np.testing.assert_allclose(A_real, np.broadcast_to([-1.0, -2.0], A_real.shape))
    np.testing.assert_allclose(A_lin, np.broadcast_to((-0.5 + 1j * np.pi) * np.array([1, 2]),
                                                      A_lin.shape))
    rows = sum(3 * 2 + 1 if c else 2 * 2 + 1 for c in est.kernel_complex_)
    assert len(est.outputs_) == rows and est.biases_.shape == (rows, 2)
    names = est.get_feature_names_out()
    assert list(names[:4]) == ["k0_h0_ppv0", "k0_h0_ppv1", "k0_h0_max", "k0_h1_ppv0"]
    assert est.transform(X).shape == (6, len(names)) == (6, 3 * rows)
    # selectivity 0: time steps and B, C independent of the input (a linear bank)
    lin = SelectiveFeatures(n_kernels=6, d_state=2, selectivity=0.0, random_state=0).fit(X)
    assert not lin.delta_weights_.any() and not lin.B_weights_.any()
    Z1 = lin.filter_outputs(X)
    X2 = 2 * X - X.mean()                                # affine input: same standardised v
    Z2 = SelectiveFeatures(n_kernels=6, d_state=2, selectivity=0.0,
                           random_state=0).fit(X2).filter_outputs(X2)
    assert_close(Z1, Z2, np.float64, rtol=1e-9, atol=1e-9)


def test_selective_biases_from_picked_outputs(rng):
    """fit computes only the picked (case, output) rows: same draws and biases as the
    generic path (every output of the 32 cases, then the picks)."""
    import types

    from iirssm.sklearn import _BankBase
    X = _series(rng, (40, 2, 150))                 # more than 32 cases; two blocks
    kw = dict(n_kernels=6, d_state=4, n_biases=5, random_state=7)
    est = SelectiveFeatures(**kw).fit(X)
    ref = SelectiveFeatures(**kw)
    ref._bias_rows = types.MethodType(_BankBase._bias_rows, ref)
    ref.fit(X)
    np.testing.assert_array_equal(est.biases_, ref.biases_)
    np.testing.assert_array_equal(est.transform(X), ref.transform(X))
    X32 = X[:5, 0].astype(np.float32)              # fewer cases than 32, float32
    e32 = SelectiveFeatures(**kw).fit(X32)
    r32 = SelectiveFeatures(**kw)
    r32._bias_rows = types.MethodType(_BankBase._bias_rows, r32)
    np.testing.assert_array_equal(e32.biases_, r32.fit(X32).biases_)
    assert e32.biases_.dtype == np.float32


def test_selective_input_not_modified(rng):
    X = _series(rng, (5, 40))
    X0 = X.copy()
    SelectiveFeatures(n_kernels=4, d_state=2, random_state=0).fit(X).transform(X)
    np.testing.assert_array_equal(X, X0)


# --------------------------------------------------------------------------- pipelines

@pytest.mark.parametrize("make, least", [
    (lambda: FilterBankFeatures(random_state=0), 0.95),
    (lambda: SelectiveFeatures(n_kernels=32, random_state=0), 0.7),
])
def test_pipeline_learns_synthetic_task(make, least):
    X, y = _task(np.random.default_rng(5), n=80)

    def pipe(*steps):
        return make_pipeline(*steps, RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))

    # The bursts start anywhere: a ridge on the raw values is at chance (0.5).
    assert pipe(StandardScaler()).fit(X[:40], y[:40]).score(X[40:], y[40:]) < 0.65
    clf = pipe(make(), StandardScaler(with_mean=False)).fit(X[:40], y[:40])
    assert clf.score(X[40:], y[40:]) >= least
