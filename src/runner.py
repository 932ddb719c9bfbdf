"""IRN's per-image work for infer.py: read, pad, downscale / upscale (optionally tiled), write
LR PNGs that carry their metadata, check it on the way back, crop to the original size.

``down`` accepts any size: the image is reflect-padded (bottom / right) to a multiple of the
scale and the original size is stored in the LR PNG (text chunk ``irn``), so ``up`` crops back.
A fractional ``--scale`` (e.g. 2.5 with an x3 network) resizes the HR by MATLAB bicubic to the
network's grid first and back at the end (src/fractional.py); the LR records how.
By default the LR is lossless (PNG): IRN hides the high frequencies in its least significant
details, which JPEG destroys. ``up`` on an LR that was not made by IRN (e.g. a bicubic LR; told
apart only by the missing metadata) works but gives blurry, artefacted results.

Lossy LRs (IRN with JPEG, the authors' IJCV extension): ``down --format jpeg --quality 90`` (or
``webp``) writes the LR through that codec (a JPEG keeps the metadata in a comment segment; a
WebP has none); ``up --crm crm.ckpt`` restores such an LR with a Compression Restoration Module
trained for that codec and quality before IRN upscales it. Plain IRN on a lossy LR is poor.
"""
import logging
import os

import numpy as np

from src.utils.checkpoint import describe_arch
from src.utils.errors import IRNError

log = logging.getLogger('irn')
JPEG = ('.jpg', '.jpeg')
LOSSY_EXT = {'jpeg': '.jpg', 'webp': '.webp'}


def output_path(args, src, n_inputs, suffix=''):
    """Where the result for ``src`` goes: <output>/<stem><suffix>.png, or --output itself."""
    out = args.output
    if n_inputs == 1 and os.path.splitext(out)[1].lower() in ('.png', '.webp') + JPEG:
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


def lossy_lr_path(path, fmt):
    """The LR file of a lossy ``fmt``: the extension follows the format."""
    base, ext = os.path.splitext(path)
    if (ext.lower() in JPEG and fmt == 'jpeg') or ext.lower() == LOSSY_EXT[fmt]:
        return path
    return base + LOSSY_EXT[fmt]


def is_lossy(data):
    """True for JPEG or WebP bytes."""
    return data[:2] == b'\xff\xd8' or (data[:4] == b'RIFF' and data[8:12] == b'WEBP')


