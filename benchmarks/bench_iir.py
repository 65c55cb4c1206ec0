"""Benchmark the scipy drop-ins ``iirssm.lfilter`` / ``iirssm.sosfilt`` against scipy.signal.

Run from the repository root::

    python benchmarks/bench_iir.py                 # full sizes
    python benchmarks/bench_iir.py --quick         # small sizes, smoke test
    python benchmarks/bench_iir.py --write docs/performance.md

Cases (float64): Butterworth low-pass filters of order 4 and 8, as a transfer
function (``lfilter``) and as second-order sections (``sosfilt``), on (64, 10^6)
along axis -1, C-ordered (10^6, 64) along axis 0 and one channel of 10^7; and
a time-varying ``sosfilt`` (a different set of sections at every sample) against
the fixed one. Each case first checks that iirssm agrees with scipy, then times
every implementation round-robin (median of repeats, with min–max), with two
memory-copy floors: ``x.copy()`` (one thread) and a copy into a fresh array by
all of Numba's threads (``parallel_copy``), the least any call that returns a
new array can cost with iirssm's threads: most of ``x.copy()``'s time is the
kernel's first-touch page faults of the new array, which the threaded copy
shares between the cores. The timing machinery (round-robin calls,
waiting for a quiet machine, re-running disturbed cases) is ``bench_ema.py``'s.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ema as H  # noqa: E402  (shared harness; also puts the checkout on sys.path)

import iirssm  # noqa: E402

PAR_COPY = "parallel_copy(x)"


def parallel_copy(x):
    """``x.copy()`` of a C-contiguous array, by all of Numba's threads (first touch included)."""
    out = np.empty_like(x)
    _par_copy(x.reshape(-1), out.reshape(-1))
    return out


@numba.njit(parallel=True, cache=True)
def _par_copy(src, dst):
    for i in numba.prange(src.shape[0]):      # one contiguous range per thread
        dst[i] = src[i]

START = "<!-- bench_iir:start -->"
END = "<!-- bench_iir:end -->"
FULL = {"rows": (64, 10**6), "cols": (10**6, 64), "one": 10**7, "tv": (64, 2 * 10**5),
        "min_reps": 3, "max_reps": 9, "budget": 4.0}
QUICK = {"rows": (64, 10**4), "cols": (10**4, 64), "one": 10**5, "tv": (64, 10**4),
         "min_reps": 3, "max_reps": 3, "budget": 0.3}


def build_filter(kind, order, title, shape, axis, seed):
    import scipy.signal as ss

    def build():
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape)
        case = H.Case(f"{kind}{order}-{title}", f"{title}, butter({order}) {kind}", np.float64,
                      x.size)
        if kind == "lfilter":
            b, a = ss.butter(order, 0.1)
            mine = f"iirssm.lfilter(b, a, x, axis={axis})"
            peer = f"scipy.signal.lfilter(b, a, x, axis={axis})"
            fm = lambda: iirssm.lfilter(b, a, x, axis=axis)  # noqa: E731
            fp = lambda: ss.lfilter(b, a, x, axis=axis)  # noqa: E731
        else:
            sos = ss.butter(order, 0.1, output="sos")
            mine = f"iirssm.sosfilt(sos, x, axis={axis})"
            peer = f"scipy.signal.sosfilt(sos, x, axis={axis})"
            fm = lambda: iirssm.sosfilt(sos, x, axis=axis)  # noqa: E731
            fp = lambda: ss.sosfilt(sos, x, axis=axis)  # noqa: E731
        err = H.check_close(fm(), fp(), np.float64, H._rms(x), mine)
        if err:
            case.errors[mine] = err
        case.add(mine, fm)
        case.add(peer, fp)
        case.add("x.copy()", x.copy)
        case.add(PAR_COPY, lambda: parallel_copy(x))
        case.ratios += [(mine, peer, "peer"), (mine, "x.copy()", "floor"),
                        (mine, PAR_COPY, "floor")]
        return case
    return build


