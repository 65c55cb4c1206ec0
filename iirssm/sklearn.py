"""scikit-learn transformers built on iirssm's filters (opt-in: ``import iirssm.sklearn``).

``import iirssm`` does not import this module, nor scikit-learn.

Two kinds of transformers, all taking a 2-D ``(n_cases, n_timepoints)`` array (one
series per row) or a 3-D ``(n_cases, n_channels, n_timepoints)`` array (aeon's and
sktime's layout):

* filters, which return the input's shape: :class:`EMASmoother` (``iirssm.ema``
  along each row or channel) and :class:`IIRFilter` (``iirssm.lfilter`` /
  ``iirssm.sosfilt``, optionally zero-phase);
* feature banks, which return ``(n_cases, n_features)`` for a linear model:
  :class:`FilterBankFeatures` (exponential and damped-resonator filters at
  log-spaced time scales) and :class:`SelectiveFeatures` (random selective SSMs,
  Δ, B and C computed from the input as in :class:`iirssm.SelectiveSSM`), each
  output pooled as MiniRocket pools its convolutions: the proportion of positive
  values against biases drawn from quantiles of the training data (PPV), plus the
  mean, maximum and last value.

Threads (``n_jobs``): every transformer runs its Numba kernels on
``joblib.effective_n_jobs(n_jobs)`` threads (``None`` is one thread, ``-1`` all
cores; capped at Numba's ``NUMBA_NUM_THREADS``), set with
``numba.set_num_threads`` for the duration of the call. Work is split by case,
so results are identical for any ``n_jobs``.

Dtypes: float32 input gives float32 output (the filters and the features are
computed in float32); float64, integers and bools give float64; float16 computes
in float32.
"""

from __future__ import annotations

import contextlib
import numbers

import joblib
import numba
import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ._cpu.features import bank_kernel as _bank_kernel
from ._cpu.features import selective_bank_kernel as _selective_bank_kernel
from ._ema import ema
from ._lfilter import filtfilt, lfilter, sosfilt, sosfiltfilt

__all__ = ["EMASmoother", "IIRFilter", "FilterBankFeatures", "SelectiveFeatures"]

_POOLINGS = ("ppv", "mean", "max", "last")


# =========================================================================== shared helpers

def _validate_X(est, X, reset, allow_nan=False):
    """Validate ``X`` with scikit-learn's rules; 2-D or 3-D, float32 kept, float16 -> float32."""
    if not reset and hasattr(est, "input_ndim_"):
        nd = getattr(X, "ndim", None)
        if nd in (2, 3) and nd != est.input_ndim_:
            raise ValueError(f"X has {nd} dimensions but {type(est).__name__} was fitted "
                             f"on {est.input_ndim_}-D input")
    dt = getattr(X, "dtype", None)
    dtype = np.float32 if dt is not None and dt == np.float16 else (np.float64, np.float32)
    X = validate_data(est, X, reset=reset, allow_nd=True, dtype=dtype,
                      ensure_all_finite="allow-nan" if allow_nan else True)
    if X.ndim not in (2, 3):
        raise ValueError("X must be 2-D (n_cases, n_timepoints) or 3-D (n_cases, n_channels, "
                         f"n_timepoints); got {X.ndim}-D with shape {X.shape}")
    if X.ndim == 3 and X.shape[2] < 1:
        raise ValueError(f"X needs at least one time point; got shape {X.shape}")
    if reset:
        est.n_timepoints_in_ = X.shape[-1]
        est.n_channels_in_ = X.shape[1] if X.ndim == 3 else 1
        est.input_ndim_ = X.ndim
    else:
        if X.ndim != est.input_ndim_:
            raise ValueError(f"X has {X.ndim} dimensions but {type(est).__name__} was fitted "
                             f"on {est.input_ndim_}-D input")
        if X.shape[-1] != est.n_timepoints_in_:
            raise ValueError(f"X has {X.shape[-1]} time points but {type(est).__name__} was "
                             f"fitted on {est.n_timepoints_in_}")
    return X


def _as_3d(X):
    return X[:, None, :] if X.ndim == 2 else X


def _n_threads(n_jobs):
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral)
                               or n_jobs == 0):
        raise ValueError(f"n_jobs must be None or a non-zero integer; got {n_jobs!r}")
    return int(max(1, min(joblib.effective_n_jobs(n_jobs), numba.config.NUMBA_NUM_THREADS)))


@contextlib.contextmanager
def _threads(n):
    """Run Numba's parallel regions on ``n`` threads inside the block (thread-local setting)."""
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _check_int(value, name, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {rng}; got {value!r}")
    return int(value)


def _check_positive(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0{' or None' if allow_none else ''}; "
                         f"got {value!r}")
    return float(value)


def _check_pooling(pooling):
    if isinstance(pooling, str):
        pooling = (pooling,)
    try:
        pooling = tuple(pooling)
    except TypeError:
        raise TypeError(f"pooling must be a sequence of names from {_POOLINGS}; "
                        f"got {pooling!r}") from None
    bad = [p for p in pooling if p not in _POOLINGS]
    if bad or not pooling or len(set(pooling)) != len(pooling):
        raise ValueError(f"pooling must be a non-empty sequence of distinct names from "
                         f"{_POOLINGS}; got {pooling!r}")
    return tuple(p for p in _POOLINGS if p in pooling)


def _check_differences(differences):
    try:
        d = tuple(differences)
    except TypeError:
        raise TypeError(f"differences must be a sequence of integers in {{0, 1, 2}}; "
                        f"got {differences!r}") from None
    if not d or len(set(d)) != len(d) or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v <= 2
            for v in d):
        raise ValueError(f"differences must be a non-empty sequence of distinct integers in "
                         f"{{0, 1, 2}}; got {differences!r}")
    return tuple(int(v) for v in d)


