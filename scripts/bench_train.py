"""Training-step benchmark: seconds per step, peak RSS and compile time for each memory mode.

    python scripts/benchmark.py train --scale 4 --batch 16 --patch 144 --modes plain recompute invertible
    python scripts/benchmark.py train --batch 16 24 32 --modes plain --steps 0   # what fits
    python scripts/benchmark.py train --scale 4 --batch 16 --modes plain --runs 3 \
        --torch_python /work/torchvenv/bin/python      # ours vs PyTorch, interleaved, medians
    python scripts/benchmark.py train --configs src/options/train_IRN_x4.yml \
        src/options/train_IRN_E_x4.yml --modes plain    # IRN_E vs IRN in one run
    python scripts/benchmark.py train --configs src/options/train_SAIN_JPEG_x2.yml --patch 128
    python scripts/benchmark.py train --configs "src/options/train_IRN+_x4.yml" --modes plain \
        --random_vgg19 --set train.D_init_iters=0   # IRN+ G + D steps (VGG values do not matter)

Each setting runs in its own process (so its peak RSS is its own) on random data with the
config's optimiser settings; the first step (graph compilation included) is reported separately.
``--configs`` times any model of the family through its own ``train_step`` (for SAIN this
includes the host work of a step: the forward graph, both real-codec round trips and the
noise); the default is IRN's paper config at ``--scale``. ``--compile_cache`` uses train.py's
compile cache (run twice: the second first step loads it).
"""
import argparse
import contextlib
import json
import os
import resource
import shutil
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
    from src.utils.compile_cache import graph_cache
    from src.utils.device import setup_device

    if args.compile_profile:  # MindSpore prints the time of every compile pass
        from mindspore.graph._parse import compile_config
        compile_config.COMPILE_PROFILE = '1'
    setup_device(args.device_target)
    b, p = args.batch, args.patch
    overrides = [f'datasets.train.batch_size={b}', f'datasets.train.GT_size={p}',
                 f'train.memory_mode={args.mode}']
    if args.micro_batch:
        overrides.append(f'train.micro_batch={args.micro_batch}')
    overrides += args.set
    vgg = None
    if args.random_vgg19:  # IRN+'s feature loss: random weights cost what ImageNet ones cost
        from src.network.vgg import random_vgg19_weights, write_vgg19_features
        vgg = os.path.join(tempfile.mkdtemp(prefix='bench_vgg19_'), 'vgg19_features.ckpt')
        write_vgg19_features(random_vgg19_weights(), vgg)
        overrides.append(f'path.pretrain_model_F={vgg}')
    opt = load_config(args.config, overrides)
    s = opt['scale']
    model = create_model(opt)
    model.setup_training()
    if vgg:  # read by setup_training; 80 MB
        shutil.rmtree(os.path.dirname(vgg))
    net = model.net
    rng = np.random.default_rng(0)
    batch = model.example_batch(rng, b, p)
    hr = Tensor(batch[0])
    lr = Tensor(2e-4, ms.float32)
    key = {'graph': 'bench_train_step', 'scale': s, 'batch': b, 'patch': p, 'mode': args.mode,
           'micro_batch': args.micro_batch, 'device': args.device_target, 'conv': backend()}
    times, cpu = [], []
    for _ in range(args.steps + 1):
        start, used = time.time(), _cpu_s()
        with graph_cache(key) if args.compile_cache else contextlib.nullcontext():
            model.train_step(batch, lr, rng)
        times.append(time.time() - start)
        cpu.append(_cpu_s() - used)
    fwd_start = time.time()
    for _ in range(2):
        out = net(hr)
        (out[0] if isinstance(out, tuple) else out).asnumpy()
    forward = (time.time() - fwd_start) / 2
    print(json.dumps({
        'config': os.path.basename(args.config), 'model': model.name, 'arch': net.arch(),
        'batch': b, 'patch': p, 'mode': args.mode, 'micro_batch': args.micro_batch or b,
        'conv': backend(), 'compile_cache': args.compile_cache,
        'first_step_s': round(times[0], 1), 'first_step_cpu_s': round(cpu[0], 1),
        'step_s': round(float(np.median(times[1:])), 2) if len(times) > 1 else None, 'forward_s': round(forward, 2),
        'peak_rss_gb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)}),
        flush=True)


def _cpu_s():
    """CPU seconds of this process (user + system): compile time that a busy machine does not
    inflate the way it inflates wall time."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


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


def _ours(args, mode, batch, config):
    """One process of ours: its JSON row, or a row saying why it failed."""
    cmd = [sys.executable, os.path.abspath(__file__), '--mode', mode, '--config', config,
           '--batch', str(batch), '--patch', str(args.patch),
           '--steps', str(args.steps), '--device_target', args.device_target]
    if args.compile_cache:
        cmd.append('--compile_cache')
    if args.compile_profile:
        cmd.append('--compile_profile')
    if args.micro_batch:
        cmd += ['--micro_batch', str(args.micro_batch)]
    if args.random_vgg19:
        cmd.append('--random_vgg19')
    cmd += ['--set', *args.set] if args.set else []
    return _row(cmd, args, {'config': os.path.basename(config), 'batch': batch,
                            'patch': args.patch, 'mode': mode})


def _row(cmd, args, what):
    out, err, code, killed = run_child(cmd, args.max_rss_gb)
    lines = [ln for ln in out.splitlines() if ln.startswith('{')]
    if args.compile_profile:
        print('\n'.join(ln for ln in out.splitlines() if not ln.startswith('{')), flush=True)
    if code != 0 or not lines:
        reason = (f'RSS above {args.max_rss_gb} GB' if killed else
                  'killed (out of memory?)' if code < 0 else err.strip().splitlines()[-1:])
        return {**what, 'failed': str(reason)}
    return json.loads(lines[-1])


def compare(args):
    """``--runs`` interleaved runs of every mode and of PyTorch per batch; medians and ratios."""
    import numpy as np
    here = os.path.dirname(os.path.abspath(__file__))
    for batch in args.batch:
        rows = {(c, m): [] for c in args.configs for m in args.modes}
        ref = []
        for _ in range(args.runs):
            for config, mode in rows:
                rows[config, mode].append(_ours(args, mode, batch, config))
                print(json.dumps(rows[config, mode][-1]), flush=True)
            if args.torch_python:
                ref.append(_row([args.torch_python, os.path.join(here, 'bench_torch_reference.py'),
                                 '--json', '--scale', str(args.scale), '--batch', str(batch),
                                 '--patch', str(args.patch), '--steps', str(args.steps + 1)],
                                args, {'impl': 'pytorch', 'batch': batch}))
                print(json.dumps(ref[-1]), flush=True)
        ok_ref = [r['step_s'] for r in ref if 'failed' not in r]
        torch_step = float(np.median(ok_ref)) if ok_ref else None
        for (config, mode), runs in rows.items():
            ok = [r for r in runs if 'failed' not in r and r['step_s'] is not None]
            if not ok:
                continue
            step = float(np.median([r['step_s'] for r in ok]))
            summary = {'summary': mode, 'config': os.path.basename(config), 'batch': batch,
                       'patch': args.patch,
                       'runs': len(ok), 'step_s_median': round(step, 2),
                       'first_step_s_median': float(np.median([r['first_step_s'] for r in ok])),
                       'peak_rss_gb_median': float(np.median([r['peak_rss_gb'] for r in ok]))}
            if torch_step:
                summary.update(pytorch_step_s_median=round(torch_step, 2), pytorch_runs=len(ok_ref),
                               ratio=round(step / torch_step, 3), pytorch_peak_rss_gb_median=float(
                                   np.median([r['peak_rss_gb'] for r in ref if 'failed' not in r])))
            print(json.dumps(summary), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scale', type=int, default=4, choices=(2, 4, 8),
                        help="IRN's train_IRN_x<scale>.yml when --configs is not given, and the "
                             "PyTorch reference's scale")
    parser.add_argument('--configs', nargs='+',
                        help='training configs of any models to time in this run (default: IRN at '
                             '--scale), e.g. train_IRN_x4.yml train_IRN_E_x4.yml')
    parser.add_argument('--batch', type=int, nargs='+', default=[16],
                        help='one or more batch sizes, tried in increasing order per mode; a mode '
                             'stops at the first that does not fit (the largest that fits is reported)')
    parser.add_argument('--patch', type=int, default=144)
    parser.add_argument('--modes', nargs='+', default=['plain', 'recompute', 'invertible'])
    parser.add_argument('--micro_batch', type=int, default=None)
    parser.add_argument('--steps', type=int, default=2, help='timed steps after the first')
    parser.add_argument('--set', nargs='+', default=[], metavar='KEY=VALUE',
                        help='config overrides for every run, e.g. train.D_init_iters=0 (IRN+: '
                             'time G + D steps, not the D-only start)')
    parser.add_argument('--random_vgg19', action='store_true',
                        help="IRN+: a VGG19 file with random weights for the feature loss (the "
                             'ImageNet file is not needed to measure time and memory)')
    parser.add_argument('--max_rss_gb', type=float, default=22.0,
                        help='kill a run whose RSS passes this (it does not fit); default 22')
    parser.add_argument('--device_target', default='CPU')
    parser.add_argument('--compile_cache', action='store_true',
                        help="use train.py's compile cache (src/utils/compile_cache.py): a second run "
                             'of the same setting loads the step instead of compiling it')
    parser.add_argument('--compile_profile', action='store_true',
                        help="print MindSpore's compile profile (time per compile pass) of the step")
    parser.add_argument('--runs', type=int, default=1,
                        help='processes per setting; with more than one, or with --torch_python, '
                             'the runs of every mode and of PyTorch are interleaved and medians printed')
    parser.add_argument('--torch_python', default=os.environ.get('IRN_TORCH_PYTHON'),
                        help='python of an environment with torch: also time the PyTorch reference '
                             '(scripts/bench_torch_reference.py, --steps + 1 steps, median)')
    parser.add_argument('--mode', help=argparse.SUPPRESS)  # internal: run one setting here
    parser.add_argument('--config', help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.configs = [os.path.abspath(c) for c in args.configs or
                    [os.path.join(ROOT, 'src', 'options', f'train_IRN_x{args.scale}.yml')]]
    if args.mode:
        args.batch = args.batch[0]
        run_one(args)
        return
    if args.runs > 1 or args.torch_python:
        return compare(args)
    for config, mode in ((c, m) for c in args.configs for m in args.modes):
        largest = None
        for batch in sorted(args.batch):
            row = _ours(args, mode, batch, config)
            print(json.dumps(row), flush=True)
            if 'failed' in row:
                break
            largest = batch
        if len(args.batch) > 1:
            print(json.dumps({'config': os.path.basename(config), 'mode': mode, 'patch': args.patch,
                              'micro_batch': args.micro_batch,
                              'largest_batch_tried_that_fits': largest,
                              'max_rss_gb': args.max_rss_gb}), flush=True)


if __name__ == '__main__':
    main()
