"""Feature quality and speed: iirssm's feature banks against aeon's MiniRocket.

Each method turns the series into features and feeds them to the same classifier,
aeon's ``MiniRocketClassifier`` pipeline::

    make_pipeline(<transformer>, StandardScaler(with_mean=False),
                  RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))

with ``<transformer>`` one of ``aeon.transformations.collection.convolution_based.MiniRocket``,
``iirssm.sklearn.FilterBankFeatures`` and ``iirssm.sklearn.SelectiveFeatures``
(defaults, ``n_jobs=1`` for all three), on the classification data sets that ship
inside the aeon package (read from aeon's own files; nothing is downloaded).

aeon pins older NumPy/Numba than iirssm's test environment, so run it in a
separate virtual environment, with its own Numba cache (so that the other
environment's compiled kernels are not overwritten)::

    python3 -m venv ../aeon-venv
    ../aeon-venv/bin/pip install aeon -e .
    NUMBA_CACHE_DIR=../aeon-numba-cache ../aeon-venv/bin/python benchmarks/bench_features.py \\
        --write docs/performance.md

``--quick`` runs one seed on three small data sets (a smoke test).

Per data set and method, for seeds ``first-seed .. first-seed+repeats-1`` (``random_state``;
``--first-seed`` defaults to 0): test
accuracy (mean over seeds, with min and max) and the time to make the features
(``fit`` on the training set, then ``transform`` of the training and the test
set: wall-clock median with min-max, and the process's CPU time, median), plus
the classifier's fit and predict time (median). The methods run one after the
other within each seed, so background load hits all of them alike; before each
data set the script waits (``--max-wait``) until other processes use less than
``--busy`` cores (bench_ema.py's harness). Every method runs once on a small
data set first, untimed, so no Numba compilation is timed.

Data sets of unequal length (PickupGestureWiimoteZ, JapaneseVowels) are padded
with zeros at the end to the longest series of the train and test sets, the same
input for every method.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ema as H  # noqa: E402  (shared harness; also puts the checkout on sys.path)

import iirssm  # noqa: E402

START = "<!-- bench_features:start -->"
END = "<!-- bench_features:end -->"

#: (aeon loader, name in the table); all of aeon 1.6's shipped classification problems.
DATASETS = [
    ("load_arrow_head", "ArrowHead"),
    ("load_basic_motions", "BasicMotions"),
    ("load_gunpoint", "GunPoint"),
    ("load_italy_power_demand", "ItalyPowerDemand"),
    ("load_japanese_vowels", "JapaneseVowels"),
    ("load_osuleaf", "OSULeaf"),
    ("load_acsf1", "ACSF1"),
    ("load_pickup_gesture_wiimoteZ", "PickupGestureWiimoteZ"),
    ("load_unit_test", "UnitTest"),
]
QUICK = ["GunPoint", "ItalyPowerDemand", "UnitTest"]


def _pad(X, n):
    if isinstance(X, np.ndarray) and X.ndim == 3:
        return X
    out = np.zeros((len(X), X[0].shape[0], n))
    for i, x in enumerate(X):
        out[i, :, :x.shape[-1]] = x
    return out


def load(loader):
    from aeon.datasets import _single_problem_loaders as L
    f = getattr(L, loader)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # OSULeaf and ACSF1: deprecated in aeon 1.6
        Xtr, ytr = f(split="train")
        Xte, yte = f(split="test")
    lengths = [x.shape[-1] for x in list(Xtr) + list(Xte)]
    n = max(lengths)
    return (_pad(Xtr, n), np.asarray(ytr), _pad(Xte, n), np.asarray(yte),
            min(lengths) != n)


def methods():
    from aeon.transformations.collection.convolution_based import MiniRocket

    from iirssm.sklearn import FilterBankFeatures, SelectiveFeatures
    return {
        "MiniRocket (aeon)": lambda s: MiniRocket(random_state=s, n_jobs=1),
        "FilterBankFeatures": lambda s: FilterBankFeatures(random_state=s, n_jobs=1),
        "SelectiveFeatures": lambda s: SelectiveFeatures(random_state=s, n_jobs=1),
    }


def classifier():
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(with_mean=False),
                         RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))


def run_one(make, seed, Xtr, ytr, Xte, yte):
    c0, w0 = time.process_time(), time.perf_counter()
    tr = make(seed)
    tr.fit(Xtr)
    Ftr = tr.transform(Xtr)
    Fte = tr.transform(Xte)
    w1, c1 = time.perf_counter(), time.process_time()
    clf = classifier().fit(Ftr, ytr)
    acc = float(clf.score(Fte, yte))
    w2 = time.perf_counter()
    return {"acc": acc, "wall": w1 - w0, "cpu": c1 - c0, "clf": w2 - w1,
            "n_features": int(Ftr.shape[1])}


def warm_up(ms):
    X = np.random.default_rng(0).standard_normal((6, 2, 40))
    y = np.arange(6) % 2
    for make in ms.values():
        for x in (X, X[:, :1]):
            run_one(make, 0, x, y, x, y)


def summarize(runs):
    a = np.array([r["acc"] for r in runs])
    w = np.array([r["wall"] for r in runs])
    return {"acc": float(a.mean()), "acc_min": float(a.min()), "acc_max": float(a.max()),
            "wall": float(np.median(w)), "wall_min": float(w.min()), "wall_max": float(w.max()),
            "cpu": float(np.median([r["cpu"] for r in runs])),
            "clf": float(np.median([r["clf"] for r in runs])),
            "n_features": runs[0]["n_features"], "n": len(runs)}


def section(results, info, args, shapes, started, elapsed, loads):
    ms = list(next(iter(results.values())).keys())
    base = ms[0]
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python benchmarks/bench_features.py " + " ".join(sys.argv[1:])
    import aeon
    import sklearn
    L = [START, "", f"## `bench_features.py`: feature banks against MiniRocket (written {now})", ""]
    L.append(f"- Command, from the repository root in a virtual environment with aeon: `{cmd}` "
             f"— started {started}, {elapsed / 60:.1f} min; package sources sha256 "
             f"`{info['source']}`")
    L.append(f"- Machine: {info['cpu']}{' (AVX-512)' if info['avx512'] else ''}, "
             f"{info['cores']} cores ({info['affinity']} usable), {info['mem_gib']:.0f} GiB. "
             "Shared with other jobs: the load of other processes while each data set ran "
             "is in the last table; the CPU-time column is less sensitive to it than the "
             "wall-clock one.")
    L.append(f"- Versions: Python {info['python']}, NumPy {info['numpy']}, Numba {info['numba']}, "
             f"scikit-learn {sklearn.__version__}, aeon {aeon.__version__}, "
             f"iirssm {iirssm.__version__}")
    L.append(f"- Method: each transformer with its defaults and `n_jobs=1`, then "
             "`StandardScaler(with_mean=False)` and `RidgeClassifierCV(alphas=np.logspace(-3, 3, "
             f"10))` (aeon's MiniRocketClassifier pipeline); seeds {args.first_seed}.."
             f"{args.first_seed + args.repeats - 1} "
             "(`random_state`). *accuracy*: test accuracy, mean over seeds (min–max). "
             "*features s*: `fit(X_train)`, `transform(X_train)`, `transform(X_test)`, "
             "wall-clock median (min–max) over seeds; *CPU s*: the same, process CPU time, "
             "median; *ridge s*: classifier fit + score, median. Numba compilation is "
             "excluded (one untimed run first).")
    L.append("- Data: every classification problem shipped inside aeon "
             f"{aeon.__version__} (`aeon.datasets.load_*`, no download); series of unequal "
             "length are zero-padded at the end to the longest.")
    L += ["", "### Per data set", ""]
    L.append("| data set | train × channels × length (test) | method | accuracy | "
             "features s | CPU s | ridge s | features |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|")
    for name, res in results.items():
        shp = shapes[name]
        for m in ms:
            r = res[m]
            acc = f"{r['acc']:.4f}" + (f" ({r['acc_min']:.3f}–{r['acc_max']:.3f})"
                                        if r["n"] > 1 else "")
            L.append(f"| {name} | {shp} | {m} | {acc} | {r['wall']:.3f} "
                     f"({r['wall_min']:.3f}–{r['wall_max']:.3f}) | {r['cpu']:.3f} | "
                     f"{r['clf']:.3f} | {r['n_features']} |")
    L += ["", "### Summary", ""]
    L.append("| method | mean accuracy | Δ vs MiniRocket (pp) | data sets better / equal / "
             "worse | total features s | total CPU s | CPU time vs MiniRocket |")
    L.append("|---|---:|---:|---|---:|---:|---:|")
    base_acc = np.mean([res[base]["acc"] for res in results.values()])
    base_cpu = sum(res[base]["cpu"] for res in results.values())
    for m in ms:
        acc = np.mean([res[m]["acc"] for res in results.values()])
        wall = sum(res[m]["wall"] for res in results.values())
        cpu = sum(res[m]["cpu"] for res in results.values())
        d = [res[m]["acc"] - res[base]["acc"] for res in results.values()]
        bwe = f"{sum(x > 1e-9 for x in d)} / {sum(abs(x) <= 1e-9 for x in d)} / " \
              f"{sum(x < -1e-9 for x in d)}"
        L.append(f"| {m} | {acc:.4f} | {100 * (acc - base_acc):+.2f} | "
                 f"{bwe if m != base else '—'} | {wall:.2f} | {cpu:.2f} | "
                 f"{cpu / base_cpu:.2f}x |")
    L += ["", "### Load", "",
          "| data set | other processes' load while timing (cores) |", "|---|---:|"]
    for name, ld in loads.items():
        L.append(f"| {name} | {ld:.2f} |")
    L += ["", "Target (issue 6): mean accuracy within 1 percentage point of MiniRocket or "
          "better, at no more than MiniRocket's time. Small test sets make single data sets "
          "noisy (one UnitTest case is 4.5 pp, one PickupGestureWiimoteZ case 2 pp).", "", END]
    return "\n".join(L) + "\n"


def write_section(path, text):
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    i, j = doc.find(START), doc.find(END)
    if i >= 0 and j > i:
        doc = doc[:i] + text.rstrip("\n") + doc[j + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one seed, three small data sets")
    p.add_argument("--repeats", type=int, default=None, help="seeds per data set (default 5)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="first seed (default 0): seeds first-seed .. first-seed+repeats-1")
    p.add_argument("--only", default=None, help="comma-separated data set names")
    p.add_argument("--write", default=None, help="replace this file's bench_features section")
    p.add_argument("--busy", type=float, default=0.5, help="other processes' cores to wait for")
    p.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for quiet")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 5)
    names = args.only.split(",") if args.only else (QUICK if args.quick else None)
    datasets = [d for d in DATASETS if names is None or d[1] in names]
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t_start = time.perf_counter()
    info = H.machine_info()
    ms = methods()
    warm_up(ms)
    results, shapes, loads = {}, {}, {}
    for loader, name in datasets:
        Xtr, ytr, Xte, yte, padded = load(loader)
        shapes[name] = (f"{Xtr.shape[0]} × {Xtr.shape[1]} × {Xtr.shape[2]}"
                        f"{' (padded)' if padded else ''} ({Xte.shape[0]})")
        H.wait_quiet(args, name)
        s0 = H._cpu_snapshot()
        runs = {m: [] for m in ms}
        for seed in range(args.first_seed, args.first_seed + args.repeats):
            for m, make in ms.items():
                runs[m].append(run_one(make, seed, Xtr, ytr, Xte, yte))
        loads[name] = H._other_load(s0, H._cpu_snapshot())
        results[name] = {m: summarize(r) for m, r in runs.items()}
        line = "  ".join(f"{m.split()[0]} {results[name][m]['acc']:.4f} "
                         f"{results[name][m]['wall']:.3f}s" for m in ms)
        print(f"{name:24s} {line}  (load {loads[name]:.2f})", flush=True)
    text = section(results, info, args, shapes, started, time.perf_counter() - t_start, loads)
    print(text)
    if args.write:
        write_section(args.write, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
