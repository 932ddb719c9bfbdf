"""A float64 numpy evaluation of InvRescaleNet (IRN, IRN_LD, IRN_E) and InvGreyNet (IRN-Color),
written from the spec.

Independent of the MindSpore code: convolutions by sliding windows, the space-to-depth by
strided slicing, the coupling formulas as the spec states them.
"""
import numpy as np

from test_network import haar_reference


def conv3x3(x, w, b):
    """Cross-correlation, padding 1, stride 1: x (B, Cin, H, W), w (Cout, Cin, 3, 3)."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # B,C,H,W,3,3
    return np.einsum('bchwuv,ocuv->bohw', win, w) + b[None, :, None, None]


def dense_block(x, p, prefix):
    feats = [x]
    for k in range(1, 6):
        y = conv3x3(np.concatenate(feats, 1), p[f'{prefix}.conv{k}.weight'], p[f'{prefix}.conv{k}.bias'])
        if k < 5:
            y = np.where(y >= 0, y, 0.2 * y)
        feats.append(y)
    return feats[-1]


def coupling(x, p, prefix, split, inverse):
    def s_of(y1):
        return 2 / (1 + np.exp(-dense_block(y1, p, prefix + '.H'))) - 1
    if not inverse:
        x1, x2 = x[:, :split], x[:, split:]
        y1 = x1 + dense_block(x2, p, prefix + '.F')
        return np.concatenate((y1, x2 * np.exp(s_of(y1)) + dense_block(y1, p, prefix + '.G')), 1)
    y1, y2 = x[:, :split], x[:, split:]
    x2 = (y2 - dense_block(y1, p, prefix + '.G')) * np.exp(-s_of(y1))
    return np.concatenate((y1 - dense_block(x2, p, prefix + '.F'), x2), 1)


def conv_down(x, w, inverse=False):
    """Spec §1: sub-pixel m = i*s + j of each s x s cell, output channel k*C + c."""
    s = int(round(w.shape[0] ** 0.5))
    if not inverse:
        b, c, h, wd = x.shape
        planes = np.stack([x[:, :, i::s, j::s] for i in range(s) for j in range(s)], 2)  # B,C,m,h,w
        out = np.einsum('km,bcmhw->bkchw', w, planes)
        return out.reshape(b, s * s * c, h // s, wd // s)
    b, cs2, h, wd = x.shape
    c = cs2 // (s * s)
    planes = np.einsum('mk,bkchw->bcmhw', np.linalg.inv(w), x.reshape(b, s * s, c, h, wd))
    out = np.zeros((b, c, h * s, wd * s))
    for i in range(s):
        for j in range(s):
            out[:, :, i::s, j::s] = planes[:, :, i * s + j]
    return out


def haar_inverse(y):
    """The Haar matrix / 4 is inverted by the Haar matrix (filters +-1)."""
    b, c4, h, w = y.shape
    c = c4 // 4
    f = y.reshape(b, 4, c, h, w)
    signs = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], np.float64)
    sub = np.einsum('fm,bfchw->bcmhw', signs, f)  # sub-pixels (0,0), (0,1), (1,0), (1,1)
    out = np.zeros((b, c, 2 * h, 2 * w))
    for m, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[:, :, i::2, j::2] = sub[:, :, m]
    return out


def evaluate(net, x, inverse=False):
    """Run ``net``'s layout with its weights in float64 (forward, or inverse when asked)."""
    p = {q.name: q.asnumpy().astype(np.float64) for q in net.get_parameters()}
    ops = list(enumerate(net.operations))
    x = np.asarray(x, np.float64)
    for i, op in (reversed(ops) if inverse else ops):
        kind = type(op).__name__
        if kind == 'ConvDownsampling':
            x = conv_down(x, p[f'operations.{i}.conv_weights'], inverse)
        elif kind == 'HaarDownsampling':
            x = haar_inverse(x) if inverse else haar_reference(x)
        elif kind == 'Conv1x1Grey':  # IRN-Color: a per-pixel 3x3 matrix
            w = p[f'operations.{i}.conv_weights']
            x = np.einsum('kj,bjhw->bkhw', np.linalg.inv(w) if inverse else w, x)
        else:  # the coupling's split is the LR (IRN) or grey (IRN-Color) width
            x = coupling(x, p, f'operations.{i}', net.lr_channels, inverse)
    return x
