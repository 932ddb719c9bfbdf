#!/usr/bin/env bash
# Data-parallel training on Ascend with a rank table file (older set-ups without msrun).
#   bash scripts/run_distribute_train_ranktable.sh RANK_TABLE_FILE SCALE|CONFIG DATA_PATH [DEVICE_NUM] [section.key=value ...]
# Starts DEVICE_NUM processes on this server, local device i = rank RANK_START + i, each running
# in its own folder OUTPUT_DIR/<name>/device<i>/ (its output in output.log there); rank 0 writes
# train.log and the checkpoints. The script waits for them: when one fails the others are
# stopped, and SIGTERM / Ctrl-C is passed on (they stop after the same step and save).
# DEVICE_NUM: default the devices of this host (ASCEND_RT_VISIBLE_DEVICES or npu-smi), else 8.
# Several servers: run it on each with RANK_START = the first rank id of that server in the
# table (0, 8, 16, ...); RANK_SIZE (default: the number of rank_id entries in the table).
# Environment: VAL_PATH, OUTPUT_DIR (default <repo>/experiments), PYTHON, DRY_RUN=1.
set -euo pipefail

USAGE="RANK_TABLE_FILE SCALE|CONFIG DATA_PATH [DEVICE_NUM] [section.key=value ...]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 3 ] || usage "expected RANK_TABLE_FILE, SCALE and DATA_PATH"
TABLE=$1; resolve_config train "$2"; DATA=$3; shift 3
[ -f "$TABLE" ] || usage "RANK_TABLE_FILE '$TABLE' is not a file"
check_dir DATA_PATH "$DATA"
DEVICE_NUM=""
if [ $# -gt 0 ] && [[ "$1" != *=* ]]; then
  check_count DEVICE_NUM "$1"
  DEVICE_NUM=$1; shift
fi
check_overrides "$@"
if [ -z "$DEVICE_NUM" ]; then
  DEVICE_NUM=$(count_devices Ascend)
  [ -n "$DEVICE_NUM" ] && [ "$DEVICE_NUM" -gt 0 ] || DEVICE_NUM=8
fi
RANK_SIZE=${RANK_SIZE:-$(grep -o '"rank_id"' "$TABLE" | wc -l | tr -d ' ')}
RANK_START=${RANK_START:-0}
[ "$RANK_SIZE" -gt 0 ] 2>/dev/null || usage "RANK_SIZE '$RANK_SIZE': the table lists no rank_id (set RANK_SIZE)"
[[ "$RANK_START" =~ ^[0-9]+$ ]] || usage "RANK_START must be a non-negative integer, got '$RANK_START'"
[ $((RANK_START + DEVICE_NUM)) -le "$RANK_SIZE" ] || usage "ranks $RANK_START..$((RANK_START + DEVICE_NUM - 1)) exceed RANK_SIZE $RANK_SIZE"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TABLE=$(cd "$(dirname "$TABLE")" && pwd)/$(basename "$TABLE")
DATA=$(cd "$DATA" && pwd)
OUTPUT_DIR=${OUTPUT_DIR:-$ROOT/experiments}
OUTPUT_DIR=$(realpath -m "$OUTPUT_DIR")
val_args "$DATA"
NAME=$(run_name "$@")

export RANK_TABLE_FILE="$TABLE" RANK_SIZE
echo "device: Ascend x $DEVICE_NUM, ranks $RANK_START..$((RANK_START + DEVICE_NUM - 1)) of $RANK_SIZE (rank table $TABLE)"
echo "log file: $OUTPUT_DIR/$NAME/train.log"
CMD=("${PYTHON:-python}" "$ROOT/train.py" --distribute --config "$CONFIG" --device_target Ascend
     --data_path "$DATA" ${VAL_ARGS[@]+"${VAL_ARGS[@]}"} --output_dir "$OUTPUT_DIR" --resume "$@")
PIDS=()
for ((i = 0; i < DEVICE_NUM; i++)); do
  RANK=$((RANK_START + i))
  WORK="$OUTPUT_DIR/$NAME/device$i"
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "cd $WORK && DEVICE_ID=$i RANK_ID=$RANK $(printf '%q ' "${CMD[@]}")"
    continue
  fi
  mkdir -p "$WORK"
  (cd "$WORK" && DEVICE_ID=$i RANK_ID=$RANK exec "${CMD[@]}" > "$WORK/output.log" 2>&1) &
  PIDS+=($!)
  echo "rank $RANK (device $i) started in $WORK, output: $WORK/output.log"
done
[ "${DRY_RUN:-0}" = 1 ] && exit 0
wait_all ${PIDS[@]+"${PIDS[@]}"}
