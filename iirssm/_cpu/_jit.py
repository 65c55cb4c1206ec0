"""The one decorator every CPU kernel uses, with the project's Numba options.

* ``cache=True``: compiled kernels are stored next to the source and reloaded by
  later processes (a cached kernel loads in milliseconds; compiling one takes
  from about a second to 20-36 s for one section order of the IIR cascade,
  ``docs/conventions.md``). Numba checks only the cached function's own source
  file: after editing a helper of another module that kernels compile in (the
  intrinsics and ``transpose_blocks`` here, ``selective_vec``'s vector code),
  delete ``iirssm/_cpu/__pycache__``, or the kernels of the other modules keep
  the old machine code.
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

Entry points (the kernels the front ends call) declare the arguments they write
(``writes=``); every other array argument reaches them as a read-only view
(:class:`ReadOnlyInputs`). Numba compiles one machine-code version per argument
type, and whether an array is writable is part of its type: a kernel given
sometimes a writable and sometimes a read-only input (a broadcast view, a
read-only memory map, scikit-learn's checks) was compiled twice, at 30-120 s per
compilation for the largest kernels. With every input read-only there is one
version per dtype and layout, and writing an input is a compile-time error.
"""

import inspect
import types

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.core import types as nbtypes
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array, populate_array

__all__ = ["jit", "inline", "kernel", "prange", "prefetch", "row_view", "row_view3",
           "data_address", "transpose16", "transpose_blocks", "LANES", "PARALLEL_MIN_SAMPLES",
           "FMA_FLAGS", "ReadOnlyInputs"]

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


def jit(func=None, *, parallel: bool = False, fma: bool = False, writes=None):
    """``numba.njit`` with the project's options; usable as ``@jit`` or ``@jit(parallel=True)``.

    ``fma=True`` lets LLVM fuse multiply-adds (:data:`FMA_FLAGS`) and nothing else.
    ``writes``: for an entry point called from Python, the names of the arguments it
    writes; the result is then a :class:`ReadOnlyInputs` (not callable from other
    compiled code). Helpers called from kernels leave it ``None``.
    """
    njit = numba.njit(cache=True, nogil=True, parallel=parallel, error_model="numpy",
                      fastmath=set(FMA_FLAGS) if fma else False)

    def deco(f):
        d = njit(f)
        return d if writes is None else ReadOnlyInputs(d, writes)
    return deco if func is None else deco(func)


def _readonly(a):
    if isinstance(a, np.ndarray) and a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


class ReadOnlyInputs:
    """A compiled entry point whose array arguments, except those named in ``writes``,
    are passed as read-only views (module docstring): one compiled version per
    dtype and layout, not two per writable flag. ``dispatcher`` is the Numba
    dispatcher itself."""

    def __init__(self, dispatcher, writes):
        params = list(inspect.signature(dispatcher.py_func).parameters)
        unknown = sorted(set(writes) - set(params))
        if unknown:
            raise ValueError(f"{dispatcher.py_func.__name__}: writes names unknown "
                             f"arguments {unknown}")
        self.dispatcher = dispatcher
        self._inputs = tuple(i for i, p in enumerate(params) if p not in writes)
        self.__doc__ = dispatcher.__doc__
        self.__name__ = dispatcher.__name__

    def __call__(self, *args):
        args = list(args)
        for i in self._inputs:
            if i < len(args):
                args[i] = _readonly(args[i])
        return self.dispatcher(*args)


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

    def __init__(self, func, fma: bool = False, writes=()):
        self.parallel = jit(_renamed(func, "_parallel"), parallel=True, fma=fma, writes=writes)
        self.serial = jit(_renamed(func, "_serial"), fma=fma, writes=writes)
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


def kernel(func=None, *, fma: bool = False, writes=()):
    """Decorator: compile ``func`` as a :class:`Kernel` (parallel and serial variants).

    Usable as ``@kernel(writes=("out",))`` or ``@kernel(fma=True, writes=...)`` (see
    :data:`FMA_FLAGS`); ``writes`` names the arguments the kernel writes, every other
    array argument is passed read-only (:class:`ReadOnlyInputs`).
    """
    if func is None:
        return lambda f: Kernel(f, fma=fma, writes=writes)
    return Kernel(func, fma=fma, writes=writes)


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


def _row_typer(a, idx):
    if not (isinstance(a, nbtypes.Array) and a.ndim == len(idx) and a.layout == "C"
            and all(isinstance(i, nbtypes.Integer) for i in idx)):
        return None, None
    retty = nbtypes.Array(a.dtype, 1, "C", readonly=not a.mutable)

    def codegen(context, builder, signature, args):
        aty = signature.args[0]
        arr = make_array(aty)(context, builder, args[0])
        ix = [context.cast(builder, v, t, nbtypes.intp)
              for v, t in zip(args[1:], signature.args[1:])]
        shape = cgutils.unpack_tuple(builder, arr.shape, aty.ndim)
        strides = cgutils.unpack_tuple(builder, arr.strides, aty.ndim)
        ptr = cgutils.get_item_pointer2(context, builder, arr.data, shape, strides, "C", ix)
        out = make_array(retty)(context, builder)
        populate_array(out, data=ptr, shape=[builder.sub(shape[-1], ix[-1])],
                       strides=[strides[-1]], itemsize=arr.itemsize, meminfo=None,
                       parent=None)
        return out._getvalue()
    return retty, codegen


