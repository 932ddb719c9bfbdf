"""Fractional-scale quality: an integer-scale IRN wrapped in MATLAB bicubic (what
``infer.py down/up --scale R`` does) against bicubic & bicubic at the same R.

    python scripts/fractional_quality.py --ckpt irn_x3.ckpt --ratios 2.5 3.5 \\
        --data_path /work/shared/data/val/Set5 [--z_mode zero] [--max_images N]

Both paths keep an 8-bit LR of ceil(H/R) x ceil(W/R) (MATLAB ``imresize(img, 1/R)``'s size) and
return to the original H x W (no mod-crop). IRN: bicubic to the network's grid, IRN down,
quantise, IRN up (z ~ N(0, I) seeded per image, or 0), bicubic back. Bicubic: imresize by 1/R,
round to 8 bits, imresize back to H x W. Metrics as val.py (PSNR / SSIM on Y, and PSNR on RGB),
with a border of ceil(R) px cropped. The numbers describe the weights given (printed first).
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.data.bicubic import imresize, imresize_to  # noqa: E402
from src.data.sources import ValidationSource  # noqa: E402
from src.fractional import fractional_meta, from_grid, to_grid  # noqa: E402
from src.lrfile import as_uint8  # noqa: E402
from src.metrics import calculate_psnr, calculate_ssim  # noqa: E402
from src.utils.cli import run  # noqa: E402
from src.utils.errors import IRNError  # noqa: E402


def scores(sr8, gt8, crop):
    """(PSNR Y, SSIM Y, PSNR RGB) with ``crop`` border pixels removed."""
    return (calculate_psnr(sr8, gt8, crop, True), calculate_ssim(sr8, gt8, crop, True),
            calculate_psnr(sr8, gt8, crop))


def evaluate_set(rescaler, path, ratio, z_mode, max_images=None):
    """Mean scores of the IRN path and of bicubic & bicubic over the images of ``path``."""
    from src.inference import make_z
    source = ValidationSource(path, 1)  # the original sizes: fractional needs no mod-crop
    crop = math.ceil(ratio)
    irn, bic = [], []
    for index in range(min(len(source), max_images or len(source))):
        _, hr = source[index]
        h, w = hr.shape[:2]
        gt8 = as_uint8(hr)
        meta = fractional_meta(h, w, ratio, rescaler.scale)
        lr = rescaler.down(to_grid(hr, meta))  # quantised: values k/255
        z = make_z(rescaler.z_shape(*lr.shape[:2]), z_mode, index)
        irn.append(scores(as_uint8(from_grid(rescaler.up(lr, z), meta)), gt8, crop))
        lr_bic = as_uint8(imresize(hr, 1.0 / ratio)).astype(np.float64) / 255
        assert lr_bic.shape[:2] == lr.shape[:2]  # the same LR budget for both
        bic.append(scores(as_uint8(imresize_to(lr_bic, h, w)), gt8, crop))
    return np.mean(irn, axis=0), np.mean(bic, axis=0), len(irn)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ckpt', required=True, help='an IRN-family checkpoint (any integer scale)')
    parser.add_argument('--ratios', type=float, nargs='+', required=True, help='e.g. 2.5 3.5')
    parser.add_argument('--data_path', nargs='+', required=True)
    parser.add_argument('--z_mode', choices=('sample', 'zero'), default='sample')
    parser.add_argument('--max_images', type=int)
    args = parser.parse_args()
    if any(not 1 < r <= 16 for r in args.ratios):
        raise IRNError(f'--ratios must lie in (1, 16], got {args.ratios}')
    from src.inference import Rescaler
    from src.models import load_network
    from src.utils.checkpoint import describe_arch
    net = load_network(args.ckpt)
    rescaler = Rescaler(net)
    print(f'weights: {args.ckpt} ({describe_arch(net.arch())}); z {args.z_mode}')
    print('set | ratio | images | IRN Y PSNR / SSIM, RGB PSNR | bicubic Y PSNR / SSIM, RGB PSNR')
    for path in args.data_path:
        for ratio in args.ratios:
            (a, b, c), (d, e, f), n = evaluate_set(rescaler, path, ratio, args.z_mode,
                                                   args.max_images)
            print(f'{os.path.basename(os.path.normpath(path))} | x{ratio:g} (x{net.scale} IRN) | '
                  f'{n} | {a:.2f} / {b:.4f}, {c:.2f} | {d:.2f} / {e:.4f}, {f:.2f}', flush=True)
    return 0


if __name__ == '__main__':
    run(main)
