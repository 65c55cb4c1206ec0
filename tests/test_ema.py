"""ema against pandas ewm(...).mean(), the reference loops and the textbook formula."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import iirssm
from iirssm import _reference
from conftest import assert_close

pd = pytest.importorskip("pandas")

# NaN patterns that exercise every branch of pandas' state machine.
PATTERNS = {
    "none": [],
    "interior": [3, 4, 5, 11],
    "leading": [0, 1, 2],
    "trailing": [26, 27, 28, 29],
    "sparse": [1, 3, 5, 7, 9, 20],
}
DECAYS = [dict(alpha=0.1), dict(alpha=0.77), dict(com=1.0), dict(alpha=0.5), dict(span=7.5),
          dict(halflife=2.5), dict(com=0.0)]


def _signal(rng, pattern, n=30):
    x = rng.standard_normal(n) * 3 + 1
    x[PATTERNS[pattern]] = np.nan
    return x


@pytest.mark.parametrize("decay", DECAYS, ids=lambda d: "-".join(f"{k}{v}" for k, v in d.items()))
@pytest.mark.parametrize("adjust", [False, True])
@pytest.mark.parametrize("ignore_na", [False, True])
@pytest.mark.parametrize("min_periods", [0, 4])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_matches_pandas(rng, decay, adjust, ignore_na, min_periods, pattern):
    x = _signal(rng, pattern)
    ref = pd.Series(x).ewm(**decay, adjust=adjust, ignore_na=ignore_na,
                           min_periods=min_periods).mean().to_numpy()
    y = iirssm.ema(x, **decay, adjust=adjust, ignore_na=ignore_na, min_periods=min_periods)
    assert_close(y, ref, np.float64)


def _times(rng, n=30):
    gaps = rng.choice([1, 1, 2, 5, 17, 60], size=n).astype("timedelta64[m]")
    gaps[3] = np.timedelta64(0, "m")  # two samples at the same time
    return np.datetime64("2026-01-01T00:00", "ns") + np.cumsum(gaps).astype("timedelta64[ns]")


@pytest.mark.parametrize("adjust", [False, True])
@pytest.mark.parametrize("ignore_na", [False, True])
@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("halflife", ["7min", np.timedelta64(7, "m"), pd.Timedelta(minutes=7)],
                         ids=["str", "np", "pd"])
def test_times_matches_pandas(rng, adjust, ignore_na, pattern, halflife):
    x = _signal(rng, pattern)
    t = _times(rng)
    ref = pd.Series(x).ewm(halflife=halflife, times=t, adjust=adjust,
                           ignore_na=ignore_na).mean().to_numpy()
    y = iirssm.ema(x, halflife=halflife, times=t, adjust=adjust, ignore_na=ignore_na)
    assert_close(y, ref, np.float64)
    # the same with a DatetimeIndex and with plain numbers (minutes)
    y_idx = iirssm.ema(x, halflife=halflife, times=pd.DatetimeIndex(t), adjust=adjust,
                       ignore_na=ignore_na)
    assert_close(y_idx, ref, np.float64)
    minutes = (t - t[0]) / np.timedelta64(1, "m")
    y_num = iirssm.ema(x, halflife=7.0, times=minutes, adjust=adjust, ignore_na=ignore_na)
    assert_close(y_num, ref, np.float64)


@pytest.mark.parametrize("decay", [dict(alpha=0.3), dict(com=2.0), dict(span=4.0)])
def test_times_with_other_decay_adjust_true(rng, decay):
    # pandas allows com/span/alpha together with times and halflife when adjust=True.
    x = _signal(rng, "interior")
    t = _times(rng)
    ref = pd.Series(x).ewm(**decay, halflife="3min", times=t).mean().to_numpy()
    y = iirssm.ema(x, **decay, halflife="3min", times=t, adjust=True)
    assert_close(y, ref, np.float64)


def test_halflife_truncated_to_times_resolution(rng):
    x = rng.standard_normal(20)
    t = np.datetime64("2026-01-01", "s") + np.arange(0, 40, 2).astype("timedelta64[s]")
    ref = pd.Series(x).ewm(halflife=pd.Timedelta(milliseconds=2500), times=t).mean().to_numpy()
    y = iirssm.ema(x, halflife=np.timedelta64(2500, "ms"), times=t, adjust=True)
    assert_close(y, ref, np.float64)


def test_tz_aware_index(rng):
    x = rng.standard_normal(30)
    idx = pd.DatetimeIndex(_times(rng)).tz_localize("Europe/Paris")
    s = pd.Series(x, index=idx)
    ref = s.ewm(halflife="10min", times=idx).mean()
    y = iirssm.ema(s, halflife="10min", times=idx, adjust=True)
    pd.testing.assert_series_equal(y, ref, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("adjust", [False, True])
def test_dataframe_in_dataframe_out(rng, adjust):
    df = pd.DataFrame(rng.standard_normal((40, 3)), columns=["a", "b", "c"],
                      index=pd.date_range("2026-01-01", periods=40, freq="h"))
    df.iloc[5:8, 1] = np.nan
    ref = df.ewm(alpha=0.2, adjust=adjust).mean()
    y = iirssm.ema(df, alpha=0.2, adjust=adjust)
    pd.testing.assert_frame_equal(y, ref, rtol=1e-11, atol=1e-12)
    ref_t = df.ewm(halflife="3h", times=df.index, adjust=adjust).mean()
    y_t = iirssm.ema(df, halflife="3h", times=df.index, adjust=adjust)
    pd.testing.assert_frame_equal(y_t, ref_t, rtol=1e-11, atol=1e-12)
    ys = iirssm.ema(df["b"], alpha=0.2, adjust=adjust)
    pd.testing.assert_series_equal(ys, ref["b"], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("shape,axis", [((7, 50), -1), ((50, 9), 0), ((2, 50, 3), 1)])
@pytest.mark.parametrize("with_nan", [False, True])
@pytest.mark.parametrize("adjust", [False, True])
def test_nd_arrays_match_pandas_per_signal(rng, shape, axis, with_nan, adjust):
    x = rng.standard_normal(shape)
    if with_nan:
        x[x > 1.2] = np.nan
    y = iirssm.ema(x, span=5, adjust=adjust, axis=axis)
    xm, ym = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    for idx in np.ndindex(*xm.shape[:-1]):
        ref = pd.Series(xm[idx]).ewm(span=5, adjust=adjust).mean().to_numpy()
        assert_close(ym[idx], ref, np.float64)


@pytest.mark.parametrize("adjust", [False, True])
@pytest.mark.parametrize("with_nan", [False, True])
def test_per_channel_alpha(rng, adjust, with_nan):
    x = rng.standard_normal((4, 60))
    if with_nan:
        x[:, 10:13] = np.nan
    alpha = np.array([[0.05], [0.3], [0.5], [1.0]])
    y = iirssm.ema(x, alpha, adjust=adjust)
    for k in range(4):
        ref = pd.Series(x[k]).ewm(alpha=alpha[k, 0], adjust=adjust).mean().to_numpy()
        assert_close(y[k], ref, np.float64)


@pytest.mark.parametrize("adjust", [False, True])
@pytest.mark.parametrize("ignore_na", [False, True])
@pytest.mark.parametrize("with_nan", [False, True])
def test_time_varying_alpha_against_reference(rng, adjust, ignore_na, with_nan):
    x = rng.standard_normal((3, 80))
    if with_nan:
        x[:, 20:25] = np.nan
        x[1, :4] = np.nan
    alpha = rng.uniform(0.01, 1.0, (3, 80))
    alpha[0, 30] = 0.5  # pandas' com == 1 rule applies sample by sample
    y = iirssm.ema(x, alpha, adjust=adjust, ignore_na=ignore_na)
    for k in range(3):
        ref, _ = _reference.ewm_mean(x[k], 1 - alpha[k], alpha[k], adjust, ignore_na)
        assert_close(y[k], ref, np.float64)


def test_constant_alpha_array_equals_scalar(rng):
    x = rng.standard_normal((2, 50))
    x[0, 5:9] = np.nan
    for adjust in (False, True):
        assert_close(iirssm.ema(x, np.full((2, 50), 0.5), adjust=adjust),
                     iirssm.ema(x, 0.5, adjust=adjust), np.float64)


@pytest.mark.parametrize("alpha", [0.02, 0.3, 1.0])
@pytest.mark.parametrize("adjust", [False, True])
def test_textbook_weighted_average(rng, alpha, adjust):
    x = rng.standard_normal(40)
    assert_close(iirssm.ema(x, alpha, adjust=adjust),
                 _reference.ewm_mean_weights(x, alpha, adjust), np.float64)


@pytest.mark.parametrize("adjust", [False, True])
def test_float32_stays_float32(rng, adjust):
    x = rng.standard_normal((3, 500)).astype(np.float32)
    y = iirssm.ema(x, alpha=0.01, adjust=adjust)
    assert y.dtype == np.float32
    ref = pd.DataFrame(x.T.astype(np.float64)).ewm(alpha=0.01, adjust=adjust).mean().to_numpy().T
    assert_close(y, ref, np.float32)


def test_integer_input_gives_float64():
    y = iirssm.ema(np.arange(10), alpha=0.5)
    assert y.dtype == np.float64
    assert_close(y, pd.Series(np.arange(10.0)).ewm(alpha=0.5, adjust=False).mean(), np.float64)


def test_complex_signal_is_filtered_per_component(rng):
    x = rng.standard_normal(50) + 1j * rng.standard_normal(50)
    y = iirssm.ema(x, alpha=0.2, adjust=True)
    assert y.dtype == np.complex128
    assert_close(y.real, iirssm.ema(x.real, alpha=0.2, adjust=True), np.float64)
    assert_close(y.imag, iirssm.ema(x.imag, alpha=0.2, adjust=True), np.float64)


def test_infinities_follow_pandas():
    x = np.array([1.0, np.inf, 2.0, -np.inf, 3.0, 4.0])
    for adjust in (False, True):
        ref = pd.Series(x).ewm(alpha=0.3, adjust=adjust).mean().to_numpy()
        assert_close(iirssm.ema(x, alpha=0.3, adjust=adjust), ref, np.float64)


def test_all_nan_signal():
    y, zf = iirssm.ema(np.full(5, np.nan), alpha=0.3, return_zf=True)
    assert np.isnan(y).all() and np.isnan(zf.mean).all() and zf.count.item() == 0


# ---------------------------------------------------------------- streaming

CHUNK_CASES = list(itertools.product([False, True], [False, True], [0, 3], [False, True]))


@pytest.mark.parametrize("adjust,ignore_na,min_periods,use_times", CHUNK_CASES)
@given(cuts=st.lists(st.integers(1, 59), max_size=4, unique=True), seed=st.integers(0, 2**31))
def test_chunks_with_carried_state_equal_whole(adjust, ignore_na, min_periods, use_times,
                                               cuts, seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((3, 60))
    x[r.random((3, 60)) < 0.15] = np.nan
    kw = dict(adjust=adjust, ignore_na=ignore_na, min_periods=min_periods)
    if use_times:
        t = np.cumsum(r.exponential(1.0, 60))
        kw.update(halflife=2.0)
    else:
        kw.update(alpha=0.3)
    whole, zf_whole = iirssm.ema(x, times=t if use_times else None, return_zf=True, **kw)
    parts, z = [], None
    bounds = [0] + sorted(cuts) + [60]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        y, z = iirssm.ema(x[:, lo:hi], times=t[lo:hi] if use_times else None, zi=z,
                          return_zf=True, **kw)
        parts.append(y)
    assert_close(np.concatenate(parts, axis=1), whole, np.float64)
    for a, b in zip(z[:3], zf_whole[:3]):
        assert_close(a, b, np.float64)


def test_streaming_with_datetime_times(rng):
    x = rng.standard_normal(30)
    t = _times(rng)
    whole = iirssm.ema(x, halflife="5min", times=t, adjust=True)
    y1, z = iirssm.ema(x[:12], halflife="5min", times=t[:12], adjust=True, return_zf=True)
    y2 = iirssm.ema(x[12:], halflife="5min", times=t[12:], adjust=True, zi=z)
    assert_close(np.concatenate([y1, y2]), whole, np.float64)
    assert z.last_time == t[11]


def test_plain_array_zi_is_previous_average():
    x = np.array([1.0, 1.0, 1.0])
    y = iirssm.ema(x, alpha=0.5, zi=np.array([3.0]))
    np.testing.assert_allclose(y, [2.0, 1.5, 1.25])
    y2 = iirssm.ema(np.ones((2, 3)), alpha=0.5, zi=[[3.0], [5.0]])
    np.testing.assert_allclose(y2[:, 0], [2.0, 3.0])


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(alpha=0.0), ValueError, r"alpha must be in \(0, 1\]"),
    (dict(alpha=1.5), ValueError, r"alpha must be in \(0, 1\]"),
    (dict(alpha=np.nan), ValueError, "alpha"),
    (dict(alpha=np.array([[0.5], [-0.1]])), ValueError, "alpha"),
    (dict(com=-1.0), ValueError, "com must be >= 0"),
    (dict(span=0.5), ValueError, "span must be >= 1"),
    (dict(halflife=0.0), ValueError, "halflife must be > 0"),
    (dict(halflife=-2.0), ValueError, "halflife must be > 0"),
    (dict(alpha=0.5, com=1.0), ValueError, "mutually exclusive"),
    (dict(), ValueError, "exactly one"),
    (dict(alpha="0.5"), TypeError, "alpha"),
    (dict(alpha=0.5j), TypeError, "alpha must be real"),
    (dict(alpha=np.ones((2, 3, 1)) * 0.5), ValueError, "does not broadcast"),
    (dict(alpha=0.5, min_periods=-1), ValueError, "min_periods"),
    (dict(alpha=0.5, min_periods=1.5), ValueError, "min_periods"),
    (dict(halflife="1D"), ValueError, "timedelta halflife needs times"),
    (dict(alpha=0.5, zi=np.ones((2, 2))), ValueError, "zi must have shape"),
    (dict(alpha=0.5, axis=3), ValueError, "out of range"),
])
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        iirssm.ema(np.ones((2, 10)), **kwargs)


@pytest.mark.parametrize("times,kwargs,exc,match", [
    (np.arange(9.0), dict(halflife=1.0), ValueError, "length 10"),
    (np.arange(10.0)[::-1], dict(halflife=1.0), ValueError, "non-decreasing"),
    (np.arange(10.0), dict(), ValueError, "needs halflife"),
    (np.arange(10.0), dict(halflife="1D"), ValueError, "plain numbers"),
    (np.arange(10).astype("datetime64[D]"), dict(halflife=2.0), ValueError, "must be a timedelta"),
    (np.arange(10.0), dict(halflife=1.0, alpha=0.5), ValueError, "only halflife"),
    (np.array(["a"] * 10), dict(halflife=1.0), TypeError, "times must be numbers"),
    (np.arange(20.0).reshape(2, 10), dict(halflife=1.0), ValueError, "1-D"),
    (np.r_[np.arange(9.0), np.nan], dict(halflife=1.0), ValueError, "finite"),
    (np.r_[np.arange(9), -1].astype("datetime64[D]").astype("datetime64[ns]").astype(object)
     , dict(halflife=1.0), TypeError, "times"),
])
def test_bad_times(times, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        iirssm.ema(np.ones(10), times=times, **kwargs)


def test_nat_in_times():
    t = np.arange(10).astype("datetime64[D]")
    t[4] = np.datetime64("NaT")
    with pytest.raises(ValueError, match="NaT"):
        iirssm.ema(np.ones(10), halflife=np.timedelta64(1, "D"), times=t)


@pytest.mark.parametrize("x,exc,match", [
    (np.array(["a", "b"]), TypeError, "x must hold"),
    (np.array([1.0, None], dtype=object), TypeError, "x must hold"),
    (np.ones((3, 0)), ValueError, "no samples"),
    (np.float64(1.0), ValueError, "at least one dimension"),
])
def test_bad_signal(x, exc, match):
    with pytest.raises(exc, match=match):
        iirssm.ema(x, alpha=0.5)


def test_times_state_needs_last_time():
    with pytest.raises(ValueError, match="EMAState"):
        iirssm.ema(np.ones(5), halflife=1.0, times=np.arange(5.0), zi=np.zeros(1))
    z = iirssm.EMAState(np.zeros(1), np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="last_time"):
        iirssm.ema(np.ones(5), halflife=1.0, times=np.arange(5.0), zi=z)


def test_inputs_not_modified(rng):
    x = rng.standard_normal((3, 40))
    x[0, 4] = np.nan
    alpha = rng.uniform(0.1, 0.9, (3, 40))
    t = np.cumsum(rng.exponential(1.0, 40))
    copies = [x.copy(), alpha.copy(), t.copy()]
    y = iirssm.ema(x, alpha, adjust=True)
    y2, z = iirssm.ema(x, halflife=1.0, times=t, return_zf=True)
    for orig, cp in zip((x, alpha, t), copies):
        np.testing.assert_array_equal(orig, cp)
    for out in (y, y2, z.mean):
        assert not any(np.shares_memory(out, a) for a in (x, alpha, t))


def test_out_parameter(rng):
    x = rng.standard_normal((3, 40))
    out = np.empty_like(x)
    assert iirssm.ema(x, 0.2, out=out) is out
    assert_close(out, iirssm.ema(x, 0.2), np.float64)
    with pytest.raises(ValueError, match="overlap"):
        iirssm.ema(x, 0.2, out=x)


def test_out_of_range_alpha_names_value_and_index():
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]; got 2\.0 at index \[1, 0\]"):
        iirssm.ema(np.ones((2, 3)), alpha=np.array([[0.5], [2.0]]))
    with pytest.raises(ValueError, match=r"got 2\.0$"):
        iirssm.ema(np.ones(3), alpha=2.0)
