"""Evaluate an IRN checkpoint on test sets with the paper's protocol.

    python val.py --config src/options/test_IRN_x4.yml --ckpt irn_x4.ckpt \
        --data_path datasets/Set5 datasets/Set14 /data/DIV2K [--z_mode sample --z_draws 5 --seed 0]
        [--report results/x4.json] [--save_images]

Each HR image is mod-cropped to the scale, downscaled by the network, quantised to 8 bit and
upscaled with z = 0 or z ~ N(0, I) (seeded; metrics averaged over the draws). PSNR / SSIM are
computed on uint8 images, RGB and MATLAB Y, with ``scale`` pixels cropped from every border;
the IRN LR is scored against the rounded MATLAB-bicubic LR (no crop). See src/evaluate.py.
"""
import logging
import os
import sys

import numpy as np

from src.utils.cli import common_parser, run
from src.utils.errors import IRNError

log = logging.getLogger('irn')


def parse_args(argv=None):
    """Command line: shared flags plus data paths, z protocol, report and image options."""
    parser = common_parser('Evaluate IRN (PSNR / SSIM, RGB and Y, LR quality)')
    parser.add_argument('--data_path', nargs='+', metavar='PATH',
                        help='test sets: image folders, LMDBs or a DIV2K root (DIV2K_valid_HR)')
    parser.add_argument('--z_mode', choices=('sample', 'zero'), help='default: val.z_mode')
    parser.add_argument('--z_draws', type=int, help='z draws averaged (default: val.z_draws)')
    parser.add_argument('--seed', type=int, help='seed of the z draws (default: val.seed)')
    parser.add_argument('--report', metavar='OUT.json',
                        help='write the report as JSON and, beside it, as CSV (OUT.csv)')
    parser.add_argument('--save_images', action='store_true',
                        help='write SR, IRN LR, bicubic LR and GT pngs under --output_dir')
    parser.add_argument('--max_images', type=int, help='only the first N images of each set')
    parser.add_argument('--no_progress', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def set_names(paths):
    """A short unique name per test set: the folder name (DIV2K root -> DIV2K_valid_HR)."""
    from src.data.sources import resolve_dataroot
    names = []
    for path in paths:
        root = resolve_dataroot(path, 'val')
        base = os.path.basename(os.path.normpath(root)) or root
        name, k = base, 2
        while name in names:
            name, k = f'{base}_{k}', k + 1
        names.append(name)
    return names


class _Images:
    """Iterates a ValidationSource with a progress bar; saves GT and bicubic LR if asked."""

    def __init__(self, source, desc, scale, save_dir=None, progress=True):
        self.source, self.desc, self.scale = source, desc, scale
        self.save_dir, self.progress = save_dir, progress

    def __len__(self):
        return len(self.source)

    def __iter__(self):
        from tqdm import tqdm
        from src.data.bicubic import imresize
        from src.data.io import write_png
        items = tqdm(self.source, total=len(self.source), desc=self.desc, unit='img',
                     file=sys.stderr, disable=not self.progress, leave=False)
        for name, hr in items:
            if self.save_dir:
                write_png(os.path.join(self.save_dir, 'GT', name + '.png'), hr)
                bic = imresize(hr.astype(np.float64), 1.0 / self.scale)
                write_png(os.path.join(self.save_dir, 'LR_bicubic', name + '.png'), bic)
            yield name, hr


def default_config(args):
    """--config, else src/options/test_IRN_x<scale>.yml for --scale or the checkpoint's scale."""
    if args.config:
        return args.config
    scale = args.scale
    if scale is None and args.ckpt:
        from src.utils.checkpoint import read_weights
        blocks = read_weights(args.ckpt)[1]
        scale = 2 ** len(blocks) if blocks else None
    if scale is None:
        raise IRNError('pass --config src/options/test_IRN_x<scale>.yml or --scale')
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'src', 'options',
                        f'test_IRN_x{scale}.yml')


