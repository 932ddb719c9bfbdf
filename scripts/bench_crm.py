"""CRM training-step benchmark (IRN frozen): time of each part of one step, peak RSS.

    python scripts/benchmark.py crm --batch 16 --patch 144            # the authors' setting
    python scripts/benchmark.py crm --batch 2 --patch 144 --steps 3   # a quick look

One step = IRN x2 downscaling + quantisation (graph), the OpenCV JPEG round trip of the batch
(numpy), the CRM train step (graph: RRDBNet forward, L2 loss, backward, clip, Adam). Random
weights and data with the paper's shapes (IRN [8], CRM nf 64 nb 8 gc 32, JPEG 90); the first
step (graph compilation) is reported apart. Runs in a child process killed above --max_rss_gb.
"""
import argparse
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_one(args):
    """Time the parts of ``args.steps`` CRM steps in this process; print one JSON line."""
    sys.path.insert(0, ROOT)
    import numpy as np
    import mindspore as ms
    from src.codecs import roundtrip_batch
    from src.compression import CRMStep
    from src.network import InvRescaleNet
    from src.network.fast_conv import backend
    from src.network.rrdb import RRDBNet
    from src.optim import ClippedAdam
    from src.utils.device import setup_device

    setup_device(args.device_target)
    crm = RRDBNet(3, 3, args.nf, args.nb, args.gc)
    adam = ClippedAdam(crm.trainable_params(), 0.9, 0.999, 1e-8, 0.0, 10.0)
    step = CRMStep(InvRescaleNet([8]), crm, adam, 'jpeg', args.quality)
    rng = np.random.default_rng(0)
    hr = rng.random((args.batch, 3, args.patch, args.patch), dtype=np.float32)
    lr_rate = ms.Tensor(2e-4, ms.float32)
    parts = {'down_s': [], 'codec_s': [], 'crm_step_s': [], 'step_s': []}
    for i in range(args.steps + 1):
        t0 = time.time()
        lr = step.down(ms.Tensor(hr)).asnumpy()
        t1 = time.time()
        jpeg, _ = roundtrip_batch(lr, 'jpeg', args.quality)
        t2 = time.time()
        out = step.train(ms.Tensor(jpeg), ms.Tensor(lr), lr_rate)
        out[0].asnumpy()
        t3 = time.time()
        if i == 0:
            first = t3 - t0
            continue
        for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            parts[key].append(value)
    result = {'batch': args.batch, 'patch': args.patch, 'crm': [args.nf, args.nb, args.gc],
              'conv': backend(), 'first_step_s': round(first, 1)}
    result.update({k: round(float(np.median(v)), 3) if v else None for k, v in parts.items()})
    result['peak_rss_gb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)
    print(json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--patch', type=int, default=144, help='HR patch (the CRM sees patch/2)')
    parser.add_argument('--nf', type=int, default=64)
    parser.add_argument('--nb', type=int, default=8)
    parser.add_argument('--gc', type=int, default=32)
    parser.add_argument('--quality', type=int, default=90)
    parser.add_argument('--steps', type=int, default=2, help='timed steps after the first')
    parser.add_argument('--max_rss_gb', type=float, default=22.0)
    parser.add_argument('--device_target', default='CPU')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args)
        return
    sys.path.insert(0, HERE)
    from bench_train import run_child
    cmd = [sys.executable, os.path.abspath(__file__), '--child'] + sys.argv[1:]
    out, err, code, killed = run_child(cmd, args.max_rss_gb)
    lines = [line for line in out.splitlines() if line.startswith('{')]
    if code != 0 or not lines:
        reason = f'RSS above {args.max_rss_gb} GB' if killed else err.strip().splitlines()[-1:]
        print(json.dumps({'batch': args.batch, 'patch': args.patch, 'failed': str(reason)}))
        sys.exit(1)
    print(lines[-1])


if __name__ == '__main__':
    main()
