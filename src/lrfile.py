"""IRN LR files: 8-bit PNGs (or JPEGs) that carry how they were made.

``infer.py down`` pads an HR image to a multiple of the scale; the original size, the scale and
the network layout are stored as JSON in a ``tEXt`` chunk with keyword ``irn`` so that
``infer.py up`` can check the LR and crop its output back. Ordinary image tools keep showing
the PNG; tools that strip metadata lose the chunk (``up`` then warns and does not crop).
A JPEG LR (``down --format jpeg``) carries the same JSON in a comment (COM) segment right after
the start-of-image marker, ``irn\0`` + JSON; decoders skip it.
"""
import json
import struct
import zlib

import numpy as np

from src.data.io import encode_png
from src.utils.atomic import write_bytes
from src.utils.errors import IRNError

__all__ = ['KEYWORD', 'write_lr_png', 'read_lr_meta', 'png_text_chunks', 'jpeg_with_meta',
           'jpeg_comment_meta', 'lr_size', 'as_uint8']

KEYWORD = b'irn'
_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))


def png_text_chunks(data):
    """``{keyword: text}`` of the tEXt chunks of PNG bytes ({} for a non-PNG)."""
    if data[:8] != _SIGNATURE:
        return {}
    out, pos = {}, 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack('>I', data[pos:pos + 4])[0], data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b'tEXt' and b'\0' in body:
            key, text = body.split(b'\0', 1)
            out[key.decode('latin-1')] = text.decode('latin-1')
        if kind in (b'IDAT', b'IEND'):
            break
        pos += 12 + length
    return out


def write_lr_png(path, lr, meta):
    """Write an LR image (HxWx3 uint8 RGB, or float k/255) as PNG with ``meta`` as JSON text
    (atomically: a full disk or a crash leaves no partial file under ``path``)."""
    data = encode_png(lr, path)
    ihdr_end = 8 + 12 + struct.unpack('>I', data[8:12])[0]
    text = _chunk(b'tEXt', KEYWORD + b'\0' + json.dumps(meta, sort_keys=True).encode('latin-1'))
    write_bytes(path, data[:ihdr_end] + text + data[ihdr_end:], 'LR PNG file')


def jpeg_with_meta(data, meta):
    """JPEG bytes with ``meta`` as an ``irn`` comment segment after the SOI marker."""
    if data[:2] != b'\xff\xd8':
        raise IRNError('jpeg_with_meta: the data is not a JPEG stream')
    payload = KEYWORD + b'\0' + json.dumps(meta, sort_keys=True).encode('latin-1')
    return data[:2] + b'\xff\xfe' + struct.pack('>H', len(payload) + 2) + payload + data[2:]


def jpeg_comment_meta(data):
    """The text of the ``irn`` comment of JPEG bytes, or None (also for a non-JPEG)."""
    if data[:2] != b'\xff\xd8':
        return None
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xff and data[pos + 1] not in (0xd9, 0xda):
        length = struct.unpack('>H', data[pos + 2:pos + 4])[0]
        body = data[pos + 4:pos + 2 + length]
        if data[pos + 1] == 0xfe and body.startswith(KEYWORD + b'\0'):
            return body[len(KEYWORD) + 1:].decode('latin-1')
        pos += 2 + length
    return None


def read_lr_meta(path, data):
    """The IRN metadata dict of an LR file's bytes, or None when it has none.

    Raises:
        IRNError: the chunk exists but is not valid IRN metadata.
    """
    text = png_text_chunks(data).get(KEYWORD.decode())
    if text is None:
        text = jpeg_comment_meta(data)
    if text is None:
        return None
    try:
        meta = json.loads(text)
        meta = {'scale': int(meta['scale']), 'height': int(meta['height']),
                'width': int(meta['width']), **{k: v for k, v in meta.items()
                                                 if k not in ('scale', 'height', 'width')}}
    except (ValueError, KeyError, TypeError):
        raise IRNError(f'{path}: damaged IRN metadata (PNG text chunk / JPEG comment)') from None
    return meta


def lr_size(height, width, scale):
    """LR size of an HR image of ``height`` x ``width`` padded up to a multiple of ``scale``."""
    return -(-height // scale), -(-width // scale)


def as_uint8(img):
    """Float image in [0, 1] -> uint8 (clamp, x255, round)."""
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