def write_image(path, img8):
    """Write an HxWx3 uint8 RGB image as PNG, JPEG or WebP (by extension), atomically, creating
    folders (a full disk or a crash leaves no partial file under ``path``)."""
    import cv2
    from src.data.io import write_png
    from src.utils.atomic import write_bytes
    ext = os.path.splitext(path)[1].lower()
    if ext in JPEG + ('.webp',):
        ok, data = cv2.imencode('.webp' if ext == '.webp' else '.jpg',
                                np.ascontiguousarray(img8[:, :, ::-1]))
        if not ok:
            raise IRNError(f'{path}: could not encode the image as {ext[1:].upper()}')
        write_bytes(path, data.tobytes(), f'{ext[1:].upper()} file')
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
        args: infer.py's parsed command line (output, z_mode, seed, tile, tile_overlap, and
            the LR codec: format, quality).
        rescaler (src.inference.Rescaler): the network's two directions on numpy images.
        crm (RRDBNet | None): restores lossy LRs before the upscaling.
    """

    modes = ('down', 'up', 'roundtrip')

    def __init__(self, args, rescaler, crm=None):
        self.args, self.r, self.s, self.crm = args, rescaler, rescaler.scale, crm
        self.ratio = getattr(args, 'fractional_scale', None)  # e.g. 2.5 through an x3 network
        if args.format != 'png' and args.mode != 'up' and crm is None:
            log.warning('%s LR at quality %d: plain IRN cannot upscale a lossy LR well; upscale '
                        'it with a CRM trained for this codec and quality (infer.py up --crm '
                        'CRM.ckpt)', args.format.upper(), args.quality)

    def describe(self):
        """How the outputs are made (z, tiles, LR codec, CRM): infer.py's first line."""
        a = self.args
        z = 'z = 0' if a.z_mode == 'zero' else f'z ~ N(0, I), seed {a.seed}'
        codec = f', LR {a.format} q{a.quality}' if a.format != 'png' and a.mode != 'up' else ''
        crm = f', CRM {describe_arch(self.crm.arch())}' if self.crm is not None else ''
        frac = (f'fractional x{self.ratio}: MATLAB bicubic to the x{self.s} grid and back, '
                if self.ratio else '')
        return (frac + z + (f', tiles {a.tile} overlap {a.tile_overlap}' if a.tile else '')
                + codec + crm)

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
        from src.fractional import fractional_meta, to_grid
        hr8 = read_image_uint8(path)
        h, w = hr8.shape[:2]
        meta = {'scale': self.s, 'height': h, 'width': w}
        if self.ratio:
            meta = fractional_meta(h, w, self.ratio, self.s)
            hr = to_grid(uint8_to_float(hr8), meta)
        else:
            hr = uint8_to_float(pad_to_multiple(hr8, self.s))
        lr = self.r.down(hr, *self.tiles())
        meta.update({'blocks': self.r.net.block_num, 'source': os.path.basename(path)})
        return hr8, as_uint8(lr), meta

    def upscale(self, lr8, meta, name):
        """LR uint8 (+ metadata or None) -> HR uint8, cropped to the original size."""
        from src.data.io import uint8_to_float
        from src.inference import make_z
        from src.fractional import from_grid
        from src.lrfile import as_uint8, lr_size
        h, w = lr8.shape[:2]
        if meta is not None:
            if meta['scale'] != self.s:
                raise IRNError(f'{name}: this LR was made at x{meta["scale"]}, but the '
                               f'checkpoint is x{self.s}')
            made = meta.get('fractional_scale', self.s)
            if self.ratio and made != self.ratio:
                raise IRNError(f'{name}: this LR was made at x{made}, but --scale {self.ratio} '
                               'was given')
            if 'fractional_scale' in meta:
                want = (meta['grid_height'] // self.s, meta['grid_width'] // self.s)
            else:
                want = lr_size(meta['height'], meta['width'], self.s)
            if (h, w) != want:
                raise IRNError(f'{name}: LR is {h}x{w}, but its IRN metadata (HR '
                               f'{meta["height"]}x{meta["width"]} at x{made}) needs '
                               f'{want[0]}x{want[1]}; was it resized?')
        z = make_z(self.r.z_shape(h, w), self.args.z_mode, self.args.seed)
        hr = self.r.up(uint8_to_float(lr8), z, *self.tiles())
        if meta is None and self.ratio:  # no record: the size x ratio, rounded
            meta = {'scale': self.s, 'fractional_scale': self.ratio, 'grid_height': h * self.s,
                    'grid_width': w * self.s, 'height': round(h * self.ratio),
                    'width': round(w * self.ratio)}
        if meta is not None and 'fractional_scale' in meta:
            hr = from_grid(hr, meta, name)
        elif meta is not None:
            hr = hr[:meta['height'], :meta['width']]
        return as_uint8(hr)

    def write_lr(self, path, lr8, meta):
        """Write the LR as --format asks (PNG or the lossy codec); returns (path, encoded bytes)."""
        from src.codecs import encode
        from src.lrfile import jpeg_with_meta, write_lr_png
        from src.utils.atomic import write_bytes
        fmt = self.args.format
        if fmt == 'png':
            path = lossless(path)
            write_lr_png(path, lr8, meta)
            return path, None
        path = lossy_lr_path(path, fmt)
        data = encode(lr8, fmt, self.args.quality)
        if fmt == 'jpeg':
            data = jpeg_with_meta(data, meta)
        elif meta['height'] % self.s or meta['width'] % self.s:
            log.warning('%s: a WebP LR carries no IRN metadata, so `up` cannot crop the padding '
                        'back (HR %dx%d is not a multiple of x%d)', path, meta['height'],
                        meta['width'], self.s)
        write_bytes(path, data, f'{fmt.upper()} LR')  # creates the folder
        return path, data

    def restore(self, lr8, lossy, name):
        """The LR handed to IRN: CRM-restored with a CRM, else as read (warning if lossy)."""
        if self.crm is None:
            if lossy:
                log.warning('%s: a lossy (JPEG / WebP) LR without a CRM (--crm): plain IRN '
                            'upscales it poorly (the codec destroys what IRN hides in the LR)',
                            name)
            return lr8
        from src.compression import restore_lr
        if not lossy:
            log.warning('%s: a CRM on a lossless LR (the CRM removes codec artefacts)', name)
        tile, overlap = self.tiles()
        return restore_lr(self.crm, lr8, tile // self.s, overlap // self.s)

    def down(self, path, n):
        """Mode ``down``: write the IRN LR (PNG, or JPEG / WebP) with its metadata."""
        _, lr8, meta = self.downscale(path)
        out, _ = self.write_lr(output_path(self.args, path, n), lr8, meta)
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
        if meta is None and data[:4] == b'RIFF':
            log.warning('%s: a WebP LR has no IRN metadata: the output is not cropped to an '
                        'original size', path)
        elif meta is None:
            log.warning('%s: no IRN metadata, so probably not made by `infer.py down` (e.g. a '
                        'bicubic or re-saved LR). IRN upscales such LRs poorly (blur, '
                        'artefacts) and the output is not cropped to an original size', path)
        lr8 = self.restore(to_rgb_uint8(raw, path), is_lossy(data), path)
        hr8 = self.upscale(lr8, meta, path)
        out = output_path(self.args, path, n)
        write_image(out, hr8)
        return f'{path} {raw.shape[0]}x{raw.shape[1]} -> {out} {hr8.shape[0]}x{hr8.shape[1]}'

    def roundtrip(self, path, n):
        """Mode ``roundtrip``: down, (codec, CRM), up; print PSNR (RGB and Y) and the LR rate."""
        from src.codecs import bits_per_pixel, decode
        from src.metrics import calculate_psnr
        hr8, lr8, meta = self.downscale(path)
        out, data = self.write_lr(output_path(self.args, path, n, '_lr'), lr8, meta)
        if data is not None:
            lr8 = self.restore(decode(data, out), True, out)
        sr8 = self.upscale(lr8, meta, path)
        write_image(output_path(self.args, path, n, '_rt'), sr8)
        psnr = calculate_psnr(sr8, hr8)
        psnr_y = calculate_psnr(sr8, hr8, test_y_channel=True)
        size = os.path.getsize(out)
        return (f'{path} {hr8.shape[0]}x{hr8.shape[1]}: round trip PSNR {psnr:.2f} dB RGB, '
                f'{psnr_y:.2f} dB Y (whole image, no border crop), LR {size} bytes = '
                f'{bits_per_pixel(size, *hr8.shape[:2]):.3f} bpp')
