"""SAIN's infer.py modes: ``down`` writes the compressed LR SAIN was trained for, ``up`` takes
it back, ``roundtrip`` does both in memory and prints PSNR and the rate.

``down``: read, reflect-pad to a multiple of the scale, HR -> Q(HQ LR) -> real codec
(``--format jpeg|webp --quality Q``, OpenCV) -> ``<stem>.jpg`` / ``<stem>.webp``. A JPEG LR carries
the original size in a COM segment (``SAIN {json}``), which decoders ignore, so ``up`` crops
back; WebP has no such place here, so a padded WebP LR comes back at the padded size (``down``
warns). ``up``: decode -> z from the learned mixture (noise from numpy's generator seeded by
``--seed``) -> inverse -> PNG. ``--tile`` / ``--tile_overlap`` as for IRN.
"""
import json
import logging
import os
import struct

import numpy as np
import mindspore as ms

from src.codecs.real import FORMATS, bits_per_pixel, decode, encode
from src.inference import Rescaler
from src.runner import output_path, pad_to_multiple, write_image
from src.sain_eval import MixtureNet, SAINDownscaleNet, SAINUpscaleNet
from src.sain_step import draw_gmm_noise
from src.utils.atomic import write_bytes
from src.utils.errors import IRNError

__all__ = ['SAINRunner', 'add_jpeg_comment', 'jpeg_comments']

log = logging.getLogger('irn')
TAG = b'SAIN '


def add_jpeg_comment(data, text):
    """JPEG bytes with a COM segment holding ``text`` right after the SOI marker."""
    body = text.encode('utf-8')
    if data[:2] != b'\xff\xd8' or len(body) > 65533:
        raise IRNError('cannot add a comment: not a JPEG stream, or the comment is too long')
    return data[:2] + b'\xff\xfe' + struct.pack('>H', len(body) + 2) + body + data[2:]


def jpeg_comments(data):
    """The COM segments of JPEG bytes before the image data ([] for anything else)."""
    out, pos = [], 2
    if data[:2] != b'\xff\xd8':
        return out
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: no more header segments
            break
        length = struct.unpack('>H', data[pos + 2:pos + 4])[0]
        if marker == 0xFE:
            out.append(data[pos + 4:pos + 2 + length])
        pos += 2 + length
    return out


def read_meta(data):
    """The metadata ``down`` stored in a JPEG LR, or None."""
    for body in jpeg_comments(data):
        if body.startswith(TAG):
            try:
                return json.loads(body[len(TAG):].decode('utf-8'))
            except (ValueError, UnicodeDecodeError):
                return None
    return None


