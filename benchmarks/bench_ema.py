"""Benchmark ``iirssm.ema`` / ``iirssm.linear_recurrence`` against their peers.

Run from the repository root::

    python benchmarks/bench_ema.py                 # full sizes (a few minutes)
    python benchmarks/bench_ema.py --quick         # small sizes, smoke test
    python benchmarks/bench_ema.py --write docs/performance.md

Everything is timed in one process, float64 and float32 (pandas: float64
only), as the median of repeated calls with the spread (min-max and IQR).
The implementations of a case are called round-robin, so a change in
background load hits all of them alike. Before any timing each case checks
that iirssm and its peer agree (``np.testing.assert_allclose``; rtol 1e-9 for
float64, 1e-4 for float32, with ``atol = rtol * rms(x)`` so that values
crossing zero do not fail on relative error alone); a case that disagrees is
reported as WRONG, gets no ratio, and the script exits with status 1.

Peers: ``scipy.signal.lfilter([alpha], [1, alpha - 1], x, zi=(1 - alpha) * x[0])``
(which equals ``ema(..., adjust=False)``; float32 runs get float32 coefficients
so that scipy computes in float32), ``pandas.DataFrame.ewm(...).mean()``, and
the memory floor: ``x.copy()`` for a fresh output, ``np.copyto(buf, x)`` for a
reused one.

Startup (``import iirssm``; first call in a new process with a warm Numba
cache) and peak memory (``VmHWM``, reset before the call, in a fresh process)
are measured in subprocesses.

The machine is shared: before each case the script waits (``--max-wait``) until
other processes use less than ``--busy`` cores (read from ``/proc/stat``); a
single call during which other processes took CPU is dropped and repeated; a
case whose average disturbance still exceeds ``--busy`` is re-run (``--retries``)
and the quietest run kept. ``--json`` saves every timing; ``--only PARTS
--merge OLD.json`` re-runs some parts and takes the others from an earlier run
(the section lists every command that contributed, with the package's source
hash at the time).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import hashlib
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, REPO)

import iirssm

ALPHA = 0.1
START = "<!-- bench_ema:start -->"
END = "<!-- bench_ema:end -->"
VERBOSE = False
RTOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}

FULL = {"rows": (64, 10**6), "cols": (10**6, 64), "one": 10**7, "pandas": (10**6, 64),
        "linrec": (64, 10**6), "min_reps": 5, "max_reps": 21, "budget": 4.0}
QUICK = {"rows": (64, 10**5), "cols": (10**5, 64), "one": 10**6, "pandas": (10**5, 64),
         "linrec": (64, 10**5), "min_reps": 3, "max_reps": 5, "budget": 0.5}


# =========================================================================== helpers

def _subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _cpu_snapshot():
    """(wall, busy CPU s of the machine, this process's CPU s, CPU s stolen by the hypervisor)."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        with open("/proc/stat") as f:
            v = [int(s) for s in f.readline().split()[1:]]
        busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / tick  # user nice system irq softirq
        steal = v[7] / tick if len(v) > 7 else 0.0
    except (OSError, ValueError, IndexError):  # not Linux: no load accounting
        busy = steal = float("nan")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = ru.ru_utime + ru.ru_stime + ch.ru_utime + ch.ru_stime
    return time.perf_counter(), busy, own, steal


def _other_load(s0, s1) -> float:
    """Average number of cores used by other processes (or stolen) between two snapshots."""
    wall = s1[0] - s0[0]
    if wall <= 0:
        return 0.0
    return max(0.0, ((s1[1] - s0[1]) - (s1[2] - s0[2])) / wall) + (s1[3] - s0[3]) / wall


def _steal(s0, s1) -> float:
    wall = s1[0] - s0[0]
    return (s1[3] - s0[3]) / wall if wall > 0 else 0.0


def check_close(actual, desired, dtype, scale, what):
    """assert_allclose in chunks (no full-size temporaries); returns None or an error text."""
    rtol = RTOL[np.dtype(dtype)]
    a = np.asarray(actual).reshape(-1)
    d = np.asarray(desired).reshape(-1)
    if a.shape != d.shape:
        return f"{what}: shapes differ, {a.shape} vs {d.shape}"
    step = 1 << 22
    try:
        for i in range(0, a.size, step):
            np.testing.assert_allclose(a[i:i + step], d[i:i + step], rtol=rtol,
                                       atol=rtol * scale, err_msg=what)
    except AssertionError as exc:
        return str(exc).strip().splitlines()[0] + " ... " + " ".join(str(exc).split()[-12:])
    return None


def _rms(x) -> float:
    x = np.asarray(x).reshape(-1)
    sample = x[:: max(1, x.size // 100000)].astype(np.float64)
    return float(np.sqrt(np.mean(sample * sample)))


def _time_once(fn):
    """(seconds, CPU seconds other processes used meanwhile) of one call."""
    s0 = _cpu_snapshot()
    t0 = time.perf_counter()
    r = fn()
    t1 = time.perf_counter()
    s1 = _cpu_snapshot()
    del r
    other = ((s1[1] - s0[1]) - (s1[2] - s0[2])) + (s1[3] - s0[3])
    return t1 - t0, other


def _disturbed(dt, other) -> bool:
    # /proc/stat counts in ticks (10 ms per core), hence the absolute allowance.
    return other > max(0.012, 0.25 * dt)


def time_round_robin(impls: dict, cfg) -> tuple:
    """Time every implementation, interleaved; repeats chosen from a first timing.

    A call during which other processes took CPU (see ``_disturbed``) is repeated
    rather than counted, up to three times the wanted number of calls: on two
    cores, a 2-thread kernel waits for whichever thread another process preempts.
    Returns ``(times, dropped)``.
    """
    times = {k: [] for k in impls}
    dropped = {k: [] for k in impls}
    for _ in range(2):  # two rounds: one slow first call (page faults) must not set the count
        for k, fn in impls.items():
            dt, other = _time_once(fn)
            (dropped if _disturbed(dt, other) else times)[k].append(dt)
    first = {k: min(times[k] + dropped[k]) for k in impls}
    want = {k: int(min(cfg["max_reps"], max(cfg["min_reps"], cfg["budget"] / max(t, 1e-6))))
            for k, t in first.items()}

    def more(k):
        return len(times[k]) < want[k] and len(times[k]) + len(dropped[k]) < 3 * want[k]

    while any(more(k) for k in impls):
        for k, fn in impls.items():
            if more(k):
                dt, other = _time_once(fn)
                (dropped if _disturbed(dt, other) else times)[k].append(dt)
    for k in impls:
        if len(times[k]) < 3:  # persistently disturbed: report everything, flagged by `dropped`
            times[k] = times[k] + dropped[k]
    return times, {k: len(v) for k, v in dropped.items()}


def stats(ts) -> dict:
    a = np.asarray(ts)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median": float(med), "min": float(a.min()), "max": float(a.max()),
            "q1": float(q1), "q3": float(q3), "n": int(a.size)}


class Case:
    """One benchmark case: implementations, their roles, and which ratios to report."""

    def __init__(self, key, title, dtype, nelem):
        self.key, self.title, self.dtype, self.nelem = key, title, np.dtype(dtype), nelem
        self.impls = {}          # label -> callable
        self.errors = {}         # label -> mismatch text
        self.ratios = []         # (iirssm label, other label, "peer" | "floor")
        self.results = {}        # label -> stats
        self.raw = {}            # label -> every timing, seconds
        self.other_load = float("nan")
        self.attempts = 0
        self.when = ""           # UTC time the case was timed
        self.steal = 0.0         # cores stolen by the hypervisor (part of other_load)

    def add(self, label, fn):
        self.impls[label] = fn

    def run(self, cfg):
        gc.collect()
        was = gc.isenabled()
        gc.disable()
        try:
            s0 = _cpu_snapshot()
            times, dropped = time_round_robin(self.impls, cfg)
            s1 = _cpu_snapshot()
        finally:
            if was:
                gc.enable()
        self.results = {k: dict(stats(v), dropped=dropped[k]) for k, v in times.items()}
        self.raw = {k: [float(t) for t in v] for k, v in times.items()}
        self.other_load = _other_load(s0, s1)
        self.steal = _steal(s0, s1)
        self.when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")

    def to_dict(self):
        return {"key": self.key, "title": self.title, "dtype": self.dtype.name,
                "nelem": self.nelem, "results": self.results, "raw": self.raw,
                "ratios": [[m, o, k, _ratio(self, m, o, k)] for m, o, k in self.ratios],
                "errors": self.errors, "other_load": self.other_load,
                "attempts": self.attempts, "when": self.when, "steal": self.steal}

    @classmethod
    def from_dict(cls, d):
        c = cls(d["key"], d["title"], d["dtype"], d["nelem"])
        c.results, c.raw, c.errors = d["results"], d["raw"], d["errors"]
        c.ratios = [tuple(r[:3]) for r in d["ratios"]]
        c.other_load, c.attempts, c.when = d["other_load"], d["attempts"], d.get("when", "")
        c.steal = d.get("steal", 0.0)
        return c


def wait_quiet(args, what):
    """Wait (up to ``--max-wait`` s) until other processes use less than ``--busy`` cores."""
    t0 = time.perf_counter()
    while True:
        s0 = _cpu_snapshot()
        time.sleep(1.0)
        load = _other_load(s0, _cpu_snapshot())
        waited = time.perf_counter() - t0
        if load < args.busy:
            if waited > 1.5:
                print(f"  [{what}] waited {waited:.0f} s for other processes to finish",
                      flush=True)
            return
        if waited > args.max_wait:
            print(f"  [{what}] other processes still use {load:.2f} cores after "
                  f"{waited:.0f} s; timing anyway", flush=True)
            return


def run_with_retries(build, cfg, args):
    """``build()`` makes a Case (arrays, checks); time it, re-running if the machine was busy."""
    best = None
    for attempt in range(1 + args.retries):
        case = build()
        wait_quiet(args, f"{case.title} {case.dtype}")
        case.run(cfg)
        case.impls = {}          # drop the closures, and with them the case's arrays
        gc.collect()
        if best is None or case.other_load < best.other_load:
            best = case
        best.attempts = attempt + 1
        if case.other_load <= args.busy or attempt == args.retries:
            break
        print(f"  [{case.title} {case.dtype}] other processes used {case.other_load:.2f} "
              f"cores; re-running", flush=True)
    _print_case(best)
    return best


def _print_case(case):
    print(f"\n{case.title} [{case.dtype}]  (other load {case.other_load:.2f} cores, of which "
          f"stolen {case.steal:.2f}, "
          f"attempts {case.attempts})", flush=True)
    for k, s in case.results.items():
        ns = s["median"] / case.nelem * 1e9
        err = "  WRONG: " + case.errors[k] if k in case.errors else ""
        print(f"  {k:<48s} {s['median'] * 1e3:9.2f} ms  [{s['min'] * 1e3:.2f}-"
              f"{s['max'] * 1e3:.2f}]  {ns:6.2f} ns/sample  n={s['n']} "
              f"(dropped {s.get('dropped', 0)}){err}", flush=True)
    if VERBOSE:
        for k, v in case.raw.items():
            print(f"  raw ms {k}: " + " ".join(f"{t * 1e3:.2f}" for t in v))
    for mine, other, kind in case.ratios:
        r = _ratio(case, mine, other, kind)
        if r is not None:
            word = "x faster" if kind == "peer" else "x the floor"
            print(f"  -> {mine} vs {other}: {r:.2f} {word}", flush=True)


def _ratio(case, mine, other, kind):
    if mine in case.errors or other in case.errors:
        return None
    m, o = case.results[mine]["median"], case.results[other]["median"]
    return o / m if kind == "peer" else m / o


# =========================================================================== cases

def _lfilter_args(x, axis, dtype):
    """b, a, zi making lfilter equal to ema(..., adjust=False) (y[0] = x[0])."""
    b = np.array([ALPHA], dtype=dtype)
    a = np.array([1.0, ALPHA - 1.0], dtype=dtype)
    first = np.take(x, [0], axis=axis)
    zi = ((1.0 - ALPHA) * first).astype(dtype)
    return b, a, zi


def build_fixed(key, title, shape, axis, dtype, seed):
    """ema with a fixed alpha vs lfilter vs copy, on an array of ``shape`` along ``axis``."""
    from scipy.signal import lfilter

    def build():
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape, dtype=dtype)
        case = Case(key, title, dtype, x.size)
        buf = np.empty_like(x)
        b, a, zi = _lfilter_args(x, axis, dtype)
        scale = _rms(x)
        ema_l, out_l = "iirssm.ema(x, alpha=0.1)", "iirssm.ema(x, alpha=0.1, out=buf)"
        lf_l = "scipy.signal.lfilter (zi from x[0])"
        cp_l, ct_l = "x.copy()", "np.copyto(buf, x)"
        # warm-up (Numba compiles or loads its cache) and checks
        y = iirssm.ema(x, alpha=ALPHA, axis=axis)
        if y.dtype != x.dtype:
            case.errors[ema_l] = f"returned {y.dtype} for {x.dtype} input"
        yp = lfilter(b, a, x, axis=axis, zi=zi)[0]
        if yp.dtype != x.dtype:
            raise RuntimeError(f"lfilter computed in {yp.dtype}, not {x.dtype}")
        err = check_close(y, yp, dtype, scale, f"ema vs lfilter {title} {dtype}")
        if err:
            case.errors[ema_l] = err
        del yp
        iirssm.ema(x, alpha=ALPHA, axis=axis, out=buf)
        err = check_close(buf, y, dtype, scale, f"ema out= vs ema {title} {dtype}")
        if err:
            case.errors[out_l] = err
        del y
        case.add(ema_l, lambda: iirssm.ema(x, alpha=ALPHA, axis=axis))
        case.add(out_l, lambda: iirssm.ema(x, alpha=ALPHA, axis=axis, out=buf))
        case.add(lf_l, lambda: lfilter(b, a, x, axis=axis, zi=zi))
        case.add(cp_l, lambda: x.copy())
        case.add(ct_l, lambda: np.copyto(buf, x))
        case.ratios = [(ema_l, lf_l, "peer"), (out_l, lf_l, "peer"),
                       (ema_l, cp_l, "floor"), (out_l, ct_l, "floor")]
        return case
    return build


def build_linrec(key, title, shape, dtype, seed):
    """linear_recurrence with one decay per sample: no scipy peer, so against copy only."""

    def build():
        rng = np.random.default_rng(seed)
        a = rng.random(shape, dtype=dtype)
        a *= 0.5
        a += 0.5                     # decays in [0.5, 1)
        b = rng.standard_normal(shape, dtype=dtype)
        case = Case(key, title, dtype, b.size)
        buf = np.empty_like(b)
        lr_l, out_l = "iirssm.linear_recurrence(a, b)", "iirssm.linear_recurrence(a, b, out=buf)"
        cp_l, ct_l = "b.copy()", "np.copyto(buf, b)"
        h = iirssm.linear_recurrence(a, b)
        # reference on a prefix (a causal recurrence's prefix is the recurrence of the prefix)
        n = min(shape[-1], 20000)
        ref = np.empty((shape[0], n), dtype=dtype)
        s = np.zeros(shape[0], dtype=dtype)
        for t in range(n):
            s = a[:, t] * s + b[:, t]
            ref[:, t] = s
        err = check_close(np.ascontiguousarray(h[:, :n]), ref, dtype, _rms(ref),
                          f"linear_recurrence vs NumPy loop {dtype}")
        if err:
            case.errors[lr_l] = err
        iirssm.linear_recurrence(a, b, out=buf)
        err = check_close(buf, h, dtype, _rms(ref), f"linear_recurrence out= {dtype}")
        if err:
            case.errors[out_l] = err
        del h, ref
        case.add(lr_l, lambda: iirssm.linear_recurrence(a, b))
        case.add(out_l, lambda: iirssm.linear_recurrence(a, b, out=buf))
        case.add(cp_l, lambda: b.copy())
        case.add(ct_l, lambda: np.copyto(buf, b))
        case.ratios = [(lr_l, cp_l, "floor"), (out_l, ct_l, "floor")]
        return case
    return build


def make_frame(shape, seed):
    import pandas as pd
    rng = np.random.default_rng(seed)
    n, k = shape
    # irregular sampling: mostly 1-120 s apart, with occasional gaps of hours
    gaps = rng.integers(1, 121, size=n).astype(np.int64)
    gaps[rng.random(n) < 1e-3] *= 300
    stamps = np.datetime64("2024-01-01T00:00:00", "ns") + np.cumsum(gaps).astype("timedelta64[s]")
    idx = pd.DatetimeIndex(stamps.astype("datetime64[ns]"), name="time")
    df = pd.DataFrame(rng.standard_normal((n, k)), index=idx,
                      columns=[f"c{i}" for i in range(k)])
    return df


def build_pandas(key, title, df, adjust, with_times):
    def build():
        idx = df.index
        case = Case(key, title, np.float64, df.size)
        if with_times:
            pd_l = f'df.ewm(halflife="1h", times=idx, adjust={adjust}).mean()'
            my_l = f'iirssm.ema(df, halflife="1h", times=idx, adjust={adjust})'

            def peer():
                return df.ewm(halflife="1h", times=idx, adjust=adjust).mean()

            def mine():
                return iirssm.ema(df, halflife="1h", times=idx, adjust=adjust)
        else:
            pd_l = f"df.ewm(alpha=0.1, adjust={adjust}).mean()"
            my_l = f"iirssm.ema(df, alpha=0.1, adjust={adjust})"

            def peer():
                return df.ewm(alpha=ALPHA, adjust=adjust).mean()

            def mine():
                return iirssm.ema(df, alpha=ALPHA, adjust=adjust)
        cp_l = "df.copy()"
        y = mine()
        yp = peer()
        if type(y) is not type(df) or not y.index.equals(df.index) \
                or not y.columns.equals(df.columns):
            case.errors[my_l] = f"returned {type(y).__name__} without df's index/columns"
        err = check_close(y.to_numpy(), yp.to_numpy(), np.float64, 1.0,
                          f"ema vs pandas {title}")
        if err:
            case.errors[my_l] = err
        del y, yp
        case.add(my_l, mine)
        case.add(pd_l, peer)
        case.add(cp_l, lambda: df.copy())
        case.ratios = [(my_l, pd_l, "peer"), (my_l, cp_l, "floor")]
        return case
    return build


# =========================================================================== subprocesses

def _py(code, *argv, timeout=300):
    r = subprocess.run([sys.executable, "-c", code, *map(str, argv)], env=_subprocess_env(),
                       cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"subprocess failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout.strip().splitlines()[-1]


IMPORT_CODE = """
import sys, time, json
t = time.perf_counter()
import iirssm
dt = time.perf_counter() - t
mods = {m: m in sys.modules for m in ("scipy", "scipy.signal", "pandas", "numba")}
print(json.dumps({"t": dt, "mods": mods}))
"""

FIRST_CALL_CODE = ("import time; t=time.perf_counter(); import iirssm, numpy as np; "
                   "iirssm.ema(np.ones((4,100)), alpha=0.1); print(time.perf_counter()-t)")

MEMORY_CODE = """
import gc, json, resource, sys
import numpy as np
import iirssm

variant, P, L = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

def maxrss():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec (a child of a
    # large parent would report the parent's size)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

def call(x, out=None):
    n = x.shape[-1]
    if variant == "times":
        t = np.datetime64("2024-01-01", "ns") + (np.arange(n) * 7919 % 97 + np.arange(n) * 60
                                                  ).astype("timedelta64[s]")
        return iirssm.ema(x, halflife=np.timedelta64(1, "h"), times=t, out=out)
    if variant == "adjust":
        return iirssm.ema(x, alpha=0.1, adjust=True, out=out)
    return iirssm.ema(x, alpha=0.1, out=out)

x = np.empty((P, L))
np.random.default_rng(0).standard_normal(x.shape, out=x)
buf = np.empty_like(x) if variant == "out" else None
if buf is not None:
    buf.fill(0.0)
# load/compile the kernels this shape uses (8 full-length rows take the same paths;
# a view, and out= into a view of buf, so that the warm-up allocates as little as possible)
call(x[:8], out=None if buf is None else buf[:8])
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")                   # reset VmHWM to the current RSS: earlier peaks do not count
r0, m0 = rss(), maxrss()
y = call(x, out=buf)
m1 = maxrss()
print(json.dumps({"rss_before": r0, "maxrss_before": m0, "maxrss_after": m1,
                  "nbytes": x.nbytes}))
"""


def measure_startup(args):
    res = {}
    runs = [json.loads(_py(IMPORT_CODE)) for _ in range(1 + args.startup_runs)]
    ts = [r["t"] for r in runs[1:]]
    res["import"] = dict(stats(ts), mods=runs[-1]["mods"], first=runs[0]["t"])
    calls = [float(_py(FIRST_CALL_CODE)) for _ in range(1 + args.startup_runs)]
    res["first_call"] = dict(stats(calls[1:]), first=calls[0], second=calls[1])
    print(f"\nimport iirssm: median {res['import']['median']:.3f} s "
          f"[{res['import']['min']:.3f}-{res['import']['max']:.3f}], modules {runs[-1]['mods']}")
    print(f"first call, warm cache: second run {calls[1]:.3f} s, median of "
          f"{len(calls) - 1} warm runs {res['first_call']['median']:.3f} s "
          f"(very first run {calls[0]:.3f} s)", flush=True)
    return res


def measure_memory(cfg):
    P, L = cfg["rows"]
    res = {}
    for variant in ("fixed", "out", "adjust", "times"):
        r = json.loads(_py(MEMORY_CODE, variant, P, L))
        # The call's own peak: VmHWM after it, reset to the resident size just before
        # (so "exact" holds unless the call never rose above that size).
        r["exact"] = r["maxrss_after"] > r["maxrss_before"]
        r["rise"] = max(0.0, (r["maxrss_after"] - r["rss_before"]) / r["nbytes"])
        res[variant] = r
        print(f"peak memory, ema {variant}: peak - resident before the call = "
              f"{'' if r['exact'] else '<= '}{r['rise']:.3f} x.nbytes "
              f"(maxrss {r['maxrss_before'] / 2**20:.0f} -> {r['maxrss_after'] / 2**20:.0f} MiB, "
              f"resident before {r['rss_before'] / 2**20:.0f} MiB)", flush=True)
    return res


# =========================================================================== reporting

def machine_info() -> dict:
    import numba
    iirssm.ema(np.ones((8, 16)), alpha=0.5)  # starts Numba's thread pool (threading layer)
    import pandas
    import scipy
    model, flags = "unknown", ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        model = m.group(1).strip() if m else platform.processor() or "unknown"
        m = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
        flags = m.group(1) if m else ""
    except OSError:
        model = platform.processor() or "unknown"
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not initialised"
    h = hashlib.sha256()
    pkg = os.path.join(REPO, "iirssm")
    for root, dirs, files in sorted(os.walk(pkg)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith((".py", ".cu")):
                path = os.path.join(root, name)
                h.update(os.path.relpath(path, pkg).encode())
                with open(path, "rb") as f:
                    h.update(f.read())
    flags = flags.split()
    return {"source": h.hexdigest()[:12], "cpu": model, "avx512": "avx512f" in flags,
            "avx2": "avx2" in flags, "cores": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "numba_threads": numba.get_num_threads(), "threading_layer": layer,
            "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "pandas": pandas.__version__,
            "numba": numba.__version__, "iirssm": iirssm.__version__,
            "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30}


def _ms(s):
    return f"{s * 1e3:.3g}" if s * 1e3 < 100 else f"{s * 1e3:.0f}"


def targets(cases, startup, memory, quick):
    """[(target, measured, verdict)]."""
    by = {(c.key, c.dtype.name): c for c in cases}
    out = []

    def ratio(key, dt, mine, other, kind):
        c = by.get((key, dt))
        if c is None:
            return None
        return _ratio(c, mine, other, kind)

    def verdict(ok):
        return "n/a" if ok is None else ("met" if ok else "MISSED")

    ema_l, lf_l = "iirssm.ema(x, alpha=0.1)", "scipy.signal.lfilter (zi from x[0])"
    note = " (quick sizes)" if quick else ""

    def peer_target(text, key, dt, need):
        r = ratio(key, dt, ema_l, lf_l, "peer")
        out.append((text, "—" if r is None else f"{r:.2f}x{note}",
                    verdict(None if r is None else r >= need)))

    peer_target("ema (64, 10⁶) float64 ≥ 4x faster than lfilter", "rows", "float64", 4)
    r = ratio("rows", "float64", ema_l, "x.copy()", "floor")
    out.append(("ema (64, 10⁶) float64 ≤ 1.3x `x.copy()`",
                "—" if r is None else f"{r:.2f}x copy{note}",
                verdict(None if r is None else r <= 1.3)))
    peer_target("ema (64, 10⁶) float32 ≥ 7x faster than lfilter", "rows", "float32", 7)
    for dt in ("float64", "float32"):
        peer_target(f"C-ordered (10⁶, 64) along axis 0, {dt}: ≥ 20x faster than lfilter",
                    "cols", dt, 20)
        # the bound: a call that returns a fresh array cannot beat copying the input once
        bound = ratio("cols", dt, "x.copy()", lf_l, "peer")
        if bound is not None and out[-1][1] != "—":
            out[-1] = (out[-1][0], f"{out[-1][1]} (`x.copy()` alone: {bound:.2f}x)",
                       out[-1][2])
    for dt in ("float64", "float32"):
        peer_target(f"one channel of 10⁷, {dt}: ≥ 2x faster than lfilter", "one", dt, 2)
    for key, need, text in (("pd_false", 8, "adjust=False"), ("pd_true", 8, "adjust=True"),
                            ("pdt_false", 10, "times=, adjust=False"),
                            ("pdt_true", 10, "times=, adjust=True")):
        c = by.get((key, "float64"))
        r = None if c is None else _ratio(c, *c.ratios[0])
        out.append((f"vs pandas ewm, 10⁶ x 64 DataFrame, {text}: ≥ {need}x", "—" if r is None
                    else f"{r:.2f}x{note}", verdict(None if r is None else r >= need)))
    if startup:
        imp = startup["import"]
        mods = imp["mods"]
        bad = [m for m in ("scipy.signal", "pandas") if mods.get(m)]
        out.append(("`import iirssm` < 0.5 s, without scipy.signal / pandas",
                    (f"{imp['median']:.3f} s (median of {imp['n']}); imports scipy.signal: "
                    f"{'yes' if mods.get('scipy.signal') else 'no'}, pandas: "
                    f"{'yes' if mods.get('pandas') else 'no'}"),
                    verdict(imp["median"] < 0.5 and not bad)))
        fc = startup["first_call"]
        out.append(("first call in a new process, warm Numba cache < 1 s",
                    (f"{fc['second']:.3f} s (second run; median of {fc['n']} warm runs "
                    f"{fc['median']:.3f} s)"), verdict(fc["second"] < 1.0)))
    if memory:
        m = memory["fixed"]
        extra = m["rise"] - 1.0
        others = ", ".join(f"{v}: {memory[v]['rise']:.3f}" for v in ("out", "adjust", "times"))
        out.append(("peak memory of `ema` ≤ input + output + O(signals)",
                    (f"peak rises by {m['rise']:.3f} x.nbytes during `ema(x, alpha=0.1)` (the "
                    f"output is 1.000; other variants {others}){note}"),
                    verdict(extra <= 0.05)))
    return out


def this_command() -> str:
    """The command line as typed from the repository root, without absolute paths."""
    script = os.path.relpath(os.path.abspath(__file__), REPO).replace(os.sep, "/")
    return " ".join(["python", script] + [os.path.basename(a) if os.path.isabs(a) else a
                                          for a in sys.argv[1:]])


def render(cases, startup, memory, info, cfg, args, elapsed, history) -> str:
    L = []
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    isa = "AVX-512" if info["avx512"] else ("AVX2" if info["avx2"] else "no AVX2")
    L += [START, "", f"## `bench_ema.py`: EMA and linear recurrence (written {now})", ""]
    if len(history) == 1:
        h = history[0]
        L.append(f"- Command: `{h['cmd']}` (from the repository root; {h['when']} UTC, "
                 f"{h.get('minutes', '?')} min; package sources sha256 `{h['source']}`)"
                 + (" — QUICK sizes, not the reference figures" if args.quick else ""))
    else:
        L.append("- Commands, from the repository root (a later one re-ran only the parts it "
                 "names and took the rest from the one before)"
                 + (" — QUICK sizes, not the reference figures" if args.quick else "") + ":")
        L += [f"  {i}. `{h['cmd']}` — {h['when']} UTC, {h.get('minutes', '?')} min, parts: "
              f"{', '.join(h['parts'])}; package sources sha256 `{h['source']}`"
              for i, h in enumerate(history, 1)]
    L += [
          (f"- Machine: {info['cpu']} ({isa}), {info['cores']} cores "
          f"({info['affinity']} usable), {info['mem_gib']:.0f} GiB; Numba threads "
          f"{info['numba_threads']} (threading layer {info['threading_layer']})"),
          (f"- Versions: Python {info['python']}, NumPy {info['numpy']}, SciPy {info['scipy']}, "
          f"pandas {info['pandas']}, Numba {info['numba']}, iirssm {info['iirssm']}"),
          (f"- Method: median of n calls per implementation (calls interleaved round-robin; a "
          f"call during which other processes took CPU is dropped and repeated, up to 3n "
          f"calls; "
          f"after a warm-up call that also checks the result against the peer: rtol 1e-9 "
          f"float64, 1e-4 float32); spread is min–max. scipy and pandas run on one thread, "
          f"iirssm on {info['numba_threads']}. float32 lfilter gets float32 coefficients (so "
          f"scipy computes in float32)."),
          ("- Ratios: *x faster* = peer time / iirssm time (> 1: iirssm is faster); "
          "*x floor* = iirssm time / copy time (fresh output vs `x.copy()`, `out=` vs "
          "`np.copyto`; 1 = as fast as copying the data once)."), ""]

    L += ["### Timings", "",
          ("| case | dtype | implementation | median ms | min–max ms | IQR ms | ns/sample | n "
          "(dropped) |"),
          "|---|---|---|---:|---:|---:|---:|---:|"]
    for c in cases:
        for k, s in c.results.items():
            ns = s["median"] / c.nelem * 1e9
            wrong = " **WRONG**" if k in c.errors else ""
            L.append(f"| {c.title} | {c.dtype.name} | `{k}`{wrong} | {_ms(s['median'])} | "
                     f"{_ms(s['min'])}–{_ms(s['max'])} | {_ms(s['q3'] - s['q1'])} | "
                     f"{ns:.2f} | {s['n']} ({s.get('dropped', 0)}) |")
    L += ["", "### Ratios", "",
          "| case | dtype | iirssm | against | ratio | other load (cores) | timed at (UTC) |",
          "|---|---|---|---|---:|---:|---|"]
    for c in cases:
        for mine, other, kind in c.ratios:
            r = _ratio(c, mine, other, kind)
            txt = "WRONG result" if r is None else (
                f"{r:.2f}x faster" if kind == "peer" else f"{r:.2f}x floor")
            L.append(f"| {c.title} | {c.dtype.name} | `{mine}` | `{other}` | {txt} | "
                     f"{c.other_load:.2f} | {c.when} |")
    L += ["", ("'other load' is the CPU used by other processes during the case, plus CPU "
          "time stolen by the hypervisor (from /proc/stat), averaged over its wall time. It "
          "misses contention outside this guest (memory bandwidth, host page faults): see the "
          "spread. Each case waits for a quiet machine "
          f"first; a case above {args.busy} cores is re-run (up to {args.retries} times) "
          "and the quietest run is kept."), ""]

    if startup or memory:
        L += ["### Startup and memory", "", "| measure | value |", "|---|---|"]
    if startup:
        imp, fc = startup["import"], startup["first_call"]
        mods = ", ".join(f"{m}: {'yes' if v else 'no'}" for m, v in imp["mods"].items())
        L += [(f"| `import iirssm` (new process, median of {imp['n']}) | {imp['median']:.3f} s "
              f"({imp['min']:.3f}–{imp['max']:.3f}) |"),
              f"| modules loaded by `import iirssm` | {mods} |",
              (f"| import + first `ema` call, new process, warm Numba cache (second run) | "
              f"{fc['second']:.3f} s (median of {fc['n']} warm runs {fc['median']:.3f} s, "
              f"{fc['min']:.3f}–{fc['max']:.3f}) |"),
              f"| the same, very first run of this benchmark | {fc['first']:.3f} s |"]
    if memory:
        P, N = cfg["rows"]
        for variant, text in (("fixed", "`ema(x, alpha=0.1)`"),
                              ("out", "`ema(x, alpha=0.1, out=buf)`"),
                              ("adjust", "`ema(x, alpha=0.1, adjust=True)`"),
                              ("times", "`ema(x, halflife=1h, times=t)`")):
            m = memory[variant]
            L.append(f"| peak RSS during {text} minus RSS before it, x ({P}, {N}) float64, "
                     f"in x.nbytes | {'≤ ' if not m['exact'] else ''}{m['rise']:.3f} |")
    if startup or memory:
        L += ["", ("Peak memory: in a fresh process, x is allocated and the kernels are loaded "
              "on 8 of its rows; then the peak RSS (`VmHWM`, reset to the resident size just "
              "before the call) minus the resident size before it. The fresh output itself is "
              "1.000; with `out=` it is 0."), ""]

    L += ["### Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for t, m, v in targets(cases, startup, memory, args.quick):
        L.append(f"| {t} | {m} | {v} |")
    L += ["", END]
    return "\n".join(L) + "\n"


INTRO = """# Performance

How to run the benchmarks: from the repository root, `python benchmarks/bench_ema.py`
(a few minutes; `--quick` for a smoke test with small arrays; `--write docs/performance.md`
to replace its section of this page). Each benchmark compares iirssm with its peers
(scipy, pandas) and with the memory-copy floor in one process.

Figures are medians, with their spread, on the machine named in each section;
ratios > 1 mean iirssm is faster. They describe that machine, not a guarantee.

"""


def write_section(path, section):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        i, j = text.find(START), text.find(END)
        if i >= 0 and j > i:
            text = text[:i] + section.rstrip("\n") + text[j + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + section
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        text = INTRO + section
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# =========================================================================== main

ALL_PARTS = ("rows", "cols", "one", "pandas", "linrec", "startup", "memory")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke test)")
    p.add_argument("--write", metavar="PATH", help="replace the bench_ema section of PATH")
    p.add_argument("--only", default=",".join(ALL_PARTS),
                   help=f"comma-separated subset of {','.join(ALL_PARTS)}")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--max-wait", type=float, default=60.0,
                   help="seconds to wait for a quiet machine before each case (default 60)")
    p.add_argument("--retries", type=int, default=3,
                   help="re-runs of a case disturbed by other processes (default 3)")
    p.add_argument("--busy", type=float, default=0.15,
                   help="other processes' load, in cores, that marks a case as disturbed")
    p.add_argument("--startup-runs", type=int, default=3)
    p.add_argument("--json", metavar="PATH", help="also save every timing as JSON")
    p.add_argument("--merge", metavar="JSON",
                   help="take the cases (and startup/memory) not run now from an earlier --json "
                        "file, e.g. to re-run only the cases another process disturbed")
    p.add_argument("-v", "--verbose", action="store_true", help="print every timing")
    args = p.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    cfg = QUICK if args.quick else FULL
    parts = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(parts) - set(ALL_PARTS)
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}")
    dtypes = [np.dtype(d) for d in args.dtypes.split(",")]
    t_start = time.perf_counter()

    startup = None
    if "startup" in parts:
        wait_quiet(args, "startup")
        startup = measure_startup(args)
    memory = measure_memory(cfg) if "memory" in parts else None

    cases = []
    P, N = cfg["rows"]
    Lc, Qc = cfg["cols"]
    for dt in dtypes:
        if "rows" in parts:
            cases.append(run_with_retries(build_fixed(
                "rows", f"({P}, {N}) axis -1", (P, N), -1, dt, 1), cfg, args))
        if "cols" in parts:
            cases.append(run_with_retries(build_fixed(
                "cols", f"C-ordered ({Lc}, {Qc}) axis 0", (Lc, Qc), 0, dt, 2), cfg, args))
        if "one" in parts:
            cases.append(run_with_retries(build_fixed(
                "one", f"one channel of {cfg['one']}", (cfg["one"],), -1, dt, 3), cfg, args))
        if "linrec" in parts:
            cases.append(run_with_retries(build_linrec(
                "linrec", f"per-sample a, ({P}, {N}) axis -1", cfg["linrec"], dt, 4), cfg, args))
    if "pandas" in parts:
        df = make_frame(cfg["pandas"], 5)
        n, k = cfg["pandas"]
        for key, adjust, tm in (("pd_false", False, False), ("pd_true", True, False),
                                ("pdt_false", False, True), ("pdt_true", True, True)):
            title = f"DataFrame {n} x {k}" + (", times=" if tm else "")
            cases.append(run_with_retries(build_pandas(key, title, df, adjust, tm), cfg, args))
        del df
        gc.collect()

    elapsed = time.perf_counter() - t_start
    info = machine_info()
    history = []
    if args.merge:
        with open(args.merge, encoding="utf-8") as f:
            old = json.load(f)
        if old["quick"] != args.quick:
            p.error("--merge: the earlier run used different sizes (--quick)")
        if old["machine"].get("source") != info["source"]:
            print(f"warning: merged results were measured on package sources "
                  f"{old['machine'].get('source')}, this run on {info['source']}",
                  file=sys.stderr)
        if info["threading_layer"] == "not initialised":  # no parallel kernel ran this time
            info["threading_layer"] = old["machine"].get("threading_layer", "not initialised")
        history = old.get("commands") or [{
            "cmd": "(not recorded)", "when": "?", "parts": ["?"],
            "source": old["machine"].get("source", "?")}]
        done = {(c.key, c.dtype.name) for c in cases}
        cases += [Case.from_dict(d) for d in old["cases"] if (d["key"], d["dtype"]) not in done]
        startup = startup or old["startup"]
        memory = memory or old["memory"]
        order = ["rows", "cols", "one", "linrec", "pd_false", "pd_true", "pdt_false", "pdt_true"]
        cases.sort(key=lambda c: (c.key.startswith("pd"), -c.dtype.itemsize, order.index(c.key)))
    if parts:
        history.append({"cmd": this_command(), "parts": parts, "source": info["source"],
                        "minutes": round(elapsed / 60, 1),
                        "when": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")})
    section = render(cases, startup, memory, info, cfg, args, elapsed, history)
    print("\n" + section)
    if args.write:
        write_section(args.write, section)
        print(f"wrote {args.write}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": info, "quick": args.quick, "commands": history,
                       "startup": startup, "memory": memory,
                       "cases": [c.to_dict() for c in cases]}, f, indent=1)
    wrong = [(c.title, c.dtype.name, k) for c in cases for k in c.errors]
    if wrong:
        print(f"WRONG results: {wrong}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
