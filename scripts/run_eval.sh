#!/usr/bin/env bash
# Evaluate a checkpoint of the IRN family with its model's protocol (IRN: Y/RGB PSNR and SSIM,
# z ~ N(0, I), 5 draws).
#   bash scripts/run_eval.sh SCALE|CONFIG DATA_PATH CKPT [val.py flags...]
# SCALE: uses src/options/test_IRN_x<SCALE>.yml; CONFIG: any test config, e.g.
#   src/options/test_IRN_color.yml.
# DATA_PATH: an image folder (Set5, ...), a DIV2K root holding DIV2K_valid_HR, or several
#   folders separated by ':' (e.g. datasets/Set5:datasets/Set14).
# CKPT: our .ckpt or the authors' .pth.
# Environment: DEVICE_TARGET (CPU|GPU|Ascend, default CPU), OUTPUT_DIR (default
# results/<config name>), PYTHON.
set -euo pipefail

USAGE="SCALE|CONFIG DATA_PATH CKPT [val.py flags, e.g. --z_mode zero]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 3 ] || usage "expected SCALE (or CONFIG), DATA_PATH and CKPT"
resolve_config test "$1"; DATA=$2; CKPT=$3; shift 3
IFS=':' read -r -a PATHS <<< "$DATA"
for p in "${PATHS[@]}"; do
  [ -d "$p" ] || usage "$p: data path not found (expected an image folder or a DIV2K root)"
done
[ -f "$CKPT" ] || usage "$CKPT: checkpoint not found"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=$(awk '/^name:/ {print $2; exit}' "$CONFIG")
OUT=${OUTPUT_DIR:-results/$NAME}
mkdir -p "$OUT"
exec "${PYTHON:-python}" "$ROOT/val.py" --config "$CONFIG" --device_target "${DEVICE_TARGET:-CPU}" \
    --ckpt "$CKPT" --data_path "${PATHS[@]}" --output_dir "$OUT" --report "$OUT/report.json" "$@"
