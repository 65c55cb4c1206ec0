"""GPU tests of the CUDA backend (marked ``gpu``; skipped without a CUDA device).

They run on a real GPU through ``gpu/run.sh`` (``pytest -m gpu``); the wider
sweep and the benchmarks are in ``gpu/sweep.py``.
"""

import numpy as np
import pytest

from conftest import assert_close


def _device_count():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no CuPy, no driver or no device
        return 0


pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(_device_count() == 0, reason="needs a CUDA GPU and CuPy")]


@pytest.fixture
def cp():
    import cupy
    return cupy


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("L", [1, 33, 2049, 100000])
def test_linear_recurrence(cp, rng, dtype, L):
    import iirssm
    a = rng.uniform(0.5, 0.99, (3, L)).astype(dtype)
    b = rng.standard_normal((3, L)).astype(dtype)
    y, zf = iirssm.linear_recurrence(cp.asarray(a), cp.asarray(b), zi=cp.ones((3, 1), dtype),
                                     return_zf=True)
    assert isinstance(y, cp.ndarray) and y.dtype == dtype
    ry, rzf = iirssm.linear_recurrence(a, b, zi=np.ones((3, 1), dtype), return_zf=True)
    assert_close(cp.asnumpy(y), ry, dtype)
    assert_close(cp.asnumpy(zf), rzf, dtype, scale=np.abs(ry).max())


def test_split_path_and_reverse(cp, rng):
    import iirssm
    a = rng.uniform(0.9, 0.9999, (1, 2**21)).astype(np.float32)
    b = rng.standard_normal((1, 2**21)).astype(np.float32)
    for rev in (False, True):
        y = iirssm.linear_recurrence(cp.asarray(a), cp.asarray(b), reverse=rev)
        assert_close(cp.asnumpy(y), iirssm.linear_recurrence(a, b, reverse=rev), np.float32)


def test_ema_and_filters(cp, rng):
    import scipy.signal
    import iirssm
    from iirssm._ssm import DiagonalSSM
    x = rng.standard_normal((4, 5000)).astype(np.float32)
    xg = cp.asarray(x)
    assert_close(cp.asnumpy(iirssm.ema(xg, alpha=0.1, adjust=True)),
                 iirssm.ema(x, alpha=0.1, adjust=True), np.float32)
    b, a = scipy.signal.butter(4, 0.2)
    assert_close(cp.asnumpy(iirssm.lfilter(b, a, xg)), iirssm.lfilter(b, a, x), np.float32,
                 rtol=1e-4, atol=1e-4)
    sos = scipy.signal.butter(6, 0.1, output="sos")
    assert_close(cp.asnumpy(iirssm.sosfilt(sos, xg)), iirssm.sosfilt(sos, x), np.float32,
                 rtol=1e-4, atol=1e-4)
    s = DiagonalSSM.from_zpk(*scipy.signal.butter(4, 0.2, output="zpk"))
    assert_close(cp.asnumpy(s.filter(xg)), s.filter(x), np.float32, rtol=1e-4, atol=1e-4)


def test_host_signal_with_device_coefficient_is_refused(cp):
    import iirssm
    with pytest.raises(TypeError, match="cupy.asarray"):
        iirssm.linear_recurrence(cp.asarray(np.float32(0.5)), np.ones(10, np.float32))
