#!/usr/bin/env bash
# Every GPU fact in one call (H100/H200, at most 8 minutes): the CUDA tests (compile, bf16, fused Adam, NaN
# handling), speed.py --device cuda at 256 px (baseline beside the fast path at batch 1 and at the larger
# batches, images/s, MFU, peak memory; inference throughput), and a torchrun data-parallel smoke run (nproc 1,
# nccl). It rewrites the GPU's section of docs/benchmarks.md and leaves logs in OUTDIR.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]          # on the GPU machine, from anywhere in the repo
#   GPU_CHECK_CPU=1 bash benchmarks/gpu_check.sh   # every step on the CPU at toy sizes (tests/test_gpu_check.py)
#
# The GPU machine has torch but not albumentations (and its needs). Fetch their wheels here first, into .whl/
# (git-ignored), and carry .whl: `bash benchmarks/gpu_check.sh --fetch-wheels` (needs PyPI); the check installs
# them into /tmp/site when albumentations is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS="albumentations==2.0.8 albucore==0.0.24 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0
typing-inspection==0.4.5 simsimd==6.5.16 stringzilla==5.3.2"

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
    # shellcheck disable=SC2086
    $PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl $WHEELS
    exit 0
fi

OUT=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 \
    GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 TQDM_DISABLE=1
if ! $PY -c "import albumentations" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "gpu_check: albumentations is missing and .whl/ holds no wheels: run with --fetch-wheels first" >&2
        exit 2
    fi
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

step() {  # step NAME COMMAND...: run it, log it; a failure prints the log's tail and returns 1
    local name=$1; shift
    echo "== $name: $*"
    local start=$SECONDS
    if "$@" > "$OUT/$name.log" 2>&1; then
        echo "   $name ok ($((SECONDS - start)) s)"
    else
        echo "   $name FAILED ($((SECONDS - start)) s), last lines of $OUT/$name.log:"
        tail -n 15 "$OUT/$name.log"
        return 1
    fi
}

if [[ -n "${GPU_CHECK_CPU:-}" ]]; then  # the same steps at toy sizes on the CPU
    DEVICE=cpu; SPEED=(--sizes 32 --batch 2 --inference-sizes 32 --repeats 1 --no-data --tiny)
    DOCS="$OUT/benchmarks.md"; DP=(--ngf 8 --ndf 8 --n-blocks 1 --load-size 32 --crop-size 32)
else
    $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.__version__, \
torch.cuda.get_device_name())"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    DEVICE=cuda; SPEED=(--sizes 256 --batch 32 --inference-sizes 256 --repeats 20 --no-data)
    DOCS=${GPU_CHECK_DOCS:-docs/benchmarks.md}; DP=(--load-size 286 --crop-size 256)
fi

# Timings first, alone on the device; then the two correctness checks side by side (each compiles on the CPU).
status=0
step speed timeout 300 $PY benchmarks/speed.py --device "$DEVICE" "${SPEED[@]}" --docs "$DOCS" || status=1
step cuda-tests timeout 200 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py & tests=$!
step torchrun timeout 150 $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m translate train \
    --data datasets/emoji-style --device "$DEVICE" --max-steps 6 --log-every 2 --sample-every 1000 \
    --save-every 6 --batch-size 2 --workers 0 --runs-dir "$OUT/runs" --name dp-smoke "${DP[@]}" & dp=$!
wait $tests || status=1
wait $dp || status=1
cp "$DOCS" "$OUT/benchmarks.md" 2>/dev/null || true
echo "gpu_check: $([[ $status == 0 ]] && echo all steps passed || echo some steps FAILED); logs in $OUT"
exit $status
