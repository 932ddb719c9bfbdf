"""Fractional rescaling around an integer-scale IRN (e.g. x2.5 with an x3 IRN_LD).

Down: the HR (H x W) is resized by MATLAB bicubic to the "grid" (s*h) x (s*w), where
h x w = ceil(H/r) x ceil(W/r) is the LR size MATLAB's ``imresize(img, 1/r)`` would give;
the integer-scale IRN then maps the grid to the h x w LR. Up: IRN restores the grid and
bicubic resizes it back to H x W. The LR file records r, H x W and the grid so ``up`` can
undo exactly this.
"""
import numpy as np

from src.data.bicubic import imresize_to, output_size
from src.utils.errors import IRNError

__all__ = ['parse_ratio', 'fractional_meta', 'to_grid', 'from_grid']


def parse_ratio(value, scale):
    """``--scale`` value -> the fractional ratio r, or None when it is the network's scale.

    An integer value must equal the network's scale ``scale`` (it is a check); any other
    value r > 1 asks for fractional rescaling through that network.
    """
    r = float(value)
    if r.is_integer():
        if int(r) != scale:
            raise IRNError(f'--scale {value}: the checkpoint is x{scale}; give x{scale} or a '
                           'non-integer scale (fractional rescaling through the x'
                           f'{scale} network)')
        return None
    if not 1.0 < r <= 16.0:
        raise IRNError(f'--scale {value}: a fractional scale must lie in (1, 16]')
    return r


def fractional_meta(height, width, ratio, scale):
    """The LR-file entries of a fractional down-scaling of an H x W image."""
    lr_h, lr_w = output_size(height, 1.0 / ratio), output_size(width, 1.0 / ratio)
    return {'scale': scale, 'fractional_scale': ratio, 'height': height, 'width': width,
            'grid_height': scale * lr_h, 'grid_width': scale * lr_w}


def to_grid(hr, meta):
    """HR (H x W x 3 float in [0, 1]) -> the grid image, bicubic, clipped to [0, 1]."""
    grid = imresize_to(hr, meta['grid_height'], meta['grid_width'])
    return np.clip(grid, 0.0, 1.0).astype(np.float32)


def from_grid(sr, meta, name='<lr>'):
    """IRN's upscaled grid (gh x gw x 3) -> the original H x W by bicubic (float32)."""
    want = (meta['grid_height'], meta['grid_width'])
    if sr.shape[:2] != want:
        raise IRNError(f'{name}: LR does not match its fractional metadata (grid {want[0]}x'
                       f'{want[1]} at x{meta["scale"]}); was it resized?')
    return imresize_to(sr, meta['height'], meta['width']).astype(np.float32)