@intrinsic
def row_view(typingctx, a, i, j):
    """``a[i, j:]`` of a 2-D C-contiguous array as a 1-D C-contiguous array, computed
    by pointer arithmetic alone; :func:`row_view3` for 3-D.

    A slice also wraps a negative row index around, normalises its bounds (negative
    values, clamping to the shape) and takes a reference to the owner of the memory
    (which Numba's reference-count pruning usually removes again). Taken once per
    sample in a kernel's step, that bookkeeping showed: the IIR cascade's time-major
    step, two rows per sample, ran 8-17 % faster with these views
    (``docs/performance.md``). The indices are not checked (give ``0 <= i <
    a.shape[0]`` and ``0 <= j <= a.shape[1]``), the view holds no reference (its
    meminfo is NULL: the caller keeps ``a`` alive while it uses the view, as a kernel
    does with its arguments), and a view of a read-only array is read-only."""
    retty, codegen = _row_typer(a, (i, j))
    return (retty(a, i, j), codegen) if retty is not None else None


@intrinsic
def row_view3(typingctx, a, i, k, j):
    """``a[i, k, j:]`` of a 3-D C-contiguous array, holding no reference (:func:`row_view`)."""
    retty, codegen = _row_typer(a, (i, k, j))
    return (retty(a, i, k, j), codegen) if retty is not None else None


@intrinsic
def data_address(typingctx, a):
    """The address of ``a``'s data as an ``intp``: what ``np.intp(a.ctypes.data)``
    gives, without building the ``ctypes`` object (and its reference to ``a``)."""
    if not isinstance(a, nbtypes.Array):
        return None

    def codegen(context, builder, signature, args):
        arr = make_array(signature.args[0])(context, builder, args[0])
        return builder.ptrtoint(arr.data, context.get_value_type(nbtypes.intp))
    return nbtypes.intp(a), codegen


@intrinsic
def transpose16(typingctx, src, so, ss, dst, do, ds):
    """Transpose a 16 x 16 block: ``dst[do + j·ds + i] = src[so + i·ss + j]``, i, j < 16.

    ``src`` and ``dst`` are C-contiguous arrays of one real dtype, the offsets and
    strides flat element counts; the caller guarantees the block lies inside both
    (no bounds check). Sixteen 16-wide loads, four stages of two-source shuffles
    (stage ``b`` swaps bit ``b`` of the row index with bit ``b`` of the column
    index), sixteen 16-wide stores: where a loop would move one element per load
    and store, or LLVM would read a column by gathers (AVX-512).
    """
    if not (isinstance(src, nbtypes.Array) and isinstance(dst, nbtypes.Array)
            and src.layout == "C" and dst.layout == "C" and dst.mutable
            and isinstance(src.dtype, nbtypes.Float) and src.dtype == dst.dtype
            and all(isinstance(x, nbtypes.Integer) for x in (so, ss, do, ds))):
        return None
    fty = src.dtype

    def codegen(context, builder, signature, args):
        sa = make_array(signature.args[0])(context, builder, args[0])
        da = make_array(signature.args[3])(context, builder, args[3])
        i64 = ir.IntType(64)
        vty = ir.VectorType(context.get_value_type(fty), 16)
        align = fty.bitwidth // 8

        def row(base, off, stride, i):
            k = builder.add(builder.sext(off, i64) if off.type.width < 64 else off,
                            builder.mul(builder.sext(stride, i64)
                                        if stride.type.width < 64 else stride,
                                        ir.Constant(i64, i)))
            return builder.bitcast(builder.gep(base, [k]), ir.PointerType(vty))

        r = [builder.load(row(sa.data, args[1], args[2], i), align=align) for i in range(16)]
        i32 = ir.IntType(32)
        for bit in (8, 4, 2, 1):
            lo = [c if not c & bit else 16 + c - bit for c in range(16)]
            hi = [c + bit if not c & bit else 16 + c for c in range(16)]
            for i in range(16):
                if i & bit:
                    continue
                k = i + bit
                a, c = r[i], r[k]
                r[i] = builder.shuffle_vector(a, c, ir.Constant(ir.VectorType(i32, 16), lo))
                r[k] = builder.shuffle_vector(a, c, ir.Constant(ir.VectorType(i32, 16), hi))
        for j in range(16):
            builder.store(r[j], row(da.data, args[4], args[5], j), align=align)
        return context.get_dummy_value()

    return nbtypes.none(src, so, ss, dst, do, ds), codegen


def transpose_blocks(src, so, ss, dst, do, ds, ni, nj):
    """``dst[do + j·ds + i] = src[so + i·ss + j]`` for ``i < ni``, ``j < nj`` (multiples
    of 16) by :func:`transpose16`, if the types allow it (C-contiguous arrays of one
    real dtype, ``dst`` writable); in kernels only. Returns whether it did: False,
    known while compiling, for other types, which then compile to nothing here and
    leave the caller's fallback loop.
    """


@overload(transpose_blocks, jit_options={"nogil": True})
def _ov_transpose_blocks(src, so, ss, dst, do, ds, ni, nj):
    if not (isinstance(src, nbtypes.Array) and isinstance(dst, nbtypes.Array)
            and src.layout == "C" and dst.layout == "C" and dst.mutable
            and isinstance(src.dtype, nbtypes.Float) and src.dtype == dst.dtype):
        return lambda src, so, ss, dst, do, ds, ni, nj: False

    def impl(src, so, ss, dst, do, ds, ni, nj):
        for i0 in range(0, ni, 16):
            for j0 in range(0, nj, 16):
                transpose16(src, so + i0 * ss + j0, ss, dst, do + j0 * ds + i0, ds)
        return True
    return impl
