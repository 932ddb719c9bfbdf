"""IRN on your own images: downscale to an IRN LR, upscale it back, or both.

    python infer.py down --ckpt irn_x4.ckpt --input photo.jpg --output lr/
    python infer.py up --ckpt irn_x4.ckpt --input lr/photo.png --output hr/ [--z_mode zero]
    python infer.py roundtrip --ckpt irn_x4.ckpt --input photos/ --output rt/ --tile 512

``down`` accepts any size: the image is reflect-padded (bottom / right) to a multiple of the
scale and the original size is stored in the LR PNG (text chunk ``irn``), so ``up`` crops back.
By default the LR is lossless (PNG): IRN hides the high frequencies in its least significant
details, which JPEG destroys. ``up`` on an LR that was not made by IRN (e.g. a bicubic LR; told
apart only by the missing metadata) works but gives blurry, artefacted results.

Lossy LRs (IRN with JPEG, the authors' IJCV extension): ``down --format jpeg --quality 90`` (or
``webp``) writes the LR through that codec (a JPEG keeps the metadata in a comment segment; a
WebP has none); ``up --crm crm.ckpt`` restores such an LR with a Compression Restoration Module
trained for that codec and quality before IRN upscales it. Plain IRN on a lossy LR is poor.
``--tile N --tile_overlap M`` (HR pixels) bound the memory of large images.
"""
import argparse
import logging
import os

import numpy as np

from src.utils.cli import run
from src.utils.errors import IRNError

log = logging.getLogger('irn')
JPEG = ('.jpg', '.jpeg')
LOSSY_EXT = {'jpeg': '.jpg', 'webp': '.webp'}


def parse_args(argv=None):
    """Command line: mode, the shared --ckpt/--scale/--device_target, input/output, z, tiling."""
    parser = argparse.ArgumentParser(description='IRN downscaling / upscaling of your images')
    parser.add_argument('mode', choices=('down', 'up', 'roundtrip'))
    parser.add_argument('--ckpt', required=True, help="our .ckpt or the authors' .pth")
    parser.add_argument('--scale', type=int, choices=(2, 4, 8), help='expected scale (checked)')
    parser.add_argument('--device_target', default='CPU', choices=('CPU', 'GPU', 'Ascend'))
    parser.add_argument('--input', required=True, help='an image file or a folder of images')
    parser.add_argument('--output', '--output_dir', dest='output', required=True,
                        help='output folder (or a .png file for a single input)')
    parser.add_argument('--z_mode', default='sample', choices=('sample', 'zero'),
                        help='z for upscaling: N(0, I) samples (default) or zeros')
    parser.add_argument('--seed', type=int, default=0, help='seed of the z sample (default 0)')
    parser.add_argument('--tile', type=int, default=0,
                        help='process in tiles of N HR pixels (0: whole image)')
    parser.add_argument('--tile_overlap', type=int, default=64,
                        help='context shared by neighbouring tiles, HR pixels (default 64)')
    parser.add_argument('--format', default='png', choices=('png', 'jpeg', 'webp'),
                        help='LR file of down / roundtrip: png (lossless, default), or jpeg / webp '
                             '(then upscale with --crm)')
    parser.add_argument('--quality', type=int, default=90,
                        help='JPEG / WebP quality of the LR, 1..100 (default 90, the authors\')')
    parser.add_argument('--crm', help='CRM checkpoint (ours or the authors\' CRM .pth): restore a '
                                      'JPEG / WebP LR before upscaling (up, roundtrip)')
    args = parser.parse_args(argv)
    if not 1 <= args.quality <= 100:
        parser.error('--quality must be in 1..100')
    return args


def list_inputs(path):
    """The image files named by ``path`` (a file, or the images of a folder)."""
    from src.data.io import list_images
    if os.path.isdir(path):
        return list_images(path)
    if not os.path.exists(path):
        raise IRNError(f'{path}: input not found')
    return [path]


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
    want = LOSSY_EXT[fmt]
    base, ext = os.path.splitext(path)
    if (ext.lower() in JPEG and fmt == 'jpeg') or ext.lower() == want:
        return path
    return base + want


