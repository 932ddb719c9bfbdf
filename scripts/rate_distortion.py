"""Rate-distortion curves (PSNR vs bits per HR pixel) of four ways to store an image lossily.

    python scripts/rate_distortion.py --data_path /path/to/kodak --ckpt irn_x2_ft.ckpt \
        --crm crm_x2_q90.ckpt --out figures/rate_distortion_kodak [--qualities 10 20 ... 95]

For each image (mod-cropped to the scale; ``--crop N`` takes the central N x N first) and each
codec quality:
  jpeg          the full-size image as JPEG;
  bicubic+jpeg  MATLAB-bicubic LR (rounded) as JPEG, decoded, MATLAB-bicubic upscaled;
  irn+jpeg      the IRN LR as JPEG, decoded and upscaled by IRN (no CRM);     (needs --ckpt)
  irn+crm+jpeg  the same, restored by the CRM before the upscaling.  (--crm or an IRN-CRM --ckpt)
bpp = compressed bytes x 8 / HR pixels (headers included, as the authors count it). IRN
upscales with z ~ N(0, I) (seed ``--seed``, image i uses [seed, i, 0]). PSNR / SSIM are the
paper's (uint8, RGB and MATLAB Y, ``scale`` px cropped). Writes OUT.csv (per method and
quality: mean bpp, PSNR, SSIM over the images) and OUT.png (the curves, OpenCV drawing).
"""
import argparse
import csv
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.utils.cli import run  # noqa: E402
from src.utils.errors import IRNError  # noqa: E402

METHODS = ('jpeg', 'bicubic+jpeg', 'irn+jpeg', 'irn+crm+jpeg')
FIELDS = ['method', 'quality', 'images', 'bpp', 'psnr_rgb', 'psnr_y', 'ssim_rgb', 'ssim_y']
COLORS = {'jpeg': (40, 40, 40), 'bicubic+jpeg': (30, 30, 210), 'irn+jpeg': (20, 140, 20),
          'irn+crm+jpeg': (200, 60, 20)}


def parse_args(argv=None):
    """Command line: images, networks, codec sweep, outputs."""
    p = argparse.ArgumentParser(description='PSNR vs bpp of JPEG / bicubic / IRN / IRN+CRM')
    p.add_argument('--data_path', required=True, help='folder of HR images (e.g. Kodak)')
    p.add_argument('--ckpt', help="IRN or IRN-CRM checkpoint (ours, or the authors' IRN .pth); "
                   'without it only the jpeg and bicubic curves')
    p.add_argument('--crm', help="CRM checkpoint (ours or the authors' CRM .pth); default: the "
                   'one an IRN-CRM --ckpt holds')
    p.add_argument('--scale', type=int, default=2, choices=(2, 4, 8))
    p.add_argument('--format', default='jpeg', choices=('jpeg', 'webp'))
    p.add_argument('--qualities', type=int, nargs='+', default=[10, 20, 30, 40, 50, 60, 70, 80,
                                                                 90, 95])
    p.add_argument('--max_images', type=int, help='only the first N images')
    p.add_argument('--crop', type=int, default=0, help='central N x N crop of each image first')
    p.add_argument('--seed', type=int, default=0, help='seed of the IRN z draws')
    p.add_argument('--metric', default='psnr_rgb', choices=('psnr_rgb', 'psnr_y'),
                   help='PSNR plotted (both are in the CSV)')
    p.add_argument('--title', default='', help='a line under the figure title (e.g. the weights)')
    p.add_argument('--out', required=True, help='output path without extension (OUT.csv, OUT.png)')
    p.add_argument('--device_target', default='CPU', choices=('CPU', 'GPU', 'Ascend'))
    args = p.parse_args(argv)
    if args.crm and not args.ckpt:
        p.error('--crm needs --ckpt (the IRN it restores for)')
    if any(not 1 <= q <= 100 for q in args.qualities):
        p.error('--qualities must be in 1..100')
    return args


def central_crop(hr, size, scale):
    """The central ``size`` x ``size`` part (kept a multiple of the scale); whole image if 0."""
    if not size:
        return hr
    size -= size % scale
    h, w = hr.shape[:2]
    if size <= 0 or size > min(h, w):
        raise IRNError(f'--crop {size} does not fit an image of {h}x{w}')
    top, left = (h - size) // 2 // scale * scale, (w - size) // 2 // scale * scale
    return hr[top:top + size, left:left + size]


def _scores(out8, gt8, crop):
    from src.evaluate import _pair_metrics
    return _pair_metrics(out8, gt8, crop, 'hr')


def codec_baselines(hr, scale, fmt, quality):
    """{method: metrics} of the full-size codec and of bicubic down + codec + bicubic up."""
    from src.codecs.real import bits_per_pixel, decode, encode
    from src.data.bicubic import imresize
    from src.metrics import tensor_to_uint8
    gt8 = tensor_to_uint8(hr.transpose(2, 0, 1))
    h, w = hr.shape[:2]
    data = encode(gt8, fmt, quality)
    full = {'bpp': bits_per_pixel(len(data), h, w), **_scores(decode(data), gt8, scale)}
    lr8 = tensor_to_uint8(imresize(hr.astype(np.float64), 1.0 / scale).transpose(2, 0, 1))
    data = encode(lr8, fmt, quality)
    up = imresize(decode(data).astype(np.float64) / 255.0, float(scale))
    bic = {'bpp': bits_per_pixel(len(data), h, w),
           **_scores(tensor_to_uint8(up.transpose(2, 0, 1)), gt8, scale)}
    return {'jpeg': full, 'bicubic+jpeg': bic}


