"""The command-line conventions shared by every entry point (same flags everywhere)."""
import argparse
import logging
import sys

from src.utils.errors import IRNError


def common_parser(description, config_required=False):
    """An ArgumentParser with the shared flags; ``key=value`` overrides go to ``args.overrides``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--config', required=config_required, help='experiment yaml (src/options/...)')
    parser.add_argument('--device_target', choices=('CPU', 'GPU', 'Ascend'),
                        help='device (default: the config\'s, else CPU)')
    parser.add_argument('--ckpt', help='network checkpoint (.ckpt, or the authors\' .pth)')
    parser.add_argument('--scale', type=int, help='rescaling factor (checked against the model)')
    parser.add_argument('--output_dir', help='where results are written')
    parser.add_argument('overrides', nargs='*', metavar='section.key=value',
                        help='override any config entry, e.g. train.niter=1000')
    return parser


def quality_type(text):
    """argparse type of a JPEG / WebP quality: an integer in 1..100."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f'expected an integer quality in 1..100, got {text!r}')
    return value


def model_class_of(argv):
    """The Model class a command line is about: the --config's ``model:`` (or a ``model=...``
    override), else the model the --ckpt records, else base IRN. Its ``add_arguments`` adds
    that model's own flags, so a new model needs no change to the entry points."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--config')
    pre.add_argument('--ckpt')
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    from src.models import checkpoint_model, model_class
    name = next((a.split('=', 1)[1] for a in rest if a.startswith('model=')), None)
    if name is None and known.config:
        from src.config import read_yaml
        name = read_yaml(known.config).get('model') or 'IRN'
    if name is None and known.ckpt:
        return checkpoint_model(known.ckpt)[0]
    return model_class(name or 'IRN', known.config or 'command line')


def run(main):
    """Run ``main()`` and turn an IRNError into ``error: <message>`` and exit status 2."""
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
    try:
        code = main()
    except IRNError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
