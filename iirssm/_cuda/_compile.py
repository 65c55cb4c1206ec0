"""Compile machinery of the CUDA kernels: sources, the registry, NVRTC, nvcc, CuPy modules.

Every ``.cu`` source beside this file holds C++ template kernels, fetched
through ``name_expressions``. The launcher modules register the template
instantiations they launch (:func:`register`), so :data:`MODULES` maps each
source to the complete list and the compile test (``tests/test_cuda_compile.py``) can compile every one of them
on a machine without a GPU.

Three ways to compile, none of which needs a GPU except the last:

* :func:`nvrtc_compile`: CuPy's low-level NVRTC binding
  (``cupy_backends.cuda.libs.nvrtc``) to a cubin for one architecture. Used by
  CI; any non-empty compiler log counts as a warning.
* :func:`nvcc_compile`: ``nvcc`` with ``--Werror all-warnings`` and ptxas spill
  warnings as errors, for the register/spill report and the PTX text.
* :func:`get_function`: the CuPy ``RawModule`` function for a launch. A module
  holds one :func:`group` of instantiations (by default just the one asked for,
  so a first call compiles only what it launches), is compiled lazily on first
  use and memoised per (device, source, group, options); CuPy keeps its own
  on-disk cache (``CUPY_CACHE_DIR``).

Local ``#include "x.cuh"`` lines are expanded into the source text before it is
handed to a compiler (:func:`source_text`), so CuPy's cache key (the source
text) changes whenever a header does. Nothing here imports CuPy at import time.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field

__all__ = ["MODULES", "register", "load_all", "source_path", "source_text", "expr",
           "CompileResult", "nvrtc_compile", "nvrtc_available", "NvccResult", "nvcc_available",
           "nvcc_compile", "get_function", "include_options", "DEFAULT_OPTIONS", "LAUNCHERS",
           "GROUPING", "group", "groups", "first_template_argument"]

_HERE = pathlib.Path(__file__).resolve().parent

#: source file -> name expressions of its kernels, filled by the launchers' ``register``.
MODULES: dict[str, list[str]] = {}

#: launcher modules that register kernels (imported by :func:`load_all`); a missing
#: optional one (``_selective``, built separately) is skipped.
LAUNCHERS = ("iirssm._cuda._rec", "iirssm._cuda._filters", "iirssm._cuda._selective")

#: options of every compile (CuPy's NVRTC path adds ``-ftz=true`` itself).
DEFAULT_OPTIONS = ("-std=c++17",)

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.M)
_ONCE = re.compile(r"^\s*#\s*pragma\s+once\s*$", re.M)


def register(source: str, expressions) -> None:
    """Add template instantiations (exact ``get_function`` strings) for ``source``."""
    lst = MODULES.setdefault(source, [])
    for e in expressions:
        if e not in lst:
            lst.append(e)


def load_all() -> dict[str, list[str]]:
    """Import every launcher module so that :data:`MODULES` is complete; return it."""
    for name in LAUNCHERS:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return MODULES


def expr(kernel: str, *targs) -> str:
    """The name expression ``kernel<a, b, ...>`` (bools as ``true``/``false``)."""
    def one(t):
        if isinstance(t, bool):
            return "true" if t else "false"
        return str(t)
    return f"{kernel}<{', '.join(one(t) for t in targs)}>"


def source_path(name: str) -> pathlib.Path:
    """Path of a source (``"recurrence.cu"``) or header in ``iirssm/_cuda``."""
    p = _HERE / name
    if not p.is_file():
        raise FileNotFoundError(f"no CUDA source {name!r} in {_HERE}")
    return p


def source_text(name: str) -> str:
    """The source with its local ``#include "..."`` headers expanded (each once)."""
    seen: set[str] = set()

    def expand(fname: str) -> str:
        if fname in seen:
            return ""
        seen.add(fname)
        text = source_path(fname).read_text()
        if fname != name:   # an expanded header: its include guard is not needed
            text = _ONCE.sub("", text)
        return _INCLUDE.sub(lambda m: f"// ---- {m.group(1)}\n" + expand(m.group(1)), text)

    return expand(name)


