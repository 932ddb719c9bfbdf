"""Run an image-to-image function on overlapping tiles and stitch the results.

Each output pixel is taken from exactly one tile: the image is cut into the fewest
non-overlapping, evenly sized "cores" of at most ``tile - overlap`` pixels, and each core is
computed from a tile that extends it by ``overlap / 2`` pixels on every side (less at the
image border), so no tile is larger than ``tile`` and little work is repeated. The outputs are cropped back to
the cores and pasted, so there is no blending: quantised outputs (an IRN LR) stay quantised.
The context a tile sees around its core is what limits the difference to an untiled run.
"""
import numpy as np

from src.utils.errors import IRNError

__all__ = ['tile_spans', 'tiled_apply']


def tile_spans(length, tile, overlap, align=1):
    """Split ``[0, length)`` into cores and the tiles that compute them.

    Args:
        length (int): image size along one axis (a multiple of ``align``).
        tile (int): tile size (rounded down to a multiple of ``align``).
        overlap (int): total context shared by neighbouring tiles (rounded up to an even
            multiple of ``align``); must be smaller than ``tile``.
        align (int): every boundary is a multiple of this (the scale, when downscaling).

    Returns:
        list of (core_start, core_end, tile_start, tile_end).
    """
    tile = (int(tile) // align) * align
    half = -(-int(overlap) // (2 * align)) * align
    if tile < align:
        raise IRNError(f'tile size {tile} is smaller than the alignment {align}')
    if 2 * half >= tile:
        raise IRNError(f'tile overlap {overlap} must be smaller than the tile size {tile}')
    if tile >= length:
        return [(0, length, 0, length)]
    units, core_units = length // align, (tile - 2 * half) // align
    count = -(-units // core_units)  # fewest cores of at most tile - overlap, sized evenly
    cuts = [(units * i // count) * align for i in range(count + 1)]
    return [(c0, c1, max(c0 - half, 0), min(c1 + half, length))
            for c0, c1 in zip(cuts, cuts[1:])]


def tiled_apply(fn, arrays, tile, overlap, align=1, out_num=1, out_den=1):
    """Apply ``fn`` tile by tile to same-sized HxWxC arrays and assemble its output.

    Args:
        fn (callable): ``fn([tile_of_each_array]) -> HxWxC`` output tile, of size
            ``in_size * out_num / out_den`` along each axis.
        arrays (list[np.ndarray]): inputs with equal height and width.
        tile (int): tile size in input pixels.
        overlap (int): context overlap between tiles, in input pixels.
        align (int): tile boundaries are multiples of this (so output sizes are integers).
        out_num, out_den (int): output / input size ratio (e.g. 1/4 or 4/1).

    Returns:
        np.ndarray: the stitched output, float32.
    """
    h, w = arrays[0].shape[:2]
    if any(a.shape[:2] != (h, w) for a in arrays):
        raise IRNError('tiled inputs must share height and width')
    rows = tile_spans(h, tile, overlap, align)
    cols = tile_spans(w, tile, overlap, align)

    def scale(v):
        return v * out_num // out_den

    out = None
    for c0, c1, t0, t1 in rows:
        for d0, d1, u0, u1 in cols:
            res = fn([a[t0:t1, u0:u1] for a in arrays])
            if out is None:
                out = np.empty((scale(h), scale(w)) + res.shape[2:], np.float32)
            out[scale(c0):scale(c1), scale(d0):scale(d1)] = \
                res[scale(c0 - t0):scale(c1 - t0), scale(d0 - u0):scale(d1 - u0)]
    return out
