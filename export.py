"""Export a trained IRN as two inference graphs: ``<name>_down`` and ``<name>_up``.

    python export.py --ckpt irn_x4.ckpt --scale 4 --file_format MINDIR --file_name irn_x4
    python export.py --ckpt irn_x4.ckpt --scale 4 --file_format ONNX --file_name irn_x4 \
        --height 1080 --width 1920

``<name>_down``: HR (1, 3, H, W) float32 in [0, 1] -> quantised LR (1, 3, H/s, W/s).
``<name>_up``: LR (1, 3, h, w) and z (1, 3s^2-3, h, w) -> HR (1, 3, hs, ws) (unclamped).
z is an input (zeros, or N(0, I) samples drawn by the caller): no random op is in a graph.
MINDIR graphs take any height / width (H and W multiples of the scale); ONNX graphs are static
(--height / --width of the HR, opset 11); AIR needs the Ascend backend.
"""
import os

import mindspore as ms
import mindspore.onnx  # noqa: F401  (ms.onnx.export)

from src.utils.cli import common_parser, run
from src.utils.errors import IRNError

EXTENSIONS = {'MINDIR': '.mindir', 'ONNX': '.onnx', 'AIR': '.air'}


def parse_args(argv=None):
    """Command line: the shared flags plus --file_format, --file_name, --height, --width."""
    parser = common_parser('Export the IRN downscale and upscale graphs')
    parser.add_argument('--file_format', default='MINDIR', choices=tuple(EXTENSIONS),
                        help='MINDIR (dynamic H/W), ONNX (static, needs --height/--width), '
                             'AIR (Ascend only)')
    parser.add_argument('--file_name', help='output prefix (default irn_x<scale>); '
                        '<prefix>_down and <prefix>_up are written')
    parser.add_argument('--height', type=int, help='HR height of a static graph (ONNX, AIR)')
    parser.add_argument('--width', type=int, help='HR width of a static graph (ONNX, AIR)')
    return parser.parse_args(argv)


def graph_inputs(scale, z_channels, height=None, width=None):
    """Input specs (down, up): dynamic [1, C, None, None] when height/width are None."""
    if height is None:
        hr = ms.Tensor(shape=[1, 3, None, None], dtype=ms.float32)
        lr = ms.Tensor(shape=[1, 3, None, None], dtype=ms.float32)
        z = ms.Tensor(shape=[1, z_channels, None, None], dtype=ms.float32)
    else:
        h, w = height // scale, width // scale
        hr = ms.numpy.zeros((1, 3, height, width), ms.float32)
        lr = ms.numpy.zeros((1, 3, h, w), ms.float32)
        z = ms.numpy.zeros((1, z_channels, h, w), ms.float32)
    return (hr,), (lr, z)


def check_static_size(args, scale):
    """Validate --height / --width: both or neither, positive multiples of the scale."""
    if (args.height is None) != (args.width is None):
        raise IRNError('give both --height and --width (the HR size of a static graph)')
    if args.height is None:
        if args.file_format != 'MINDIR':
            raise IRNError(f'{args.file_format} graphs have static shapes: pass --height and '
                           '--width (HR size, multiples of the scale)')
        return
    for name, v in (('height', args.height), ('width', args.width)):
        if v <= 0 or v % scale:
            raise IRNError(f'--{name} {v} must be a positive multiple of the scale {scale}')


def export_graphs(net, file_name, file_format='MINDIR', height=None, width=None):
    """Write ``<file_name>_down`` and ``<file_name>_up``; returns the two paths written."""
    from src.inference import DownscaleNet, UpscaleNet
    from src.network.fast_conv import mindspore_conv
    down_in, up_in = graph_inputs(net.scale, net.channel_out - net.channel_in, height, width)
    folder = os.path.dirname(os.path.abspath(file_name))
    os.makedirs(folder, exist_ok=True)
    paths = []
    for suffix, cell, inputs, names in (('_down', DownscaleNet(net), down_in, ['hr']),
                                        ('_up', UpscaleNet(net), up_in, ['lr', 'z'])):
        target = file_name + suffix
        path = target + EXTENSIONS[file_format]
        if os.path.exists(path):
            os.remove(path)  # MindSpore writes read-only files; never report a stale one
        cell.set_train(False)
        try:
            with mindspore_conv():  # portable graphs: no custom CPU kernels inside
                if file_format == 'ONNX':  # static shapes only; named inputs
                    ms.onnx.export(cell, *inputs, file_name=target, input_names=names)
                else:
                    ms.export(cell, *inputs, file_name=target, file_format=file_format)
        except (RuntimeError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise IRNError(f'{target}: {file_format} export failed: {first}') from None
        if not os.path.isfile(path):
            raise IRNError(f'{path}: MindSpore reported success but wrote no file')
        os.chmod(path, 0o644)
        paths.append(path)
    return paths


def main(argv=None):
    """Entry point: load the checkpoint, check the format / device, export both directions."""
    args = parse_args(argv)
    from src.config import load_config
    from src.inference import load_network
    from src.utils.device import setup_device
    opt = load_config(args.config, args.overrides, scale=args.scale,
                      device_target=args.device_target)
    scale = args.scale or (opt['scale'] if args.config else None)
    if args.file_format == 'AIR' and opt['device_target'] != 'Ascend':
        raise IRNError(f'AIR export needs the Ascend backend (--device_target Ascend); on '
                       f'{opt["device_target"]} use --file_format MINDIR or ONNX')
    setup_device(opt['device_target'])
    net = load_network(args.ckpt, scale, opt['network_G']['block_num'] if args.config else None)
    check_static_size(args, net.scale)
    name = args.file_name or f'irn_x{net.scale}'
    if args.output_dir:
        name = os.path.join(args.output_dir, name)
    paths = export_graphs(net, name, args.file_format, args.height, args.width)
    shape = 'dynamic H x W' if args.height is None else f'HR {args.height}x{args.width}'
    for path in paths:
        print(f'wrote {path} (x{net.scale}, {shape})')
    return 0


if __name__ == '__main__':
    run(main)
