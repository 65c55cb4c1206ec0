"""Fault a fresh output's pages in from a helper thread while a kernel fills it.

A freshly allocated array is not yet memory: the first write to each page makes
the operating system find and zero a page. A kernel that writes a large fresh
output pays that zeroing inside its own loop, on its own core. Where a kernel
leaves a core idle (one job of lanes on a two-core machine), :func:`start` has a
helper thread ask the operating system to fault the pages in (Linux's
``madvise(MADV_POPULATE_WRITE)``, Linux 5.14 and later), front to back, while the
kernel runs: the zeroing then happens on the other core. The call writes no data
(it makes the pages present and writable, as a write would, without writing
them), so it cannot race with the kernel's stores: a page the kernel reaches
first is simply skipped. Elsewhere, and where the call is refused, nothing
happens.

Measured on the 2-core AVX-512 VM, C-ordered (10⁶, 64) float64 along axis 0,
``lfilter`` butter(4): one job of 64 lanes with the helper 63-73 ms, two jobs of
32 lanes faulting as they write 70-89 ms (``docs/performance.md``, "Axis 0").
"""

from __future__ import annotations

import mmap
import sys
import threading

__all__ = ["start", "MIN_BYTES", "supported"]

#: Linux's MADV_POPULATE_WRITE (include/uapi/asm-generic/mman-common.h).
MADV_POPULATE_WRITE = 23
#: Outputs smaller than this are not worth a thread (starting one costs ~0.1 ms;
#: faulting 16 MB in costs ~1-2 ms).
MIN_BYTES = 16 << 20
#: Bytes per call: small enough that the helper stays just ahead of the kernel.
CHUNK = 8 << 20

_madvise = None
_supported = sys.platform.startswith("linux")


def supported() -> bool:
    """Whether :func:`start` may do anything here (Linux, and not refused before)."""
    return _supported


def _libc_madvise():
    global _madvise
    if _madvise is None:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        fn.restype = ctypes.c_int
        _madvise = fn
    return _madvise


def _populate(addr: int, nbytes: int) -> None:
    global _supported
    page = mmap.PAGESIZE
    start = -(-addr // page) * page          # the whole pages inside the array
    end = (addr + nbytes) // page * page
    try:
        fn = _libc_madvise()
    except (OSError, AttributeError):        # no C library to load, or no madvise in it
        _supported = False
        return
    for a in range(start, end, CHUNK):
        if fn(a, min(CHUNK, end - a), MADV_POPULATE_WRITE) != 0:
            import ctypes
            import errno
            if ctypes.get_errno() == errno.EINVAL:     # kernel before 5.14: never again
                _supported = False
            return                                     # other errors: leave it to the kernel


def start(arr) -> threading.Thread | None:
    """Start faulting ``arr``'s pages in on a helper thread; return the thread to
    ``join()`` once the kernel is done (``arr`` must stay alive until then), or
    ``None`` where nothing was started (not Linux, refused before, or ``arr``
    smaller than :data:`MIN_BYTES`)."""
    if not _supported or arr.nbytes < MIN_BYTES:
        return None
    thread = threading.Thread(target=_populate, args=(arr.__array_interface__["data"][0], arr.nbytes),
                              name="iirssm-prefault", daemon=True)
    thread.start()
    return thread
