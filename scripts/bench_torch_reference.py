"""PyTorch reference timings (training step, or inference) for a same-machine comparison.

Needs PyTorch (not a project dependency): run it from a separate environment, e.g.
    python -m venv /work/torchvenv && /work/torchvenv/bin/pip install torch numpy
    /work/torchvenv/bin/python scripts/bench_torch_reference.py --scale 4 --batch 16 --patch 144
    /work/torchvenv/bin/python scripts/bench_torch_reference.py --infer --scale 4 --size 1920x1080
(PyPI's default torch wheel is the CUDA build, ~5.5 GB installed; it runs on CPU.) The
benchmarks call it themselves, interleaved with ours, when given ``--torch_python``:
``scripts/benchmark.py train|infer ... --torch_python /work/torchvenv/bin/python``.
It re-implements the authors' network and loss (spec §1-2) in a few lines of PyTorch, with
their layouts (NCHW, grouped-conv Haar, concatenating DenseBlock) and Adam + clipping.
``--infer`` times their test path under ``torch.no_grad()``: forward + quantisation (down),
inverse of cat(LR, z) (up), on the image and z of ``scripts/bench_inputs.py``. ``--json``
prints one JSON line.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_inputs  # noqa: E402


class Dense(nn.Module):
    def __init__(self, cin, cout, gc=32):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin + k * gc, gc if k < 4 else cout, 3, 1, 1)
                                   for k in range(5))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x):
        feats = [x]
        for k, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, 1))
            feats.append(self.act(out) if k < 4 else out)
        return feats[-1]


class Haar(nn.Module):
    def __init__(self, c):
        super().__init__()
        w = torch.tensor([[[1., 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]], [[1, -1], [-1, 1]]])
        self.register_buffer('w', w.unsqueeze(1).repeat(c, 1, 1, 1))
        self.c = c

    def forward(self, x, rev=False):
        b, c, h, w = x.shape
        if not rev:
            out = nn.functional.conv2d(x, self.w, stride=2, groups=self.c) / 4
            return out.reshape(b, self.c, 4, h // 2, w // 2).transpose(1, 2).reshape(b, 4 * self.c, h // 2, w // 2)
        out = x.reshape(b, 4, self.c, h, w).transpose(1, 2).reshape(b, 4 * self.c, h, w)
        return nn.functional.conv_transpose2d(out, self.w, stride=2, groups=self.c)


class Block(nn.Module):
    def __init__(self, c, s=3):
        super().__init__()
        self.s = s
        self.F, self.G, self.H = Dense(c - s, s), Dense(s, c - s), Dense(s, c - s)

    def forward(self, x, rev=False):
        x1, x2 = x[:, :self.s], x[:, self.s:]
        if not rev:
            y1 = x1 + self.F(x2)
            y2 = x2 * torch.exp(torch.sigmoid(self.H(y1)) * 2 - 1) + self.G(y1)
            return torch.cat((y1, y2), 1)
        x2 = (x2 - self.G(x1)) / torch.exp(torch.sigmoid(self.H(x1)) * 2 - 1)
        return torch.cat((x1 - self.F(x2), x2), 1)


class IRN(nn.Module):
    def __init__(self, block_num):
        super().__init__()
        ops, c = [], 3
        for n in block_num:
            ops.append(Haar(c))
            c *= 4
            ops.extend(Block(c) for _ in range(n))
        self.ops = nn.ModuleList(ops)

    def forward(self, x, rev=False):
        for op in (reversed(self.ops) if rev else self.ops):
            x = op(x, rev)
        return x


def _set_weights(net):
    params = list(net.parameters())
    with torch.no_grad():
        for p, w in zip(params, bench_inputs.weights([tuple(p.shape) for p in params])):
            p.copy_(torch.from_numpy(w))


def infer(a, net):
    """Down and up of one image as the authors' test code runs them; returns the timings."""
    s = a.scale
    w, h = (int(v) for v in a.size.lower().split('x'))
    _set_weights(net)
    hr = torch.from_numpy(np.ascontiguousarray(bench_inputs.image(w, h).transpose(2, 0, 1)[None]))
    z = bench_inputs.z_sample(h // s, w // s, 3 * s * s - 3)
    z = torch.from_numpy(np.ascontiguousarray(z.transpose(2, 0, 1)[None]))
    res = {'impl': f'pytorch {torch.__version__}', 'scale': s, 'size': a.size, 'tile': 0}
    with torch.no_grad():
        for name in ('down', 'up'):
            times = []
            for _ in range(1 + a.repeat):
                t = time.perf_counter()
                if name == 'down':
                    lr = torch.round(net(hr)[:, :3].clamp(0, 1) * 255) / 255
                else:
                    net(torch.cat((lr, z), 1), rev=True)
                times.append(time.perf_counter() - t)
            res[f'{name}_first_s'] = times[0]
            res[f'{name}_s'] = float(np.median(times[1:])) if a.repeat else times[0]
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--scale', type=int, default=4)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--patch', type=int, default=144)
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--infer', action='store_true', help='time inference instead of training')
    p.add_argument('--size', default='1920x1080', help='--infer: WxH of the HR image')
    p.add_argument('--repeat', type=int, default=1, help='--infer: timed calls after the first')
    p.add_argument('--json', action='store_true', help='print one JSON line')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    s = a.scale
    net = IRN([8] * {2: 1, 4: 2, 8: 3}[s])
    if a.infer:
        res = infer(a, net)
        res['peak_rss_gb'] = bench_inputs.peak_rss_gb()
        print(json.dumps(res) if a.json else
              f"{res['impl']} x{s} {a.size}: down {res['down_s']:.2f} s (first {res['down_first_s']:.2f}), "
              f"up {res['up_s']:.2f} s (first {res['up_first_s']:.2f}), peak RSS {res['peak_rss_gb']:.2f} GB")
        return
    opt = torch.optim.Adam(net.parameters(), 2e-4, weight_decay=1e-5)
    hr = torch.rand(a.batch, 3, a.patch, a.patch)
    lr_ref = torch.rand(a.batch, 3, a.patch // s, a.patch // s)
    with torch.no_grad():
        t = time.time()
        net(hr)
        fwd = time.time() - t
    times = []
    for _ in range(a.steps):
        t = time.time()
        out = net(hr)
        y, z = out[:, :3], out[:, 3:]
        l_fit = s * s * ((y - lr_ref) ** 2).sum((1, 2, 3)).mean()
        l_ce = (z ** 2).sum() / a.batch
        q = y + (torch.round(y.clamp(0, 1) * 255) / 255 - y).detach()
        rec = net(torch.cat((q, torch.randn_like(z)), 1), rev=True)
        l_rec = torch.sqrt((hr - rec) ** 2 + 1e-6).sum((1, 2, 3)).mean()
        opt.zero_grad()
        (l_fit + l_ce + l_rec).backward()
        nn.utils.clip_grad_norm_(net.parameters(), 10)
        opt.step()
        times.append(time.time() - t)
    rss = bench_inputs.peak_rss_gb()
    if a.json:
        print(json.dumps({'impl': f'pytorch {torch.__version__}', 'scale': s, 'batch': a.batch,
                          'patch': a.patch, 'step_s': float(np.median(times)), 'forward_s': fwd,
                          'peak_rss_gb': rss}))
        return
    print(f'pytorch {torch.__version__} x{s} batch {a.batch} patch {a.patch} threads {a.threads}: '
          f'forward {fwd:.2f} s, step {np.median(times):.2f} s (median of {a.steps}), '
          f'peak RSS {rss:.1f} GB')


if __name__ == '__main__':
    main()
