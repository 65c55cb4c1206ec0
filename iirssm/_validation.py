"""Dtype policy, argument checks and the wording of errors.

Every public function settles dtypes and validates its arguments through this
module, so the rules (and the error messages users see) live in one place.

Dtype policy
------------
* float32 stays float32, float64 stays float64, complex64 and complex128 likewise;
* integers and bools compute in float64;
* float16 computes in float32 and returns float32 (no reference we follow returns
  float16 for these operations);
* anything else (object, strings, datetimes, ...) is a ``TypeError``.

Several arrays combine like ``numpy.result_type`` after each has been mapped
through the table above, so a float32 signal filtered with float64 coefficients
gives float64, never a silent downcast. Python scalars (``0.9``, ``1``) are *weak*:
they take the dtype of the arrays they meet, as in NumPy 2.
"""

from __future__ import annotations

import numbers
import operator

import numpy as np

__all__ = [
    "compute_dtype",
    "as_float_array",
    "normalize_axis",
    "signal_array",
    "check_broadcast",
    "real_dtype",
]

_SUPPORTED = (np.float32, np.float64, np.complex64, np.complex128)
_WEAK = frozenset({int, float, complex, bool})


#: dtypes already mapped by :func:`_policy_dtype` (per-call overhead: a dict lookup)
_POLICY = {np.dtype(t): np.dtype(t) for t in _SUPPORTED}


def _policy_dtype(dt: np.dtype, name: str) -> np.dtype:
    """Map one input dtype through the policy table (see the module docstring)."""
    hit = _POLICY.get(dt)
    if hit is not None:
        return hit
    dt = np.dtype(dt)
    if dt.type in _SUPPORTED:
        return dt
    if dt == np.float16:
        return np.dtype(np.float32)
    if dt.kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(
        f"{name} must hold real or complex numbers (float32, float64, complex64, "
        f"complex128, or integers/bools, which compute in float64); got dtype {dt}"
    )


def _is_weak_scalar(value) -> bool:
    if type(value) in _WEAK:                   # the common cases, without the ABC check
        return True
    return isinstance(value, (int, float, complex, numbers.Number)) and not isinstance(
        value, (np.generic, np.ndarray)
    )


def compute_dtype(*named, real_only: tuple[str, ...] = (), promote_first: bool = False) -> np.dtype:
    """Settle the computation dtype of several inputs.

    Parameters
    ----------
    *named : tuple of (str, array_like or None)
        ``(name, value)`` pairs. ``None`` values are skipped. Python scalars are
        weak: they only widen the result when every input is a Python scalar.
    real_only : tuple of str
        Names of inputs that must be real.
    promote_first : bool
        scipy's rule (for the drop-ins): ``numpy.result_type`` of the raw dtypes
        first, then the policy table (so int16 with float32 gives float32, as in
        scipy, rather than float64).

    Returns
    -------
    numpy.dtype
        One of float32, float64, complex64, complex128.
    """
    strong = []
    weak_complex = False
    for name, value in named:
        if value is None:
            continue
        if type(value) is np.ndarray:
            dt = value.dtype
        elif _is_weak_scalar(value):
            if isinstance(value, complex) and value.imag != 0:
                weak_complex = True
                if name in real_only:
                    raise TypeError(f"{name} must be real; got the complex value {value!r}")
            continue
        else:
            dt = getattr(value, "dtype", None)
            dt = np.asarray(value).dtype if dt is None else np.dtype(dt)
        if not promote_first:
            dt = _policy_dtype(dt, name)
        elif dt.kind not in "biufc":
            _policy_dtype(dt, name)  # raises the TypeError naming the input
        if name in real_only and dt.kind == "c":
            raise TypeError(f"{name} must be real; got dtype {dt}")
        strong.append(dt)
    if not strong:
        out = np.dtype(np.float64)
    else:
        out = _policy_dtype(np.result_type(*strong), "the inputs")
    if weak_complex and out.kind != "c":
        out = np.result_type(out, np.complex64)
    return np.dtype(out)


