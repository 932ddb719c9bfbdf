"""Time IRN downscaling and upscaling of a large image on this machine (not a test).

    python scripts/benchmark.py infer [--scales 2 4] [--size 1920x1080] [--tile 512]
        [--tile_overlap 64] [--repeat 1] [--big 3840x2160] [--modes untiled tiled]
        [--static] [--variants IRN IRN_E]

Each configuration (scale x untiled / tiled) runs in its own process so that its peak resident
memory (ru_maxrss) is its own. The network has the paper's layout (8 blocks per level) with
random weights: timing does not depend on the weight values. Both directions are first compiled
on a tiny image (reported as ``compile``), then each is timed on the full image (mean of
``--repeat`` calls); the input is a random-noise image and z ~ N(0, I). ``--big WxH`` adds a tiled round trip of a larger image
(e.g. 3840x2160 at x4) to show the memory stays bounded. ``--variants IRN IRN_E`` times IRN_E
(all Haar levels first, as many blocks in total: x4 [16]) beside IRN in the same run.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    """Benchmark options; ``--child`` runs one configuration and prints one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--scales', type=int, nargs='+', default=[2, 4])
    p.add_argument('--size', default='1920x1080', help='WxH of the HR image')
    p.add_argument('--tile', type=int, default=512, help='tile size (HR px) of the tiled runs')
    p.add_argument('--tile_overlap', type=int, default=64)
    p.add_argument('--repeat', type=int, default=1, help='timed calls after the first')
    p.add_argument('--big', default='', help='WxH of an extra tiled round trip at the largest '
                   'scale, e.g. 3840x2160 (empty: skip)')
    p.add_argument('--modes', nargs='+', choices=('untiled', 'tiled'),
                   default=['untiled', 'tiled'], help='which runs at --size')
    p.add_argument('--static', action='store_true',
                   help='one graph per shape instead of one dynamic-shape graph')
    p.add_argument('--variants', nargs='+', choices=('IRN', 'IRN_E'), default=['IRN'],
                   help='networks to time (IRN_E: all downsampling first)')
    p.add_argument('--child', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _size(text):
    w, h = (int(v) for v in text.lower().split('x'))
    return w, h


def run_child(spec):
    """Run one configuration in this process; returns the measurements as a dict."""
    sys.path.insert(0, ROOT)
    import numpy as np
    import mindspore as ms
    from src.inference import Rescaler, make_z
    from src.network import InvRescaleNet
    from src.utils.device import setup_device
    setup_device('CPU')
    scale, (w, h), tile, overlap = spec['scale'], spec['size'], spec['tile'], spec['overlap']
    levels = scale.bit_length() - 1
    if spec.get('variant', 'IRN') == 'IRN_E':
        net = InvRescaleNet([8 * levels], scale=scale, down_first=True)
    else:
        net = InvRescaleNet([8] * levels)
    rng = np.random.default_rng(0)
    for p in net.trainable_params():  # random weights everywhere (conv5 is zero at init)
        p.set_data(ms.Tensor((rng.standard_normal(p.shape) * 0.01).astype(np.float32)))
    r = Rescaler(net, dynamic=not spec['static'])
    hr = rng.random((h, w, 3), dtype=np.float32)
    z = make_z(r.z_shape(h // scale, w // scale), 'sample', 0)
    out = {**spec, 'size': f'{w}x{h}'}
    small = rng.random((8 * scale, 8 * scale, 3), dtype=np.float32)
    t0 = time.perf_counter()  # compile both directions (dynamic shapes: once for all sizes)
    r.up(r.down(small), make_z(r.z_shape(8, 8), 'sample', 0))
    out['compile_s'] = time.perf_counter() - t0
    lr = None
    for name in ('down', 'up'):
        times = []
        for _ in range(max(spec['repeat'], 1)):
            t0 = time.perf_counter()
            if name == 'down':
                lr = r.down(hr, tile, overlap)
            else:
                r.up(lr, z, tile, overlap)
            times.append(time.perf_counter() - t0)
        out[f'{name}_s'] = float(np.mean(times))
    out['peak_rss_gb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return out


def main(argv=None):
    """Run every configuration in a child process and print a table (and JSON lines)."""
    args = parse_args(argv)
    if args.child:
        print('RESULT ' + json.dumps(run_child(json.loads(args.child))), flush=True)
        return 0
    size = _size(args.size)
    specs = []
    for variant in args.variants:
        for scale in args.scales:
            for tile in [0] * ('untiled' in args.modes) + [args.tile] * ('tiled' in args.modes):
                specs.append({'variant': variant, 'scale': scale, 'size': size, 'tile': tile,
                              'overlap': args.tile_overlap if tile else 0,
                              'repeat': args.repeat, 'static': args.static})
        if args.big:
            specs.append({'variant': variant, 'scale': max(args.scales), 'size': _size(args.big),
                          'tile': args.tile, 'overlap': args.tile_overlap, 'repeat': 1,
                          'static': args.static})
    print(f'IRN inference on CPU ({os.cpu_count()} cores), random weights, '
          f'{"static" if args.static else "dynamic"}-shape graphs')
    print(f'{"net":>6} {"scale":>5} {"image":>10} {"tiles":>9} {"compile":>8} {"down":>7} '
          f'{"up":>7} {"peak RSS":>9}')
    rows = []
    for spec in specs:
        res = subprocess.run([sys.executable, os.path.abspath(__file__), '--child',
                              json.dumps(spec)], capture_output=True, text=True, check=False,
                             cwd=ROOT)
        line = [ln for ln in res.stdout.splitlines() if ln.startswith('RESULT ')]
        if res.returncode or not line:
            tail = (res.stderr.strip().splitlines() or ['killed?'])[-1]
            print(f'{spec["variant"]} x{spec["scale"]} tile {spec["tile"]}: failed '
                  f'(exit {res.returncode}): {tail}')
            continue
        r = json.loads(line[0][7:])
        rows.append(r)
        tiles = f'{r["tile"]}/{r["overlap"]}' if r['tile'] else 'none'
        print(f'{r["variant"]:>6} {"x%d" % r["scale"]:>5} {r["size"]:>10} {tiles:>9} '
              f'{r["compile_s"]:7.1f}s {r["down_s"]:6.1f}s {r["up_s"]:6.1f}s '
              f'{r["peak_rss_gb"]:7.2f}GB', flush=True)
    print('compile: both directions on a tiny image first; down / up: wall seconds per call '
          '(mean of --repeat); peak RSS: ru_maxrss of the process (import alone ~0.4 GB)')
    for r in rows:
        print('JSON ' + json.dumps(r))
    return 0


if __name__ == '__main__':
    sys.exit(main())
