"""Axis normalisation: any array and any time axis as a C-contiguous (P, L, Q) view.

The kernels never see ``axis``. An N-D array ``x`` filtered along ``axis`` is
looked at as a C-contiguous 3-D array ``(P, L, Q)``: ``P`` is the product of the
dimensions before the time axis, ``L`` the number of samples and ``Q`` the product
of the dimensions after it. For a C-ordered array this is a reshape (no copy);
for a Fortran-ordered array the reversed-axes transpose is C-ordered, so it is a
reshape of ``x.T`` (no copy either). Only arrays that are neither (strided views,
arbitrary permutations) are copied once with :func:`numpy.ascontiguousarray`.

``Q == 1`` is the "row" layout (time contiguous, e.g. ``axis=-1``): kernels
advance several signals together in lanes. ``Q > 1`` is the "time-major" layout
(e.g. ``axis=0`` of a C-ordered array): the innermost loop runs over ``Q``
contiguous channels.

Coefficients that broadcast against ``x`` are brought into the same frame with
shape ``(Pc, Lc, Qc)`` where each of ``Pc``, ``Qc`` is 1 or the full size and
``Lc`` is 1 (constant in time) or ``L``. Kernels index them with a 0/1 step per
dimension, so a per-channel or scalar coefficient is never expanded in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import numpy as np

from ._validation import check_broadcast

__all__ = ["Frame", "frame_of", "to_work", "coef_to_work", "new_output", "check_state",
           "state_to_work", "state_from_work"]


@dataclass(frozen=True)
class Frame:
    """How the user's N-D array maps onto the kernels' ``(P, L, Q)`` view."""

    shape: tuple          # the user's shape
    axis: int             # the user's (non-negative) time axis
    transposed: bool      # work on the reversed-axes transpose (Fortran-ordered input)
    #: ``(P, L, Q)``: the work view's shape (computed once, on construction)
    plq: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        ws, ax = self.work_shape, self.work_axis
        object.__setattr__(self, "plq", (prod(ws[:ax]), ws[ax], prod(ws[ax + 1:])))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def work_shape(self) -> tuple:
        return self.shape[::-1] if self.transposed else self.shape

    @property
    def work_axis(self) -> int:
        return self.ndim - 1 - self.axis if self.transposed else self.axis

    def to_work_orientation(self, arr: np.ndarray) -> np.ndarray:
        """View an array of the user's orientation (full ndim) in the work orientation."""
        return arr.T if self.transposed else arr


def frame_of(x: np.ndarray, axis: int) -> Frame:
    """Choose the frame for ``x``: transposed when ``x`` is Fortran- but not C-ordered."""
    transposed = (not x.flags.c_contiguous) and x.flags.f_contiguous and x.ndim > 1
    return Frame(tuple(x.shape), axis, transposed)


def to_work(x: np.ndarray, frame: Frame) -> np.ndarray:
    """The ``(P, L, Q)`` C-contiguous view of ``x`` (one copy if ``x`` is neither C nor F)."""
    w = frame.to_work_orientation(x)
    if not w.flags.c_contiguous:
        # The one documented copy: strided views and permuted layouts.
        w = np.ascontiguousarray(w)
    return w.reshape(frame.plq)


def _expand(arr: np.ndarray, ndim: int) -> np.ndarray:
    return arr.reshape((1,) * (ndim - arr.ndim) + arr.shape)


def coef_to_work(c, frame: Frame, name: str, dtype: np.dtype, lead: int = 0) -> np.ndarray:
    """Bring a coefficient broadcasting against the signal into ``(Pc, Lc, Qc)`` form.

    ``Pc`` and ``Qc`` are 1 when the coefficient does not vary over those
    dimensions, else the full size; ``Lc`` is 1 or ``L``. A coefficient that varies
    over only some of the dimensions before (or after) the time axis is expanded
    over those dimensions only. The first ``lead`` dimensions of ``c`` (e.g. the
    coefficient index of ``lfilter``'s ``b``) are kept in front:
    the result is ``c.shape[:lead] + (Pc, Lc, Qc)``.
    """
    c = np.asarray(c)
    if c.ndim == lead:                          # no dimension beyond the lead ones
        return np.ascontiguousarray(c, dtype=dtype).reshape(c.shape + (1, 1, 1))
    head, tail = c.shape[:lead], c.shape[lead:]
    check_broadcast(name if not lead else f"{name} (after its first {lead} dimension(s))",
                    tail, frame.shape, frame.axis)
    c = c.reshape(head + (1,) * (frame.ndim - len(tail)) + tail)
    if frame.transposed:
        c = c.transpose(tuple(range(lead)) + tuple(range(c.ndim - 1, lead - 1, -1)))
    ws, ax = frame.work_shape, frame.work_axis
    body = c.shape[lead:]
    pre, post = body[:ax], body[ax + 1:]
    tgt_pre = pre if all(d == 1 for d in pre) else ws[:ax]
    tgt_post = post if all(d == 1 for d in post) else ws[ax + 1:]
    tgt = tgt_pre + (body[ax],) + tgt_post
    c = np.broadcast_to(c, head + tgt)
    c = np.ascontiguousarray(c, dtype=dtype)
    return c.reshape(head + (prod(tgt_pre), tgt[len(tgt_pre)], prod(tgt_post)))


