#!/bin/bash
# Export a trained model of the IRN family as inference graphs (IRN: <prefix>_down, <prefix>_up).
# SCALE is checked against the checkpoint, whose record decides the model.
# usage: bash scripts/run_export.sh SCALE CKPT [FILE_FORMAT] [FILE_NAME] [HEIGHT WIDTH]
#   FILE_FORMAT: MINDIR (default, dynamic H/W) | ONNX (needs HEIGHT WIDTH) | AIR (Ascend only,
#   deprecated by MindSpore: for Ascend deployment convert the MINDIR with MindSpore Lite's
#   converter_lite, see the README)
usage="usage: bash scripts/run_export.sh SCALE CKPT [MINDIR|ONNX|AIR] [FILE_NAME] [HEIGHT WIDTH]"
if [ $# -lt 2 ] || [ $# -gt 6 ] || [ $# -eq 5 ]; then
    echo "$usage" >&2
    exit 2
fi
SCALE=$1
CKPT=$2
FORMAT=${3:-MINDIR}
NAME=${4:-irn_x$SCALE}
[[ "$SCALE" =~ ^[1-9][0-9]*$ ]] || { echo "error: SCALE must be a positive integer, got '$SCALE'" >&2; echo "$usage" >&2; exit 2; }
case "$FORMAT" in MINDIR|ONNX|AIR) ;; *) echo "error: FILE_FORMAT must be MINDIR, ONNX or AIR, got '$FORMAT'" >&2; exit 2;; esac
if [ ! -f "$CKPT" ]; then
    echo "error: $CKPT: checkpoint not found" >&2
    exit 2
fi
if [ "$FORMAT" != MINDIR ] && [ $# -ne 6 ]; then
    echo "error: $FORMAT graphs are static: give HEIGHT WIDTH (HR size)" >&2
    echo "$usage" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
DEVICE=${DEVICE_TARGET:-CPU}
[ "$FORMAT" = AIR ] && [ -z "$DEVICE_TARGET" ] && DEVICE=Ascend
EXTRA=()
[ $# -eq 6 ] && EXTRA=(--height "$5" --width "$6")
exec "$PYTHON" "$ROOT/export.py" --device_target "$DEVICE" --scale "$SCALE" --ckpt "$CKPT" \
    --file_format "$FORMAT" --file_name "$NAME" ${EXTRA[@]+"${EXTRA[@]}"}
