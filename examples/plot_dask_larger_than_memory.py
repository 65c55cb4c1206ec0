"""
Filtering an array larger than memory with dask
===============================================

A multichannel signal stored in a ``.npy`` file is low-pass filtered with a
6th-order Butterworth filter (``iirssm.sosfilt``) without ever holding more
than a few chunks in memory: the file is read through memory maps of one chunk
at a time, :mod:`iirssm.dask` filters each time chunk with the filter state
carried over from the previous one, and the result is written chunk by chunk
into another ``.npy`` file with :func:`dask.array.store`.

The script states a memory bound on what the job adds to the process: it first
filters one chunk to compile the kernels (Numba's compiler alone can take a few
hundred MiB the first time, on a machine with no kernel cache), notes the
resident set size (RSS) then, samples the RSS every 5 ms while it writes the
input and filters it, and asserts that the largest sample exceeds the starting
RSS by less than the bound. It also checks the start of the result against SciPy
on the same samples, and plots the resident memory over time with a stretch of
the signal.

By default the array is 1 GiB (16 channels × 2**23 float64 samples) under a
stated bound of 250 MiB: larger than the bound, but not larger than the memory
of a typical machine, so that the default run takes seconds. Pass ``--gib`` with
a size above your machine's RAM (and twice that in free disk space) to filter an
array that does not fit in memory at all; the bound stays the same.

    python examples/plot_dask_larger_than_memory.py              # 1 GiB
    python examples/plot_dask_larger_than_memory.py --gib 32     # more than RAM
"""

import argparse
import os
import tempfile
import threading
import time

import dask
import dask.array as da
import matplotlib
import numpy as np
import psutil
import scipy.signal

import iirssm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class NpyChunks:
    """A ``.npy`` file read through a memory map of one block at a time, written with pwrite.

    Mapping the whole file once would leave every page that was read resident in
    the process (and counted in its RSS) for as long as the map lives; a map per
    block is closed as soon as the block is copied, so the pages go back to the
    operating system's file cache. Blocks are written with ``os.pwrite`` (a write
    through a map would fault every page in first).
    """

    def __init__(self, path, shape=None, dtype=np.float64):
        if shape is not None:                         # create (header + sparse data)
            # writes the header and sizes the file; the map is closed at once
            np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)._mmap.close()
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(f)
            self.offset = f.tell()
        if fortran or len(shape) != 2:
            raise ValueError("expected a C-ordered 2-D array")
        self.path, self.shape, self.dtype, self.ndim = path, shape, np.dtype(dtype), 2

    def _map(self, rows, cols, mode):
        """A memory map of the rows ``rows`` and columns ``cols`` (C order: one map per row)."""
        n = self.shape[1]
        for r in range(*rows.indices(self.shape[0])):
            start, stop, _ = cols.indices(n)
            off = self.offset + (r * n + start) * self.dtype.itemsize
            yield r, np.memmap(self.path, dtype=self.dtype, mode=mode, offset=off,
                               shape=(stop - start,))

    def __getitem__(self, index):
        rows, cols = index
        out = np.empty((len(range(*rows.indices(self.shape[0]))),
                        len(range(*cols.indices(self.shape[1])))), dtype=self.dtype)
        for i, (_, m) in enumerate(self._map(rows, cols, "r")):
            out[i] = m
            m._mmap.close()
        return out

    def __setitem__(self, index, value):
        rows, cols = index
        start, stop, _ = cols.indices(self.shape[1])
        value = np.ascontiguousarray(value, dtype=self.dtype)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for i, r in enumerate(range(*rows.indices(self.shape[0]))):
                off = self.offset + (r * self.shape[1] + start) * self.dtype.itemsize
                data = memoryview(value[i]).cast("B")
                while data:
                    n = os.pwrite(fd, data, off)
                    data, off = data[n:], off + n
        finally:
            os.close(fd)


