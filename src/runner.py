"""IRN's per-image work for infer.py: read, pad, downscale / upscale (optionally tiled), write
LR PNGs that carry their metadata, check it on the way back, crop to the original size.

``down`` accepts any size: the image is reflect-padded (bottom / right) to a multiple of the
scale and the original size is stored in the LR PNG (text chunk ``irn``), so ``up`` crops back.
The LR must stay lossless (PNG): IRN hides the high frequencies in its least significant
details, which JPEG destroys. ``up`` on an LR that was not made by IRN (e.g. a bicubic LR; told
apart only by the missing metadata) works but gives blurry, artefacted results.
"""
import logging
import os

import numpy as np

from src.utils.errors import IRNError

log = logging.getLogger('irn')
JPEG = ('.jpg', '.jpeg')


def output_path(args, src, n_inputs, suffix=''):
    """Where the result for ``src`` goes: <output>/<stem><suffix>.png, or --output itself."""
    out = args.output
    if n_inputs == 1 and os.path.splitext(out)[1].lower() in ('.png',) + JPEG:
        base, ext = os.path.splitext(out)
        path = base + suffix + ext
    else:
        path = os.path.join(out, os.path.splitext(os.path.basename(src))[0] + suffix + '.png')
    if os.path.abspath(path) == os.path.abspath(src):
        raise IRNError(f'{src}: the output would overwrite the input; choose another --output')
    return path


def lossless(path):
    """LRs are always PNG: warn and switch the extension when JPEG was asked for."""
    if path.lower().endswith(JPEG):
        png = os.path.splitext(path)[0] + '.png'
        log.warning('%s: an IRN LR must be stored losslessly (JPEG destroys the information '
                    'IRN hides in it); writing %s instead', path, png)
        return png
    return path


def write_image(path, img8):
    """Write an HxWx3 uint8 RGB image as PNG or JPEG (by extension), creating folders."""
    import cv2
    from src.data.io import write_png
    if path.lower().endswith(JPEG):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if not cv2.imwrite(path, np.ascontiguousarray(img8[:, :, ::-1])):
            raise IRNError(f'{path}: could not write the JPEG file')
    else:
        write_png(path, img8)


def pad_to_multiple(img, scale):
    """Reflect-pad the bottom / right of HxWxC so both sides are multiples of ``scale``."""
    h, w = img.shape[:2]
    ph, pw = -h % scale, -w % scale
    if not ph and not pw:
        return img
    mode = 'reflect' if min(h, w) > 1 else 'edge'
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)


class Runner:
    """IRN's infer.py modes (``down``, ``up``, ``roundtrip``), one image at a time.

    Args:
        args: infer.py's parsed command line (output, z_mode, seed, tile, tile_overlap).
        rescaler (src.inference.Rescaler): the network's two directions on numpy images.
    """

    modes = ('down', 'up', 'roundtrip')

    def __init__(self, args, rescaler):
        self.args, self.r, self.s = args, rescaler, rescaler.scale

    def describe(self):
        """How the outputs are made (z, tiles), for the first line infer.py prints."""
        a = self.args
        z = 'z = 0' if a.z_mode == 'zero' else f'z ~ N(0, I), seed {a.seed}'
        return z + (f', tiles {a.tile} overlap {a.tile_overlap}' if a.tile else '')

    def run(self, mode, path, n):
        """Process one input file in ``mode``; returns the line to print."""
        return getattr(self, mode)(path, n)

    def tiles(self):
        """(tile, overlap) in HR pixels."""
        return self.args.tile, self.args.tile_overlap

    def downscale(self, path):
        """Read an image, pad it, downscale: returns (hr uint8 unpadded, lr uint8, meta)."""
        from src.data.io import read_image_uint8, uint8_to_float
        from src.lrfile import as_uint8
        hr8 = read_image_uint8(path)
        h, w = hr8.shape[:2]
        lr = self.r.down(uint8_to_float(pad_to_multiple(hr8, self.s)), *self.tiles())
        meta = {'scale': self.s, 'height': h, 'width': w, 'blocks': self.r.net.block_num,
                'source': os.path.basename(path)}
        return hr8, as_uint8(lr), meta

    def upscale(self, lr8, meta, name):
        """LR uint8 (+ metadata or None) -> HR uint8, cropped to the original size."""
        from src.data.io import uint8_to_float
        from src.inference import make_z
        from src.lrfile import as_uint8, lr_size
        h, w = lr8.shape[:2]
        if meta is not None:
            if meta['scale'] != self.s:
                raise IRNError(f'{name}: this LR was made at x{meta["scale"]}, but the '
                               f'checkpoint is x{self.s}')
            want = lr_size(meta['height'], meta['width'], self.s)
            if (h, w) != want:
                raise IRNError(f'{name}: LR is {h}x{w}, but its IRN metadata (HR '
                               f'{meta["height"]}x{meta["width"]} at x{self.s}) needs '
                               f'{want[0]}x{want[1]}; was it resized?')
        z = make_z(self.r.z_shape(h, w), self.args.z_mode, self.args.seed)
        hr = self.r.up(uint8_to_float(lr8), z, *self.tiles())
        if meta is not None:
            hr = hr[:meta['height'], :meta['width']]
        return as_uint8(hr)

    def down(self, path, n):
        """Mode ``down``: write the IRN LR PNG with its metadata."""
        from src.lrfile import write_lr_png
        _, lr8, meta = self.downscale(path)
        out = lossless(output_path(self.args, path, n))
        write_lr_png(out, lr8, meta)
        return f'{path} {meta["height"]}x{meta["width"]} -> {out} {lr8.shape[0]}x{lr8.shape[1]}'

    def up(self, path, n):
        """Mode ``up``: read an LR (checking its metadata), write the upscaled image."""
        from src.data.io import read_bytes, decode_raw, to_rgb_uint8
        from src.lrfile import read_lr_meta
        data = read_bytes(path)
        raw = decode_raw(data, path)
        if raw.dtype != np.uint8 or raw.ndim != 3 or raw.shape[2] != 3:
            log.warning('%s: an IRN LR is an 8-bit RGB PNG; converting %s %s', path,
                        raw.dtype, raw.shape)
        meta = read_lr_meta(path, data)
        if meta is None:
            log.warning('%s: no IRN metadata, so probably not made by `infer.py down` (e.g. a '
                        'bicubic or re-saved LR). IRN upscales such LRs poorly (blur, '
                        'artefacts) and the output is not cropped to an original size', path)
        hr8 = self.upscale(to_rgb_uint8(raw, path), meta, path)
        out = output_path(self.args, path, n)
        write_image(out, hr8)
        return f'{path} {raw.shape[0]}x{raw.shape[1]} -> {out} {hr8.shape[0]}x{hr8.shape[1]}'

    def roundtrip(self, path, n):
        """Mode ``roundtrip``: down then up in memory; print PSNR (RGB and Y) against the input."""
        from src.lrfile import write_lr_png
        from src.metrics import calculate_psnr
        hr8, lr8, meta = self.downscale(path)
        sr8 = self.upscale(lr8, meta, path)
        write_lr_png(lossless(output_path(self.args, path, n, '_lr')), lr8, meta)
        write_image(output_path(self.args, path, n, '_rt'), sr8)
        psnr = calculate_psnr(sr8, hr8)
        psnr_y = calculate_psnr(sr8, hr8, test_y_channel=True)
        return (f'{path} {hr8.shape[0]}x{hr8.shape[1]}: round trip PSNR {psnr:.2f} dB RGB, '
                f'{psnr_y:.2f} dB Y (whole image, no border crop)')
