"""SAIN's evaluation protocol (SAIN.md section 6) and its baselines, on numpy images.

Per image: HR (mod-cropped) -> Q(HQ LR tap) -> real codec (format, quality; bytes counted)
-> z from the learned mixture (Gumbel and Gaussian noise from a numpy generator seeded by
``[seed, image index, draw]``; the authors never seed it) -> inverse -> uint8 -> PSNR / SSIM in
RGB and on the MATLAB Y channel with ``scale`` pixels cropped; the metrics of the draws are
averaged. The HQ LR is scored against the rounded MATLAB-bicubic LR (no crop). Baselines at the
same codec settings: IRN (its quantised LR through the codec, z ~ N(0, I) seeded the same way)
and bicubic & bicubic (MATLAB bicubic down, 8-bit, codec, MATLAB bicubic up). Rate: bits of
the compressed LR file per HR pixel.
"""
import numpy as np
import mindspore as ms
from mindspore import nn

from src.codecs.real import bits_per_pixel, roundtrip_batch
from src.data.bicubic import imresize
from src.evaluate import _pair_metrics, _cells as irn_cells, sample_z
from src.inference import QuantizeLR
from src.metrics import tensor_to_uint8
from src.network.fast_conv import mindspore_conv
from src.sain_step import draw_gmm_noise
from src.utils.errors import IRNError

__all__ = ['SAINDownscaleNet', 'SAINUpscaleNet', 'evaluate_sain', 'sain_z', 'HR_METRICS']

HR_METRICS = ('psnr_rgb', 'ssim_rgb', 'psnr_y', 'ssim_y')


class SAINDownscaleNet(nn.Cell):
    """HR (1, 3, H, W) -> the quantised high-quality LR, the image the codec then compresses."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net
        self.quant = QuantizeLR()

    def construct(self, hr):
        return self.quant(self.net(hr)[1])


class SAINUpscaleNet(nn.Cell):
    """(compressed LR (1, 3, h, w), z (1, C - 3, h, w)) -> HR (unclamped)."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, lr, z):
        return self.net.upscale(lr, z)


class _Mixture(nn.Cell):
    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, gumbel, eps):
        return self.net.gmm(gumbel, eps)


def _dynamic(cell, *shapes):
    cell.set_inputs(*[ms.Tensor(shape=list(s), dtype=ms.float32) for s in shapes])
    return cell


_CELLS = {}


def _sain_cells(net):
    """(down, up, mixture) cells of ``net`` for any image size, compiled once."""
    cached = _CELLS.get(id(net))
    if cached is None or cached[0] is not net:
        zc, k = net.channel_out - net.channel_in, net.gmm_components
        cached = (net, _dynamic(SAINDownscaleNet(net), (1, 3, None, None)),
                  _dynamic(SAINUpscaleNet(net), (1, 3, None, None), (1, zc, None, None)),
                  _dynamic(_Mixture(net), (1, zc, None, None, k), (1, zc, None, None, k)))
        _CELLS.clear()
        _CELLS[id(net)] = cached
    return cached[1:]


def sain_z(net, lr_shape, seed, index, draw, mixture=None):
    """z for an LR of ``lr_shape`` from the net's mixture; noise seeded by [seed, index, draw]."""
    rng = np.random.default_rng([int(seed), int(index), int(draw)])
    gumbel, eps = draw_gmm_noise(rng, net.latent_shape(lr_shape), net.gmm_components)
    mixture = mixture or net.gmm
    with mindspore_conv():
        return mixture(ms.Tensor(gumbel), ms.Tensor(eps)).asnumpy()


def _codec(lr, fmt, quality):
    """(decoded LR, bytes); quality None: no codec (the 8-bit LR itself; bytes nan)."""
    if quality is None:
        return lr, float('nan')
    out, sizes = roundtrip_batch(lr, fmt, quality)
    return out, sizes[0]


def _upscaled_metrics(upscale, gt, scale, draws):
    """Metrics of ``upscale(draw)`` against ``gt`` averaged over the draws (+ the first SR)."""
    per_draw, first = [], None
    for d in range(draws):
        sr = tensor_to_uint8(upscale(d)[0])
        first = sr if first is None else first
        per_draw.append(_pair_metrics(sr, gt, scale, 'hr'))
    return {k: float(np.mean([m[k] for m in per_draw])) for k in per_draw[0]}, first


