"""Evaluation of IRN-Color exactly as the authors' ``test_IRN-Color.py`` (spec section 3).

Per image (RGB, mod-cropped to ``scale``): grey = Q(forward(rgb)[:, :1]); colour =
inverse(cat[grey, z = 0]). Colour PSNR / SSIM on the uint8 RGB images, ``crop_border``
(default: the scale, 2) pixels cropped; grey PSNR / SSIM of the uint8 network grey against the
uint8-rounded OpenCV grey of the image, no crop. There is no Y-channel metric.
"""
import numpy as np
import mindspore as ms

from src.data.grey import grey_target
from src.evaluate import compiled_cells
from src.metrics import calculate_psnr, calculate_ssim, tensor_to_uint8

__all__ = ['COLOR_METRICS', 'color_metrics', 'evaluate_color']

COLOR_METRICS = ('psnr_rgb', 'ssim_rgb', 'psnr_grey', 'ssim_grey')


def color_metrics(gt, colour, gt_grey, grey, crop_border):
    """The four IRN-Color metrics of one image from uint8 HxWx3 RGB and HxWx1 grey images."""
    return {'psnr_rgb': calculate_psnr(colour, gt, crop_border),
            'ssim_rgb': calculate_ssim(colour, gt, crop_border),
            'psnr_grey': calculate_psnr(grey, gt_grey, 0),
            'ssim_grey': calculate_ssim(grey, gt_grey, 0)}


def evaluate_color(net, source, crop_border, keep_images=False):
    """Evaluate an ``InvGreyNet`` on every ``(name, rgb)`` of ``source`` (float32 HxWx3 in [0, 1]).

    Returns one dict per image: ``name`` and the :data:`COLOR_METRICS` values; with
    ``keep_images`` also ``grey`` (HxWx1 uint8) and ``colour`` (HxWx3 uint8). Means:
    ``src.metrics.mean_metrics(results, COLOR_METRICS)``.
    """
    down, up = compiled_cells(net)
    results = []
    for name, rgb in source:
        x = ms.Tensor(np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]), ms.float32)
        grey_q, z = down(x)
        colour = up(grey_q, ms.Tensor(np.zeros(z.shape, np.float32)))
        grey_img = tensor_to_uint8(grey_q.asnumpy()[0])
        colour_img = tensor_to_uint8(colour.asnumpy()[0])
        gt = tensor_to_uint8(rgb.transpose(2, 0, 1))
        gt_grey = tensor_to_uint8(grey_target(rgb).transpose(2, 0, 1))
        res = {'name': name}
        res.update(color_metrics(gt, colour_img, gt_grey, grey_img, crop_border))
        if keep_images:
            res['grey'], res['colour'] = grey_img, colour_img
        results.append(res)
    return results
