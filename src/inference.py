"""The two directions of a trained IRN as deployable cells, and a numpy front end for them.

``DownscaleNet``: HR (1, 3, H, W) -> quantised LR (1, 3, H/s, W/s).
``UpscaleNet``: (LR (1, 3, h, w), z (1, 3s^2-3, h, w)) -> HR (1, 3, hs, ws).
IRN-Color uses the same cells with scale 1 and a 1-channel grey image as the LR.
z is always an explicit input: no random op lives in these graphs (they are what export.py
writes). :class:`Rescaler` runs them on HxWx3 numpy images, optionally in tiles.
"""
import contextlib

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from src.models import load_network  # noqa: F401  (re-exported: the family's loader)
from src.network.fast_conv import mindspore_conv
from src.utils.errors import IRNError
from src.utils.graphs import ShapeGraphs
from src.utils.tiling import tiled_apply

__all__ = ['QuantizeLR', 'DownscaleNet', 'UpscaleNet', 'load_network', 'Rescaler', 'make_z']


class QuantizeLR(nn.Cell):
    """round(clamp(x, 0, 1) * 255) / 255 with round-half-to-even, as :class:`Quantization`.

    Written with floor instead of ``ops.round``: MindSpore exports Round with a second
    (decimals) input that ONNX rejects. For v = clamp(x)*255 in float32, ``floor(v + 0.5)`` is
    exact; at an exact tie (r - v == 0.5) an odd r is moved down by one, which is precisely
    half-to-even rounding, so the result equals Quantization bit for bit.
    """

    def construct(self, x):
        v = ops.clamp(x, 0.0, 1.0) * 255.0
        r = ops.floor(v + 0.5)
        odd = r - ops.floor(r * 0.5) * 2.0
        tie = ops.cast(ops.equal(r - v, 0.5), ms.float32)
        return (r - tie * odd) / 255.0


class DownscaleNet(nn.Cell):
    """HR -> quantised LR (round(clamp(y, 0, 1) * 255) / 255), the forward direction of IRN
    (RGB -> quantised grey for IRN-Color)."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net
        self.quant = QuantizeLR()

    def construct(self, hr):
        return self.quant(self.net(hr)[:, :self.net.lr_channels])


class UpscaleNet(nn.Cell):
    """(LR, z) -> HR, the inverse direction of IRN; z is an input (zeros or N(0, I) samples)."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, lr, z):
        return self.net.upscale(lr, z)


def make_z(shape, z_mode, seed=0):
    """z of shape (C, h, w): zeros ('zero') or N(0, I) from numpy's generator seeded by ``seed``."""
    if z_mode == 'zero':
        return np.zeros(shape, np.float32)
    if z_mode != 'sample':
        raise IRNError(f"z_mode must be 'sample' or 'zero', got {z_mode!r}")
    return np.random.default_rng(int(seed)).standard_normal(shape, dtype=np.float32)


class Rescaler:
    """Runs the two IRN directions on numpy images (HxWx3 float32 in [0, 1]; IRN-Color's LR is
    its HxWx1 grey image and its scale 1).

    By default each direction is a static-shape graph compiled on first use for every distinct
    input shape and kept for the process (:class:`src.utils.graphs.ShapeGraphs`), so on CPU
    the fast oneDNN convolution runs. Untiled, an image costs one compilation per direction and
    size; tiled, all tiles of an image share one shape (:func:`src.utils.tiling.tile_spans`),
    so again one per direction and image size.

    Args:
        net (InvRescaleNet | InvGreyNet): the network, weights loaded.
        dynamic (bool): instead, one dynamic-shape graph per direction for every size, with
            MindSpore's Conv2D (the fast convolution needs static shapes); much slower on CPU.
        cells: the (down, up) cells of another model with the same interfaces (default IRN's
            :class:`DownscaleNet`, :class:`UpscaleNet`).
    """

    def __init__(self, net, dynamic=False, cells=None):
        self.net = net
        self.scale = net.scale
        self.z_channels = net.channel_out - net.lr_channels
        self.dynamic = dynamic
        down, up = cells or (DownscaleNet(net), UpscaleNet(net))
        if dynamic:
            down.set_inputs(ms.Tensor(shape=[1, 3, None, None], dtype=ms.float32))
            up.set_inputs(ms.Tensor(shape=[1, net.lr_channels, None, None], dtype=ms.float32),
                          ms.Tensor(shape=[1, self.z_channels, None, None], dtype=ms.float32))
        self._down, self._up = ShapeGraphs(down), ShapeGraphs(up)

    @staticmethod
    def _chw(img):
        return ms.Tensor(np.ascontiguousarray(np.asarray(img, np.float32).transpose(2, 0, 1)[None]))

    def _run(self, graphs, *images):
        context = mindspore_conv() if self.dynamic else contextlib.nullcontext()
        with context:
            out = graphs(*[self._chw(img) for img in images])
        return out.asnumpy()[0].transpose(1, 2, 0)

    def _down_once(self, hr):
        return self._run(self._down, hr)

    def _up_once(self, lr, z):
        return self._run(self._up, lr, z)

    def down(self, hr, tile=0, overlap=0):
        """HR (H, W multiples of the scale) -> quantised LR, HxWxC float32 values k/255.

        ``tile``/``overlap`` are in HR pixels (0: whole image at once).
        """
        s = self.scale
        h, w = hr.shape[:2]
        if h % s or w % s:
            raise IRNError(f'HR size {h}x{w} is not a multiple of the scale {s}')
        if not tile:
            return self._down_once(hr)
        return tiled_apply(lambda t: self._down_once(t[0]), [hr], tile, overlap, align=s,
                           out_num=1, out_den=s)

    def z_shape(self, lr_h, lr_w):
        """Shape (h, w, C) of the z that goes with an LR of size lr_h x lr_w (HWC, like images)."""
        return (lr_h, lr_w, self.z_channels)

    def up(self, lr, z, tile=0, overlap=0):
        """(LR HxWxC, z HxWxC') -> HR float32 (unclamped). ``tile``/``overlap`` in HR pixels."""
        s = self.scale
        if not tile:
            return self._up_once(lr, z)
        return tiled_apply(lambda t: self._up_once(t[0], t[1]), [lr, z], max(tile // s, 1),
                           overlap // s, align=1, out_num=s, out_den=1)
