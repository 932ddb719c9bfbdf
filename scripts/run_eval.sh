#!/bin/bash
# Evaluate an IRN checkpoint with the paper's protocol (Y/RGB PSNR and SSIM, z ~ N(0, I), 5 draws).
# usage: bash scripts/run_eval.sh SCALE DATA_PATH CKPT [extra val.py flags...]
#   DATA_PATH: an image folder (Set5, ...), a DIV2K root holding DIV2K_valid_HR, or several
#              folders separated by ':' (e.g. datasets/Set5:datasets/Set14)
#   CKPT:      our .ckpt or the authors' IRN_x<SCALE>.pth
# Environment: DEVICE_TARGET (CPU|GPU|Ascend, default CPU), OUTPUT_DIR (default results/), PYTHON.
usage="usage: bash scripts/run_eval.sh SCALE DATA_PATH CKPT [val.py flags, e.g. --z_mode zero]"
if [ $# -lt 3 ]; then
    echo "$usage" >&2
    exit 2
fi
SCALE=$1
DATA=$2
CKPT=$3
shift 3
case "$SCALE" in 2|4|8) ;; *) echo "error: SCALE must be 2, 4 or 8, got '$SCALE'" >&2; echo "$usage" >&2; exit 2;; esac
IFS=':' read -r -a PATHS <<< "$DATA"
for p in "${PATHS[@]}"; do
    if [ ! -d "$p" ]; then
        echo "error: $p: data path not found (expected an image folder or a DIV2K root)" >&2
        exit 2
    fi
done
if [ ! -f "$CKPT" ]; then
    echo "error: $CKPT: checkpoint not found" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
OUT=${OUTPUT_DIR:-results/IRN_x$SCALE}
mkdir -p "$OUT"
exec "$PYTHON" "$ROOT/val.py" --config "$ROOT/src/options/test_IRN_x$SCALE.yml" \
    --device_target "${DEVICE_TARGET:-CPU}" --ckpt "$CKPT" --data_path "${PATHS[@]}" \
    --output_dir "$OUT" --report "$OUT/report.json" "$@"
