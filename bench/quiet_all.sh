#!/usr/bin/env bash
# Every CPU benchmark once, in order of importance, each with its baseline in the same session.
#
#   bash bench/quiet_all.sh --prepare    # now, on any machine: data + runs into $PREP (~1-2 min)
#   bash bench/quiet_all.sh              # on the QUIET machine: all benchmarks (~23 min expected,
#                                        #   capped: none starts after BUDGET_S=1500 s)
#   bash bench/quiet_all.sh --dry-run    # print the commands only
#   bash bench/quiet_all.sh mnist_cpu serve_load   # only these (names as in the log files)
#   .venv/bin/python bench/quiet_summary.py        # then: the Markdown goal table from the logs
#
# Each benchmark writes $LOG_DIR/<name>.log (default /tmp/bench-logs) and gets one summary line
# here (status, seconds, load average before it, its last line). Each has a time cap (timeout kills its whole process group, servers included); once
# $BUDGET_S (default 1500 s) have passed, the remaining ones are skipped, so the least important
# come last. Run from the repository root (or anywhere: it cd's there). Environment:
#   PY        python (default .venv/bin/python of this checkout, else /work/main/.venv/bin/python)
#   CNNKIT_DATA  the real data (mnist/ inside; default ../shared/data, else /work/shared/data)
#   PREP      prepared data and runs (default /tmp/bench-prep): a data folder with a symlink to
#             the real mnist/ plus fashion-mnist/ (never written into the shared data), the
#             photo folder, and two small runs for inspect_speed
#   LOG_DIR, BUDGET_S
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
REAL_DATA=${CNNKIT_DATA:-$ROOT/../shared/data}
[ -d "$REAL_DATA/mnist" ] || REAL_DATA=/work/shared/data
REAL_DATA=$(cd "$REAL_DATA" && pwd)
PREP=${PREP:-/tmp/bench-prep}
LOG_DIR=${LOG_DIR:-/tmp/bench-logs}
BUDGET_S=${BUDGET_S:-1500}
export PYTHONPATH="$ROOT/src" CNNKIT_DATA="$PREP/data" PATH="$(dirname "$PY"):$PATH"
# Benchmarks use torch's default threads (2 on the quiet machine), as BENCHMARKS.md's figures do.
unset OMP_NUM_THREADS MKL_NUM_THREADS

DRY=0 MODE=run ONLY=()
for arg in "$@"; do
    case $arg in
        --prepare) MODE=prepare ;;
        --dry-run) DRY=1 ;;
        -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
        *) ONLY+=("$arg") ;;
    esac
done

prepare() {
    mkdir -p "$PREP/data" "$PREP/runs"
    ln -sfn "$REAL_DATA/mnist" "$PREP/data/mnist"
    [ -f "$PREP/data/fashion-mnist/t10k-labels-idx1-ubyte.gz" ] ||
        "$PY" bench/get_fashion_mnist.py --out "$PREP/data/fashion-mnist" || return 1
    [ -d "$PREP/photos/test" ] || "$PY" bench/make_photo_folder.py "$PREP/photos" || return 1
    [ -f "$PREP/runs/demo/cnnkit.json" ] ||
        "$PY" -m cnnkit demo --out "$PREP/runs/demo" --epochs 1 > /dev/null || return 1
    [ -f "$PREP/runs/lenet/cnnkit.json" ] ||
        "$PY" -m cnnkit train --model lenet5 --data mnist --val test --time 20 --quiet \
            --out "$PREP/runs/lenet" > /dev/null || return 1
    echo "prepared: $PREP (data: $(ls "$PREP/data" | tr '\n' ' '); photos; runs: $(ls "$PREP/runs" | tr '\n' ' '))"
}

if [ "$MODE" = prepare ]; then
    prepare
    exit $?
fi

machine() {
    echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "host:    $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')," \
        "$(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo)"
    echo "python:  $("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "threads", torch.get_num_threads())' 2>&1)"
    echo "commit:  $(git -C "$ROOT" log -1 --format='%h %s' 2>/dev/null | cut -c1-90)"
    echo "load:    $(cut -d' ' -f1-3 /proc/loadavg)"
}

START=$(date +%s)
declare -a SUMMARY=()

