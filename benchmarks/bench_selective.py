"""Benchmark ``selective_scan`` / ``selective_scan_grad`` against their peers.

Run from the repository root::

    python benchmarks/bench_selective.py                    # full size (a minute or two)
    python benchmarks/bench_selective.py --quick            # small sizes, smoke test
    python benchmarks/bench_selective.py --write docs/performance.md

The case is Mamba-1's: batch 1, dim 1536, L 2048, N 16, float32, shared B/C
``(batch, N, L)``, ``A = -(1..N)``, ``delta_softplus`` with a ``delta_bias`` that
puts Δ in [1e-3, 0.1], ``D`` and the SiLU gate ``z``. Peers, all float32:

* a vectorised NumPy implementation (channels in chunks of 256; it materialises
  ``(chunk, N, L)`` arrays) of the forward pass and of the backward pass;
* a PyTorch CPU implementation written like mamba-ssm's ``selective_scan_ref``
  (materialises ``(batch, dim, L, N)``), and its autograd backward: only if
  ``torch`` can be imported;
* the floor: ``np.exp`` over ``dim·L·N`` float32 values, from memory into a
  reused buffer, on one thread (every selective scan evaluates that many exps).

Every implementation is checked against iirssm before timing (forward and all
gradients; rtol 2e-3 with ``atol = 2e-3 · max|ref|``); a mismatch is reported as
WRONG and the script exits with status 1. Timings are medians of repeated calls,
round-robin over the implementations of a case, with min-max and interquartile
range. Before timing, the script waits (``--max-wait`` seconds) until no other
``bench`` process runs; while a case runs, the CPU time used by other processes is
read from ``/proc/stat`` and a case run while others used more than ``--busy``
cores is repeated (``--retries``). Peak memory is the peak RSS (``VmHWM``, reset
just before the call) during one call in a fresh process minus its RSS just
before the call (inputs allocated and the kernels loaded first); it includes the
outputs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, REPO)

from iirssm._selective import (selective_scan, selective_scan_grad,  # noqa: E402
                               selective_scan_vjp)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ema import _cpu_snapshot, _other_load  # noqa: E402  (shared harness)

START = "<!-- bench_selective:start -->"
END = "<!-- bench_selective:end -->"
FULL = dict(batch=1, dim=1536, L=2048, N=16, min_reps=5, max_reps=15, budget=3.0)
QUICK = dict(batch=1, dim=128, L=256, N=16, min_reps=3, max_reps=5, budget=0.3)
CHUNK = 256
RTOL = 2e-3


# ============================================================================ inputs

def make_inputs(batch, dim, L, N, seed=0):
    rng = np.random.default_rng(seed)
    f = np.float32
    dt = np.exp(rng.uniform(np.log(1e-3), np.log(0.1), dim))
    return dict(
        u=rng.standard_normal((batch, dim, L)).astype(f),
        delta=(0.5 * rng.standard_normal((batch, dim, L))).astype(f),
        A=-np.tile(np.arange(1, N + 1, dtype=f), (dim, 1)),
        B=rng.standard_normal((batch, N, L)).astype(f),
        C=rng.standard_normal((batch, N, L)).astype(f),
        D=np.ones(dim, f),
        z=rng.standard_normal((batch, dim, L)).astype(f),
        delta_bias=(dt + np.log(-np.expm1(-dt))).astype(f),        # softplus^-1(dt)
        dout=rng.standard_normal((batch, dim, L)).astype(f),
    )


def iirssm_forward(p):
    return selective_scan(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], p["z"],
                          p["delta_bias"], True)


def iirssm_backward(p):
    g = selective_scan_grad(p["dout"], p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"],
                            p["z"], p["delta_bias"], True)
    return _grads(g)


def _grads(g):
    return dict(du=g.du, ddelta=g.ddelta, dA=g.dA, dB=g.dB, dC=g.dC, dD=g.dD, dz=g.dz,
                ddelta_bias=g.ddelta_bias)


def iirssm_vjp_forward(p):
    """The forward that keeps the backward's checkpoints; returns (out, pullback)."""
    return selective_scan_vjp(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], p["z"],
                              p["delta_bias"], True)


