"""The two directions of a trained IRN as deployable cells, and a numpy front end for them.

``DownscaleNet``: HR (1, 3, H, W) -> quantised LR (1, 3, H/s, W/s).
``UpscaleNet``: (LR (1, 3, h, w), z (1, 3s^2-3, h, w)) -> HR (1, 3, hs, ws).
z is always an explicit input: no random op lives in these graphs (they are what export.py
writes). :class:`Rescaler` runs them on HxWx3 numpy images, optionally in tiles.
"""
import numpy as np
import mindspore as ms
from mindspore import nn, ops

from src.models import load_network  # noqa: F401  (re-exported: the family's loader)
from src.network.fast_conv import mindspore_conv
from src.utils.errors import IRNError
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
    """HR -> quantised LR (round(clamp(y, 0, 1) * 255) / 255), the forward direction of IRN."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net
        self.quant = QuantizeLR()

    def construct(self, hr):
        return self.quant(self.net(hr)[:, :3])


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
    """Runs the two IRN directions on numpy images (HxWx3 float32 in [0, 1]).

    Each direction is compiled once, for any spatial size (dynamic height / width), so a
    folder of differently sized images or the edge tiles of a large one compile nothing more.

    Args:
        net (InvRescaleNet): the network, weights loaded.
        dynamic (bool): one graph for every size (True) or one graph per distinct size.
    """

    def __init__(self, net, dynamic=True):
        self.net = net
        self.scale = net.scale
        self.z_channels = net.channel_out - net.channel_in
        self._down = DownscaleNet(net)
        self._up = UpscaleNet(net)
        if dynamic:
            self._down.set_inputs(ms.Tensor(shape=[1, 3, None, None], dtype=ms.float32))
            self._up.set_inputs(ms.Tensor(shape=[1, 3, None, None], dtype=ms.float32),
                                ms.Tensor(shape=[1, self.z_channels, None, None],
                                          dtype=ms.float32))

    @staticmethod
    def _chw(img):
        return ms.Tensor(np.ascontiguousarray(np.asarray(img, np.float32).transpose(2, 0, 1)[None]))

    def _down_once(self, hr):
        with mindspore_conv():  # dynamic shapes
            out = self._down(self._chw(hr))
        return out.asnumpy()[0].transpose(1, 2, 0)

    def _up_once(self, lr, z):
        with mindspore_conv():
            out = self._up(self._chw(lr), self._chw(z))
        return out.asnumpy()[0].transpose(1, 2, 0)

    def down(self, hr, tile=0, overlap=0):
        """HR (H, W multiples of the scale) -> quantised LR, HxWx3 float32 values k/255.

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
        """(LR HxWx3, z HxWxC) -> HR float32 (unclamped). ``tile``/``overlap`` in HR pixels."""
        s = self.scale
        if not tile:
            return self._up_once(lr, z)
        return tiled_apply(lambda t: self._up_once(t[0], t[1]), [lr, z], max(tile // s, 1),
                           overlap // s, align=1, out_num=s, out_den=1)