def build_time_varying(shape, seed):
    import scipy.signal as ss

    def build():
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape)
        L = shape[-1]
        sos = ss.butter(4, 0.1, output="sos")
        # a low-pass whose cut-off sweeps 0.05 -> 0.3 of Nyquist, one set of sections per sample
        sweep = np.stack([ss.butter(4, f, output="sos") for f in np.linspace(0.05, 0.3, 64)], -1)
        idx = np.minimum((np.arange(L) * 64) // L, 63)
        tv = np.ascontiguousarray(sweep[..., idx])           # (2, 6, L)
        case = H.Case("sos-tv", f"({shape[0]}, {L}) axis -1, butter(4) sosfilt", np.float64,
                      x.size)
        fixed, varying = "iirssm.sosfilt(sos, x) (fixed)", "iirssm.sosfilt(sos_t, x) (time-varying)"
        const_tv = np.ascontiguousarray(np.repeat(sos[..., None], L, axis=-1))
        err = H.check_close(iirssm.sosfilt(const_tv, x), ss.sosfilt(sos, x), np.float64,
                            H._rms(x), "time-varying with constant sections vs scipy")
        if err:
            case.errors[varying] = err
        case.add(fixed, lambda: iirssm.sosfilt(sos, x))
        case.add(varying, lambda: iirssm.sosfilt(tv, x))
        case.add("scipy.signal.sosfilt(sos, x)", lambda: ss.sosfilt(sos, x))
        case.ratios += [(varying, fixed, "floor"), (fixed, "scipy.signal.sosfilt(sos, x)", "peer")]
        return case
    return build


def render(cases, info, args, elapsed):
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L = [START, "", f"## `bench_iir.py`: lfilter and sosfilt against scipy ({when})", "",
         f"- Command: `python benchmarks/bench_iir.py{' --quick' if args.quick else ''} "
         f"--write docs/performance.md`",
         f"- Machine: {info['cpu']}{' (AVX-512)' if info['avx512'] else ''}, {info['cores']} "
         f"cores, Numba threads {info['numba_threads']}; Python {info['python']}, NumPy "
         f"{info['numpy']}, SciPy {info['scipy']}, Numba {info['numba']}; iirssm sources "
         f"`{info['source']}`",
         "- Method: bench_ema.py's harness (round-robin calls, median with min–max, cases "
         "re-run when other processes were busy). scipy runs on one thread, iirssm on "
         f"{info['numba_threads']}. Wall time {elapsed / 60:.1f} min.",
         "- Ratios: *x faster* = scipy time / iirssm time; for the time-varying row, "
         "time-varying time / fixed time.", "",
         "| case | implementation | median ms | min–max ms | ns/sample |", "|---|---|---:|---:|---:|"]
    for c in cases:
        for k, s in c.results.items():
            bad = " (WRONG)" if k in c.errors else ""
            L.append(f"| {c.title} | `{k}`{bad} | {H._ms(s['median'])} | {H._ms(s['min'])}–"
                     f"{H._ms(s['max'])} | {s['median'] / c.nelem * 1e9:.2f} |")
    L += ["", "| case | ratio | value | other load (cores) |", "|---|---|---:|---:|"]
    for c in cases:
        for mine, other, kind in c.ratios:
            r = H._ratio(c, mine, other, kind)
            txt = "n/a" if r is None else (f"{r:.2f}x faster" if kind == "peer" else f"{r:.2f}x")
            L.append(f"| {c.title} | `{mine}` vs `{other}` | {txt} | {c.other_load:.2f} |")
    L += ["", END]
    return "\n".join(L) + "\n"


def write_section(path, section, start=START, end=END):
    """Replace the text between the ``start`` and ``end`` markers of ``path`` (or append)."""
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Performance\n"
    i, j = text.find(start), text.find(end)
    if i >= 0 and j > i:
        text = text[:i] + section.rstrip("\n") + text[j + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def arg_parser(doc):
    """The options of bench_iir.py and bench_small.py (see bench_ema.py for the waiting)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--write", metavar="PATH")
    p.add_argument("--max-wait", type=float, default=60.0)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--busy", type=float, default=0.15)
    return p


def main(argv=None):
    args = arg_parser(__doc__).parse_args(argv)
    cfg = QUICK if args.quick else FULL
    t0 = _dt.datetime.now().timestamp()
    cases = []
    for kind in ("lfilter", "sosfilt"):
        for order in (4, 8):
            R, C = cfg["rows"]
            cases.append(H.run_with_retries(
                build_filter(kind, order, f"({R}, {C}) axis -1", cfg["rows"], -1, 1), cfg, args))
            cases.append(H.run_with_retries(
                build_filter(kind, order, f"C-ordered ({cfg['cols'][0]}, {cfg['cols'][1]}) axis 0",
                             cfg["cols"], 0, 2), cfg, args))
            cases.append(H.run_with_retries(
                build_filter(kind, order, f"one channel of {cfg['one']}", (cfg["one"],), -1, 3),
                cfg, args))
    cases.append(H.run_with_retries(build_time_varying(cfg["tv"], 4), cfg, args))
    elapsed = _dt.datetime.now().timestamp() - t0
    section = render(cases, H.machine_info(), args, elapsed)
    print(section)
    if args.write:
        write_section(args.write, section)
    return 1 if any(c.errors for c in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
