"""Per-op benchmark: the DenseBlock's convs, a whole DenseBlock and the Haar transform, forward
and forward+backward, with MindSpore's Conv2D and with the fast CPU convolution.

    python scripts/benchmark.py ops [--batch 16] [--size 72]

The defaults are x4 level 1 of the paper's setting (batch 16, 144 px patches -> 72 x 72 after
the first Haar level; the forward coupling branch F sees 9 channels and outputs 3). Graph mode,
median of --repeat timed calls after two untimed ones. GFLOP/s count 2 x multiply-adds; a
forward+backward counts three times the forward's FLOPs (data and weights gradients).
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _time(fn, args, repeat):
    for _ in range(2):  # compile, then one untimed run (first-touch of the buffers)
        out = fn(*args)
        (out[0] if isinstance(out, tuple) else out).asnumpy()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args)
        (out[0] if isinstance(out, tuple) else out).asnumpy()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _fwd_bwd(fn, args, repeat):
    """(forward, forward + backward) seconds of the loss ``fn`` (gradients w.r.t. every input)."""
    import mindspore as ms
    fwd = _time(ms.jit(fn), args, repeat)
    both = _time(ms.jit(ms.grad(fn, grad_position=tuple(range(len(args))))), args, repeat)
    return fwd, both


def _conv_loss(dense_conv, pieces, lrelu, g):
    """sum(y * y * g), y = dense_conv(...), as a function of the pieces, weight and bias (a closure: graph
    mode would count default arguments as inputs)."""
    def loss(*a):
        y = dense_conv(a[:pieces], a[pieces], a[pieces + 1], lrelu)
        return (y * y * g).sum()  # not linear in y: the gradient needs the forward
    return loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--size', type=int, default=72, help='height = width of the block input')
    parser.add_argument('--channels', type=int, default=9, help='DenseBlock input channels')
    parser.add_argument('--out', type=int, default=3, help='DenseBlock output channels')
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    import numpy as np
    from mindspore import Tensor
    from src.network import fast_conv
    from src.network.blocks import GROWTH, DenseBlock, HaarDownsampling, dense_block
    from src.utils.device import setup_device

    setup_device('CPU')
    if fast_conv.backend() != 'dnnl':
        sys.exit('the fast CPU convolution is unavailable here (see the warning above)')
    rng = np.random.default_rng(0)
    n, s, c = args.batch, args.size, args.channels

    def tensor(*shape):
        return Tensor(rng.standard_normal(shape).astype(np.float32))

    def report(name, flops, fwd, both):
        rate = f'{flops / fwd / 1e9:6.1f} | {3 * flops / both / 1e9:6.1f}' if flops else ''
        print(f'{name:<34} {fwd * 1e3:8.1f} {both * 1e3:9.1f}   {rate}', flush=True)

    print(f'batch {n}, {s}x{s}; times in ms; GFLOP/s forward | forward+backward')
    print(f'{"op":<34} {"forward":>8} {"fwd+bwd":>9}   GFLOP/s')
    block = DenseBlock(c, args.out, rng)
    weights = block.weights()
    for k in range(5):
        cin, cout, lrelu = c + GROWTH * k, (GROWTH if k < 4 else args.out), k < 4
        pieces = (tensor(n, c, s, s),) + tuple(tensor(n, GROWTH, s, s) for _ in range(k))
        w, b, g = weights[2 * k], weights[2 * k + 1], tensor(n, cout, s, s)

        conv = _conv_loss(fast_conv.dense_conv, k + 1, lrelu, g)
        flops = 2 * n * s * s * cin * cout * 9
        for label in ('mindspore', 'dnnl'):
            if label == 'mindspore':
                with fast_conv.mindspore_conv():
                    fwd, bwd = _fwd_bwd(conv, pieces + (w, b), args.repeat)
            else:
                fwd, bwd = _fwd_bwd(conv, pieces + (w, b), args.repeat)
            report(f'conv{k + 1} {cin}->{cout} ({label})', flops, fwd, bwd)
    x, g = tensor(n, c, s, s), tensor(n, args.out, s, s)

    def block_loss(x, *w):
        y = dense_block(x, w)
        return (y * y * g).sum()
    with fast_conv.mindspore_conv():
        report('DenseBlock (mindspore)', 0, *_fwd_bwd(block_loss, (x,) + weights, args.repeat))
    report('DenseBlock (dnnl)', 0, *_fwd_bwd(block_loss, (x,) + weights, args.repeat))
    haar = HaarDownsampling(3)
    hr = tensor(n, 3, 2 * s, 2 * s)
    g4 = tensor(n, 12, s, s)

    def haar_loss(x):
        y = haar(x)
        return (y * y * g4).sum()
    report('Haar 3 -> 12 channels', 0, *_fwd_bwd(haar_loss, (hr,), args.repeat))


if __name__ == '__main__':
    main()