def iirssm_pullback(p, pullback=None):
    """The backward from the checkpoints a ``selective_scan_vjp`` call kept."""
    if pullback is None:
        pullback = iirssm_vjp_forward(p)[1]
    return _grads(pullback(p["dout"]))


# ===================================================================== NumPy peer

def _softplus(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _numpy_chunk_forward(p, b, lo, hi):
    """States and intermediates of channels lo:hi of batch entry b (materialised)."""
    u = p["u"][b, lo:hi]
    v = p["delta"][b, lo:hi] + p["delta_bias"][lo:hi, None]
    dt = _softplus(v)
    A = p["A"][lo:hi]
    dA = np.exp(dt[:, None, :] * A[:, :, None])                       # (c, N, L)
    dBu = (dt * u)[:, None, :] * p["B"][b][None]                       # (c, N, L)
    xs = np.empty_like(dA)
    x = np.zeros(dA.shape[:2], dtype=dA.dtype)
    for t in range(dA.shape[2]):
        x = dA[:, :, t] * x + dBu[:, :, t]
        xs[:, :, t] = x
    y = np.einsum("cnl,nl->cl", xs, p["C"][b])
    o = y + p["D"][lo:hi, None] * u
    return u, v, dt, dA, xs, o


def numpy_forward(p):
    batch, dim, _ = p["u"].shape
    out = np.empty_like(p["u"])
    for b in range(batch):
        for lo in range(0, dim, CHUNK):
            hi = min(dim, lo + CHUNK)
            _, _, _, _, _, o = _numpy_chunk_forward(p, b, lo, hi)
            z = p["z"][b, lo:hi]
            out[b, lo:hi] = o * (z * _sigmoid(z))
    return out


def numpy_backward(p):
    batch, dim, L = p["u"].shape
    g = {k: np.zeros_like(p[src]) for k, src in (
        ("du", "u"), ("ddelta", "delta"), ("dA", "A"), ("dB", "B"), ("dC", "C"), ("dD", "D"),
        ("dz", "z"), ("ddelta_bias", "delta_bias"))}
    for b in range(batch):
        Bb, Cb = p["B"][b], p["C"][b]
        for lo in range(0, dim, CHUNK):
            hi = min(dim, lo + CHUNK)
            u, v, dt, dA, xs, o = _numpy_chunk_forward(p, b, lo, hi)
            z, dout = p["z"][b, lo:hi], p["dout"][b, lo:hi]
            sz = _sigmoid(z)
            g["dz"][b, lo:hi] = dout * o * (sz * (1 + z * (1 - sz)))
            do = dout * (z * sz)
            g["dD"][lo:hi] += np.sum(do * u, axis=-1)
            g["dC"][b] += np.einsum("cnl,cl->nl", xs, do)
            lams = np.empty_like(xs)
            carry = np.zeros(xs.shape[:2], dtype=xs.dtype)
            for t in range(L - 1, -1, -1):
                lam = carry + Cb[None, :, t] * do[:, None, t]
                lams[:, :, t] = lam
                carry = dA[:, :, t] * lam
            xprev = np.concatenate([np.zeros_like(xs[:, :, :1]), xs[:, :, :-1]], axis=2)
            Gz = lams * xprev * dA                                     # dL/d(dt·A)
            A = p["A"][lo:hi]
            lb = lams * Bb[None]                                       # λ·B
            ddt = np.einsum("cnl,cn->cl", Gz, A) + np.sum(lb, axis=1) * u
            g["dA"][lo:hi] += np.einsum("cnl,cl->cn", Gz, dt)
            g["dB"][b] += np.einsum("cnl,cl->nl", lams, dt * u)
            g["du"][b, lo:hi] = np.sum(lb, axis=1) * dt + p["D"][lo:hi, None] * do
            dd = ddt * np.where(v > 20, 1, _sigmoid(v))
            g["ddelta"][b, lo:hi] = dd
            g["ddelta_bias"][lo:hi] += np.sum(dd, axis=-1)
    return g


# ===================================================================== torch peer

def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_selective_scan_ref(u, delta, A, B, C, D, z, delta_bias):
    """Written like mamba-ssm's ``selective_scan_ref`` (real A, shared B/C, softplus)."""
    import torch
    import torch.nn.functional as F
    delta = F.softplus(delta + delta_bias[..., None])
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    x = A.new_zeros((batch, dim, dstate))
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    ys = []
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i]))
    y = torch.stack(ys, dim=2)
    out = y + u * D[:, None]
    return out * F.silu(z)


