"""The "bicubic & bicubic" baseline of the paper's tables: MATLAB-bicubic downscale, 8-bit LR,
MATLAB-bicubic upscale, then the same metrics as val.py (Y and RGB, crop = scale).

    python scripts/bicubic_baseline.py --scale 2 --data_path datasets/Set5 datasets/Set14
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.data.bicubic import imresize  # noqa: E402
from src.data.sources import ValidationSource  # noqa: E402
from src.metrics import calculate_psnr, calculate_ssim  # noqa: E402
from src.utils.cli import run  # noqa: E402


def to_uint8(img):
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def evaluate_set(path, scale):
    """Mean (psnr_y, ssim_y, psnr_rgb, ssim_rgb) of bicubic down + 8-bit + bicubic up."""
    rows = []
    source = ValidationSource(path, scale)
    for index in range(len(source)):
        _, hr = source[index]
        lr = to_uint8(imresize(hr, 1 / scale)).astype(np.float64) / 255
        sr, gt = to_uint8(imresize(lr, scale)), to_uint8(hr)
        rows.append([calculate_psnr(sr, gt, scale, True), calculate_ssim(sr, gt, scale, True),
                     calculate_psnr(sr, gt, scale), calculate_ssim(sr, gt, scale)])
    return np.mean(rows, axis=0), len(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scale', type=int, choices=(2, 3, 4, 8), required=True)
    parser.add_argument('--data_path', nargs='+', required=True)
    args = parser.parse_args()
    print('set | images | Y PSNR / SSIM | RGB PSNR / SSIM')
    for path in args.data_path:
        (py, sy, pr, sr), n = evaluate_set(path, args.scale)
        print(f'{os.path.basename(os.path.normpath(path))} x{args.scale} | {n} | '
              f'{py:.2f} / {sy:.4f} | {pr:.2f} / {sr:.4f}')
    return 0


if __name__ == '__main__':
    run(main)
