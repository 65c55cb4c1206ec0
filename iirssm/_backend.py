"""Backend choice from the input array types (without importing optional packages).

NumPy arrays (and anything ``numpy.asarray`` accepts) run on the Numba CPU
kernels. A CuPy array among the inputs sends the call to the CUDA backend
(``iirssm._cuda.dispatch``), a dask array to the dask backend (``iirssm.dask``).
Each public function asks :func:`foreign` first::

    impl = foreign(backend, "linear_recurrence", a, b, zi)
    if impl is not None:
        return impl(a, b, axis=axis, ...)

so a backend module implements a public function by defining a function of the
same name and signature (``diagonal_ssm_filter(ssm, u, ...)`` for the method).
The modules are imported only when such an array is seen, so ``import iirssm``
never imports CuPy or dask.
"""

from __future__ import annotations

import importlib

import numpy as np

__all__ = ["BACKENDS", "array_family", "check_backend", "foreign"]

BACKENDS = ("numba", "cupy", "dask")

# The module implementing each non-NumPy backend; imported on first use.
_MODULES = {"cupy": "iirssm._cuda.dispatch", "dask": "iirssm.dask"}
_INSTALL = {"cupy": "pip install 'iirssm[gpu]'", "dask": "pip install 'iirssm[dask]'"}


#: types that are always the NumPy family (``None`` is an argument left out)
_PLAIN = frozenset({np.ndarray, type(None), float, int, complex, bool, list, tuple})


def array_family(obj) -> str:
    """``"cupy"``, ``"dask"`` or ``"numpy"`` (everything else), from the type's module."""
    mod = type(obj).__module__ or ""
    if mod.startswith("cupy"):
        return "cupy"
    if mod.startswith("dask"):
        return "dask"
    return "numpy"


def _families(arrays):
    return {array_family(arr) for arr in arrays} - {"numpy"}


def foreign(backend, op, *arrays):
    """The backend function implementing ``op`` for these arguments, or ``None`` for NumPy.

    ``backend`` is the user's ``backend=`` argument: ``None`` chooses from the
    array types (CuPy or dask when one of ``arrays`` is such an array), a name
    forces that backend (``"numba"`` refuses CuPy and dask arrays rather than
    copying them to the host behind the caller's back).
    """
    if backend is None and all(type(arr) in _PLAIN for arr in arrays):
        return None                             # the common case, without the module lookups
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS}; got {backend!r}")
    fams = _families(arrays)
    if len(fams) > 1:
        raise TypeError(
            f"{op}: got both CuPy and dask arrays; use a dask array of CuPy chunks or "
            "convert one of them explicitly")
    fam = fams.pop() if fams else "numpy"
    if backend is None or backend == fam or (backend == "numba" and fam == "numpy"):
        chosen = fam
    elif backend == "numba":
        raise TypeError(
            f"{op}: backend='numba' runs on NumPy arrays but got a {fam} array; "
            + ("move it to the host with cupy.asnumpy(...) first" if fam == "cupy"
               else "call .compute() first, or leave backend=None to filter it with dask"))
    else:
        chosen = backend
    if chosen in ("numpy", "numba"):
        return None
    return _load(chosen, op)


def _load(name, op):
    try:
        module = importlib.import_module(_MODULES[name])
    except ImportError as exc:
        raise ImportError(
            f"{op}: the {name} backend needs an optional package that is not installed "
            f"({exc}); install it with {_INSTALL[name]}") from exc
    impl = getattr(module, op, None)
    if impl is None:
        raise NotImplementedError(
            f"{op} is not available on the {name} backend yet; convert the input to a "
            "NumPy array to run it on the CPU")
    return impl


def check_backend(backend, *arrays) -> str:
    """For functions without a foreign backend: validate and require NumPy inputs."""
    if backend is None and all(type(arr) in _PLAIN for arr in arrays):
        return "numba"                          # the common case, without the module lookups
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS}; got {backend!r}")
    fams = _families(arrays)
    if fams or backend not in (None, "numba"):
        raise NotImplementedError(
            f"this function runs on NumPy arrays only; got {sorted(fams) or backend}")
    return "numba"