def _torch_inputs(p, grad):
    import torch
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    return {k: torch.from_numpy(p[k].copy()).requires_grad_(grad) for k in names}


def torch_forward(p):
    import torch
    with torch.no_grad():
        return torch_selective_scan_ref(**_torch_inputs(p, False)).numpy()


def torch_backward(p):
    import torch
    t = _torch_inputs(p, True)
    out = torch_selective_scan_ref(**t)
    out.backward(torch.from_numpy(p["dout"]))
    return {"d" + k: t[k].grad.numpy() for k in t}


# ========================================================================== floor

def make_exp_floor(p):
    n = p["u"].size * p["A"].shape[1]
    x = np.random.default_rng(1).uniform(-5, 0, n).astype(np.float32)
    buf = np.empty_like(x)

    def floor():
        return np.exp(x, out=buf)
    return floor


# ======================================================================== timing

def other_bench_processes():
    """PIDs of other running processes whose command line mentions ``bench``."""
    me = os.getpid()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in (me, os.getppid()):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "bench" in cmd and "bench_selective" not in cmd:
            found.append((int(pid), cmd[:80]))
    return found


def wait_quiet(max_wait):
    t0 = time.time()
    while True:
        others = other_bench_processes()
        if not others:
            return True
        if time.time() - t0 > max_wait:
            print(f"  other benchmark processes still running after {max_wait}s: {others}")
            return False
        time.sleep(5)


def time_round_robin(impls, cfg):
    times = {k: [] for k in impls}
    for k, fn in impls.items():
        t0 = time.perf_counter()
        fn()
        times[k].append(time.perf_counter() - t0)
    want = {k: int(min(cfg["max_reps"], max(cfg["min_reps"], cfg["budget"] / max(v[0], 1e-6))))
            for k, v in times.items()}
    while any(len(times[k]) < want[k] for k in impls):
        for k, fn in impls.items():
            if len(times[k]) < want[k]:
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return times


def stats(ts):
    a = np.asarray(ts)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return dict(median=float(med), min=float(a.min()), max=float(a.max()), q1=float(q1),
                q3=float(q3), n=int(a.size))


def timed_case(impls, cfg, busy, retries):
    best = None
    for _ in range(retries + 1):
        s0 = _cpu_snapshot()
        times = time_round_robin(impls, cfg)
        load = _other_load(s0, _cpu_snapshot())
        if best is None or load < best[1]:
            best = (times, load)
        if load <= busy:
            break
    return {k: stats(v) for k, v in best[0].items()}, best[1]


# ======================================================================== checks

def check(name, got, want):
    """None, or a description of the first mismatch."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"{name}: shape {got.shape} != {want.shape}"
    scale = float(np.max(np.abs(want))) or 1.0
    err = np.abs(got - want) - RTOL * np.abs(want) - RTOL * scale
    if np.any(err > 0) or not np.isfinite(got).all():
        i = np.unravel_index(np.nanargmax(err), err.shape)
        return f"{name}: {got[i]!r} vs {want[i]!r} at {i} (max|ref| {scale:.3g})"
    return None


# ======================================================================== memory

_MEM_CHILD = r"""
import json, sys
sys.path.insert(0, {repo!r})
sys.path.insert(0, {bench!r})
import numpy as np
import bench_selective as bs
cfg = json.loads(sys.argv[1]); which = sys.argv[2]
small = bs.make_inputs(1, 32, 64, cfg["N"])
p = bs.make_inputs(cfg["batch"], cfg["dim"], cfg["L"], cfg["N"])
pb = None
if which == "iirssm_pullback":
    bs.iirssm_pullback(small)
    pb = bs.iirssm_vjp_forward(p)[1]     # its checkpoints are live data, like the inputs
