"""Figures of a training run, drawn with matplotlib (Agg backend, no display).

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

import numpy as np
from matplotlib.ticker import MaxNLocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from src.train_log import read_csv  # noqa: E402
from src.utils.cli import run  # noqa: E402
from src.utils.figures import new_figure, save_png  # noqa: E402

COLORS = {'loss': 'black', 'l_rec': '#143cc8', 'l_fit': '#148c14', 'l_ce': '#d21e1e',
          'psnr_y': '#a028a0'}


def _panel(ax, rows, keys, title, log_scale):
    """Draw the line chart of ``keys`` over ``iter`` on ``ax`` (log scale: positive values only)."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel('iteration')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    drawn = False
    for key in keys:
        pts = [(r['iter'], r[key]) for r in rows if key in r and math.isfinite(r[key])
               and (r[key] > 0 or not log_scale)]
        if pts:  # markers while there are few points (a single one is no line)
            ax.plot(*zip(*pts), color=COLORS[key], linewidth=1.5, label=key,
                    marker='o' if len(pts) <= 50 else None, markersize=3)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, 'no data', ha='center', va='center', transform=ax.transAxes)
        return
    if log_scale:
        ax.set_yscale('log')
    ax.grid(True, which='major', alpha=0.3)
    ax.legend(fontsize=8)


def loss_curve(run_dir):
    """Write ``loss_curve.png`` from loss.csv (and val.csv); returns its path."""
    loss_csv = os.path.join(run_dir, 'loss.csv')
    if not os.path.isfile(loss_csv):
        from src.utils.errors import IRNError
        raise IRNError(f'{loss_csv}: not found (is --run a training output folder?)')
    val_csv = os.path.join(run_dir, 'val.csv')
    val_rows = read_csv(val_csv) if os.path.isfile(val_csv) else []
    fig = new_figure(640 * (2 if val_rows else 1), 460)
    axes = fig.subplots(1, 2 if val_rows else 1, squeeze=False)[0]
    _panel(axes[0], read_csv(loss_csv), ['loss', 'l_rec', 'l_fit', 'l_ce'],
           'training losses (log scale)', True)
    if val_rows:
        _panel(axes[1], val_rows, ['psnr_y'], 'validation PSNR Y (dB)', False)
    path = os.path.join(run_dir, 'loss_curve.png')
    save_png(fig, path)
    return path


def _image_grid(rows, title):
    """A figure of images (``rows`` of ``(rgb uint8, label)`` cells), each label above its image.

    Every cell of a row is shown at the size of the row's first image (the LR enlarged with
    nearest-neighbour pixels).
    """
    cols = max(len(r) for r in rows)
    heights = [r[0][0].shape[0] for r in rows]
    width = max(r[0][0].shape[1] for r in rows)
    fig = new_figure(cols * (width + 12), sum(heights) + 44 * len(rows) + 80)
    fig.suptitle(title, fontsize=9, x=0.01, ha='left')
    axes = fig.subplots(len(rows), cols, squeeze=False, gridspec_kw={'height_ratios': heights})
    for ax_row, cells in zip(axes, rows):
        for ax in ax_row:
            ax.set_axis_off()
        for ax, (img, label) in zip(ax_row, cells):
            ax.imshow(img, interpolation='nearest')
            ax.set_title(label, fontsize=8, loc='left')
    return fig


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
        cells = [(gt, f'HR\n{name}'), (bic, f"bicubic\n{psnr['bicubic'][-1]:.2f} dB")]
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
                cells.insert(2, (lr_img, f'IRN LR (after)\nshown x{scale}'))
            zt = 'z=0' if z_mode == 'zero' else 'z~N(0,I)'
            cells.append((sr, f'IRN {tag}, {zt}\n{value:.2f} dB'))
        rows.append(cells)
    loss_csv = os.path.join(run_dir, 'loss.csv')
    iters = int(read_csv(loss_csv)[-1]['iter']) if os.path.isfile(loss_csv) else opt['train']['niter']
    paper = paper_iterations(scale)
    mean = {k: float(np.mean(v)) for k, v in psnr.items()}
    title = (f'IRN x{scale} after {iters:,} training iterations; the paper trains '
             f'{paper:,} ({100 * iters / paper:.2g}% of that). Y PSNR under each image.\n'
             'z=0: the upscale the network is sure of (no sampled detail).\n'
             "z~N(0,I): a sampled z (the paper's protocol), noisy until training makes "
             'z ~ N(0, I).')
    path = os.path.join(run_dir, 'before_after.png')
    save_png(_image_grid(rows, title), path)
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
