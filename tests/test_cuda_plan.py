"""Launch planning of the CUDA backend (pure Python: runs without a GPU or CuPy)."""

import numpy as np
import pytest

from iirssm._cuda import _plan as P


def test_types_and_tiles():
    assert P.ctype(np.float32) == "float"
    assert P.ctype(np.complex128) == "complex<double>"
    with pytest.raises(TypeError, match="float32, float64, complex64 or complex128"):
        P.ctype(np.int32)
    assert [P.vlen(d) for d in (np.float32, np.float64, np.complex64, np.complex128)] == \
        [4, 2, 2, 1]
    assert [P.tile_size(d) for d in (np.float32, np.float64, np.complex64, np.complex128)] == \
        [2048, 1024, 1024, 256]


def _strides(a):
    return a.shape, a.strides, a.itemsize


@pytest.mark.parametrize("shape,axis", [((5, 7), -1), ((5, 7), 0), ((2, 3, 4), 1),
                                        ((3, 1, 4), -1), ((1, 9), -1), ((9,), 0)])
def test_rows_layout_c_order(shape, axis):
    x = np.zeros(shape, np.float32)
    xm = np.moveaxis(x, axis, -1)
    lay = P.rows_layout(xm.shape, xm.strides, xm.itemsize, -1)
    assert lay.R * lay.L == x.size and lay.moved_shape == xm.shape
    copy_free = xm.strides[-1] == 4 or xm.shape[-1] == 1
    if axis in (-1, len(shape) - 1):
        assert lay.row_stride == lay.L
    elif not copy_free:
        assert lay.row_stride is None


def test_rows_layout_views():
    x = np.zeros((6, 10), np.float64)
    lay = P.rows_layout(*_strides(x[:, 2:9]), -1)            # sliced rows keep stride 10
    assert (lay.R, lay.L, lay.row_stride) == (6, 7, 10)
    lay = P.rows_layout(*_strides(x[::2]), -1)                # every other row
    assert lay.row_stride == 20
    assert P.rows_layout(*_strides(x[:, ::2]), -1).row_stride is None  # strided time
    y = np.zeros((4, 5, 6), np.float32)
    assert P.rows_layout(*_strides(y[:, :3]), -1).row_stride is None   # two row strides
    assert P.rows_layout(*_strides(y.transpose(1, 0, 2)), -1).row_stride is None
    b = np.broadcast_to(np.zeros(6), (4, 6))                   # overlapping rows
    assert P.rows_layout(*_strides(b), -1).row_stride is None
    f = np.asfortranarray(np.zeros((8, 3)))                    # Fortran, axis 0 -> rows
    fm = np.moveaxis(f, 0, -1)
    lay = P.rows_layout(*_strides(fm), -1)
    assert (lay.R, lay.L, lay.row_stride) == (3, 8, 8)


