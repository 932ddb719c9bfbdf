"""Use a trained model of the family on your own images.

    python infer.py down --ckpt irn_x4.ckpt --input photo.jpg --output lr/
    python infer.py up --ckpt irn_x4.ckpt --input lr/photo.png --output hr/ [--z_mode zero]
    python infer.py roundtrip --ckpt irn_x4.ckpt --input photos/ --output rt/ --tile 512

The model is the one the checkpoint records (or ``--config``'s); each model offers its own
modes (IRN: ``down``, ``up``, ``roundtrip``; see ``python infer.py --help`` with a checkpoint)
and flags. IRN's ``down`` accepts any size and stores the original size in the LR PNG, so
``up`` crops back (src/runner.py). ``--tile N --tile_overlap M`` (HR pixels) bound the memory
of large images. A non-integer ``--scale`` (e.g. ``down --scale 2.5 --ckpt irn_x3.ckpt``)
rescales by that factor around the network's integer scale (src/fractional.py).

A folder: every readable image is processed; each bad one gets an ``error:`` line and the run
ends with ``N written, M failed`` and exit status 1 if any failed (``--strict``: stop at the
first, status 2). An output that cannot be written (a full disk) stops the run at once; no
partial file is left under an output name (writes are atomic).
"""
import sys

import argparse
import os

from src.runner import pad_to_multiple  # noqa: F401  (part of this tool's interface)
from src.utils.cli import model_class_of, run
from src.utils.errors import IRNError, WriteError


def parse_args(argv=None):
    """Command line: mode, --ckpt/--config/--scale/--device_target, input/output, tiling, and
    the model's own flags."""
    cls = model_class_of(argv)
    parser = argparse.ArgumentParser(description=f'{cls.name} on your images')
    parser.add_argument('mode', choices=cls.infer_modes, help=f'{cls.name}: '
                        + ', '.join(cls.infer_modes))
    parser.add_argument('--ckpt', required=True, help="our .ckpt or the authors' .pth")
    parser.add_argument('--config', help='the model\'s config (default: what the checkpoint records)')
    parser.add_argument('--scale', type=_scale, help='expected scale (checked); a non-integer '
                        'one (e.g. 2.5) rescales fractionally around the checkpoint\'s integer scale '
                        '(IRN family: MATLAB bicubic to its grid and back)')
    parser.add_argument('--device_target', default='CPU', choices=('CPU', 'GPU', 'Ascend'))
    parser.add_argument('--input', required=True, help='an image file or a folder of images')
    parser.add_argument('--output', '--output_dir', dest='output', required=True,
                        help='output folder (or a .png file for a single input)')
    parser.add_argument('--tile', type=int, default=0,
                        help='process in tiles of N HR pixels (0: whole image)')
    parser.add_argument('--tile_overlap', type=int, default=64,
                        help='context shared by neighbouring tiles, HR pixels (default 64)')
    parser.add_argument('--strict', action='store_true',
                        help='stop at the first unreadable input (default: report it, go on)')
    cls.add_arguments(parser, 'infer')
    return parser.parse_args(argv)


def _scale(text):
    """--scale: an int, or a float when it is not a whole number (a fractional scale)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a number: {text!r}') from None
    return int(value) if value.is_integer() else value


def list_inputs(path):
    """The image files named by ``path`` (a file, or the images of a folder)."""
    from src.data.io import list_images
    if os.path.isdir(path):
        return list_images(path)
    if not os.path.exists(path):
        raise IRNError(f'{path}: input not found')
    return [path]


def main(argv=None):
    """Entry point: load the network once, then process every input image."""
    args = parse_args(argv)
    if args.tile < 0 or args.tile_overlap < 0:
        raise IRNError('--tile and --tile_overlap must be >= 0')
    if args.tile and args.tile_overlap >= args.tile:
        raise IRNError(f'--tile_overlap {args.tile_overlap} must be smaller than --tile '
                       f'{args.tile}')
    inputs = list_inputs(args.input)
    from src.models import load_model
    fractional = isinstance(args.scale, float)
    _, model, net = load_model(args.ckpt, args.config, scale=None if fractional else args.scale,
                               device_target=args.device_target)
    if fractional:
        if not model.fractional_scales:
            raise IRNError(f'--scale {args.scale}: {model.name} has no fractional scales')
        from src.fractional import parse_ratio
        args.fractional_scale = parse_ratio(args.scale, net.scale)
    runner = model.runner(args, net)
    scale = f' x{net.scale}' if net.scale != 1 else ''  # IRN-Color does not rescale
    print(f'{model.name}{scale} {args.mode} ({args.ckpt}; {runner.describe()})')
    written, failed = 0, 0
    for path in inputs:
        try:
            print(runner.run(args.mode, path, len(inputs)), flush=True)
            written += 1
        except WriteError as exc:
            if len(inputs) == 1:
                raise
            raise WriteError(f'{exc} (stopped: {written} written, {failed} failed before)') \
                from None
        except IRNError as exc:
            if args.strict or len(inputs) == 1:
                raise
            failed += 1
            print(f'error: {exc}', file=sys.stderr, flush=True)
    if len(inputs) > 1:
        print(f'{written} written, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    run(main)
