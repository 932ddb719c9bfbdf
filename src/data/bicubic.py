"""MATLAB-compatible bicubic resize (``imresize(img, scale, 'bicubic')``) in numpy.

This reproduces MATLAB's ``imresize`` with the default antialiasing, which is
what IRN uses to build the LR guide: Keys cubic kernel (a = -0.5), kernel
widened by ``1/scale`` when downscaling, output size ``ceil(in * scale)``,
1-based sample positions ``u = x / scale + 0.5 * (1 - 1 / scale)``, weights
normalised per output pixel, symmetric (edge-including mirror) padding, and
separable filtering along the height first, then the width.

The filter taps of one dimension are computed once per
``(in_length, out_length, scale)`` and cached; the resize itself is a short
loop over the taps (about 4/scale of them) of vectorised gathers and
multiply-adds in float64, never a loop over pixels.
"""

import functools
import math

import numpy as np

__all__ = ["imresize", "imresize_to", "imresize_crop", "output_size", "contributions"]


def _cubic(x):
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return near + far


def _mirror(idx, length):
    """Map 0-based indices into [0, length) by symmetric (edge-repeating) reflection."""
    period = 2 * length
    m = np.mod(idx, period)
    return np.where(m >= length, period - 1 - m, m)


def output_size(in_length, scale):
    """Output length of a resize by ``scale``: ``ceil(in_length * scale)`` like MATLAB."""
    return int(math.ceil(in_length * scale))


@functools.lru_cache(maxsize=128)
def contributions(in_length, out_length, scale):
    """Filter taps of a 1-D MATLAB bicubic resize.

    Args:
        in_length (int): input length.
        out_length (int): output length.
        scale (float): resize factor (< 1 downscales with antialiasing).

    Returns:
        tuple(np.ndarray, np.ndarray): ``weights`` float64 of shape (out_length, P)
        whose rows sum to 1, and ``indices`` int64 of the same shape holding the
        0-based input positions (already mirrored into ``[0, in_length)``).
        Both arrays are read-only (they are cached).
    """
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    dist = u[:, None] - idx
    weights = scale * _cubic(dist * scale) if antialias else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    keep = np.any(weights != 0, axis=0)  # all-zero tap columns add nothing
    weights = np.ascontiguousarray(weights[:, keep])
    indices = _mirror(idx[:, keep].astype(np.int64) - 1, in_length)
    weights.setflags(write=False)
    indices.setflags(write=False)
    return weights, indices


_BLOCK_BYTES = 1 << 18  # work on row blocks of ~256 KiB so temporaries stay in cache