def include_options() -> tuple:
    """``-I`` options for CuPy's headers (``<cupy/complex.cuh>``) and its bundled CCCL."""
    import cupy  # the headers ship with CuPy; imported only when compiling

    inc = pathlib.Path(cupy.__file__).resolve().parent / "_core" / "include"
    cccl = inc / "cupy" / "_cccl"
    return (f"-I{inc}",) + tuple(f"-I{cccl / d}" for d in ("libcudacxx", "thrust", "cub"))


# ------------------------------------------------------------------------------ NVRTC

@dataclass
class CompileResult:
    """One NVRTC compile: the cubin, the compiler log, and lowered (mangled) names."""

    cubin: bytes
    log: str
    lowered: dict = field(default_factory=dict)


def nvrtc_available() -> bool:
    """True when CuPy's NVRTC binding loads and reports a version (no GPU needed)."""
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception:  # ImportError, or the NVRTC library missing
        return False
    return True


def _arch_num(arch) -> str:
    s = str(arch).lower().replace("sm_", "").replace("compute_", "")
    if not s.isdigit():
        raise ValueError(f"arch must look like 'sm_90' or 90; got {arch!r}")
    return s


def nvrtc_compile(name: str, name_expressions, arch, options=()) -> CompileResult:
    """Compile one source to a cubin for ``arch`` with CuPy's low-level NVRTC binding.

    Uses CuPy's own options (``--device-as-default-execution-space``,
    ``-ftz=true``, C++17) so the result is what :func:`get_function` would build.
    Raises ``RuntimeError`` with the log on a compile error; a successful compile
    with a non-empty ``log`` had warnings (the caller decides; the tests fail).
    """
    from cupy_backends.cuda.libs import nvrtc

    src = source_text(name)
    opts = ([f"-arch=sm_{_arch_num(arch)}", *DEFAULT_OPTIONS, *include_options(),
             "--device-as-default-execution-space", "-ftz=true"] + list(options))
    prog = nvrtc.createProgram(src, name, [], [])
    try:
        for e in name_expressions:
            nvrtc.addNameExpression(prog, e)
        try:
            nvrtc.compileProgram(prog, opts)
        except Exception as exc:
            log = nvrtc.getProgramLog(prog)
            raise RuntimeError(f"NVRTC failed to compile {name} for sm_{_arch_num(arch)}: "
                               f"{exc}\n{log}") from None
        log = nvrtc.getProgramLog(prog).strip().strip("\x00")
        cubin = nvrtc.getCUBIN(prog)
        lowered = {e: nvrtc.getLoweredName(prog, e) for e in name_expressions}
    finally:
        nvrtc.destroyProgram(prog)
    return CompileResult(cubin=bytes(cubin), log=log, lowered=lowered)


# ------------------------------------------------------------------------------- nvcc

@dataclass
class NvccResult:
    """One nvcc compile: per-kernel resources (mangled name -> dict) and the PTX."""

    resources: dict
    ptx: str
    log: str


def nvcc_available() -> bool:
    """True when an ``nvcc`` executable is on the PATH (or in ``$CUDA_HOME/bin``)."""
    return _nvcc() is not None


def _nvcc():
    exe = shutil.which("nvcc")
    if exe is None and os.environ.get("CUDA_HOME"):
        cand = pathlib.Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc"
        exe = str(cand) if cand.is_file() else None
    return exe


def instantiation_unit(name: str, instantiations) -> str:
    """An nvcc translation unit: the source plus references that instantiate each template."""
    refs = ",\n    ".join(f"(const void*)&{e}" for e in instantiations)
    return (source_text(name)
            + "\n// ---- explicit instantiations (iirssm._cuda._compile.nvcc_compile)\n"
            + f"const void* iirssm_instantiations[] = {{\n    {refs}\n}};\n")


