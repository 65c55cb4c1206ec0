"""The one decorator every CPU kernel uses, with the project's Numba options.

* ``cache=True``: compiled kernels are stored next to the source and reloaded by
  later processes (a cached kernel loads in milliseconds; compiling takes 0.2-0.8 s).
* ``nogil=True``: kernels release the GIL, so Python threads (dask's threaded
  scheduler, for instance) can run them concurrently.
* ``error_model="numpy"``: division by zero gives inf/NaN as in NumPy, with no
  Python-exception checks in inner loops.
* no ``fastmath``: kernels keep IEEE semantics (NaN propagation is documented
  behaviour) and never reassociate. The one exception is opt-in, ``fma=True``
  (:data:`FMA_FLAGS`): LLVM may fuse ``a*b + c`` into one fused multiply-add,
  which rounds once instead of twice. Nothing else is relaxed (no reassociation,
  NaN/inf and signed zeros are kept), and a given compiled kernel is
  deterministic. The selective-scan kernels use it (their polynomial ``exp`` is a
  chain of multiply-adds: about 1.5x faster, ``iirssm/_cpu/selective.py``), and so
  does the IIR cascade (``iirssm/_cpu/iir.py``: about 1.5-2x on one thread).

``parallel=True`` kernels use ``numba.prange``; they respect
``numba.set_num_threads`` / ``NUMBA_NUM_THREADS``.
"""

import types

import numba
from llvmlite import ir
from numba.core import cgutils
from numba.core import types as nbtypes
from numba.extending import intrinsic

__all__ = ["jit", "inline", "kernel", "prange", "prefetch", "LANES", "PARALLEL_MIN_SAMPLES",
           "FMA_FLAGS"]

prange = numba.prange

#: Below this many samples a kernel runs its serial variant: starting the thread
#: pool costs more than the work, and on a loaded machine a parallel region of
#: tiny work can stall for milliseconds waiting for a busy core.
PARALLEL_MIN_SAMPLES = 1 << 16

#: Number of independent recurrences a kernel advances together in one time step.
#: Eight chains hide the latency of the multiply-add (about four cycles) and keep
#: the loop bound by memory rather than by one dependency chain (docs/performance.md).
LANES = 8


#: The only fastmath flag a kernel may opt into (``fma=True``): contraction of
#: ``a*b + c`` into a fused multiply-add. See the module docstring.
FMA_FLAGS = frozenset({"contract"})


def jit(func=None, *, parallel: bool = False, fma: bool = False):
    """``numba.njit`` with the project's options; usable as ``@jit`` or ``@jit(parallel=True)``.

    ``fma=True`` lets LLVM fuse multiply-adds (:data:`FMA_FLAGS`) and nothing else.
    """
    deco = numba.njit(cache=True, nogil=True, parallel=parallel, error_model="numpy",
                      fastmath=set(FMA_FLAGS) if fma else False)
    return deco if func is None else deco(func)


def inline(func):
    """A small helper inlined into its callers at Numba IR level (``inline="always"``).

    LLVM vectorises a loop only if every call in its body is inlined, and its
    own inliner gives up on helpers of a few dozen instructions (a polynomial
    ``exp``); IR inlining is unconditional. The helper has no cache entry of its
    own: it is compiled, with the caller's options, into each cached caller.
    Carries :data:`FMA_FLAGS` (its multiply-adds are fused where the caller's are).
    """
    return numba.njit(inline="always", nogil=True, error_model="numpy",
                      fastmath=set(FMA_FLAGS))(func)


class Kernel:
    """A kernel compiled twice from one source: ``parallel`` (prange over threads) and
    ``serial`` (prange as range). ``pick(n_samples)`` chooses by the size of the work."""

    def __init__(self, func, fma: bool = False):
        self.parallel = jit(_renamed(func, "_parallel"), parallel=True, fma=fma)
        self.serial = jit(_renamed(func, "_serial"), fma=fma)
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


def kernel(func=None, *, fma: bool = False):
    """Decorator: compile ``func`` as a :class:`Kernel` (parallel and serial variants).

    Usable as ``@kernel`` or ``@kernel(fma=True)`` (see :data:`FMA_FLAGS`).
    """
    if func is None:
        return lambda f: Kernel(f, fma=fma)
    return Kernel(func, fma=fma)


@intrinsic
def prefetch(typingctx, addr, write):
    """``prefetch(addr, write)`` in a kernel: a hint (``llvm.prefetch``, ``prefetcht0`` on
    x86) to bring the cache line holding byte address ``addr`` into the cache, for
    writing when ``write`` is true. It never faults, so an address past the end of an
    array is harmless. Kernels that alternate between copying a block of memory and
    computing on it use it to have the next block's memory traffic overlap the
    computation (``iirssm/_cpu/iir.py``)."""
    sig = nbtypes.void(nbtypes.intp, nbtypes.boolean)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        ptrty = ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptrty, i32, i32, i32]),
            "llvm.prefetch.p0")
        ptr = builder.inttoptr(args[0], ptrty)
        # the read/write operand must be a constant: one call per branch
        with builder.if_else(args[1]) as (for_write, for_read):
            with for_write:
                builder.call(fn, [ptr, i32(1), i32(3), i32(1)])
            with for_read:
                builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return sig, codegen
