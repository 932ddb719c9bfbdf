#!/usr/bin/env bash
# The main job on a fresh machine: create .venv, install the pinned requirements, train IRN x2
# for a few minutes on the images committed in data/sample/, validate, draw the figures.
#   bash scripts/quickstart.sh [section.key=value ...]
# Environment: QUICK_ITERS (default 150 iterations, ~3-5 min on 2 CPU cores), DEVICE_TARGET
# (default CPU), OUTPUT_DIR (default experiments), IRN_VENV (default .venv),
# IRN_SKIP_INSTALL=1 (use the venv as it is).
# Outputs in $OUTPUT_DIR/IRN_x2_quickstart/: train.log, loss.csv, val.csv, final_G.ckpt,
# best_G.ckpt, eval/report.json (+ .csv), loss_curve.png, before_after.png.
# It is a smoke run of the whole pipeline with a small network ([2] coupling blocks, 32 px
# patches, batch 8), not a paper result. Re-running it resumes / reuses the finished run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${IRN_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV"
  python3 -m venv "$VENV"
fi
if [ "${IRN_SKIP_INSTALL:-0}" != 1 ]; then
  echo "installing requirements.txt into $VENV (mindspore is a large wheel, ~800 MB)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt
fi
PY="$VENV/bin/python"
OUT=$(realpath -m "${OUTPUT_DIR:-experiments}")
NAME=IRN_x2_quickstart
RUN="$OUT/$NAME"
echo "training x2 for ${QUICK_ITERS:-150} iterations; log file: $RUN/train.log"
"$PY" train.py --config src/options/train_IRN_x2.yml --device_target "${DEVICE_TARGET:-CPU}" \
  --data_path data/sample/train --val_path data/sample/val --output_dir "$OUT" --resume \
  name=$NAME train.memory_mode=plain network_G.block_num=[2] datasets.train.GT_size=32 datasets.train.batch_size=8 \
  datasets.train.n_workers=1 train.niter="${QUICK_ITERS:-150}" train.val_freq=50 \
  logger.print_freq=10 logger.save_checkpoint_freq=50 "$@"
echo "validating $RUN/final_G.ckpt (Y and RGB, z ~ N(0, I), 5 draws, seed 0)"
"$PY" val.py --ckpt "$RUN/final_G.ckpt" --device_target "${DEVICE_TARGET:-CPU}" \
  --data_path data/sample/val --output_dir "$RUN/eval" --report "$RUN/eval/report.json" \
  --no_progress
"$PY" scripts/plot_training.py --run "$RUN" --val_path data/sample/val
echo "done: $RUN"