_RES_FUNC = re.compile(r"^\s*Function\s+(\S+?):\s*$", re.M)
_RES_KV = re.compile(r"([A-Z_]+(?:\[\d+\])?):(\d+)")
_PTXAS_FUNC = re.compile(r"Compiling entry function '([^']+)'|Function properties for (\S+)")
_PTXAS_REGS = re.compile(r"Used (\d+) registers")
_PTXAS_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def _parse_resources(text: str) -> dict:
    """Registers, spills, shared and local memory per kernel from nvcc/ptxas output."""
    res: dict = {}
    # `--resource-usage` (cuobjdump-style) block: "Function NAME:\n  REG:40 STACK:0 ..."
    blocks = _RES_FUNC.split(text)
    for i in range(1, len(blocks) - 1, 2):
        fname, body = blocks[i], blocks[i + 1].split("\n", 2)
        kv = dict(_RES_KV.findall(" ".join(body[:2])))
        if "REG" in kv:
            d = res.setdefault(fname, {})
            d["registers"] = int(kv["REG"])
            d["stack"] = int(kv.get("STACK", 0))
            d["shared"] = int(kv.get("SHARED", 0))
            d["local"] = int(kv.get("LOCAL", 0))
    # ptxas -v style lines
    current = None
    for line in text.splitlines():
        m = _PTXAS_FUNC.search(line)
        if m:
            current = m.group(1) or m.group(2)
            continue
        if current is None:
            continue
        m = _PTXAS_SPILL.search(line)
        if m:
            d = res.setdefault(current, {})
            d["spill_stores"], d["spill_loads"] = int(m.group(1)), int(m.group(2))
        m = _PTXAS_REGS.search(line)
        if m:
            res.setdefault(current, {})["registers"] = int(m.group(1))
    for d in res.values():
        d.setdefault("spill_stores", 0)
        d.setdefault("spill_loads", 0)
    return res


