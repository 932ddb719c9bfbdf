"""Time IRN downscaling and upscaling of a large image on this machine, against PyTorch (not a test).

    python scripts/benchmark.py infer [--scales 2 4] [--size 1920x1080] [--modes untiled tiled]
        [--tile 512] [--tile_overlap 64] [--runs 3] [--repeat 1] [--big 3840x2160]
        [--torch_python /work/torchvenv/bin/python] [--dynamic] [--variants IRN IRN_E]

Every measurement is its own process, so its peak resident memory (ru_maxrss) is its own; the
runs of each configuration are interleaved with the PyTorch reference's
(``scripts/bench_torch_reference.py --infer``: the authors' network under ``torch.no_grad()``)
and the medians over ``--runs`` are printed with the ratio ours / PyTorch. Same image and z for
both (``scripts/bench_inputs.py``), random weights in the paper's layout (timing does not depend
on them). Ours runs as ``val.py`` / ``infer.py`` do (``src.inference.Rescaler``): static-shape
graphs with the fast CPU convolution, compiled on the first call of each shape, so ``first``
includes the compilation and ``next`` is the median of ``--repeat`` further calls.
``--big WxH`` adds one tiled round trip of a larger image at the largest scale (bounded memory).
``--dynamic``: the old dynamic-shape path (MindSpore Conv2D), for comparison.
``--variants IRN IRN_E`` times IRN_E (all Haar levels first, as many blocks in total: x4 [16])
beside IRN in the same run.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args(argv=None):
    """Benchmark options; ``--child`` runs one configuration and prints one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--scales', type=int, nargs='+', default=[2, 4])
    p.add_argument('--size', default='1920x1080', help='WxH of the HR image')
    p.add_argument('--modes', nargs='+', choices=('untiled', 'tiled'),
                   default=['untiled', 'tiled'], help='which runs of ours at --size')
    p.add_argument('--tile', type=int, default=512, help='tile size (HR px) of the tiled runs')
    p.add_argument('--tile_overlap', type=int, default=64)
    p.add_argument('--runs', type=int, default=3, help='processes per configuration (median)')
    p.add_argument('--repeat', type=int, default=1, help='timed calls after the first')
    p.add_argument('--big', default='', help='WxH of an extra tiled round trip at the largest '
                   'scale, e.g. 3840x2160 (empty: skip)')
    p.add_argument('--torch_python', default=os.environ.get('IRN_TORCH_PYTHON'),
                   help='python of an environment with torch: also time the PyTorch reference')
    p.add_argument('--dynamic', action='store_true',
                   help='ours with one dynamic-shape graph and MindSpore Conv2D (the old path)')
    p.add_argument('--variants', nargs='+', choices=('IRN', 'IRN_E'), default=['IRN'],
                   help='networks to time (IRN_E: all downsampling first)')
    p.add_argument('--child', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_child(spec):
    """Run one configuration of ours in this process; returns the measurements as a dict."""
    sys.path.insert(0, ROOT)
    import numpy as np
    import mindspore as ms
    import bench_inputs
    from src.inference import Rescaler
    from src.network import InvRescaleNet
    from src.utils.device import setup_device
    from src.utils.graphs import compilations
    setup_device('CPU')
    scale, tile, overlap = spec['scale'], spec['tile'], spec['overlap']
    w, h = (int(v) for v in spec['size'].split('x'))
    levels = scale.bit_length() - 1
    if spec['variant'] == 'IRN_E':
        net = InvRescaleNet([8 * levels], scale=scale, down_first=True)
    else:
        net = InvRescaleNet([8] * levels)
    params = net.trainable_params()
    for p, v in zip(params, bench_inputs.weights([p.shape for p in params])):
        p.set_data(ms.Tensor(v))
    r = Rescaler(net, dynamic=spec['dynamic'])
    hr = bench_inputs.image(w, h)
    z = bench_inputs.z_sample(h // scale, w // scale, r.z_channels)
    out = {'impl': 'ours dynamic' if spec['dynamic'] else 'ours', **spec}
    lr = None
    for name in ('down', 'up'):
        times = []
        for _ in range(1 + spec['repeat']):
            t0 = time.perf_counter()
            if name == 'down':
                lr = r.down(hr, tile, overlap)
            else:
                r.up(lr, z, tile, overlap)
            times.append(time.perf_counter() - t0)
        out[f'{name}_first_s'] = times[0]
        out[f'{name}_s'] = float(np.median(times[1:])) if spec['repeat'] else times[0]
    out['graphs'] = compilations()
    out['peak_rss_gb'] = bench_inputs.peak_rss_gb()
    return out


def _run(cmd):
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(('RESULT ', '{'))]
    if res.returncode or not lines:
        tail = (res.stderr.strip().splitlines() or ['killed?'])[-1]
        return {'failed': f'exit {res.returncode}: {tail}'}
    return json.loads(lines[-1].split('RESULT ', 1)[-1])


def _median(values):
    values = sorted(values)
    n = len(values)
    return (values[(n - 1) // 2] + values[n // 2]) / 2


def _summary(rows):
    """Median of every timing over the runs of one configuration."""
    ok = [r for r in rows if 'failed' not in r]
    if not ok:
        return {'failed': rows[-1]['failed']}
    out = {k: ok[0][k] for k in ('impl', 'scale', 'size', 'tile') if k in ok[0]}
    for key in ('down_first_s', 'down_s', 'up_first_s', 'up_s', 'peak_rss_gb', 'graphs'):
        if key in ok[0]:
            out[key] = _median([r[key] for r in ok])
    out['runs'] = len(ok)
    return out


def _print_row(label, r, ref=None):
    if 'failed' in r:
        print(f'{label:<34} failed ({r["failed"]})')
        return
    ratio = ''
    if ref and 'failed' not in ref:
        ratio = (f'  ratio down {r["down_s"] / ref["down_s"]:.2f} up {r["up_s"] / ref["up_s"]:.2f}'
                 f' (first {r["down_first_s"] / ref["down_first_s"]:.2f} / '
                 f'{r["up_first_s"] / ref["up_first_s"]:.2f})')
    graphs = f'{r["graphs"]:>3.0f}' if 'graphs' in r else '  -'
    print(f'{label:<34} {r["down_first_s"]:7.1f} {r["down_s"]:7.1f} {r["up_first_s"]:7.1f} '
          f'{r["up_s"]:7.1f} {graphs} {r["peak_rss_gb"]:6.2f}GB{ratio}', flush=True)


def main(argv=None):
    """Run every configuration (interleaved with PyTorch) in child processes; print medians."""
    args = parse_args(argv)
    if args.child:
        print('RESULT ' + json.dumps(run_child(json.loads(args.child))), flush=True)
        return 0
    me = [sys.executable, os.path.abspath(__file__), '--child']
    configs = []
    for scale in args.scales:
        ours = [{'variant': v, 'scale': scale, 'size': args.size, 'tile': t,
                 'overlap': args.tile_overlap if t else 0, 'repeat': args.repeat,
                 'dynamic': args.dynamic}
                for v in args.variants
                for t in [0] * ('untiled' in args.modes) + [args.tile] * ('tiled' in args.modes)]
        configs.append((scale, ours))
    print(f'IRN inference on CPU ({os.cpu_count()} cores), random weights, {args.runs} run(s) '
          f'per row interleaved, medians; seconds per call: first (ours: with compilation) / next')
    print(f'{"":<34} {"down 1st":>7} {"next":>7} {"up 1st":>7} {"next":>7} {"gr":>3} {"peak RSS":>8}')
    results = []
    for scale, ours in configs:
        rows = {json.dumps(spec): [] for spec in ours}
        ref = []
        for _ in range(args.runs):
            for spec in ours:
                rows[json.dumps(spec)].append(_run(me + [json.dumps(spec)]))
            if args.torch_python:
                ref.append(_run([args.torch_python, os.path.join(HERE, 'bench_torch_reference.py'),
                                 '--infer', '--json', '--scale', str(scale), '--size', args.size,
                                 '--repeat', str(args.repeat)]))
        ref_sum = _summary(ref) if ref else None
        for spec in ours:
            s = _summary(rows[json.dumps(spec)])
            tiles = f'tiles {spec["tile"]}/{spec["overlap"]}' if spec['tile'] else 'untiled'
            _print_row(f'x{scale} {args.size} {spec["variant"]} {tiles}', s, ref_sum)
            results.append({**spec, **s})
        if ref_sum:
            _print_row(f'x{scale} {args.size} PyTorch untiled', ref_sum)
            results.append(ref_sum)
    if args.big:
        spec = {'variant': 'IRN', 'scale': max(args.scales), 'size': args.big, 'tile': args.tile,
                'overlap': args.tile_overlap, 'repeat': 0, 'dynamic': args.dynamic}
        s = _summary([_run(me + [json.dumps(spec)])])
        _print_row(f'x{spec["scale"]} {args.big} ours tiles {args.tile}/{args.tile_overlap}', s)
        results.append({**spec, **s})
    print('gr: graphs compiled by the process (ours); peak RSS: ru_maxrss of the process; '
          'ratio: ours / PyTorch (< 1: ours faster)')
    for r in results:
        print('JSON ' + json.dumps(r))
    return 0


if __name__ == '__main__':
    sys.exit(main())