def _resize_rows(a, weights, indices):
    """Resize a (rows, cols) float64 array along axis 0 with the given taps."""
    out = np.empty((weights.shape[0], a.shape[1]), dtype=np.float64)
    block = max(1, _BLOCK_BYTES // (8 * a.shape[1]))
    for r0 in range(0, weights.shape[0], block):
        w_b, i_b = weights[r0:r0 + block], indices[r0:r0 + block]
        acc = np.zeros((w_b.shape[0], a.shape[1]), dtype=np.float64)
        tmp = np.empty_like(acc)
        for p in range(w_b.shape[1]):
            np.multiply(a[i_b[:, p]], w_b[:, p, None], out=tmp)
            acc += tmp
        out[r0:r0 + block] = acc
    return out


def _resize_cols(a, weights, indices):
    """Resize a (rows, cols, C) float64 array along axis 1 with the given taps."""
    rows, _, chans = a.shape
    out = np.empty((rows, weights.shape[0], chans), dtype=np.float64)
    block = max(1, _BLOCK_BYTES // (8 * weights.shape[0] * chans))
    w_b = weights.T[:, None, :, None]  # (P, 1, out, 1)
    for r0 in range(0, rows, block):
        sub = a[r0:r0 + block]
        acc = np.zeros((sub.shape[0], weights.shape[0], chans), dtype=np.float64)
        tmp = np.empty_like(acc)
        for p in range(weights.shape[1]):
            np.multiply(np.take(sub, indices[:, p], axis=1), w_b[p], out=tmp)
            acc += tmp
        out[r0:r0 + block] = acc
    return out


def _check(img, scale):
    img = np.asarray(img)
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"imresize expects an HxW or HxWxC array, got shape {img.shape}")
    if not scale > 0:
        raise ValueError(f"imresize scale must be > 0, got {scale}")
    return img


def _resize(img, scale, rows=None, cols=None, preprocess=None, size=None):
    """Shared implementation: resize by ``scale`` or to ``size`` (height, width), optionally
    only output rows/cols slices."""
    img = _check(img, scale)
    squeeze = img.ndim == 2
    a = img[:, :, None] if squeeze else img
    in_h, in_w, chans = a.shape
    if size is None:
        w_h, i_h = contributions(in_h, output_size(in_h, scale), scale)
        w_w, i_w = contributions(in_w, output_size(in_w, scale), scale)
    else:  # MATLAB imresize(img, [rows cols]): each axis scaled by out / in
        w_h, i_h = contributions(in_h, size[0], size[0] / in_h)
        w_w, i_w = contributions(in_w, size[1], size[1] / in_w)
    if rows is not None:
        w_h, i_h = w_h[rows], i_h[rows]
        lo, hi = int(i_h.min()), int(i_h.max()) + 1
        a = a[lo:hi]
        i_h = i_h - lo
    if cols is not None:
        w_w, i_w = w_w[cols], i_w[cols]
        lo, hi = int(i_w.min()), int(i_w.max()) + 1
        a = a[:, lo:hi]
        i_w = i_w - lo
    if preprocess is not None:
        a = np.asarray(preprocess(np.ascontiguousarray(a)))
    if a.dtype not in (np.float64, np.float32, np.uint8, np.uint16):
        a = a.astype(np.float64)  # the others are promoted exactly inside the multiply
    width = a.shape[1]
    tmp = _resize_rows(a.reshape(a.shape[0], width * chans), w_h, i_h)
    out = _resize_cols(tmp.reshape(-1, width, chans), w_w, i_w)
    return out[:, :, 0] if squeeze else out


def imresize(img, scale):
    """MATLAB ``imresize(img, scale, 'bicubic')`` (antialiased when downscaling).

    Args:
        img (np.ndarray): HxW or HxWxC image, any real dtype (values are used as
            they are: a uint8 image gives results on the [0, 255] range).
        scale (float): resize factor; ``1/4`` downscales by 4 (output size
            ``ceil(H/4) x ceil(W/4)``), ``2`` upscales by 2.

    Returns:
        np.ndarray: float64 array of shape (ceil(H*scale), ceil(W*scale)[, C]),
        not rounded nor clipped.
    """
    return _resize(img, scale)


def imresize_to(img, height, width):
    """MATLAB ``imresize(img, [height width], 'bicubic')``: each axis by its own factor
    (output / input length), antialiased along an axis that shrinks. Float64, unclipped."""
    if not (int(height) > 0 and int(width) > 0):
        raise ValueError(f"imresize_to needs a positive output size, got {height}x{width}")
    return _resize(img, 1.0, size=(int(height), int(width)))


def imresize_crop(img, scale, top, left, height, width, preprocess=None):
    """A window of ``imresize(img, scale)`` computed without resizing the whole image.

    Returns exactly ``imresize(preprocess(img), scale)[top:top+height, left:left+width]``
    (same taps, same summation order), touching only the input pixels that
    window depends on. Used for the aligned LR patch of a training crop.

    Args:
        img (np.ndarray): HxW or HxWxC image.
        scale (float): resize factor.
        top, left (int): window origin in the resized image.
        height, width (int): window size (must lie inside the resized image).
        preprocess (callable | None): element-wise conversion (e.g. uint8 -> float32
            / 255) applied only to the input region the window depends on.

    Returns:
        np.ndarray: float64 window of shape (height, width[, C]).
    """
    img = _check(img, scale)
    out_h, out_w = output_size(img.shape[0], scale), output_size(img.shape[1], scale)
    if not (0 <= top and top + height <= out_h and 0 <= left and left + width <= out_w
            and height > 0 and width > 0):
        raise ValueError(f"window ({top}, {left}, {height}, {width}) is outside the "
                         f"{out_h}x{out_w} resized image")
    return _resize(img, scale, slice(top, top + height), slice(left, left + width), preprocess)