def test_alignment():
    assert P.is_aligned(4096, 16, 4, 4)
    assert not P.is_aligned(4096 + 4, 16, 4, 4)      # misaligned base
    assert not P.is_aligned(4096, 17, 4, 4)          # rows drift off the vector grid
    assert P.is_aligned(4096, 0, 4, 4)               # one shared row
    assert P.is_aligned(4104, 6, 4, 2)               # 8-byte vectors (float2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_split_plan_covers_every_tile_once(dtype):
    for R in (1, 2, 7, 100, 512, 5000):
        for L in (1, 31, 2048, 2049, 10**5, 2**22):
            p = P.split_plan(R, L, dtype)
            assert p.ntiles == -(-L // p.tile)
            assert p.nchunks * p.tpc >= p.ntiles > (p.nchunks - 1) * p.tpc  # none empty
            assert p.grid == R * p.nchunks
            if p.split:
                assert p.tpc >= P.MIN_TILES_PER_CHUNK


def test_split_plan_choices():
    assert not P.split_plan(4096, 65536, np.float32).split       # many rows: one block each
    p = P.split_plan(1, 2**28, np.float32)                       # one huge row: ~1024 chunks
    assert p.split and 900 <= p.nchunks <= P.TARGET_BLOCKS and p.R == 1
    assert P.split_plan(4, 10**7, np.float32).nchunks >= 200
    assert not P.split_plan(1, 1000, np.float32).split           # short: one tile
    # depends on the problem only, never on the device
    assert P.split_plan(3, 10**6, np.float64) == P.split_plan(3, 10**6, np.float64)
    with pytest.raises(ValueError, match="R >= 1"):
        P.split_plan(0, 10, np.float32)


def test_launches_and_argument_types():
    one = P.scan_launches(P.split_plan(4096, 4096, np.float32))
    assert [x.kind for x in one] == ["scan"] and one[0].grid == (4096,) and one[0].block == (128,)
    three = P.scan_launches(P.split_plan(1, 2**24, np.float32))
    assert [x.kind for x in three] == ["reduce", "carry", "scan"]
    assert three[1].grid == (1,)
    assert type(P.i64(3)) is np.int64 and type(P.i32(3)) is np.int32
    with pytest.raises(OverflowError):
        P.i32(2**31)


def test_dispatch_refuses_host_signal_with_device_coefficients():
    """A NumPy signal with CuPy coefficients is a TypeError, before any device work."""
    from iirssm._cuda import dispatch

    class FakeCupy:                      # stands for a cupy.ndarray (type module 'cupy...')
        pass
    FakeCupy.__module__ = "cupy._core.core"
    with pytest.raises(TypeError, match=r"cupy.asarray\(b\)"):
        dispatch.linear_recurrence(FakeCupy(), np.ones(4))
    with pytest.raises(TypeError, match=r"cupy.asarray\(x\)"):
        dispatch.ema(np.ones(4), alpha=FakeCupy())


def test_cuda_modules_import_without_cupy():
    """Nothing in iirssm._cuda imports CuPy at import time (checked in a fresh process)."""
    import subprocess
    import sys

    code = ("import sys, importlib\n"
            "for m in ('iirssm', 'iirssm._cuda._compile', 'iirssm._cuda._plan', "
            "'iirssm._cuda._mirror', 'iirssm._cuda._rec', 'iirssm._cuda._filters',\n"
            "          'iirssm._cuda.dispatch'):\n"
            "    importlib.import_module(m)\n"
            "assert 'cupy' not in sys.modules, sorted(m for m in sys.modules if 'cupy' in m)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ compile granularity

def _fake_cupy_for_compile(monkeypatch, grouping):
    """Install a stand-in ``cupy`` whose RawModule records what it is built with; fresh
    memo tables. Returns ``(device, built)``: the current device (a one-item list)
    and the modules built so far."""
    import sys
    import types

    from iirssm._cuda import _compile

    _compile.load_all()
    device = [0]
    built = []

    class RawModule:
        def __init__(self, code, options, name_expressions):
            self.code, self.options = code, tuple(options)
            self.name_expressions = tuple(name_expressions)
            self.fetched = []
            built.append(self)

        def get_function(self, name):
            assert name in self.name_expressions
            self.fetched.append(name)
            return ("fn", id(self), name)

    fake = types.ModuleType("cupy")
    fake.RawModule = RawModule
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: device[0]))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_compile, "_modules", {})
    monkeypatch.setattr(_compile, "_functions", {})
    monkeypatch.setattr(_compile, "GROUPING", grouping)
    return device, built