def sweep(images, qualities, scale, fmt, irn=None, crm=None, seed=0):
    """Mean metrics per (method, quality) over ``images`` (``(name, hr)`` pairs)."""
    from src.compression import compress_image, irn_lr
    from src.evaluate import sample_z
    sums = {}
    count = 0
    for index, (name, hr) in enumerate(images):
        count += 1
        lr8 = z = None
        if irn is not None:
            lr8 = irn_lr(irn, hr)
            zc = irn.channel_out - irn.channel_in
            z = sample_z((1, zc) + lr8.shape[:2], 'sample', seed, index, 0)
        for q in qualities:
            rows = codec_baselines(hr, scale, fmt, q)
            if irn is not None:
                rows['irn+jpeg'] = compress_image(irn, None, hr, fmt, q, [z], lr8=lr8)[0]
            if crm is not None:
                rows['irn+crm+jpeg'] = compress_image(irn, crm, hr, fmt, q, [z], lr8=lr8)[0]
            for method, res in rows.items():
                acc = sums.setdefault((method, q), dict.fromkeys(FIELDS[3:], 0.0))
                for key in acc:
                    acc[key] += res[key]
        print(f'{name}: {len(qualities)} qualities', flush=True)
    if not count:
        raise IRNError('no images to evaluate')
    return [{'method': m, 'quality': q, 'images': count, **{k: v / count for k, v in acc.items()}}
            for (m, q), acc in sorted(sums.items(), key=lambda kv: (METHODS.index(kv[0][0]),
                                                                     kv[0][1]))]


def write_csv(path, rows):
    """The rows as CSV (columns :data:`FIELDS`)."""
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: f'{r[k]:.6f}' if isinstance(r[k], float) else r[k]
                             for k in FIELDS})


def plot(path, rows, metric, title, subtitle='', size=(520, 760)):
    """PSNR-vs-bpp curves, one per method, drawn with OpenCV; writes ``path`` (PNG)."""
    h, w = size
    left, right, top, bottom = 70, 170, 72, 50
    img = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title, (left, 24), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, subtitle, (left, 44), font, 0.42, (80, 80, 80), 1, cv2.LINE_AA)
    xs, ys = [r['bpp'] for r in rows], [r[metric] for r in rows if np.isfinite(r[metric])]
    x0, x1 = 0.0, max(xs) * 1.05
    y0, y1 = np.floor(min(ys)) - 0.5, np.ceil(max(ys)) + 0.5

    def at(x, y):
        return (int(left + (x - x0) / (x1 - x0) * (w - left - right)),
                int(h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)))

    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    for k in range(6):
        xv, yv = x0 + k / 5 * (x1 - x0), y0 + k / 5 * (y1 - y0)
        cv2.putText(img, f'{xv:.2f}', (at(xv, y0)[0] - 14, h - bottom + 18), font, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f'{yv:.1f}', (12, at(x0, yv)[1] + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, 'bits per HR pixel', (w // 2 - 100, h - 12), font, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(img, metric.replace('_', ' ').upper() + ' (dB)', (4, top - 8), font, 0.42,
                (0, 0, 0), 1, cv2.LINE_AA)
    legend = 0
    for method in METHODS:
        pts = [at(r['bpp'], r[metric]) for r in rows if r['method'] == method]
        if not pts:
            continue
        cv2.polylines(img, [np.array(pts, np.int32)], False, COLORS[method], 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 3, COLORS[method], -1, cv2.LINE_AA)
        y = top + 20 + 22 * legend
        cv2.line(img, (w - right + 10, y - 4), (w - right + 35, y - 4), COLORS[method], 2)
        cv2.putText(img, method, (w - right + 40, y), font, 0.42, COLORS[method], 1, cv2.LINE_AA)
        legend += 1
    if not cv2.imwrite(path, img):
        raise IRNError(f'{path}: could not write the figure')


class _Images:
    def __init__(self, source, crop, scale):
        self.source, self.crop, self.scale = source, crop, scale

    def __iter__(self):
        for name, hr in self.source:
            yield name, central_crop(hr, self.crop, self.scale)


def main(argv=None):
    """Entry point: sweep, write the CSV and the figure."""
    args = parse_args(argv)
    from src.data.sources import ValidationSource
    from src.utils.device import setup_device
    source = ValidationSource(args.data_path, args.scale, args.max_images)
    irn = crm = None
    if args.ckpt:
        from src.compression import load_crm
        from src.models import load_network
        setup_device(args.device_target)
        irn = load_network(args.ckpt, args.scale)
        if hasattr(irn, 'crm'):  # an IRN-CRM checkpoint holds both
            irn, crm = irn.irn, irn.crm
        crm = load_crm(args.crm) if args.crm else crm
    rows = sweep(_Images(source, args.crop, args.scale), sorted(set(args.qualities)),
                 args.scale, args.format, irn, crm, args.seed)
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    write_csv(args.out + '.csv', rows)
    folder_name = os.path.basename(os.path.normpath(args.data_path))
    title = (f'x{args.scale}, {args.format} q {min(args.qualities)}..{max(args.qualities)}, '
             f'{rows[0]["images"]} image(s) of {folder_name}')
    plot(args.out + '.png', rows, args.metric, title, args.title)
    print(f'wrote {args.out}.csv and {args.out}.png ({len(rows)} points)')
    return 0


if __name__ == '__main__':
    run(main)
