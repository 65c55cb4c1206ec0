"""A Butterworth filter as a diagonal state-space model
====================================================

Every IIR filter is a bank of first-order filters, one per pole: the partial
fractions of its transfer function,
``H(z) = sum_n r_n / (1 - p_n z^-1) + D``. :meth:`iirssm.DiagonalSSM.from_sos`
turns scipy's second-order sections into that modal form, a diagonal SSM with
poles ``p_n``, the layout of S4D and its successors. This example builds an
8th-order Butterworth low-pass, draws its poles in the z-plane with the
half-life of each mode, checks its frequency response against
:func:`scipy.signal.sosfreqz` and its filtering against :func:`scipy.signal.sosfilt`.
"""

import sys

import matplotlib.pyplot as plt
import numpy as np
import scipy.signal

import iirssm

# %%
# Design the filter and convert it. The eight poles come in four conjugate
# pairs; the system is real, so filtering a real signal gives a real output.
sos = scipy.signal.butter(8, 0.2, output="sos")
ssm = iirssm.DiagonalSSM.from_sos(sos)
print(ssm)
print("poles |p|:", np.round(np.abs(ssm.poles), 4))
print("half-lives (samples):", np.round(ssm.halflife, 2))

# %%
# The frequency response of the modal form equals scipy's, and so does the
# filtered signal.
w, h_ssm = ssm.freqz(worN=2048)
_, h_scipy = scipy.signal.sosfreqz(sos, worN=w)
print(f"max |H_ssm - H_scipy| = {np.max(np.abs(h_ssm - h_scipy)):.2e}")

rng = np.random.default_rng(0)
n = np.arange(2000)
x = np.sin(0.05 * np.pi * n) + 0.5 * rng.standard_normal(n.size)
y_ssm = ssm.filter(x)
y_scipy = scipy.signal.sosfilt(sos, x)
y_iirssm = iirssm.sosfilt(sos, x)
print(f"max |ssm.filter - scipy sosfilt| = {np.max(np.abs(y_ssm - y_scipy)):.2e}")
print(f"max |iirssm.sosfilt - scipy sosfilt| = {np.max(np.abs(y_iirssm - y_scipy)):.2e}")

# %%
# Plot the poles and zeros with the unit circle, the magnitude response of
# both forms, and a stretch of the filtered signal.
z, _, _ = scipy.signal.sos2zpk(sos)
fig = plt.figure(figsize=(10, 7), layout="constrained")
grid = fig.add_gridspec(2, 2)
ax_z = fig.add_subplot(grid[0, 0])
ax_h = fig.add_subplot(grid[0, 1])
ax_y = fig.add_subplot(grid[1, :])

circle = np.exp(1j * np.linspace(0, 2 * np.pi, 400))
ax_z.plot(circle.real, circle.imag, color="0.6", lw=0.8)
ax_z.plot(z.real, z.imag, "o", mfc="none", color="C1", label="zeros (8 at z = -1)")
sc = ax_z.scatter(ssm.poles.real, ssm.poles.imag, c=ssm.halflife, marker="x", s=60,
                  cmap="viridis", label="poles (modes)")
fig.colorbar(sc, ax=ax_z, label="half-life of the mode (samples)")
ax_z.set_aspect("equal")
ax_z.set_xlabel("Re z")
ax_z.set_ylabel("Im z")
ax_z.set_title("DiagonalSSM.from_sos(butter(8, 0.2))")
ax_z.legend(loc="lower left", fontsize=8)

f = w / np.pi
ax_h.plot(f, 20 * np.log10(np.abs(h_scipy)), lw=3, alpha=0.5, label="scipy.signal.sosfreqz")
ax_h.plot(f, 20 * np.log10(np.abs(h_ssm)), "k--", lw=1, label="DiagonalSSM.freqz")
ax_h.set_ylim(-120, 5)
ax_h.set_xlabel("frequency (x Nyquist)")
ax_h.set_ylabel("|H| (dB)")
ax_h.set_title("frequency response")
ax_h.legend()

sel = slice(0, 400)
ax_y.plot(n[sel], x[sel], color="0.7", lw=0.8, label="input: sine + noise")
ax_y.plot(n[sel], y_scipy[sel], lw=3, alpha=0.5, label="scipy.signal.sosfilt")
ax_y.plot(n[sel], y_ssm[sel], "k--", lw=1, label="DiagonalSSM.filter")
ax_y.set_xlabel("sample")
ax_y.legend(loc="upper right", ncols=3)
for ax in (ax_h, ax_y):
    ax.grid(True, alpha=0.3)

# Run as a script, save the figure: to the path given as the first argument, or
# to the current directory. (The documentation's gallery captures it itself and
# runs the code without ``__file__``.)
if "__file__" in globals():
    fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "plot_butterworth_as_ssm.png", dpi=100)
