"""Backend choice from array types: NumPy runs here, foreign arrays go to their backend."""

import numpy as np
import pytest

import iirssm
from iirssm import _backend


def _fake(module):
    """An object whose type claims to come from ``module`` (no CuPy or dask needed)."""
    return type("FakeArray", (), {"__module__": module})()


def test_family_from_type_module():
    assert _backend.array_family(np.zeros(3)) == "numpy"
    assert _backend.array_family([1.0]) == "numpy"
    assert _backend.array_family(_fake("cupy._core.core")) == "cupy"
    assert _backend.array_family(_fake("dask.array.core")) == "dask"


def test_numpy_inputs_stay_on_numba():
    assert _backend.foreign(None, "lfilter", np.ones(3), [1.0], 2.0) is None
    assert _backend.foreign("numba", "lfilter", np.ones(3)) is None


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="backend must be None or one of"):
        _backend.foreign("opencl", "ema", np.ones(3))


def test_mixed_cupy_and_dask_rejected():
    with pytest.raises(TypeError, match="both CuPy and dask"):
        _backend.foreign(None, "ema", _fake("cupy"), _fake("dask.array"))


def test_forcing_numba_on_foreign_arrays_refuses_the_hidden_copy():
    with pytest.raises(TypeError, match="cupy.asnumpy"):
        _backend.foreign("numba", "ema", _fake("cupy"))
    with pytest.raises(TypeError, match=r"\.compute\(\)"):
        _backend.foreign("numba", "ema", _fake("dask.array"))


def test_foreign_backend_function_is_called(monkeypatch):
    import types, sys
    fake = types.ModuleType("fake_backend")
    seen = {}

    def linear_recurrence(a, b, **kw):
        seen.update(kw, a=a, b=b)
        return "from the fake backend"

    fake.linear_recurrence = linear_recurrence
    monkeypatch.setitem(sys.modules, "fake_backend", fake)
    monkeypatch.setitem(_backend._MODULES, "dask", "fake_backend")
    b = _fake("dask.array.core")
    assert iirssm.linear_recurrence(0.5, b, axis=0, return_zf=True) == "from the fake backend"
    assert seen["a"] == 0.5 and seen["b"] is b and seen["axis"] == 0 and seen["return_zf"]


def test_missing_op_on_backend_is_not_implemented(monkeypatch):
    import types, sys
    monkeypatch.setitem(sys.modules, "fake_backend", types.ModuleType("fake_backend"))
    monkeypatch.setitem(_backend._MODULES, "cupy", "fake_backend")
    with pytest.raises(NotImplementedError, match="selective_scan is not available on the cupy"):
        _backend.foreign(None, "selective_scan", _fake("cupy"))


def test_missing_backend_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(_backend._MODULES, "cupy", "iirssm_no_such_module")
    with pytest.raises(ImportError, match=r"iirssm\[gpu\]"):
        _backend.foreign(None, "ema", _fake("cupy"))


def test_import_iirssm_imports_no_backend_package():
    import subprocess, sys
    code = ("import sys, iirssm; bad = [m for m in ('cupy', 'dask', 'sklearn', 'iirssm._cuda', "
            "'iirssm.dask', 'iirssm.sklearn') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
