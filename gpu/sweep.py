"""GPU correctness sweep and benchmarks of iirssm's CUDA backend (run by gpu/run.sh).

1. environment; every CUDA module compiled (timed);
2. correctness: each public op with CuPy inputs against the CPU backend
   (dtypes, layouts, edge lengths, split path, strided and misaligned inputs,
   a non-default stream, bitwise repeatability), with the float32/float64
   tolerance table of tests/conftest.py;
3. benchmarks (cupyx.profiler.benchmark) against a device copy of the same bytes
   and cupyx.scipy.signal.lfilter.
Writes/extends --json and --table. Exit status 1 only on correctness errors.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

TOL = {np.dtype(np.float64): (1e-11, 1e-12), np.dtype(np.complex128): (1e-11, 1e-12),
       np.dtype(np.float32): (2e-5, 2e-5), np.dtype(np.complex64): (2e-5, 2e-5)}
DTYPES = (np.float32, np.float64, np.complex64, np.complex128)
TILE = {np.dtype(np.float32): 2048, np.dtype(np.float64): 1024,
        np.dtype(np.complex64): 1024, np.dtype(np.complex128): 256}


def compare(gpu, cpu, dtype, scale=None, loose=1.0):
    """dict(ok, max_err) with the tolerance table (``loose`` widens it for IIR filters)."""
    import cupy as cp

    g = cp.asnumpy(gpu) if type(gpu).__module__.startswith("cupy") else np.asarray(gpu)
    c = np.asarray(cpu)
    if g.shape != c.shape:
        return {"ok": False, "error": f"shape {g.shape} != {c.shape}"}
    rtol, atol = TOL[np.dtype(dtype)]
    fin = c[np.isfinite(c)]
    sc = scale if scale is not None else (float(np.max(np.abs(fin))) if fin.size else 1.0)
    err = np.abs(g.astype(np.complex128) - c.astype(np.complex128))
    bound = loose * (rtol * np.abs(c) + atol * max(sc, 1e-300))
    both_nan = np.isnan(g) & np.isnan(c)
    ok = bool(np.all((err <= bound) | both_nan))
    rel = float(np.max(err[~both_nan]) / max(sc, 1e-300)) if err.size else 0.0
    return {"ok": ok, "max_err": rel}


def rand(rng, shape, dtype):
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


def decays(rng, shape, dtype, lo=0.5, hi=0.999):
    a = rng.uniform(lo, hi, shape)
    if np.dtype(dtype).kind == "c":
        a = a * np.exp(1j * rng.uniform(-0.5, 0.5, shape))
    return a.astype(dtype)


def lengths(dtype, quick):
    T = TILE[np.dtype(dtype)]
    ls = [1, 2, 31, 32, 33, T - 1, T, T + 1, 3 * T + 5]
    return ls if quick else ls + [10**5]


# ----------------------------------------------------------------------------- compile

def compile_all(records):
    import cupy as cp

    from iirssm._cuda import _compile

    mods = _compile.load_all()
    for src, exprs in sorted(mods.items()):
        def one(src=src, exprs=exprs):
            t0 = time.perf_counter()
            mod = cp.RawModule(code=_compile.source_text(src),
                               options=_compile.DEFAULT_OPTIONS, name_expressions=list(exprs))
            for e in exprs:
                mod.get_function(e)
            return {"ok": True, "n_kernels": len(exprs),
                    "compile_s": round(time.perf_counter() - t0, 3)}
        _report.run_case(records, f"compile {src}", one)


# ------------------------------------------------------------------------- correctness

def correctness(records, quick):
    import cupy as cp

    import iirssm
    from iirssm._cuda import dispatch
    from iirssm._ssm import DiagonalSSM

    rng = np.random.default_rng(2026)
    run = _report.run_case

    # ---- linear_recurrence: dtypes x edge lengths x (per-sample / constant a) x state
    for dt in DTYPES:
        for L in lengths(dt, quick):
            for kind in ("tv", "const"):
                def case(dt=dt, L=L, kind=kind):
                    b = rand(rng, (3, L), dt)
                    a = decays(rng, (3, L) if kind == "tv" else (3, 1), dt)
                    zi = rand(rng, (3, 1), dt)
                    y, zf = iirssm.linear_recurrence(cp.asarray(a), cp.asarray(b),
                                                     zi=cp.asarray(zi), return_zf=True)
                    ry, rzf = iirssm.linear_recurrence(a, b, zi=zi, return_zf=True)
                    r1, r2 = compare(y, ry, dt), compare(zf, rzf, dt, scale=np.abs(ry).max())
                    return {"ok": r1["ok"] and r2["ok"], "max_err": max(r1["max_err"],
                                                                        r2["max_err"])}
                run(records, f"linear_recurrence {np.dtype(dt).name} L={L} a={kind}", case,
                    op="linear_recurrence")
    for dt in (np.float32, np.complex64):
        def rev(dt=dt):
            b = rand(rng, (5, 5000), dt)
            a = decays(rng, (5, 5000), dt)
            y = iirssm.linear_recurrence(cp.asarray(a), cp.asarray(b), reverse=True)
            return compare(y, iirssm.linear_recurrence(a, b, reverse=True), dt)
        run(records, f"linear_recurrence reverse {np.dtype(dt).name}", rev,
            op="linear_recurrence")
    # layouts: axis=0, Fortran, strided, misaligned, 3-D, shared time-varying a, scalar a
    layouts = {
        "axis0": lambda x: (x, 0),
        "fortran": lambda x: (np.asfortranarray(x), -1),
        "strided": lambda x: (x[:, ::2], -1),
        "misaligned": lambda x: (x[:, 1:], -1),
        "3d_axis1": lambda x: (x.reshape(2, 3, -1).transpose(0, 2, 1), 1),
    }
    for name, lay in layouts.items():
        def case(lay=lay):
            base = rand(rng, (6, 4099), np.float32)
            xb, ax = lay(base)
            xg, _ = lay(cp.asarray(base))
            a = np.float32(0.97)
            y = iirssm.linear_recurrence(a, xg, axis=ax)
            return compare(y, iirssm.linear_recurrence(a, xb, axis=ax), np.float32)
        run(records, f"linear_recurrence layout {name}", case, op="linear_recurrence")

    def shared_tv():
        b = rand(rng, (7, 3000), np.float32)
        a = decays(rng, (3000,), np.float32)
        y = iirssm.linear_recurrence(cp.asarray(a), cp.asarray(b))
        return compare(y, iirssm.linear_recurrence(a, b), np.float32)
    run(records, "linear_recurrence shared per-sample a", shared_tv, op="linear_recurrence")

    # split path (few long rows), both directions
    big = 2**20 if quick else 2**24
    for reverse in (False, True):
        def split(reverse=reverse):
            b = rand(rng, (1, big), np.float32)
            a = decays(rng, (1, big), np.float32, 0.9, 0.9999)
            y = iirssm.linear_recurrence(cp.asarray(a), cp.asarray(b), reverse=reverse)
            return compare(y, iirssm.linear_recurrence(a, b, reverse=reverse), np.float32)
        run(records, f"linear_recurrence split 1x{big} reverse={reverse}", split,
            op="linear_recurrence")

    # non-default stream, and bitwise repeatability (deterministic paths)
    def stream():
        b = rand(rng, (64, 50000), np.float32)
        a = decays(rng, (64, 50000), np.float32)
        s = cp.cuda.Stream(non_blocking=True)
        with s:
            ag, bg = cp.asarray(a), cp.asarray(b)
            y = iirssm.linear_recurrence(ag, bg)
        s.synchronize()
        return compare(y, iirssm.linear_recurrence(a, b), np.float32)
    run(records, "linear_recurrence non-default stream", stream, op="linear_recurrence")

    def repeat():
        outs = []
        for shape in ((64, 50000), (1, 2**22)):
            b = cp.asarray(rand(rng, shape, np.float32))
            a = cp.asarray(decays(rng, shape, np.float32))
            y1 = iirssm.linear_recurrence(a, b)
            y2 = iirssm.linear_recurrence(a, b)
            outs.append(bool(cp.all(y1.view(cp.uint32) == y2.view(cp.uint32))))
        return {"ok": all(outs)}
    run(records, "linear_recurrence bitwise repeatable", repeat, op="linear_recurrence")

    # backward (adjoint) against the CPU formula
    for dt in (np.float32, np.complex64, np.float64):
        for shape in ((4, 3000), (1, 2**20)):
            def bwd(dt=dt, shape=shape):
                b = rand(rng, shape, dt)
                a = decays(rng, shape, dt)
                g = rand(rng, shape, dt)
                h = iirssm.linear_recurrence(a, b)
                ash = np.ones(shape, dtype=dt)
                ash[:, :-1] = np.conj(a[:, 1:])
                lam = iirssm.linear_recurrence(ash, g, reverse=True)
                hp = np.concatenate([np.zeros((shape[0], 1), dt), h[:, :-1]], axis=1)
                da, db, dzi = dispatch.linear_recurrence_backward(cp.asarray(a), cp.asarray(h),
                                                                  cp.asarray(g))
                r = [compare(db, lam, dt), compare(da, lam * np.conj(hp), dt,
                                                   scale=np.abs(lam * hp).max())]
                return {"ok": all(x["ok"] for x in r), "max_err": max(x["max_err"] for x in r)}
            run(records, f"linear_recurrence backward {np.dtype(dt).name} {shape}", bwd,
                op="linear_recurrence_backward")

    # ---- ema
    ema_cases = {
        "alpha": dict(alpha=0.1),
        "adjust": dict(alpha=0.05, adjust=True),
        "span_per_channel": dict(span=np.array([[3.0], [10.0], [30.0]])),
        "halflife_tv": dict(halflife=None),
        "times": dict(halflife=2.0, times=None),
        "times_adjust": dict(halflife=2.0, times=None, adjust=True),
        "min_periods": dict(alpha=0.2, min_periods=5),
    }
    for dt in (np.float32, np.float64, np.complex64):
        for name, kw in ema_cases.items():
            for L in (1, 33, 2049, 70001):
                def case(dt=dt, kw=kw, L=L, name=name):
                    kw = dict(kw)
                    x = rand(rng, (3, L), dt)
                    if name == "halflife_tv":
                        kw["halflife"] = rng.uniform(1, 50, L)
                    if "times" in kw:
                        kw["times"] = np.cumsum(rng.uniform(0.1, 2.0, L))
                    y, zf = iirssm.ema(cp.asarray(x), return_zf=True, **kw)
                    ry, rzf = iirssm.ema(x, return_zf=True, **kw)
                    r = [compare(y, ry, dt), compare(zf.mean, rzf.mean, dt)]
                    return {"ok": all(v["ok"] for v in r), "max_err": max(v["max_err"] for v in r)}
                run(records, f"ema {name} {np.dtype(dt).name} L={L}", case, op="ema")

    def ema_nan():
        x = rand(rng, (2, 100), np.float32)
        x[0, 5] = np.nan
        try:
            iirssm.ema(cp.asarray(x), alpha=0.1)
        except NotImplementedError:
            return {"ok": True}
        return {"ok": False, "error": "NaN input did not raise NotImplementedError"}
    run(records, "ema missing values refused", ema_nan, op="ema")

    # ---- lfilter / sosfilt
    import scipy.signal

    for dt in (np.float32, np.float64, np.complex64):
        for L in (1, 2, 33, 2049, 100000):
            for order in (1, 4):
                def lf(dt=dt, L=L, order=order):
                    b, a = scipy.signal.butter(order, 0.2)
                    x = rand(rng, (4, L), dt)
                    zi = rand(rng, (4, order), dt)
                    y, zf = iirssm.lfilter(b, a, cp.asarray(x), zi=cp.asarray(zi))
                    ry, rzf = iirssm.lfilter(b, a, x, zi=zi)
                    r = [compare(y, ry, dt, loose=5), compare(zf, rzf, dt, loose=5,
                                                              scale=np.abs(ry).max())]
                    return {"ok": all(v["ok"] for v in r), "max_err": max(v["max_err"] for v in r)}
                run(records, f"lfilter butter({order}) {np.dtype(dt).name} L={L}", lf,
                    op="lfilter")
        def sos(dt=dt):
            s = scipy.signal.butter(8, 0.1, output="sos")
            x = rand(rng, (3, 20000), dt)
            zi = rand(rng, (4, 3, 2), dt)
            y, zf = iirssm.sosfilt(s, cp.asarray(x), zi=cp.asarray(zi))
            ry, rzf = iirssm.sosfilt(s, x, zi=zi)
            r = [compare(y, ry, dt, loose=5), compare(zf, rzf, dt, loose=5,
                                                      scale=np.abs(ry).max())]
            return {"ok": all(v["ok"] for v in r), "max_err": max(v["max_err"] for v in r)}
        run(records, f"sosfilt butter(8) {np.dtype(dt).name}", sos, op="sosfilt")

    def lf_axis0():
        b, a = scipy.signal.butter(3, 0.3)
        x = rand(rng, (5000, 6), np.float32)
        return compare(iirssm.lfilter(b, a, cp.asarray(x), axis=0),
                       iirssm.lfilter(b, a, x, axis=0), np.float32, loose=5)
    run(records, "lfilter axis=0", lf_axis0, op="lfilter")

    def lf_tv():
        L = 3000
        th = np.linspace(0.05, 0.5, L) * np.pi
        a_tv = np.stack([np.ones(L), -2 * 0.98 * np.cos(th), np.full(L, 0.98**2)])
        x = rand(rng, (4, L), np.float64)
        return compare(iirssm.lfilter([1 - 0.98], a_tv, cp.asarray(x)),
                       iirssm.lfilter([1 - 0.98], a_tv, x), np.float64)
    run(records, "lfilter time-varying", lf_tv, op="lfilter")

    # ---- DiagonalSSM.filter
    systems = {
        "butter4_real": DiagonalSSM.from_zpk(*scipy.signal.butter(4, 0.2, output="zpk")),
        "complex_bank": DiagonalSSM(0.95 * np.exp(1j * rng.uniform(0, 3, (3, 5))),
                                    rng.standard_normal((3, 5)), rng.standard_normal((3, 5)),
                                    D=0.3),
        "with_fir": DiagonalSSM.from_tf([0.2, 0.1, 0.3, 0.05], [1.0, -0.8]),
    }
    for sname, sys_ in systems.items():
        for dt in (np.float32, np.float64):
            for L in (1, 33, 2049, 50000):
                def ssm_case(sys_=sys_, dt=dt, L=L):
                    x = rand(rng, (3, L), dt)
                    y, zf = sys_.filter(cp.asarray(x), return_zf=True)
                    ry, rzf = sys_.filter(x, return_zf=True)
                    r = [compare(y, ry, dt, loose=5),
                         compare(zf, rzf, np.result_type(dt, np.complex64), loose=5,
                                 scale=np.abs(rzf).max() + 1)]
                    y2 = sys_.filter(cp.asarray(x), zi=zf)
                    r.append(compare(y2, sys_.filter(x, zi=rzf), dt, loose=5))
                    return {"ok": all(v["ok"] for v in r), "max_err": max(v["max_err"] for v in r)}
                run(records, f"DiagonalSSM {sname} {np.dtype(dt).name} L={L}", ssm_case,
                    op="DiagonalSSM.filter")
        def fft_case(sys_=sys_):
            x = rand(rng, (3, 4000), np.float64)
            return compare(sys_.filter(cp.asarray(x), method="fft"),
                           sys_.filter(x, method="fft"), np.float64, loose=100)
        run(records, f"DiagonalSSM {sname} fft", fft_case, op="DiagonalSSM.filter")

    # ---- mixed host/device arguments
    def mixed():
        try:
            iirssm.linear_recurrence(cp.asarray(np.float32(0.5)), np.ones(10, np.float32))
        except TypeError:
            return {"ok": True}
        return {"ok": False, "error": "a NumPy signal with a CuPy coefficient was accepted"}
    run(records, "host signal with device coefficient refused", mixed, op="dispatch")


# -------------------------------------------------------------------------- benchmarks

def benchmarks(records, quick):
    import cupy as cp
    from cupyx.profiler import benchmark

    import iirssm
    from iirssm._cuda import dispatch

    rng = np.random.default_rng(7)
    n_rep = 5 if quick else 20

    def timeit(fn):
        r = benchmark(fn, n_repeat=n_rep, n_warmup=3)
        return float(np.median(r.gpu_times[0]))

    copy_bw = {}

    def copy_rate(nbytes):
        if nbytes not in copy_bw:
            src = cp.empty(nbytes // 4, dtype=cp.float32)
            dst = cp.empty_like(src)
            t = timeit(lambda: cp.copyto(dst, src))
            copy_bw[nbytes] = 2 * nbytes / t
            del src, dst
        return copy_bw[nbytes]

    def record(name, t, bytes_moved, array_bytes, **extra):
        bw = bytes_moved / t
        cb = copy_rate(array_bytes)
        rec = {"case": name, "ms": round(t * 1e3, 4), "GBps": round(bw / 1e9, 1),
               "copy_GBps": round(cb / 1e9, 1), "frac_copy": round(bw / cb, 3), **extra}
        records.append(rec)
        print(f"[bench] {name}: {rec['ms']} ms, {rec['GBps']} GB/s = {rec['frac_copy']:.0%} "
              f"of copy", flush=True)

    def guarded(name, fn):
        try:
            fn()
        except Exception as exc:  # benchmarks never fail the run
            records.append({"case": name, "error": f"{type(exc).__name__}: {exc}"})
            print(f"[bench] {name}: ERROR {exc}", flush=True)

    R, L = (512, 65536) if quick else (4096, 65536)

    def rec_fwd():
        a = cp.asarray(rng.uniform(0.5, 0.99, (R, L)).astype(np.float32))
        b = cp.asarray(rng.standard_normal((R, L)).astype(np.float32))
        y = cp.empty_like(b)
        t = timeit(lambda: iirssm.linear_recurrence(a, b, out=y))
        record(f"recurrence fwd fp32 {R}x{L}", t, 3 * a.nbytes, a.nbytes, target=0.75)
        g = b
        h = y
        t = timeit(lambda: dispatch.linear_recurrence_backward(a, h, g))
        record(f"recurrence bwd fp32 {R}x{L}", t, 5 * a.nbytes, a.nbytes, target=0.70)
        al = cp.float32(0.05)
        t = timeit(lambda: iirssm.ema(b, alpha=0.05, out=y))
        record(f"ema fwd fp32 {R}x{L}", t, 2 * b.nbytes, b.nbytes, target=0.75)
        del a, b, y, al
    guarded("recurrence/ema 4096x65536", rec_fwd)

    def equal_bytes():
        for dt in (np.float64, np.complex64):
            n = R * L // 2
            a = cp.asarray(decays(rng, (R, L // 2), dt))
            b = cp.asarray(rand(rng, (R, L // 2), dt))
            y = cp.empty_like(b)
            t = timeit(lambda: iirssm.linear_recurrence(a, b, out=y))
            record(f"recurrence fwd {np.dtype(dt).name} {R}x{L // 2}", t, 3 * a.nbytes, a.nbytes)
            del a, b, y, n
    guarded("recurrence fp64/c64", equal_bytes)

    def single_row():
        n = 2**24 if quick else 2**28
        a = cp.full((1, n), 0.999, dtype=cp.float32)
        b = cp.ones((1, n), dtype=cp.float32)
        y = cp.empty_like(b)
        t = timeit(lambda: iirssm.linear_recurrence(a, b, out=y))
        record(f"recurrence fwd fp32 1x{n} (reduce-then-scan)", t, 3 * a.nbytes, a.nbytes,
               target=0.45)
        t = timeit(lambda: dispatch.linear_recurrence_backward(a, y, b))
        record(f"recurrence bwd fp32 1x{n}", t, 5 * a.nbytes, a.nbytes)
        del a, b, y
    guarded("recurrence 1x2^28", single_row)

    def lfilter_vs_cupyx():
        import cupyx.scipy.signal as cps

        n = 10**6 if quick else 10**7
        x = cp.asarray(rng.standard_normal((4, n)).astype(np.float32))
        b, a = np.array([0.1], np.float32), np.array([1.0, -0.9], np.float32)
        t_ours = timeit(lambda: iirssm.lfilter(b, a, x))
        bd, ad = cp.asarray(b), cp.asarray(a)
        t_cupyx = timeit(lambda: cps.lfilter(bd, ad, x))
        yo = iirssm.lfilter(b, a, x)
        yc = cps.lfilter(bd, ad, x)
        err = float(cp.max(cp.abs(yo - yc)) / cp.max(cp.abs(yc)))
        record(f"lfilter order 1 fp32 (4, {n})", t_ours, 2 * x.nbytes, x.nbytes,
               cupyx_ms=round(t_cupyx * 1e3, 3), speedup_vs_cupyx=round(t_cupyx / t_ours, 1),
               target_speedup=10, max_rel_diff_vs_cupyx=err)
    guarded("lfilter vs cupyx", lfilter_vs_cupyx)

    def lti():
        from iirssm._ssm import DiagonalSSM

        Rl, Ll = (64, 2**18) if quick else (256, 2**20)
        x = cp.asarray(rng.standard_normal((Rl, Ll)).astype(np.float32))
        for N in (16, 64):
            s = DiagonalSSM(0.99 * np.exp(1j * np.linspace(0.01, 3, N)), np.ones(N),
                            rng.standard_normal(N))
            for method in ("scan", "fft"):
                t = timeit(lambda: s.filter(x.astype(np.complex64), method=method))
                # ALU: ~14 issue slots per (row, mode, t) for the scan
                flops = 14 * Rl * Ll * N
                record(f"DiagonalSSM N={N} {method} ({Rl}, {Ll})", t, 2 * x.nbytes * 2,
                       x.nbytes, issue_slots_per_s=round(flops / t / 1e12, 2))
    guarded("DiagonalSSM scan vs fft", lti)


def table(report):
    lines = ["| case | ms | GB/s | copy GB/s | fraction of copy | notes |",
             "|---|---|---|---|---|---|"]
    for b in report.get("benchmarks", []):
        if "error" in b:
            lines.append(f"| {b['case']} | - | - | - | - | error: {b['error'][:60]} |")
            continue
        notes = []
        for k in ("target", "speedup_vs_cupyx", "cupyx_ms", "issue_slots_per_s"):
            if k in b:
                notes.append(f"{k}={b[k]}")
        lines.append(f"| {b['case']} | {b['ms']} | {b['GBps']} | {b['copy_GBps']} | "
                     f"{b['frac_copy']:.0%} | {', '.join(notes)} |")
    return "\n".join(lines)


def main():
    opts = _report.args(__doc__.splitlines()[0])
    if opts.dry_run:
        print("dry run: compile, correctness and benchmark cases would run here")
        return 0
    import cupy as cp

    import iirssm

    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    env = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": props["name"].decode(),
           "sm": f"{props['major']}{props['minor']}", "sm_count": props["multiProcessorCount"],
           "cupy": cp.__version__, "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
           "driver": cp.cuda.runtime.driverGetVersion(), "iirssm": iirssm.__version__,
           "python": sys.version.split()[0]}
    comp, corr, bench = [], [], []
    compile_all(comp)
    t0 = time.perf_counter()
    correctness(corr, opts.quick)
    env["correctness_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    benchmarks(bench, opts.quick)
    env["benchmarks_s"] = round(time.perf_counter() - t0, 1)
    _report.append(opts.json, "sweep.py", correctness=corr, benchmarks=bench, compile_=comp,
                   env=env)
    rep = _report.load(opts.json)
    fails = [r for r in corr + comp if r.get("ok") is False]
    n_ok = sum(1 for r in corr if r.get("ok"))
    n_skip = sum(1 for r in corr if r.get("ok") is None)
    _report.append_table(opts.table, (
        f"## iirssm CUDA backend on {env['gpu']} ({env['date']})\n\n"
        f"Correctness: {n_ok} passed, {len(fails)} failed, {n_skip} not on the GPU "
        f"(NotImplementedError). Compile: "
        + ", ".join(f"{c['case'].split()[-1]} {c.get('compile_s', 'FAILED')} s" for c in comp)
        + "\n\n" + table(rep)))
    for f in fails:
        print("FAILED:", f["case"], f.get("error", f.get("max_err")), file=sys.stderr)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
