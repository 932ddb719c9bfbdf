"""Train IRN: standalone, or data parallel when launched by msrun (or a rank table).

    python train.py --config src/options/train_IRN_x4.yml [--device_target CPU]
        [--data_path DIR] [--output_dir DIR] [--resume] [section.key=value ...]

Outputs go to ``<output_dir or path.root>/<name>/``: train.log, config.yml (the merged
config), loss.csv, val.csv, checkpoints/state_<iter>.ckpt (resumable), best_G.ckpt and
final_G.ckpt (network weights).
"""
import os

from src.utils.cli import common_parser, run


def parse_args(argv=None):
    """Command-line arguments of train.py."""
    parser = common_parser('Train IRN (Invertible Rescaling Net).', config_required=True)
    parser.add_argument('--data_path', help='training images: DIV2K root, image folder or LMDB '
                        '(datasets.train.dataroot_GT)')
    parser.add_argument('--val_path', help='validation images (datasets.val.dataroot_GT)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from the newest state in <output>/checkpoints '
                             '(or path.resume_state); starts fresh if there is none')
    parser.add_argument('--distribute', action='store_true',
                        help='data parallel (implied when started by msrun or with RANK_TABLE_FILE)')
    return parser.parse_intermixed_args(argv)  # overrides may come before or after options


def is_distributed(args):
    """True under msrun (MS_ROLE: workers and the scheduler), with a rank table, or with --distribute."""
    return (args.distribute or os.environ.get('MS_ROLE') in ('MS_WORKER', 'MS_SCHED')
            or int(os.environ.get('RANK_SIZE', '1')) > 1 and bool(os.environ.get('RANK_TABLE_FILE')))


def build_trainer(argv=None):
    """Parse ``argv``, set up the device (and the parallel context); return the Trainer."""
    args = parse_args(argv)
    from src.config import load_config
    opt = load_config(args.config, args.overrides, scale=args.scale,
                      device_target=args.device_target, data_path=args.data_path,
                      output_dir=args.output_dir)
    if args.val_path:
        opt['datasets']['val']['dataroot_GT'] = args.val_path
    if args.ckpt:
        opt['path']['pretrain_model_G'] = args.ckpt
    target, fast = opt['device_target'], opt['allow_fast_fp32']
    from src.utils.device import init_parallel, setup_device
    if is_distributed(args):
        rank_id, rank_size = init_parallel(target, fast)
    else:
        setup_device(target, graph=True, allow_fast_fp32=fast)
        rank_id, rank_size = 0, 1
    from src.trainer import Trainer
    return Trainer(opt, resume=args.resume, rank_id=rank_id, rank_size=rank_size)


def main(argv=None):
    """Train as the command line says; Ctrl-C / SIGTERM stop cleanly after the current step."""
    trainer = build_trainer(argv)
    trainer.stop_on_signals()  # a second signal stops at once
    trainer.run()
    return 0


if __name__ == '__main__':
    run(main)
