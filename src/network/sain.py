"""SAIN (AAAI 2023): the self-asymmetric invertible network and its Gaussian-mixture latent.

Layout (SAIN.md section 1): every Haar level first (3 -> 12 -> 48 channels), then ``e_blocks``
enhanced invertible blocks (EIB, the downscaling module) and ``v_blocks`` vanilla blocks (VB =
IRN's coupling block, the compression simulator), all at the full C = 3 * 4**L channels.
Both directions return a pair ``(out, lr)``: ``lr`` is the image the last EIB in the list
(``down_operations[-1]``) exposes during that call; forward: the high-quality LR that is
transmitted; inverse: the reconstructed LR (that block is the first one undone).
Cell names follow the authors' (``haar_operations``, ``down_operations``, ``comp_operations``,
``gmm.gmm_para``) so their state_dict maps one to one.
"""
import math
import re

import numpy as np
import mindspore as ms
from mindspore import nn, ops, Parameter, Tensor

from src.network.blocks import (DenseBlock, HaarDownsampling, InvBlockExp, affine_forward,
                                affine_inverse, dense_block)
from src.utils.errors import IRNError

__all__ = ['EnhancedInvBlock', 'GaussianMixture', 'SAINet', 'eib_forward', 'eib_inverse']


def eib_forward(x, w, split, clamp, half=False):
    """EIB forward; ``w`` = E, F, G, H weights (40). Returns ``(out, lr)``.

    lr = x1 + E(x2); y1 = lr - F(x2); y2 = x2 * exp(s(y1)) + G(y1); out = [y1 | y2].
    """
    x1, x2 = x[:, :split], x[:, split:]
    lr = x1 + dense_block(x2, w[:10], half)
    y1 = lr - dense_block(x2, w[10:20], half)
    return ops.cat((y1, affine_forward(x2, y1, w[20:], clamp, half)), 1), lr


def eib_inverse(y, w, split, clamp, half=False):
    """Exact inverse of :func:`eib_forward`: x2 first, then lr = y1 + F(x2), x1 = lr - E(x2)."""
    y1, y2 = y[:, :split], y[:, split:]
    x2 = affine_inverse(y2, y1, w[20:], clamp, half)
    lr = y1 + dense_block(x2, w[10:20], half)
    return ops.cat((lr - dense_block(x2, w[:10], half), x2), 1), lr


class EnhancedInvBlock(nn.Cell):
    """SAIN's enhanced invertible block: IRN's coupling plus a sub-network E whose output
    x1 + E(x2) is exposed as an image (the tap); F is subtracted from it."""

    def __init__(self, channel_num, channel_split_num, rng, clamp=1.0):
        super().__init__()
        self.split1 = channel_split_num
        self.split2 = channel_num - channel_split_num
        self.clamp = clamp
        self.half = False
        self.E = DenseBlock(self.split2, self.split1, rng)
        self.F = DenseBlock(self.split2, self.split1, rng)
        self.G = DenseBlock(self.split1, self.split2, rng)
        self.H = DenseBlock(self.split1, self.split2, rng)

    def weights(self):
        """The 40 weight tensors of E, F, G and H, in the order the EIB functions take."""
        return self.E.weights() + self.F.weights() + self.G.weights() + self.H.weights()

    def construct(self, x):
        return eib_forward(x, self.weights(), self.split1, self.clamp, self.half)

    def inverse(self, y):
        """Exact inverse of :meth:`construct`; returns ``(x, lr)``."""
        return eib_inverse(y, self.weights(), self.split1, self.clamp, self.half)


def _f64(fn, x):
    """``fn`` evaluated in float64, rounded to float32: a correctly rounded float32 result
    (MindSpore's float32 CPU exp / log / softmax are off by up to 1e2 ulp)."""
    return fn(x.astype(ms.float64)).astype(ms.float32)


def _softmax(x):
    return ops.softmax(x, -1)


