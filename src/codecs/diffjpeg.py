"""SAIN's differentiable JPEG simulator (the authors' modified DiffJPEG, SAIN.md section 3.1).

RGB in [0, 1] x 255 -> YCbCr (JFIF) -> 4:2:0 chroma by 2x2 averages -> 8x8 blocks -> DCT ->
divide by the quality-scaled table -> r(.) -> multiply back -> IDCT -> chroma by 2x2
replication -> RGB -> clamp [0, 255] / 255, all in float32. Where it differs from libjpeg, it
follows the authors: the luma table untransposed, the scaled tables neither rounded nor clipped,
nearest chroma upsampling, no 8-bit rounding of the output, and r = the 9-term Fourier series of
the sawtooth, t - (1/pi) * sum_n (-1)^(n+1)/n * sin(2 pi n t) (``differentiable=False``: round).
The tables, DCT bases and colour matrices are constants. Height and width must be multiples of
16 (4:2:0, then 8x8 blocks). The backward pass is MindSpore's autodiff of this graph.
"""
import itertools
import math

import numpy as np
import mindspore as ms
from mindspore import nn, ops, Tensor

from src.utils.errors import IRNError

__all__ = ['DiffJPEG', 'quality_to_factor', 'check_size', 'Y_TABLE', 'C_TABLE']

Y_TABLE = np.array([[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
                    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
                    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
                    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]],
                   np.float32)
C_TABLE = np.full((8, 8), 99, np.float32)
C_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]

_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5],
                        [0.5, -0.418688, -0.081312]], np.float32).T
_YCC_TO_RGB = np.array([[1., 0., 1.402], [1, -0.344136, -0.714136], [1, 1.772, 0]], np.float32).T
_FOURIER_TERMS = 9


def quality_to_factor(quality):
    """The authors' table scale: q < 50 -> 50 / q, else (200 - 2q) / 100 (q = 100 gives 0)."""
    if not 1 <= quality < 100:
        raise IRNError(f'DiffJPEG quality {quality}: expected 1 <= q < 100 (q = 100 divides by 0)')
    return (5000.0 / quality if quality < 50 else 200.0 - quality * 2) / 100.0


def check_size(height, width, what='DiffJPEG input'):
    """Raise IRNError unless both sizes are multiples of 16."""
    if height % 16 or width % 16:
        raise IRNError(f'{what} is {height}x{width}: the differentiable JPEG needs height and '
                       'width that are multiples of 16')


def _dct_bases():
    """(64, 64) float32 forward and inverse DCT bases, rows = pixel / coefficient (x, y)."""
    fwd = np.zeros((8, 8, 8, 8), np.float32)
    inv = np.zeros((8, 8, 8, 8), np.float32)
    for x, y, u, v in itertools.product(range(8), repeat=4):
        fwd[x, y, u, v] = np.cos((2 * x + 1) * u * np.pi / 16) * np.cos((2 * y + 1) * v * np.pi / 16)
        inv[x, y, u, v] = np.cos((2 * u + 1) * x * np.pi / 16) * np.cos((2 * v + 1) * y * np.pi / 16)
    alpha = np.array([1. / np.sqrt(2)] + [1] * 7)
    return fwd.reshape(64, 64), inv.reshape(64, 64), np.outer(alpha, alpha).astype(np.float32).reshape(64)


def fourier_round(t, freq, coef, inv_pi):
    """The authors' differentiable rounding, t - (1/pi) * sum_n coef_n * sin(freq_n * t), with
    freq_n = 2 pi n and coef_n = (-1)^(n+1) / n as tensors of t's dtype, summed from n = 1 up."""
    total = coef[0] * ops.sin(freq[0] * t)
    for n in range(1, _FOURIER_TERMS):
        total = total + coef[n] * ops.sin(freq[n] * t)
    return t - inv_pi * total


def _blocks(plane):
    """(B, H, W) -> (B * H/8 * W/8, 64): row-major 8x8 blocks, each flattened row-major."""
    b, h, w = plane.shape
    return plane.reshape(b, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4).reshape(-1, 64)


def _merge(blocks, b, h, w):
    """Inverse of :func:`_blocks`."""
    return blocks.reshape(b, h // 8, w // 8, 8, 8).transpose(0, 1, 3, 2, 4).reshape(b, h, w)


class DiffJPEG(nn.Cell):
    """The authors' DiffJPEG at a fixed quality: ``construct(x)`` with x (B, 3, H, W) in [0, 1].

    Args:
        quality (int): JPEG quality factor, 1..99 (the authors train at 75).
        differentiable (bool): Fourier-series rounding (training) or ``round``.
    """

    def __init__(self, quality=75, differentiable=True, dtype=ms.float32):
        super().__init__()
        self.quality, self.differentiable = quality, differentiable
        factor = np.float32(quality_to_factor(quality))
        fwd, inv, alpha = _dct_bases()
        n = np.arange(1, _FOURIER_TERMS + 1)
        constants = {  # float32 values, as the authors' tensors and scalars are
            'y_table': (Y_TABLE * factor).reshape(64), 'c_table': (C_TABLE * factor).reshape(64),
            'dct': fwd, 'idct': inv, 'dct_scale': alpha * np.float32(0.25), 'idct_alpha': alpha,
            'to_ycc': _RGB_TO_YCC, 'to_rgb': _YCC_TO_RGB,
            'ycc_shift': np.array([0., 128., 128.]), 'rgb_shift': np.array([0., -128., -128.]),
            'freq': 2 * math.pi * n, 'coef': (-1.0) ** (n + 1) / n, 'inv_pi': np.array(1 / math.pi)}
        for name, value in constants.items():
            setattr(self, name, Tensor(np.asarray(value, np.float32)).astype(dtype))

    def _round(self, t):
        if self.differentiable:
            return fourier_round(t, self.freq, self.coef, self.inv_pi)
        return ops.round(t)

    def _code(self, plane, table):
        """One plane through DCT, quantisation, rounding, dequantisation and IDCT."""
        b, h, w = plane.shape
        coef = self.dct_scale * ops.matmul(_blocks(plane) - 128.0, self.dct)
        coef = self._round(coef / table) * table
        return _merge(0.25 * ops.matmul(coef * self.idct_alpha, self.idct) + 128.0, b, h, w)

    def construct(self, x):
        b, _, h, w = x.shape
        ycc = ops.matmul((x * 255.0).transpose(0, 2, 3, 1), self.to_ycc) + self.ycc_shift
        y = ycc[..., 0]
        # 2x2 average pooling of the chroma planes (summed in the pooling kernel's order)
        c = ycc[..., 1:].reshape(b, h // 2, 2, w // 2, 2, 2)
        c = (c[:, :, 0, :, 0] + c[:, :, 0, :, 1] + c[:, :, 1, :, 0] + c[:, :, 1, :, 1]) / 4.0
        y = self._code(y, self.y_table)
        cb = self._code(c[..., 0], self.c_table)
        cr = self._code(c[..., 1], self.c_table)
        chroma = ops.stack((cb, cr), -1)
        chroma = ops.broadcast_to(chroma.reshape(b, h // 2, 1, w // 2, 1, 2),
                                  (b, h // 2, 2, w // 2, 2, 2)).reshape(b, h, w, 2)
        ycc = ops.cat((y.reshape(b, h, w, 1), chroma), -1)
        rgb = ops.matmul(ycc + self.rgb_shift, self.to_rgb)
        return ops.clamp(rgb, 0.0, 255.0).transpose(0, 3, 1, 2) / 255.0
