"""Fractional scales around an integer-scale IRN: MATLAB bicubic to a given size, the grid."""
import math

import numpy as np
import pytest

from src.data.bicubic import imresize, imresize_to
from src.fractional import fractional_meta, from_grid, parse_ratio, to_grid
from src.utils.errors import IRNError


@pytest.mark.parametrize('s', [2, 3, 4])
def test_resize_to_a_size_is_imresize_by_the_common_factor(s):
    img = np.random.default_rng(s).random((24, 36, 3))
    np.testing.assert_array_equal(imresize_to(img, 24 // s, 36 // s), imresize(img, 1 / s))
    np.testing.assert_array_equal(imresize_to(img, 24 * s, 36 * s), imresize(img, s))


def test_resize_to_scales_each_axis_by_its_own_factor():
    """MATLAB imresize(img, [rows cols]): rows by rows/H, columns by cols/W, independently."""
    img = np.random.default_rng(0).random((25, 36))
    out = imresize_to(img, 10, 30)
    assert out.shape == (10, 30)
    for j in (0, 17):  # a column alone, resized by 10/25 (a 1-wide image keeps its width)
        np.testing.assert_allclose(out[:, j], imresize_to(imresize_to(img, 25, 30)[:, j:j + 1], 10, 1)[:, 0],
                                   atol=1e-12)
        np.testing.assert_allclose(imresize(img[:, j:j + 1], 10 / 25)[:, 0],
                                   imresize_to(img, 10, 36)[:, j], atol=1e-12)
    with pytest.raises(ValueError):
        imresize_to(img, 0, 4)


def test_fractional_grid_sizes_and_round_trip():
    meta = fractional_meta(512, 341, 2.5, 3)
    lr_h, lr_w = math.ceil(512 / 2.5), math.ceil(341 / 2.5)  # MATLAB imresize(img, 1/2.5) sizes
    assert meta == {'scale': 3, 'fractional_scale': 2.5, 'height': 512, 'width': 341,
                    'grid_height': 3 * lr_h, 'grid_width': 3 * lr_w}
    yy, xx = np.mgrid[0:40, 0:30] / 40.0
    hr = np.stack([0.5 + 0.4 * np.sin(3 * yy), xx, 0.5 * yy * xx + 0.2], -1).astype(np.float32)
    meta = fractional_meta(40, 30, 1.6, 2)
    grid = to_grid(hr, meta)
    assert grid.shape == (50, 38, 3) and grid.dtype == np.float32
    assert grid.min() >= 0 and grid.max() <= 1
    back = from_grid(grid, meta)  # with a perfect IRN in between: bicubic there and back
    assert back.shape == hr.shape and np.abs(back - hr).max() < 5e-3
    with pytest.raises(IRNError, match='was it resized'):
        from_grid(grid[:-2], meta, 'x.png')


def test_parse_ratio():
    assert parse_ratio('2.5', 3) == 2.5 and parse_ratio(3, 3) is None and parse_ratio('3.0', 3) is None
    for value, msg in [('2', 'the checkpoint is x3'), ('0.5', 'must lie in'), ('20.5', 'must lie in')]:
        with pytest.raises(IRNError, match=msg):
            parse_ratio(value, 3)