def test_get_function_compiles_only_the_requested_instantiation(monkeypatch):
    from iirssm._cuda import _compile

    device, built = _fake_cupy_for_compile(monkeypatch, "expression")
    e1, e2 = "rec_fwd<float, false>", "carry_scan<float, float>"
    f1 = _compile.get_function("recurrence.cu", e1)
    assert [m.name_expressions for m in built] == [(e1,)]       # one instantiation, not 16
    assert built[0].code == _compile.source_text("recurrence.cu")
    assert built[0].options == _compile.DEFAULT_OPTIONS
    assert _compile.get_function("recurrence.cu", e1) is f1     # memoised: no new module
    assert len(built) == 1 and built[0].fetched == [e1]
    _compile.get_function("recurrence.cu", e2)
    assert [m.name_expressions for m in built] == [(e1,), (e2,)]
    # same expression text in another source, other options, another device: new modules
    _compile.get_function("ema.cu", e2)
    _compile.get_function("recurrence.cu", e1, options=("-lineinfo",))
    device[0] = 1
    _compile.get_function("recurrence.cu", e1)
    assert len(built) == 5
    assert built[3].options == _compile.DEFAULT_OPTIONS + ("-lineinfo",)
    assert [m.code == _compile.source_text("ema.cu") for m in built] == \
        [False, False, True, False, False]
    # the selective scan's first forward call compiles one of its 21 instantiations
    sel = _compile.MODULES.get("selective.cu")
    if sel:
        _compile.get_function("selective.cu", sel[0])
        assert built[-1].name_expressions == (sel[0],)
    with pytest.raises(KeyError, match="not registered"):
        _compile.get_function("recurrence.cu", "rec_fwd<int, false>")
    assert len(built) == 5 + bool(sel)


def test_dtype_grouping(monkeypatch):
    from iirssm._cuda import _compile

    mods = _compile.load_all()
    assert _compile.first_template_argument("carry_scan<complex<float>, float>") == \
        "complex<float>"
    assert _compile.first_template_argument("ss_reduce<cx<double>>") == "cx<double>"
    assert _compile.first_template_argument("plain") == "plain"
    assert _compile.group("ema.cu", "carry_scan<complex<float>, float>", "dtype") == \
        ("ema_fwd<complex<float>, float>", "carry_scan<complex<float>, float>")
    assert _compile.group("recurrence.cu", "rec_bwd<double>", "dtype") == \
        ("rec_fwd<double, false>", "rec_fwd<double, true>", "rec_bwd<double>",
         "carry_scan<double, double>")
    for grouping in ("expression", "dtype"):
        for src, exprs in mods.items():         # every instantiation in exactly one group
            gs = _compile.groups(src, grouping)
            flat = [e for g in gs for e in g]
            assert sorted(flat) == sorted(exprs) and len(flat) == len(set(flat))
    assert len(_compile.groups("recurrence.cu", "dtype")) == 4
    with pytest.raises(ValueError, match="grouping"):
        _compile.group("recurrence.cu", "rec_bwd<double>", "source")
    _, built = _fake_cupy_for_compile(monkeypatch, "dtype")
    _compile.get_function("ema.cu", "ema_fwd<double, double>")
    _compile.get_function("ema.cu", "carry_scan<double, double>")   # same module
    assert [m.name_expressions for m in built] == \
        [("ema_fwd<double, double>", "carry_scan<double, double>")]
    assert built[0].fetched == ["ema_fwd<double, double>", "carry_scan<double, double>"]


# --------------------------------------------- dispatch on a NumPy stand-in for CuPy
#
# The CUDA backend has never run on a GPU here. To run its host code anyway, CuPy is
# replaced by NumPy (arrays of a subclass whose module is "cupy...", with
# ``.data.ptr``) and every kernel launch by a checker plus a serial emulator:
# the checker parses the kernel's signature from the CUDA source and demands the
# exact NumPy scalar type of every scalar argument (CuPy does no type checking) and
# the kernel's dtype for every pointer; the emulator follows the kernel's indexing
# (row strides, chunks, flags) in plain loops. The results are compared with the
# CPU backend, so layout, strides, states and parameter handling are all exercised.

import re
import sys
import types

from conftest import assert_close

_C2NP = {"float": np.float32, "double": np.float64, "complex<float>": np.complex64,
         "complex<double>": np.complex128}
_REALC = {"float": "float", "double": "double", "complex<float>": "float",
          "complex<double>": "double"}


