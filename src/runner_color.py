"""IRN-Color's per-image work for infer.py: ``decolor`` (RGB -> an 8-bit grey PNG that carries
its own metadata) and ``colorize`` (that grey PNG -> RGB, with z = 0 as the authors do).

The grey PNG must stay lossless: IRN-Color hides the colour in the grey levels, which a lossy
codec or a resize destroys. A grey image that ``decolor`` did not make (a plain grey photo,
told apart by the missing metadata) is colourised too, with a warning: the result is poor
(washed-out or wrong colours), because such an image holds none of the hidden colour.
"""
import logging
import os

import cv2
import numpy as np

from src.runner import lossless, output_path, write_image
from src.utils.errors import IRNError

log = logging.getLogger('irn')
MODEL = 'IRN-Color'


def grey_of(raw, name):
    """An image as decoded (HxW, HxWx1, HxWx3 BGR, HxWx4; 8 or 16 bit) -> HxW uint8 grey.

    A colour image is converted with OpenCV's grey (warned): it is not an IRN-Color grey.
    """
    from src.data.io import to_rgb_uint8
    if raw.ndim == 2 or raw.shape[2] == 1:  # a grey file (8 or 16 bit)
        return to_rgb_uint8(np.repeat(raw.reshape(*raw.shape[:2], 1), 3, axis=2), name)[..., 0]
    rgb8 = to_rgb_uint8(raw, name)
    if np.array_equal(rgb8[..., 0], rgb8[..., 1]) and np.array_equal(rgb8[..., 0], rgb8[..., 2]):
        return rgb8[..., 0]
    log.warning('%s: a colour image, not a grey one; colourising its OpenCV grey', name)
    return cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY)


class ColorRunner:
    """IRN-Color's infer.py modes, one image at a time.

    Args:
        args: infer.py's parsed command line (output, tile, tile_overlap).
        net (InvGreyNet): the network, weights loaded.
    """

    modes = ('decolor', 'colorize')

    def __init__(self, args, net):
        from src.inference import Rescaler
        self.args, self.net, self.r = args, net, Rescaler(net)

    def describe(self):
        """How the outputs are made, for the first line infer.py prints."""
        a = self.args
        how = 'grey = Q(forward), 8-bit PNG' if a.mode == 'decolor' else 'z = 0, as the authors'
        return how + (f', tiles {a.tile} overlap {a.tile_overlap}' if a.tile else '')

    def run(self, mode, path, n):
        """Process one input file in ``mode``; returns the line to print."""
        return getattr(self, mode)(path, n)

    def tiles(self):
        """(tile, overlap) in pixels."""
        return self.args.tile, self.args.tile_overlap

    def decolor(self, path, n):
        """Mode ``decolor``: RGB -> 8-bit grey PNG with the IRN-Color metadata."""
        from src.data.io import read_image_uint8, uint8_to_float
        from src.lrfile import as_uint8, write_lr_png
        rgb8 = read_image_uint8(path)
        h, w = rgb8.shape[:2]
        grey8 = as_uint8(self.r.down(uint8_to_float(rgb8), *self.tiles()))[..., 0]
        meta = {'model': MODEL, 'scale': 1, 'height': h, 'width': w,
                'blocks': list(self.net.block_num), 'source': os.path.basename(path)}
        out = lossless(output_path(self.args, path, n))
        write_lr_png(out, grey8, meta)
        return f'{path} {h}x{w} RGB -> {out} grey'

    def colorize(self, path, n):
        """Mode ``colorize``: a grey PNG (checking its metadata) -> RGB."""
        from src.data.io import decode_raw, read_bytes, uint8_to_float
        from src.inference import make_z
        from src.lrfile import as_uint8, read_lr_meta
        data = read_bytes(path)
        grey8 = grey_of(decode_raw(data, path), path)
        h, w = grey8.shape
        meta = read_lr_meta(path, data)
        if meta is None:
            log.warning('%s: no IRN-Color metadata, so not made by `infer.py decolor` (e.g. a '
                        'plain grey photo). IRN-Color colourises such images poorly (washed-out '
                        'or wrong colours): the colour it restores is hidden in the grey levels '
                        'it writes itself', path)
        elif meta.get('model') != MODEL:
            raise IRNError(f"{path}: an LR made by {meta.get('model', 'IRN')}'s `infer.py down` "
                           f"(x{meta['scale']}), not a grey image of `infer.py decolor`")
        elif (meta['height'], meta['width']) != (h, w):
            raise IRNError(f"{path}: grey image is {h}x{w}, but its IRN-Color metadata says "
                           f"{meta['height']}x{meta['width']}; was it resized?")
        z = make_z(self.r.z_shape(h, w), 'zero')
        rgb8 = as_uint8(self.r.up(uint8_to_float(grey8)[..., None], z, *self.tiles()))
        out = output_path(self.args, path, n)
        write_image(out, rgb8)
        return f'{path} {h}x{w} grey -> {out} RGB'