class SAINRunner:
    """SAIN's infer.py modes, one image at a time (``args``: infer.py's command line)."""

    modes = ('down', 'up', 'roundtrip')

    def __init__(self, args, net):
        self.args, self.net, self.s = args, net, net.scale
        self.fmt = 'webp' if args.format.upper() == 'WEBP' else 'jpeg'
        if not 1 <= args.quality <= 100:
            raise IRNError(f'--quality {args.quality}: expected 1..100')
        self.r = Rescaler(net, cells=(SAINDownscaleNet(net), SAINUpscaleNet(net)))
        zc, k = net.channel_out - net.channel_in, net.gmm_components
        self.mixture = MixtureNet(net)
        self.mixture.set_inputs(*[ms.Tensor(shape=[1, zc, None, None, k], dtype=ms.float32)] * 2)

    def describe(self):
        """How the outputs are made (codec, z, tiles), for the first line infer.py prints."""
        a = self.args
        return (f'LR codec {self.fmt.upper()} q{a.quality}, z from the learned mixture seed '
                f'{a.seed}' + (f', tiles {a.tile} overlap {a.tile_overlap}' if a.tile else ''))

    def run(self, mode, path, n):
        """Process one input file in ``mode``; returns the line to print."""
        return getattr(self, mode)(path, n)

    def _compressed(self, path):
        """Read, pad, downscale and encode: (hr uint8, LR file bytes, codec bytes, meta)."""
        from src.data.io import read_image_uint8, uint8_to_float
        from src.lrfile import as_uint8
        hr8 = read_image_uint8(path)
        h, w = hr8.shape[:2]
        lr = self.r.down(uint8_to_float(pad_to_multiple(hr8, self.s)), self.args.tile,
                         self.args.tile_overlap)
        coded = encode(as_uint8(lr), self.fmt, self.args.quality)
        meta = {'model': 'SAIN', 'scale': self.s, 'height': h, 'width': w,
                'format': self.fmt, 'quality': self.args.quality}
        if self.fmt == 'jpeg':
            return hr8, add_jpeg_comment(coded, TAG.decode() + json.dumps(meta)), len(coded), meta
        if h % self.s or w % self.s:
            log.warning('%s: padded to %dx%d; a WebP LR carries no original size, so `up` '
                        'returns the padded size', path, h + (-h % self.s), w + (-w % self.s))
        return hr8, coded, len(coded), meta

    def _upscaled(self, data, name):
        """LR file bytes -> HR uint8 (cropped to the original size when the file says it)."""
        from src.lrfile import as_uint8
        lr8 = decode(data, name)
        meta = read_meta(data)
        if meta is not None and meta.get('scale') != self.s:
            raise IRNError(f'{name}: this LR was made at x{meta.get("scale")}, but the '
                           f'checkpoint is x{self.s}')
        h, w = lr8.shape[:2]
        rng = np.random.default_rng(int(self.args.seed))
        gumbel, eps = draw_gmm_noise(rng, self.net.latent_shape((1, 3, h, w)),
                                     self.net.gmm_components)
        from src.network.fast_conv import mindspore_conv
        with mindspore_conv():
            z = self.mixture(ms.Tensor(gumbel), ms.Tensor(eps)).asnumpy()[0].transpose(1, 2, 0)
        hr = self.r.up(lr8.astype(np.float32) / np.float32(255), z, self.args.tile,
                       self.args.tile_overlap)
        if meta is not None:
            hr = hr[:meta['height'], :meta['width']]
        return as_uint8(hr)

    def down(self, path, n):
        """Mode ``down``: write the compressed LR (JPEG with its metadata, or WebP)."""
        hr8, data, coded, _ = self._compressed(path)
        out = os.path.splitext(output_path(self.args, path, n))[0] + FORMATS[self.fmt][0]
        write_bytes(out, data, 'LR file')  # atomically: no partial LR under its name
        h, w = hr8.shape[:2]
        return (f'{path} {h}x{w} -> {out} ({self.fmt.upper()} q{self.args.quality}, {coded} bytes, '
                f'{bits_per_pixel(coded, h, w):.3f} bpp)')

    def up(self, path, n):
        """Mode ``up``: decode a compressed (or any) LR and write the upscaled PNG."""
        from src.data.io import read_bytes
        data = read_bytes(path)
        if read_meta(data) is None:
            log.warning('%s: no SAIN metadata (a WebP LR, or not made by `infer.py down`): the '
                        'output is not cropped to an original size', path)
        hr8 = self._upscaled(data, path)
        out = os.path.splitext(output_path(self.args, path, n))[0] + '.png'
        write_image(out, hr8)
        return f'{path} -> {out} {hr8.shape[0]}x{hr8.shape[1]}'

    def roundtrip(self, path, n):
        """Mode ``roundtrip``: down, codec and up in memory; print PSNR (RGB and Y) and bpp."""
        from src.metrics import calculate_psnr
        hr8, data, coded, _ = self._compressed(path)
        sr8 = self._upscaled(data, path)
        write_image(os.path.splitext(output_path(self.args, path, n, '_rt'))[0] + '.png', sr8)
        h, w = hr8.shape[:2]
        return (f'{path} {h}x{w}: {self.fmt.upper()} q{self.args.quality} '
                f'{bits_per_pixel(coded, h, w):.3f} bpp, round trip PSNR '
                f'{calculate_psnr(sr8, hr8):.2f} dB RGB, '
                f'{calculate_psnr(sr8, hr8, test_y_channel=True):.2f} dB Y (no border crop)')