fn = dict(iirssm_fwd=bs.iirssm_forward, iirssm_bwd=bs.iirssm_backward,
          iirssm_vjp=lambda p: bs.iirssm_vjp_forward(p)[0],
          iirssm_pullback=lambda p: bs.iirssm_pullback(p, pb),
          numpy_fwd=bs.numpy_forward, numpy_bwd=bs.numpy_backward,
          torch_fwd=bs.torch_forward, torch_bwd=bs.torch_backward)[which]
if pb is None:
    fn(small)                              # load/compile kernels, import torch
def status_kb(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key + ":"))
# The peak is VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec, so
# a child of a large parent would report the parent's size. Writing 5 to clear_refs
# resets VmHWM to the current RSS, so earlier peaks (inputs made in float64) do not count.
# Hand the heap's free memory back first: glibc keeps large freed blocks (the float64
# temporaries of make_inputs) resident, and an output allocated into them would not
# raise the RSS at all.
try:
    import ctypes
    ctypes.CDLL("libc.so.6").malloc_trim(0)
except (OSError, AttributeError):
    pass
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status_kb("VmRSS")                # live data now (inputs), not an earlier peak
r = fn(p)
after = status_kb("VmHWM")
outs = sum(v.nbytes for v in (r.values() if isinstance(r, dict) else [r]))
print(json.dumps(dict(extra=(after - before) * 1024, outputs=outs)))
"""


def peak_memory(cfg, which):
    code = _MEM_CHILD.format(repo=REPO, bench=os.path.dirname(os.path.abspath(__file__)))
    try:
        r = subprocess.run([sys.executable, "-c", code, json.dumps(cfg), which],
                           capture_output=True, text=True, timeout=900, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        print(f"  memory {which}: failed ({exc})")
        return None


# ========================================================================== main

def fmt_ms(s):
    return f"{s['median'] * 1e3:.1f} ms"


def spread(s):
    return (f"{s['min'] * 1e3:.1f}–{s['max'] * 1e3:.1f} (IQR {s['q1'] * 1e3:.1f}–"
            f"{s['q3'] * 1e3:.1f}), n={s['n']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", metavar="PATH", help="update the table in this markdown file")
    ap.add_argument("--json", metavar="PATH", help="also write the raw results here")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-torch-backward", action="store_true",
                    help="time PyTorch's forward only (its autograd backward took 415 s "
                         "per call on the 2-core AVX2 VM, and it runs five times)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--max-wait", type=float, default=600.0)
    ap.add_argument("--busy", type=float, default=0.3)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--reuse-timings", metavar="JSON",
                    help="take the timings from a --json file of an earlier run; only "
                         "measure memory and render")
    args = ap.parse_args(argv)
    if args.reuse_timings:
        with open(args.reuse_timings) as f:
            res = json.load(f)
        if not args.no_memory:          # (with --no-memory: keep the file's figures)
            res["memory"] = {w: peak_memory(res["shape"], w) for w in res["memory"]}
        table = render(res)
        print(table)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        if args.write:
            write_section(args.write, table)
        return 1 if res["wrong"] else 0
    cfg = QUICK if args.quick else FULL
    shape = dict(batch=cfg["batch"], dim=cfg["dim"], L=cfg["L"], N=cfg["N"])
    updates = cfg["batch"] * cfg["dim"] * cfg["L"] * cfg["N"]
    use_torch = torch_available() and not args.no_torch
    torch_bwd = use_torch and not args.no_torch_backward
    p = make_inputs(**shape)
    print(f"selective scan, float32, {shape}, torch: {use_torch}")

    # correctness first (also loads the kernels)
    ref_f = iirssm_forward(p)
    ref_g = iirssm_backward(p)
    wrong = []
    peers_f = {"numpy": numpy_forward}
    peers_b = {"numpy": numpy_backward}
    if use_torch:
        peers_f["torch"] = torch_forward
    if torch_bwd:
        peers_b["torch"] = torch_backward
    for name, fn in peers_f.items():
        e = check(f"{name} forward", fn(p), ref_f)
        if e:
            wrong.append(e)
    for name, fn in peers_b.items():
        got = fn(p)
        for k, v in ref_g.items():
            e = check(f"{name} backward {k}", got[k], v)
            if e:
                wrong.append(e)
    out_v, pullback = iirssm_vjp_forward(p)
    if not np.array_equal(out_v, ref_f):
        wrong.append("selective_scan_vjp forward differs from selective_scan")
    for k, v in iirssm_pullback(p, pullback).items():
        if not np.array_equal(v, ref_g[k]):
            wrong.append(f"pullback {k} differs from selective_scan_grad")
    for w in wrong:
        print("  WRONG:", w)

    if not wait_quiet(args.max_wait):
        print("  timing anyway (results flagged as taken on a busy machine)")
    floor = make_exp_floor(p)
    fwd_impls = {"iirssm": lambda: iirssm_forward(p), "np.exp floor": floor,
                 "numpy": lambda: numpy_forward(p), "iirssm vjp": lambda: iirssm_vjp_forward(p)}
    bwd_impls = {"iirssm": lambda: iirssm_backward(p), "numpy": lambda: numpy_backward(p),
                 "iirssm pullback": lambda: iirssm_pullback(p, pullback)}
    fwd, load_f = timed_case(fwd_impls, cfg, args.busy, args.retries)
    bwd, load_b = timed_case(bwd_impls, cfg, args.busy, args.retries)
    # the backward-to-forward target compares iirssm with itself: time the passes
    # round-robin among themselves too, without the NumPy peers (whose calls take
    # seconds and allocate hundreds of MB between two iirssm calls of a case)
    ratio, _ = timed_case({"forward": lambda: iirssm_forward(p),
                           "grad": lambda: iirssm_backward(p),
                           "pullback": lambda: iirssm_pullback(p, pullback)},
                          cfg, args.busy, args.retries)
    if use_torch:
        # PyTorch is slow (forward 1.2 s; its autograd backward ~20 s on one VM,
        # 415 s on the 2-core AVX2 one): three calls each, timed on their own
        # after the main cases
        slow = dict(cfg, min_reps=3, max_reps=3)
        tf, _ = timed_case({"torch": lambda: torch_forward(p)}, slow, args.busy, 0)
        fwd.update(tf)
    if torch_bwd:
        tb, _ = timed_case({"torch": lambda: torch_backward(p)}, slow, args.busy, 0)
        bwd.update(tb)

    mem = {}
    if not args.no_memory:
        for which in ["iirssm_fwd", "iirssm_bwd", "iirssm_vjp", "iirssm_pullback",
                      "numpy_fwd", "numpy_bwd"] + (
                ["torch_fwd"] if use_torch else []) + (["torch_bwd"] if torch_bwd else []):
            mem[which] = peak_memory(shape, which)

    res = dict(shape=shape, updates=updates, forward=fwd, backward=bwd, ratio=ratio,
               other_load=dict(
        forward=load_f, backward=load_b), memory=mem, wrong=wrong, torch=use_torch)
    table = render(res)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.write:
        write_section(args.write, table)
    return 1 if wrong else 0


def _mem(res, key):
    m = res["memory"].get(key)
    if not m:
        return "–"
    mb = m["extra"] / 2**20
    return f"+{mb:.0f} MB" if mb >= 1 else "+<1 MB"


def _med(st):
    return f"{st['median'] * 1e3:.1f} ms ({st['min'] * 1e3:.1f}–{st['max'] * 1e3:.1f})"


def _rel(d, k):
    return f"{d[k]['median'] / d['forward']['median']:.2f}"


def render(res):
    s = res["shape"]
    fwd, bwd = res["forward"], res["backward"]
    upd = res["updates"]
    lines = [
        f"Selective scan (Mamba-1 layer), float32, batch {s['batch']}, dim {s['dim']}, "
        f"L {s['L']}, N {s['N']}: shared B/C, softplus Δ with bias, D, SiLU gate. "
        f"{upd / 1e6:.1f} M state updates per call. Median of repeated calls (spread: "
        f"min–max, interquartile range), round-robin within a case; memory is the growth "
        f"of the RSS during one call in a fresh process (outputs included).",
        "",
        "| pass | implementation | time | updates/s | vs iirssm | peak memory | spread (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for pas, d, suffix in (("forward", fwd, "fwd"), ("backward", bwd, "bwd")):
        base = d["iirssm"]["median"]
        order = ["iirssm"] + [k for k in d if k != "iirssm"]
        for k in order:
            st = d[k]
            ratio = st["median"] / base
            memkey = {"iirssm": "iirssm_" + suffix, "numpy": "numpy_" + suffix,
                      "torch": "torch_" + suffix, "iirssm vjp": "iirssm_vjp",
                      "iirssm pullback": "iirssm_pullback"}.get(k)
            mem = _mem(res, memkey) if memkey else "–"
            rate = f"{upd / st['median'] / 1e9:.2f} G" if k != "np.exp floor" else (
                f"{upd / st['median'] / 1e9:.2f} G exps")
            label = {"numpy": "NumPy, vectorised (chunks of 256 channels)",
                     "torch": "PyTorch CPU, like mamba's selective_scan_ref",
                     "np.exp floor": "np.exp over dim·L·N values (1 thread)",
                     "iirssm": "iirssm" + (" `selective_scan`" if pas == "forward" else
                                           " `selective_scan_grad`"),
                     "iirssm vjp": "iirssm `selective_scan_vjp` (keeps checkpoints)",
                     "iirssm pullback": "iirssm pullback of `selective_scan_vjp`"}.get(k, k)
            lines.append(f"| {pas} | {label} | {fmt_ms(st)} | {rate} | {ratio:.2f}x | "
                         f"{mem} | {spread(st)} |")
    f, b = fwd["iirssm"]["median"], bwd["iirssm"]["median"]
    lines += [
        "",
        f"Ratios: forward {fwd['numpy']['median'] / f:.1f}x faster than NumPy, "
        f"{f / fwd['np.exp floor']['median']:.2f}x np.exp's time; "
        f"backward {bwd['numpy']['median'] / b:.1f}x faster than NumPy, "
        f"{b / f:.2f}x the forward."
        + (f" PyTorch's forward takes {fwd['torch']['median'] / f:.1f}x iirssm's time."
           if "torch" in fwd else "")
        + (f" From the checkpoints `selective_scan_vjp` keeps (its forward "
           f"{fwd['iirssm vjp']['median'] / f:.2f}x the plain forward's time), the backward "
           f"is {bwd['iirssm pullback']['median'] / f:.2f}x the forward."
           if "iirssm pullback" in bwd else "")
        + ("" if res["torch"] else " No PyTorch rows (PyTorch not installed, or `--no-torch`).")
        + (" PyTorch's backward was not timed (`--no-torch-backward`)."
           if res["torch"] and "torch" not in bwd else ""),
        *([f"Timed round-robin among themselves only (no peers; spreads in ms): forward "
           f"{_med(res['ratio']['forward'])}, `selective_scan_grad` "
           f"{_med(res['ratio']['grad'])} ({_rel(res['ratio'], 'grad')}x the forward), "
           f"pullback {_med(res['ratio']['pullback'])} ({_rel(res['ratio'], 'pullback')}x)."]
          if res.get("ratio") else []),
        f"Other processes used {res['other_load']['forward']:.2f} / "
        f"{res['other_load']['backward']:.2f} cores on average during the forward / "
        f"backward cases.",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Numba threads {_threads()}, Python {platform.python_version()}, "
        f"NumPy {np.__version__}; {_dt.date.today().isoformat()}.",
    ]
    if res.get("note"):
        lines.append(res["note"])
    if res["wrong"]:
        lines.append("**WRONG results:** " + "; ".join(res["wrong"]))
    return "\n".join(lines)


def _threads():
    import numba
    return numba.get_num_threads()


def write_section(path, table):
    text = "# Performance\n"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    block = f"{START}\n{table}\n{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda m: block, text,
                      flags=re.DOTALL)
    else:
        text = text.rstrip("\n") + "\n\n## Selective scan\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