def evaluate_sain(net, source, scale, fmt, qualities, seed=0, draws=1, irn=None, bicubic=False,
                  keep_images=False):
    """Evaluate ``net`` (and the baselines) on every image of ``source`` at each quality.

    Args:
        net (SAINet): the network.
        source: iterable of ``(name, hr)``, hr float32 HxWx3 RGB in [0, 1], mod-cropped.
        scale (int): rescaling factor; also the border cropped before HR metrics.
        fmt (str): real codec, 'jpeg' or 'webp'.
        qualities (list): codec qualities; None in the list = no codec.
        seed, draws (int): the z noise (image i, draw d uses generator [seed, i, d]).
        irn (InvRescaleNet | None): add the IRN baseline with this network.
        bicubic (bool): add the bicubic & bicubic baseline.
        keep_images (bool): keep the uint8 LRs and the first SR of SAIN in the rows.

    Returns:
        list[dict]: one row per (image, method, quality): ``name``, ``method`` ('SAIN', 'IRN',
        'bicubic'), ``quality``, ``bytes``, ``bpp``, the :data:`HR_METRICS`; SAIN rows also the
        LR metrics (``lr_*``, the HQ LR before the codec against the rounded bicubic LR).
    """
    if scale != net.scale:
        raise IRNError(f'evaluation scale x{scale} does not match the network (x{net.scale})')
    if irn is not None and irn.scale != scale:
        raise IRNError(f'the IRN baseline is x{irn.scale}, SAIN is x{scale}')
    if int(draws) < 1:
        raise IRNError(f'z draws must be >= 1, got {draws}')
    down, up, mixture = _sain_cells(net)
    rows = []
    for index, (name, hr) in enumerate(source):
        h, w = hr.shape[:2]
        if h % scale or w % scale:
            raise IRNError(f'{name}: {h}x{w} is not mod-cropped to scale {scale}')
        hr_t = ms.Tensor(np.ascontiguousarray(hr.transpose(2, 0, 1)[None]), ms.float32)
        gt = tensor_to_uint8(hr.transpose(2, 0, 1))
        bic = imresize(hr.astype(np.float64), 1.0 / scale).transpose(2, 0, 1)
        bic8 = tensor_to_uint8(bic)
        with mindspore_conv():
            lr_q = down(hr_t).asnumpy()
        lr_metrics = _pair_metrics(tensor_to_uint8(lr_q[0]), bic8, 0, 'lr', 'lr_')
        irn_lr = None
        if irn is not None:
            irn_down, irn_up = irn_cells(irn)
            with mindspore_conv():
                irn_lr, irn_z = (t.asnumpy() for t in irn_down(hr_t))
        for quality in qualities:
            base = {'name': name, 'quality': quality, 'draws': int(draws)}

            def sain_up(d, lr_c):
                z = sain_z(net, lr_c.shape, seed, index, d, mixture)
                with mindspore_conv():
                    return up(ms.Tensor(lr_c), ms.Tensor(z)).asnumpy()

            lr_c, nbytes = _codec(lr_q, fmt, quality)
            res, sr = _upscaled_metrics(lambda d: sain_up(d, lr_c), gt, scale, int(draws))
            row = {**base, 'method': 'SAIN', 'bytes': nbytes, 'bpp': bits_per_pixel(nbytes, h, w),
                   **res, **lr_metrics}
            if keep_images:
                row['images'] = {'LR': tensor_to_uint8(lr_q[0]), 'LR_codec': tensor_to_uint8(lr_c[0]),
                                 'SR': sr}
            rows.append(row)
            if irn is not None:
                irn_c, nbytes = _codec(irn_lr, fmt, quality)

                def irn_sr(d):
                    z = sample_z(irn_z.shape, 'sample', seed, index, d)
                    with mindspore_conv():
                        return irn_up(ms.Tensor(irn_c), ms.Tensor(z)).asnumpy()

                res, _ = _upscaled_metrics(irn_sr, gt, scale, int(draws))
                rows.append({**base, 'method': 'IRN', 'bytes': nbytes,
                             'bpp': bits_per_pixel(nbytes, h, w), **res})
            if bicubic:
                bic_lr = bic8.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
                bic_c, nbytes = _codec(bic_lr, fmt, quality)
                sr = imresize(bic_c[0].transpose(1, 2, 0).astype(np.float64), scale)
                res = _pair_metrics(tensor_to_uint8(sr.transpose(2, 0, 1)), gt, scale, 'hr')
                rows.append({**base, 'method': 'bicubic', 'draws': 0, 'bytes': nbytes,
                             'bpp': bits_per_pixel(nbytes, h, w), **res})
    return rows


def summarize_sain(rows):
    """{(method, quality): means of bpp and the HR metrics (and LR metrics for SAIN)}."""
    out = {}
    for key in sorted({(r['method'], r['quality']) for r in rows}, key=lambda k: (k[0], k[1] or 101)):
        group = [r for r in rows if (r['method'], r['quality']) == key]
        fields = ['bpp', *HR_METRICS] + [k for k in group[0] if k.startswith('lr_')]
        out[key] = {f: float(np.mean([r[f] for r in group if np.isfinite(r[f])] or [np.nan]))
                    for f in fields}
        out[key]['images'] = len(group)
    return out
