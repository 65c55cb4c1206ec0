"""
Classifying time series with a scikit-learn pipeline
====================================================

``iirssm.sklearn.FilterBankFeatures`` runs every series through a bank of
exponential and damped-resonator filters (the modes of a diagonal SSM) at
log-spaced time scales and pools each filter's output over time, as MiniRocket
pools its convolutions. A ridge classifier on those features classifies the
classic synthetic Cylinder-Bell-Funnel problem (Saito, 1994): a plateau, a rising
ramp or a falling ramp, of random onset and length, in noise. A ridge classifier
on the raw values, which cannot align events that start at different times, is the
baseline. The figure shows one series per class, the outputs of two filters of the
bank for them, and the test accuracies; it is saved as
``plot_sklearn_pipeline.png``.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import RidgeClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from iirssm.sklearn import EMASmoother, FilterBankFeatures


def cylinder_bell_funnel(n, length=128, seed=0):
    """``n`` series of each class: 0 cylinder, 1 bell, 2 funnel (Saito's definition)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    X, y = [], []
    for label in range(3):
        for _ in range(n):
            a = rng.integers(length // 8, length // 4)
            b = a + rng.integers(length // 4, 3 * length // 4)
            b = min(b, length - 1)
            inside = (t >= a) & (t <= b)
            shape = inside.astype(float)
            if label == 1:
                shape *= (t - a) / (b - a)
            elif label == 2:
                shape *= (b - t) / (b - a)
            X.append((6 + rng.standard_normal()) * shape + rng.standard_normal(length))
            y.append(label)
    return np.array(X), np.array(y)


X_train, y_train = cylinder_bell_funnel(100, seed=0)
X_test, y_test = cylinder_bell_funnel(300, seed=1)


def ridge():
    return RidgeClassifierCV(alphas=np.logspace(-3, 3, 10))


results = {}
pipelines = {
    "raw values + ridge": make_pipeline(StandardScaler(), ridge()),
    "EMA-smoothed values + ridge": make_pipeline(EMASmoother(halflife=4.0), StandardScaler(),
                                                 ridge()),
    "FilterBankFeatures + ridge": make_pipeline(FilterBankFeatures(random_state=0),
                                                StandardScaler(with_mean=False), ridge()),
}
for name, pipe in pipelines.items():
    t0 = time.perf_counter()
    pipe.fit(X_train, y_train)
    acc = pipe.score(X_test, y_test)
    results[name] = acc
    print(f"{name:30s} test accuracy {acc:.3f}  ({time.perf_counter() - t0:.2f} s)")

bank = pipelines["FilterBankFeatures + ridge"][0]
print(f"{bank.n_features_out_} features from {len(bank.outputs_)} filter outputs, e.g. "
      f"{list(bank.get_feature_names_out()[:2])}")

# One series per class and two outputs of the bank for them.
examples = [np.flatnonzero(y_test == c)[0] for c in range(3)]
Z = bank.filter_outputs(X_test[examples])
shown = ["c0_d0_ema4", "c0_d1_res6_abs"]
rows = [bank.outputs_.index(s) for s in shown]

fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
names = ["cylinder", "bell", "funnel"]
for c, i in enumerate(examples):
    axes[0, 0].plot(X_test[i] + 10 * c, lw=0.8, label=names[c])
axes[0, 0].set_title("one test series per class (offset)")
axes[0, 0].legend(loc="upper right", fontsize=8)
for ax, r, s in zip((axes[0, 1], axes[1, 0]), rows, shown):
    for c in range(3):
        ax.plot(Z[c, r], lw=1.0, label=names[c])
    ax.set_title(f"filter output {s!r}")
    ax.legend(loc="upper right", fontsize=8)
axes[1, 0].set_xlabel("time step")
ax = axes[1, 1]
ax.barh(list(results), list(results.values()), color=["0.6", "0.45", "tab:blue"])
for k, v in enumerate(results.values()):
    ax.text(v - 0.02, k, f"{v:.3f}", va="center", ha="right", color="white")
ax.set_xlim(0, 1)
ax.set_title("test accuracy (900 series)")
fig.tight_layout()
# (Saved only when run as a script: the documentation's gallery renders the figure itself
# and runs the code without ``__file__``.)
if "__file__" in globals():
    plt.savefig("plot_sklearn_pipeline.png", dpi=100)