class DevArr(np.ndarray):
    """A NumPy array posing as a cupy.ndarray (``type(x).__module__`` starts with cupy)."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])


DevArr.__module__ = "cupy._fake"


def _dev(x):
    if isinstance(x, np.ndarray) and not isinstance(x, DevArr):
        return x.view(DevArr)
    if isinstance(x, tuple):
        return tuple(_dev(v) for v in x)
    if isinstance(x, list):
        return [_dev(v) for v in x]
    return x


def _wrap(f):
    return lambda *a, **k: _dev(f(*a, **k))


def _fake_cupy():
    cp = types.ModuleType("cupy")

    def asarray(x, dtype=None):
        if isinstance(x, DevArr):
            return x if dtype is None else x.astype(dtype, copy=False)
        return np.array(x, dtype=dtype).view(DevArr)     # host -> device: a copy
    cp.asarray = asarray
    cp.asnumpy = lambda x: np.array(x)
    cp.ndarray = DevArr
    cp.__getattr__ = lambda name: _wrap(getattr(np, name))
    cp.fft = types.SimpleNamespace(**{n: _wrap(getattr(np.fft, n))
                                      for n in ("fft", "ifft", "rfft", "irfft")})
    st = types.ModuleType("cupy.lib.stride_tricks")
    st.as_strided = _wrap(np.lib.stride_tricks.as_strided)
    lib = types.ModuleType("cupy.lib")
    lib.stride_tricks = st
    cp.lib = lib
    return {"cupy": cp, "cupy.lib": lib, "cupy.lib.stride_tricks": st}


def _split_top(s):
    out, depth, cur = [], 0, ""
    for ch in s:
        depth += (ch == "<") - (ch == ">")
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return out + ([cur.strip()] if cur.strip() else [])


_SIG = re.compile(r"template\s*<(?P<tp>[^{;]*?)>\s*__global__\s+void\s+"
                  r"(?:__launch_bounds__\([^)]*\)\s*)?(?P<name>\w+)\s*\((?P<params>[^)]*)\)")


def _signature(src, expression):
    """[(kind, numpy type or None)] for each parameter of the instantiated kernel."""
    from iirssm._cuda import _compile

    name = expression.split("<", 1)[0]
    m = next(m for m in _SIG.finditer(_compile.source_text(src)) if m["name"] == name)
    tnames = [p.split()[-1] for p in _split_top(m["tp"])]
    targs = _split_top(expression[len(name) + 1:-1])
    tmap = dict(zip(tnames, targs))
    sig = []
    for p in _split_top(m["params"]):
        ty = p.rsplit(None, 1)[0] if not p.endswith("*") else p
        base = re.sub(r"\bconst\b|__restrict__|\*", " ", ty)
        base = re.sub(r"typename\s+real_of<(\w+)>::type", lambda g: _REALC[tmap[g[1]]], base)
        base = " ".join(tmap.get(w, w) for w in re.findall(r"[\w]+|[<>]", base))
        base = base.replace(" < ", "<").replace(" >", ">").strip()
        if "*" in ty:
            sig.append(("ptr", _C2NP.get(base)))
        else:
            sig.append(("scalar", {"long long": np.int64, "int": np.int32,
                                   "float": np.float32, "double": np.float64}[base]))
    return sig


def _view(arr, n):
    """``n`` elements of device memory from ``arr``'s pointer (what the kernel indexes)."""
    return np.lib.stride_tricks.as_strided(arr, shape=(n,), strides=(arr.itemsize,))


