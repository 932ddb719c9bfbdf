"""Time the training data source (ms per sample) on DIV2K-sized and small images.

Usage:
    python scripts/bench_data.py [--image some.png] [--scale 4] [--gt_size 144] [--n 20]

The image is resized (bicubic) to 2040x1356 (a DIV2K HR) and to 480x320 and written
as PNG files and as a BasicSR LMDB in a temporary folder; every sample decodes the
whole HR image, mod-crops it and computes the aligned LR-guide patch, as in training.
"""

import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from src.data.bicubic import imresize  # noqa: E402
from src.data.lmdb_io import create_lmdb  # noqa: E402
from src.data.pipeline import build_train_source  # noqa: E402


def _time(fn, n):
    fn(0)
    start = time.perf_counter()
    for k in range(1, n + 1):
        fn(k)
    return (time.perf_counter() - start) / n * 1000


def main(argv=None):
    """Print ms/sample for folder and LMDB sources at two image sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=os.path.join(ROOT, "tests", "data", "kodim23_crop.png"))
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--gt_size", type=int, default=144)
    parser.add_argument("--n", type=int, default=20, help="samples timed per setting")
    args = parser.parse_args(argv)
    src_img = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if src_img is None:
        print(f"error: {args.image}: not a readable image", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in ((2040, 1356), (480, 320)):
            folder = os.path.join(tmp, f"{w}x{h}")
            os.makedirs(folder)
            img = cv2.resize(src_img, (w, h), interpolation=cv2.INTER_CUBIC)
            for i in range(4):
                cv2.imwrite(os.path.join(folder, f"{i:04d}.png"), np.roll(img, 37 * i, axis=1))
            create_lmdb(folder, folder + ".lmdb", progress=False)
            for root in (folder, folder + ".lmdb"):
                opt = {"scale": args.scale, "train": {"niter": args.n + 1, "manual_seed": 0},
                       "datasets": {"train": {"dataroot_GT": root, "batch_size": 1,
                                              "GT_size": args.gt_size}}}
                source = build_train_source(opt)
                per_sample = _time(lambda k: source[k], args.n)
                decode = _time(lambda k: source.images.read_uint8(k % 4), args.n)
                print(f"{w}x{h} {'lmdb  ' if root.endswith('.lmdb') else 'folder'}: "
                      f"{per_sample:6.1f} ms/sample (of which HR decode {decode:6.1f} ms)")
            full = _time(lambda k: imresize(img, 1 / args.scale), 3)
            print(f"{w}x{h} full-image imresize x{args.scale} (not needed per sample): "
                  f"{full:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