def nvcc_compile(name: str, instantiations, arch, extra=(), ptx=True) -> NvccResult:
    """Compile with nvcc, warnings and spills as errors; parse resources; return the PTX.

    ``nvcc -std=c++17 -ftz=true -arch=sm_XX -cubin --Werror all-warnings
    -Xptxas -Werror,-warn-spills,-warn-lmem-usage --resource-usage -Xptxas -v``,
    then ``-ptx`` (skipped with ``ptx=False``: ``NvccResult.ptx`` is then empty).
    Raises ``RuntimeError`` with nvcc's output on failure.
    """
    exe = _nvcc()
    if exe is None:
        raise RuntimeError("nvcc is not available")
    a = _arch_num(arch)
    with tempfile.TemporaryDirectory(prefix="iirssm_nvcc_") as tmp:
        cu = pathlib.Path(tmp) / (pathlib.Path(name).stem + "_inst.cu")
        cu.write_text(instantiation_unit(name, instantiations))
        base = [exe, "-std=c++17", "-ftz=true", f"-arch=sm_{a}", *include_options(), *extra]
        cmd = base + ["-cubin", "--Werror", "all-warnings",
                      "-Xptxas", "-Werror,-warn-spills,-warn-lmem-usage", "-Xptxas", "-v",
                      "--resource-usage", "-o", str(cu.with_suffix(".cubin")), str(cu)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        log = run.stdout + run.stderr
        if run.returncode != 0:
            raise RuntimeError(f"nvcc failed for {name} (sm_{a}):\n{' '.join(cmd)}\n{log}")
        ptx_text = ""
        if ptx:
            ptx_path = cu.with_suffix(".ptx")
            run2 = subprocess.run(base + ["-ptx", "-o", str(ptx_path), str(cu)],
                                  capture_output=True, text=True)
            if run2.returncode != 0:
                raise RuntimeError(f"nvcc -ptx failed for {name} (sm_{a}):\n{run2.stderr}")
            ptx_text = ptx_path.read_text()
    return NvccResult(resources=_parse_resources(log), ptx=ptx_text, log=log)


# ------------------------------------------------------------------------- CuPy modules

#: How instantiations are grouped into CuPy modules (one NVRTC program each):
#: ``"expression"`` (the default: a module holds exactly the instantiation a launch
#: asks for) or ``"dtype"`` (every registered instantiation of the source whose
#: first template argument is the same). See :func:`group`.
GROUPING = "expression"

_lock = threading.Lock()
_modules: dict = {}      # (device, source, group, options) -> cupy.RawModule
_functions: dict = {}    # (device, source, group, options, expression) -> RawKernel


def first_template_argument(expression: str) -> str:
    """``"complex<float>"`` for ``"carry_scan<complex<float>, float>"`` (the kernel's dtype).

    An expression without template arguments is its own key.
    """
    start = expression.find("<")
    if start < 0:
        return expression
    depth = 0
    for i in range(start + 1, len(expression)):
        ch = expression[i]
        if ch == "<":
            depth += 1
        elif ch == ">":
            if depth == 0:
                return expression[start + 1:i].strip()
            depth -= 1
        elif ch == "," and depth == 0:
            return expression[start + 1:i].strip()
    raise ValueError(f"unbalanced template arguments in {expression!r}")


def group(name: str, name_expression: str, grouping: str | None = None) -> tuple:
    """The instantiations compiled together with ``name_expression`` (one ``RawModule``).

    ``grouping`` (default :data:`GROUPING`): ``"expression"`` gives
    ``(name_expression,)``; ``"dtype"`` gives every instantiation registered for
    ``name`` with the same first template argument, in registration order. The
    tuple is the module's ``name_expressions``, which CuPy's on-disk cache key
    includes: it is the same on every call and every run (registration happens at
    import of the launchers), so each group is compiled once per machine.
    """
    exprs = MODULES.get(name)
    if not exprs or name_expression not in exprs:
        raise KeyError(f"{name_expression!r} is not registered for {name}; register it with "
                       "iirssm._cuda._compile.register at import of its launcher")
    grouping = GROUPING if grouping is None else grouping
    if grouping == "expression":
        return (name_expression,)
    if grouping == "dtype":
        key = first_template_argument(name_expression)
        return tuple(e for e in exprs if first_template_argument(e) == key)
    raise ValueError(f"grouping must be 'expression' or 'dtype'; got {grouping!r}")


def groups(name: str, grouping: str | None = None) -> list:
    """Every group (tuple of name expressions) of source ``name``: a partition of
    ``MODULES[name]``, in registration order of each group's first member."""
    out: list = []
    for e in MODULES.get(name, ()):
        g = group(name, e, grouping)
        if g not in out:
            out.append(g)
    return out


def get_function(name: str, name_expression: str, options=()):
    """The CuPy function ``name_expression`` of source ``name`` for the current device.

    Only the instantiations of its :func:`group` are compiled: the ``RawModule``
    is built on the first call for that group and memoised per (device, source,
    group, options), as is the returned function; CuPy compiles the module lazily
    on its first ``get_function`` and caches the cubin on disk
    (``CUPY_CACHE_DIR``, keyed by the source text, options, architecture, NVRTC
    version and the group's name expressions).
    """
    members = group(name, name_expression)      # KeyError before any CuPy/device call
    import cupy

    opts = tuple(DEFAULT_OPTIONS) + tuple(options)
    key = (cupy.cuda.runtime.getDevice(), name, members, opts)
    fkey = key + (name_expression,)
    fn = _functions.get(fkey)
    if fn is not None:
        return fn
    with _lock:
        fn = _functions.get(fkey)
        if fn is None:
            mod = _modules.get(key)
            if mod is None:
                mod = cupy.RawModule(code=source_text(name), options=opts,
                                     name_expressions=list(members))
                _modules[key] = mod
            fn = mod.get_function(name_expression)
            _functions[fkey] = fn
    return fn
