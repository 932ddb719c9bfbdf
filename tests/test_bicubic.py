"""MATLAB-compatible bicubic resize: parity with the authors' imresize_np and self-consistency."""
import math
import os

import numpy as np
import pytest

from src.data.bicubic import contributions, imresize, imresize_crop, output_size

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def fixtures():
    return np.load(os.path.join(DATA, "metrics.npz"))


@pytest.mark.parametrize("i", [0, 1])
@pytest.mark.parametrize("s", [2, 3, 4, 8])
def test_matches_authors_downscale(fixtures, i, s):
    img = fixtures[f"resize{i}_in"]
    ref = fixtures[f"resize{i}_x{s}"]
    out = imresize(img, 1 / s)
    assert out.shape == ref.shape == (math.ceil(img.shape[0] / s), math.ceil(img.shape[1] / s), 3)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


def _naive_imresize(img, scale):
    """Straightforward per-pixel MATLAB imresize (pad-based), for cross-checking."""
    def cubic(x):
        a = abs(x)
        if a <= 1:
            return 1.5 * a ** 3 - 2.5 * a ** 2 + 1
        if a <= 2:
            return -0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2
        return 0.0

    def resize_1d(vec, out_len):
        n = len(vec)
        kw = 4 / scale if scale < 1 else 4
        padded = np.pad(vec, int(kw) + 4, mode="symmetric")
        off = int(kw) + 4
        res = np.zeros(out_len)
        for x in range(1, out_len + 1):
            u = x / scale + 0.5 * (1 - 1 / scale)
            left = math.floor(u - kw / 2)
            ws, vs = [], []
            for j in range(left, left + math.ceil(kw) + 2):
                d = u - j
                ws.append(scale * cubic(d * scale) if scale < 1 else cubic(d))
                vs.append(padded[j - 1 + off])
            ws = np.array(ws) / sum(ws)
            res[x - 1] = np.dot(ws, vs)
        assert n > 0
        return res

    oh, ow = output_size(img.shape[0], scale), output_size(img.shape[1], scale)
    tmp = np.stack([resize_1d(img[:, c], oh) for c in range(img.shape[1])], axis=1)
    return np.stack([resize_1d(tmp[r], ow) for r in range(oh)], axis=0)


@pytest.mark.parametrize("scale", [2, 3, 0.5, 1 / 3, 0.25])
def test_matches_naive_reference_up_and_down(scale):
    img = np.random.default_rng(1).random((13, 17))
    np.testing.assert_allclose(imresize(img, scale), _naive_imresize(img, scale), atol=1e-12)


def test_constant_image_stays_constant_and_sizes():
    img = np.full((21, 30, 3), 0.37)
    for scale in (0.5, 1 / 3, 0.25, 0.125, 2, 3):
        out = imresize(img, scale)
        assert out.shape[:2] == (math.ceil(21 * scale), math.ceil(30 * scale))
        np.testing.assert_allclose(out, 0.37, atol=1e-12)
    w, _ = contributions(30, 8, 0.25)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)


def test_gray_uint8_and_float32_inputs_agree():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    ref = imresize(img.astype(np.float64), 0.25)
    np.testing.assert_array_equal(imresize(img, 0.25), ref)
    np.testing.assert_array_equal(imresize(img[:, :, 1], 0.25), ref[:, :, 1])
    f32 = (img / 255).astype(np.float32)
    np.testing.assert_array_equal(imresize(f32, 0.5), imresize(f32.astype(np.float64), 0.5))


@pytest.mark.parametrize("scale", [0.5, 0.25, 1 / 3, 2])
def test_crop_equals_window_of_full_resize(scale):
    img = np.random.default_rng(3).random((48, 60, 3)).astype(np.float32)
    full = imresize(img, scale)
    oh, ow = full.shape[:2]
    for top, left, h, w in [(0, 0, 4, 5), (oh - 3, ow - 4, 3, 4), (oh // 3, ow // 2, 5, 3),
                            (0, 0, oh, ow)]:
        got = imresize_crop(img, scale, top, left, h, w)
        np.testing.assert_array_equal(got, full[top:top + h, left:left + w])


def test_crop_with_preprocess_equals_converting_first():
    u8 = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    conv = lambda a: a.astype(np.float32) / np.float32(255)  # noqa: E731
    full = imresize(conv(u8), 0.25)
    got = imresize_crop(u8, 0.25, 3, 5, 8, 8, preprocess=conv)
    np.testing.assert_array_equal(got, full[3:11, 5:13])


def test_bad_arguments():
    img = np.zeros((8, 8, 3))
    with pytest.raises(ValueError):
        imresize(np.zeros((8,)), 0.5)
    with pytest.raises(ValueError):
        imresize(img, 0)
    with pytest.raises(ValueError):
        imresize_crop(img, 0.5, 2, 2, 4, 4)  # window leaves the 4x4 output
