"""The ``iirssm demo`` command: time-stamped EMAs of the shipped CO2 record.

Loads :func:`iirssm.data.load_co2` (weekly, with missing weeks), smooths it with
:func:`iirssm.ema` using ``times=`` and a few half-lives (pandas'
``ewm(halflife=..., times=..., adjust=True).mean()`` semantics: a missing week
keeps the previous output and the decay follows the time stamps), prints a
summary and saves a plot. matplotlib is imported only to draw the plot.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

import numpy as np

import iirssm
from iirssm.data import load_co2

__all__ = ["run"]

#: (label, half-life) pairs; the last one is the slow EMA the trend is read from.
HALF_LIVES = (
    ("4 weeks", np.timedelta64(28, "D")),
    ("1 year", np.timedelta64(365, "D")),
)
#: The trend is the least-squares slope of the slow EMA over this many final years.
TREND_YEARS = 10
_DAYS_PER_YEAR = 365.25
_REPEATS = 5


def _smooth(times: np.ndarray, values: np.ndarray) -> list[np.ndarray]:
    return [
        iirssm.ema(values, halflife=halflife, times=times, adjust=True)
        for _, halflife in HALF_LIVES
    ]


def _years(times: np.ndarray) -> np.ndarray:
    """Time stamps as float years since the first one."""
    return (times - times[0]) / np.timedelta64(1, "D") / _DAYS_PER_YEAR


def _slope_per_year(times: np.ndarray, y: np.ndarray, years: float) -> float:
    """Least-squares slope (units of ``y`` per year) of ``y`` over its last ``years``."""
    t = _years(times)
    keep = (t >= t[-1] - years) & np.isfinite(y)
    t, y = t[keep], y[keep]
    t = t - t.mean()
    return float(np.dot(t, y - y.mean()) / np.dot(t, t))


def _longest_gap(values: np.ndarray) -> tuple[int, int]:
    """(start, stop) indices of the longest run of NaN in ``values``; (0, 0) if none."""
    edges = np.diff(np.concatenate(([0], np.isnan(values).astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if starts.size == 0:
        return 0, 0
    i = int(np.argmax(stops - starts))
    return int(starts[i]), int(stops[i])


def _save_plot(path, times, values, smoothed) -> bool:
    """Draw raw and smoothed curves to ``path``; False when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    # A bare Figure on the Agg canvas: no pyplot, no change to the caller's backend.
    fig = Figure(figsize=(9, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    full, zoom = fig.subplots(2, 1)
    start, stop = _longest_gap(values)
    margin = np.timedelta64(550, "D")
    around_gap = (times >= times[start] - margin) & (times <= times[stop - 1] + margin)
    for ax, sel in ((full, slice(None)), (zoom, around_gap)):
        marker = "." if ax is zoom else None
        ax.plot(times[sel], values[sel], color="0.6", lw=0.8, marker=marker, ms=3,
                label="weekly mean (gaps: missing weeks)")
        for (label, _), y in zip(HALF_LIVES, smoothed, strict=True):
            ax.plot(times[sel], y[sel], lw=1.6, label=f"EMA, half-life {label}")
        ax.set_ylabel("CO2 (ppm)")
        ax.grid(True, alpha=0.3)
    full.set_title("Mauna Loa weekly CO2 smoothed with iirssm.ema(..., times=times, "
                   "adjust=True)", fontsize=10)
    zoom.set_title(f"around the longest gap ({stop - start} missing weeks): the EMAs hold "
                   "their value, then decay by the time elapsed", fontsize=10)
    full.legend(loc="upper left", fontsize=9)
    fig.savefig(path, dpi=100)
    return True


def run(output: str | os.PathLike | None = "iirssm-demo.png", *,
        file: TextIO | None = None) -> int:
    """Run the demo: smooth the CO2 record, print a summary, save a plot.

    Parameters
    ----------
    output : str, path-like or None, default "iirssm-demo.png"
        Where to write the PNG plot; None skips the plot.
    file : text stream, optional
        Where to print the summary; ``sys.stdout`` by default. Errors go to
        ``sys.stderr``.

    Returns
    -------
    int
        Exit status: 0 on success (also when matplotlib is missing and the plot
        is skipped), 1 when the plot cannot be written.
    """
    out = sys.stdout if file is None else file
    times, values = load_co2()

    start = time.perf_counter()
    smoothed = _smooth(times, values)
    first = time.perf_counter() - start
    best = np.inf
    for _ in range(_REPEATS):
        start = time.perf_counter()
        _smooth(times, values)
        best = min(best, time.perf_counter() - start)

    n = values.size
    missing = int(np.isnan(values).sum())
    span = _years(times)[-1]
    last_valid = np.flatnonzero(~np.isnan(values))[-1]
    trend = _slope_per_year(times, smoothed[-1], TREND_YEARS)
    raw_trend = _slope_per_year(times, values, TREND_YEARS)

    def emit(line=""):
        print(line, file=out)

    emit("iirssm demo: exponential moving averages of an irregular series with times=")
    emit()
    emit("dataset   Mauna Loa weekly atmospheric CO2, Scripps (iirssm.data.load_co2)")
    start, stop = _longest_gap(values)
    emit(f"samples   {n} weeks, {missing} missing (NaN), {n - missing} observed; longest gap "
         f"{stop - start} weeks from {times[start]}")
    emit(f"span      {times[0]} to {times[-1]} ({span:.1f} years)")
    emit("filter    iirssm.ema(values, halflife=h, times=times, adjust=True), h = "
         + ", ".join(label for label, _ in HALF_LIVES))
    emit()
    emit(f"value at the end ({times[-1]}):")
    emit(f"  {'last observation':<22}{values[last_valid]:8.2f} ppm")
    for (label, _), y in zip(HALF_LIVES, smoothed, strict=True):
        emit(f"  {'EMA, half-life ' + label:<22}{y[-1]:8.2f} ppm")
    emit()
    emit(f"trend     {trend:+.2f} ppm/year over the last {TREND_YEARS} years: least-squares "
         f"slope of the {HALF_LIVES[-1][0]} EMA")
    emit(f"          (the raw weekly values give {raw_trend:+.2f} ppm/year)")
    emit(f"timing    {len(HALF_LIVES)} EMAs of {n} samples: {best * 1e3:.3f} ms (best of "
         f"{_REPEATS} runs)")
    emit(f"          first run: {first:.2f} s, with Numba compilation or cache loading")

    if output is None:
        return 0
    try:
        drawn = _save_plot(output, times, values, smoothed)
    except OSError as exc:
        print(f"iirssm demo: error: cannot write the plot to {os.fspath(output)!r}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    if drawn:
        emit(f"plot      saved to {os.fspath(output)}")
    else:
        emit("plot      skipped: matplotlib is not installed; the plot needs "
             "`pip install iirssm[plot]`")
    return 0
