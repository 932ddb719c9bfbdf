"""Training-step benchmark: seconds per step, peak RSS and compile time for each memory mode.

    python scripts/benchmark.py train --scale 4 --batch 16 --patch 144 --modes plain recompute invertible
    python scripts/benchmark.py train --batch 16 24 32 --modes plain --steps 0   # what fits

Each mode runs in its own process (so its peak RSS is its own) on random data with the paper's
optimiser settings; the first step (graph compilation included) is reported separately.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(args):
    """Time ``args.steps`` steps of one configuration in this process; print one JSON line."""
    sys.path.insert(0, ROOT)
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor
    from src.config import load_config
    from src.models import create_model
    from src.network.fast_conv import backend
    from src.utils.device import setup_device

    setup_device(args.device_target)
    s, b, p = args.scale, args.batch, args.patch
    overrides = [f'datasets.train.batch_size={b}', f'datasets.train.GT_size={p}',
                 f'train.memory_mode={args.mode}']
    if args.micro_batch:
        overrides.append(f'train.micro_batch={args.micro_batch}')
    opt = load_config(os.path.join(ROOT, 'src', 'options', f'train_IRN_x{s}.yml'), overrides)
    model = create_model(opt)
    model.setup_training()
    net, step = model.net, model.step
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
        'micro_batch': args.micro_batch or b, 'conv': backend(), 'first_step_s': round(times[0], 1),
        'step_s': round(float(np.median(times[1:])), 2) if len(times) > 1 else None, 'forward_s': round(forward, 2),
        'peak_rss_gb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)}),
        flush=True)


def _rss_gb(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return 0.0


def run_child(cmd, max_rss_gb):
    """Run ``cmd``; kill it if its RSS passes ``max_rss_gb``. Returns (stdout, stderr, code, killed)."""
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        killed = False
        while proc.poll() is None:
            if _rss_gb(proc.pid) > max_rss_gb:
                proc.kill()
                killed = True
            time.sleep(0.2)
        out.seek(0)
        err.seek(0)
        return out.read(), err.read(), proc.returncode, killed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scale', type=int, default=4, choices=(2, 4, 8))
    parser.add_argument('--batch', type=int, nargs='+', default=[16],
                        help='one or more batch sizes, tried in increasing order per mode; a mode '
                             'stops at the first that does not fit (the largest that fits is reported)')
    parser.add_argument('--patch', type=int, default=144)
    parser.add_argument('--modes', nargs='+', default=['plain', 'recompute', 'invertible'])
    parser.add_argument('--micro_batch', type=int, default=None)
    parser.add_argument('--steps', type=int, default=2, help='timed steps after the first')
    parser.add_argument('--max_rss_gb', type=float, default=22.0,
                        help='kill a run whose RSS passes this (it does not fit); default 22')
    parser.add_argument('--device_target', default='CPU')
    parser.add_argument('--mode', help=argparse.SUPPRESS)  # internal: run one mode here
    args = parser.parse_args()
    if args.mode:
        args.batch = args.batch[0]
        run_one(args)
        return
    for mode in args.modes:
        largest = None
        for batch in sorted(args.batch):
            cmd = [sys.executable, os.path.abspath(__file__), '--mode', mode,
                   '--scale', str(args.scale), '--batch', str(batch), '--patch', str(args.patch),
                   '--steps', str(args.steps), '--device_target', args.device_target]
            if args.micro_batch:
                cmd += ['--micro_batch', str(args.micro_batch)]
            out, err, code, killed = run_child(cmd, args.max_rss_gb)
            lines = [l for l in out.splitlines() if l.startswith('{')]
            if code != 0 or not lines:
                reason = (f'RSS above {args.max_rss_gb} GB' if killed else
                          'killed (out of memory?)' if code < 0 else err.strip().splitlines()[-1:])
                print(json.dumps({'scale': args.scale, 'batch': batch, 'patch': args.patch,
                                  'mode': mode, 'failed': str(reason)}), flush=True)
                break
            print(lines[-1], flush=True)
            largest = batch
        if len(args.batch) > 1:
            print(json.dumps({'mode': mode, 'patch': args.patch, 'micro_batch': args.micro_batch,
                              'largest_batch_tried_that_fits': largest,
                              'max_rss_gb': args.max_rss_gb}), flush=True)


if __name__ == '__main__':
    main()