selected() { [ ${#ONLY[@]} -eq 0 ] || [[ " ${ONLY[*]} " =~ " $1 " ]]; }

# bench NAME CAP_SECONDS COMMAND...: one benchmark, its log, its summary line.
bench() {
    local name=$1 cap=$2
    shift 2
    selected "$name" || return 0
    local log="$LOG_DIR/$name.log" load elapsed status rc t0
    if [ "$DRY" = 1 ]; then
        printf '%-16s cap %4ss: %s\n' "$name" "$cap" "$*"
        return
    fi
    elapsed=$(($(date +%s) - START))
    if [ "$elapsed" -ge "$BUDGET_S" ]; then
        SUMMARY+=("$(printf '%-16s SKIPPED  (budget %ss spent)' "$name" "$BUDGET_S")")
        echo "${SUMMARY[-1]}"
        return
    fi
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    {
        echo "# $name: $*"
        echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPU(s), load average $load, cap ${cap}s"
    } > "$log"
    t0=$(date +%s)
    timeout --kill-after=15 "$cap" "$@" >> "$log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status=TIMEOUT ;;
        *) status="FAIL($rc)" ;;
    esac
    echo "# exit $rc after $(($(date +%s) - t0)) s" >> "$log"
    SUMMARY+=("$(printf '%-16s %-8s %4ss  load %-14s | %s' "$name" "$status" "$(($(date +%s) - t0))" \
        "$load" "$(grep -v '^#' "$log" | grep -v '^\s*$' | tail -n1 | cut -c1-110)")")
    echo "${SUMMARY[-1]}"
}

if [ "$DRY" = 0 ]; then
    mkdir -p "$LOG_DIR"
    machine | tee "$LOG_DIR/machine.log"
    prepare > "$LOG_DIR/prepare.log" 2>&1 || {
        echo "prepare failed: see $LOG_DIR/prepare.log"
        exit 1
    }
    echo "logs:    $LOG_DIR; budget ${BUDGET_S}s"
    echo
fi

# --- The issue goals (9/10, 12, 6/12, 11, 15, 14), most important first ---------------------------
# 3 seeds to 99% + the PyTorch example's epoch (~3.5 min); the 99.5%/lenet5 runs are older figures.
bench mnist_cpu 480 "$PY" bench/mnist_cpu.py --seeds 3 --skip-long
# bare vs hand-tuned, each <= 90 s of training (~4 min)
bench photo_folder 480 "$PY" bench/photo_folder.py --data "$PREP/photos"
# the bare command's 3-minute budget (~3.5 min)
bench fashion_cpu 330 "$PY" bench/fashion_cpu.py --data-dir "$PREP/data"
# ORT vs torch eager, lenet5 + digits, start-up, install size (~1.5 min)
bench onnx_bench 300 "$PY" bench/onnx_bench.py
# cnnkit serve RUN vs serve model.onnx, concurrency 1 and 16, same client (~2 min)
bench serve_load 360 "$PY" bench/serve_load.py --onnx
# RSS, /healthz p99 under 500 held connections, statuses (~1.5 min)
bench abuse 300 "$PY" bench/abuse.py
# time to 99% with and without live snapshots, both orders (4 runs, ~2 min)
bench live_overhead 360 "$PY" bench/live_overhead.py --seeds 1 --order both
# images/s RAM vs disk, peak RSS decoding 50,000 PNGs (~3 min)
bench data_memory 420 "$PY" bench/data_memory.py
# 2 processes x 1 thread vs 1 x 2 threads on full MNIST, gloo all-reduce (another helper's file)
if [ -f bench/ddp_cpu.py ]; then
    bench ddp_cpu 360 "$PY" bench/ddp_cpu.py
elif selected ddp_cpu; then
    SUMMARY+=("$(printf '%-16s ABSENT   (bench/ddp_cpu.py not merged)' ddp_cpu)")
    echo "${SUMMARY[-1]}"
fi

# --- Older figures: do they still hold after the refactor? -----------------------------------------
bench plan_speed 120 "$PY" bench/plan_speed.py
bench data_load 120 "$PY" bench/data_load.py
bench data_batches 240 "$PY" bench/data_batches.py
bench data_folder 180 "$PY" bench/data_folder.py
bench inspect_speed 240 "$PY" bench/inspect_speed.py "$PREP/runs/demo" --report-run "$PREP/runs/lenet"
bench finetune 300 "$PY" bench/finetune.py
bench threads_busy 300 "$PY" bench/threads_busy.py

if [ "$DRY" = 0 ]; then
    echo
    echo "done in $(($(date +%s) - START)) s; load $(cut -d' ' -f1-3 /proc/loadavg); logs in $LOG_DIR"
    printf '%s\n' "${SUMMARY[@]}" > "$LOG_DIR/summary.txt"
    "$PY" bench/quiet_summary.py "$LOG_DIR" || true
fi
