"""Figures of a training run, drawn with OpenCV (no matplotlib needed).

    python scripts/plot_training.py --run experiments/IRN_x2_quickstart --val_path data/sample/val

Writes into the run folder:
  loss_curve.png    the three losses and the total (log scale) from loss.csv, and the
                    validation Y PSNR from val.csv when there is one;
  before_after.png  for the first validation images: HR, bicubic down+up, the IRN LR, the IRN
                    reconstruction with the initial weights (before, z = 0) and with
                    final_G.ckpt (after) with z = 0 and with z ~ N(0, I) (seed 0), Y PSNR in
                    each label; the title gives the iterations trained and the paper's.
It prints one line saying what the numbers mean.
"""
import argparse
import math
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from src.data.io import write_png  # noqa: E402
from src.train_log import read_csv  # noqa: E402
from src.utils.cli import run  # noqa: E402

COLORS = {'loss': (0, 0, 0), 'l_rec': (200, 60, 20), 'l_fit': (20, 140, 20), 'l_ce': (30, 30, 210),
          'psnr_y': (160, 40, 160)}


def _panel(rows, keys, title, log_scale, size=(460, 640)):
    """One line chart of ``keys`` over ``iter``; returns a BGR image."""
    h, w = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 40, 40
    cv2.putText(img, title, (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    series = {k: [(r['iter'], r[k]) for r in rows if k in r and r[k] > (0 if log_scale else -1e30)
                  and math.isfinite(r[k])] for k in keys}
    points = [p for s in series.values() for p in s]
    if not points:
        cv2.putText(img, 'no data', (w // 2 - 40, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0))
        return img
    tf = (lambda v: math.log10(v)) if log_scale else (lambda v: v)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(tf(p[1]) for p in points), max(tf(p[1]) for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def xy(p):
        return (int(left + (p[0] - x0) / (x1 - x0) * (w - left - right)),
                int(h - bottom - (tf(p[1]) - y0) / (y1 - y0) * (h - top - bottom)))

    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    for frac in (0.0, 0.5, 1.0):
        yv = y0 + frac * (y1 - y0)
        label = f'{10 ** yv:.3g}' if log_scale else f'{yv:.2f}'
        y = int(h - bottom - frac * (h - top - bottom))
        cv2.putText(img, label, (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        xv = x0 + frac * (x1 - x0)
        x = int(left + frac * (w - left - right))
        cv2.putText(img, f'{xv:.0f}', (x - 10, h - bottom + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, 'iteration', (w // 2 - 30, h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    for i, (key, pts) in enumerate(series.items()):
        if pts:
            cv2.polylines(img, [np.array([xy(p) for p in pts], np.int32)], False, COLORS[key], 2,
                          cv2.LINE_AA)
        cv2.putText(img, key, (w - right - 60 * (len(series) - i), 25), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, COLORS[key], 1, cv2.LINE_AA)
    return img


def loss_curve(run_dir):
    """Write ``loss_curve.png`` from loss.csv (and val.csv); returns its path."""
    loss_csv = os.path.join(run_dir, 'loss.csv')
    if not os.path.isfile(loss_csv):
        from src.utils.errors import IRNError
        raise IRNError(f'{loss_csv}: not found (is --run a training output folder?)')
    panels = [_panel(read_csv(loss_csv), ['loss', 'l_rec', 'l_fit', 'l_ce'],
                     'training losses (log scale)', True)]
    val_csv = os.path.join(run_dir, 'val.csv')
    if os.path.isfile(val_csv) and read_csv(val_csv):
        panels.append(_panel(read_csv(val_csv), ['psnr_y'], 'validation PSNR Y (dB)', False))
    path = os.path.join(run_dir, 'loss_curve.png')
    write_png(path, np.concatenate(panels, axis=1)[..., ::-1])
    return path


def _label(img, text):
    """``img`` under its label (lines separated by newlines, two at most)."""
    out = np.full((img.shape[0] + 36, img.shape[1], 3), 255, np.uint8)
    out[36:] = img
    for i, line in enumerate(text.split('\n')):
        cv2.putText(out, line, (3, 14 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def _title(lines, width):
    """A white band with one line of text per entry (the figure's title)."""
    band = np.full((8 + 20 * len(lines), width, 3), 255, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text, (6, 20 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.47, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return band


def paper_iterations(scale):
    """train.niter of the paper's config for ``scale`` (src/options/train_IRN_x<scale>.yml)."""
    from src.config import read_yaml
    return int(read_yaml(os.path.join(ROOT, 'src', 'options', f'train_IRN_x{scale}.yml'))
               ['train']['niter'])


def before_after(run_dir, val_path, count=2, seed=0):
    """Write ``before_after.png`` (see the module docstring); returns (path, one-line summary)."""
    import mindspore as ms
    from src.data.bicubic import imresize
    from src.data.sources import ValidationSource
    from src.evaluate import Downscaler, Upscaler, sample_z
    from src.metrics import calculate_psnr, tensor_to_uint8
    from src.network import build_from_arch
    from src.utils.checkpoint import load_weights, peek_arch
    from src.config import load_config

    final = os.path.join(run_dir, 'final_G.ckpt')
    arch = peek_arch(final)  # IRN, IRN_LD or IRN_E
    opt = load_config(os.path.join(run_dir, 'config.yml'))
    scale = arch['scale']
    before = build_from_arch(arch, seed=opt['train']['manual_seed'])  # the run's initial weights
    after = build_from_arch(arch)
    load_weights(after, final)
    rows, psnr = [], {'bicubic': [], 'zero': [], 'sample': []}
    for index, (name, hr) in enumerate(ValidationSource(val_path, scale, max_images=count)):
        gt = tensor_to_uint8(hr.transpose(2, 0, 1))
        hr_t = ms.Tensor(hr.transpose(2, 0, 1)[None].copy())
        bic = tensor_to_uint8(imresize(imresize(hr.astype(np.float64), 1 / scale), scale)
                              .transpose(2, 0, 1))
        psnr['bicubic'].append(calculate_psnr(bic, gt, scale, True))
        cells = [_label(gt[..., ::-1], f'HR\n{name}'),
                 _label(bic[..., ::-1], f"bicubic\n{psnr['bicubic'][-1]:.2f} dB")]
        down = {tag: Downscaler(net)(hr_t) for tag, net in (('before', before), ('after', after))}
        for tag, net, z_mode in (('before', before, 'zero'), ('after', after, 'zero'),
                                 ('after', after, 'sample')):
            lr, z = down[tag]
            sr = tensor_to_uint8(Upscaler(net)(lr, ms.Tensor(sample_z(z.shape, z_mode, seed, index,
                                                                      0))).asnumpy()[0])
            value = calculate_psnr(sr, gt, scale, True)
            if tag == 'after':
                psnr[z_mode].append(value)
            if tag == 'after' and z_mode == 'zero':
                lr_img = tensor_to_uint8(lr.asnumpy()[0])
                lr_big = cv2.resize(lr_img, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_NEAREST)
                cells.insert(2, _label(lr_big[..., ::-1], f'IRN LR (after)\nshown x{scale}'))
            zt = 'z=0' if z_mode == 'zero' else 'z~N(0,I)'
            cells.append(_label(sr[..., ::-1], f'IRN {tag}, {zt}\n{value:.2f} dB'))
        rows.append(np.concatenate(cells, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    loss_csv = os.path.join(run_dir, 'loss.csv')
    iters = int(read_csv(loss_csv)[-1]['iter']) if os.path.isfile(loss_csv) else opt['train']['niter']
    paper = paper_iterations(scale)
    mean = {k: float(np.mean(v)) for k, v in psnr.items()}
    title = _title([f'IRN x{scale} after {iters:,} training iterations; the paper trains '
                    f'{paper:,} ({100 * iters / paper:.2g}% of that). Y PSNR under each image.',
                    'z=0: the upscale the network is sure of (no sampled detail).',
                    "z~N(0,I): a sampled z (the paper's protocol), noisy until training makes "
                    'z ~ N(0, I).'], width)
    path = os.path.join(run_dir, 'before_after.png')
    write_png(path, np.concatenate([title] + rows, axis=0)[..., ::-1])
    summary = (f'after {iters:,} of the paper\'s {paper:,} iterations, IRN x{scale} upscales at '
               f"{mean['zero']:.2f} dB with z = 0 and {mean['sample']:.2f} dB with a sampled z "
               f"(bicubic {mean['bicubic']:.2f} dB, Y PSNR, {len(rows)} images): the sampled z "
               f'stays noisy until training makes z ~ N(0, I), which takes far longer than a '
               f'quick start')
    return path, summary


def main(argv=None):
    """Draw the figures of one training run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--run', required=True, help='training output folder (<output_dir>/<name>)')
    parser.add_argument('--val_path', help='images for before_after.png (skipped if not given)')
    parser.add_argument('--images', type=int, default=2, help='validation images in the figure')
    args = parser.parse_args(argv)
    print(f'loss curve: {loss_curve(args.run)}')
    if args.val_path:
        import mindspore as ms
        ms.set_device('CPU')
        ms.set_context(mode=ms.PYNATIVE_MODE)
        path, summary = before_after(args.run, args.val_path, args.images)
        print(f'before/after: {path}')
        print(summary)
    return 0


if __name__ == '__main__':
    run(main)
