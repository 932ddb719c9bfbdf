#!/usr/bin/env bash
# Train a model of the IRN family on one device.
#   bash scripts/run_standalone_train.sh SCALE|CONFIG DATA_PATH [section.key=value ...]
# SCALE: uses src/options/train_IRN_x<SCALE>.yml; CONFIG: any config, e.g.
# src/options/train_IRN_color.yml (the model is its `model:`). DATA_PATH: a DIV2K root (holding
# DIV2K_train_HR, and DIV2K_valid_HR for validation), a folder of images, or an LMDB.
# Environment: DEVICE_TARGET (CPU|GPU|Ascend; default Ascend if npu-smi works, GPU if
# nvidia-smi works, else CPU), DEVICE_ID (GPU/Ascend, default 0), VAL_PATH (validation images),
# OUTPUT_DIR (default <repo>/experiments), PYTHON (default python), DRY_RUN=1 (print the command
# only). Re-running the same command resumes from the newest checkpoint in the output directory.
set -euo pipefail

USAGE="SCALE|CONFIG DATA_PATH [section.key=value ...]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 2 ] || usage "expected at least SCALE and DATA_PATH"
resolve_config train "$1"; DATA=$2; shift 2
check_dir DATA_PATH "$DATA"
check_overrides "$@"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=$(cd "$DATA" && pwd)
OUTPUT_DIR=${OUTPUT_DIR:-$ROOT/experiments}
OUTPUT_DIR=$(realpath -m "$OUTPUT_DIR")
DEVICE_TARGET=${DEVICE_TARGET:-$(detect_device)}
check_target "$DEVICE_TARGET"
val_args "$DATA"
NAME=$(run_name "$@")
CMD=("${PYTHON:-python}" "$ROOT/train.py" --config "$CONFIG" --device_target "$DEVICE_TARGET"
     --data_path "$DATA" ${VAL_ARGS[@]+"${VAL_ARGS[@]}"} --output_dir "$OUTPUT_DIR" --resume "$@")

echo "device: $DEVICE_TARGET"
echo "log file: $OUTPUT_DIR/$NAME/train.log"
if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
cd "$ROOT"
exec "${CMD[@]}"
