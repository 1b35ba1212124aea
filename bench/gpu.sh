#!/usr/bin/env bash
# One call on a lent GPU machine: check and time every CUDA path (see bench/gpu_check.py).
# Its python3 holds PyTorch with CUDA; cnnkit runs from the source tree. Full MNIST travels
# gzipped in .gpu-data/ (ignored by git) when present: the registry verifies .gz copies.
set -uo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export PYTHONPATH=src PYTHONUNBUFFERED=1
[ -d .gpu-data/mnist ] && export CNNKIT_DATA=$PWD/.gpu-data
python3 bench/gpu_check.py 2>&1 | tee "${OUT:-/tmp}/gpu_check.log"
