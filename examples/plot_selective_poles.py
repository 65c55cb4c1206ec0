"""A selective filter's pole trajectories and time-frequency response
==================================================================

A selective state-space model (Mamba's S6 layer) is a bank of first-order IIR
filters whose poles are chosen anew at every sample from the input: with
``Ā[t] = exp(Δ[t]·A)``, the step ``Δ[t]`` is the time that passes at sample
``t``. Here a small hand-built selective filter with three oscillatory modes
(an annual, a half-year and a quarter-year resonance) runs over the Mauna Loa
CO2 record. Its ``Δ`` grows with how surprising each week is, so the filter's
clock runs faster on surprises: its poles move along spirals in the z-plane
(:func:`iirssm.selective_coefficients`) and its frozen-time frequency response
(:func:`iirssm.frozen_freqz`) shifts and widens, sample by sample.
"""

import sys

import matplotlib.pyplot as plt
import numpy as np

import iirssm
from iirssm.data import load_co2

# %%
# The signal: weekly CO2 minus its one-year time-stamped EMA (the trend), with
# the missing weeks interpolated, standardised. It is mostly the seasonal cycle.
times, values = load_co2()
week = np.arange(values.size, dtype=float)
ok = ~np.isnan(values)
filled = np.interp(week, week[ok], values[ok])
trend = iirssm.ema(filled, halflife=np.timedelta64(365, "D"), times=times, adjust=True)
u = filled - trend
u = (u - u.mean()) / u.std()

# %%
# The selective filter. Continuous poles ``A_n = -0.02 + 2πi f_n`` with
# ``f_n`` = 1, 2 and 4 cycles per year (per 52.18 weeks); ``Δ[t] =
# softplus(2·max(surprise[t] - 1, 0) + bias)`` with the bias chosen so that
# ``Δ = 1`` week for an unsurprising sample (Mamba's softplus and bias). The
# surprise is the size of the difference between a sample and the 8-week EMA
# before it, relative to its RMS.
weeks_per_year = 365.25 / 7
f = np.array([1.0, 2.0, 4.0]) / weeks_per_year          # cycles per week
A = (-0.02 + 2j * np.pi * f)[None, :]                   # (dim=1, N=3)
B = np.ones((1, 3), dtype=complex)
C = np.full((1, 3), 0.05 + 0j)
prev = np.concatenate(([u[0]], iirssm.ema(u, halflife=8.0)[:-1]))
surprise = np.abs(u - prev)
surprise /= np.sqrt(np.mean(surprise**2))             # in RMS units
bias = np.log(np.expm1(1.0))                            # softplus(bias) = 1
delta = (2.0 * np.maximum(surprise - 1.0, 0.0))[None, :]  # (dim=1, L)

y = iirssm.selective_scan(u[None, :], delta, A, B, C, delta_bias=np.array([bias]),
                          delta_softplus=True)
coef = iirssm.selective_coefficients(delta, A, B, C, np.array([bias]), True)
dt = np.log1p(np.exp(delta[0] + bias))                  # the Δ the scan used
print(f"Δ from {dt.min():.2f} to {dt.max():.2f} weeks (median {np.median(dt):.2f})")
print("pole radius |Ā| per mode, min..max:",
      [f"{abs(a).min():.3f}..{abs(a).max():.3f}" for a in coef.A_bar[0]])

# %%
# Frozen-time frequency response at every week of 1980-1989: hold sample t's
# coefficients fixed and evaluate the transfer function on the unit circle.
years = 1958 + (times - times[0]) / np.timedelta64(1, "D") / 365.25 + 0.24
t_idx = np.flatnonzero((years >= 1980) & (years < 1990))
w, H = iirssm.frozen_freqz(delta, A, B, C, t=t_idx, worN=512, delta_bias=np.array([bias]),
                           delta_softplus=True)
cycles_per_year = w / (2 * np.pi) * weeks_per_year
gain_db = 20 * np.log10(np.abs(H[0]) + 1e-12)           # (len(t_idx), len(w))

# %%
# Plot the pole trajectories (every sample of the record, coloured by Δ), the
# signal with Δ and the output, and the time-frequency map.
fig = plt.figure(figsize=(11, 8.5), layout="constrained")
grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.7])
ax_z = fig.add_subplot(grid[0, 0])
ax_u = fig.add_subplot(grid[0, 1])
ax_tf = fig.add_subplot(grid[1, :])

circle = np.exp(1j * np.linspace(0, 2 * np.pi, 400))
ax_z.plot(circle.real, circle.imag, color="0.6", lw=0.8)
order = np.argsort(dt)                                   # large Δ drawn last
for n in range(3):
    p = coef.A_bar[0, n, order]
    for z in (p, np.conj(p)):                            # conjugate partners
        sc = ax_z.scatter(z.real, z.imag, c=dt[order], s=6, cmap="plasma", vmin=1,
                          vmax=dt.max())
    ax_z.annotate(f"{f[n] * weeks_per_year:.0f}/year", (p[0].real, p[0].imag),
                  textcoords="offset points", xytext=(6, -4), fontsize=8)
fig.colorbar(sc, ax=ax_z, label="Δ[t] (weeks)", shrink=0.8)
ax_z.set_aspect("equal")
ax_z.set_xlim(-1.1, 1.1)
ax_z.set_ylim(-1.1, 1.1)
ax_z.set_xlabel("Re z")
ax_z.set_ylabel("Im z")
ax_z.set_title("poles Ā[t] = exp(Δ[t]·A), 1958-2001", fontsize=10)

win = (years >= 1980) & (years < 1990)
ax_u.plot(years[win], u[win], color="0.5", lw=0.8, label="u: CO2 minus trend")
ax_u.plot(years[win], y[0, win], lw=1.2, label="y = selective_scan(u, ...)")
ax_u.set_ylabel("standardised")
ax_u.legend(loc="upper left", fontsize=8)
ax_u.grid(True, alpha=0.3)
ax_d = ax_u.twinx()
ax_d.plot(years[win], dt[win], color="C3", lw=0.8)
ax_d.set_ylabel("Δ[t] (weeks)", color="C3")
ax_d.set_ylim(0, 2.5 * dt.max())
ax_u.set_title("signal, output and Δ, 1980-1989", fontsize=10)

im = ax_tf.pcolormesh(years[t_idx], cycles_per_year, gain_db.T, shading="nearest",
                      cmap="magma", vmin=gain_db.max() - 40, vmax=gain_db.max())
fig.colorbar(im, ax=ax_tf, label="|H_t| (dB)")
ax_tf.set_ylim(0, 20)
ax_tf.set_xlabel("year")
ax_tf.set_ylabel("frequency (cycles/year)")
ax_tf.set_title("frozen-time frequency response (iirssm.frozen_freqz), 1980-1989\nat Δ = 1 "
                "the resonances sit at 1, 2 and 4 cycles/year; a surprise (larger Δ) moves "
                "them up by Δ and widens them", fontsize=10)

# Run as a script, save the figure: to the path given as the first argument, or
# to the current directory. (The documentation's gallery captures it itself and
# runs the code without ``__file__``.)
if "__file__" in globals():
    fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "plot_selective_poles.png", dpi=100)