class FakeKernel:
    launches: list = []

    def __init__(self, src, expression):
        self.src, self.expr = src, expression
        self.name = expression.split("<", 1)[0]
        self.targs = _split_top(expression[len(self.name) + 1:-1])

    def __call__(self, grid, block, args, shared_mem=0):
        sig = _signature(self.src, self.expr)
        assert len(args) == len(sig), (self.expr, len(args), len(sig))
        for i, ((kind, t), v) in enumerate(zip(sig, args)):
            if kind == "scalar":
                assert type(v) is t, f"{self.expr} argument {i}: {type(v)} for {t}"
            elif not (type(v) is np.uint64 and v == 0):
                assert isinstance(v, DevArr), f"{self.expr} argument {i}: {type(v)}"
                if t is not None:
                    assert v.dtype == t, f"{self.expr} argument {i}: dtype {v.dtype} for {t}"
        assert isinstance(grid, tuple) and isinstance(block, tuple)
        assert all(isinstance(g, int) and g >= 1 for g in grid + block)
        assert int(np.prod(block)) <= 1024 and isinstance(shared_mem, int)
        FakeKernel.launches.append(self.expr)
        args = [None if (type(v) is np.uint64) else (int(v) if isinstance(v, np.integer)
                                                     else v) for v in args]
        getattr(self, "_" + self.name, lambda g, a: None)(grid, args)

    # -------------------------------------------------------------- emulators
    def _scan(self, grid, args, ema):
        from iirssm._cuda._plan import tile_size

        a, a_rs, b, b_rs, y, y_rs, hin, hf, aggA, aggB, L, tpc, nch, flags = args
        rev = (not ema) and self.targs[1] == "true"
        at, pass1 = bool(flags & 1), bool(flags & 4)
        R = grid[0] // nch
        tile = tile_size(b.dtype)
        av = _view(a, (R - 1) * a_rs + (L if at else 1))
        bv = _view(b, (R - 1) * b_rs + L)
        for r in range(R):
            for c in range(nch):
                lc = nch - 1 - c if rev else c
                ts = list(range(c * tpc * tile, min(L, (c + 1) * tpc * tile)))
                ts = ts[::-1] if rev else ts
                A, B = 1, 0
                h = 0 if pass1 else _view(hin, R * nch)[r * nch + lc]
                for t in ts:
                    at_ = av[r * a_rs + (t if at else 0)]
                    ea, eb = ((1 - at_, at_ * bv[r * b_rs + t]) if ema
                              else (at_, bv[r * b_rs + t]))
                    if pass1:
                        A, B = ea * A, ea * B + eb
                    else:
                        h = ea * h + eb
                        _view(y, (R - 1) * y_rs + L)[r * y_rs + t] = h
                if pass1:
                    _view(aggA, R * nch)[r * nch + lc] = A
                    _view(aggB, R * nch)[r * nch + lc] = B
                elif lc == nch - 1 and hf is not None:
                    _view(hf, R)[r] = h

    def _rec_fwd(self, grid, args):
        self._scan(grid, args, False)

    def _ema_fwd(self, grid, args):
        self._scan(grid, args, True)

    def _carry_scan(self, grid, args):
        aggA, aggB, h0, hin, nch = args
        for r in range(grid[0]):
            h = _view(h0, grid[0])[r]
            for c in range(nch):
                _view(hin, grid[0] * nch)[r * nch + c] = h
                h = _view(aggA, grid[0] * nch)[r * nch + c] * h + \
                    _view(aggB, grid[0] * nch)[r * nch + c]

    def _fir_rows(self, grid, args):
        x, x_rs, b, b_rs, K1, zi, u, u_rs, L, R = args
        xv, bv = _view(x, (R - 1) * x_rs + L), _view(b, (R - 1) * b_rs + K1)
        uv = _view(u, (R - 1) * u_rs + L)
        for r in range(R):
            for t in range(L):
                acc = sum(bv[r * b_rs + k] * xv[r * x_rs + t - k] for k in range(min(K1, t + 1)))
                if zi is not None and t < K1 - 1:
                    acc = acc + _view(zi, R * (K1 - 1))[r * (K1 - 1) + t]
                uv[r * u_rs + t] = acc

    def _df2t_serial(self, grid, args):
        x, x_rs, b, a, c_ks, c_rs, c_ts, K, zi, zf, y, y_rs, L, R = args
        n = K * c_ks + (R - 1) * c_rs + (L - 1) * c_ts + 1
        bv, av = _view(b, n), _view(a, n)
        xv, yv = _view(x, (R - 1) * x_rs + L), _view(y, (R - 1) * y_rs + L)
        for r in range(R):
            z = [(_view(zi, R * K)[r * K + i] if zi is not None else 0) for i in range(K)] + [0]
            for t in range(L):
                ct = r * c_rs + t * c_ts
                xt = xv[r * x_rs + t]
                yt = bv[ct] * xt + z[0]
                for i in range(K):
                    z[i] = (z[i + 1] if i + 1 < K else 0) + bv[(i + 1) * c_ks + ct] * xt \
                        - av[(i + 1) * c_ks + ct] * yt
                yv[r * y_rs + t] = yt
            if zf is not None:
                for i in range(K):
                    _view(zf, R * K)[r * K + i] = z[i]

    def _ssm_fwd(self, grid, args):
        u, u_rs, y, y_rs, lam, beta, wgt, p_rs, D, d_rs, g, M, L, flags = args
        R = grid[0]
        uv, yv = _view(u, (R - 1) * u_rs + L), _view(y, (R - 1) * y_rs + L)
        n = (R - 1) * p_rs + M
        lv, bv, wv = _view(lam, n), _view(beta, n), _view(wgt, n)
        gv = _view(g, R * M)
        for r in range(R):
            ur = np.array([uv[r * u_rs + t] for t in range(L)])
            acc = np.zeros(L, dtype=np.complex128)
            for m in range(M):
                h = gv[r * M + m]
                for t in range(L):
                    h = lv[r * p_rs + m] * h + bv[r * p_rs + m] * ur[t]
                    acc[t] += wv[r * p_rs + m] * h
                gv[r * M + m] = h
            out = (acc.real if y.dtype.kind != "c" else acc) + _view(D, (R - 1) * d_rs + 1)[
                r * d_rs] * ur
            for t in range(L):
                yv[r * y_rs + t] = out[t]


