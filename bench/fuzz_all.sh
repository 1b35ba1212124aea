#!/usr/bin/env bash
# Issue 11's CLI fuzzing, apart from the quiet run: it counts tracebacks, not seconds, so a busy
# machine is fine. Start it in the background now:
#
#   nohup bash bench/fuzz_all.sh > /dev/null 2>&1 &      # 10 minutes (+ ~1 min set-up)
#   MINUTES=1 bash bench/fuzz_all.sh                     # a short try
#
# Writes $LOG_DIR/fuzz_cli.log (default /tmp/bench-logs; FAIL lines and stderr tails on stderr,
# the counts as one JSON line at the end, which bench/quiet_summary.py reads). Exits 1 when a case
# produced a traceback or an unexpected exit code.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
LOG_DIR=${LOG_DIR:-/tmp/bench-logs}
MINUTES=${MINUTES:-10}
SEED=${SEED:-0}
export PYTHONPATH="$ROOT/src" OMP_NUM_THREADS=1
mkdir -p "$LOG_DIR"
log="$LOG_DIR/fuzz_cli.log"
if [ ! -f bench/fuzz_cli.py ]; then
    echo "fuzz_cli ABSENT (bench/fuzz_cli.py not merged yet)" | tee "$log"
    exit 1
fi
{
    echo "# fuzz_cli: $PY bench/fuzz_cli.py --minutes $MINUTES --seed $SEED"
    echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPU(s), load average $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$log"
# The cap leaves room for the set-up (a tiny run is trained) and the last 30-second case.
cap=$(awk -v m="$MINUTES" 'BEGIN { print int(m * 60 + 180) }')
timeout --kill-after=15 "$cap" "$PY" bench/fuzz_cli.py --minutes "$MINUTES" --seed "$SEED" >> "$log" 2>&1
rc=$?
echo "# exit $rc at $(date -u '+%H:%M:%S UTC')" >> "$log"
echo "fuzz_cli exit $rc: $(grep '^{' "$log" | tail -n1)  (log: $log)"
exit $rc
