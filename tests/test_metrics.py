"""PSNR / SSIM / Y conversion against the authors' evaluation (fixtures/metrics.npz)."""
import math
import os

import numpy as np
import pytest

from src.metrics import calculate_psnr, calculate_ssim, crop_border, rgb2y, tensor_to_uint8
from src.utils.errors import IRNError

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def fx():
    return np.load(os.path.join(DATA, "metrics.npz"))


@pytest.mark.parametrize("i", [0, 1, 2])
def test_matches_authors_metrics(fx, i):
    gt, sr, crop = fx[f"pair{i}_gt_rgb"], fx[f"pair{i}_sr_rgb"], int(fx[f"pair{i}_crop"])
    assert abs(calculate_psnr(sr, gt, crop) - fx[f"pair{i}_psnr"]) < 1e-6
    assert abs(calculate_ssim(sr, gt, crop) - fx[f"pair{i}_ssim"]) < 1e-6
    assert abs(calculate_psnr(sr, gt, crop, test_y_channel=True) - fx[f"pair{i}_psnr_y"]) < 1e-6
    assert abs(calculate_ssim(sr, gt, crop, test_y_channel=True) - fx[f"pair{i}_ssim_y"]) < 1e-6
    # float inputs holding the same integer values give the same numbers
    assert calculate_psnr(sr.astype(np.float64), gt.astype(np.float32), crop) == \
        calculate_psnr(sr, gt, crop)


def test_rgb2y_values():
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], dtype=np.uint8)
    y = rgb2y(img)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y[0], [16.0, 16 + (65.481 + 128.553 + 24.966), 16 + 65.481])


def test_psnr_known_value_and_identity():
    a = np.zeros((20, 20, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 3  # MSE = 9 / 3 = 3 over all channels
    assert math.isclose(calculate_psnr(a, b), 20 * math.log10(255 / math.sqrt(3)), rel_tol=1e-12)
    assert calculate_psnr(a, a) == float("inf")
    assert calculate_ssim(a, a) == pytest.approx(1.0)


def test_crop_border_and_errors():
    img = np.zeros((10, 12, 3))
    assert crop_border(img, 2).shape == (6, 8, 3)
    assert crop_border(img, 0) is img
    with pytest.raises(IRNError):
        crop_border(img, 5)
    with pytest.raises(IRNError):
        calculate_psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(IRNError):
        calculate_ssim(np.zeros((12, 12, 3)), np.zeros((12, 12, 3)), crop_border=2)


def test_tensor_to_uint8():
    chw = np.array([[[-0.2, 0.0, 0.3 / 255, 1.6 / 255, 1.0, 1.3]]], dtype=np.float32)
    out = tensor_to_uint8(chw)
    assert out.dtype == np.uint8 and out.shape == (1, 6, 1)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 0, 2, 255, 255])  # clamped, rounded
    rgb = np.random.default_rng(0).random((1, 3, 4, 5)).astype(np.float32)
    out = tensor_to_uint8(rgb)
    assert out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, np.round(rgb[0].transpose(1, 2, 0) * 255).astype(np.uint8))
