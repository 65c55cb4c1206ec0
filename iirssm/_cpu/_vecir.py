"""Helpers for kernels' explicit vector code: LLVM IR for vectors of ``width`` lanes.

Used by the Numba intrinsics that emit a kernel's innermost loops as vector IR
(``selective_vec``: the selective scan's state loops; ``iir_vec``: the IIR
cascade's sections). Numba compiles the IR they emit into the calling kernel,
where LLVM optimises it with the rest (the ``alloca`` slots below become
registers).

After editing this file delete ``iirssm/_cpu/__pycache__``: Numba's cache checks
only the cached kernel's own source file (``_jit``'s module docstring).
"""

from llvmlite import binding as llvm
from llvmlite import ir
from numba.core import cgutils, config

__all__ = ["VecIR", "host_vector_bits", "host_vector_registers"]


def _target_features() -> str:
    """The CPU features Numba compiles for: ``NUMBA_CPU_FEATURES`` if set; none beyond
    the baseline when only ``NUMBA_CPU_NAME`` is set (a portable cache); else the
    host's."""
    if config.CPU_FEATURES is not None:
        return config.CPU_FEATURES
    if config.CPU_NAME is not None:
        return ""
    return llvm.get_host_cpu_features().flatten()


def host_vector_bits() -> int:
    """Width of the target's vector registers in bits: 512 (AVX-512), 256 (AVX), else 128."""
    feats = _target_features().split(",")
    if "+avx512f" in feats:
        return 512
    if "+avx" in feats:
        return 256
    return 128


def host_vector_registers() -> int:
    """Number of vector registers: 32 with AVX-512 or on AArch64, else 16."""
    if host_vector_bits() == 512 or llvm.get_process_triple().startswith("aarch64"):
        return 32
    return 16


class VecIR:
    """IR for ``width``-lane vectors of ``fty`` at ``builder``'s position."""

    def __init__(self, context, builder, fty, width):
        self.b = builder
        self.W = width
        self.i64 = ir.IntType(64)
        self.i32 = ir.IntType(32)
        self.el = context.get_value_type(fty)
        self.vty = ir.VectorType(self.el, width)
        self.align = fty.bitwidth // 8
        name = f"v{width}f{fty.bitwidth}"
        mty = ir.VectorType(ir.IntType(1), width)
        pty = self.vty.as_pointer()
        self.fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vty, [self.vty] * 3), f"llvm.fma.{name}")
        self._mload = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vty, [pty, self.i32, mty, self.vty]),
            f"llvm.masked.load.{name}.p0")
        self._mstore = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [self.vty, pty, self.i32, mty]),
            f"llvm.masked.store.{name}.p0")

    def idx(self, v):
        """An integer value as i64."""
        return self.b.sext(v, self.i64) if v.type.width < 64 else v

    def c64(self, x):
        return ir.Constant(self.i64, x)

    def const(self, x):
        return ir.Constant(self.vty, [ir.Constant(self.el, x)] * self.W)

    def ptr(self, arr, off):
        """Vector pointer to element ``off`` (flat, in elements) of a Numba array struct."""
        return self.b.bitcast(self.b.gep(arr.data, [off]), self.vty.as_pointer())

    def load(self, arr, off):
        return self.b.load(self.ptr(arr, off), align=self.align)

    def store(self, v, arr, off):
        self.b.store(v, self.ptr(arr, off), align=self.align)

    def load_at(self, p):
        """Load a vector from the vector pointer ``p``."""
        return self.b.load(p, align=self.align)

    def store_at(self, v, p):
        self.b.store(v, p, align=self.align)

    def mask(self, rem):
        """The lanes ``< rem`` (an i64, any value) as a vector of i1."""
        iota = ir.Constant(ir.VectorType(self.i64, self.W), list(range(self.W)))
        ins = self.b.insert_element(ir.Constant(ir.VectorType(self.i64, self.W), ir.Undefined),
                                    rem, ir.Constant(self.i32, 0))
        rems = self.b.shuffle_vector(
            ins, ir.Constant(ir.VectorType(self.i64, self.W), ir.Undefined),
            ir.Constant(ir.VectorType(self.i32, self.W), [0] * self.W))
        return self.b.icmp_signed("<", iota, rems)

    def masked_load_at(self, p, mask):
        """Load the lanes of ``mask`` from ``p`` (the others are 0.0, and not read)."""
        return self.b.call(self._mload, [p, ir.Constant(self.i32, self.align), mask,
                                         self.const(0.0)])

    def masked_store_at(self, v, p, mask):
        """Store the lanes of ``mask`` at ``p`` (the others are left alone)."""
        self.b.call(self._mstore, [v, p, ir.Constant(self.i32, self.align), mask])

    def splat(self, x):
        v = self.b.insert_element(ir.Constant(self.vty, ir.Undefined), x,
                                  ir.Constant(self.i32, 0))
        return self.b.shuffle_vector(v, ir.Constant(self.vty, ir.Undefined),
                                     ir.Constant(ir.VectorType(self.i32, self.W), [0] * self.W))

    def call_fma(self, a, b, c):
        return self.b.call(self.fma, [a, b, c])
