r"""``DiagonalSSM``: IIR filters as diagonal state-space systems, and back.

A discrete-time diagonal state-space system with ``N`` complex modes,

.. math::

    h_n[t] = p_n\,h_n[t-1] + B_n\,u[t], \qquad
    y[t] = \sum_n C_n\,h_n[t] + D\,u[t] + \sum_{j=1}^{K} k_j\,u[t-j],

has the transfer function

.. math::

    H(z) = \sum_n \frac{C_n B_n}{1 - p_n z^{-1}} + D + \sum_{j=1}^{K} k_j z^{-j},

which is exactly the partial-fraction form :func:`scipy.signal.residuez`
returns (residues ``r_n = C_n B_n``, poles ``p_n``, direct terms ``[D, k_1, ...]``).
So every IIR filter with distinct poles is a bank of first-order recurrences
(one EMA per pole), and every diagonal SSM (S4D, LRU, a frozen Mamba step) is an
IIR filter. Note the read-out convention: ``y[t]`` reads the state *after* it has
taken ``u[t]`` in, as S4/S4D/Mamba do; the control convention of
:func:`scipy.signal.cont2discrete` reads it before (see
:meth:`DiagonalSSM.from_continuous`).

Real and complex systems
------------------------
A system is *real* when its modes are conjugate-symmetric: every mode either has
a real pole with real ``B`` and ``C``, or has a partner mode with the conjugate
pole, ``B`` and ``C`` (each within a relative ``1e-8``), and ``D`` and ``k`` are
real. A real system maps real signals to real signals, and the kernel computes
each conjugate pair once (``y += 2 Re(C h)`` for one mode of the pair). Every
other system gives a complex output. See ``docs/ssm.md``.
"""

from __future__ import annotations

import operator
from math import prod

import numpy as np

from . import _pandas
from ._arraytools import (check_no_overlap, coef_to_work, finish_output, frame_of,
                          new_output, state_from_work, state_to_work, to_work)
from ._backend import check_backend, foreign
from ._cpu.ssm import SSM_LANES, ssm_scan
from ._validation import as_float_array, compute_dtype, normalize_axis, real_dtype

__all__ = ["DiagonalSSM"]

#: relative tolerance for calling two modes conjugate partners (and a value real)
PAIR_RTOL = 1e-8
#: poles closer than this (relative to their magnitude) count as repeated
REPEATED_RTOL = 1e-6
#: largest accepted cancellation factor of a partial-fraction expansion
MAX_CANCELLATION = 1e6
#: poles smaller than this (relative to the largest, at least 1) are taken as 0
ZERO_POLE_ATOL = 64 * np.finfo(np.float64).eps
#: rows at least this long, and fewer than SSM_LANES of them, use the time-chunked scan
CHUNKED_MIN_LENGTH = 1 << 15
#: pieces per row of the time-chunked scan (two jobs of SSM_LANES lanes)
CHUNK_PIECES = 2 * SSM_LANES
#: frequencies used to check a decomposition against the filter it came from
_CHECK_POINTS = 1024

_METHODS = {"zoh": "zoh", "bilinear": "bilinear", "tustin": "bilinear",
            "euler": "euler", "forward_diff": "euler", "backward_diff": "backward_diff",
            "mamba": "mamba"}
_GBT_ALPHA = {"bilinear": 0.5, "euler": 0.0, "backward_diff": 1.0}


# =============================================================== small helpers

def _coef(value, name: str) -> np.ndarray:
    """A coefficient as a complex128 array (a fresh copy), finite, with the policy's errors."""
    arr = as_float_array(value, name)
    arr = np.array(arr, dtype=np.complex128)          # always a copy: never alias the input
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].flat[0]
        raise ValueError(f"{name} must be finite; got {bad!r}")
    return arr


def _real_coef(value, name: str) -> np.ndarray:
    arr = as_float_array(value, name)
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real; got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got {arr[~np.isfinite(arr)].flat[0]!r}")
    return arr


def _positive_int(value, name: str, minimum: int = 1) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}") from None
    if n < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {n}")
    return n


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, order="C")                      # a copy (ascontiguousarray makes 0-d 1-d)
    arr.setflags(write=False)
    return arr


def _is_real_value(x: np.ndarray) -> bool:
    return bool(np.all(np.abs(x.imag) <= PAIR_RTOL * np.abs(x)))


def _pair_modes(p: np.ndarray, B: np.ndarray, C: np.ndarray):
    """Conjugate partners of one system's modes, or None if the modes are not symmetric.

    Returns ``partner`` (int array): ``partner[n] == n`` for a self-conjugate mode
    (real pole, B, C), else the index of the mode with the conjugate pole, B and C.
    """
    N = p.shape[0]
    tol = PAIR_RTOL
    selfc = ((np.abs(p.imag) <= tol * np.maximum(1.0, np.abs(p)))
             & (np.abs(B.imag) <= tol * np.abs(B)) & (np.abs(C.imag) <= tol * np.abs(C)))
    partner = np.full(N, -1, dtype=np.intp)
    partner[selfc] = np.nonzero(selfc)[0]
    rest = np.nonzero(~selfc)[0]
    if rest.size == 0:
        return partner
    if rest.size % 2:
        return None
    pr, br, cr = p[rest], B[rest], C[rest]

    def close(x):
        d = np.abs(x[None, :] - np.conj(x)[:, None])
        scale = np.maximum(np.abs(x)[None, :], np.abs(x)[:, None])
        return d <= tol * scale

    dp = np.abs(pr[None, :] - np.conj(pr)[:, None]) <= tol * np.maximum(1.0, np.abs(pr))[:, None]
    match = dp & close(br) & close(cr)
    np.fill_diagonal(match, False)
    free = np.ones(rest.size, dtype=bool)
    for i in range(rest.size):
        if not free[i]:
            continue
        cand = np.nonzero(match[i] & free)[0]
        if cand.size == 0:
            return None
        j = cand[0]
        free[i] = free[j] = False
        partner[rest[i]] = rest[j]
        partner[rest[j]] = rest[i]
    return partner


def _broadcast_bank(name_shapes) -> tuple:
    try:
        return np.broadcast_shapes(*(s for _, s in name_shapes))
    except ValueError:
        desc = ", ".join(f"{n} {s}" for n, s in name_shapes)
        raise ValueError(f"the system's leading (bank) dimensions do not broadcast "
                         f"together: {desc}") from None


# ====================================================== partial fractions (modal form)

def _numerically_zero(p: np.ndarray) -> np.ndarray:
    """Poles that are 0 up to rounding (e.g. 5.6e-17 from an odd Butterworth at cutoff 0.5).

    A pole at 0 is a pure delay (an FIR term); a tiny nonzero one would get a huge
    residue cancelling against the direct term.
    """
    scale = max(1.0, float(np.max(np.abs(p)))) if p.size else 1.0
    return np.abs(p) <= ZERO_POLE_ATOL * scale


def _check_distinct(p: np.ndarray, source: str) -> None:
    """Refuse repeated or nearly repeated poles: a diagonal form does not exist for them."""
    if p.size < 2:
        return
    d = np.abs(p[:, None] - p[None, :])
    scale = np.maximum(np.abs(p)[:, None], np.abs(p)[None, :])
    np.fill_diagonal(d, np.inf)
    rel = d / scale
    i, j = np.unravel_index(np.argmin(rel), rel.shape)
    if rel[i, j] < REPEATED_RTOL:
        raise ValueError(
            f"{source} has repeated or nearly repeated poles ({p[i]:.6g} and {p[j]:.6g}, "
            f"relative separation {rel[i, j]:.2g} < {REPEATED_RTOL:g}). A diagonal (modal) "
            "form exists only for distinct poles: a repeated pole needs a Jordan block "
            "(terms t * p**t), and nearly repeated ones give residues so large that they "
            "cancel. Filter it with iirssm.sosfilt / iirssm.lfilter (or scipy.signal) "
            "instead, or perturb the repeated poles apart.")


