#!/usr/bin/env bash
# Data-parallel training of a model of the IRN family with msrun (one process per device,
# gradients averaged).
#   bash scripts/run_distribute_train.sh SCALE|CONFIG DATA_PATH [DEVICE_NUM] [DEVICE_TARGET] [section.key=value ...]
# SCALE: src/options/train_IRN_x<SCALE>.yml; CONFIG: any config of the family.
# DEVICE_NUM: number of workers (default 8 on Ascend/GPU, 2 on CPU).
# DEVICE_TARGET: CPU|GPU|Ascend (default Ascend if npu-smi works, GPU if nvidia-smi works, else CPU).
# datasets.train.batch_size is the global batch, split over the workers; rank 0 alone logs and
# saves. Environment: VAL_PATH, OUTPUT_DIR (default <repo>/experiments), MASTER_PORT (8118),
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
if [ -z "$DEVICE_TARGET" ]; then
  if command -v npu-smi >/dev/null 2>&1 && npu-smi info >/dev/null 2>&1; then DEVICE_TARGET=Ascend
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then DEVICE_TARGET=GPU
  else DEVICE_TARGET=CPU; fi
fi
case "$DEVICE_TARGET" in CPU|GPU|Ascend) ;; *) usage "DEVICE_TARGET must be CPU, GPU or Ascend, got '$DEVICE_TARGET'";; esac
if [ -z "$DEVICE_NUM" ]; then
  if [ "$DEVICE_TARGET" = CPU ]; then DEVICE_NUM=2; else DEVICE_NUM=8; fi
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=$(cd "$DATA" && pwd)
OUTPUT_DIR=${OUTPUT_DIR:-$ROOT/experiments}
OUTPUT_DIR=$(realpath -m "$OUTPUT_DIR")
VAL_ARGS=()
if [ -n "${VAL_PATH:-}" ]; then
  [ -d "$VAL_PATH" ] || usage "VAL_PATH '$VAL_PATH' is not a directory"
  VAL_ARGS=(--val_path "$(cd "$VAL_PATH" && pwd)")
elif [ -d "$DATA/DIV2K_valid_HR" ] || [ -d "$DATA/DIV2K_valid_HR.lmdb" ]; then
  VAL_ARGS=(--val_path "$DATA")
fi
NAME=$(awk '/^name:/ {print $2; exit}' "$CONFIG")
for kv in "$@"; do case "$kv" in name=*) NAME=${kv#name=};; esac; done
LOG_DIR="$OUTPUT_DIR/$NAME/msrun_logs"
if [ -n "${PYTHON:-}" ]; then export PATH="$(dirname "$PYTHON"):$PATH"; fi
command -v msrun >/dev/null 2>&1 || [ "${DRY_RUN:-0}" = 1 ] || usage "msrun not found (install mindspore, or set PYTHON to the venv's python)"

CMD=(msrun --worker_num="$DEVICE_NUM" --local_worker_num="$DEVICE_NUM"
     --master_port="${MASTER_PORT:-8118}" --join=True --log_dir="$LOG_DIR"
     "$ROOT/train.py" --config "$CONFIG" --device_target "$DEVICE_TARGET" --data_path "$DATA"
     "${VAL_ARGS[@]}" --output_dir "$OUTPUT_DIR" --resume "$@")

echo "device: $DEVICE_TARGET x $DEVICE_NUM"
echo "log file: $OUTPUT_DIR/$NAME/train.log (per-worker output: $LOG_DIR/worker_*.log)"
if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
cd "$ROOT"
exec "${CMD[@]}"