@pytest.fixture
def fake_gpu(monkeypatch):
    """CuPy replaced by NumPy and every launch checked and emulated (see above)."""
    from iirssm._cuda import _compile, _filters, _rec

    for k, v in _fake_cupy().items():
        monkeypatch.setitem(sys.modules, k, v)

    def get_function(src, expression, options=()):
        assert expression in _compile.MODULES[src], expression     # registered
        return FakeKernel(src, expression)
    monkeypatch.setattr(_rec, "get_function", get_function)
    monkeypatch.setattr(_filters, "get_function", get_function)
    FakeKernel.launches = []
    return FakeKernel.launches


def test_fake_gpu_signature_parser():
    sig = _signature("recurrence.cu", "rec_fwd<complex<float>, true>")
    assert sig[0] == ("ptr", np.complex64) and sig[1] == ("scalar", np.int64)
    assert sig[-2:] == [("scalar", np.int32), ("scalar", np.int32)] and len(sig) == 14
    sig = _signature("ema.cu", "ema_fwd<complex<double>, double>")
    assert sig[0] == ("ptr", np.float64) and sig[2] == ("ptr", np.complex128)
    sig = _signature("ssm.cu", "ssm_fwd<float>")
    assert [t for _, t in sig[4:7]] == [np.complex64, np.float32, np.complex64]
    assert _signature("iir.cu", "df2t_serial<double, 8>")[7] == ("scalar", np.int32)


def test_scan_launcher_refuses_mismatched_dtypes(fake_gpu):
    from iirssm._cuda import _rec

    b = np.zeros((2, 8), np.float32).view(DevArr)
    h0 = np.zeros(2, np.float32).view(DevArr)
    with pytest.raises(TypeError, match="a: the kernel reads float32; got float64"):
        _rec.scan(np.zeros(2).view(DevArr), b, h0, b.copy())
    with pytest.raises(TypeError, match="h0"):
        _rec.scan(np.zeros(2, np.float32).view(DevArr), b, h0.astype(np.float64), b.copy())
    with pytest.raises(TypeError, match="a: the kernel reads float32; got complex64"):
        _rec.scan(np.zeros(2, np.complex64).view(DevArr), b.astype(np.complex64),
                  h0.astype(np.complex64), b.astype(np.complex64), mode="ema")
    assert fake_gpu == []


