"""Export a trained model of the family as inference graphs (MINDIR, ONNX, AIR).

    python export.py --ckpt irn_x4.ckpt --scale 4 --file_format MINDIR --file_name irn_x4
    python export.py --ckpt irn_x4.ckpt --scale 4 --file_format ONNX --file_name irn_x4 \
        --height 1080 --width 1920

Each model writes its own graphs. IRN: ``<name>_down``: HR (1, 3, H, W) float32 in [0, 1] ->
quantised LR (1, 3, H/s, W/s); ``<name>_up``: LR (1, 3, h, w) and z (1, 3s^2-3, h, w) -> HR
(1, 3, hs, ws) (unclamped). z is an input (zeros, or N(0, I) samples drawn by the caller): no
random op is in a graph. MINDIR graphs take any height / width (multiples of the scale); ONNX
graphs are static (--height / --width of the HR, opset 11); AIR needs the Ascend backend and is
deprecated by MindSpore 2.10 (to be removed): for Ascend inference convert the MINDIR with
MindSpore Lite's ``converter_lite --fmk=MINDIR --optimize=ascend_oriented`` instead.
"""
import os
import sys

from src.exporting import EXTENSIONS, write_graphs
from src.utils.cli import common_parser, model_class_of, run
from src.utils.errors import IRNError


def parse_args(argv=None):
    """Command line: the shared flags plus --file_format, --file_name, --height, --width."""
    parser = common_parser('Export the inference graphs of a model of the IRN family')
    parser.add_argument('--file_format', default='MINDIR', choices=tuple(EXTENSIONS),
                        help='MINDIR (dynamic H/W), ONNX (static, needs --height/--width), '
                             'AIR (Ascend only; deprecated, see AIR_NOTE)')
    parser.add_argument('--file_name', help='output prefix (default <model>_x<scale>); one '
                        'file per graph, e.g. <prefix>_down and <prefix>_up')
    parser.add_argument('--height', type=int, help='HR height of a static graph (ONNX, AIR)')
    parser.add_argument('--width', type=int, help='HR width of a static graph (ONNX, AIR)')
    model_class_of(argv).add_arguments(parser, 'export')
    return parser.parse_args(argv)


AIR_NOTE = ('AIR is deprecated in MindSpore 2.10 and will be removed; for Ascend inference '
            'export MINDIR and convert it with MindSpore Lite: converter_lite --fmk=MINDIR '
            '--saveType=MINDIR --optimize=ascend_oriented --modelFile=X.mindir --outputFile=X_ascend')


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


def export_graphs(net, file_name, file_format='MINDIR', height=None, width=None, model=None):
    """Write the graphs of ``net`` (``model``'s, default IRN's); returns the paths written."""
    if model is None:
        from src.models.irn import IRNModel as model
    return write_graphs(model.export_cells(net, height, width), file_name, file_format)


def main(argv=None):
    """Entry point: load the checkpoint, check the format / device, export every graph."""
    args = parse_args(argv)
    from src.models import load_model
    if args.file_format == 'AIR':
        print(f'warning: {AIR_NOTE}', file=sys.stderr)
    opt, model, net = load_model(args.ckpt, args.config, args.overrides, args.scale,
                                 args.device_target)
    if args.file_format == 'AIR' and opt['device_target'] != 'Ascend':
        raise IRNError(f'AIR export needs the Ascend backend (--device_target Ascend); on '
                       f'{opt["device_target"]} use --file_format MINDIR or ONNX')
    check_static_size(args, net.scale)
    scale = f'_x{net.scale}' if net.scale != 1 else ''  # IRN-Color does not rescale
    name = args.file_name or f"{model.name.lower().replace('+', 'p').replace('-', '_')}{scale}"
    if args.output_dir:
        name = os.path.join(args.output_dir, name)
    paths = export_graphs(net, name, args.file_format, args.height, args.width, model)
    shape = 'dynamic H x W' if args.height is None else f'HR {args.height}x{args.width}'
    for path in paths:
        print(f'wrote {path} ({model.name}{scale.replace("_", " ")}, {shape})')
    return 0


if __name__ == '__main__':
    run(main)
