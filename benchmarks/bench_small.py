"""Benchmark the cost of one call on small inputs: iirssm against scipy.signal and pandas.

Run from the repository root::

    python benchmarks/bench_small.py                 # a minute or two
    python benchmarks/bench_small.py --quick         # fewer repeats, smoke test
    python benchmarks/bench_small.py --write docs/performance.md

On a signal of a thousand samples the filtering itself takes a few
microseconds; what a call costs is its Python front-end (argument checks, dtype
rules, the choice of kernel) and the dispatch into compiled code. These cases
measure that, for the functions people call in loops over short segments:
``lfilter`` (with and without ``zi``), ``sosfilt``, ``filtfilt``,
``sosfiltfilt``, ``sosfilt_zi`` and ``ema`` (against ``pandas.Series.ewm``), on
one signal of 1000 samples and on 64 such signals along either axis.

Each timing is one batch of calls (enough for about 20 ms), divided by the
batch size: a single call is shorter than the resolution of the load
accounting. Batches are timed round-robin with bench_ema.py's harness (median
with min–max, cases re-run when other processes were busy), after a check that
iirssm and its peer agree.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ema as H  # noqa: E402  (shared harness; also puts the checkout on sys.path)
from bench_iir import arg_parser, write_section  # noqa: E402

import iirssm  # noqa: E402

START = "<!-- bench_small:start -->"
END = "<!-- bench_small:end -->"
FULL = {"min_reps": 5, "max_reps": 15, "budget": 1.5, "batch_s": 0.02}
QUICK = {"min_reps": 3, "max_reps": 3, "budget": 0.1, "batch_s": 0.005}


def _batched(fn, batch_s):
    """``fn`` repeated so that one batch takes about ``batch_s``; ``(batch, n)``."""
    fn()
    t0 = time.perf_counter()
    fn()
    n = max(1, int(batch_s / max(time.perf_counter() - t0, 1e-7)))

    def batch():
        for _ in range(n):
            fn()
    return batch, n


def build_case(key, title, calls, ratios, check, cfg):
    """``calls``: label -> function of no arguments; ``check``: (mine, peer) labels whose
    results must agree; ``ratios``: (mine, peer) label pairs."""
    def build():
        case = H.Case(key, title, np.float64, 1)
        for mine, peer in check:
            a, b = calls[mine](), calls[peer]()
            a = a[0] if isinstance(a, tuple) else a
            b = b[0] if isinstance(b, tuple) else b
            err = H.check_close(np.asarray(a), np.asarray(b), np.float64,
                                max(H._rms(np.asarray(b)), 1e-300), mine)
            if err:
                case.errors[mine] = err
        case.batch = {}
        for label, fn in calls.items():
            batch, n = _batched(fn, cfg["batch_s"])
            case.add(label, batch)
            case.batch[label] = n
        case.ratios += [(m, p, "peer") for m, p in ratios]
        return case
    return build


def cases(cfg):
    import pandas as pd
    import scipy.signal as ss

    rng = np.random.default_rng(5)
    b, a = ss.butter(4, 0.1)
    sos = ss.butter(4, 0.1, output="sos")
    one = rng.standard_normal(1000)
    rows = rng.standard_normal((64, 1000))
    cols = np.ascontiguousarray(rows.T)
    zi = ss.lfilter_zi(b, a) * one[0]
    series = pd.Series(one)
    out = []
    for key, title, x, axis in (("one", "one signal of 1000", one, -1),
                                ("rows", "(64, 1000) axis -1", rows, -1),
                                ("cols", "C-ordered (1000, 64) axis 0", cols, 0)):
        pairs = [
            ("lfilter", lambda x=x, axis=axis: iirssm.lfilter(b, a, x, axis=axis),
             lambda x=x, axis=axis: ss.lfilter(b, a, x, axis=axis)),
            ("sosfilt", lambda x=x, axis=axis: iirssm.sosfilt(sos, x, axis=axis),
             lambda x=x, axis=axis: ss.sosfilt(sos, x, axis=axis)),
            ("filtfilt", lambda x=x, axis=axis: iirssm.filtfilt(b, a, x, axis=axis),
             lambda x=x, axis=axis: ss.filtfilt(b, a, x, axis=axis)),
            ("sosfiltfilt", lambda x=x, axis=axis: iirssm.sosfiltfilt(sos, x, axis=axis),
             lambda x=x, axis=axis: ss.sosfiltfilt(sos, x, axis=axis)),
        ]
        if key == "one":
            pairs.insert(1, ("lfilter with zi", lambda: iirssm.lfilter(b, a, one, zi=zi),
                             lambda: ss.lfilter(b, a, one, zi=zi)))
        for name, mine, peer in pairs:
            m, p = f"iirssm.{name}", f"scipy.signal.{name}"
            out.append(build_case(f"{key}-{name}", f"{title}, butter(4) {name}",
                                  {m: mine, p: peer}, [(m, p)], [(m, p)], cfg))
    out.append(build_case("sosfilt_zi", "butter(4) sosfilt_zi",
                          {"iirssm.sosfilt_zi": lambda: iirssm.sosfilt_zi(sos),
                           "scipy.signal.sosfilt_zi": lambda: ss.sosfilt_zi(sos)},
                          [("iirssm.sosfilt_zi", "scipy.signal.sosfilt_zi")],
                          [("iirssm.sosfilt_zi", "scipy.signal.sosfilt_zi")], cfg))
    for adjust in (False, True):
        m_np, m_pd = f"iirssm.ema(x, alpha=0.1, adjust={adjust})", \
            f"iirssm.ema(series, alpha=0.1, adjust={adjust})"
        peer = f"series.ewm(alpha=0.1, adjust={adjust}).mean()"
        out.append(build_case(
            f"ema-{adjust}", f"one signal of 1000, ema adjust={adjust}",
            {m_np: lambda adjust=adjust: iirssm.ema(one, alpha=0.1, adjust=adjust),
             m_pd: lambda adjust=adjust: iirssm.ema(series, alpha=0.1, adjust=adjust),
             peer: lambda adjust=adjust: series.ewm(alpha=0.1, adjust=adjust).mean()},
            [(m_np, peer), (m_pd, peer)], [(m_np, peer)], cfg))
    return out


def per_call_ratio(case, mine, peer):
    """The peer's median time per call / iirssm's (None when either is wrong)."""
    if mine in case.errors or peer in case.errors:
        return None
    per = {k: case.results[k]["median"] / case.batch[k] for k in (mine, peer)}
    return per[peer] / per[mine]


def render(done, info, args, elapsed):
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L = [START, "", f"## `bench_small.py`: one call on small inputs ({when})", "",
         f"- Command: `python benchmarks/bench_small.py{' --quick' if args.quick else ''} "
         "--write docs/performance.md`",
         f"- Machine: {info['cpu']}, {info['cores']} cores, Numba threads "
         f"{info['numba_threads']}; Python {info['python']}, NumPy {info['numpy']}, SciPy "
         f"{info['scipy']}, pandas {info.get('pandas', '?')}, Numba {info['numba']}; iirssm "
         f"sources `{info['source']}`",
         "- Method: batches of calls (about 20 ms each) timed round-robin with bench_ema.py's "
         "harness; times are per call: median with min–max over the batches. Wall time "
         f"{elapsed / 60:.1f} min.",
         "- Ratio: the peer's time / iirssm's (above 1: iirssm is faster).", "",
         "| case | implementation | median µs | min–max µs | ratio |",
         "|---|---|---:|---:|---:|"]
    for c in done:
        for k, s in c.results.items():
            n = c.batch[k]
            bad = " (WRONG)" if k in c.errors else ""
            rat = [per_call_ratio(c, m, o) for m, o, _ in c.ratios if m == k]
            rtxt = f"{rat[0]:.2f}" if rat and rat[0] is not None else ""
            L.append(f"| {c.title} | `{k}`{bad} | {s['median'] / n * 1e6:.1f} | "
                     f"{s['min'] / n * 1e6:.1f}–{s['max'] / n * 1e6:.1f} | {rtxt} |")
    L += ["", END]
    return "\n".join(L) + "\n"


def main(argv=None):
    args = arg_parser(__doc__).parse_args(argv)
    cfg = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    done = []
    for build in cases(cfg):
        best = None
        for attempt in range(1 + args.retries):       # run_with_retries, keeping the batches
            case = build()
            H.wait_quiet(args, case.title)
            case.run(cfg)
            case.impls = {}
            if best is None or case.other_load < best.other_load:
                best = case
            if case.other_load <= args.busy:
                break
        done.append(best)
        for k, s in best.results.items():
            print(f"{best.title:48s} {k:52s} {s['median'] / best.batch[k] * 1e6:8.1f} us"
                  + ("  WRONG: " + best.errors[k] if k in best.errors else ""), flush=True)
    info = H.machine_info()
    try:
        import pandas
        info["pandas"] = pandas.__version__
    except ImportError:  # pragma: no cover
        pass
    section = render(done, info, args, time.perf_counter() - t0)
    print(section)
    if args.write:
        write_section(args.write, section, START, END)
    return 1 if any(c.errors for c in done) else 0


if __name__ == "__main__":
    sys.exit(main())
