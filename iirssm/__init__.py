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
from ._selective import (SelectiveCoefficients, SelectiveScanGrad, SelectiveSSM,
                         complex_from_interleaved, frozen_freqz, interleaved_from_complex,
                         selective_coefficients, selective_scan, selective_scan_grad,
                         selective_scan_vjp, ssd_scan)
from ._selective import halflife as selective_halflife
from ._ssm import DiagonalSSM

__version__ = "0.1.0.dev0"

__all__ = [
    # the recurrence and the EMA family
    "linear_recurrence", "ema", "EMAState",
    # scipy.signal drop-ins
    "lfilter", "lfilter_zi", "lfiltic", "filtfilt", "sosfilt", "sosfilt_zi", "sosfiltfilt",
    # diagonal state-space systems
    "DiagonalSSM",
    # selective (Mamba) scans
    "selective_scan", "selective_scan_grad", "selective_scan_vjp", "SelectiveScanGrad", "selective_coefficients",
    "SelectiveCoefficients", "selective_halflife", "frozen_freqz", "complex_from_interleaved",
    "interleaved_from_complex", "SelectiveSSM", "ssd_scan",
    "__version__",
]