class GaussianMixture(nn.Cell):
    """The learnable 1-D K-component mixture every latent element is drawn from (SAIN.md sec. 2).

    ``gmm_para`` (3, K) holds the rows [mixture logits, means, log-variances], initialised
    1e-4 * N(0, 1). Sampling is the authors' hard Gumbel-softmax with straight-through gradient
    plus the reparameterised Normal; the noise comes from the caller (see :meth:`construct`).
    """

    def __init__(self, components, rng):
        super().__init__()
        self.components = components
        init = (1e-4 * rng.standard_normal((3, components))).astype(np.float32)
        self.gmm_para = Parameter(Tensor(init), name='gmm_para')

    def parts(self):
        """(probs, mu, std), each (K,): Categorical's renormalised softmax, means, std."""
        pis, mus, logvars = self.gmm_para[0], self.gmm_para[1], self.gmm_para[2]
        std = _f64(ops.exp, 0.5 * ops.clamp(logvars, -20.0, 20.0))
        weights = _f64(_softmax, pis)
        return weights / weights.sum(), mus, std

    def construct(self, gumbel, eps):
        """z of shape S from ``gumbel`` = -log(E), E ~ Exp(1), and ``eps`` ~ N(0, 1), both S x K.

        comp = one_hot(argmax soft) - stopgrad(soft) + soft with soft = softmax(log p + gumbel);
        z = sum_k comp_k * (mu_k + eps_k * std_k).
        """
        probs, mu, std = self.parts()
        soft = _f64(_softmax, _f64(ops.log, probs) + gumbel)
        hot = ops.argmax(soft, -1, keepdim=True).astype(ms.float32)  # float: exports to ONNX
        hard = (ops.arange(self.components).astype(ms.float32) == hot).astype(ms.float32)
        comp = hard - ops.stop_gradient(soft) + soft
        return (comp * (mu + eps * std)).sum(-1)


class SAINet(nn.Cell):
    """SAIN for scale 2**L: HR (B, 3, H, W) <-> (B, 3*4**L, H/s, W/s), with the LR taps.

    ``construct(x)`` -> ``(out, lr)``: out[:, :3] is the simulated compressed LR, out[:, 3:]
    the (unused) latent, lr the high-quality LR of the last EIB. ``inverse(y)`` -> ``(x, lr)``
    with lr the reconstructed LR of the first EIB undone.

    Args:
        scale (int): 2 or 4 (any power of two).
        e_blocks, v_blocks (int): enhanced / vanilla blocks (authors: x2 5 and 3, x4 10 and 6).
        gmm_components (int): K of the latent mixture (authors: 5).
        channel_in (int): image channels (3).
        seed (int): seed of the numpy generator for the initialisation.
    """

    def __init__(self, scale, e_blocks, v_blocks, gmm_components=5, channel_in=3, seed=0):
        super().__init__()
        levels = int(round(math.log2(scale))) if scale >= 2 else 0
        if scale < 2 or 2 ** levels != scale:
            raise IRNError(f'SAIN scale {scale}: expected a power of two >= 2')
        if e_blocks < 1 or v_blocks < 0:
            raise IRNError(f'SAIN needs e_blocks >= 1 and v_blocks >= 0, got {e_blocks}, {v_blocks}')
        rng = np.random.default_rng(seed)
        self.scale, self.e_blocks, self.v_blocks = scale, e_blocks, v_blocks
        self.gmm_components, self.channel_in = gmm_components, channel_in
        haar, channels = [], channel_in
        for _ in range(levels):
            haar.append(HaarDownsampling(channels))
            channels *= 4
        self.channel_out = channels
        self.haar_operations = nn.CellList(haar)
        self.down_operations = nn.CellList(
            [EnhancedInvBlock(channels, channel_in, rng) for _ in range(e_blocks)])
        self.comp_operations = nn.CellList(
            [InvBlockExp(channels, channel_in, rng) for _ in range(v_blocks)])
        self.gmm = GaussianMixture(gmm_components, rng)

    def construct(self, x):
        for op in self.haar_operations:
            x = op(x)
        x, lr = self.down_operations[0](x)
        for i in range(1, self.e_blocks):
            x, lr = self.down_operations[i](x)
        for op in self.comp_operations:
            x = op(x)
        return x, lr

    def inverse(self, y):
        """(B, C, h, w) -> (x (B, 3, h*s, w*s), reconstructed LR (B, 3, h, w))."""
        for i in range(self.v_blocks - 1, -1, -1):  # slicing a CellList renames params
            y = self.comp_operations[i].inverse(y)
        y, lr = self.down_operations[self.e_blocks - 1].inverse(y)
        for i in range(self.e_blocks - 2, -1, -1):
            y, _ = self.down_operations[i].inverse(y)
        for i in range(len(self.haar_operations) - 1, -1, -1):
            y = self.haar_operations[i].inverse(y)
        return y, lr

    def latent_shape(self, lr_shape):
        """Shape of z for an LR batch shape (B, 3, h, w)."""
        b, _, h, w = lr_shape
        return (b, self.channel_out - self.channel_in, h, w)

    def upscale(self, lr, z):
        """(compressed LR, z) -> HR."""
        return self.inverse(ops.cat((lr, z), 1))[0]

    def num_parameters(self):
        """(all, trainable) parameter counts as the authors' ``print_network`` gives them: their
        Haar kernels (4c x 1 x 2 x 2 per level) are fixed parameters; ours are reshapes."""
        trainable = sum(p.size for p in self.trainable_params())
        haar = sum(16 * op.channel_in for op in self.haar_operations)
        return trainable + haar, trainable

    @staticmethod
    def from_torch(state, path):
        """The authors' state_dict -> (our weights, architecture record)."""
        return torch_state_to_sain(state, path)

    def arch(self):
        """The architecture facts a checkpoint records."""
        return {'net': 'SAINet', 'scale': self.scale, 'e_blocks': self.e_blocks,
                'v_blocks': self.v_blocks, 'gmm_components': self.gmm_components}


