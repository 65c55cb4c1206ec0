"""Backend choice from the input array types (without importing optional packages).

NumPy arrays (and anything ``numpy.asarray`` accepts) run on the Numba CPU
kernels. CuPy and dask arrays are recognised by their type's module; their
backends are not part of this release yet, so they are refused with a clear
error rather than silently pulled to the host.
"""

from __future__ import annotations

__all__ = ["BACKENDS", "check_backend", "array_family"]

BACKENDS = ("numba",)


def array_family(obj) -> str:
    """``"cupy"``, ``"dask"`` or ``"numpy"`` (everything else), from the type's module."""
    mod = type(obj).__module__ or ""
    if mod.startswith("cupy"):
        return "cupy"
    if mod.startswith("dask"):
        return "dask"
    return "numpy"


def check_backend(backend, *arrays) -> str:
    """Validate ``backend=`` and the array types; return the backend to use."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS}; got {backend!r}")
    for arr in arrays:
        fam = array_family(arr)
        if fam != "numpy":
            raise NotImplementedError(
                f"{fam} arrays are not supported yet: iirssm currently runs on NumPy arrays "
                f"(Numba CPU kernels). Convert with {fam}.asnumpy / .compute() first."
                if fam == "cupy" else
                "dask arrays are not supported yet: call .compute() first, or filter chunks "
                "with zi/return_zf to carry the state.")
    return "numba"
