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
    parser.add_argument('--scale', type=int, choices=(2, 4, 8), help='rescaling factor')
    parser.add_argument('--output_dir', help='where results are written')
    parser.add_argument('overrides', nargs='*', metavar='section.key=value',
                        help='override any config entry, e.g. train.niter=1000')
    return parser


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
