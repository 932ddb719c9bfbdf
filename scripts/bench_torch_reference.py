"""PyTorch reference timing of one IRN training step, for a same-machine comparison.

Needs PyTorch (not a project dependency): run it from a separate environment, e.g.
    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch numpy
    /tmp/tv/bin/python scripts/bench_torch_reference.py --scale 4 --batch 16 --patch 144
It re-implements the authors' network and loss (spec §1-2) in a few lines of PyTorch, with
their layouts (NCHW, grouped-conv Haar, concatenating DenseBlock) and Adam + clipping.
"""
import argparse
import resource
import time

import torch
from torch import nn


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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--scale', type=int, default=4)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--patch', type=int, default=144)
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    s = a.scale
    net = IRN([8] * {2: 1, 4: 2, 8: 3}[s])
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
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f'pytorch {torch.__version__} x{s} batch {a.batch} patch {a.patch} threads {a.threads}: '
          f'forward {fwd:.2f} s, step {min(times):.2f} s (min of {a.steps}), peak RSS {rss:.1f} GB')


if __name__ == '__main__':
    main()
