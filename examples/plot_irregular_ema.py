"""Smoothing irregularly sampled data with ``times=``
==================================================

An exponential moving average that counts samples treats a gap of a month like
a gap of a week. With ``times=`` and a ``halflife``, :func:`iirssm.ema` decays
the past by the time that actually elapsed, ``0.5 ** (dt / halflife)``, exactly
as pandas' ``ewm(halflife=..., times=...)`` does. Here the Mauna Loa weekly CO2
record shipped with iirssm is thinned to an irregular sample (random visits,
plus its own missing weeks), then smoothed both ways and compared with the
smoothing of the complete record.
"""

import sys

import matplotlib.pyplot as plt
import numpy as np

import iirssm
from iirssm.data import load_co2

# %%
# Load the record and keep a random 30% of the observed weeks: the time between
# two samples now varies from one week to several months.
times, values = load_co2()
observed = ~np.isnan(values)
rng = np.random.default_rng(0)
keep = observed & (rng.random(values.size) < 0.3)
t_irr, v_irr = times[keep], values[keep]
gaps = np.diff(t_irr) / np.timedelta64(1, "D")
print(f"{keep.sum()} of {observed.sum()} weekly values kept; "
      f"gaps from {gaps.min():.0f} to {gaps.max():.0f} days (median {np.median(gaps):.0f})")

# %%
# Smooth with a 26-week half-life. The time-aware EMA follows the time stamps;
# the sample-counting EMA uses the equivalent per-sample half-life of the
# complete weekly record (26 samples), so it forgets too slowly where samples
# are sparse. The reference smooths the complete record (missing weeks are
# NaN, which the EMA skips while the weight decays).
halflife = np.timedelta64(26 * 7, "D")
timed = iirssm.ema(v_irr, halflife=halflife, times=t_irr, adjust=True)
counted = iirssm.ema(v_irr, halflife=26.0, adjust=True)
reference = iirssm.ema(values, halflife=halflife, times=times, adjust=True)[keep]

for name, y in (("times=", timed), ("sample count", counted)):
    err = y - reference
    print(f"{name:>13}: RMS difference from the complete-record EMA {np.sqrt(np.mean(err**2)):.3f} ppm")

# %%
# Plot the irregular samples, both EMAs and their difference from the
# reference.
fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True,
                                  gridspec_kw={"height_ratios": [2, 1]}, layout="constrained")
top.plot(t_irr, v_irr, ".", color="0.6", ms=3, label="irregular samples")
top.plot(t_irr, timed, lw=1.5, label="ema(halflife=26 weeks, times=t)")
top.plot(t_irr, counted, lw=1.2, ls="--", label="ema(halflife=26 samples)")
top.set_ylabel("CO2 (ppm)")
top.legend(loc="upper left")
top.set_title("Mauna Loa CO2, 30% of the weeks at random")
bottom.plot(t_irr, timed - reference, lw=1, label="times=")
bottom.plot(t_irr, counted - reference, lw=1, ls="--", label="sample count")
bottom.axhline(0, color="k", lw=0.5)
bottom.set_ylabel("error vs full record (ppm)")
bottom.legend(loc="upper left")
for ax in (top, bottom):
    ax.grid(True, alpha=0.3)

# Run as a script, save the figure: to the path given as the first argument, or
# to the current directory. (The documentation's gallery captures it itself and
# runs the code without ``__file__``.)
if "__file__" in globals():
    fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "plot_irregular_ema.png", dpi=100)
