#!/usr/bin/env bash
# The one prepared GPU check (issue: run the cupy path end to end once). Writes everything under $OUT.
#
#   benchmarks/gpu_check.sh --prepare   # here, with network: wheels of what the device image lacks -> .whl/
#   benchmarks/gpu_check.sh             # on the device machine (cupy): install from .whl/, run the 5 steps
#   benchmarks/gpu_check.sh --cpu       # dry run of the same logic with numpy at the tiny size (CI runs this)
#
# Device call (about 8 minutes of steps; 540 s limit):
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540), then give_back.
# Output: $OUT/gpu.md (the tables for docs/gpu.md) and one log per step.
set -uo pipefail
MODE=gpu
for arg in "$@"; do
    case "$arg" in
        --cpu) MODE=cpu ;;
        --prepare) MODE=prepare ;;
        *) echo "gpu_check.sh: unknown option $arg (use --cpu or --prepare)" >&2; exit 2 ;;
    esac
done
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2
PY="${PYTHON:-python3}"
[ -x "$PY" ] && PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute: steps run in other folders

if [ "$MODE" = prepare ]; then
    # pure-Python wheels the device image lacks (its list: cupy, numpy, scipy, h5py, pluggy, pytest, hypothesis,
    # matplotlib, tqdm, mpi4py are there), plus this project's own distributions
    rm -rf .whl && mkdir -p .whl
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 -d .whl pylops pyproximal pylops-mpi || exit 1
    "$PY" -m pip wheel -q --no-deps -w .whl . plugins/scanprobe plugins/ptychography \
        plugins/fluorescence plugins/paper plugins/tomography examples/custom_modality || exit 1
    rm -rf build plugins/*/build examples/custom_modality/build  # setuptools' leftovers (ignored, but linted)
    ls -l .whl
    exit 0
fi

OUT="${OUT:-$ROOT/out/gpu_check}"
mkdir -p "$OUT"
REPORT="$OUT/gpu.md"
export PYTHONUNBUFFERED=1
if [ "$MODE" = gpu ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing the carried wheels failed" >&2; exit 1; }
    export PYTHONPATH=/tmp/site
    BACKEND=cupy; SIZES="small medium large"; LBFGS_SIZE=large; LBFGS_ITERS=100; ITERS=30
    "$PY" -c "import cupy; cupy.zeros(1); print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceProperties(0)['name'].decode())" \
        > "$OUT/device.log" 2>&1 || { cat "$OUT/device.log"; exit 1; }
else
    BACKEND=numpy; SIZES="tiny"; LBFGS_SIZE=tiny; LBFGS_ITERS=10; ITERS=5
    echo "cpu dry run (numpy)" > "$OUT/device.log"
fi

status=0
step() {  # step NAME SECONDS command...: run with a time limit, log, and record the outcome in the report
    local name="$1" limit="$2"; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    # pytest exit 5 (nothing collected: the GPU tests skip without cupy) is expected in the CPU dry run only
    if [ $rc -ne 0 ] && ! { [ "$MODE" = cpu ] && [ $rc -eq 5 ]; }; then status=1; fi
    printf '\n## %s (exit %s, %s s of %s s)\n\n' "$name" "$rc" "$((SECONDS - t0))" "$limit" >> "$REPORT"
    grep -E '^\|' "$OUT/$name.log" >> "$REPORT"
    grep -E '^(L-BFGS|[0-9]+ (passed|failed|skipped)|=+ .*(passed|failed|skipped)|SKIPPED|FAILED)' "$OUT/$name.log" \
        >> "$REPORT"
    return 0
}

{
    echo "# GPU check ($MODE mode, $(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo '```'
    cat "$OUT/device.log"
    echo '```'
} > "$REPORT"

KIT_DIR="$(mktemp -d)"
# 0. each term and each array primitive against numpy: names the code path when a later step disagrees
step 0-localise 90 "$PY" benchmarks/gpu_localise.py --backend "$BACKEND"
# 1. the GPU tests and the conformance kit with the example terms built on the backend
step 1-tests 120 "$PY" -m pytest -q -p no:cacheprovider "$ROOT/tests/test_gpu.py" -rs
step 1-kit 120 bash -c "cd '$KIT_DIR' && '$PY' -m pytest --mmip-conformance --mmip-backend $BACKEND -q -p no:cacheprovider --rootdir '$KIT_DIR'"
# 2. the same file reconstructed with numpy and with the backend, float64 and float32
step 2-compare 120 "$PY" benchmarks/gpu_compare.py --backend "$BACKEND" --iterations "$ITERS" --out "$OUT/compare"
# 3. objective+gradient against the batched-FFT floor of the same backend, both precisions
step 3-bench-float32 150 "$PY" benchmarks/bench_gradient.py --backend "$BACKEND" --sizes $SIZES --dtype float32 --repeat 3
step 3-bench-float64 150 "$PY" benchmarks/bench_gradient.py --backend "$BACKEND" --sizes $SIZES --dtype float64 --repeat 3
# 4. 100 L-BFGS iterations at the large size, with host<->device traffic inside the loop
step 4-lbfgs 120 "$PY" benchmarks/bench_gradient.py --backend "$BACKEND" --sizes "$LBFGS_SIZE" --dtype float32 --repeat 1 --lbfgs "$LBFGS_ITERS"
# 5. two MPI ranks on the one GPU, if an MPI launcher is there
if [ "$MODE" = gpu ] && command -v mpiexec > /dev/null; then
    step 5-mpi 90 bash -c "'$PY' -m multimodal_ip.cli simulate phantom -o '$OUT/m.h5' --n 128 --probe-size 32 --step 8 --noise 0.03 && '$PY' -m multimodal_ip.cli reconstruct '$OUT/m.h5' -o '$OUT/m1.h5' --backend cupy --iterations 10 --accept-stall && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpiexec -n 2 '$PY' -m multimodal_ip.cli reconstruct '$OUT/m.h5' -o '$OUT/m2.h5' --backend cupy --iterations 10 --accept-stall && '$PY' -c \"import numpy as np; from multimodal_ip.io import load_result as L; a, b = L('$OUT/m1.h5'), L('$OUT/m2.h5'); d = max(float(np.max(np.abs(a['variables'][k] - b['variables'][k]))) for k in a['variables']); print(f'| mpi ranks 2 vs 1 | max abs difference {d:.3g} |'); assert d < 1e-8\""
else
    printf '\n## 5-mpi\n\nskipped (%s)\n' "$([ "$MODE" = gpu ] && echo 'no mpiexec on the device' || echo 'cpu dry run')" >> "$REPORT"
fi
rm -rf "$KIT_DIR"
echo "wrote $REPORT (status $status)"
cat "$REPORT"
exit $status