def _difference_signals(X3, differences):
    """``(n, C * len(differences), L)``: each channel differenced 0, 1 or 2 times.

    A difference keeps the length: its first value is 0 (the series is taken as
    constant before its first sample), so signal ``c * nd + j`` is channel ``c``
    differenced ``differences[j]`` times.
    """
    n, C, L = X3.shape
    nd = len(differences)
    U = np.empty((n, C * nd, L), dtype=X3.dtype)
    for j, d in enumerate(differences):
        v = X3
        for _ in range(d):
            v = np.diff(v, axis=-1, prepend=v[..., :1])
        U[:, j::nd] = v
    return U


def _bias_levels(rng, n_outputs, n_biases):
    """Stratified random quantile levels in (0, 1): one per interval ``[k/K, (k+1)/K)``."""
    return (np.arange(n_biases) + rng.uniform(size=(n_outputs, n_biases))) / n_biases


def _row_quantile_biases(rows, levels):
    """Biases of each output from its values ``rows`` (F, L) on one training case.

    For output ``f`` the values of one training case (drawn at random among up to
    32, as MiniRocket draws one training example per kernel) are sorted and read
    at ``levels[f]`` with linear interpolation (``numpy.quantile``'s default).
    """
    F, L = rows.shape
    vals = np.sort(rows.astype(np.float64), axis=1)
    pos = levels * (L - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, L - 1)
    w = pos - lo
    r = np.arange(F)[:, None]
    b = vals[r, lo] * (1 - w) + vals[r, hi] * w
    return np.sort(b, axis=1)


def _pooling_layout(n_biases, pooling):
    """Where each pooled value of an output goes, and the names of the values.

    Returns ``(offsets, names)``: ``offsets`` (4,) int64 gives, within an output's
    block of ``len(names)`` features, the position of the PPVs (they take
    ``n_biases`` places from there), the mean, the max and the last value (-1:
    not computed).
    """
    offsets = np.full(4, -1, dtype=np.int64)
    names = []
    if "ppv" in pooling:
        offsets[0] = 0
        names += [f"ppv{k}" for k in range(n_biases)]
    for j, p in enumerate(("mean", "max", "last")):
        if p in pooling:
            offsets[1 + j] = len(names)
            names.append(p)
    return offsets, names


def _check_pandas_output_2d(est, ndim):
    """3-D filter output cannot be a DataFrame: say so before sklearn's wrapper fails obscurely."""
    if ndim != 3:
        return
    try:
        from sklearn.utils._set_output import _get_output_config
        dense = _get_output_config("transform", est)["dense"]
    except Exception:  # pragma: no cover - private helper moved: let sklearn report
        return
    if dense != "default":
        raise ValueError(f"set_output(transform={dense!r}) needs 2-D input: the 3-D output of "
                         f"{type(est).__name__} cannot be a DataFrame; use "
                         "set_output(transform='default') for 3-D input")


# =========================================================================== filters

