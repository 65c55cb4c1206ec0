"""The dask backend (iirssm.dask): chunked in time and channels, equal to the NumPy backend."""

import numpy as np
import pytest
import scipy.signal

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import iirssm  # noqa: E402
from iirssm import EMAState  # noqa: E402

from conftest import assert_close  # noqa: E402

L = 60
# time chunkings: one chunk, chunks of 1 sample, uneven chunks
TIME_CHUNKS = [(L,), (1,) * L, (7, 1, 20, 13, 19)]
TIME_IDS = ["whole", "ones", "uneven"]


@pytest.fixture(autouse=True)
def threaded():
    with dask.config.set(scheduler="threads"):
        yield


def lazy(x, chunks):
    """A dask array whose chunks are computed by tasks (not NumPy data in the graph)."""
    return da.from_array(np.asarray(x), chunks=chunks) * 1


def signal(rng, shape=(3, L), dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------- linear_recurrence

@pytest.mark.parametrize("tch", TIME_CHUNKS, ids=TIME_IDS)
@pytest.mark.parametrize("cch", [3, 1, (2, 1)], ids=["c3", "c1", "c21"])
def test_linear_recurrence_chunked(rng, tch, cch):
    b = signal(rng)
    a = rng.uniform(0.5, 1.0, (3, L))
    zi = rng.standard_normal((3, 1))
    for reverse in (False, True):
        y, zf = iirssm.linear_recurrence(lazy(a, (cch, tch)), lazy(b, (cch, tch)), zi=zi,
                                         reverse=reverse, return_zf=True)
        y0, zf0 = iirssm.linear_recurrence(a, b, zi=zi, reverse=reverse, return_zf=True)
        assert isinstance(y, da.Array) and isinstance(zf, da.Array)
        assert y.chunks == ((cch,) if isinstance(cch, int) and cch == 3 else
                            ((1, 1, 1) if cch == 1 else cch), tch)
        assert_close(y.compute(), y0)
        assert_close(zf.compute(), zf0)
    # per-channel NumPy decay, no state
    a1 = rng.uniform(0.5, 1.0, (3, 1))
    assert_close(iirssm.linear_recurrence(a1, lazy(b, (cch, tch))).compute(),
                 iirssm.linear_recurrence(a1, b))


def test_linear_recurrence_axis0_float32_complex(rng):
    b = signal(rng, (L, 4), np.float32)
    y = iirssm.linear_recurrence(np.float32(0.9), da.from_array(b, chunks=(13, 2)), axis=0)
    assert y.dtype == np.float32
    assert_close(y.compute(), iirssm.linear_recurrence(np.float32(0.9), b, axis=0))
    bc = b.astype(np.complex128) * (1 + 0.5j)
    a = 0.9 * np.exp(0.3j)
    y, zf = iirssm.linear_recurrence(a, da.from_array(bc, chunks=(9, 4)), axis=0,
                                     zi=np.ones((1, 4)), return_zf=True)
    y0, zf0 = iirssm.linear_recurrence(a, bc, axis=0, zi=np.ones((1, 4)), return_zf=True)
    assert y.dtype == np.complex128
    assert_close(y.compute(), y0)
    assert_close(zf.compute(), zf0)


# ---------------------------------------------------------------------------------- ema

@pytest.mark.parametrize("tch", TIME_CHUNKS, ids=TIME_IDS)
def test_ema_options_equal_numpy(rng, tch):
    x = signal(rng)
    x[0, 5:9] = np.nan
    x[1, 0] = np.nan
    x[2, 30] = np.inf
    xd = lazy(x, (2, tch))
    for kw in (dict(alpha=0.2), dict(span=5.0, adjust=True),
               dict(com=3.0, adjust=True, ignore_na=True, min_periods=4),
               dict(halflife=4.0, min_periods=3)):
        y, zf = iirssm.ema(xd, **kw, return_zf=True)
        y0, zf0 = iirssm.ema(x, **kw, return_zf=True)
        assert_close(y.compute(), y0)
        for got, want in zip(zf[:3], zf0[:3]):
            assert_close(got.compute(), want)


@pytest.mark.parametrize("tch", TIME_CHUNKS, ids=TIME_IDS)
def test_ema_times_and_time_varying_alpha(rng, tch):
    x = signal(rng)
    x[1, 10:14] = np.nan
    t = np.cumsum(rng.exponential(1.0, L))
    td = da.from_array(t, chunks=(tch,))
    for times in (t, td):
        for adjust in (False, True):
            y, zf = iirssm.ema(lazy(x, (1, tch)), halflife=3.0, times=times, adjust=adjust,
                               return_zf=True)
            y0, zf0 = iirssm.ema(x, halflife=3.0, times=t, adjust=adjust, return_zf=True)
            assert_close(y.compute(), y0)
            assert_close(zf.mean.compute(), zf0.mean)
            assert_close(zf.weight.compute(), zf0.weight)
            assert float(np.asarray(dask.compute(zf.last_time)[0])) == float(zf0.last_time)
    # a NumPy signal with dask timestamps goes to dask and takes their chunks
    y = iirssm.ema(x, halflife=3.0, times=td)
    assert y.chunks[1] == tch
    assert_close(y.compute(), iirssm.ema(x, halflife=3.0, times=t))
    # per-sample alpha as a dask array, rechunked to the signal's chunks
    alpha = rng.uniform(0.05, 0.9, (1, L))
    y = iirssm.ema(lazy(x, (3, tch)), alpha=da.from_array(alpha, chunks=(1, 11)), adjust=True)
    assert_close(y.compute(), iirssm.ema(x, alpha=alpha, adjust=True))


def test_ema_datetimes_and_state_continuation(rng):
    pd = pytest.importorskip("pandas")
    x = signal(rng, (1, L))
    t = pd.date_range("2024-01-01", periods=L, freq="37min").to_numpy()
    t = t + rng.integers(0, 600, L).astype("timedelta64[s]")
    t.sort()
    y, zf = iirssm.ema(da.from_array(x, chunks=(1, 17)), halflife="2h", times=t, adjust=True,
                       return_zf=True)
    ref = pd.Series(x[0], index=t).ewm(halflife="2h", times=t, adjust=True).mean().to_numpy()
    assert_close(y.compute()[0], ref)
    assert zf.last_time == t[-1]
    # continue with the dask state on the next stretch, as one NumPy call would
    x2 = signal(rng, (1, 10))
    t2 = t[-1] + np.arange(1, 11) * np.timedelta64(30, "m")
    y2 = iirssm.ema(da.from_array(x2, chunks=(1, 3)), halflife="2h", times=t2, adjust=True,
                    zi=zf)
    whole = iirssm.ema(np.concatenate([x, x2], axis=1), halflife="2h",
                       times=np.concatenate([t, t2]), adjust=True)
    assert_close(y2.compute(), whole[:, L:])


def test_ema_plain_zi_and_state_zi(rng):
    x = signal(rng)
    y = iirssm.ema(da.from_array(x, chunks=(3, 11)), alpha=0.3, zi=np.ones((3, 1)))
    assert_close(y.compute(), iirssm.ema(x, alpha=0.3, zi=np.ones((3, 1))))
    _, st = iirssm.ema(x[:, :20], span=4.0, adjust=True, return_zf=True)
    st_d = EMAState(*(da.from_array(v) for v in st[:3]), None)
    y = iirssm.ema(da.from_array(x[:, 20:], chunks=(1, 9)), span=4.0, adjust=True, zi=st_d)
    assert_close(y.compute(), iirssm.ema(x, span=4.0, adjust=True)[:, 20:])


# ---------------------------------------------------------------------- lfilter / sosfilt

@pytest.mark.parametrize("tch", TIME_CHUNKS, ids=TIME_IDS)
def test_lfilter_sosfilt_chunked(rng, tch):
    x = signal(rng)
    xd = lazy(x, ((1, 2), tch))
    b, a = scipy.signal.butter(3, 0.2)
    assert_close(iirssm.lfilter(b, a, xd).compute(), scipy.signal.lfilter(b, a, x))
    zi = rng.standard_normal((3, 3))
    y, zf = iirssm.lfilter(b, a, xd, zi=zi)
    y0, zf0 = scipy.signal.lfilter(b, a, x, zi=zi)
    assert_close(y.compute(), y0)
    assert_close(zf.compute(), zf0)
    sos = scipy.signal.butter(5, 0.15, output="sos")
    assert_close(iirssm.sosfilt(sos, xd).compute(), scipy.signal.sosfilt(sos, x))
    zi = rng.standard_normal((3, 3, 2))
    y, zf = iirssm.sosfilt(sos, xd, zi=zi)
    y0, zf0 = scipy.signal.sosfilt(sos, x, zi=zi)
    assert_close(y.compute(), y0)
    assert_close(zf.compute(), zf0)


def test_lfilter_time_varying_and_per_channel_dask_coefficients(rng):
    x = signal(rng, (4, L))
    theta = np.linspace(0.1, 0.5, L) * np.pi
    a_tv = np.stack([np.ones(L), -2 * 0.9 * np.cos(theta), np.full(L, 0.81)])
    y = iirssm.lfilter([0.2], da.from_array(a_tv, chunks=(3, 8)),
                       da.from_array(x, chunks=(2, 13)))
    assert_close(y.compute(), iirssm.lfilter([0.2], a_tv, x))
    sos = np.stack([scipy.signal.butter(4, f, output="sos") for f in (0.1, 0.2, 0.3, 0.4)],
                   axis=-1)[..., None]                              # (2, 6, 4, 1)
    y = iirssm.sosfilt(da.from_array(sos, chunks=(2, 6, 1, 1)), da.from_array(x, chunks=(1, 9)))
    assert_close(y.compute(), iirssm.sosfilt(sos, x))


def test_lfilter_float32_axis0(rng):
    x = signal(rng, (L, 3), np.float32)
    b, a = scipy.signal.butter(2, 0.3)
    b, a = b.astype(np.float32), a.astype(np.float32)
    y = iirssm.lfilter(b, a, da.from_array(x, chunks=(11, 2)), axis=0)
    assert y.dtype == np.float32
    assert_close(y.compute(), iirssm.lfilter(b, a, x, axis=0))


# ------------------------------------------------------------------- filtfilt, sosfiltfilt

@pytest.mark.parametrize("tch", TIME_CHUNKS, ids=TIME_IDS)
@pytest.mark.parametrize("pad", [dict(), dict(padtype="even", padlen=5),
                                 dict(padtype="constant"), dict(padtype=None),
                                 dict(padlen=0)], ids=["odd", "even5", "const", "none", "p0"])
def test_filtfilt_equals_scipy(rng, tch, pad):
    x = signal(rng)
    xd = lazy(x, ((2, 1), tch))
    b, a = scipy.signal.butter(3, 0.2)
    assert_close(iirssm.filtfilt(b, a, xd, **pad).compute(),
                 scipy.signal.filtfilt(b, a, x, **pad))
    sos = scipy.signal.butter(4, 0.15, output="sos")
    assert_close(iirssm.sosfiltfilt(sos, xd, **pad).compute(),
                 scipy.signal.sosfiltfilt(sos, x, **pad))


def test_filtfilt_per_channel_axis0_and_errors(rng):
    x = signal(rng, (L, 2))
    ba = [scipy.signal.butter(2, f) for f in (0.1, 0.3)]
    b = np.stack([p[0] for p in ba], axis=-1)
    a = np.stack([p[1] for p in ba], axis=-1)
    y = iirssm.filtfilt(b, a, da.from_array(x, chunks=(7, 1)), axis=0)
    assert_close(y.compute(), iirssm.filtfilt(b, a, x, axis=0))
    xd = da.from_array(x, chunks=(7, 1))
    with pytest.raises(NotImplementedError, match="gust"):
        iirssm.filtfilt(b, a, xd, axis=0, method="gust")
    with pytest.raises(ValueError, match="padlen"):
        iirssm.filtfilt(*ba[0], xd[:5], axis=0)


# ------------------------------------------------------------------------- DiagonalSSM

@pytest.mark.parametrize("tch", TIME_CHUNKS, ids=TIME_IDS)
def test_diagonal_ssm_filter(rng, tch):
    x = signal(rng)
    ssm = iirssm.DiagonalSSM.from_zpk(*scipy.signal.butter(4, 0.2, output="zpk"))
    zi = np.zeros((3, ssm.n_states), complex)
    y, zf = ssm.filter(lazy(x, (2, tch)), zi=zi, return_zf=True)
    y0, zf0 = ssm.filter(x, zi=zi, return_zf=True)
    assert y.dtype == y0.dtype and zf.dtype == zf0.dtype
    assert_close(y.compute(), y0)
    assert_close(zf.compute(), zf0)
    # a complex bank, one system per channel, sliced per channel block
    poles = rng.uniform(0.5, 0.95, (3, 2)) * np.exp(1j * rng.uniform(0, 2, (3, 2)))
    bank = iirssm.DiagonalSSM(poles, B=rng.standard_normal((3, 2)), C=1.0, D=0.5)
    y, zf = bank.filter(lazy(x, (1, tch)), return_zf=True)
    y0, zf0 = bank.filter(x, return_zf=True)
    assert_close(y.compute(), y0)
    assert_close(zf.compute(), zf0)


def test_diagonal_ssm_bank_adds_dimensions(rng):
    x = signal(rng)
    bank = iirssm.DiagonalSSM(rng.uniform(0.5, 0.9, (4, 1, 2)), B=1.0, C=1.0)
    y = bank.filter(da.from_array(x, chunks=(1, 16)))
    assert y.shape == (4, 3, L)
    assert_close(y.compute(), bank.filter(x))
    with pytest.raises(ValueError, match="fft"):
        bank.filter(da.from_array(x), method="fft")


# ------------------------------------------------------------------------ selective scan

def _selective_inputs(rng, Bt=2, dim=4, N=3, L_=L):
    u, delta, z, dout = rng.standard_normal((4, Bt, dim, L_))
    A = -rng.uniform(0.5, 2.0, (dim, N))
    B = rng.standard_normal((Bt, N, L_))
    C = rng.standard_normal((Bt, 2, N, L_))                      # grouped, G = 2
    return dict(u=u, delta=delta, z=z, dout=dout, A=A, B=B, C=C, D=rng.standard_normal(dim),
                delta_bias=rng.standard_normal(dim), h0=rng.standard_normal((Bt, dim, N)),
                dl=rng.standard_normal((Bt, dim, N)))


@pytest.mark.parametrize("tch", TIME_CHUNKS, ids=TIME_IDS)
def test_selective_scan(rng, tch):
    p = _selective_inputs(rng)
    ch = (1, (1, 3), tch)    # channel chunks (1, 3) are widened to whole groups of C

    def d(v):
        return lazy(v, ch) if v.ndim == 3 else lazy(v, (1, 2, 3, tch))

    kw = dict(D=p["D"], delta_bias=p["delta_bias"], delta_softplus=True,
              initial_state=p["h0"])
    y, h = iirssm.selective_scan(d(p["u"]), d(p["delta"]), p["A"], lazy(p["B"], (1, 3, tch)),
                                 d(p["C"]), z=d(p["z"]), return_last_state=True, **kw)
    y0, h0 = iirssm.selective_scan(p["u"], p["delta"], p["A"], p["B"], p["C"], z=p["z"],
                                   return_last_state=True, **kw)
    assert y.chunks[1] == (2, 2)
    assert_close(y.compute(), y0)
    assert_close(h.compute(), h0)


@pytest.mark.parametrize("tch", [(L,), (7, 1, 20, 13, 19)], ids=["whole", "uneven"])
def test_selective_scan_grad(rng, tch):
    p = _selective_inputs(rng)
    Binv = rng.standard_normal((4, 3))
    kw = dict(D=p["D"], delta_bias=p["delta_bias"], delta_softplus=True)
    for B, state in ((p["B"], True), (Binv, False)):
        extra = dict(initial_state=p["h0"], dlast_state=p["dl"]) if state else {}
        g = iirssm.selective_scan_grad(
            lazy(p["dout"], (1, 2, tch)), lazy(p["u"], (1, 2, tch)),
            lazy(p["delta"], (1, 2, tch)), p["A"],
            lazy(B, (1, 3, tch)) if B.ndim == 3 else B, lazy(p["C"], (1, 2, 3, tch)),
            z=lazy(p["z"], (1, 2, tch)), **kw, **extra)
        g0 = iirssm.selective_scan_grad(p["dout"], p["u"], p["delta"], p["A"], B, p["C"],
                                        z=p["z"], **kw, **extra)
        got = dask.compute(*g)
        for name, a, b in zip(g0._fields, got, g0):
            if b is None:
                assert a is None, name
            else:
                assert np.shape(a) == np.shape(b), name
                assert_close(a, b)


# -------------------------------------------------------------- laziness, errors, memory

class _NoCompute:
    calls = 0

    def __call__(self, *args, **kwargs):
        type(self).calls += 1
        raise AssertionError("the graph was computed while it was being built")


def test_graph_construction_computes_nothing(rng):
    x = signal(rng)
    xd = lazy(x, (1, 13))
    t = da.from_array(np.cumsum(rng.exponential(1.0, L)), chunks=9)
    sos = scipy.signal.butter(4, 0.2, output="sos")
    b, a = scipy.signal.butter(2, 0.2)
    ssm = iirssm.DiagonalSSM.from_sos(sos)
    p = _selective_inputs(rng, Bt=1)
    sel = [lazy(p[k], (1, 2, 13)) for k in ("u", "delta")]
    with dask.config.set(scheduler=_NoCompute()):
        out = [iirssm.linear_recurrence(0.9, xd, return_zf=True),
               iirssm.ema(xd, halflife=2.0, times=t, adjust=True, return_zf=True),
               iirssm.lfilter(b, a, xd, zi=np.zeros((3, 2))), iirssm.sosfilt(sos, xd),
               iirssm.filtfilt(b, a, xd), iirssm.sosfiltfilt(sos, xd),
               ssm.filter(xd, return_zf=True),
               iirssm.selective_scan(*sel, p["A"], p["B"], p["C"], return_last_state=True),
               iirssm.selective_scan_grad(lazy(p["dout"], (1, 2, 13)), *sel, p["A"], p["B"],
                                          p["C"])]
    assert _NoCompute.calls == 0
    flat = [v for o in out for v in (o if isinstance(o, tuple) else (o,))]
    flat = [v for v in flat if isinstance(v, da.Array)]
    assert len(flat) >= 14


def test_out_and_pandas_refused(rng):
    x = da.from_array(signal(rng), chunks=(3, 10))
    with pytest.raises(ValueError, match="out= is not supported for dask"):
        iirssm.ema(x, alpha=0.5, out=np.empty((3, L)))
    with pytest.raises(ValueError, match="out= is not supported for dask"):
        iirssm.linear_recurrence(0.5, x, out=np.empty((3, L)))
    pd = pytest.importorskip("pandas")
    with pytest.raises(TypeError, match="pandas"):
        iirssm.linear_recurrence(pd.Series(np.ones(L)), x)
    with pytest.raises(ValueError, match="zi"):
        iirssm.linear_recurrence(0.5, x, zi=np.ones((2, 1)))
    with pytest.raises(ValueError, match="alpha"):
        iirssm.ema(x, alpha=1.5)


_ALIVE = [0, 0, 0]      # chunks alive now, most alive at once, chunks read


def _gone():
    _ALIVE[0] -= 1


class _Source:
    """An array-like store that counts the chunks read from it and still alive."""

    shape, dtype, ndim = (2, 3000), np.dtype(np.float64), 2

    def __getitem__(self, idx):
        import weakref
        n = len(range(*idx[1].indices(self.shape[1])))
        block = np.ones((2, n))
        if n:
            _ALIVE[0] += 1
            _ALIVE[1] = max(_ALIVE[:2])
            _ALIVE[2] += 1
            weakref.finalize(block, _gone)
        return block


class _Sink:
    def __setitem__(self, idx, value):
        pass


@pytest.mark.parametrize("op", ["sosfilt", "sosfiltfilt"])
def test_chunks_stream_through_on_the_sync_scheduler(op):
    """A chunk is read, filtered and handed on before the next is read (bounded memory)."""
    _ALIVE[:] = [0, 0, 0]
    x = da.from_array(_Source(), chunks=(2, 100), asarray=False, lock=False)
    sos = scipy.signal.butter(2, 0.1, output="sos")
    y = getattr(iirssm, op)(sos, x)
    da.store(y, _Sink(), lock=False, scheduler="sync")
    # filtfilt reads every chunk twice (forward states, then the backward pass)
    assert _ALIVE[2] >= 30 * (2 if op == "sosfiltfilt" else 1)
    assert _ALIVE[1] <= 3, _ALIVE


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, worker_dashboard_address=None) as c:
        with distributed.Client(c) as client:
            yield client


def test_distributed_local_cluster(rng, cluster):
    x = signal(rng, (4, 200))
    xd = lazy(x, (2, (50, 1, 99, 50)))
    sos = scipy.signal.butter(4, 0.1, output="sos")
    t = np.cumsum(rng.exponential(1.0, 200))
    y1, zf = iirssm.sosfilt(sos, xd, zi=np.zeros((2, 4, 2)))
    y2 = iirssm.ema(xd, halflife=3.0, times=da.from_array(t, chunks=40), adjust=True)
    y3 = iirssm.sosfiltfilt(sos, xd)
    r1, rz, r2, r3 = cluster.compute([y1, zf, y2, y3], sync=True)
    assert_close(r1, scipy.signal.sosfilt(sos, x))
    assert_close(rz, scipy.signal.sosfilt(sos, x, zi=np.zeros((2, 4, 2)))[1])
    assert_close(r2, iirssm.ema(x, halflife=3.0, times=t, adjust=True))
    assert_close(r3, scipy.signal.sosfiltfilt(sos, x))