def new_output(frame: Frame, dtype: np.dtype, out: np.ndarray | None = None,
               name: str = "out") -> tuple[np.ndarray, np.ndarray]:
    """Allocate (or check) the output; return ``(out_nd, out_work)``.

    A fresh output has the input's memory order (C, or F for Fortran-ordered
    input), so its ``(P, L, Q)`` view is a reshape. A user-supplied ``out`` must
    have the right shape and dtype; if its layout does not match the frame, the
    kernels write into a fresh array that is copied into ``out`` at the end
    (``out_work`` is then not a view of ``out``; callers use :func:`finish_output`).
    """
    if out is None:
        nd = np.empty(frame.shape, dtype=dtype, order="F" if frame.transposed else "C")
        return nd, frame.to_work_orientation(nd).reshape(frame.plq)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray; got {type(out).__name__}")
    if out.shape != frame.shape:
        raise ValueError(f"{name} must have shape {frame.shape}; got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (the result dtype); got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    w = frame.to_work_orientation(out)
    if w.flags.c_contiguous:
        return out, w.reshape(frame.plq)
    tmp = np.empty(frame.shape, dtype=dtype, order="F" if frame.transposed else "C")
    return out, frame.to_work_orientation(tmp).reshape(frame.plq)


def finish_output(out_nd: np.ndarray, out_work: np.ndarray, frame: Frame) -> np.ndarray:
    """Copy the work buffer into ``out_nd`` when they are not the same memory."""
    if not np.shares_memory(out_nd, out_work):
        w = out_work.reshape(frame.work_shape)
        np.copyto(out_nd, w.T if frame.transposed else w)
    return out_nd


def check_no_overlap(out: np.ndarray | None, **inputs) -> None:
    """Outputs never alias inputs: refuse an ``out`` that overlaps any input array."""
    if out is None:
        return
    for name, arr in inputs.items():
        if isinstance(arr, np.ndarray) and np.may_share_memory(out, arr):
            raise ValueError(f"out must not overlap the input {name}")


def state_shape(frame: Frame, size: int) -> tuple:
    """The user's shape of a state: the signal's shape with the time axis of length ``size``."""
    s = list(frame.shape)
    s[frame.axis] = size
    return tuple(s)


def check_state(z: np.ndarray, frame: Frame, name: str, size: int = 1) -> tuple:
    """Check that a state ``z`` broadcasts to the signal's shape with the time axis of
    length ``size`` (:func:`state_shape`, which is returned); singleton dimensions
    broadcast, as in :func:`scipy.signal.lfilter`."""
    expect = state_shape(frame, size)
    ok = z.ndim <= len(expect) and all(
        d == 1 or d == e for d, e in zip(z.shape[::-1], expect[::-1]))
    if ok and z.ndim == len(expect) and z.shape[frame.axis] != size:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} must have shape {expect} (the signal's shape with axis {frame.axis} "
            f"of length {size}), or broadcast to it; got {z.shape}")
    return expect


def state_to_work(z, frame: Frame, name: str, dtype: np.dtype, size: int = 1) -> np.ndarray:
    """Bring a state (signal's shape, time axis of length ``size``) to ``(P, size, Q)``.

    Singleton dimensions broadcast, as in :func:`scipy.signal.lfilter`.
    """
    z = np.asarray(z)
    expect = check_state(z, frame, name, size)
    z = np.broadcast_to(_expand(z, len(expect)), expect)
    z = frame.to_work_orientation(z)
    P, _, Q = frame.plq
    return np.ascontiguousarray(z, dtype=dtype).reshape(P, size, Q)


def state_from_work(z3: np.ndarray, frame: Frame) -> np.ndarray:
    """Inverse of :func:`state_to_work`: ``(P, size, Q)`` back to the user's orientation."""
    size = z3.shape[1]
    ws = list(frame.work_shape)
    ws[frame.work_axis] = size
    z = z3.reshape(ws)
    return np.ascontiguousarray(z.T) if frame.transposed else z
