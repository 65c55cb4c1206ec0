"""Small real datasets shipped with iirssm for the demo and the examples.

Each loader reads a CSV file shipped inside the package with NumPy only (no
pandas) and returns NumPy arrays. ``README.md`` next to this file gives the
source, the terms of use and how each file was obtained.
"""

from __future__ import annotations

from importlib import resources
from typing import NamedTuple

import numpy as np

__all__ = ["TimeSeries", "load_co2"]

_CO2_FILE = "mauna_loa_co2.csv"


class TimeSeries(NamedTuple):
    """A univariate time series with time stamps.

    Attributes
    ----------
    times : numpy.ndarray of datetime64[D], shape (n,)
        Time stamps, strictly increasing.
    values : numpy.ndarray of float64, shape (n,)
        Observations; NaN marks a missing sample.
    """

    times: np.ndarray
    values: np.ndarray


def load_co2() -> TimeSeries:
    """Load the Mauna Loa weekly atmospheric CO2 record, 1958-2001.

    Weekly averages of continuous air samples at Mauna Loa Observatory, Hawaii,
    by the Scripps Institution of Oceanography (C. D. Keeling and T. P. Whorf),
    as distributed with statsmodels (``statsmodels.datasets.co2``); public
    domain. The record is on a regular weekly grid (weeks ending on Saturday,
    1958-03-29 to 2001-12-29, 2284 weeks) in which 59 weeks have no data; those
    are NaN in ``values``. See ``iirssm/data/README.md`` for the provenance.

    Returns
    -------
    TimeSeries
        Named tuple ``(times, values)``:

        ``times`` : numpy.ndarray of datetime64[D], shape (2284,)
            The date of each weekly average, strictly increasing by 7 days.
        ``values`` : numpy.ndarray of float64, shape (2284,)
            CO2 mole fraction in dry air, ppm (1999 calibration scale); NaN for
            the 59 weeks without data.

        Both arrays are new, writable copies on every call.

    Examples
    --------
    >>> import numpy as np
    >>> from iirssm.data import load_co2
    >>> times, values = load_co2()
    >>> times.dtype, values.dtype, values.shape
    (dtype('<M8[D]'), dtype('float64'), (2284,))
    >>> str(times[0]), str(times[-1]), int(np.isnan(values).sum())
    ('1958-03-29', '2001-12-29', 59)

    Smooth it with a one-year half-life, skipping over the missing weeks as
    pandas' ``ewm(halflife=..., times=...)`` does:

    >>> import iirssm
    >>> trend = iirssm.ema(values, halflife=np.timedelta64(365, "D"), times=times,
    ...                    adjust=True)
    >>> trend.shape
    (2284,)
    """
    text = resources.files(__name__).joinpath(_CO2_FILE).read_text(encoding="ascii")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "date,co2":
        raise ValueError(
            f"{_CO2_FILE}: expected the header 'date,co2', got {lines[:1]!r}; "
            "the packaged data file is damaged"
        )
    dates = []
    values = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(",")
        date = fields[0].strip()
        if len(fields) != 2 or len(date) != 8 or not date.isdigit():
            raise ValueError(
                f"{_CO2_FILE}, line {number}: expected 'YYYYMMDD,value', got {line!r}"
            )
        dates.append(f"{date[:4]}-{date[4:6]}-{date[6:]}")
        values.append(fields[1].strip() or "nan")
    times = np.array(dates, dtype="datetime64[D]")
    return TimeSeries(times=times, values=np.array(values, dtype=np.float64))