class _FilterBase(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Filters along time: same shape out; one output column per input column (2-D)."""

    _allow_nan = False

    def fit(self, X, y=None):
        """Validate the parameters and record the input's shape.

        Parameters
        ----------
        X : array_like, shape (n_cases, n_timepoints) or (n_cases, n_channels, n_timepoints)
        y : ignored

        Returns
        -------
        self
        """
        self._validated_params()
        _validate_X(self, X, reset=True, allow_nan=self._allow_nan)
        return self

    def transform(self, X):
        """Filter every row (2-D) or every channel (3-D) along the last axis.

        Parameters
        ----------
        X : array_like, shape (n_cases, n_timepoints) or (n_cases, n_channels, n_timepoints)

        Returns
        -------
        ndarray
            ``X``'s shape; float32 stays float32, other dtypes give float64.
        """
        check_is_fitted(self)
        X = _validate_X(self, X, reset=False, allow_nan=self._allow_nan)
        _check_pandas_output_2d(self, X.ndim)
        with _threads(_n_threads(self.n_jobs)):
            return self._filter(X, self._validated_params())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = self._allow_nan
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class EMASmoother(_FilterBase):
    """Exponential moving average of every series, as ``iirssm.ema`` (pandas ``ewm().mean()``).

    Parameters
    ----------
    alpha, com, span, halflife : float, optional
        The decay, at most one of them, with pandas' meaning: ``0 < alpha <= 1``;
        ``com >= 0``; ``span >= 1``; ``halflife > 0`` (in samples). If none is given,
        ``alpha=0.1``.
    adjust : bool, default=False
        pandas' weighted-mean form (True) or the recursive filter (False).
    ignore_na : bool, default=False
        pandas' rule for missing values (NaN is allowed in ``X`` and handled as in
        pandas).
    min_periods : int, default=0
        Output NaN until this many observations have been seen.
    n_jobs : int, optional
        Threads for the kernel (see the module's notes). ``None``: one thread.

    Attributes
    ----------
    n_features_in_ : int
        ``X.shape[1]`` at fit, as scikit-learn counts features (time points for
        2-D input, channels for 3-D input).
    feature_names_in_ : ndarray of str
        Column names of a DataFrame given to ``fit``.
    n_timepoints_in_, n_channels_in_, input_ndim_ : int
        The fitted input's length, channel count (1 for 2-D) and number of
        dimensions; ``transform`` requires the same.

    See Also
    --------
    iirssm.ema : the function this transformer calls.

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm.sklearn import EMASmoother
    >>> X = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 4.0, 0.0]])
    >>> EMASmoother(alpha=0.5).fit_transform(X)
    array([[1.   , 1.5  , 2.25 , 3.125],
           [0.   , 0.   , 2.   , 1.   ]])
    """

    _allow_nan = True

    def __init__(self, alpha=None, *, com=None, span=None, halflife=None, adjust=False,
                 ignore_na=False, min_periods=0, n_jobs=None):
        self.alpha = alpha
        self.com = com
        self.span = span
        self.halflife = halflife
        self.adjust = adjust
        self.ignore_na = ignore_na
        self.min_periods = min_periods
        self.n_jobs = n_jobs

    def _validated_params(self):
        given = {k: v for k, v in (("alpha", self.alpha), ("com", self.com), ("span", self.span),
                                   ("halflife", self.halflife)) if v is not None}
        if len(given) > 1:
            raise ValueError(f"alpha, com, span and halflife are mutually exclusive; got {given}")
        if not given:
            given = {"alpha": 0.1}
        (name, value), = given.items()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
        for flag in ("adjust", "ignore_na"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"{flag} must be a bool; got {getattr(self, flag)!r}")
        _n_threads(self.n_jobs)
        # iirssm.ema checks the ranges (and min_periods) with pandas' rules; run it on a
        # one-sample signal so that fit reports bad parameters.
        kw = dict(given, adjust=bool(self.adjust), ignore_na=bool(self.ignore_na),
                  min_periods=self.min_periods)
        ema(np.zeros(1), **kw)
        return kw

    def _filter(self, X, kw):
        return ema(X, axis=-1, **kw)


class IIRFilter(_FilterBase):
    """IIR filtering of every series, as ``iirssm.lfilter(b, a, x)`` or ``iirssm.sosfilt(sos, x)``.

    Parameters
    ----------
    b, a : array_like, default=(1.0,)
        Numerator and denominator coefficients (scipy's convention). The default
        is the identity filter.
    sos : array_like, shape (n_sections, 6), optional
        Second-order sections (``scipy.signal.butter(..., output="sos")``). When
        given, ``b`` and ``a`` must be left at their defaults.
    zero_phase : bool, default=False
        Filter forward and backward (``iirssm.filtfilt`` / ``iirssm.sosfiltfilt``
        with their default padding, which needs series longer than the padding).
    n_jobs : int, optional
        Threads for the kernel (see the module's notes). ``None``: one thread.

    Attributes
    ----------
    coef_ : tuple of ndarray
        ``(b, a)`` normalised to ``a[0] == 1``, or ``(sos,)``, as float64.
    n_features_in_, feature_names_in_, n_timepoints_in_, n_channels_in_, input_ndim_
        As for :class:`EMASmoother`.

    Notes
    -----
    The coefficients are cast to the input's dtype before filtering, so float32
    input is filtered in float32 (scipy would promote to float64): the result is
    ``iirssm.lfilter(b.astype(np.float32), a.astype(np.float32), x)``.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.signal
    >>> from iirssm.sklearn import IIRFilter
    >>> sos = scipy.signal.butter(2, 0.2, output="sos")
    >>> X = np.random.default_rng(0).standard_normal((3, 50))
    >>> Y = IIRFilter(sos=sos).fit_transform(X)
    >>> Y.shape, np.allclose(Y, scipy.signal.sosfilt(sos, X))
    ((3, 50), True)
    """

    def __init__(self, b=(1.0,), a=(1.0,), *, sos=None, zero_phase=False, n_jobs=None):
        self.b = b
        self.a = a
        self.sos = sos
        self.zero_phase = zero_phase
        self.n_jobs = n_jobs

    @staticmethod
    def _coef(value, name, ndim):
        try:
            arr = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be an array of real numbers; got {value!r}") from None
        if arr.ndim != ndim:
            shape = "(n_sections, 6)" if ndim == 2 else "1-D"
            raise ValueError(f"{name} must be {shape}; got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite; got {value!r}")
        return arr

    def _validated_params(self):
        if not isinstance(self.zero_phase, (bool, np.bool_)):
            raise TypeError(f"zero_phase must be a bool; got {self.zero_phase!r}")
        _n_threads(self.n_jobs)
        if self.sos is not None:
            if not (np.array_equal(np.asarray(self.b, dtype=float), [1.0])
                    and np.array_equal(np.asarray(self.a, dtype=float), [1.0])):
                raise ValueError("give either sos or (b, a), not both: leave b and a at their "
                                 f"defaults when sos is given; got b={self.b!r}, a={self.a!r}")
            sos = self._coef(self.sos, "sos", 2)
            if sos.shape[1] != 6 or sos.shape[0] < 1:
                raise ValueError(f"sos must have shape (n_sections, 6); got {sos.shape}")
            if np.any(sos[:, 3] == 0):
                raise ValueError("sos[:, 3] (each section's a0) must be non-zero")
            return (sos,)
        b = self._coef(self.b, "b", 1)
        a = self._coef(self.a, "a", 1)
        if b.size < 1 or a.size < 1:
            raise ValueError(f"b and a need at least one coefficient; got b={self.b!r}, "
                             f"a={self.a!r}")
        if a[0] == 0:
            raise ValueError(f"a[0] must be non-zero; got a={self.a!r}")
        return (b / a[0], a / a[0])

    def fit(self, X, y=None):
        super().fit(X, y)
        self.coef_ = self._validated_params()
        return self

    def _filter(self, X, coef):
        coef = tuple(c.astype(X.dtype) for c in coef)
        if len(coef) == 1:
            return (sosfiltfilt if self.zero_phase else sosfilt)(coef[0], X, axis=-1)
        return (filtfilt if self.zero_phase else lfilter)(coef[0], coef[1], X, axis=-1)


# =========================================================================== filter bank

def _subset_sizes(rng, n, C):
    """MiniRocket's channel-subset sizes: ``floor(2 ** U(0, log2(min(C, 9) + 1)))``."""
    hi = np.log2(min(C, 9) + 1)
    return np.minimum(np.floor(2.0 ** rng.uniform(0, hi, n)).astype(int), C)


class _BankBase(TransformerMixin, BaseEstimator):
    """Shared validation, feature names and tags of the feature banks."""

    def get_feature_names_out(self, input_features=None):
        """Names of the features: ``{output}_{pooling}`` (see ``outputs_``).

        Parameters
        ----------
        input_features : ignored
            Present for scikit-learn's API; checked against ``feature_names_in_``.

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self)
        if input_features is not None:
            from sklearn.utils.validation import _check_feature_names_in
            _check_feature_names_in(self, input_features)
        return np.asarray(self._names_out, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _pool_names(self, outputs):
        _, pnames = _pooling_layout(self.n_biases, self._pooling)
        return [f"{o}_{p}" for o in outputs for p in pnames]

    def _finish_fit(self, X, names, pooling, K, rng):
        """Pooling layout, PPV biases and feature names, once the bank is drawn.

        The biases are quantiles of each output over up to 32 random training cases.
        """
        self.outputs_ = names
        self._pooling = pooling
        self._offsets, _ = _pooling_layout(K, pooling)
        F = len(names)
        if K:
            n = X.shape[0]
            idx = np.sort(rng.choice(n, min(n, 32), replace=False))
            levels = _bias_levels(rng, F, K)
            pick = rng.randint(idx.size, size=F)      # the case each output's biases come from
            with _threads(_n_threads(self.n_jobs)):
                rows = self._bias_rows(X[idx], pick)
            self.biases_ = _row_quantile_biases(rows, levels).astype(X.dtype)
        else:
            self.biases_ = np.zeros((F, 0), dtype=X.dtype)
        self._names_out = self._pool_names(names)
        self.n_features_out_ = len(self._names_out)
        return self

    def _bias_rows(self, Xs, pick):
        """``(F, L)``: output ``f`` of case ``pick[f]`` of ``Xs``, the values its biases
        are read from (here: every output of every case of ``Xs``, then the picks)."""
        F = len(self.outputs_)
        Z = self._run(Xs, np.zeros((F, 0), Xs.dtype), full=True)
        return Z[pick, np.arange(F)]


class FilterBankFeatures(_BankBase):
    """Features from a bank of exponential and damped-resonator filters, pooled as MiniRocket.

    Each series and, by default, its first and second differences run through a bank
    of first-order IIR filters, the modes of a diagonal SSM:

    * ``n_timescales`` EMAs with time constants log-spaced from ``min_timescale`` to
      ``max_timescale`` samples (real poles ``exp(-1/tau)``), read out as the EMA
      (lowpass), the series minus the EMA (highpass) and the difference of
      neighbouring EMAs (bandpass);
    * ``n_frequencies`` x ``len(dampings)`` damped resonators (complex poles
      ``exp(-1/(d P) + 2 pi i / P)``, periods ``P`` log-spaced from 3 samples to the
      series' length, decay times ``d P``), read out as the real part, imaginary
      part and magnitude of the complex state;
    * the series itself.

    Every output is pooled over time: proportion of values above each of
    ``n_biases`` biases (PPV, the biases drawn at stratified random quantiles of the
    output on a random training case, as MiniRocket draws its biases), mean, maximum
    and last value. With 3-D input every output reads the sum of a random subset of
    channels (MiniRocket's rule for subset sizes), ``n_channel_combinations`` subsets
    per bank output.

    Parameters
    ----------
    n_timescales : int, default=10
        Number of EMA time constants.
    n_frequencies : int, default=16
        Number of resonator periods.
    dampings : sequence of float, default=(0.5, 1.5)
        Decay time of the resonators in periods (one resonator per period and
        damping).
    min_timescale : float, default=1.0
        Shortest EMA time constant, in samples.
    max_timescale : float, optional
        Longest EMA time constant; default half the fitted series' length.
    differences : sequence of int, default=(0, 1, 2)
        Which differences of each channel the bank filters (0: the series, 1: its
        first difference, 2: its second difference).
    n_biases : int, default=16
        PPV biases per output.
    pooling : sequence of str, default=("ppv", "mean", "max", "last")
        Which pooled values to return.
    n_channel_combinations : int, default=1
        For multichannel input: random channel subsets drawn per bank output (each
        a full copy of the bank's outputs; ignored for one channel).
    random_state : int, RandomState instance or None, default=None
        Seeds the biases and the channel subsets.
    n_jobs : int, optional
        Threads (over cases) for the kernel. ``None``: one thread.

    Attributes
    ----------
    timescales_ : ndarray
        The EMA time constants (samples).
    periods_, decay_times_ : ndarray
        Period and decay time (samples) of each resonator.
    poles_ : ndarray of complex
        The bank's poles: the EMAs' then the resonators'.
    outputs_ : list of str
        Name of every pooled output, e.g. ``"c0_d1_res3_im"`` (channel 0, first
        difference, imaginary part of resonator 3) or ``"c0+2_d0_hp1"`` (sum of
        channels 0 and 2, the series minus EMA 1).
    biases_ : ndarray, shape (n_outputs, n_biases)
        PPV biases of each output, sorted.
    n_features_out_ : int
        ``n_outputs * n_pooled``.
    n_features_in_, feature_names_in_, n_timepoints_in_, n_channels_in_, input_ndim_
        As for :class:`EMASmoother`.

    Notes
    -----
    One fused Numba kernel per case: it filters blocks of 128 samples through the
    bank and pools each block straight away, so nothing of size
    ``(n_outputs, n_timepoints)`` is formed. The cost per sample is about
    ``n_outputs * (n_biases + 2)`` comparisons and additions, plus the filters.
    The EMAs start at each signal's first value and the resonators in their steady
    state for it (no start-up transient for a constant series).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import RidgeClassifierCV
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from iirssm.sklearn import FilterBankFeatures

    Series with a sine of period 8 in noise (class 1) or noise only (class 0):

    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(40) % 2
    >>> X = rng.standard_normal((40, 100)) + y[:, None] * np.sin(2 * np.pi * np.arange(100) / 8)
    >>> bank = FilterBankFeatures(random_state=0)
    >>> clf = make_pipeline(bank, StandardScaler(with_mean=False),
    ...                     RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))
    >>> bool(clf.fit(X[:20], y[:20]).score(X[20:], y[20:]) >= 0.9)
    True
    >>> bank.n_features_out_, bank.get_feature_names_out()[:2].tolist()
    (7182, ['c0_d0_x_ppv0', 'c0_d0_x_ppv1'])
    """

    def __init__(self, n_timescales=10, n_frequencies=16, dampings=(0.5, 1.5), *,
                 min_timescale=1.0, max_timescale=None, differences=(0, 1, 2), n_biases=16,
                 pooling=("ppv", "mean", "max", "last"), n_channel_combinations=1,
                 random_state=None, n_jobs=None):
        self.n_timescales = n_timescales
        self.n_frequencies = n_frequencies
        self.dampings = dampings
        self.min_timescale = min_timescale
        self.max_timescale = max_timescale
        self.differences = differences
        self.n_biases = n_biases
        self.pooling = pooling
        self.n_channel_combinations = n_channel_combinations
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fit
    def _check_params(self):
        R = _check_int(self.n_timescales, "n_timescales", 1)
        Qf = _check_int(self.n_frequencies, "n_frequencies", 0)
        try:
            damp = np.array(self.dampings, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise TypeError(f"dampings must be a sequence of numbers; got {self.dampings!r}") \
                from None
        if not np.all(np.isfinite(damp) & (damp > 0)):
            raise ValueError(f"dampings must be finite and > 0; got {self.dampings!r}")
        lo = _check_positive(self.min_timescale, "min_timescale")
        hi = _check_positive(self.max_timescale, "max_timescale", allow_none=True)
        if hi is not None and hi < lo:
            raise ValueError(f"max_timescale must be >= min_timescale; got {hi} < {lo}")
        diffs = _check_differences(self.differences)
        K = _check_int(self.n_biases, "n_biases", 0)
        pooling = _check_pooling(self.pooling)
        if "ppv" in pooling and K == 0:
            raise ValueError("pooling includes 'ppv' but n_biases is 0")
        ncc = _check_int(self.n_channel_combinations, "n_channel_combinations", 1)
        _n_threads(self.n_jobs)
        return R, Qf, damp, lo, hi, diffs, K, pooling, ncc

    def fit(self, X, y=None):
        """Draw the biases (and channel subsets) from the training series.

        Parameters
        ----------
        X : array_like, shape (n_cases, n_timepoints) or (n_cases, n_channels, n_timepoints)
        y : ignored

        Returns
        -------
        self
        """
        R, Qf, damp, lo, hi, diffs, K, pooling, ncc = self._check_params()
        X = _validate_X(self, X, reset=True)
        rng = check_random_state(self.random_state)
        L = X.shape[-1]
        C = self.n_channels_in_
        hi = max(lo, L / 2.0) if hi is None else hi
        self.timescales_ = np.geomspace(lo, hi, R)
        periods = np.geomspace(3.0, max(3.0, float(L)), Qf) if Qf else np.zeros(0)
        self.periods_ = np.repeat(periods[None, :], damp.size, axis=0).reshape(-1)
        self.decay_times_ = (damp[:, None] * periods[None, :]).reshape(-1)
        p_real = np.exp(-1.0 / self.timescales_)
        p_cplx = np.exp(-1.0 / self.decay_times_ + 2j * np.pi / self.periods_) \
            if self.periods_.size else np.zeros(0, np.complex128)
        self.poles_ = np.concatenate([p_real.astype(np.complex128), p_cplx])
        Q = p_cplx.size
        self._p = (p_real, p_cplx.real.copy(), p_cplx.imag.copy(), 1.0 - np.abs(p_cplx))
        rows = ["x"] + [f"ema{r}" for r in range(R)] + [f"hp{r}" for r in range(R)] \
            + [f"bp{r}" for r in range(R - 1)] + [f"res{q}_re" for q in range(Q)] \
            + [f"res{q}_im" for q in range(Q)] + [f"res{q}_abs" for q in range(Q)]
        nd = len(diffs)
        ncc = ncc if C > 1 else 1
        out_row, ptr, sig, names = [], [0], [], []
        for comb in range(ncc):
            for j, d in enumerate(diffs):
                sizes = _subset_sizes(rng, len(rows), C) if C > 1 else np.ones(len(rows), int)
                for r, rname in enumerate(rows):
                    chans = np.sort(rng.choice(C, sizes[r], replace=False)) if C > 1 else [0]
                    out_row.append(r)
                    sig.extend(int(c) * nd + j for c in chans)
                    ptr.append(len(sig))
                    names.append(f"c{'+'.join(str(int(c)) for c in chans)}_d{d}_{rname}")
        self._out_row = np.asarray(out_row, dtype=np.intp)
        self._ptr = np.asarray(ptr, dtype=np.intp)
        self._sig = np.asarray(sig, dtype=np.intp)
        self._diffs = diffs
        return self._finish_fit(X, names, pooling, K, rng)

    # ------------------------------------------------------------------ transform
    def _run(self, X, biases, full):
        dt = X.dtype
        U = _difference_signals(_as_3d(X), self._diffs)
        p_real, p_re, p_im, g = (np.asarray(v, dtype=dt) for v in self._p)
        n = X.shape[0]
        F = self._out_row.size
        if full:
            Z = np.empty((n, F, U.shape[2]), dtype=dt)
            pooled = np.empty((0, 0), dtype=dt)
        else:
            Z = np.empty((0, 0, 0), dtype=dt)
            pooled = np.empty((n, self.n_features_out_), dtype=dt)
        _bank_kernel(U, p_real, p_re, p_im, g, self._out_row, self._ptr, self._sig,
                     np.ascontiguousarray(biases, dtype=dt), self._offsets, pooled, Z)
        return Z if full else pooled

    def transform(self, X):
        """Pooled filter-bank features.

        Parameters
        ----------
        X : array_like, shape (n_cases, n_timepoints) or (n_cases, n_channels, n_timepoints)
            Same trailing shape as in ``fit``.

        Returns
        -------
        ndarray, shape (n_cases, n_features_out_)
            float32 for float32 input, else float64.
        """
        check_is_fitted(self)
        X = _validate_X(self, X, reset=False)
        with _threads(_n_threads(self.n_jobs)):
            return self._run(X, self.biases_, full=False)

    def filter_outputs(self, X):
        """The bank's outputs before pooling, ``(n_cases, n_outputs, n_timepoints)``.

        For inspection and plots; ``transform`` pools them without forming this array.

        Parameters
        ----------
        X : array_like, same trailing shape as in ``fit``

        Returns
        -------
        ndarray, shape (n_cases, len(outputs_), n_timepoints)
        """
        check_is_fitted(self)
        X = _validate_X(self, X, reset=False)
        with _threads(_n_threads(self.n_jobs)):
            return self._run(X, np.zeros((len(self.outputs_), 0), X.dtype), full=True)


# =========================================================================== selective SSMs
_THETA = float(np.log(np.expm1(1.0)))   # softplus(_THETA) == 1: delta_t == dt at v_t == 0


def _stratified_loguniform(rng, m, lo, hi):
    """``m`` values log-uniform in ``[lo, hi]``, one in each of ``m`` equal log-strata, shuffled."""
    if m == 0:
        return np.zeros(0)
    pos = (rng.permutation(m) + rng.uniform(size=m)) / m
    return np.exp(np.log(lo) + pos * (np.log(hi) - np.log(lo)))


class SelectiveFeatures(_BankBase):
    """Random selective SSMs (Mamba's Δ, B, C computed from the input) as a feature bank.

    The spirit of MiniRocket's random kernels, with selective filters. Each of
    ``n_kernels`` kernels reads one signal (a channel, or for 3-D input the sum of a
    random subset of channels, differenced 0, 1 or 2 times as in
    :class:`FilterBankFeatures`; each signal centred and scaled with the training
    data's mean and standard deviation) and runs it through a selective SSM of
    ``d_state`` modes, whose parameters at every sample ``t`` are computed from the
    kernel's input ``v_t``, as in :class:`iirssm.SelectiveSSM`:

    * time step ``Δ_t = dt · softplus(θ + a·v_t)`` (``θ = softplus⁻¹(1)``, so
      ``Δ_t = dt`` where ``v_t = 0``), the base step ``dt = 1/τ`` with the kernel's
      time scale ``τ`` drawn log-uniformly (stratified) over the series' length;
    * input matrix ``B_tn = -A_n (1 + b_n·v_t)`` (the ``-A_n`` gives every mode unit
      gain at zero frequency), zero-order hold: ``Ā_tn = exp(Δ_t A_n)``,
      ``h_tn = Ā_tn h_t-1,n + (1 - Ā_tn)(1 + b_n v_t) v_t``;
    * read-out ``C_tn = c_n + c'_n·v_t``, ``y_t = Σ_n C_tn h_tn`` (``2 Re`` for
      complex modes).

    Half the kernels have S4D-real modes ``A_n = -n`` (exponential smoothers at time
    scales ``τ/n``), half damped harmonics ``A_n = n(-1/2 + iπ)`` (resonators of
    period ``2τ/n`` that decay by ``1/e`` in one period: the same relative bandwidth,
    constant Q, for every mode). ``a``, ``b``, ``c'`` are random with scale
    ``selectivity``; ``c`` is standard normal. The modes start in the steady state of
    the first sample. Every mode is pooled, not only the read-out: for real modes
    ``h_n`` (lowpass) and ``v - h_n`` (highpass), for complex ones ``Re h_n``,
    ``Im h_n`` and ``|h_n|``, and ``y`` for both, each as MiniRocket pools its
    convolutions: proportion of values above each of ``n_biases`` biases drawn from
    training outputs (PPV), mean and maximum (the last value on request).

    Two choices depart from the obvious ones, for accuracy. The complex modes are
    not S4D-Lin's ``A_n = -1/2 + iπn``, whose modes all decay over the same ``2τ``,
    so that mode ``n`` rings for ``n`` periods and the higher modes are narrow bands;
    FilterBankFeatures' broadband resonators (decay in 0.5 and 1.5 periods) classify
    better, and with constant Q every mode decays in one period and passes a band of
    the same relative width. And the last value is not pooled by default: it is a
    single sample of the output (for series zero-padded to a common length, a sample
    of the padding), a noisy feature beside the PPVs, mean and maximum, which pool
    the whole series. Together they raise the mean accuracy of
    ``benchmarks/bench_features.py`` (nine data sets) by about 0.5 pp over seeds
    0-2 and 0.8 pp over seeds 3-5 (``docs/performance.md``).

    Parameters
    ----------
    n_kernels : int, default=30
        Number of selective SSMs (spread evenly over ``differences``, half real and
        half complex). With the other defaults, 8,640 features for one channel, in
        less time than MiniRocket's 9,996 on ``benchmarks/bench_features.py``; there
        30 kernels were about 0.3 pp more accurate than 24 (mean over seeds 0-8),
        and 36 or 42 kernels no better than 30.
    d_state : int, default=6
        Modes per kernel.
    differences : sequence of int, default=(0, 1, 2)
        Differences of each channel the kernels read (as in FilterBankFeatures).
    min_timescale : float, default=1.0
        Shortest base time scale of a real kernel, in samples (complex kernels:
        their highest mode's period is at least ``3 * min_timescale``).
    selectivity : float, default=0.5
        Scale of the random weights that make Δ, B and C depend on the input (0:
        a fixed, linear filter bank).
    n_biases : int, default=16
        PPV biases per output.
    pooling : sequence of str, default=("ppv", "mean", "max")
        Which pooled values to return (``"last"`` adds the last value).
    random_state : int, RandomState instance or None, default=None
        Seeds the kernels, channel subsets and biases.
    n_jobs : int, optional
        Threads (over cases) for the kernel. ``None``: one thread.

    Attributes
    ----------
    kernel_signals_ : list of tuple of int
        Signals each kernel sums (signal ``c * len(differences) + j`` is channel
        ``c`` differenced ``differences[j]`` times).
    kernel_complex_ : ndarray of bool, shape (n_kernels,)
        Damped-harmonic (True) or S4D-real (False) modes.
    timescales_ : ndarray, shape (n_kernels,)
        ``τ`` of each kernel (samples); ``dt = 1/τ``.
    A_ : ndarray of complex, shape (n_kernels, d_state)
        Continuous-time poles for ``Δ = 1`` (``-n`` or ``n(-1/2 + iπ)``).
    delta_weights_ : ndarray, shape (n_kernels,)
        ``a`` of each kernel.
    B_weights_, C_bias_, C_weights_ : ndarray, shape (n_kernels, d_state)
        ``b``, ``c`` and ``c'``.
    signal_mean_, signal_scale_ : ndarray, shape (n_signals,)
        Training mean and standard deviation of each signal (channel x difference).
    outputs_ : list of str
        Name of every pooled output: ``"k3_h1"`` (kernel 3, mode 1), ``"k3_hp1"``
        (input minus mode 1), ``"k4_re0"``, ``"k4_im0"``, ``"k4_abs0"``, ``"k3_y"``.
    biases_ : ndarray, shape (n_outputs, n_biases)
    n_features_out_ : int
    n_features_in_, feature_names_in_, n_timepoints_in_, n_channels_in_, input_ndim_
        As for :class:`EMASmoother`.

    Notes
    -----
    One fused Numba kernel per case runs the SSMs block by block (128 samples) and
    pools each block straight away, so nothing of size ``(n_outputs,
    n_timepoints)`` is formed; per sample and kernel it costs two exponentials and a
    logarithm (a sine and cosine more for complex modes), all polynomials that
    vectorise over the block, and the modes' powers ``Ā_n = Ā_1^n`` by
    multiplication; the recurrences then advance three modes at a time. ``fit``
    computes each output only on the one training case its biases are read from.
    Each mode equals :func:`iirssm.selective_scan` with ``discretization="zoh"``
    (tested).

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm.sklearn import SelectiveFeatures
    >>> X = np.random.default_rng(0).standard_normal((5, 60))
    >>> est = SelectiveFeatures(n_kernels=4, d_state=2, n_biases=4, random_state=0)
    >>> F = est.fit_transform(X)
    >>> F.shape, est.outputs_[:3]
    ((5, 132), ['k0_h0', 'k0_h1', 'k0_hp0'])
    """

    def __init__(self, n_kernels=30, d_state=6, *, differences=(0, 1, 2), min_timescale=1.0,
                 selectivity=0.5, n_biases=16, pooling=("ppv", "mean", "max"),
                 random_state=None, n_jobs=None):
        self.n_kernels = n_kernels
        self.d_state = d_state
        self.differences = differences
        self.min_timescale = min_timescale
        self.selectivity = selectivity
        self.n_biases = n_biases
        self.pooling = pooling
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _check_params(self):
        D = _check_int(self.n_kernels, "n_kernels", 1)
        N = _check_int(self.d_state, "d_state", 1)
        diffs = _check_differences(self.differences)
        lo = _check_positive(self.min_timescale, "min_timescale")
        sel = self.selectivity
        if isinstance(sel, bool) or not isinstance(sel, numbers.Real) or not np.isfinite(sel) \
                or sel < 0:
            raise ValueError(f"selectivity must be a finite number >= 0; got {sel!r}")
        K = _check_int(self.n_biases, "n_biases", 0)
        pooling = _check_pooling(self.pooling)
        if "ppv" in pooling and K == 0:
            raise ValueError("pooling includes 'ppv' but n_biases is 0")
        _n_threads(self.n_jobs)
        return D, N, diffs, lo, float(sel), K, pooling

    def fit(self, X, y=None):
        """Draw the random SSMs and the biases, and learn the signals' mean and scale.

        Parameters
        ----------
        X : array_like, shape (n_cases, n_timepoints) or (n_cases, n_channels, n_timepoints)
        y : ignored

        Returns
        -------
        self
        """
        D, N, diffs, lo, sel, K, pooling = self._check_params()
        X = _validate_X(self, X, reset=True)
        rng = check_random_state(self.random_state)
        L = X.shape[-1]
        C = self.n_channels_in_
        nd = len(diffs)
        self._diffs = diffs
        U = _difference_signals(_as_3d(X), diffs).astype(np.float64)
        self.signal_mean_ = U.mean(axis=(0, 2))
        scale = U.std(axis=(0, 2))
        self.signal_scale_ = np.where(scale > 0, scale, 1.0)
        # Kernels: difference j = k % nd; within a difference alternately real and
        # complex; time scales stratified log-uniform within each (difference, kind).
        ks = np.arange(D)
        jdiff = ks % nd
        cplx = (ks // nd) % 2 == 1
        tau = np.empty(D)
        for j in range(nd):
            for c in (False, True):
                sel_k = ks[(jdiff == j) & (cplx == c)]
                if c:   # fundamental period 2 tau in [3 N lo, 2 L / 2]
                    a, b = 1.5 * N * lo, max(1.5 * N * lo, L / 2.0)
                else:
                    a, b = lo, max(lo, L / 2.0)
                tau[sel_k] = _stratified_loguniform(rng, sel_k.size, a, b)
        sizes = _subset_sizes(rng, D, C) if C > 1 else np.ones(D, int)
        sigs, ptr = [], [0]
        for k in range(D):
            chans = np.sort(rng.choice(C, sizes[k], replace=False)) if C > 1 else [0]
            sigs.extend(int(c) * nd + int(jdiff[k]) for c in chans)
            ptr.append(len(sigs))
        self._k_ptr = np.asarray(ptr, dtype=np.intp)
        self._k_sig = np.asarray(sigs, dtype=np.intp)
        self.kernel_signals_ = [tuple(sigs[ptr[k]:ptr[k + 1]]) for k in range(D)]
        self.kernel_complex_ = cplx
        self.timescales_ = tau
        nn = np.arange(N, dtype=np.float64)
        self.A_ = np.where(cplx[:, None], (nn + 1) * (-0.5 + 1j * np.pi), -(nn + 1) + 0j)
        self.delta_weights_ = sel * rng.standard_normal(D)
        self.B_weights_ = sel * rng.standard_normal((D, N))
        self.C_bias_ = rng.standard_normal((D, N))
        self.C_weights_ = sel * rng.standard_normal((D, N))
        names, row_ptr = [], [0]
        for k in range(D):
            if cplx[k]:
                rows = [f"re{m}" for m in range(N)] + [f"im{m}" for m in range(N)] \
                    + [f"abs{m}" for m in range(N)]
            else:
                rows = [f"h{m}" for m in range(N)] + [f"hp{m}" for m in range(N)]
            names += [f"k{k}_{r}" for r in rows + ["y"]]
            row_ptr.append(len(names))
        self._row_ptr = np.asarray(row_ptr, dtype=np.intp)
        return self._finish_fit(X, names, pooling, K, rng)

    def _bias_rows(self, Xs, pick):
        """Only output ``f`` of case ``pick[f]`` is computed (``_run(pick=...)``), not
        every output of up to 32 cases: less than half the work, and one array of
        ``(n_outputs, n_timepoints)`` instead of 32 of them."""
        return self._run(Xs, np.zeros((len(self.outputs_), 0), Xs.dtype), full=True,
                         pick=pick)

    def _run(self, X, biases, full, pick=None):
        """Pooled features, or with ``full`` the outputs ``(n, F, L)``; with ``pick``
        (F,) as well, output ``f`` of case ``pick[f]`` only, ``(F, L)``."""
        dt = X.dtype
        U = np.ascontiguousarray(_difference_signals(_as_3d(X), self._diffs))
        n, L = X.shape[0], X.shape[-1]
        F = len(self.outputs_)
        if pick is not None:
            Z = np.empty((1, F, L), dtype=dt)
            pooled = np.empty((0, 0), dtype=dt)
        elif full:
            Z = np.empty((n, F, L), dtype=dt)
            pooled = np.empty((0, 0), dtype=dt)
        else:
            Z = np.empty((0, 0, 0), dtype=dt)
            pooled = np.empty((n, self.n_features_out_), dtype=dt)
        D = self.timescales_.size

        def c(a):
            return np.ascontiguousarray(a, dtype=dt)

        _selective_bank_kernel(
            U, self._k_ptr, self._k_sig, c(1.0 / self.signal_scale_), c(self.signal_mean_),
            self.kernel_complex_.astype(np.int8), c(1.0 / self.timescales_),
            c(np.full(D, _THETA)), c(self.delta_weights_), c(self.B_weights_),
            c(self.C_bias_), c(self.C_weights_), self._row_ptr, c(biases), self._offsets,
            pooled, Z, np.zeros(0, np.intp) if pick is None else np.asarray(pick, np.intp))
        if pick is not None:
            return Z[0]
        return Z if full else pooled

    def filter_outputs(self, X):
        """The bank's outputs before pooling, ``(n_cases, len(outputs_), n_timepoints)``.

        For inspection and plots; ``transform`` pools them without forming this array.

        Parameters
        ----------
        X : array_like, same trailing shape as in ``fit``

        Returns
        -------
        ndarray
        """
        check_is_fitted(self)
        X = _validate_X(self, X, reset=False)
        with _threads(_n_threads(self.n_jobs)):
            return self._run(X, np.zeros((len(self.outputs_), 0), X.dtype), full=True)

    def transform(self, X):
        """Pooled selective-SSM features.

        Parameters
        ----------
        X : array_like, shape (n_cases, n_timepoints) or (n_cases, n_channels, n_timepoints)

        Returns
        -------
        ndarray, shape (n_cases, n_features_out_)
            float32 for float32 input, else float64.
        """
        check_is_fitted(self)
        X = _validate_X(self, X, reset=False)
        with _threads(_n_threads(self.n_jobs)):
            return self._run(X, self.biases_, full=False)
