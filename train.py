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


def init_parallel(target):
    """init() the collective backend and set DATA_PARALLEL; returns (rank_id, rank_size)."""
    import mindspore as ms
    from mindspore.communication import init, get_rank, get_group_size
    from src.utils.errors import IRNError

    try:
        if os.environ.get('RANK_TABLE_FILE') and os.environ.get('DEVICE_ID'):
            ms.set_device(target, int(os.environ['DEVICE_ID']))  # rank-table launch
        else:
            ms.set_device(target)  # msrun gives each worker its device
        ms.set_context(mode=ms.GRAPH_MODE)
        init()
        from src.utils.device import select_conv
        select_conv(target)
    except (RuntimeError, ValueError) as exc:
        raise IRNError(f'data-parallel init failed on {target}: {str(exc).splitlines()[0]}') from None
    rank_id, rank_size = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL,
                                 gradients_mean=True, device_num=rank_size)
    return rank_id, rank_size


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
    target = opt['device_target']
    if is_distributed(args):
        rank_id, rank_size = init_parallel(target)
    else:
        from src.utils.device import setup_device
        setup_device(target, graph=True)
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
