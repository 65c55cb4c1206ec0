"""The report shared by gpu/run.sh, gpu/sweep.py and every gpu/check_*.py.

One JSON file (``gpu_report.json``) and one Markdown file (``gpu_table.md``).
A check script is run as ``python gpu/check_X.py --json REPORT.json --table TABLE.md``
and appends to both with :func:`append` / :func:`append_table` (see gpu/README.md).
Pure Python: importable without CuPy.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback


def args(description):
    p = argparse.ArgumentParser(description=description)
    out = os.environ.get("OUT", ".")
    p.add_argument("--json", default=os.path.join(out, "gpu_report.json"))
    p.add_argument("--table", default=os.path.join(out, "gpu_table.md"))
    p.add_argument("--quick", action="store_true", help="small sizes only (smoke test)")
    p.add_argument("--dry-run", action="store_true", help="list the cases, run nothing")
    return p.parse_args()


def load(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"env": {}, "compile": [], "correctness": [], "benchmarks": [], "scripts": []}


def save(path, report):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1, default=str)
    os.replace(tmp, path)


def append(path, source, correctness=(), benchmarks=(), compile_=(), env=None):
    """Add records (dicts) from ``source`` (the script's name) to the JSON report."""
    rep = load(path)
    for key, recs in (("correctness", correctness), ("benchmarks", benchmarks),
                      ("compile", compile_)):
        for r in recs:
            r = dict(r)
            r.setdefault("source", source)
            rep.setdefault(key, []).append(r)
    if env:
        rep.setdefault("env", {}).update(env)
    rep.setdefault("scripts", []).append({"source": source,
                                          "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    save(path, rep)


def append_table(path, text):
    with open(path, "a") as f:
        f.write(text.rstrip("\n") + "\n\n")


def run_case(records, name, fn, **meta):
    """Run one check; record ok / max error / exception; never raise."""
    rec = {"case": name, **meta}
    t0 = time.perf_counter()
    try:
        res = fn()
        rec.update(res if isinstance(res, dict) else {"ok": bool(res)})
    except NotImplementedError as exc:
        rec.update(ok=None, skipped=f"NotImplementedError: {exc}")
    except Exception as exc:  # recorded, the sweep goes on
        rec.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                   trace=traceback.format_exc(limit=6))
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    records.append(rec)
    status = {True: "ok", False: "FAIL", None: "skip"}[rec.get("ok")]
    print(f"[{status}] {name} {rec.get('max_err', '')} {rec.get('error', rec.get('skipped', ''))}",
          flush=True)
    return rec
