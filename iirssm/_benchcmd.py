"""The ``iirssm bench`` command: a quick side-by-side timing against scipy and pandas.

A small version of the project's benchmarks (``benchmarks/`` in the source
repository), for the machine it runs on: each case times iirssm and its peer
on the same data, interleaving the calls, and reports the medians, the ratio
and the time of copying the array once (the memory floor). Results are checked
against the peer before timing. About 20 seconds with the default size.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from typing import NamedTuple, TextIO

import numpy as np

__all__ = ["run", "cases", "measure"]

#: Signals x samples at ``--size 1``.
CHANNELS = 16
SAMPLES = 150_000


class Case(NamedTuple):
    name: str
    mine: Callable[[], object]
    peer_name: str
    peer: Callable[[], object] | None    # None: the peer's package is not installed


def cases(size: float = 1.0, dtype=np.float64, seed: int = 0) -> tuple[np.ndarray, list[Case]]:
    """The input array and the benchmark cases at ``size`` times the default sample count."""
    import scipy.signal

    import iirssm

    L = max(64, int(round(SAMPLES * size)))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((CHANNELS, L)).astype(dtype)
    t = np.cumsum(rng.exponential(1.0, L))           # irregular time stamps
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None:
        frame = pd.DataFrame(x.T)                    # pandas runs along the index
        xt = np.ascontiguousarray(x.T)               # the same data, time along axis 0
        times = pd.DatetimeIndex(np.datetime64("2020-01-01") + (t * 1e9).astype("m8[ns]"))
        ema_peer = lambda: frame.ewm(alpha=0.1, adjust=False).mean()  # noqa: E731
        times_peer = lambda: frame.ewm(halflife=pd.Timedelta(10, "s"),  # noqa: E731
                                       times=times).mean()
    else:
        xt, times, ema_peer, times_peer = x.T, None, None, None
    b, a = scipy.signal.butter(4, 0.1)
    sos = scipy.signal.butter(8, 0.1, output="sos")
    tdt = times.to_numpy() if times is not None else t
    hl = np.timedelta64(10, "s") if times is not None else 10.0
    out = [
        Case("ema alpha=0.1 (adjust=False)", lambda: iirssm.ema(xt, alpha=0.1, axis=0),
             "pandas ewm(alpha=0.1, adjust=False).mean()", ema_peer),
        Case("ema halflife, times= (adjust=True)",
             lambda: iirssm.ema(xt, halflife=hl, times=tdt, adjust=True, axis=0),
             "pandas ewm(halflife=..., times=...).mean()", times_peer),
        Case("lfilter butter(4) b, a", lambda: iirssm.lfilter(b, a, x),
             "scipy.signal.lfilter", lambda: scipy.signal.lfilter(b, a, x)),
        Case("sosfilt butter(8) sos", lambda: iirssm.sosfilt(sos, x),
             "scipy.signal.sosfilt", lambda: scipy.signal.sosfilt(sos, x)),
    ]
    return x, out


def _as_array(y):
    return np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)


def measure(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds of each function, calls interleaved round-robin after one warm-up."""
    for f in fns:
        f()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            start = time.perf_counter()
            f()
            times[i].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def _threads() -> str:
    try:
        import numba

        return str(numba.get_num_threads())
    except Exception:  # noqa: BLE001  # informational only
        return "?"


def run(size: float = 1.0, repeats: int = 5, dtype: str = "float64",
        file: TextIO | None = None) -> int:
    """Run the benchmark and print the table; returns the exit status (0)."""
    import scipy

    import iirssm

    out = sys.stdout if file is None else file

    def emit(line=""):
        print(line, file=out, flush=True)

    dt = np.dtype(dtype)
    x, all_cases = cases(size, dt)
    n = x.size
    emit(f"iirssm bench: {CHANNELS} signals x {x.shape[1]:,} samples, {dt.name} "
         f"({x.nbytes / 2**20:.1f} MiB), median of {repeats} interleaved runs")
    try:
        import pandas as pd
        pdv = pd.__version__
    except ImportError:
        pdv = "not installed"
    emit(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, numba threads {_threads()}; "
         f"iirssm {iirssm.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
         f"pandas {pdv}")
    emit("ema cases run on the (samples, signals) layout pandas uses (time along axis 0); "
         "scipy cases on (signals, samples)")
    emit()
    copy_t = measure([x.copy], repeats)[0]
    head = (f"{'case':<36} {'iirssm ms':>10} {'peer ms':>10} {'speed-up':>9} "
            f"{'x copy':>7} {'max rel diff':>13}  peer")
    emit(head)
    emit("-" * len(head))
    for case in all_cases:
        if case.peer is None:
            (mine,) = measure([case.mine], repeats)
            emit(f"{case.name:<36} {mine * 1e3:10.2f} {'-':>10} {'-':>9} "
                 f"{mine / copy_t:7.1f} {'-':>13}  {case.peer_name} (pandas not installed)")
            continue
        ym, yp = _as_array(case.mine()), _as_array(case.peer())
        scale = float(np.max(np.abs(yp))) or 1.0
        diff = float(np.max(np.abs(ym.astype(np.float64) - yp.astype(np.float64)))) / scale
        mine, peer = measure([case.mine, case.peer], repeats)
        emit(f"{case.name:<36} {mine * 1e3:10.2f} {peer * 1e3:10.2f} {peer / mine:8.1f}x "
             f"{mine / copy_t:7.1f} {diff:13.1e}  {case.peer_name}")
    emit(f"{'x.copy() (memory floor)':<36} {copy_t * 1e3:10.2f}")
    emit()
    emit("speed-up = peer ms / iirssm ms (> 1: iirssm is faster); x copy = iirssm ms / "
         f"x.copy() ms; {n:,} samples per call.")
    return 0


def add_parser(commands):
    """Add the ``bench`` subcommand to an argparse sub-parsers object."""
    p = commands.add_parser(
        "bench", help="time iirssm against scipy and pandas on this machine",
        description="Time iirssm's ema, lfilter and sosfilt against pandas' ewm and "
        "scipy.signal on this machine (medians of interleaved runs, with the time of one "
        "memory copy as the floor) and print a table. About 20 s at the default size; "
        "the project's full benchmarks live in benchmarks/ of the source repository.",
    )
    p.add_argument("--size", type=float, default=1.0,
                   help=f"scale of the signals: {CHANNELS} x {SAMPLES:,} samples times SIZE "
                   "(default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed calls per implementation (default: %(default)s)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="dtype of the signals (default: %(default)s)")

    def _run(args):
        if not args.size > 0:
            p.error(f"--size must be > 0; got {args.size}")
        if args.repeats < 1:
            p.error(f"--repeats must be >= 1; got {args.repeats}")
        return run(args.size, args.repeats, args.dtype)

    p.set_defaults(func=_run)
    return p
