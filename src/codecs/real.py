"""Real lossy codecs through OpenCV: what a stored or transmitted LR actually goes through.

The authors' IRN-CRM code (``Apply_jpg``) uses ``cv2.imencode('.jpg')`` with OpenCV's defaults
(baseline, 4:2:0 chroma); SAIN's ``REALCOMP`` uses Pillow, whose JPEG and WebP round trips are
byte-identical to OpenCV 4.11's here (SAIN.md section 3.2), so one OpenCV path serves both.
An image enters as float in [0, 1], is clamped, scaled by 255 and rounded half to even (numpy and
torch round alike), encoded, decoded, and returned as ``uint8 / 255`` in float32.
"""
import cv2
import numpy as np

from src.utils.errors import IRNError

__all__ = ['FORMATS', 'encode', 'decode', 'roundtrip', 'roundtrip_batch', 'bits_per_pixel']

FORMATS = {'jpeg': ('.jpg', cv2.IMWRITE_JPEG_QUALITY), 'webp': ('.webp', cv2.IMWRITE_WEBP_QUALITY)}


def _format(fmt):
    key = str(fmt).lower()
    key = {'jpg': 'jpeg'}.get(key, key)
    if key not in FORMATS:
        raise IRNError(f'codec format {fmt!r}: expected one of {sorted(FORMATS)}')
    return key


def to_uint8(img):
    """float HxWx3 (any range) -> uint8: clamp to [0, 1], x255, round half to even."""
    return np.round(np.clip(np.asarray(img, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def encode(rgb8, fmt='jpeg', quality=90):
    """Encode an HxWx3 uint8 RGB image; returns the file bytes (what ``cv2.imwrite`` would write)."""
    ext, flag = FORMATS[_format(fmt)]
    if not 1 <= int(quality) <= 100:
        raise IRNError(f'codec quality {quality}: expected 1..100')
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb8[:, :, ::-1]), [int(flag), int(quality)])
    if not ok:
        raise IRNError(f'OpenCV could not encode a {rgb8.shape} image as {fmt}')
    return buf.tobytes()


def decode(data, name='<bytes>'):
    """Decode JPEG / WebP bytes to an HxWx3 uint8 RGB image."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise IRNError(f'{name}: not a decodable image')
    return img[:, :, ::-1]


def roundtrip(img, fmt='jpeg', quality=90):
    """float HxWx3 RGB in [0, 1] -> (decoded float32 HxWx3 = uint8 / 255, number of bytes)."""
    data = encode(to_uint8(img), fmt, quality)
    return decode(data).astype(np.float32) / np.float32(255.0), len(data)


def roundtrip_batch(x, fmt='jpeg', quality=90):
    """NCHW float RGB batch -> (decoded NCHW float32 batch, list of byte counts per image)."""
    x = np.asarray(x)
    out, sizes = np.empty(x.shape, np.float32), []
    for i in range(x.shape[0]):
        dec, n = roundtrip(x[i].transpose(1, 2, 0), fmt, quality)
        out[i] = dec.transpose(2, 0, 1)
        sizes.append(n)
    return out, sizes


def bits_per_pixel(nbytes, hr_height, hr_width):
    """The authors' rate: compressed LR file bytes x 8 over the HR pixel count."""
    return 8.0 * nbytes / float(hr_height * hr_width)