def resolve_options(args, opt):
    """Merge command-line choices over the config: data paths, z protocol, output folder."""
    paths = args.data_path or opt['test']['dataroots'] or (
        [opt['datasets']['val']['dataroot_GT']] if opt['datasets']['val']['dataroot_GT'] else [])
    if not paths:
        raise IRNError('no test set given: pass --data_path (folders or a DIV2K root) or set '
                       'test.dataroots in the config')
    val = opt['val']
    z_mode = args.z_mode or val['z_mode']
    draws = 1 if z_mode == 'zero' else (args.z_draws if args.z_draws is not None
                                        else val['z_draws'])
    if draws < 1:
        raise IRNError(f'--z_draws must be >= 1, got {draws}')
    seed = args.seed if args.seed is not None else val['seed']
    ckpt = args.ckpt or opt['path']['pretrain_model_G']
    if not ckpt:
        raise IRNError('no checkpoint: pass --ckpt (our .ckpt or the authors\' .pth) or set '
                       'path.pretrain_model_G')
    max_images = args.max_images if args.max_images is not None else opt['test']['max_images']
    out_dir = args.output_dir or os.path.join(opt['path']['root'], opt['name'])
    return paths, z_mode, draws, seed, ckpt, max_images, out_dir


def main(argv=None):
    """Entry point: evaluate every set, print per-image and per-set tables, write reports."""
    args = parse_args(argv)
    from src.config import load_config
    from src.data.io import write_png
    from src.data.sources import ValidationSource
    from src.evaluate import evaluate, summarize
    from src.inference import load_network
    from src.report import image_table, protocol_text, set_table, write_csv, write_json
    from src.utils.device import setup_device
    from src.utils.graphs import compilations
    opt = load_config(default_config(args), args.overrides, scale=args.scale,
                      device_target=args.device_target)
    paths, z_mode, draws, seed, ckpt, max_images, out_dir = resolve_options(args, opt)
    scale = opt['scale']
    setup_device(opt['device_target'])
    net = load_network(ckpt, scale, opt['network_G']['block_num'])
    if net.block_num != opt['network_G']['block_num']:
        log.warning('%s records blocks %s; using them instead of the config\'s %s',
                    ckpt, net.block_num, opt['network_G']['block_num'])
    protocol = {'scale': scale, 'z_mode': z_mode, 'z_draws': draws, 'seed': seed,
                'crop': scale, 'uint8': True, 'y': 'MATLAB rgb2ycbcr (float)',
                'lr_reference': 'rounded MATLAB bicubic, no crop'}
    print(f'IRN evaluation: {ckpt} (blocks {net.block_num})')
    print(protocol_text(protocol))
    sets = {}
    for name, path in zip(set_names(paths), paths):
        source = ValidationSource(path, scale, max_images)
        save_dir = os.path.join(out_dir, name) if args.save_images else None
        images = _Images(source, name, scale, save_dir, not args.no_progress)
        results = evaluate(net, images, scale, z_mode=z_mode, seed=seed, draws=draws,
                           keep_images=args.save_images)
        for r in results:
            lr, sr = r.pop('lr', None), r.pop('sr', None)
            if save_dir:
                write_png(os.path.join(save_dir, 'LR', r['name'] + '.png'), lr)
                write_png(os.path.join(save_dir, 'SR', r['name'] + '.png'), sr)
        sets[name] = {'path': os.path.abspath(path), 'mean': summarize(results),
                      'images': results}
        print()
        print(image_table(name, results))
    print()
    print(f'Summary ({protocol_text(protocol)})')
    print(set_table(sets))
    print(f'graphs compiled: {compilations()} (one per direction and distinct image size)')
    report = {'checkpoint': os.path.abspath(ckpt), 'block_num': net.block_num,
              'protocol': protocol, 'command': ' '.join(sys.argv), 'sets': sets}
    if args.report:
        base = os.path.splitext(args.report)[0]
        write_json(base + '.json', report)
        write_csv(base + '.csv', report)
        print(f'report: {base}.json, {base}.csv')
    if args.save_images:
        print(f'images: {out_dir}/<set>/{{SR,LR,LR_bicubic,GT}}/')
    return 0


if __name__ == '__main__':
    run(main)
