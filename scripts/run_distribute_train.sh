#!/usr/bin/env bash
# Data-parallel training of a model of the IRN family with msrun (one process per device,
# gradients averaged).
#   bash scripts/run_distribute_train.sh SCALE|CONFIG DATA_PATH [DEVICE_NUM] [DEVICE_TARGET] [section.key=value ...]
# SCALE: src/options/train_IRN_x<SCALE>.yml; CONFIG: any config of the family.
# DEVICE_TARGET: CPU|GPU|Ascend (default Ascend if npu-smi works, GPU if nvidia-smi works, else CPU).
# DEVICE_NUM: number of workers (default: the devices this host offers, counted from
# ASCEND_RT_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES or npu-smi / nvidia-smi; 2 on CPU).
# datasets.train.batch_size is the global batch, split over the workers; rank 0 alone logs and
# saves. The console shows rank 0's output (TAIL_WORKER_LOG: msrun's --tail_worker_log, -1 for
# all ranks); every rank's output is in <output>/<name>/msrun_logs/worker_<r>.log.
# SIGTERM or Ctrl-C (SIGINT) is passed on to the workers: they stop after the same step and
# save a resumable state (a second one stops them at once). msrun itself would kill them.
# Environment: VAL_PATH, OUTPUT_DIR (default <repo>/experiments), MASTER_PORT (8118),
# PYTHON (its directory is put first on PATH for msrun's workers), DRY_RUN=1 (print only).
# Re-running the same command resumes from the newest checkpoint.
# Old Ascend set-ups with a rank table file: scripts/run_distribute_train_ranktable.sh.
set -euo pipefail

USAGE="SCALE|CONFIG DATA_PATH [DEVICE_NUM] [CPU|GPU|Ascend] [section.key=value ...]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 2 ] || usage "expected at least SCALE and DATA_PATH"
resolve_config train "$1"; DATA=$2; shift 2
check_dir DATA_PATH "$DATA"
DEVICE_NUM=""; DEVICE_TARGET=${DEVICE_TARGET:-}
if [ $# -gt 0 ] && [[ "$1" != *=* ]]; then
  check_count DEVICE_NUM "$1"
  DEVICE_NUM=$1; shift
fi
if [ $# -gt 0 ] && [[ "$1" != *=* ]]; then
  DEVICE_TARGET=$1; shift
fi
check_overrides "$@"
DEVICE_TARGET=${DEVICE_TARGET:-$(detect_device)}
check_target "$DEVICE_TARGET"
if [ "$DEVICE_TARGET" != CPU ]; then
  FOUND=$(count_devices "$DEVICE_TARGET")
  if [ -z "$DEVICE_NUM" ]; then
    [ -n "$FOUND" ] && [ "$FOUND" -gt 0 ] || usage "no $DEVICE_TARGET device counted on this host; give DEVICE_NUM"
    DEVICE_NUM=$FOUND
  elif [ -n "$FOUND" ] && [ "$FOUND" -gt 0 ] && [ "$DEVICE_NUM" -gt "$FOUND" ]; then
    usage "DEVICE_NUM $DEVICE_NUM is more than the $FOUND $DEVICE_TARGET device(s) of this host"
  fi
fi
DEVICE_NUM=${DEVICE_NUM:-2}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=$(cd "$DATA" && pwd)
OUTPUT_DIR=${OUTPUT_DIR:-$ROOT/experiments}
OUTPUT_DIR=$(realpath -m "$OUTPUT_DIR")
val_args "$DATA"
NAME=$(run_name "$@")
LOG_DIR="$OUTPUT_DIR/$NAME/msrun_logs"
if [ -n "${PYTHON:-}" ]; then export PATH="$(dirname "$PYTHON"):$PATH"; fi
command -v msrun >/dev/null 2>&1 || [ "${DRY_RUN:-0}" = 1 ] || usage "msrun not found (install mindspore, or set PYTHON to the venv's python)"

CMD=(msrun --worker_num="$DEVICE_NUM" --local_worker_num="$DEVICE_NUM"
     --master_port="${MASTER_PORT:-8118}" --join=True --log_dir="$LOG_DIR"
     --tail_worker_log="${TAIL_WORKER_LOG:-0}"
     "$ROOT/train.py" --config "$CONFIG" --device_target "$DEVICE_TARGET" --data_path "$DATA"
     ${VAL_ARGS[@]+"${VAL_ARGS[@]}"} --output_dir "$OUTPUT_DIR" --resume "$@")

echo "device: $DEVICE_TARGET x $DEVICE_NUM"
echo "log file: $OUTPUT_DIR/$NAME/train.log (per-worker output: $LOG_DIR/worker_*.log)"
if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
cd "$ROOT"
# msrun in a session of its own: a terminal's Ctrl-C reaches this script only, which passes
# SIGTERM to the workers (msrun starts each in its own session; they are the children of msrun
# that lead a session, unlike its scheduler and log-tail processes).
if command -v setsid >/dev/null 2>&1; then setsid "${CMD[@]}" & else "${CMD[@]}" & fi
MSRUN_PID=$!
forward() {
  local workers
  workers=$(ps -o pid=,sid= --ppid "$MSRUN_PID" 2>/dev/null | awk '$1 == $2 {print $1}' || true)
  echo "$1: forwarding SIGTERM to $(echo $workers | wc -w) worker(s): they stop after the current step and save" >&2
  if [ -n "$workers" ]; then kill -TERM $workers 2>/dev/null || true; fi
}
trap 'forward SIGTERM' TERM
trap 'forward SIGINT' INT
while :; do
  STATUS=0; wait "$MSRUN_PID" || STATUS=$?
  if [ "$STATUS" -le 128 ] || ! kill -0 "$MSRUN_PID" 2>/dev/null; then break; fi
done  # a status > 128 with msrun alive: wait was interrupted by a signal
exit "$STATUS"
