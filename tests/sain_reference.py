"""Float64 numpy evaluations of SAIN's network and differentiable JPEG, written from SAIN.md.

Independent of the MindSpore code (plain loops and einsums), so a test can compare the port
with the exact function at any size, batch and scale.
"""
import itertools

import numpy as np

FILTERS = np.array([[[1, 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]], [[1, -1], [-1, 1]]],
                   np.float64)


def haar(x):
    b, c, h, w = x.shape
    patches = x.reshape(b, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return (np.einsum('bcijuv,fuv->bfcij', patches, FILTERS) / 4).reshape(b, 4 * c, h // 2, w // 2)


def haar_inverse(y):
    b, c4, h, w = y.shape
    bands = y.reshape(b, 4, c4 // 4, h, w)
    patches = np.einsum('bfcij,fuv->bcijuv', bands, FILTERS)  # H^T, no /4
    return patches.transpose(0, 1, 2, 4, 3, 5).reshape(b, c4 // 4, 2 * h, 2 * w)


def conv3x3(x, w, bias):
    b, _, h, wd = x.shape
    pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((b, w.shape[0], h, wd)) + bias[None, :, None, None]
    for i, j in itertools.product(range(3), range(3)):
        out += np.einsum('oc,bchw->bohw', w[:, :, i, j], pad[:, :, i:i + h, j:j + wd])
    return out


def dense(x, p, prefix):
    feats = [x]
    for k in range(1, 6):
        y = conv3x3(np.concatenate(feats, 1), p[f'{prefix}.conv{k}.weight'], p[f'{prefix}.conv{k}.bias'])
        if k < 5:
            y = np.where(y > 0, y, 0.2 * y)
        feats.append(y)
    return feats[-1]


def _scale(t):
    return 2.0 / (1.0 + np.exp(-t)) - 1.0  # clamp 1


def sain_forward(x, p, levels, e_blocks, v_blocks):
    """-> (out, tap of the last EIB)."""
    for _ in range(levels):
        x = haar(x)
    lr = None
    for i in range(e_blocks):
        q = f'down_operations.{i}'
        x1, x2 = x[:, :3], x[:, 3:]
        lr = x1 + dense(x2, p, q + '.E')
        y1 = lr - dense(x2, p, q + '.F')
        y2 = x2 * np.exp(_scale(dense(y1, p, q + '.H'))) + dense(y1, p, q + '.G')
        x = np.concatenate((y1, y2), 1)
    for i in range(v_blocks):
        q = f'comp_operations.{i}'
        x1, x2 = x[:, :3], x[:, 3:]
        y1 = x1 + dense(x2, p, q + '.F')
        y2 = x2 * np.exp(_scale(dense(y1, p, q + '.H'))) + dense(y1, p, q + '.G')
        x = np.concatenate((y1, y2), 1)
    return x, lr


def sain_inverse(y, p, levels, e_blocks, v_blocks):
    """-> (x, tap of down_operations[-1], the first EIB undone)."""
    for i in reversed(range(v_blocks)):
        q = f'comp_operations.{i}'
        y1, y2 = y[:, :3], y[:, 3:]
        x2 = (y2 - dense(y1, p, q + '.G')) / np.exp(_scale(dense(y1, p, q + '.H')))
        y = np.concatenate((y1 - dense(x2, p, q + '.F'), x2), 1)
    tap = None
    for i in reversed(range(e_blocks)):
        q = f'down_operations.{i}'
        y1, y2 = y[:, :3], y[:, 3:]
        x2 = (y2 - dense(y1, p, q + '.G')) / np.exp(_scale(dense(y1, p, q + '.H')))
        lr = y1 + dense(x2, p, q + '.F')
        tap = lr if tap is None else tap
        y = np.concatenate((lr - dense(x2, p, q + '.E'), x2), 1)
    for _ in range(levels):
        y = haar_inverse(y)
    return y, tap


Y_TABLE = np.array([[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
                    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
                    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
                    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], float)
C_TABLE = np.full((8, 8), 99.0)
C_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def diffjpeg(x, quality, differentiable=True):
    """SAIN.md 3.1 in float64 (the scaled tables as float32 products, as the authors' are)."""
    f = np.float32((50.0 / quality) if quality < 50 else (200 - 2 * quality) / 100.0)
    v = 255.0 * x.transpose(0, 2, 3, 1)
    r, g, b = v[..., 0], v[..., 1], v[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    n, h, w = y.shape
    pool = lambda c: c.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    k = np.arange(8)
    alpha = np.where(k == 0, 1 / np.sqrt(2), 1.0)
    basis = np.cos((2 * k[:, None] + 1) * k[None, :] * np.pi / 16)  # [pixel x, frequency u]

    def code(plane, table):
        ph, pw = plane.shape[1:]
        blocks = plane.reshape(n, ph // 8, 8, pw // 8, 8).transpose(0, 1, 3, 2, 4) - 128
        coef = 0.25 * np.outer(alpha, alpha) * np.einsum('...xy,xu,yv->...uv', blocks, basis, basis)
        t = coef / (table.astype(np.float32) * f).astype(np.float64)
        if differentiable:
            m = np.arange(1, 10)
            t = t - (((-1.0) ** (m + 1) / m) * np.sin(2 * np.pi * m * t[..., None])).sum(-1) / np.pi
        else:
            t = np.round(t)
        coef = t * (table.astype(np.float32) * f)
        pix = 0.25 * np.einsum('...uv,xu,yv->...xy', coef * np.outer(alpha, alpha), basis, basis) + 128
        return pix.transpose(0, 1, 3, 2, 4).reshape(n, ph, pw)

    y = code(y, Y_TABLE)
    up = lambda c: np.repeat(np.repeat(code(pool(c), C_TABLE), 2, 1), 2, 2)
    cb, cr = up(cb) - 128, up(cr) - 128
    rgb = np.stack((y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb), 1)
    return np.clip(rgb, 0, 255) / 255
