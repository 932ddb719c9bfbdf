"""Run an image-to-image function on overlapping tiles of one shape and stitch the results.

Along each axis the image is covered by the fewest tiles of at most ``tile`` pixels that
overlap by at least ``overlap``; all tiles of an image have the same size (the smallest that
covers the axis with that many tiles), so a static-shape graph is compiled once per direction
and image size, not once per tile. Tiles lie inside the image (the first and last touch its
borders, which they see as the untiled network does); an axis no longer than ``tile`` is one
tile. Each output pixel is taken from exactly one tile, the one in whose core it lies, at least
``overlap / 2`` pixels from that tile's cut edges; the outputs are pasted without blending, so
quantised outputs (an IRN LR) stay quantised. A pixel is exactly the untiled result when every
cut edge of its tile is farther than the network's receptive field; in general the context a
tile sees around its core limits the difference to an untiled run.
"""
import numpy as np

from src.utils.errors import IRNError

__all__ = ['tile_spans', 'tiled_apply']


def tile_spans(length, tile, overlap, align=1):
    """Cover ``[0, length)`` with equal tiles and split it into the cores they compute.

    Args:
        length (int): image size along one axis (a multiple of ``align``).
        tile (int): largest tile size (rounded down to a multiple of ``align``).
        overlap (int): least overlap of neighbouring tiles (rounded up to an even multiple of
            ``align``); must be smaller than ``tile``.
        align (int): every boundary is a multiple of this (the scale, when downscaling).

    Returns:
        list of (core_start, core_end, tile_start, tile_end); every tile has the same size.
    """
    tile_u = int(tile) // align
    half = -(-int(overlap) // (2 * align))
    if tile_u < 1:
        raise IRNError(f'tile size {tile} is smaller than the alignment {align}')
    if 2 * half >= tile_u:
        raise IRNError(f'tile overlap {overlap} must be smaller than the tile size {tile}')
    units = length // align
    if tile_u >= units:
        return [(0, length, 0, length)]
    count = -(-(units - 2 * half) // (tile_u - 2 * half))  # fewest tiles of tile_u
    size = -(-(units - 2 * half) // count) + 2 * half  # smallest equal size for that count
    starts = [(units - size) * i // (count - 1) for i in range(count)]
    # core boundary: the middle of two neighbours' overlap (>= 2 * half units)
    cuts = [0] + [b + (a + size - b) // 2 for a, b in zip(starts, starts[1:])] + [units]
    return [(c0 * align, c1 * align, t * align, (t + size) * align)
            for c0, c1, t in zip(cuts, cuts[1:], starts)]


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