def _d(x):
    return np.array(x).view(DevArr)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_fake_gpu_linear_recurrence(fake_gpu, rng, dtype):
    import iirssm
    from iirssm._cuda import dispatch

    a = (0.5 + 0.4 * rng.random((3, 1))).astype(dtype)
    b = rng.standard_normal((3, 40)).astype(dtype)
    zi = rng.standard_normal((3, 1)).astype(dtype)
    for kw in (dict(), dict(reverse=True), dict(zi=zi, return_zf=True)):
        got = dispatch.linear_recurrence(_d(a), _d(b), **kw)
        want = iirssm.linear_recurrence(a, b, **kw)
        for g, w in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,)):
            assert type(g) is DevArr
            assert_close(np.asarray(g), w, dtype)
    # time on axis 0, per-sample decays, into a strided `out` view
    at = (0.9 * rng.random((40, 3))).astype(dtype)
    out = np.zeros((40, 5), dtype).view(DevArr)[:, 1:4]
    got = dispatch.linear_recurrence(_d(at), _d(b.T.copy()), axis=0, out=out)
    assert got is out
    assert_close(np.asarray(out), iirssm.linear_recurrence(at, b.T, axis=0), dtype)
    assert "rec_fwd<%s, true>" % {np.float32: "float",
                                  np.complex128: "complex<double>"}[dtype] in fake_gpu


def test_fake_gpu_split_path(fake_gpu, rng):
    """One long complex128 row: the reduce / carry / scan passes, forward and reversed."""
    import iirssm
    from iirssm._cuda import _plan, dispatch

    L = 5000
    assert _plan.split_plan(1, L, np.complex128).split
    a = 0.99 * np.exp(1j * rng.random(L))
    b = rng.standard_normal(L) + 1j * rng.standard_normal(L)
    for rev in (False, True):
        y, zf = dispatch.linear_recurrence(_d(a), _d(b), reverse=rev, zi=[0.3 + 0j],
                                           return_zf=True)
        y0, zf0 = iirssm.linear_recurrence(a, b, reverse=rev, zi=[0.3 + 0j], return_zf=True)
        assert_close(np.asarray(y), y0, np.complex128)
        assert_close(np.asarray(zf), zf0, np.complex128)
    assert fake_gpu.count("carry_scan<complex<double>, complex<double>>") == 2
    dispatch.linear_recurrence_backward(_d(a), y, _d(b), zi=[0.3 + 0j])   # launches checked
    assert "rec_bwd<complex<double>>" in fake_gpu


def test_fake_gpu_ema(fake_gpu, rng):
    import iirssm
    from iirssm._cuda import dispatch

    x = rng.standard_normal((2, 30))
    for kw in (dict(alpha=0.3), dict(span=4.0, adjust=True, min_periods=3),
               dict(alpha=np.linspace(0.1, 0.9, 30)), dict(com=np.array([[1.0], [3.0]]),
                                                             adjust=True)):
        got = dispatch.ema(_d(x), **kw)
        assert_close(np.asarray(got), iirssm.ema(x, **kw), np.float64)
    # chunks continued through EMAState, adjust=True, min_periods across the boundary
    kw = dict(halflife=2.0, adjust=True, min_periods=12)
    y1, st = dispatch.ema(_d(x[:, :10]), return_zf=True, **kw)
    y2 = dispatch.ema(_d(x[:, 10:]), zi=st, **kw)
    assert_close(np.concatenate([np.asarray(y1), np.asarray(y2)], axis=1),
                 iirssm.ema(x, **kw), np.float64)
    # times=, float32, time on axis 0, written into a strided out view
    t = np.cumsum(rng.random(30))
    xf = x.T.astype(np.float32)
    out = np.zeros((30, 4), np.float32).view(DevArr)[:, ::2]
    dispatch.ema(_d(xf), halflife=1.5, times=t, axis=0, min_periods=2, out=out)
    assert_close(np.asarray(out), iirssm.ema(xf, halflife=1.5, times=t, axis=0,
                                             min_periods=2), np.float32)
    with pytest.raises(NotImplementedError, match="missing values"):
        dispatch.ema(_d(np.array([1.0, np.nan, 2.0])), alpha=0.5)


