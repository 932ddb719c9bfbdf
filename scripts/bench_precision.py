"""Precision of MindSpore's float32 CPU elementwise kernels against float64 (not a test).

    python scripts/benchmark.py precision [--count 184000]

Max relative error on ``count`` float32 values of N(0, 9) (|x| + 1e-6 for sqrt) of each kernel
in float32, of the same kernel on the values cast to float64, and of the correctly rounded
float32 result; and of the coupling scale exp(2 sigmoid(h) - 1) as the network computes it
on CPU (``src.network.fast_conv.exp_scale``) and with MindSpore's float32 kernels.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--count', type=int, default=184000)
    a = p.parse_args()
    from mindspore import Tensor, nn, ops
    from src.network import fast_conv
    from src.utils.device import setup_device
    setup_device('CPU')
    x = (np.random.default_rng(0).standard_normal(a.count) * 3).astype(np.float32)
    xp = np.abs(x) + np.float32(1e-6)
    x64 = x.astype(np.float64)
    sig = 1 / (1 + np.exp(-x64))
    cases = [('exp', ops.exp, x, np.exp(x64)), ('sigmoid', ops.sigmoid, x, sig),
             ('tanh', ops.tanh, x, np.tanh(x64)),
             ('sqrt', ops.sqrt, xp, np.sqrt(xp.astype(np.float64)))]

    def rel(got, ref):
        return float(np.max(np.abs(got.astype(np.float64) - ref) / np.abs(ref)))

    print(f'max relative error on {a.count} values: float32 kernel / float64 kernel / '
          'correctly rounded float32')
    for name, fn, inp, ref in cases:
        f32 = fn(Tensor(inp)).asnumpy()
        f64 = fn(Tensor(inp.astype(np.float64))).asnumpy().astype(np.float32)
        print(f'{name:>8}: {rel(f32, ref):.2e} / {rel(f64, ref):.2e} / '
              f'{rel(ref.astype(np.float32), ref):.2e}')

    class Scale(nn.Cell):
        def construct(self, h):
            return fast_conv.exp_scale(h, 1.0)

    ref = np.exp(2 * sig - 1)
    ours = Scale()(Tensor(x)).asnumpy()
    with fast_conv.mindspore_conv():
        plain = Scale()(Tensor(x)).asnumpy()
    print(f'coupling scale exp(2 sigmoid(h) - 1): ours ({fast_conv.backend()}) {rel(ours, ref):.2e}, '
          f'MindSpore float32 kernels {rel(plain, ref):.2e}, correctly rounded '
          f'{rel(ref.astype(np.float32), ref):.2e}')


if __name__ == '__main__':
    main()