_REAL = {np.dtype(t): np.empty(0, dtype=t).real.dtype for t in _SUPPORTED}


def real_dtype(dtype: np.dtype) -> np.dtype:
    """The real dtype of the same precision (complex64 -> float32)."""
    hit = _REAL.get(dtype)
    return hit if hit is not None else np.empty(0, dtype=dtype).real.dtype


def as_float_array(value, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """Convert ``value`` to an ndarray following the dtype policy.

    Raises a ``TypeError`` naming ``name`` for unsupported dtypes (object, str,
    datetime, ...). No copy is made when the input already has ``dtype``.
    """
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged sequences and the like
        raise TypeError(f"{name} could not be converted to a numeric array: {exc}") from None
    policy = _policy_dtype(arr.dtype, name)
    target = policy if dtype is None else np.dtype(dtype)
    if arr.dtype != target:
        arr = arr.astype(target)
    return arr


def signal_array(x, name: str, dtype: np.dtype, axis) -> tuple[np.ndarray, int]:
    """Convert a signal, check it has a non-empty time axis; return ``(array, axis)``."""
    arr = as_float_array(x, name, dtype)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (time)")
    ax = normalize_axis(axis, arr.ndim)
    if arr.shape[ax] == 0:
        raise ValueError(f"{name} has no samples along axis {ax} (shape {arr.shape})")
    return arr, ax


def normalize_axis(axis, ndim: int, name: str = "axis") -> int:
    """Return ``axis`` as a non-negative int, with a clear error when out of range."""
    try:
        ax = operator.index(axis)
    except TypeError:
        raise TypeError(f"{name} must be an integer; got {type(axis).__name__}") from None
    if not -ndim <= ax < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array of {ndim} dimension(s)")
    return ax % ndim


def check_broadcast(name: str, shape: tuple, target: tuple, axis: int | None = None) -> None:
    """Check that an array of ``shape`` broadcasts to ``target`` without enlarging it."""
    ok = len(shape) <= len(target)
    if ok:
        for s, t in zip(shape[::-1], target[::-1]):
            if s != 1 and s != t:
                ok = False
                break
    if not ok:
        hint = ""
        if axis is not None:
            hint = (
                f" (time is axis {axis} of length {target[axis]}; give a per-channel value "
                f"a length-1 time axis, e.g. shape {_per_channel_example(target, axis)})"
            )
        raise ValueError(
            f"{name} of shape {tuple(shape)} does not broadcast to the signal's shape "
            f"{tuple(target)}{hint}"
        )


def _per_channel_example(target: tuple, axis: int) -> tuple:
    ex = list(target)
    ex[axis] = 1
    return tuple(ex)


def check_finite_range(name: str, arr: np.ndarray, lo: float, hi: float,
                       lo_open: bool, hi_open: bool, what: str) -> None:
    """Raise a ``ValueError`` if any value of ``arr`` lies outside the interval.

    NaN fails the check. ``what`` describes the interval in words for the message.
    """
    arr = np.asarray(arr)
    if arr.ndim == 0 and arr.dtype.kind in "biuf":   # one number: no array operations
        v = float(arr)
        if (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi):
            return
    if arr.size == 0:
        return
    lo_ok = (arr > lo) if lo_open else (arr >= lo)
    hi_ok = (arr < hi) if hi_open else (arr <= hi)
    bad = ~(lo_ok & hi_ok)
    if bad.any():
        first = arr[bad].flat[0].item()            # a Python number: no NumPy repr
        where = "" if arr.ndim == 0 else f" at index {np.argwhere(bad)[0].tolist()}"
        raise ValueError(f"{name} must be {what}; got {first!r}{where}"
                         + (f" (and {int(bad.sum()) - 1} more)" if bad.sum() > 1 else ""))
