"""Device check of the CUDA selective scan: correctness against the CPU backend, then speed.

Usage (on a machine with a CUDA GPU and CuPy)::

    python gpu/check_selective.py --json $OUT/gpu_report.json --table $OUT/gpu_table.md

Appends its records to the shared report (``gpu/_report.py``: correctness,
benchmarks, compile) and a short Markdown table to ``--table``; ``--quick`` skips
the benchmark, ``--dry-run`` lists what it would do. Exits non-zero only on
correctness failures. Takes about a minute once the kernels are compiled (the
first compile of the module takes longer; it is timed and reported).
"""

from __future__ import annotations

import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-11, atol=1e-12)}
GRAD_TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def close(got, want, tol):
    want = np.asarray(want)
    scale = float(np.max(np.abs(want))) if want.size else 1.0
    err = float(np.max(np.abs(np.asarray(got) - want))) if want.size else 0.0
    ok = np.allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1e-300))
    return bool(ok), err / max(scale, 1e-300)


def correctness(cp, results):
    from iirssm._cuda import _selective as cs
    from iirssm._selective import selective_scan, selective_scan_grad
    from test_selective import make_problem

    rng = np.random.default_rng(5)
    cases = []
    for dtype in (np.float32, np.float64):
        for cplx in (False, True):
            for disc in ("mamba", "zoh", "euler", "bilinear"):
                for layouts in (("shared", "grouped"), ("invariant", "shared"),
                                ("grouped", "invariant")):
                    for L in (1, 33, 1025, 3 * 1024 + 5):
                        if disc != "mamba" and L not in (33, 1025):
                            continue
                        cases.append((dtype, cplx, disc, layouts, L))
    failures = 0
    for dtype, cplx, disc, (lb, lc), L in cases:
        name = f"{np.dtype(dtype).name} {'cplx' if cplx else 'real'} {disc} B={lb} C={lc} L={L}"
        try:
            kw = make_problem(rng, batch=2, dim=6, N=3, L=L, dtype=dtype, cplx=cplx,
                              B_layout=lb, C_layout=lc, G=3, state=True)
            a = dict(kw)
            pos = [a.pop(k) for k in ("u", "delta", "A", "B", "C")]
            want, wlast = selective_scan(*pos, **a, return_last_state=True,
                                         discretization=disc)
            dpos = [cp.asarray(x) for x in pos]
            dkw = {k: (cp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in a.items()}
            got, last = cs.selective_scan(*dpos, **dkw, return_last_state=True,
                                          discretization=disc)
            ok1, e1 = close(got.get(), want, TOL[dtype])
            ok2, e2 = close(last.get(), wlast, TOL[dtype])
            dout = rng.standard_normal(want.shape).astype(dtype)
            gw = selective_scan_grad(dout, *pos, **a, discretization=disc)
            gg = cs.selective_scan_grad(cp.asarray(dout), *dpos, **dkw, discretization=disc)
            gg2 = cs.selective_scan_grad(cp.asarray(dout), *dpos, **dkw, discretization=disc)
            gerr, gok, rep = {}, True, True
            for f, g, w, g2 in zip(gw._fields, gg, gw, gg2):
                if w is None:
                    continue
                ok, e = close(cp.asnumpy(g), w, GRAD_TOL[dtype])
                gok &= ok
                gerr[f] = e
                rep &= bool(np.array_equal(cp.asnumpy(g), cp.asnumpy(g2)))
            ok = ok1 and ok2 and gok and rep
            failures += not ok
            results.append(dict(case=name, ok=ok, out_err=e1, last_err=e2, grad_err=gerr,
                                bitwise_repeatable=rep))
        except Exception:
            failures += 1
            results.append(dict(case=name, ok=False, error=traceback.format_exc()[-2000:]))
    # strided input, non-default stream, unbatched
    try:
        kw = make_problem(rng, batch=2, dim=4, N=2, L=300, dtype=np.float32,
                          B_layout="shared", C_layout="shared")
        a = dict(kw)
        pos = [a.pop(k) for k in ("u", "delta", "A", "B", "C")]
        want = selective_scan(*pos, **a)
        big = cp.zeros((2, 4, 600), dtype=np.float32)
        big[..., ::2] = cp.asarray(pos[0])
        s = cp.cuda.Stream(non_blocking=True)
        with s:
            got = cs.selective_scan(big[..., ::2], *[cp.asarray(x) for x in pos[1:]],
                                    **{k: (cp.asarray(v) if isinstance(v, np.ndarray) else v)
                                       for k, v in a.items()})
        s.synchronize()
        ok, e = close(got.get(), want, TOL[np.float32])
        failures += not ok
        results.append(dict(case="strided u, non-default stream", ok=ok, out_err=e))
    except Exception:
        failures += 1
        results.append(dict(case="strided u, non-default stream", ok=False,
                            error=traceback.format_exc()[-2000:]))
    return failures


def bench(cp, out):
    from cupyx.profiler import benchmark

    from iirssm._cuda import _selective as cs

    Bt, dim, L, N = 8, 2048, 4096, 16
    rng = cp.random.default_rng(0)
    u = rng.standard_normal((Bt, dim, L), dtype=np.float32)
    delta = rng.uniform(-4, 0, (Bt, dim, L), dtype=np.float32)
    A = -cp.tile(cp.arange(1, N + 1, dtype=np.float32), (dim, 1))
    B = rng.standard_normal((Bt, N, L), dtype=np.float32)
    C = rng.standard_normal((Bt, N, L), dtype=np.float32)
    D = cp.ones(dim, dtype=np.float32)
    bias = cp.zeros(dim, dtype=np.float32)
    dout = rng.standard_normal((Bt, dim, L), dtype=np.float32)

    def ms(f):
        r = benchmark(f, n_repeat=20, n_warmup=3)
        return float(np.median(r.gpu_times) * 1e3)

    x = cp.empty(Bt * dim * L * 4, dtype=np.float32)
    y = cp.empty_like(x)
    t_copy = ms(lambda: y.__setitem__(Ellipsis, x))
    copy_bw = 2 * x.nbytes / (t_copy * 1e-3)
    fwd = ms(lambda: cs.selective_scan(u, delta, A, B, C, D, None, bias, True))
    bwd = ms(lambda: cs.selective_scan_grad(dout, u, delta, A, B, C, D, None, bias, True))
    bwd_at = ms(lambda: cs._grad(dout, u, delta, A, B, C, D, None, bias, True, None, None,
                                 "mamba", deterministic=False))
    dev = cp.cuda.runtime.getDeviceProperties(0)
    sms, clk = dev["multiProcessorCount"], dev["clockRate"] * 1e3
    elems = Bt * dim * L * N
    t_issue = elems * 14 / (32 * 4 * sms * clk)          # ~14 instructions per (b,d,n,t)
    t_sfu = elems / (16 * sms * clk)                     # one ex2 per (b,d,n,t)
    roof = max(t_issue, t_sfu) * 1e3
    io_fwd = Bt * dim * L * 3 * 4 + Bt * N * L * 2 * 4
    io_bwd = Bt * dim * L * 6 * 4 + Bt * N * L * 4 * 4
    out.update(
        device=dev["name"].decode() if isinstance(dev["name"], bytes) else str(dev["name"]),
        shape=[Bt, dim, L, N], copy_GBps=copy_bw / 1e9,
        fwd_ms=fwd, fwd_GBps=io_fwd / (fwd * 1e-3) / 1e9, fwd_bw_frac=io_fwd / (fwd * 1e-3) / copy_bw,
        fwd_alu_roofline_ms=roof, fwd_alu_frac=roof / fwd,
        bwd_ms=bwd, bwd_over_fwd=bwd / fwd, bwd_atomic_ms=bwd_at,
        bwd_GBps=io_bwd / (bwd * 1e-3) / 1e9,
        bwd_alu_frac_assuming_3x=3 * roof / bwd,
        targets=dict(fwd_ms=0.9, bwd_over_fwd=3.0))


def main():
    import _report  # gpu/_report.py: the shared JSON/table convention (gpu/README.md)

    args = _report.args("selective scan: correctness vs the CPU backend, then speed")
    if args.dry_run:
        print("selective scan: correctness sweep (dtype x states x discretisation x layouts x "
              "lengths, strided input, non-default stream); benchmark (8, 2048, 4096, 16)")
        return
    import cupy as cp

    from iirssm._cuda import _compile

    t = time.time()
    import iirssm._cuda._selective  # noqa: F401  (registers the module's instantiations)
    _compile.get_function("selective.cu", _compile.MODULES["selective.cu"][0])
    compile_s = time.time() - t
    results = []
    failures = correctness(cp, results)
    perf = {}
    if not args.quick:
        try:
            bench(cp, perf)
        except Exception:
            perf["error"] = traceback.format_exc()[-2000:]
    perf["case"] = "selective_scan (8, 2048, 4096, 16) float32"
    _report.append(args.json, "check_selective.py", correctness=results,
                   benchmarks=[perf] if not args.quick else [],
                   compile_=[{"module": "selective.cu", "seconds": compile_s,
                              "instantiations": len(_compile.MODULES["selective.cu"])}])
    p = perf
    lines = ["### selective_scan", "",
             f"correctness: {len(results) - failures}/{len(results)} cases pass; "
             f"module compile {compile_s:.1f} s", ""]
    if "fwd_ms" in p:
        lines += ["| (8, 2048, 4096, N=16) float32 | ms | GB/s | of copy BW | of ALU roofline |",
                  "|---|---|---|---|---|",
                  f"| forward | {p['fwd_ms']:.3f} | {p['fwd_GBps']:.0f} | "
                  f"{p['fwd_bw_frac']:.0%} | {p['fwd_alu_frac']:.0%} |",
                  f"| backward (deterministic) | {p['bwd_ms']:.3f} | {p['bwd_GBps']:.0f} | | "
                  f"{p['bwd_alu_frac_assuming_3x']:.0%} (3x fwd work) |",
                  f"| backward (atomics) | {p['bwd_atomic_ms']:.3f} | | | |",
                  "", f"backward / forward = {p['bwd_over_fwd']:.2f} (target <= 3); "
                  f"forward target <= 0.9 ms; device {p['device']}"]
    _report.append_table(args.table, "\n".join(lines))
    print("\n".join(lines))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