_HAAR = np.array([[[1, 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]], [[1, -1], [-1, 1]]],
                 np.float32)[:, None]  # the authors' 4 filters, (4, 1, 2, 2)
_BLOCK_KEY = r'(down_operations\.(\d+)\.[EFGH]|comp_operations\.(\d+)\.[FGH])\.conv[1-5]\.(weight|bias)'
_KEY = re.compile(rf'^(haar_operations\.(\d+)\.haar_weights|{_BLOCK_KEY}|gmm\.gmm_para)$')


def torch_state_to_sain(state, path='<state>'):
    """Map an authors' SAIN state_dict to ours and read its layout.

    Returns ``(weights, arch)`` with ``arch`` as :meth:`SAINet.arch`; the fixed Haar kernels are
    checked (shape and values) and dropped. Raises IRNError naming ``path`` on a foreign key,
    a gap in the numbering, or a wrong Haar kernel.
    """
    state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
    bad = [k for k in state if not _KEY.match(k)]
    if bad:
        raise IRNError(f'{path}: unexpected key {bad[0]!r} ({len(bad)} unknown keys): '
                       'not a SAIN state_dict')
    if 'gmm.gmm_para' not in state:
        raise IRNError(f'{path}: no gmm.gmm_para: not a SAIN state_dict')
    counts = {}
    for group in ('haar_operations', 'down_operations', 'comp_operations'):
        idx = sorted({int(k.split('.')[1]) for k in state if k.startswith(group + '.')})
        if idx != list(range(len(idx))):
            raise IRNError(f'{path}: {group} are not numbered 0..{len(idx) - 1}')
        counts[group] = len(idx)
    if not counts['haar_operations'] or not counts['down_operations']:
        raise IRNError(f'{path}: needs at least one Haar level and one enhanced block')
    channels = 3
    for i in range(counts['haar_operations']):
        w = np.asarray(state[f'haar_operations.{i}.haar_weights'])
        if w.shape != (4 * channels, 1, 2, 2) or not np.array_equal(w, np.tile(_HAAR, (channels, 1, 1, 1))):
            raise IRNError(f'{path}: haar_operations.{i}.haar_weights is not the Haar kernel for '
                           f'{channels} channels (shape {w.shape})')
        channels *= 4
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in state.items() if 'haar' not in k}
    arch = {'net': 'SAINet', 'scale': 2 ** counts['haar_operations'],
            'e_blocks': counts['down_operations'], 'v_blocks': counts['comp_operations'],
            'gmm_components': int(weights['gmm.gmm_para'].shape[-1])}
    return weights, arch