class RSSSampler(threading.Thread):
    """Samples this process's resident set size every few milliseconds."""

    def __init__(self, period=0.005):
        super().__init__(daemon=True)
        self.period, self.t, self.rss = period, [], []
        self.proc = psutil.Process()
        self.stop = threading.Event()
        self.t0 = time.perf_counter()

    def run(self):
        while not self.stop.is_set():
            self.t.append(time.perf_counter() - self.t0)
            self.rss.append(self.proc.memory_info().rss)
            time.sleep(self.period)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Filter an array larger than memory with dask")
    parser.add_argument("--gib", type=float, default=1.0,
                        help="size of the array in GiB (default 1)")
    parser.add_argument("--bound-mib", type=float, default=250.0,
                        help="bound on the RSS the job adds to the process, MiB (default 250)")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--chunk-mib", type=float, default=16.0,
                        help="size of one chunk (all channels, a stretch of time), MiB")
    parser.add_argument("--dir", default=None, help="where to put the two .npy files "
                        "(default: a temporary directory, removed at the end)")
    parser.add_argument("--scheduler", default="sync", choices=["sync", "threads"],
                        help="dask scheduler (default sync; see docs/dask.md)")
    parser.add_argument("--plot", default="plot_dask_larger_than_memory.png")
    args = parser.parse_args(argv)

    n_ch = args.channels
    L = int(args.gib * 2**30 / 8 / n_ch)
    chunk_t = max(1, int(args.chunk_mib * 2**20 / 8 / n_ch))
    bound = args.bound_mib * 2**20
    sos = scipy.signal.butter(6, 0.05, output="sos")
    # Warm-up: one chunk through the same path compiles the kernels before memory is measured.
    warm = da.from_array(np.zeros((n_ch, min(L, chunk_t))), chunks=(n_ch, chunk_t))
    iirssm.sosfilt(sos, warm).compute(scheduler="sync")
    del warm
    base = psutil.Process().memory_info().rss
    sampler = RSSSampler()
    sampler.start()
    tmp = tempfile.TemporaryDirectory(dir=args.dir)
    src = NpyChunks(os.path.join(tmp.name, "signal.npy"), shape=(n_ch, L))
    dst = NpyChunks(os.path.join(tmp.name, "filtered.npy"), shape=(n_ch, L))
    print(f"array: {n_ch} channels x {L} samples float64 = {n_ch * L * 8 / 2**30:.2f} GiB; "
          f"chunks of {chunk_t} samples ({n_ch * chunk_t * 8 / 2**20:.0f} MiB); "
          f"memory bound {args.bound_mib:.0f} MiB; machine RAM "
          f"{psutil.virtual_memory().total / 2**30:.1f} GiB")

    # --- write the input chunk by chunk: random walks with a fast oscillation on top
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    level = np.zeros((n_ch, 1))
    for start in range(0, L, chunk_t):
        stop = min(L, start + chunk_t)
        steps = rng.standard_normal((n_ch, stop - start))
        walk = level + np.cumsum(steps, axis=1) * 0.01
        level = walk[:, -1:]
        block = walk + np.sin(0.9 * np.arange(start, stop))
        src[:, start:stop] = block
    t_write = time.perf_counter() - t0
    mark_write = sampler.t[-1] if sampler.t else 0.0

    # --- filter lazily, then store chunk by chunk
    x = da.from_array(src, chunks=(n_ch, chunk_t), asarray=False, lock=False)
    y = iirssm.sosfilt(sos, x)                        # a lazy graph: nothing computed yet
    t0 = time.perf_counter()
    # The synchronous scheduler follows dask's ordering exactly: read a chunk, filter
    # it, write it, go on. (Numba still runs each chunk's channels on all cores.) The
    # threaded scheduler would use its idle threads to read chunks ahead of the
    # filter, as far as the file goes.
    with dask.config.set(scheduler=args.scheduler):
        da.store(y, dst, lock=False)
    t_filter = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    peak = max(sampler.rss) - base                    # what the job added to the process

    # --- check the start of the result against scipy on the same samples
    n_check = min(L, 4 * chunk_t)
    ref = scipy.signal.sosfilt(sos, src[:, 0:n_check])
    got = dst[:, 0:n_check]
    err = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    print(f"wrote the input in {t_write:.1f} s; filtered and stored in {t_filter:.1f} s "
          f"({n_ch * L / t_filter / 1e6:.0f} M samples/s)")
    print(f"RSS before the job {base / 2**20:.0f} MiB; the job added at most "
          f"{peak / 2**20:.0f} MiB (bound {args.bound_mib:.0f} MiB); "
          f"first {n_check} samples vs scipy: max relative error {err:.1e}")

    # --- plot
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), constrained_layout=True)
    ax1.plot(sampler.t, np.array(sampler.rss) / 2**20, lw=1, label="RSS (sampled)")
    ax1.axhline(base / 2**20 + args.bound_mib, color="C3", ls="--",
                label="RSS before the job + stated bound")
    ax1.axhline(n_ch * L * 8 / 2**20, color="k", ls=":", label="array size")
    ax1.axvline(mark_write, color="0.5", lw=0.8)
    ax1.set_yscale("log")
    ax1.set_xlabel("time (s): writing the input, then filtering")
    ax1.set_ylabel("MiB")
    ax1.set_title(f"{n_ch * L * 8 / 2**30:.1f} GiB filtered in chunks of "
                  f"{n_ch * chunk_t * 8 / 2**20:.0f} MiB")
    ax1.legend(loc="center right", fontsize=8)
    seg = slice(max(0, chunk_t - 300), min(L, chunk_t + 300))
    tt = np.arange(L)[seg]
    ax2.plot(tt, src[0:1, seg][0], lw=0.6, color="0.6", label="input (channel 0)")
    ax2.plot(tt, dst[0:1, seg][0], lw=1.2, color="C0", label="sosfilt via dask")
    ax2.axvline(chunk_t, color="C3", ls="--", lw=0.8, label="chunk boundary")
    ax2.set_xlabel("sample")
    ax2.legend(fontsize=8)
    fig.savefig(args.plot, dpi=100)
    print(f"saved {args.plot}")
    tmp.cleanup()

    assert err < 1e-10, f"result differs from scipy: {err}"
    assert peak < bound, (f"the job added {peak / 2**20:.0f} MiB to the RSS, more than the "
                          f"stated bound of {args.bound_mib:.0f} MiB")


if __name__ == "__main__":
    main()
