#!/usr/bin/env bash
# Data-parallel IRN training on Ascend with a rank table file (older set-ups without msrun).
#   bash scripts/run_distribute_train_ranktable.sh RANK_TABLE_FILE SCALE|CONFIG DATA_PATH [DEVICE_NUM] [section.key=value ...]
# Starts DEVICE_NUM (default 8) processes in the background, device i = rank i, each in
# OUTPUT_DIR/<name>/device<i>/ with its own output file; rank 0 writes train.log and checkpoints.
# Environment: VAL_PATH, OUTPUT_DIR (default <repo>/experiments), PYTHON, DRY_RUN=1.
set -euo pipefail

USAGE="RANK_TABLE_FILE SCALE|CONFIG DATA_PATH [DEVICE_NUM] [section.key=value ...]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 3 ] || usage "expected RANK_TABLE_FILE, SCALE and DATA_PATH"
TABLE=$1; resolve_config train "$2"; DATA=$3; shift 3
[ -f "$TABLE" ] || usage "RANK_TABLE_FILE '$TABLE' is not a file"
check_dir DATA_PATH "$DATA"
DEVICE_NUM=8
if [ $# -gt 0 ] && [[ "$1" != *=* ]]; then
  check_count DEVICE_NUM "$1"
  DEVICE_NUM=$1; shift
fi
check_overrides "$@"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TABLE=$(cd "$(dirname "$TABLE")" && pwd)/$(basename "$TABLE")
DATA=$(cd "$DATA" && pwd)
OUTPUT_DIR=${OUTPUT_DIR:-$ROOT/experiments}
OUTPUT_DIR=$(realpath -m "$OUTPUT_DIR")
VAL_ARGS=()
if [ -n "${VAL_PATH:-}" ]; then
  VAL_ARGS=(--val_path "$(cd "$VAL_PATH" && pwd)")
elif [ -d "$DATA/DIV2K_valid_HR" ]; then
  VAL_ARGS=(--val_path "$DATA")
fi
NAME=$(awk '/^name:/ {print $2; exit}' "$CONFIG")
for kv in "$@"; do case "$kv" in name=*) NAME=${kv#name=};; esac; done

export RANK_TABLE_FILE="$TABLE" RANK_SIZE="$DEVICE_NUM"
echo "device: Ascend x $DEVICE_NUM (rank table $TABLE)"
echo "log file: $OUTPUT_DIR/$NAME/train.log"
for ((i = 0; i < DEVICE_NUM; i++)); do
  WORK="$OUTPUT_DIR/$NAME/device$i"
  CMD=("${PYTHON:-python}" "$ROOT/train.py" --distribute --config "$CONFIG" --device_target Ascend
       --data_path "$DATA" "${VAL_ARGS[@]}" --output_dir "$OUTPUT_DIR" --resume "$@")
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "DEVICE_ID=$i RANK_ID=$i $(printf '%q ' "${CMD[@]}")"
    continue
  fi
  mkdir -p "$WORK"
  (cd "$ROOT" && DEVICE_ID=$i RANK_ID=$i nohup "${CMD[@]}" > "$WORK/output.log" 2>&1 &)
  echo "rank $i started, output: $WORK/output.log"
done