def test_fake_gpu_lfilter_sosfilt(fake_gpu, rng):
    import scipy.signal

    from iirssm._cuda import dispatch

    x = rng.standard_normal((2, 25))
    b, a = scipy.signal.butter(3, 0.3)                 # a complex pole pair and a real pole
    zi = rng.standard_normal((2, 3))
    y, zf = dispatch.lfilter(b, a, _d(x), zi=_d(zi))
    y0, zf0 = scipy.signal.lfilter(b, a, x, zi=zi)
    assert_close(np.asarray(y), y0, np.float64, rtol=1e-9, atol=1e-10)
    assert_close(np.asarray(zf), zf0, np.float64, rtol=1e-9, atol=1e-10)
    sos = scipy.signal.butter(4, 0.2, output="sos")
    zs = rng.standard_normal((2, 2, 2))
    y, zf = dispatch.sosfilt(sos, _d(x.astype(np.float32)), zi=zs)
    y0, zf0 = scipy.signal.sosfilt(sos, x.astype(np.float32), zi=zs)
    assert_close(np.asarray(y), y0, np.float32, rtol=1e-4, atol=1e-4)
    assert_close(np.asarray(zf), zf0, np.float32, rtol=1e-4, atol=1e-4)
    # time-varying coefficients: the serial DF2T kernel
    import iirssm

    bt = np.stack([np.full(25, 0.5), np.linspace(0.1, 0.3, 25)])
    at = np.stack([np.ones(25), np.linspace(-0.5, -0.7, 25)])
    y, zf = dispatch.lfilter(_d(bt), at, _d(x), zi=zi[:, :1])
    y0, zf0 = iirssm.lfilter(bt, at, x, zi=zi[:, :1])
    assert_close(np.asarray(y), y0, np.float64)
    assert_close(np.asarray(zf), zf0, np.float64)
    assert "df2t_serial<double, 2>" in fake_gpu and "fir_rows<double>" in fake_gpu


def test_fake_gpu_diagonal_ssm(fake_gpu, rng):
    from iirssm._cuda import dispatch
    from iirssm._ssm import DiagonalSSM

    s = DiagonalSSM.from_tf([0.3, 0.1, 0.05], [1.0, -0.9, 0.4])   # complex pair + FIR term
    u = rng.standard_normal((2, 20))
    y, zf = s.filter(u, return_zf=True)
    gy, gzf = dispatch.diagonal_ssm_filter(s, _d(u), return_zf=True)
    assert_close(np.asarray(gy), y, np.float64)
    assert_close(np.asarray(gzf), zf, np.complex128)
    y2 = s.filter(u, zi=zf)
    assert_close(np.asarray(dispatch.diagonal_ssm_filter(s, _d(u), zi=gzf)), y2, np.float64)
    uc = (u + 1j * u[::-1]).astype(np.complex64)
    assert_close(np.asarray(dispatch.diagonal_ssm_filter(s, _d(uc))), s.filter(uc),
                 np.complex64)
    assert_close(np.asarray(dispatch.diagonal_ssm_filter(s, _d(u), method="fft")),
                 s.filter(u, method="fft"), np.float64)
    # a bank of two systems that adds a leading dimension, with states
    bank = DiagonalSSM(np.array([[0.5, 0.2j], [-0.3, 0.7]]), np.ones((2, 2)),
                       np.array([[1.0, 0.5], [0.2, -1.0]]), np.array([0.1, 0.0]))
    v = u[0]
    zb = rng.standard_normal((2, 2)) + 1j * rng.standard_normal((2, 2))
    y, zf = bank.filter(v, zi=zb, return_zf=True)
    gy, gzf = dispatch.diagonal_ssm_filter(bank, _d(v), zi=zb, return_zf=True)
    assert gy.shape == y.shape == (2, 20)
    assert_close(np.asarray(gy), y, np.complex128)
    assert_close(np.asarray(gzf), zf, np.complex128)
    assert "ssm_fwd<double>" in fake_gpu and "ssm_fwd<complex<float>>" in fake_gpu
