"""Training-step benchmark: seconds per step, peak RSS and compile time for each memory mode.

    python scripts/benchmark.py train --scale 4 --batch 16 --patch 144 --modes plain recompute invertible

Each mode runs in its own process (so its peak RSS is its own) on random data with the paper's
optimiser settings; the first step (graph compilation included) is reported separately.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(args):
    """Time ``args.steps`` steps of one configuration in this process; print one JSON line."""
    sys.path.insert(0, ROOT)
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor
    from src.config import load_config
    from src.loss import build_net_with_loss
    from src.network import build_network
    from src.optim import build_optimizer, build_train_step
    from src.utils.device import setup_device

    setup_device(args.device_target)
    s, b, p = args.scale, args.batch, args.patch
    overrides = [f'datasets.train.batch_size={b}', f'datasets.train.GT_size={p}',
                 f'train.memory_mode={args.mode}']
    if args.micro_batch:
        overrides.append(f'train.micro_batch={args.micro_batch}')
    opt = load_config(os.path.join(ROOT, 'src', 'options', f'train_IRN_x{s}.yml'), overrides)
    net = build_network(opt)
    step = build_train_step(build_net_with_loss(net, opt), build_optimizer(net, opt), opt)
    rng = np.random.default_rng(0)
    hr = Tensor(rng.random((b, 3, p, p), dtype=np.float32))
    lr_ref = Tensor(rng.random((b, 3, p // s, p // s), dtype=np.float32))
    z = Tensor(rng.standard_normal((b, 3 * s * s - 3, p // s, p // s), dtype=np.float32))
    lr = Tensor(2e-4, ms.float32)
    times = []
    for _ in range(args.steps + 1):
        start = time.time()
        out = step(hr, lr_ref, z, lr)
        out[0].asnumpy()
        times.append(time.time() - start)
    fwd_start = time.time()
    net(hr).asnumpy()
    net(hr).asnumpy()
    forward = (time.time() - fwd_start) / 2
    print(json.dumps({
        'scale': s, 'batch': b, 'patch': p, 'mode': args.mode,
        'micro_batch': args.micro_batch or b, 'first_step_s': round(times[0], 1),
        'step_s': round(float(np.median(times[1:])), 2), 'forward_s': round(forward, 2),
        'peak_rss_gb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)}),
        flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scale', type=int, default=4, choices=(2, 4, 8))
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--patch', type=int, default=144)
    parser.add_argument('--modes', nargs='+', default=['plain', 'recompute', 'invertible'])
    parser.add_argument('--micro_batch', type=int, default=None)
    parser.add_argument('--steps', type=int, default=2, help='timed steps after the first')
    parser.add_argument('--device_target', default='CPU')
    parser.add_argument('--mode', help=argparse.SUPPRESS)  # internal: run one mode here
    args = parser.parse_args()
    if args.mode:
        run_one(args)
        return
    for mode in args.modes:
        cmd = [sys.executable, os.path.abspath(__file__), '--mode', mode, '--scale', str(args.scale),
               '--batch', str(args.batch), '--patch', str(args.patch), '--steps', str(args.steps),
               '--device_target', args.device_target]
        if args.micro_batch:
            cmd += ['--micro_batch', str(args.micro_batch)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [l for l in proc.stdout.splitlines() if l.startswith('{')]
        if proc.returncode != 0 or not lines:
            reason = 'killed (out of memory?)' if proc.returncode < 0 else proc.stderr.strip().splitlines()[-1:]
            print(json.dumps({'scale': args.scale, 'batch': args.batch, 'patch': args.patch,
                              'mode': mode, 'failed': str(reason)}), flush=True)
        else:
            print(lines[-1], flush=True)


if __name__ == '__main__':
    main()
