"""Evaluation of an IRN on a set of HR images, with the paper's protocol (spec section 4).

Per image: HR (mod-cropped) -> ``net.forward`` -> quantised LR -> ``net.upscale(LR, z)`` with
z = 0 or z ~ N(0, I) drawn by numpy from a generator seeded by ``(seed, image index, draw)``
-> uint8 -> PSNR / SSIM in RGB and on the MATLAB Y channel, ``scale`` pixels cropped from
every border. The metrics of several draws are averaged. The LR is scored too: PSNR / SSIM of
the quantised IRN LR against the rounded MATLAB-bicubic LR, without cropping.
"""
import itertools

import numpy as np
import mindspore as ms
from mindspore import nn

from src.data.bicubic import imresize
from src.metrics import calculate_psnr, calculate_ssim, mean_metrics, tensor_to_uint8
from src.network import Quantization
from src.utils.errors import IRNError
from src.utils.graphs import ShapeGraphs

__all__ = ['Downscaler', 'Upscaler', 'compiled_cells', 'evaluate', 'summarize', 'sample_z',
           'METRICS']

METRICS = ('psnr_rgb', 'ssim_rgb', 'psnr_y', 'ssim_y', 'lr_psnr_rgb', 'lr_ssim_rgb',
           'lr_psnr_y', 'lr_ssim_y')


class Downscaler(nn.Cell):
    """HR (1, 3, H, W) -> (quantised LR, z) with the network's forward direction (the grey
    image instead of the LR for IRN-Color)."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net
        self.quant = Quantization()

    def construct(self, hr):
        lr, z = self.net.forward(hr)
        return self.quant(lr), z


class Upscaler(nn.Cell):
    """(LR, z) -> HR with the network's inverse direction (also (grey, z) -> RGB for IRN-Color)."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, lr, z):
        return self.net.upscale(lr, z)


def sample_z(shape, z_mode, seed, index, draw):
    """The z of image ``index``, draw ``draw``: zeros, or N(0, I) from a seeded numpy generator."""
    if z_mode == 'zero':
        return np.zeros(shape, np.float32)
    if z_mode != 'sample':
        raise IRNError(f"val.z_mode must be 'sample' or 'zero', got {z_mode!r}")
    return np.random.default_rng([int(seed), int(index), int(draw)]).standard_normal(
        shape).astype(np.float32)


def pair_metrics(out, ref, crop, prefix, key_prefix=''):
    """PSNR / SSIM of two uint8 images in RGB and Y."""
    res = {}
    for space, y in (('rgb', False), ('y', True)):
        res[f'{key_prefix}psnr_{space}'] = calculate_psnr(out, ref, crop, y)
        res[f'{key_prefix}ssim_{space}'] = calculate_ssim(out, ref, crop, y)
    return res


_CELLS = {}  # id(net) -> (net, Downscaler, Upscaler): graphs kept for the process


def compiled_cells(net):
    """The (Downscaler, Upscaler) graphs of ``net``: static shapes, one graph per image shape.

    Static shapes let the fast CPU convolution run (see :mod:`src.utils.graphs`); a test set
    costs one compilation per direction and distinct image size.
    """
    cached = _CELLS.get(id(net))
    if cached is None or cached[0] is not net:
        cached = (net, ShapeGraphs(Downscaler(net)), ShapeGraphs(Upscaler(net)))
        _CELLS.clear()
        _CELLS[id(net)] = cached
    return cached[1], cached[2]


def evaluate(net, source, scale, z_mode='sample', seed=0, draws=1, keep_images=False):
    """Evaluate ``net`` on every image of ``source`` with the paper's protocol.

    Args:
        net (InvRescaleNet): the network (its mode is set to eval-style inference here).
        source: iterable of ``(name, hr)`` with ``hr`` float32 HxWx3 RGB in [0, 1], already
            mod-cropped to ``scale`` (e.g. :class:`src.data.sources.ValidationSource`). The
            z seed of an image is its position; a source with ``indices`` (a shard of a set,
            :class:`src.distributed.ShardedSource`) gives the positions in the whole set.
        scale (int): rescaling factor; also the border cropped before HR metrics.
        z_mode (str): 'sample' (z ~ N(0, I)) or 'zero'.
        seed (int): base seed of the z draws (image ``i``, draw ``d`` uses ``[seed, i, d]``).
        draws (int): number of z draws whose metrics are averaged (1 when z_mode is 'zero').
        keep_images (bool): also return the uint8 LR and (first draw) SR images.

    Returns:
        list[dict]: one dict per image: ``name``, the :data:`METRICS` values (HR metrics averaged
        over draws), ``draws``; with ``keep_images`` also ``lr`` and ``sr`` (HxWx3 uint8).
    """
    draws = 1 if z_mode == 'zero' else int(draws)
    if draws < 1:
        raise IRNError(f'val.z_draws must be >= 1, got {draws}')
    if scale != net.scale:
        raise IRNError(f'evaluation scale x{scale} does not match the network (x{net.scale})')
    down, up = compiled_cells(net)
    results = []
    positions = getattr(source, 'indices', None)
    for index, (name, hr) in zip(itertools.count() if positions is None else positions, source):
        h, w = hr.shape[:2]
        if h % scale or w % scale:
            raise IRNError(f'{name}: {h}x{w} is not mod-cropped to scale {scale}')
        hr_t = ms.Tensor(np.ascontiguousarray(hr.transpose(2, 0, 1)[None]), ms.float32)
        lr_q, z = down(hr_t)
        gt = tensor_to_uint8(hr.transpose(2, 0, 1))
        lr_img = tensor_to_uint8(lr_q.asnumpy()[0])
        lr_ref = tensor_to_uint8(imresize(hr.astype(np.float64), 1.0 / scale).transpose(2, 0, 1))
        res = {'name': name, 'draws': draws}
        res.update(pair_metrics(lr_img, lr_ref, 0, 'lr', 'lr_'))
        per_draw = []
        first_sr = None
        for d in range(draws):
            zd = ms.Tensor(sample_z(z.shape, z_mode, seed, index, d))
            sr = tensor_to_uint8(up(lr_q, zd).asnumpy()[0])
            if first_sr is None:
                first_sr = sr
            per_draw.append(pair_metrics(sr, gt, scale, 'hr'))
        for key in per_draw[0]:
            res[key] = float(np.mean([m[key] for m in per_draw]))
        if keep_images:
            res['lr'], res['sr'] = lr_img, first_sr
        results.append(res)
    return results


def summarize(results):
    """Mean of every metric over images (``inf`` PSNRs of perfect images are skipped)."""
    return mean_metrics(results, METRICS)
