"""The ``iirssm info`` command: versions, threads and backends of this installation.

Optional packages are looked up with :mod:`importlib.metadata` and never
imported, except CuPy when it is installed, to ask whether a device is visible.
Every probe is guarded: the report never raises.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

__all__ = ["report"]

#: (import name, distribution name) of the optional packages iirssm can work with.
OPTIONAL = (
    ("pandas", "pandas"),
    ("matplotlib", "matplotlib"),
    ("sklearn", "scikit-learn"),
    ("dask", "dask"),
    ("cupy", "cupy"),
)


def _distributions() -> dict[str, list[str]]:
    try:
        return metadata.packages_distributions()
    except Exception:  # noqa: BLE001  # a broken installation must not break the report
        return {}


def _installed(module: str, name: str, dists: dict[str, list[str]]) -> str | None:
    """Version of the distribution(s) providing import ``module``, or None if absent."""
    found = []
    for dist in dict.fromkeys(dists.get(module) or [name]):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        found.append(version if dist.lower() == name.lower() else f"{version} ({dist})")
    return ", ".join(found) or None


def _threads() -> list[tuple[str, str]]:
    rows = []
    try:
        import numba

        rows.append(("numba threads", str(numba.get_num_threads())))
        env = os.environ.get("NUMBA_NUM_THREADS")
        env = "not set" if env is None else f"set to {env!r}"
        rows.append(("NUMBA_NUM_THREADS",
                     f"{numba.config.NUMBA_NUM_THREADS} ({env} in the environment)"))
        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel region has run yet
            layer = "not initialised"
        rows.append(("threading layer", f"{layer} (requested: {numba.config.THREADING_LAYER})"))
    except Exception as exc:  # noqa: BLE001  # report, never crash
        rows.append(("numba threads", f"unknown ({type(exc).__name__}: {exc})"))
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every platform
        usable = None
    cpus = f"{os.cpu_count()}" + (f" ({usable} usable by this process)" if usable else "")
    rows.append(("CPUs", cpus))
    return rows


def _gpu(cupy_version: str | None) -> str:
    if cupy_version is None:
        return "no (cupy is not installed; `pip install iirssm[gpu]`)"
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            return "no (cupy is installed, but no CUDA device is visible)"
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        return f"yes ({count} device{'s' if count > 1 else ''}; device 0: {name})"
    except Exception as exc:  # noqa: BLE001  # a broken CUDA setup must not crash the report
        return f"no (cupy is installed, but no CUDA device is usable: {type(exc).__name__}: {exc})"


def report() -> list[str]:
    """Describe this installation of iirssm.

    Returns
    -------
    list of str
        The lines of the report: versions of iirssm, Python, NumPy, SciPy and
        Numba, the optional packages found (not imported), Numba's threads and
        threading layer, the CPU count and the available backends.
    """
    import numba
    import numpy
    import scipy

    import iirssm

    dists = _distributions()
    optional = {name: _installed(module, name, dists) for module, name in OPTIONAL}
    width = 22

    lines = [
        f"{'iirssm':<{width}}{iirssm.__version__}",
        (f"{'Python':<{width}}{platform.python_version()} "
         f"({platform.python_implementation()}, {platform.platform()})"),
        f"{'numpy':<{width}}{numpy.__version__}",
        f"{'scipy':<{width}}{scipy.__version__}",
        f"{'numba':<{width}}{numba.__version__}",
        "",
        "optional packages",
    ]
    lines += [f"  {name:<{width - 2}}{version or 'not installed'}"
              for name, version in optional.items()]
    lines += ["", "threads"]
    lines += [f"  {name:<{width - 2}}{value}" for name, value in _threads()]
    lines += [
        "",
        "backends",
        f"  {'numba CPU':<{width - 2}}yes",
        f"  {'CuPy GPU':<{width - 2}}{_gpu(optional['cupy'])}",
    ]
    return lines
