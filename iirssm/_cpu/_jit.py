"""The one decorator every CPU kernel uses, with the project's Numba options.

* ``cache=True``: compiled kernels are stored next to the source and reloaded by
  later processes (a cached kernel loads in milliseconds; compiling takes 0.2-0.8 s).
* ``nogil=True``: kernels release the GIL, so Python threads (dask's threaded
  scheduler, for instance) can run them concurrently.
* ``error_model="numpy"``: division by zero gives inf/NaN as in NumPy, with no
  Python-exception checks in inner loops.
* no ``fastmath``: kernels must keep IEEE semantics (NaN propagation is part of
  the documented behaviour, and results must not depend on reassociation).

``parallel=True`` kernels use ``numba.prange``; they respect
``numba.set_num_threads`` / ``NUMBA_NUM_THREADS``.
"""

import types

import numba

__all__ = ["jit", "kernel", "prange", "LANES", "PARALLEL_MIN_SAMPLES"]

prange = numba.prange

#: Below this many samples a kernel runs its serial variant: starting the thread
#: pool costs more than the work, and on a loaded machine a parallel region of
#: tiny work can stall for milliseconds waiting for a busy core.
PARALLEL_MIN_SAMPLES = 1 << 16

#: Number of independent recurrences a kernel advances together in one time step.
#: Eight chains hide the latency of the multiply-add (about four cycles) and keep
#: the loop bound by memory rather than by one dependency chain (docs/performance.md).
LANES = 8


def jit(func=None, *, parallel: bool = False):
    """``numba.njit`` with the project's options; usable as ``@jit`` or ``@jit(parallel=True)``."""
    deco = numba.njit(cache=True, nogil=True, parallel=parallel, error_model="numpy")
    return deco if func is None else deco(func)


class Kernel:
    """A kernel compiled twice from one source: ``parallel`` (prange over threads) and
    ``serial`` (prange as range). ``pick(n_samples)`` chooses by the size of the work."""

    def __init__(self, func):
        self.parallel = jit(_renamed(func, "_parallel"), parallel=True)
        self.serial = jit(_renamed(func, "_serial"))
        self.__doc__ = func.__doc__
        self.__name__ = func.__name__

    def pick(self, n_samples: int):
        if n_samples < PARALLEL_MIN_SAMPLES or numba.get_num_threads() == 1:
            return self.serial
        return self.parallel


def _renamed(func, suffix):
    # A distinct qualified name gives each variant its own on-disk cache entry.
    f = types.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix,
                           func.__defaults__, func.__closure__)
    f.__qualname__ = func.__qualname__ + suffix
    f.__module__ = func.__module__
    f.__doc__ = func.__doc__
    return f


def kernel(func):
    """Decorator: compile ``func`` as a :class:`Kernel` (parallel and serial variants)."""
    return Kernel(func)
