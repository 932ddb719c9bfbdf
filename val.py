"""Evaluate a checkpoint of any model of the family with its authors' protocol.

    python val.py --config src/options/test_IRN_x4.yml --ckpt irn_x4.ckpt \
        --data_path datasets/Set5 datasets/Set14 /data/DIV2K [--z_mode sample --z_draws 5 --seed 0]
        [--report results/x4.json] [--save_images]

The model is the config's ``model:`` (or, without --config, the one the checkpoint records, with
its test config). For IRN: each HR image is mod-cropped to the scale, downscaled, quantised to
8 bit and upscaled with z = 0 or z ~ N(0, I) (seeded; metrics averaged over the draws); PSNR /
SSIM on uint8 images, RGB and MATLAB Y, ``scale`` pixels cropped from every border; the LR is
scored against the rounded MATLAB-bicubic LR (no crop). Each model's own protocol is printed
with its results and written into every report row.

An unreadable image stops the evaluation with one ``error:`` line; with ``--skip_bad_images``
each one gets its ``error:`` line and is left out (the numbers are those of the set without
it), the report lists them under ``skipped`` and the exit status is 1.
"""
import logging
import os
import sys

from src.utils.cli import common_parser, model_class_of, run
from src.utils.errors import IRNError

log = logging.getLogger('irn')


def parse_args(argv=None):
    """Command line: shared flags, data paths, report and image options, the model's own flags."""
    parser = common_parser('Evaluate a model of the IRN family (PSNR / SSIM and its own metrics)')
    parser.add_argument('--data_path', nargs='+', metavar='PATH',
                        help='test sets: image folders, LMDBs or a DIV2K root (DIV2K_valid_HR)')
    parser.add_argument('--report', metavar='OUT.json',
                        help='write the report as JSON and, beside it, as CSV (OUT.csv)')
    parser.add_argument('--save_images', action='store_true',
                        help='write the output images of every set under --output_dir')
    parser.add_argument('--max_images', type=int, help='only the first N images of each set')
    parser.add_argument('--no_progress', action='store_true', help='no progress bar')
    parser.add_argument('--skip_bad_images', action='store_true',
                        help='report unreadable images and go on without them (exit status 1)')
    model_class_of(argv).add_arguments(parser, 'val')
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
    """Iterates a ValidationSource with a progress bar; saves each GT image if asked; with
    ``skip_bad``, prints an unreadable image's error and goes on (``skipped`` lists them)."""

    def __init__(self, source, desc, save_dir=None, progress=True, skip_bad=False):
        self.source, self.desc, self.save_dir, self.progress = source, desc, save_dir, progress
        self.skip_bad, self.skipped = skip_bad, []

    def __len__(self):
        return len(self.source)

    def __iter__(self):
        from tqdm import tqdm
        from src.data.io import write_png
        for index in tqdm(range(len(self.source)), desc=self.desc, unit='img', file=sys.stderr,
                          disable=not self.progress, leave=False):
            try:
                name, hr = self.source[index]
            except IRNError as exc:
                if not self.skip_bad:
                    raise
                tqdm.write(f'error: {exc}', file=sys.stderr)
                self.skipped.append({'name': self.source.names[index], 'error': str(exc)})
                continue
            if self.save_dir:
                write_png(os.path.join(self.save_dir, 'GT', name + '.png'), hr)
            yield name, hr


def default_config(args):
    """--config, else the checkpoint's model's test config for --scale or the recorded scale."""
    if args.config:
        return args.config
    from src.models import default_config as for_checkpoint
    path = for_checkpoint(args.ckpt, args.scale) if args.ckpt or args.scale else None
    if path is None:
        raise IRNError('pass --config src/options/test_<model>.yml (or --scale for IRN)')
    return path


def resolve_options(args, opt):
    """Data paths, checkpoint, image limit and output folder from the command line / config."""
    paths = args.data_path or opt['test']['dataroots'] or (
        [opt['datasets']['val']['dataroot_GT']] if opt['datasets']['val']['dataroot_GT'] else [])
    if not paths:
        raise IRNError('no test set given: pass --data_path (folders or a DIV2K root) or set '
                       'test.dataroots in the config')
    ckpt = args.ckpt or opt['path']['pretrain_model_G']
    if not ckpt:
        raise IRNError('no checkpoint: pass --ckpt (our .ckpt or the authors\' .pth) or set '
                       'path.pretrain_model_G')
    max_images = args.max_images if args.max_images is not None else opt['test']['max_images']
    out_dir = args.output_dir or os.path.join(opt['path']['root'], opt['name'])
    return paths, ckpt, max_images, out_dir


def main(argv=None):
    """Entry point: evaluate every set, print per-image and per-set tables, write reports."""
    args = parse_args(argv)
    from src.config import load_config
    from src.data.io import write_png
    from src.data.sources import ValidationSource
    from src.models import create_model
    from src.report import image_table, write_csv, write_json
    from src.utils.checkpoint import describe_arch
    from src.utils.device import setup_device
    from src.utils.graphs import compilations
    opt = load_config(default_config(args), args.overrides, scale=args.scale,
                      device_target=args.device_target)
    paths, ckpt, max_images, out_dir = resolve_options(args, opt)
    model = create_model(opt)
    protocol = model.eval_protocol(args)
    setup_device(opt['device_target'], allow_fast_fp32=opt['allow_fast_fp32'])
    net = model.load_net(ckpt, expect_scale=opt['scale'])
    print(f'{model.name} evaluation: {ckpt} ({describe_arch(net.arch())})')
    print(model.protocol_text(protocol))
    sets = {}
    for name, path in zip(set_names(paths), paths):
        source = ValidationSource(path, opt['scale'], max_images)
        save_dir = os.path.join(out_dir, name) if args.save_images else None
        images = _Images(source, name, save_dir, not args.no_progress, args.skip_bad_images)
        results = model.evaluate_set(net, images, protocol, keep_images=args.save_images)
        for r in results:
            for kind, img in r.pop('images', {}).items():
                write_png(os.path.join(save_dir, kind, r['name'] + '.png'), img)
        if not results:
            raise IRNError(f'{path}: no readable image ({len(images.skipped)} skipped)')
        sets[name] = {'path': os.path.abspath(path), 'mean': model.summarize(results),
                      'images': results, 'skipped': images.skipped}
        print()
        print(image_table(name, results, model.report_columns))
    print()
    print(f'Summary ({model.protocol_text(protocol)})')
    print(model.summary_table(sets, protocol))
    print(f'graphs compiled: {compilations()} (one per direction and distinct image size)')
    report = {'model': model.name, 'checkpoint': os.path.abspath(ckpt), 'arch': net.arch(),
              'protocol': protocol, 'command': ' '.join(sys.argv), 'sets': sets}
    if args.report:
        base = os.path.splitext(args.report)[0]
        write_json(base + '.json', report)
        write_csv(base + '.csv', report, model.metrics)
        print(f'report: {base}.json, {base}.csv')
    if args.save_images:
        print(f'images: {out_dir}/<set>/<kind>/ (GT and the model\'s outputs)')
    skipped = sum(len(s['skipped']) for s in sets.values())
    if skipped:
        print(f'{skipped} unreadable image(s) skipped (--skip_bad_images), not in the means: '
              + ', '.join(f"{n}/{s['name']}" for n, v in sets.items() for s in v['skipped']))
    return 1 if skipped else 0


if __name__ == '__main__':
    run(main)
