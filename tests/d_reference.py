"""An independent float64 numpy Discriminator_VGG_128 (forward and hand-written backward).

Written from the spec (EXTENSIONS.md section 4), not from src/: it checks the MindSpore D's
gradients, which the authors' fixture pins only until D's first update (see test_irn_plus.py).
"""
import numpy as np

# (conv, kernel, stride, has bias, BatchNorm after it)
LAYERS = [('conv0_0', 3, 1, True, None), ('conv0_1', 4, 2, False, 'bn0_1')] + [
    (f'conv{s}_{j}', 3 if j == 0 else 4, 1 if j == 0 else 2, False, f'bn{s}_{j}')
    for s in range(1, 5) for j in (0, 1)]


def _lrelu(x):
    return np.where(x > 0, x, 0.2 * x)


def _taps(k, stride, out_h, out_w):
    for ky in range(k):
        for kx in range(k):
            yield ky, kx, (slice(None), slice(None), slice(ky, ky + stride * (out_h - 1) + 1, stride),
                           slice(kx, kx + stride * (out_w - 1) + 1, stride))


def _conv(x, w, b, stride):
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out_h, out_w = (x.shape[2] + 2 - k) // stride + 1, (x.shape[3] + 2 - k) // stride + 1
    y = np.zeros((x.shape[0], w.shape[0], out_h, out_w))
    for ky, kx, window in _taps(k, stride, out_h, out_w):
        y += np.einsum('nchw,oc->nohw', xp[window], w[:, :, ky, kx], optimize=True)
    return (y if b is None else y + b[None, :, None, None]), xp


def _conv_grad(dy, xp, w, stride):
    dw, dxp = np.zeros_like(w), np.zeros_like(xp)
    for ky, kx, window in _taps(w.shape[2], stride, dy.shape[2], dy.shape[3]):
        dw[:, :, ky, kx] = np.einsum('nohw,nchw->oc', dy, xp[window], optimize=True)
        dxp[window] += np.einsum('nohw,oc->nchw', dy, w[:, :, ky, kx], optimize=True)
    return dxp[:, :, 1:-1, 1:-1], dw, dy.sum((0, 2, 3))


def _bn(x, gamma, beta):
    mean = x.mean((0, 2, 3), keepdims=True)
    inv = 1 / np.sqrt(((x - mean) ** 2).mean((0, 2, 3), keepdims=True) + 1e-5)
    xhat = (x - mean) * inv
    return gamma[None, :, None, None] * xhat + beta[None, :, None, None], (xhat, inv)


def _bn_grad(dy, cache, gamma):
    xhat, inv = cache
    dx = gamma[None, :, None, None] * inv * (dy - dy.mean((0, 2, 3), keepdims=True)
                                             - xhat * (dy * xhat).mean((0, 2, 3), keepdims=True))
    return dx, (dy * xhat).sum((0, 2, 3)), dy.sum((0, 2, 3))


def loss_and_grads(x, params, target):
    """Mean BCE-with-logits of D(x) against ``target`` (1 or 0) and its gradients, float64.

    BatchNorms use the batch statistics (biased variance, eps 1e-5), as D always does.
    """
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    fea, caches = np.asarray(x, np.float64), []
    for conv, _, stride, bias, bn in LAYERS:
        pre, xp = _conv(fea, p[conv + '.weight'], p[conv + '.bias'] if bias else None, stride)
        bn_cache = None
        if bn:
            pre, bn_cache = _bn(pre, p[bn + '.weight'], p[bn + '.bias'])
        caches.append((conv, stride, bn, xp, bn_cache, pre))
        fea = _lrelu(pre)
    flat = fea.reshape(fea.shape[0], -1)
    h1 = flat @ p['linear1.weight'].T + p['linear1.bias']
    a1 = _lrelu(h1)
    logits = a1 @ p['linear2.weight'].T + p['linear2.bias']
    loss = np.mean(np.logaddexp(0, -logits) if target == 1 else np.logaddexp(0, logits))
    grads = {}
    d = (1 / (1 + np.exp(-logits)) - target) / logits.size
    grads['linear2.weight'], grads['linear2.bias'] = d.T @ a1, d.sum(0)
    dh1 = (d @ p['linear2.weight']) * np.where(h1 > 0, 1, 0.2)
    grads['linear1.weight'], grads['linear1.bias'] = dh1.T @ flat, dh1.sum(0)
    dfea = (dh1 @ p['linear1.weight']).reshape(fea.shape)
    for conv, stride, bn, xp, bn_cache, pre in reversed(caches):
        dpre = dfea * np.where(pre > 0, 1, 0.2)
        if bn:
            dpre, grads[bn + '.weight'], grads[bn + '.bias'] = _bn_grad(dpre, bn_cache, p[bn + '.weight'])
        dfea, grads[conv + '.weight'], dbias = _conv_grad(dpre, xp, p[conv + '.weight'], stride)
        if conv == 'conv0_0':
            grads['conv0_0.bias'] = dbias
    return logits, loss, grads
