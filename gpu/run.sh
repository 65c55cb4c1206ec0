#!/usr/bin/env bash
# iirssm GPU harness: compile every CUDA module, check every public op with CuPy
# inputs against the CPU backend, benchmark, and run every gpu/check_*.py.
# Writes $OUT/gpu_report.json and $OUT/gpu_table.md (OUT defaults to ./gpu_out).
# Exit status: non-zero only when a correctness check failed (or nothing could run).
# Usage: gpu/run.sh [--quick]
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
export OUT
JSON="$OUT/gpu_report.json"
TABLE="$OUT/gpu_table.md"
rm -f "$JSON" "$TABLE"
PY="${PYTHON:-python3}"
start=$(date +%s)

# The device machines have no network: iirssm runs from this checkout (no install);
# its dependencies (CuPy, NumPy, SciPy, Numba, pandas, pytest) must already be there.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import cupy, numba, scipy, pandas, pytest, hypothesis, iirssm" \
    || { echo "missing a package (see above): carry it as a wheel"; exit 2; }
"$PY" -c "import cupy; cupy.cuda.runtime.getDeviceCount()" || { echo "no CUDA device"; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null | tee "$OUT/nvidia_smi.txt"

status=0
echo "== sweep (compile, correctness, benchmarks)"
"$PY" gpu/sweep.py --json "$JSON" --table "$TABLE" "$@" 2>&1 | tee "$OUT/sweep.log"
rc=${PIPESTATUS[0]}
[ "$rc" -ne 0 ] && status=1

for check in gpu/check_*.py; do
    [ -e "$check" ] || continue
    echo "== $check"
    "$PY" "$check" --json "$JSON" --table "$TABLE" "$@" 2>&1 | tee "$OUT/$(basename "$check" .py).log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -ne 0 ] && status=1
done

echo "== GPU tests (pytest -m gpu)"
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_cuda_gpu.py 2>&1 | tail -20 | tee "$OUT/pytest_gpu.log"
rc=${PIPESTATUS[0]}
[ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && status=1

echo "== done in $(( $(date +%s) - start )) s; status $status; report in $JSON, table in $TABLE"
cat "$TABLE" 2>/dev/null
exit $status
