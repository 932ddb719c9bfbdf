"""Image file io: decode to float RGB, write PNG (atomically), list image folders, mod-crop.

Every image enters the project through :func:`read_image` / :func:`decode_image`:
the result is always float32 HxWx3 RGB in [0, 1] with the exact values an 8-bit
image gives. Grayscale is replicated to 3 channels, an alpha channel dropped, and
16-bit data rounded to 8 bit first (``round(v / 257)``); each conversion is logged
once per process on the ``irn`` logger. Problems raise :class:`IRNError` naming
the file; a PNG is checked chunk by chunk (lengths and the checksums of its critical
chunks) before it is decoded, so corrupt data gets a precise message instead of a decoder's
stderr noise. Outputs are written atomically (:mod:`src.utils.atomic`): a crash or a full
disk never leaves a truncated PNG under its final name.
"""
import struct
import zlib


import logging
import os

import cv2
import numpy as np

from src.utils.atomic import write_bytes
from src.utils.errors import IRNError

__all__ = ["IMAGE_EXTENSIONS", "read_image", "read_image_uint8", "read_bytes", "decode_raw",
           "decode_image", "to_rgb_uint8", "uint8_to_float", "encode_png", "write_png",
           "list_images", "modcrop"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_logger = logging.getLogger("irn")
_logged_conversions = set()


def _log_once(kind, name):
    """Log one message per conversion kind (grayscale, alpha, 16-bit) per process."""
    if kind not in _logged_conversions:
        _logged_conversions.add(kind)
        _logger.info("%s: %s (this conversion is logged once)", name, kind)


def _check_png(data, name):
    """Walk the chunks of PNG bytes: reject a file cut short or with a damaged critical chunk.

    Checksums of ancillary chunks (lower-case type) are not checked: decoders drop a
    damaged ancillary chunk and go on.
    """
    pos, size = len(_PNG_SIGNATURE), len(data)
    while True:
        if pos + 12 > size:
            raise IRNError(f"{name}: truncated PNG file (ends at byte {size} inside a chunk, "
                           f"no IEND chunk)")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > size:
            raise IRNError(f"{name}: truncated PNG file (the chunk at byte {pos} needs "
                           f"{end - size} more bytes)")
        ancillary = kind.isalpha() and kind[:1].islower()
        if not ancillary and struct.unpack(">I", data[end - 4:end])[0] != \
                zlib.crc32(data[pos + 4:end - 4]):
            what = kind.decode("latin-1") if kind.isalpha() else "unknown"
            raise IRNError(f"{name}: corrupt PNG data (checksum error in the {what} chunk at "
                           f"byte {pos})")
        if kind == b"IEND":
            return
        pos = end


def _check_complete(data, name):
    """Reject PNG/JPEG byte strings that are cut short or damaged (decoders may silently pad
    them, or print to stderr)."""
    if data[:8] == _PNG_SIGNATURE:
        _check_png(data, name)
    elif data[:2] == b"\xff\xd8":
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise IRNError(f"{name}: truncated JPEG file (no end-of-image marker)")


def to_rgb_uint8(img, name="image"):
    """Convert an array as ``cv2.imdecode(..., IMREAD_UNCHANGED)`` returns it to HxWx3 RGB uint8.

    Args:
        img (np.ndarray): HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA); uint8 or uint16.
        name (str): file name used in log and error messages.

    Returns:
        np.ndarray: HxWx3 uint8 RGB.
    """
    if img.dtype == np.uint16:
        _log_once("16-bit image rounded to 8 bit", name)
        img = ((img.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)  # round(v / 257)
    elif img.dtype != np.uint8:
        raise IRNError(f"{name}: unsupported pixel type {img.dtype} (expected 8 or 16 bit)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        _log_once("grayscale image replicated to 3 channels", name)
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise IRNError(f"{name}: unsupported image layout {img.shape}")
    if img.shape[2] == 4:
        _log_once("alpha channel dropped", name)
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_raw(data, name="image"):
    """Decode encoded image bytes as OpenCV stores them (BGR[A], 8/16 bit, unchanged).

    Raises:
        IRNError: empty, truncated (PNG/JPEG) or undecodable data.
    """
    data = bytes(data)
    if not data:
        raise IRNError(f"{name}: empty file")
    _check_complete(data, name)
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise IRNError(f"{name}: not a readable image (unknown format or corrupt data)")
    return img


def decode_image(data, name="image"):
    """Decode encoded image bytes (PNG, JPEG, BMP, TIFF) to float32 HxWx3 RGB in [0, 1].

    Args:
        data (bytes | np.ndarray): the encoded file content.
        name (str): file name used in error messages.

    Returns:
        np.ndarray: float32 HxWx3 RGB in [0, 1].
    """
    return uint8_to_float(to_rgb_uint8(decode_raw(data, name), name))


def uint8_to_float(img):
    """uint8 -> float32 ``img / 255`` (the project's one definition of pixel values)."""
    out = img.astype(np.float32)
    out /= np.float32(255.0)
    return out


def read_bytes(path):
    """The content of a file, or IRNError if it is missing or unreadable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise IRNError(f"{path}: image file not found")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise IRNError(f"{path}: cannot read file ({exc.strerror})") from exc


def read_image(path):
    """Read an image file as float32 HxWx3 RGB in [0, 1].

    Grayscale -> 3 channels, RGBA -> RGB, 16-bit -> 8-bit values (rounded).

    Raises:
        IRNError: missing file, unreadable, truncated or non-image file.
    """
    path = os.fspath(path)
    return decode_image(read_bytes(path), path)


def read_image_uint8(path):
    """Read an image file as HxWx3 RGB uint8 (same conversions and errors as ``read_image``)."""
    path = os.fspath(path)
    return to_rgb_uint8(decode_raw(read_bytes(path), path), path)


def encode_png(img, name="image"):
    """The PNG file bytes of an RGB image.

    Args:
        img (np.ndarray): HxWx3 RGB or HxW; uint8 as is, float in [0, 1] is clamped,
            scaled by 255 and rounded.
        name (str): the file name for messages.
    """
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.round(np.clip(img.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]
    elif not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1)):
        raise IRNError(f"{name}: cannot write an image of shape {img.shape} as PNG")
    ok, data = cv2.imencode(".png", np.ascontiguousarray(img))
    if not ok:
        raise IRNError(f"{name}: could not encode the image as PNG")
    return data.tobytes()


def write_png(path, img):
    """Write an RGB image (see :func:`encode_png`) as PNG, atomically, creating the folder.

    Raises:
        IRNError: the image cannot be encoded or the file cannot be written (a full disk:
        no partial file is left under ``path``).
    """
    path = os.fspath(path)
    write_bytes(path, encode_png(img, path), "PNG file")


def list_images(folder, recursive=False):
    """Sorted paths of the images (png, jpg, jpeg, bmp, tif, tiff) in a folder.

    Args:
        folder (str): directory to scan.
        recursive (bool): also scan sub-folders (DIV2K is flat, so off by default).

    Raises:
        IRNError: the folder does not exist or contains no image.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise IRNError(f"{folder}: image folder not found")
    paths = []
    if recursive:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            paths.extend(os.path.join(root, f) for f in files
                         if f.lower().endswith(IMAGE_EXTENSIONS))
    else:
        paths = [os.path.join(folder, f) for f in os.listdir(folder)
                 if f.lower().endswith(IMAGE_EXTENSIONS)
                 and os.path.isfile(os.path.join(folder, f))]
    if not paths and not recursive:
        nested = [d for d in sorted(os.listdir(folder)) if os.path.isdir(os.path.join(folder, d))]
        if nested:  # e.g. train/ holding T91/ and BSD200/
            paths = list_images(folder, recursive=True)
            logging.getLogger("irn").info("%s: no images at the top level; using %d images from "
                                          "its sub-folders %s", folder, len(paths), nested)
    if not paths:
        raise IRNError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return sorted(paths)


def modcrop(img, scale, name="image"):
    """Crop the bottom/right remainder so height and width are multiples of ``scale``.

    Raises:
        IRNError: the image is smaller than ``scale`` in some dimension.
    """
    scale = int(scale)
    if img.ndim not in (2, 3):
        raise IRNError(f"{name}: expected an HxW or HxWxC image, got shape {img.shape}")
    h, w = img.shape[:2]
    if h < scale or w < scale:
        raise IRNError(f"{name}: image of size {h}x{w} is smaller than the scale {scale}")
    return img[:h - h % scale, :w - w % scale, ...]