def _grid():
    w = np.pi * (np.arange(_CHECK_POINTS) + 0.5) / (_CHECK_POINTS // 2)   # whole circle
    return w, np.exp(-1j * w)


def _modal_response(r, p, direct, e):
    """sum_n r_n / (1 - p_n e) + sum_j direct_j e**j and the sum of the terms' moduli."""
    H = np.zeros(e.shape, dtype=np.complex128)
    mag = np.zeros(e.shape)
    for rn, pn in zip(r, p):
        term = rn / (1.0 - pn * e)
        H += term
        mag += np.abs(term)
    for j, kj in enumerate(direct):
        H += kj * e ** j
        mag += np.abs(kj)
    return H, mag


def _cancellation(r, p, direct):
    """(max_w sum |terms| / max_w |H|, H, e) on the unit-circle grid."""
    _, e = _grid()
    H, mag = _modal_response(r, p, direct, e)
    peak = np.max(np.abs(H))
    cancel = np.max(mag) / peak if peak > 0 else (np.inf if np.max(mag) > 0 else 1.0)
    return float(cancel), H, e


def _check_modal(r, p, direct, reference, source: str, rtol: float | None) -> None:
    """Refuse a partial-fraction expansion that cancels badly or misses its filter.

    ``reference(e)`` evaluates the original filter at ``e = exp(-jw)``.
    """
    cancel, H, e = _cancellation(r, p, direct)
    if not cancel <= MAX_CANCELLATION:
        raise ValueError(
            f"the partial-fraction (modal) form of {source} is ill-conditioned: its terms "
            f"cancel by a factor of {cancel:.3g} (> {MAX_CANCELLATION:g}), so filtering with "
            f"it would lose about {np.log10(cancel):.0f} digits. This happens with nearly "
            "repeated poles. Filter it with iirssm.sosfilt / iirssm.lfilter (or "
            "scipy.signal) instead.")
    if rtol is None:
        return
    Href = reference(e)
    ok = np.all(np.isfinite(Href))
    err = np.max(np.abs(H - Href)) / max(np.max(np.abs(Href)), 1e-300) if ok else np.inf
    if not err <= rtol:
        raise ValueError(
            f"the modal form found for {source} does not reproduce its frequency response "
            f"(relative error {err:.2g} > rtol={rtol:g}): the poles of a high-order "
            "transfer function are very sensitive to rounding of its coefficients. Design "
            "the filter in zpk or sos form (scipy.signal's output='zpk' or 'sos') and use "
            "DiagonalSSM.from_zpk / from_sos, or pass a larger rtol to accept it.")


def _fir_part(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The polynomial part of b(z^-1)/a(z^-1) (coefficients of z^0, z^-1, ...), as residuez."""
    if len(b) < len(a):
        return np.zeros(0, dtype=np.complex128)
    q, _ = np.polydiv(b[::-1], a[::-1])
    return np.asarray(q[::-1], dtype=np.complex128)


def _symmetrize(r: np.ndarray, p: np.ndarray, direct: np.ndarray, real: bool):
    """For a real filter, make residues of conjugate poles exact conjugates (poles from
    ``np.roots``/``zpk`` already come in exact pairs) and real poles' residues real."""
    if not real:
        return r, direct
    r = r.copy()
    realp = p.imag == 0
    r[realp] = r[realp].real
    upper = np.nonzero(p.imag > 0)[0]
    lower = list(np.nonzero(p.imag < 0)[0])
    for i in upper:
        if not lower:
            break
        j = min(lower, key=lambda m: abs(p[m] - np.conj(p[i])))
        if abs(p[j] - np.conj(p[i])) <= PAIR_RTOL * max(1.0, abs(p[i])):
            r[j] = np.conj(r[i])
            lower.remove(j)
    return r, direct.real.astype(np.complex128)


def _residues_tf(b: np.ndarray, a: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Residues of b(z^-1)/a(z^-1) at the simple, nonzero poles ``p`` (a[0] == 1)."""
    M = len(b) - 1
    r = np.empty(p.shape, dtype=np.complex128)
    for i, pi in enumerate(p):
        # b(1/p) = polyval(b, p) / p**M keeps Horner's intermediate values bounded for |p| <= 1
        num = np.polyval(b, pi) / pi ** M
        r[i] = num / np.prod(1.0 - np.delete(p, i) / pi)
    return r


def _residues_zpk(z: np.ndarray, p: np.ndarray, k, e: int) -> np.ndarray:
    """Residues of k z**e prod(1 - z_j/z) / prod(1 - p_i/z) at the (nonzero) poles ``p``."""
    r = np.empty(p.shape, dtype=np.complex128)
    for i, pi in enumerate(p):
        r[i] = k * pi ** e * np.prod(1.0 - z / pi) / np.prod(1.0 - np.delete(p, i) / pi)
    return r


# ============================================================== discretization

def _discretize(A, B, C, D, dt, method, convention):
    """Diagonal discretization, elementwise; returns (p, B, C, D) in iirssm's convention."""
    x = dt * A
    if method in ("zoh", "mamba"):
        Ad = np.exp(x)
        if method == "zoh":
            # (e^x - 1)/x -> 1 as x -> 0: expm1 keeps the small-x digits
            small = x == 0
            phi = np.where(small, 1.0, np.expm1(x) / np.where(small, 1.0, x))
            Bd = phi * dt * B
        else:
            Bd = dt * B
        Cd, Dd = C, D
    else:
        alpha = _GBT_ALPHA[method]
        den = 1.0 - alpha * x
        if np.any(den == 0):
            raise ValueError(f"method={method!r} is singular for dt * A == {1 / alpha:g} "
                             "(a pole of the transform); change dt")
        Ad = (1.0 + (1.0 - alpha) * x) / den
        Bd = dt * B / den
        Cd = C / den
        Dd = D + alpha * np.sum(C * Bd, axis=-1)
    if convention == "ssm":
        return Ad, Bd, C, D
    # scipy: x[t+1] = Ad x[t] + Bd u[t], y[t] = Cd x[t] + Dd u[t]. Our h[t] is x[t+1],
    # so y[t] = Cd/Ad h[t] + (Dd - sum Cd Bd/Ad) u[t].
    if np.any(Ad == 0):
        raise ValueError("the discretized system has a pole at exactly 0 (dt * A == -1 with "
                         f"method={method!r}): in scipy's convention that mode is a pure delay, "
                         "which a diagonal mode reading its updated state cannot represent. "
                         "Change dt, or use convention='ssm'")
    return Ad, Bd, Cd / Ad, Dd - np.sum(Cd * Bd / Ad, axis=-1)


# =================================================================== the class

class DiagonalSSM:
    r"""A discrete-time diagonal state-space system: a bank of complex first-order filters.

    .. math::

        h_n[t] = p_n h_n[t-1] + B_n u[t], \quad
        y[t] = \sum_n C_n h_n[t] + D u[t] + \sum_{j=1}^{K} k_j u[t-j]

    with transfer function
    :math:`H(z) = \sum_n C_n B_n / (1 - p_n z^{-1}) + D + \sum_j k_j z^{-j}`.

    Parameters
    ----------
    poles : array_like, shape (..., N)
        The poles ``p_n`` (the diagonal of the state matrix), real or complex.
        Leading dimensions make a *bank* of systems (one per channel, say) that
        broadcasts against the non-time dimensions of the signals it filters.
    B, C : array_like, broadcasting to (..., N)
        Input gains and read-out weights of the modes.
    D : array_like, broadcasting to the bank shape (...), optional
        Direct (feed-through) term. Default 0.
    k : array_like, shape (..., K), optional
        Extra FIR terms ``k_1 .. k_K`` at delays ``1 .. K``: an improper transfer
        function (``len(b) >= len(a) + 1``) has them. scipy's ``residuez`` returns
        ``[D, k_1, ..., k_K]`` as its ``k``.

    Attributes
    ----------
    poles, B, C : ndarray of complex128, shape ``bank_shape + (n_modes,)``
    D : ndarray, shape ``bank_shape``; ``k`` : ndarray, shape ``bank_shape + (K,)``
        float64 for a real system, complex128 otherwise.
    bank_shape, n_modes, n_states, is_real, is_stable, halflife, residues, cancellation

    Notes
    -----
    *Real systems.* The system is real when its modes are conjugate-symmetric (every
    mode has a real pole, B and C, or a partner mode with the conjugate pole, B and
    C, within a relative 1e-8) and D and k are real. It then maps real signals to
    real signals, and :meth:`filter` computes each conjugate pair once. Otherwise
    the output is complex.

    *Read-out convention.* ``y[t]`` reads the state after ``u[t]`` entered it (as in
    S4/S4D/Mamba), so the impulse response is ``K[t] = sum_n C_n B_n p_n**t`` plus
    ``D`` at ``t = 0``.

    All arrays are copied at construction and stored read-only.

    Examples
    --------
    A one-pole lowpass (an EMA with smoothing 0.25) as a one-mode system:

    >>> import numpy as np
    >>> from iirssm._ssm import DiagonalSSM
    >>> ema = DiagonalSSM([0.75], B=[0.25], C=[1.0])
    >>> ema.filter(np.array([1.0, 1.0, 1.0]))
    array([0.25    , 0.4375  , 0.578125])

    A 4th-order Butterworth filter as 4 modes (two conjugate pairs):

    >>> import scipy.signal
    >>> ssm = DiagonalSSM.from_zpk(*scipy.signal.butter(4, 0.2, output="zpk"))
    >>> ssm.n_modes, ssm.is_real, ssm.is_stable
    (4, True, True)
    >>> x = np.random.default_rng(0).standard_normal(100)
    >>> np.allclose(ssm.filter(x), scipy.signal.lfilter(*ssm.to_tf(), x))
    True
    """

    def __init__(self, poles, B, C, D=0.0, *, k=None):
        p = _coef(poles, "poles")
        if p.ndim == 0:
            raise ValueError("poles must have at least one dimension, (..., n_modes); "
                             "got a scalar (wrap it in a list for a one-mode system)")
        Bc = _coef(B, "B")
        Cc = _coef(C, "C")
        Dc = _coef(D, "D")
        try:
            mshape = np.broadcast_shapes(p.shape, Bc.shape, Cc.shape)
        except ValueError:
            raise ValueError(f"poles, B and C must broadcast to one shape (..., n_modes); "
                             f"got poles {p.shape}, B {Bc.shape}, C {Cc.shape}") from None
        if len(mshape) != p.ndim or mshape[-1] != p.shape[-1]:
            raise ValueError(f"B and C must broadcast against poles {p.shape} without adding "
                             f"modes or dimensions; got B {Bc.shape}, C {Cc.shape}")
        parts = [("poles/B/C", mshape[:-1]), ("D", Dc.shape)]
        if k is not None:
            kc = _coef(k, "k")
            if kc.ndim == 0:
                kc = kc.reshape(1)
            parts.append(("k", kc.shape[:-1]))
        else:
            kc = np.zeros((0,), dtype=np.complex128)
        bank = _broadcast_bank(parts)
        N = mshape[-1]
        self._poles = _frozen(np.broadcast_to(p, bank + (N,)))
        self._B = _frozen(np.broadcast_to(Bc, bank + (N,)))
        self._C = _frozen(np.broadcast_to(Cc, bank + (N,)))
        self._D = _frozen(np.broadcast_to(Dc, bank))
        self._k = _frozen(np.broadcast_to(kc, bank + kc.shape[-1:]))
        self._partner = None          # (n_bank, N) conjugate partners, computed lazily
        self._real = None
        self._plans = {}
        self._work = {}               # the last coefficients in a work frame (_work_coefs)

    # ------------------------------------------------------------- properties
    @property
    def bank_shape(self) -> tuple:
        """Shape of the bank of systems (``()`` for one system)."""
        return self._poles.shape[:-1]

    @property
    def n_modes(self) -> int:
        """Number of modes ``N`` (the state size of the modal part)."""
        return self._poles.shape[-1]

    @property
    def n_states(self) -> int:
        """Size of ``zi``/``zf`` along time: ``n_modes`` plus the number of extra FIR terms."""
        return self.n_modes + self._k.shape[-1]

    @property
    def poles(self) -> np.ndarray:
        return self._poles

    @property
    def B(self) -> np.ndarray:
        return self._B

    @property
    def C(self) -> np.ndarray:
        return self._C

    @property
    def D(self) -> np.ndarray:
        return _frozen(self._D.real.copy()) if self.is_real else self._D

    @property
    def k(self) -> np.ndarray:
        return _frozen(self._k.real.copy()) if self.is_real else self._k

    @property
    def residues(self) -> np.ndarray:
        """``C * B``: the residues of the partial-fraction form (complex128)."""
        return self._C * self._B

    @property
    def is_real(self) -> bool:
        """True when the modes are conjugate-symmetric and D, k real (real in, real out)."""
        if self._real is None:
            self._pairing()
        return self._real

    @property
    def is_stable(self) -> bool:
        """True when every pole lies strictly inside the unit circle."""
        return bool(np.all(np.abs(self._poles) < 1.0))

    @property
    def cancellation(self):
        """How much the modal form amplifies rounding errors (1 = not at all).

        ``max_w sum_n |r_n / (1 - p_n e^{-jw})| / max_w |H(e^{jw})|`` on the unit circle
        (plus the direct terms): the factor by which the terms of the partial-fraction
        sum exceed the response they add up to. Filtering loses about
        ``log10(cancellation)`` digits: the relative error of the output is roughly
        ``cancellation * eps`` of the signal's dtype (2.3e3 for a 16th-order
        Butterworth at cutoff 0.1: about 2e-4 in float32, 5e-13 in float64; 2.9 for
        an 8th-order Chebyshev I at 0.3). The conversions refuse forms above 1e6. A
        float for one system, an array for a bank.
        """
        N, K = self.n_modes, self._k.shape[-1]
        nb = prod(self.bank_shape)
        r = self.residues.reshape(nb, N)
        p = self._poles.reshape(nb, N)
        direct = np.concatenate([self._D.reshape(nb, 1), self._k.reshape(nb, K)], axis=1)
        out = np.array([_cancellation(r[i], p[i], direct[i])[0] for i in range(nb)])
        return float(out[0]) if self.bank_shape == () else out.reshape(self.bank_shape)

    @property
    def halflife(self) -> np.ndarray:
        """Half-life of each mode in samples, ``ln(0.5) / ln|p|``.

        ``inf`` for ``|p| == 1``, ``0`` for ``p == 0``; negative for ``|p| > 1``
        (its magnitude is then the doubling time).
        """
        with np.errstate(divide="ignore"):
            lg = np.log(np.abs(self._poles))
            return np.where(lg == 0, np.inf, np.log(0.5) / np.where(lg == 0, 1.0, lg))

    def __repr__(self) -> str:
        head = (f"DiagonalSSM(n_modes={self.n_modes}, bank_shape={self.bank_shape}, "
                f"real={self.is_real}, stable={self.is_stable}")
        if self.bank_shape == () and self.n_modes <= 8:
            with np.printoptions(precision=4, suppress=True):
                head += f", poles={np.array2string(self._poles, separator=', ')}"
        return head + ")"

    def __getitem__(self, index) -> DiagonalSSM:
        """Select systems of the bank with any NumPy index (the modes are kept)."""
        if self.bank_shape == ():
            raise TypeError("a single system (bank_shape == ()) cannot be indexed")
        nb = prod(self.bank_shape)
        flat = np.arange(nb).reshape(self.bank_shape)[index]
        N, K = self.n_modes, self._k.shape[-1]
        return DiagonalSSM(self._poles.reshape(nb, N)[flat], self._B.reshape(nb, N)[flat],
                           self._C.reshape(nb, N)[flat], self._D.reshape(nb)[flat],
                           k=self._k.reshape(nb, K)[flat] if K else None)

    # ------------------------------------------------------------ conjugate pairs
    def _pairing(self):
        N = self.n_modes
        nb = prod(self.bank_shape)
        P = self._poles.reshape(nb, N)
        B = self._B.reshape(nb, N)
        C = self._C.reshape(nb, N)
        real = _is_real_value(self._D) and _is_real_value(self._k)
        partner = np.empty(P.shape, dtype=np.intp)
        if real:
            if not (np.any(P.imag) or np.any(B.imag) or np.any(C.imag)):
                partner[:] = np.arange(N)
            else:
                for i in range(P.shape[0]):
                    pi = _pair_modes(P[i], B[i], C[i])
                    if pi is None:
                        real = False
                        break
                    partner[i] = pi
        self._real = bool(real)
        self._partner = partner if real else None

    def _plan(self, use_pairs: bool):
        """Which modes the kernel runs: (sel, mult) of shape (n_bank, M); -1 pads."""
        if use_pairs in self._plans:
            return self._plans[use_pairs]
        N = self.n_modes
        nb = prod(self.bank_shape)
        if not use_pairs:
            sel = np.broadcast_to(np.arange(N), (nb, N))
            mult = np.ones((nb, N))
        else:
            partner = self._partner
            reps = [np.nonzero(partner[i] >= np.arange(N))[0] for i in range(nb)]
            M = max((r.size for r in reps), default=0)
            sel = np.full((nb, M), -1, dtype=np.intp)
            mult = np.zeros((nb, M))
            for i, r in enumerate(reps):
                sel[i, :r.size] = r
                mult[i, :r.size] = np.where(partner[i, r] == r, 1.0, 2.0)
        self._plans[use_pairs] = (sel, mult)
        return sel, mult

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_continuous(cls, A, B, C, D=0.0, dt=1.0, method="zoh", convention=None):
        r"""Discretize a continuous-time diagonal system ``x' = A x + B u, y = C x + D u``.

        Parameters
        ----------
        A : array_like, shape (..., N)
            The continuous poles (the diagonal of the state matrix), real or complex.
        B, C : array_like, broadcasting to (..., N)
        D : array_like, broadcasting to the bank shape, optional
        dt : float or array_like, optional
            The step Δ (> 0). An array broadcasting against the bank shape gives each
            system its own step (S4D/Mamba's per-channel Δ). Default 1.
        method : {"zoh", "bilinear", "euler", "backward_diff", "mamba"}, optional
            ``zoh``: Ā = e^{ΔA}, B̄ = (e^{ΔA} - 1)/A · B (→ Δ·B as A → 0, by ``expm1``);
            ``bilinear`` (alias ``tustin``): Ā = (1 + ΔA/2)/(1 - ΔA/2), B̄ = ΔB/(1 - ΔA/2);
            ``euler`` (alias ``forward_diff``): Ā = 1 + ΔA, B̄ = ΔB;
            ``backward_diff``: Ā = 1/(1 - ΔA), B̄ = ΔB/(1 - ΔA);
            ``mamba``: Ā = e^{ΔA}, B̄ = ΔB (what mamba-ssm computes).
        convention : {"scipy", "ssm"}, optional
            How the output reads the state. ``"scipy"`` (the default for every method
            but ``mamba``) reproduces :func:`scipy.signal.cont2discrete` exactly: its
            ``y[t] = C_d x[t] + D_d u[t]`` reads the state *before* ``u[t]`` enters
            (and for bilinear/backward_diff it changes C and D too). As iirssm's state
            is the one after, the system stored is ``p = Ā``, ``B = B̄``,
            ``C = C_d/Ā``, ``D = D_d - Σ C_d B̄/Ā``; its transfer function is scipy's.
            ``"ssm"`` (the default for ``mamba``) is the S4/S4D/Mamba convention:
            ``p = Ā``, ``B = B̄``, and C, D unchanged, so that ``y[t] = Σ C h[t] + D u[t]``
            with ``h[t]`` already containing ``u[t]``; its kernel is
            ``K[t] = Σ C B̄ Ā^t``. The two differ by where the output samples the
            state, not by the poles.

        Returns
        -------
        DiagonalSSM

        Examples
        --------
        >>> import numpy as np
        >>> from iirssm._ssm import DiagonalSSM
        >>> s = DiagonalSSM.from_continuous([-1.0], [1.0], [1.0], dt=0.1, method="mamba")
        >>> np.round(s.poles.real, 6), np.round(s.B.real, 6)
        (array([0.904837]), array([0.1]))
        """
        name = _METHODS.get(method) if isinstance(method, str) else None
        if name is None:
            raise ValueError(f"method must be one of {sorted(_METHODS)}; got {method!r}")
        if convention is None:
            convention = "ssm" if name == "mamba" else "scipy"
        if convention not in ("scipy", "ssm"):
            raise ValueError(f"convention must be 'scipy' or 'ssm'; got {convention!r}")
        Ac = _coef(A, "A")
        if Ac.ndim == 0:
            raise ValueError("A must have at least one dimension, (..., n_modes)")
        Bc, Cc, Dc = _coef(B, "B"), _coef(C, "C"), _coef(D, "D")
        dtv = _real_coef(dt, "dt")
        if np.any(dtv <= 0):
            raise ValueError(f"dt must be positive; got {dtv[dtv <= 0].flat[0]!r}")
        try:
            shape = np.broadcast_shapes(Ac.shape, Bc.shape, Cc.shape)
            bank = np.broadcast_shapes(shape[:-1], Dc.shape, dtv.shape)
        except ValueError:
            raise ValueError(f"A {Ac.shape}, B {Bc.shape}, C {Cc.shape} (..., N), D {Dc.shape} "
                             f"and dt {dtv.shape} (...) do not broadcast together") from None
        shape = bank + shape[-1:]
        Ac, Bc, Cc = (np.broadcast_to(v, shape) for v in (Ac, Bc, Cc))
        p, Bd, Cd, Dd = _discretize(Ac, Bc, Cc, np.broadcast_to(Dc, bank),
                                    np.broadcast_to(dtv, bank)[..., None], name, convention)
        return cls(p, Bd, Cd, Dd)

    @classmethod
    def from_tf(cls, b, a, *, rtol=1e-6):
        """Modal form of the transfer function ``b(z^-1) / a(z^-1)`` (scipy's convention).

        The poles are the roots of ``a`` (trailing zeros of ``a``, poles at z = 0, are
        delays and become FIR terms); the residues are computed for each simple pole
        from ``b`` and the other poles, as :func:`scipy.signal.residuez` does for
        distinct poles, and the polynomial part gives ``D`` and ``k``.

        Parameters
        ----------
        b, a : array_like, 1-D
            Numerator and denominator coefficients; ``a[0]`` must be nonzero.
        rtol : float or None, optional
            Largest accepted relative error of the modal form's frequency response
            against the transfer function's (at 1024 frequencies, relative to the
            peak gain). Default 1e-6; ``None`` skips the check.

        Raises
        ------
        ValueError
            Repeated or nearly repeated poles (relative separation below 1e-6, or
            residues cancelling by more than 1e6), or a decomposition that misses the
            filter by more than ``rtol`` (the roots of high-order polynomials with
            clustered roots, e.g. a 12th-order Butterworth at cutoff 0.02, are
            inaccurate: use :meth:`from_zpk` or :meth:`from_sos` then).

        Examples
        --------
        >>> from iirssm._ssm import DiagonalSSM
        >>> s = DiagonalSSM.from_tf([1.0, 0.5], [1.0, -0.9, 0.2])
        >>> s.to_tf()
        (array([1. , 0.5, 0. ]), array([ 1. , -0.9,  0.2]))
        """
        bb = np.atleast_1d(_coef(b, "b"))
        aa = np.atleast_1d(_coef(a, "a"))
        for name, v in (("b", bb), ("a", aa)):
            if v.ndim != 1 or v.size == 0:
                raise ValueError(f"{name} must be a non-empty 1-D array; got shape {v.shape}")
        if aa[0] == 0:
            raise ValueError("a[0] must be nonzero (the filter is normalised by it)")
        real = not (np.any(bb.imag) or np.any(aa.imag))
        bb, aa = bb / aa[0], aa / aa[0]
        nz = np.nonzero(aa)[0]
        aa = aa[:nz[-1] + 1]                        # trailing zeros: poles at 0 (delays)
        # a real polynomial's roots from a real companion matrix come in exact pairs
        p = np.roots(aa.real if real else aa) if aa.size > 1 else np.zeros(0)
        p = np.asarray(p, dtype=np.complex128)
        tiny = _numerically_zero(p)
        if np.any(tiny):                            # poles at 0 up to rounding: delays
            p = p[~tiny]
            aa = np.poly(p).astype(np.complex128) if p.size else np.ones(1, np.complex128)
        _check_distinct(p, "this transfer function")
        r = _residues_tf(bb, aa, p)
        direct = _fir_part(bb, aa)
        r, direct = _symmetrize(r, p, direct, real)

        def reference(e):
            return np.polyval(bb[::-1], e) / np.polyval(aa[::-1], e)

        _check_modal(r, p, direct, reference, "this transfer function", rtol)
        return cls._from_modal(r, p, direct, real)

    @classmethod
    def from_zpk(cls, z, p, k):
        """Modal form of the filter with zeros ``z``, poles ``p`` and gain ``k`` (scipy's zpk).

        ``H(z) = k prod(z - z_j) / prod(z - p_i)``; needs ``len(z) <= len(p)``
        (causal). The residues come from the factored form, so they are as accurate
        as the poles (this is the way to go for high orders). Poles at exactly 0
        are delays and become FIR terms.

        Raises
        ------
        ValueError
            Repeated or nearly repeated poles, as :meth:`from_tf`.

        Examples
        --------
        >>> import numpy as np, scipy.signal
        >>> from iirssm._ssm import DiagonalSSM
        >>> s = DiagonalSSM.from_zpk(*scipy.signal.cheby1(12, 1, 0.05, output="zpk"))
        >>> s.n_modes, s.is_real, s.is_stable
        (12, True, True)
        """
        zz = np.atleast_1d(_coef(z, "z"))
        pp = np.atleast_1d(_coef(p, "p"))
        kk = _coef(k, "k")
        if zz.ndim != 1 or pp.ndim != 1 or kk.ndim != 0:
            raise ValueError(f"z and p must be 1-D and k a scalar; got shapes {zz.shape}, "
                             f"{pp.shape}, {kk.shape}")
        if zz.size > pp.size:
            raise ValueError(f"more zeros ({zz.size}) than poles ({pp.size}): the filter is "
                             "not causal")
        kk = complex(kk)
        real = (kk.imag == 0 and _conj_closed(zz) and _conj_closed(pp))
        e = zz.size - pp.size
        zn, pn = zz[zz != 0], pp[~_numerically_zero(pp)]   # poles at 0 are delays
        _check_distinct(pn, "this zpk filter")
        r = _residues_zpk(zn, pn, kk, e)
        direct = _zpk_direct(zn, pn, kk, pp.size - zz.size)
        r, direct = _symmetrize(r, pn, direct, real)

        def reference(ev):
            num = kk * np.prod(1.0 - zn[:, None] * ev, axis=0) if zn.size else kk * np.ones_like(ev)
            den = np.prod(1.0 - pn[:, None] * ev, axis=0) if pn.size else np.ones_like(ev)
            return num * ev ** (pp.size - zz.size) / den

        _check_modal(r, pn, direct, reference, "this zpk filter", 1e-6)
        return cls._from_modal(r, pn, direct, real)

    @classmethod
    def from_sos(cls, sos):
        """Modal form of a cascade of second-order sections (scipy's ``sos``).

        The poles and zeros are those of all sections (roots of each section's
        quadratics), so they are accurate even for high orders.

        Examples
        --------
        >>> import numpy as np, scipy.signal
        >>> from iirssm._ssm import DiagonalSSM
        >>> sos = scipy.signal.butter(16, 0.1, output="sos")
        >>> s = DiagonalSSM.from_sos(sos)
        >>> x = np.random.default_rng(1).standard_normal(500)
        >>> np.allclose(s.filter(x), scipy.signal.sosfilt(sos, x))
        True
        """
        arr = _coef(sos, "sos")
        if arr.ndim != 2 or arr.shape[1] != 6 or arr.shape[0] == 0:
            raise ValueError(f"sos must have shape (n_sections, 6); got {arr.shape}")
        if np.any(arr[:, 3] == 0):
            raise ValueError("every section's a0 (column 3 of sos) must be nonzero")
        if np.any(arr.imag):
            raise TypeError("sos must be real")
        # zeros and poles section by section (scipy's sos2zpk goes through tf2zpk, whose
        # normalisation drops numerator coefficients below 1e-14: a high-order filter's
        # small gain would vanish with them)
        zs, ps, k = [], [], 1.0
        for b, a in zip(arr.real[:, :3], arr.real[:, 3:]):
            nzb = np.nonzero(b)[0]
            if nzb.size == 0:
                return cls(np.zeros(0), 1.0, 1.0, 0.0)
            k *= b[nzb[0]] / a[0]
            zs.append(np.roots(b))
            ps.append(np.roots(a))
        return cls.from_zpk(np.concatenate(zs), np.concatenate(ps), k)

    @classmethod
    def _from_modal(cls, r, p, direct, real):
        D = direct[0] if direct.size else 0.0
        k = direct[1:] if direct.size > 1 else None
        if real:
            D = np.real(D)
            k = None if k is None else np.real(k)
        return cls(p, np.ones(p.shape), r, D, k=k)

    # ----------------------------------------------------------- initialisers
    @classmethod
    def s4d_real(cls, N, dt=0.01, *, C=1.0, method="zoh"):
        r"""S4D-Real initialisation: ``A_n = -(n + 1)``, ``B_n = 1``, n = 0..N-1, discretized.

        From Gu, Gupta, Goel and Ré, "On the Parameterization and Initialization of
        Diagonal State Space Models" (NeurIPS 2022), section 4 ("S4D-Real"): the
        diagonal of the HiPPO-LegS matrix's real part. Discretized with ``method``
        in the S4 read-out convention (``convention="ssm"``, kernel
        ``K[t] = Σ C B̄ Ā^t``). ``N`` real modes; ``dt`` may be an array (one system
        per channel). The state-spaces code keeps ``N/2`` of these modes and doubles
        the output, which equals ``C = 2`` here with ``N/2`` modes.

        Examples
        --------
        >>> import numpy as np
        >>> from iirssm._ssm import DiagonalSSM
        >>> s = DiagonalSSM.s4d_real(4, dt=0.1)
        >>> np.round(s.poles.real, 4)
        array([0.9048, 0.8187, 0.7408, 0.6703])
        """
        N = _positive_int(N, "N")
        A = -(np.arange(N) + 1.0)
        return cls.from_continuous(A, 1.0, C, 0.0, dt=dt, method=method, convention="ssm")

    @classmethod
    def s4d_lin(cls, N, dt=0.01, *, C=1.0, method="zoh"):
        r"""S4D-Lin initialisation: ``A_n = -1/2 + iπn``, ``B_n = 1``, discretized.

        From Gu et al. (2022), section 4 ("S4D-Lin"), with ``n = 0 .. N/2 - 1``: as in
        S4D, the state size ``N`` (even) counts each complex mode and its conjugate,
        so the system has these ``N/2`` modes followed by their conjugates and is
        real; its output is S4D's ``2 Re(Σ_n C_n h_n)``. ``C`` gives the read-out of
        the first ``N/2`` modes (the conjugates get ``conj(C)``). Mode 0 (``A_0 = -1/2``)
        is real, so it appears twice: harmless for filtering, but :meth:`to_tf`
        then has a repeated pole.

        Examples
        --------
        >>> from iirssm._ssm import DiagonalSSM
        >>> s = DiagonalSSM.s4d_lin(8, dt=0.01)
        >>> s.n_modes, s.is_real
        (8, True)
        """
        N = _positive_int(N, "N", 2)
        if N % 2:
            raise ValueError(f"N must be even (N/2 modes and their conjugates); got {N}")
        h = N // 2
        A = -0.5 + 1j * np.pi * np.arange(h)
        Cc = _coef(C, "C")
        Cc = np.broadcast_to(Cc, Cc.shape[:-1] + (h,)) if Cc.ndim else np.full(h, Cc)
        A2 = np.concatenate([A, np.conj(A)])
        C2 = np.concatenate([Cc, np.conj(Cc)], axis=-1)
        return cls.from_continuous(A2, 1.0, C2, 0.0, dt=dt, method=method, convention="ssm")

    @classmethod
    def log_halflives(cls, N, min_halflife, max_halflife):
        """``N`` EMAs with half-lives log-spaced from ``min_halflife`` to ``max_halflife`` samples.

        Real poles ``p_n = 0.5 ** (1 / h_n)``, ``B = 1 - p`` and ``C = 1/N``: each mode is
        a unit-DC-gain EMA and the output is their average (unit DC gain).

        Examples
        --------
        >>> import numpy as np
        >>> from iirssm._ssm import DiagonalSSM
        >>> s = DiagonalSSM.log_halflives(3, 1.0, 100.0)
        >>> np.round(s.halflife, 6)
        array([  1.,  10., 100.])
        >>> float(np.round(s.freqz([0.0])[1][0].real, 12))
        1.0
        """
        N = _positive_int(N, "N")
        lo = float(_real_coef(min_halflife, "min_halflife"))
        hi = float(_real_coef(max_halflife, "max_halflife"))
        if not 0 < lo <= hi:
            raise ValueError("need 0 < min_halflife <= max_halflife; got "
                             f"{lo!r} and {hi!r}")
        h = np.geomspace(lo, hi, N)
        p = 0.5 ** (1.0 / h)
        return cls(p, 1.0 - p, np.full(N, 1.0 / N))

    # ------------------------------------------------------------- conversions
    def to_tf(self):
        """Transfer function ``(b, a)`` in scipy's convention (``a[0] == 1``).

        ``a = prod(1 - p_n z^-1)`` has length ``n_modes + 1``; ``b`` has length
        ``n_modes + 1 + K``. Real (float64) for a real system, else complex. For a
        bank, both have the bank's shape in front.
        """
        N, K = self.n_modes, self._k.shape[-1]
        bank = self.bank_shape
        a = np.empty(bank + (N + 1,), dtype=np.complex128)
        b = np.zeros(bank + (N + 1 + K,), dtype=np.complex128)
        r = self.residues
        for idx in np.ndindex(*bank):
            p = self._poles[idx]
            ai = np.poly(p) if N else np.ones(1)
            bi = np.zeros(N + 1 + K, dtype=np.complex128)
            for n in range(N):
                bi[:N] += r[idx][n] * np.poly(np.delete(p, n))
            bi[:N + 1] += self._D[idx] * ai
            for j in range(K):
                bi[j + 1:j + 2 + N] += self._k[idx][j] * ai
            a[idx] = ai
            b[idx] = bi
        if self.is_real:
            return b.real.copy(), a.real.copy()
        return b, a

    def _single(self, what):
        if self.bank_shape != ():
            raise ValueError(f"{what} needs a single system; this is a bank of shape "
                             f"{self.bank_shape}: select one with ssm[i]")

    def _exact_poles(self):
        """The poles, with conjugate partners made exact conjugates for a real system."""
        p = self._poles.copy()
        if self.is_real and self.n_modes:
            part = self._partner[0]
            for n in range(self.n_modes):
                if part[n] == n:
                    p[n] = p[n].real
                elif part[n] > n:
                    p[part[n]] = np.conj(p[n])
        return p

    def to_zpk(self):
        """Zeros, poles and gain ``(z, p, k)`` in scipy's convention (single system).

        The poles are the system's own (plus ``K`` poles at 0 when there are extra FIR
        terms); the zeros are the roots of :meth:`to_tf`'s numerator. For a real
        system conjugate poles are exact conjugates and ``k`` is real.
        """
        self._single("to_zpk")
        b, _ = self.to_tf()
        K = self._k.shape[-1]
        p = np.concatenate([self._exact_poles(), np.zeros(K)])
        nzb = np.nonzero(b)[0]
        if nzb.size == 0:
            return np.zeros(0), p, 0.0 if self.is_real else 0j
        gain = b[nzb[0]]
        z = np.roots(b)
        if self.is_real:
            z = _conj_clean(z)
            gain = float(np.real(gain))
        return z, p, gain

    def to_sos(self, pairing=None):
        """Second-order sections via :func:`scipy.signal.zpk2sos` (real single systems)."""
        import scipy.signal

        self._single("to_sos")
        if not self.is_real:
            raise ValueError("to_sos needs a real system (conjugate-symmetric modes): "
                             "second-order sections have real coefficients")
        z, p, k = self.to_zpk()
        if z.size < p.size:
            z = np.concatenate([z, np.zeros(p.size - z.size)])
        kwargs = {} if pairing is None else {"pairing": pairing}
        return scipy.signal.zpk2sos(z, p, k, **kwargs)

    def to_dlti(self):
        """The system as a :class:`scipy.signal.dlti` (transfer-function form, ``dt=True``)."""
        import scipy.signal

        self._single("to_dlti")
        b, a = self.to_tf()
        a = np.concatenate([a, np.zeros(b.size - a.size, dtype=a.dtype)])
        return scipy.signal.dlti(b, a)

    # ---------------------------------------------------------------- analysis
    def freqz(self, worN=512, whole=False):
        """Frequency response, with :func:`scipy.signal.freqz`'s conventions.

        Parameters
        ----------
        worN : int or array_like, optional
            Number of frequencies (equally spaced on ``[0, π)``, or ``[0, 2π)`` with
            ``whole``, endpoint excluded), or the frequencies themselves in
            rad/sample. Default 512.
        whole : bool, optional

        Returns
        -------
        w : ndarray
            Frequencies in rad/sample.
        h : ndarray of complex128
            The response, shape ``bank_shape + w.shape``.
        """
        if worN is None:
            worN = 512
        if np.ndim(worN) == 0 and isinstance(worN, (int, np.integer)):
            n = _positive_int(worN, "worN")
            w = np.linspace(0, 2 * np.pi if whole else np.pi, n, endpoint=False)
        else:
            w = _real_coef(worN, "worN")
        e = np.exp(-1j * w)
        ex = e.reshape((1,) * len(self.bank_shape) + e.shape)
        h = np.broadcast_to(self._D.reshape(self.bank_shape + (1,) * e.ndim),
                            self.bank_shape + e.shape).astype(np.complex128)
        r = self.residues
        for n in range(self.n_modes):
            rn = r[..., n].reshape(self.bank_shape + (1,) * e.ndim)
            pn = self._poles[..., n].reshape(self.bank_shape + (1,) * e.ndim)
            h = h + rn / (1.0 - pn * ex)
        for j in range(self._k.shape[-1]):
            h = h + self._k[..., j].reshape(self.bank_shape + (1,) * e.ndim) * ex ** (j + 1)
        return w, h

    def impulse(self, n):
        """Impulse response of length ``n`` (D at t = 0 and the FIR terms included).

        Shape ``bank_shape + (n,)``; float64 for a real system, complex128 otherwise.
        """
        n = _positive_int(n, "n")
        u = np.zeros(self.bank_shape + (n,))
        u[..., 0] = 1.0
        return self.filter(u)

    def kernel(self, L):
        """The S4 convolution kernel ``K[t] = Σ_n C_n B_n p_n**t``, t = 0 .. L-1.

        ``D`` and the FIR terms are *not* included (S4 adds ``D u`` as a skip
        connection), so ``y = causal_conv(u, K) + D u + Σ k_j u[t-j]``. Computed by
        running the recurrence on an impulse (no ``(N, L)`` array of powers).
        Shape ``bank_shape + (L,)``.
        """
        L = _positive_int(L, "L")
        core = DiagonalSSM(self._poles, self._B, self._C, 0.0)
        return core.impulse(L)

    # ----------------------------------------------------------------- filtering
    def filter(self, u, axis=-1, zi=None, return_zf=False, method="scan", out=None,
               backend=None):
        r"""Filter ``u`` along ``axis`` through the system(s).

        Parameters
        ----------
        u : array_like
            Input signal, time along ``axis``. The bank shape broadcasts against
            ``u``'s other dimensions (aligned from the right, time removed); when it
            adds dimensions, they are prepended to the output (and ``u`` is expanded
            to the output's shape once, a copy). A pandas Series or
            DataFrame gives the same type back (time along the index).
        axis : int, optional
            Time axis of ``u``. Default -1. The output keeps time at the same
            position counted from the end.
        zi : array_like, optional
            Initial state: the output's shape with the time axis of length
            ``n_states`` (the ``n_modes`` modal states ``h_n[-1]``, complex, then for
            systems with FIR terms the last ``K`` inputs, newest first). Singleton
            dimensions broadcast. Default zeros. For a real system filtering a real
            signal the states of conjugate partners must be conjugates (as the
            ``zf`` of a previous call is).
        return_zf : bool, optional
            Also return the final state (``zi``'s shape, complex).
        method : {"scan", "fft"}, optional
            ``"scan"`` (default) runs the fused recurrence kernel: O(N) work per
            sample and mode count ``N``. ``"fft"`` convolves with
            ``kernel(L)`` by FFT (zero-padded to ``2L - 1``, no wrap-around):
            O(log L) per sample whatever ``N``, so it pays for many modes (about 64
            or more) on short to moderate signals; it computes ``kernel(L)`` first
            and supports neither ``zi`` nor ``return_zf``.
        out : ndarray, optional
            Array for the result (output shape and dtype, not overlapping an input).
        backend : {None, "numba"}, optional
            Force a backend (for tests).

        Returns
        -------
        y : ndarray
            Real (float32/float64) for a real system and real ``u``, complex
            otherwise; the precision is that of ``u`` (and ``zi``): float32 stays
            float32 (the system's coefficients are rounded to it), integers compute
            in float64.
        zf : ndarray
            Final state, only with ``return_zf=True``.

        Notes
        -----
        NaN or inf in ``u`` (or ``zi``) propagate forward in time through every mode
        from where they occur (with ``method="fft"``, to the whole output).
        Chunks of a signal filtered with the ``zf`` of the previous chunk as ``zi``
        give the whole signal's result. The kernel keeps each channel's modes in a
        small local array and advances 16 channels together; fewer than 16 long
        channels are cut into 32 pieces each (scanned as lanes, then the carries are
        added). Complex inputs or outputs are split into real and imaginary parts (one
        extra copy). The relative rounding error is about ``cancellation * eps``.

        Examples
        --------
        >>> import numpy as np
        >>> from iirssm._ssm import DiagonalSSM
        >>> s = DiagonalSSM.from_tf([0.2], [1.0, -0.8])
        >>> y, zf = s.filter(np.ones(3), zi=[0.0], return_zf=True)
        >>> y, zf
        (array([0.2  , 0.36 , 0.488]), array([2.44+0.j]))
        >>> y2 = s.filter(np.ones(3), zi=zf)          # continues the stream
        >>> np.round(y2, 4)
        array([0.5904, 0.6723, 0.7379])
        """
        impl = foreign(backend, "diagonal_ssm_filter", u, zi)
        if impl is not None:
            return impl(self, u, axis=axis, zi=zi, return_zf=return_zf, method=method, out=out)
        check_backend(backend, u, zi)
        if method not in ("scan", "fft"):
            raise ValueError(f"method must be 'scan' or 'fft'; got {method!r}")
        u_in, template = _pandas.unwrap(u, "u")
        axis = _pandas.pandas_axis(template, axis)
        dtype = compute_dtype(("u", u_in), ("zi", zi))
        rdt = real_dtype(dtype)
        u_arr = as_float_array(u_in, "u")
        ax, L, _, nd, oax, oshape = self._filter_shape(u_arr.shape, axis)
        cin = u_arr.dtype.kind == "c"
        real_path = self.is_real and not cin
        ydt = rdt if real_path else np.result_type(rdt, np.complex64)
        cdt = np.result_type(rdt, np.complex64)
        if template is not None and oshape != u_arr.shape:
            raise ValueError("a bank of systems that adds dimensions to a pandas input cannot "
                             "return a pandas object: pass a NumPy array")
        check_no_overlap(out, u=np.asarray(u_in), zi=zi)
        if method == "fft":
            if zi is not None or return_zf:
                raise ValueError("method='fft' supports neither zi nor return_zf; use "
                                 "method='scan' to carry a state")
            y = self._filter_fft(u_arr, ax, oshape, oax, ydt, cin, out)
            return _pandas.rewrap(y, template)
        # bring u to the output's shape (a copy only if the bank adds dimensions)
        ub = u_arr
        if ub.shape != oshape:
            ub = np.moveaxis(u_arr, ax, -1)
            ub = ub.reshape((1,) * (nd - ub.ndim) + ub.shape)
            ub = np.ascontiguousarray(np.broadcast_to(np.moveaxis(ub, -1, oax), oshape))
        ub = ub.astype(cdt if cin else rdt, copy=False)
        frame = frame_of(ub, oax)
        x3 = to_work(ub, frame)
        P, _, Q = frame.plq
        N, K = self.n_modes, self._k.shape[-1]
        S = N + K
        # initial state (P, S, Q) -> modal (P, Q, N) and FIR history (P, K, Q)
        if zi is None:
            z3 = np.zeros((P, S, Q), dtype=cdt)
        else:
            z3 = state_to_work(as_float_array(zi, "zi"), frame, "zi", cdt, size=S)
        h0 = np.ascontiguousarray(z3[:, :N, :].transpose(0, 2, 1))
        hist = z3[:, N:, :]
        sel = self._plan(real_path)[0]
        M = sel.shape[1]
        bank_nd = len(self.bank_shape)
        lam_w, wgt_w, beta_w, gain_w, d_w = self._work_coefs(real_path, frame, oax, nd,
                                                              rdt, cdt)
        # modal states of the computed modes, scaled: g = h / gain
        if real_path and zi is not None and N:
            _check_conjugate_state(h0, self._partner, frame, oax, nd, bank_nd, self.bank_shape,
                                   rdt)
        if real_path and K and np.any(hist.imag):
            raise ValueError("zi's last entries (the previous inputs of the FIR terms) must "
                             "be real when a real system filters a real signal")
        if zi is None:
            g_r = np.zeros((P, Q, M), dtype=rdt)
            g_i = np.zeros((P, Q, M), dtype=rdt)
        else:
            g0 = _gather_modes(h0, sel, frame, oax, nd, bank_nd, self.bank_shape) / gain_w
            g_r = np.ascontiguousarray(g0.real, dtype=rdt)
            g_i = np.ascontiguousarray(g0.imag, dtype=rdt)
        out_nd, out3 = new_output(frame, ydt, out)
        if real_path:
            xr = x3
            xi = np.zeros((1, 1, 1), dtype=rdt)
            yr = out3
            yi = np.zeros((1, 1, 1), dtype=rdt)
            case = 0
        else:
            if cin:
                xr = np.ascontiguousarray(x3.real)
                xi = np.ascontiguousarray(x3.imag)
            else:
                xr = x3
                xi = np.zeros((1, 1, 1), dtype=rdt)
            yr = np.empty(x3.shape, dtype=rdt)
            yi = np.empty(x3.shape, dtype=rdt)
            case = 2 if cin else 1
        if M:
            _run_scan(xr, xi, lam_w, beta_w, wgt_w, d_w, g_r, g_i, yr, yi, case)
        else:                                        # no modes: the direct term alone
            dd = d_w[:, None, :]
            if real_path:
                np.multiply(dd.real, xr, out=yr)
            else:
                yy = dd * x3
                yr[...] = yy.real
                yi[...] = yy.imag
        if not real_path:
            out3[...] = yr
            out3.imag = yi
        if K:
            kv = self._k.real if real_path else self._k
            _add_fir(out3, x3, hist, _bank_to_work(kv, frame, oax, nd, bank_nd, ydt,
                                                   lead_last=K))
        y = finish_output(out_nd, out3, frame)
        y = _pandas.rewrap(y, template)
        if not return_zf:
            return y
        gf = (g_r + 1j * g_i) * gain_w
        hf = _scatter_modes(gf, sel, self._partner if real_path else None, N, frame, oax, nd,
                            bank_nd, self.bank_shape, P, Q, cdt)
        zf3 = np.empty((P, S, Q), dtype=cdt)
        zf3[:, :N, :] = hf.transpose(0, 2, 1)
        if K:
            ext = np.concatenate([hist[:, ::-1, :], x3], axis=1)
            zf3[:, N:, :] = ext[:, ::-1, :][:, :K, :]
        return y, state_from_work(zf3, frame)

    def _work_coefs(self, real_path, frame, oax, nd, rdt, cdt):
        """The scan's coefficients in the work frame: ``(lam, wgt, beta, gain, d)``.

        They depend only on the system and the geometry, so the last ones computed
        are kept (the system is immutable): a loop over chunks or segments of one
        shape builds them once.
        """
        key = (real_path, frame.shape, frame.axis, frame.transposed, oax, nd,
               np.dtype(rdt), np.dtype(cdt))
        hit = self._work.get(key)
        if hit is not None:
            return hit
        sel, _, lam, beta, wgt, gain = self._computed_modes(real_path)
        M = sel.shape[1]
        bank_nd = len(self.bank_shape)

        def modes_work(v, dt):
            return _frozen(_modes_to_work(v.reshape(self.bank_shape + (M,)), frame, oax, nd,
                                          bank_nd, dt))

        coefs = (modes_work(lam, cdt), modes_work(wgt, cdt), modes_work(beta, rdt),
                 modes_work(gain, np.complex128),
                 _frozen(_bank_to_work(self._D, frame, oax, nd, bank_nd, cdt)))
        self._work = {key: coefs}
        return coefs

    def _filter_shape(self, shape, axis):
        """Checks and output geometry of :meth:`filter` for a signal of ``shape``.

        Returns ``(ax, L, nontime, nd, oax, oshape)``: the time axis and length, the
        non-time shape (the signal's broadcast with the bank's), the output's
        number of dimensions, its time axis and its shape. Shared by the CPU and
        CUDA paths.
        """
        shape = tuple(shape)
        if len(shape) == 0:
            raise ValueError("u is a scalar: it needs a time axis")
        ax = normalize_axis(axis, len(shape))
        L = shape[ax]
        if L == 0:
            raise ValueError(f"u has no samples along axis {ax} (shape {shape})")
        other = shape[:ax] + shape[ax + 1:]
        try:
            nontime = np.broadcast_shapes(other, self.bank_shape)
        except ValueError:
            raise ValueError(f"the system's bank shape {self.bank_shape} does not broadcast "
                             f"against u's non-time shape {other} (u {shape}, "
                             f"axis {ax})") from None
        nd = len(nontime) + 1
        oax = nd - (len(shape) - ax)                 # same position counted from the end
        oshape = nontime[:oax] + (L,) + nontime[oax:]
        return ax, L, nontime, nd, oax, oshape

    def _computed_modes(self, real_path):
        """The modes the scan computes, per bank entry ``(n_bank, M)`` (complex128).

        Returns ``(sel, safe, lam, beta, wgt, gain)``: the selected mode indices
        (-1: padding) and the same with padding at 0, the poles, ``beta`` (1 where
        ``B != 0``), the output weights ``C * mult * B`` and the state scaling
        (``h = gain * g``). Conjugate pairs once when ``real_path``. Shared by the
        CPU and CUDA paths.
        """
        N = self.n_modes
        sel, mult = self._plan(real_path)
        nb = max(prod(self.bank_shape), 1)
        flatp = self._poles.reshape(nb, N)
        safe = np.where(sel < 0, 0, sel)
        rows = np.arange(nb)[:, None]
        lam = np.where(sel < 0, 0, flatp[rows, safe]) if N else np.zeros((nb, 0))
        Bm = np.where(sel < 0, 0, self._B.reshape(nb, N)[rows, safe]) if N else lam
        Cm = np.where(sel < 0, 0, self._C.reshape(nb, N)[rows, safe]) if N else lam
        has_b = Bm != 0
        beta = has_b.astype(np.float64)
        wgt = Cm * mult * np.where(has_b, Bm, 1.0)
        gain = np.where(has_b, Bm, 1.0)              # h = gain * g
        return sel, safe, lam, beta, wgt, gain

    def _filter_fft(self, u_arr, ax, oshape, oax, ydt, cin, out):
        import scipy.fft

        L = oshape[oax]
        nd = len(oshape)
        rdt = real_dtype(ydt)
        kern = self.kernel(L)
        bank_nd = len(self.bank_shape)

        def to_out(arr, tail):  # bank_shape + tail -> aligned with the output, time at oax
            arr = arr.reshape((1,) * (nd - 1 - bank_nd) + arr.shape)
            return np.moveaxis(arr, -1, oax) if tail else np.expand_dims(arr, oax)

        Kx = to_out(kern, True).astype(ydt if not cin else np.result_type(rdt, np.complex64))
        u = np.moveaxis(u_arr, ax, -1)
        u = np.moveaxis(u.reshape((1,) * (nd - u.ndim) + u.shape), -1, oax)
        u = u.astype(ydt if not cin else Kx.dtype, copy=False)
        n = scipy.fft.next_fast_len(2 * L - 1, real=not np.iscomplexobj(Kx) and not cin)
        if np.iscomplexobj(Kx) or cin:
            Y = scipy.fft.ifft(scipy.fft.fft(u, n, axis=oax) * scipy.fft.fft(Kx, n, axis=oax),
                               n, axis=oax)
        else:
            Y = scipy.fft.irfft(scipy.fft.rfft(u, n, axis=oax) * scipy.fft.rfft(Kx, n, axis=oax),
                                n, axis=oax)
        Y = np.take(Y, np.arange(L), axis=oax)
        Dv = self._D.real if self.is_real else self._D
        Y = Y + to_out(Dv, False) * u
        kv = self._k.real if self.is_real else self._k
        for j in range(kv.shape[-1]):
            shifted = np.zeros_like(u)
            sl = [slice(None)] * nd
            sl[oax] = slice(j + 1, None)
            src = [slice(None)] * nd
            src[oax] = slice(0, L - j - 1)
            shifted[tuple(sl)] = u[tuple(src)]
            Y = Y + to_out(kv[..., j], False) * shifted
        Y = np.broadcast_to(Y, oshape)
        if out is not None:
            frame = frame_of(Y, oax)
            out_nd, _ = new_output(frame, np.dtype(ydt), out)
            np.copyto(out_nd, Y)
            return out_nd
        return np.array(Y, dtype=ydt)


# ======================================================= filtering helpers (work frame)

def _conj_closed(v: np.ndarray) -> bool:
    """True when the multiset ``v`` is closed under conjugation (within PAIR_RTOL)."""
    cplx = v[v.imag != 0]
    if cplx.size == 0:
        return True
    d = np.abs(cplx[:, None] - np.conj(cplx)[None, :])
    ok = d <= PAIR_RTOL * np.maximum(1.0, np.abs(cplx))[:, None]
    return bool(np.all(ok.any(axis=1))) and np.sum(cplx.imag > 0) == np.sum(cplx.imag < 0)


def _conj_clean(z: np.ndarray) -> np.ndarray:
    """Roots of a real polynomial: make nearly-conjugate pairs exact, near-real roots real."""
    z = np.asarray(z, dtype=np.complex128).copy()
    near_real = np.abs(z.imag) <= 100 * np.finfo(float).eps * np.maximum(1.0, np.abs(z))
    z[near_real] = z[near_real].real
    return z


def _zpk_direct(zn, pn, k, d):
    """Polynomial part [D, k_1, ...] of k z**-d prod(1 - zn/z) / prod(1 - pn/z)."""
    nb, na = d + zn.size + 1, pn.size + 1
    if nb < na:
        return np.zeros(0, dtype=np.complex128)
    if nb == na:
        # the one direct term is the ratio of the highest coefficients, in factored form
        return np.array([k * np.prod(-zn) / np.prod(-pn)], dtype=np.complex128)
    num = k * np.concatenate([np.zeros(d), np.poly(zn)]).astype(np.complex128)
    return _fir_part(num, np.poly(pn).astype(np.complex128))


def _modes_to_work(v, frame, oax, nd, bank_nd, dtype):
    """(bank..., M) -> (Pc, Qc, M) in the work frame (each of Pc, Qc 1 or full)."""
    M = v.shape[-1]
    lead = np.moveaxis(v, -1, 0)                               # (M, bank...)
    lead = lead.reshape((M,) + (1,) * (nd - 1 - bank_nd) + lead.shape[1:])
    lead = np.expand_dims(lead, 1 + oax)
    w = coef_to_work(lead, frame, "the system's coefficients", np.dtype(dtype), lead=1)
    return np.ascontiguousarray(w[:, :, 0, :].transpose(1, 2, 0))


def _bank_to_work(v, frame, oax, nd, bank_nd, dtype, lead_last=0):
    """(bank...) -> (Pc, Qc); with ``lead_last`` trailing entries -> (Pc, Qc, lead_last)."""
    if lead_last:
        return _modes_to_work(v, frame, oax, nd, bank_nd, dtype)
    a = v.reshape((1,) * (nd - 1 - bank_nd) + v.shape)
    a = np.expand_dims(a, oax)
    w = coef_to_work(a, frame, "D", np.dtype(dtype))
    return np.ascontiguousarray(w[:, 0, :])


def _bank_index_work(frame, oax, nd, bank_nd, bank_shape, P, Q):
    """(P, Q) array of flat bank indices for every channel of the work frame."""
    nb = prod(bank_shape)
    idx = np.arange(max(nb, 1)).reshape(bank_shape) if bank_shape else np.zeros((), np.intp)
    a = idx.reshape((1,) * (nd - 1 - bank_nd) + idx.shape)
    a = np.expand_dims(a, oax)
    w = coef_to_work(a, frame, "bank", np.dtype(np.float64))[:, 0, :]
    return np.broadcast_to(w, (P, Q)).astype(np.intp)


def _gather_modes(h0, sel, frame, oax, nd, bank_nd, bank_shape):
    """h0 (P, Q, N) -> the computed modes (P, Q, M); padded modes get 0."""
    P, Q, N = h0.shape
    M = sel.shape[1]
    if M == 0:
        return np.zeros((P, Q, 0), dtype=h0.dtype)
    bidx = _bank_index_work(frame, oax, nd, bank_nd, bank_shape, P, Q)
    s = sel[bidx]                                               # (P, Q, M)
    g = np.take_along_axis(h0, np.where(s < 0, 0, s), axis=2) if N else np.zeros(s.shape)
    return np.where(s < 0, 0, g)


def _scatter_modes(g, sel, partner, N, frame, oax, nd, bank_nd, bank_shape, P, Q, dtype):
    """Computed modes (P, Q, M) -> all N modal states, partners as conjugates."""
    hf = np.zeros((P, Q, N), dtype=dtype)
    if N == 0 or sel.shape[1] == 0:
        return hf
    bidx = _bank_index_work(frame, oax, nd, bank_nd, bank_shape, P, Q)
    s = sel[bidx]
    valid = s >= 0
    pi, qi, mi = np.nonzero(valid)
    hf[pi, qi, s[pi, qi, mi]] = g[pi, qi, mi]
    if partner is not None:
        part = partner[bidx]                                    # (P, Q, N)
        n_idx = s[pi, qi, mi]
        partners = part[pi, qi, n_idx]
        other = partners != n_idx
        hf[pi[other], qi[other], partners[other]] = np.conj(g[pi[other], qi[other], mi[other]])
    return hf


def _check_conjugate_state(h0, partner, frame, oax, nd, bank_nd, bank_shape, rdt):
    """A real system on a real signal needs conjugate-symmetric modal states."""
    P, Q, _ = h0.shape
    bidx = _bank_index_work(frame, oax, nd, bank_nd, bank_shape, P, Q)
    part = partner[bidx]                                        # (P, Q, N)
    mate = np.take_along_axis(h0, part, axis=2)
    tol = 10 * np.sqrt(np.finfo(rdt).eps)
    scale = np.maximum(np.abs(h0), np.abs(mate))
    bad = np.abs(h0 - np.conj(mate)) > tol * scale
    bad &= np.isfinite(h0) & np.isfinite(mate)
    if np.any(bad):
        raise ValueError(
            "zi is not conjugate-symmetric: this is a real system (its modes come in "
            "conjugate pairs) filtering a real signal, so the state of each mode must be the "
            "conjugate of its partner's (and real for real modes), as the zf of a previous "
            "call is. With any other state the output would be complex: filter a complex "
            "signal (u.astype(complex)) to use it.")


def _run_scan(xr, xi, lam, beta, wgt, d, g_r, g_i, yr, yi, case):
    """Run the kernel over (P, L, Q); the states g_r/g_i are updated in place.

    Fewer than ``SSM_LANES`` long rows would leave most lanes empty: each row is then
    cut into ``CHUNK_PIECES`` pieces run as lanes from zero state; the states
    entering the pieces are found by a short serial pass over the pieces
    (``s_{j+1} = lam**len * s_j + end_j``), and a second kernel pass adds their free
    response. Twice the arithmetic, all lanes and threads busy. The cut depends on
    the length only, so results do not depend on the number of threads.
    """
    P, L, Q = xr.shape
    M = g_r.shape[2]
    coefs = [np.ascontiguousarray(v) for v in (lam.real, lam.imag)] + [beta] + [
        np.ascontiguousarray(v) for v in (wgt.real, wgt.imag, d.real, d.imag)]
    chunked = (Q == 1 and P < SSM_LANES and L >= CHUNKED_MIN_LENGTH
               and np.all(np.abs(lam) <= 1.0))
    if not chunked:
        ssm_scan.pick(P * L * Q * M)(xr, xi, *coefs, g_r, g_i, yr, yi, case, False, SSM_LANES)
        return
    n = CHUNK_PIECES
    Lp = L // n
    rdt = g_r.dtype
    for p in range(P):
        pc = p if lam.shape[0] > 1 else 0
        cf = [c[pc:pc + 1] for c in coefs]

        xv = xr[p, :n * Lp, 0].reshape(n, Lp, 1)
        yv = yr[p, :n * Lp, 0].reshape(n, Lp, 1)
        xiv = xi[p, :n * Lp, 0].reshape(n, Lp, 1) if case == 2 else xi
        yiv = yi[p, :n * Lp, 0].reshape(n, Lp, 1) if case > 0 else yi
        gr = np.zeros((n, 1, M), dtype=rdt)
        gi = np.zeros((n, 1, M), dtype=rdt)
        gr[0, 0] = g_r[p, 0]
        gi[0, 0] = g_i[p, 0]
        kern = ssm_scan.pick(n * Lp * M)
        kern(xv, xiv, *cf, gr, gi, yv, yiv, case, False, SSM_LANES)
        ends = gr[:, 0].astype(np.float64) + 1j * gi[:, 0]
        decay = lam[pc, 0].astype(np.complex128) ** Lp
        starts = np.zeros((n, M), dtype=np.complex128)
        state = ends[0]
        for j in range(1, n):
            starts[j] = state
            state = decay * state + ends[j]
        gr = np.ascontiguousarray(starts.real[:, None, :], dtype=rdt)
        gi = np.ascontiguousarray(starts.imag[:, None, :], dtype=rdt)
        kern(xv, xiv, *cf, gr, gi, yv, yiv, case, True, SSM_LANES)
        hr = np.ascontiguousarray(state.real[None, None, :], dtype=rdt)
        hi = np.ascontiguousarray(state.imag[None, None, :], dtype=rdt)
        if n * Lp < L:                               # the remainder, from the true state
            sl = slice(n * Lp, L)
            ssm_scan.serial(xr[p:p + 1, sl], xi[p:p + 1, sl] if case == 2 else xi, *cf, hr, hi,
                            yr[p:p + 1, sl], yi[p:p + 1, sl] if case > 0 else yi, case, False,
                            SSM_LANES)
        g_r[p, 0] = hr[0, 0]
        g_i[p, 0] = hi[0, 0]


def _add_fir(out3, x3, hist, k3):
    """out += sum_j k_j u[t-j] with the K previous inputs ``hist`` (newest first)."""
    L = x3.shape[1]
    K = hist.shape[1]
    ext = np.concatenate([hist[:, ::-1, :].astype(x3.dtype if x3.dtype.kind == "c"
                                                  else hist.dtype), x3], axis=1)
    if out3.dtype.kind != "c":
        ext = ext.real
    for j in range(1, K + 1):
        kj = k3[:, :, j - 1][:, None, :]
        out3 += (kj * ext[:, K - j:K - j + L, :]).astype(out3.dtype)
