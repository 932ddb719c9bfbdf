"""Float64 numpy evaluation of the invertible blocks, written from the spec (test reference)."""
import numpy as np


def conv3x3(x, w, b):
    """3x3 cross-correlation, zero padding 1, with bias: x (B, C, H, W), w (O, C, 3, 3)."""
    _, _, h, wd = x.shape
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((x.shape[0], w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum('oc,bchw->bohw', w[:, :, i, j], p[:, :, i:i + h, j:j + wd])
    return out + b[None, :, None, None]


def dense_block(x, params, prefix):
    """DenseBlock: conv1-4 with LeakyReLU 0.2 on dense concatenations, conv5 linear."""
    feats = [x]
    for k in range(1, 6):
        y = conv3x3(np.concatenate(feats, 1), params[f'{prefix}.conv{k}.weight'],
                    params[f'{prefix}.conv{k}.bias'])
        feats.append(np.where(y >= 0, y, 0.2 * y) if k < 5 else y)
    return feats[-1]


def _scale(params, prefix, y1):
    return 2 / (1 + np.exp(-dense_block(y1, params, prefix + '.H'))) - 1  # clamp 1


def coupling(x, params, prefix, split, inverse=False):
    """InvBlockExp(split) forward or reverse."""
    a, b = x[:, :split], x[:, split:]
    if not inverse:
        y1 = a + dense_block(b, params, prefix + '.F')
        y2 = b * np.exp(_scale(params, prefix, y1)) + dense_block(y1, params, prefix + '.G')
        return np.concatenate((y1, y2), 1)
    x2 = (b - dense_block(a, params, prefix + '.G')) * np.exp(-_scale(params, prefix, a))
    return np.concatenate((a - dense_block(x2, params, prefix + '.F'), x2), 1)


def mix(x, m):
    """Per-pixel matrix: out[:, k] = sum_j m[k, j] x[:, j]."""
    return np.einsum('kj,bjhw->bkhw', m, x)


def float64_params(net):
    """{name: float64 array} of a MindSpore Cell's parameters."""
    return {p.name: p.asnumpy().astype(np.float64) for p in net.get_parameters()}
