"""iirssm: state-space models as banks of first-order IIR filters.

One recurrence runs everything: ``h[t] = a[t] * h[t-1] + b[t]``, elementwise.
A fixed EMA has a constant ``a``; an irregular-time EMA has ``a[t] = exp(-dt[t]/tau)``;
diagonal SSMs and selective (Mamba) scans are banks of such filters.

``import iirssm`` imports NumPy and Numba only; scipy.signal, pandas and the
other optional packages are imported when a function needs them.
"""

from ._ema import EMAState, ema
from ._lfilter import filtfilt, lfilter, lfilter_zi, lfiltic, sosfilt, sosfilt_zi, sosfiltfilt
from ._recurrence import linear_recurrence

__version__ = "0.1.0.dev0"

__all__ = [
    "linear_recurrence", "ema", "EMAState",
    "lfilter", "lfilter_zi", "lfiltic", "filtfilt", "sosfilt", "sosfilt_zi", "sosfiltfilt",
    "__version__",
]