def is_lossy(data):
    """True for JPEG or WebP bytes."""
    return data[:2] == b'\xff\xd8' or (data[:4] == b'RIFF' and data[8:12] == b'WEBP')


def write_image(path, img8):
    """Write an HxWx3 uint8 RGB image as PNG or JPEG (by extension), creating folders."""
    import cv2
    from src.data.io import write_png
    if path.lower().endswith(JPEG + ('.webp',)):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if not cv2.imwrite(path, np.ascontiguousarray(img8[:, :, ::-1])):
            raise IRNError(f'{path}: could not write the image file')
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
    """Holds the network and the options; one method per mode, one image at a time."""

    def __init__(self, args, rescaler, crm=None):
        self.args, self.r, self.s, self.crm = args, rescaler, rescaler.scale, crm

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

    def write_lr(self, path, lr8, meta):
        """Write the LR as --format asks (PNG or the lossy codec); returns (path, encoded bytes)."""
        from src.codecs import encode
        from src.lrfile import jpeg_with_meta, write_lr_png
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
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)
        return path, data

    def restore(self, lr8, lossy, name):
        """The LR handed to IRN: CRM-restored with --crm, else as read (warning if lossy)."""
        if self.crm is None:
            if lossy:
                log.warning('%s: a lossy (JPEG / WebP) LR without --crm: plain IRN upscales it '
                            'poorly (the codec destroys what IRN hides in the LR)', name)
            return lr8
        from src.compression import restore_lr
        if not lossy:
            log.warning('%s: --crm on a lossless LR (the CRM removes codec artefacts)', name)
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
        """Mode ``roundtrip``: down, (codec, CRM), up; print PSNR (RGB and Y) and the rate."""
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
        rate = os.path.getsize(out)
        rate = f', LR {rate} bytes = {bits_per_pixel(rate, *hr8.shape[:2]):.3f} bpp'
        return (f'{path} {hr8.shape[0]}x{hr8.shape[1]}: round trip PSNR {psnr:.2f} dB RGB, '
                f'{psnr_y:.2f} dB Y (whole image, no border crop){rate}')


def main(argv=None):
    """Entry point: load the network once, then process every input image."""
    args = parse_args(argv)
    if args.tile < 0 or args.tile_overlap < 0:
        raise IRNError('--tile and --tile_overlap must be >= 0')
    inputs = list_inputs(args.input)
    from src.inference import Rescaler, load_network
    from src.utils.device import setup_device
    setup_device(args.device_target)
    net = load_network(args.ckpt, args.scale)
    if args.tile and args.tile_overlap >= args.tile:
        raise IRNError(f'--tile_overlap {args.tile_overlap} must be smaller than --tile '
                       f'{args.tile}')
    crm = None
    if args.crm and args.mode != 'down':
        from src.compression import load_crm
        crm = load_crm(args.crm)
    if args.format != 'png' and args.mode != 'up':
        log.warning('%s LR at quality %d: plain IRN cannot upscale a lossy LR well; upscale it '
                    'with a CRM trained for this codec and quality (infer.py up --crm CRM.ckpt)%s',
                    args.format.upper(), args.quality, '' if crm is not None else
                    ' (none given)' if args.mode == 'roundtrip' else '')
    runner = Runner(args, Rescaler(net), crm)
    z = 'z = 0' if args.z_mode == 'zero' else f'z ~ N(0, I), seed {args.seed}'
    tiles = f', tiles {args.tile} overlap {args.tile_overlap}' if args.tile else ''
    codec = f', LR {args.format} q{args.quality}' if args.format != 'png' else ''
    codec += f', CRM {args.crm}' if crm is not None else ''
    print(f'IRN x{net.scale} {args.mode} ({args.ckpt}; {z}{tiles}{codec})')
    for path in inputs:
        print(getattr(runner, args.mode)(path, len(inputs)), flush=True)
    return 0


if __name__ == '__main__':
    run(main)
