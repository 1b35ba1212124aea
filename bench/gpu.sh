#!/usr/bin/env bash
# One call on a lent GPU machine checks and times every CUDA path (bench/gpu_check.py), issue 13's
# figures included (bench/gpu_speed.py, bench/gpu_baseline.py); about 6 minutes on an H200.
#   bash bench/gpu.sh --prepare                 # here, once: full MNIST gzipped into .gpu-data/
#   bash bench/gpu.sh                           # there: run with carry [".gpu-data"], timeout 480
#   CNNKIT_CHECK_DEVICE=cpu bash bench/gpu.sh   # here: the same path at tiny sizes (smoke test)
# Its python3 holds PyTorch with CUDA; cnnkit runs from the source tree. The registry verifies
# the .gz copies. CNNKIT_GPU_BUDGET_S (330) bounds the measuring; CNNKIT_PEAK_TFLOPS overrides
# the peak for MFU.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
    mkdir -p .gpu-data/mnist
    for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        gzip -c "${CNNKIT_DATA:-/work/shared/data}/mnist/$name" > ".gpu-data/mnist/$name.gz"
    done
    du -sh .gpu-data
    exit 0
fi
if [ "${CNNKIT_CHECK_DEVICE:-cuda}" = "cuda" ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader
fi
export PYTHONPATH=src PYTHONUNBUFFERED=1
[ -d .gpu-data/mnist ] && export CNNKIT_DATA=$PWD/.gpu-data
PYTHON=${PYTHON:-python3}
"$PYTHON" bench/gpu_check.py 2>&1 | tee "${OUT:-/tmp}/gpu_check.log"
exit "${PIPESTATUS[0]}"
