"""PSNR / SSIM exactly as the IRN paper evaluates them (numpy + OpenCV).

Protocol (spec section 4, same as the authors' ``codes/test.py``):

* outputs are first converted to uint8: clamp to [0, 1], multiply by 255, round
  (:func:`tensor_to_uint8`);
* ``crop_border`` pixels are removed from every border (the paper uses the scale);
* Y channel: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` on [0, 255]
  values (MATLAB ``rgb2ycbcr``), kept as float, not rounded;
* PSNR = ``20 log10(255 / sqrt(MSE))`` in float64 (``inf`` for identical images);
* SSIM: 11x11 Gaussian window (sigma 1.5), C1 = (0.01*255)^2, C2 = (0.03*255)^2,
  filtered with ``cv2.filter2D`` and reduced to the 'valid' region (5 px dropped on
  each side), mean of the SSIM map; for RGB the mean over the three channels.
"""

import math

import cv2
import numpy as np

from src.utils.errors import IRNError

__all__ = ["rgb2y", "tensor_to_uint8", "crop_border", "calculate_psnr", "calculate_ssim",
           "ssim_single_channel", "mean_metrics"]

_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def rgb2y(img):
    """MATLAB ``rgb2ycbcr`` luma of an RGB image given on the [0, 255] range.

    Args:
        img (np.ndarray): HxWx3 RGB, uint8 or float with values in [0, 255].

    Returns:
        np.ndarray: HxW float64 Y channel in [16, 235], not rounded.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise IRNError(f"rgb2y expects an HxWx3 RGB image, got shape {img.shape}")
    return img.astype(np.float64) @ _Y_COEFFS / 255.0 + 16.0


def tensor_to_uint8(img):
    """Float CHW image in [0, 1] -> HxWxC uint8 (clamp, *255, round half to even).

    Args:
        img: CHW (or 1xCxHxW) numpy array or MindSpore tensor (anything with
            ``asnumpy()``); a single-channel image gives HxWx1.

    Returns:
        np.ndarray: HxWxC uint8.
    """
    if hasattr(img, "asnumpy"):
        img = img.asnumpy()
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise IRNError(f"tensor_to_uint8 expects a CHW image, got shape {arr.shape}")
    arr = np.clip(arr, 0.0, 1.0) * 255.0
    return np.round(arr).astype(np.uint8).transpose(1, 2, 0)


def crop_border(img, border):
    """Remove ``border`` pixels from each side of an HxW[xC] image (0 = no crop)."""
    border = int(border)
    if border < 0:
        raise IRNError(f"crop border must be >= 0, got {border}")
    if border == 0:
        return img
    if img.shape[0] <= 2 * border or img.shape[1] <= 2 * border:
        raise IRNError(f"image of size {img.shape[0]}x{img.shape[1]} is too small to crop "
                       f"{border} px from each border")
    return img[border:-border, border:-border, ...]


def _prepare(img1, img2, border, test_y_channel):
    """Validate a pair, crop it and convert it to float64 (Y or RGB)."""
    img1, img2 = np.asarray(img1), np.asarray(img2)
    if img1.shape != img2.shape:
        raise IRNError(f"images to compare have different shapes: {img1.shape} vs {img2.shape}")
    if img1.ndim not in (2, 3):
        raise IRNError(f"expected HxW or HxWxC images, got shape {img1.shape}")
    if test_y_channel and img1.ndim == 3 and img1.shape[2] == 3:
        img1, img2 = rgb2y(img1), rgb2y(img2)
    img1 = crop_border(img1.astype(np.float64), border)
    img2 = crop_border(img2.astype(np.float64), border)
    return img1, img2


def calculate_psnr(img1, img2, crop_border=0, test_y_channel=False):
    """PSNR (dB) between two images on the [0, 255] range.

    Args:
        img1, img2 (np.ndarray): HxWx3 RGB (or HxW) uint8, or floats already
            rounded to integers in [0, 255].
        crop_border (int): pixels removed from each border before comparing.
        test_y_channel (bool): compare the MATLAB Y channel instead of RGB.

    Returns:
        float: PSNR in dB, ``inf`` when the images are identical.
    """
    a, b = _prepare(img1, img2, crop_border, test_y_channel)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(20.0 * math.log10(255.0 / math.sqrt(mse)))


def _gaussian_window():
    kernel = cv2.getGaussianKernel(11, 1.5)
    return np.outer(kernel, kernel.transpose())


def ssim_single_channel(img1, img2):
    """SSIM of two HxW float64 images on the [0, 255] range (mean of the valid map)."""
    c1 = (0.01 * 255) ** 2
    c2 = (0.03 * 255) ** 2
    if img1.shape[0] < 11 or img1.shape[1] < 11:
        raise IRNError(f"SSIM needs images of at least 11x11 pixels after cropping, "
                       f"got {img1.shape[0]}x{img1.shape[1]}")
    window = _gaussian_window()
    mu1 = cv2.filter2D(img1, -1, window)[5:-5, 5:-5]
    mu2 = cv2.filter2D(img2, -1, window)[5:-5, 5:-5]
    mu1_sq, mu2_sq, mu1_mu2 = mu1 ** 2, mu2 ** 2, mu1 * mu2
    sigma1_sq = cv2.filter2D(img1 ** 2, -1, window)[5:-5, 5:-5] - mu1_sq
    sigma2_sq = cv2.filter2D(img2 ** 2, -1, window)[5:-5, 5:-5] - mu2_sq
    sigma12 = cv2.filter2D(img1 * img2, -1, window)[5:-5, 5:-5] - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / (
        (mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def calculate_ssim(img1, img2, crop_border=0, test_y_channel=False):
    """SSIM between two images on the [0, 255] range (paper protocol).

    Args:
        img1, img2 (np.ndarray): HxWx3 RGB (or HxW) uint8, or floats already
            rounded to integers in [0, 255].
        crop_border (int): pixels removed from each border before comparing.
        test_y_channel (bool): compare the MATLAB Y channel instead of RGB.

    Returns:
        float: SSIM; for RGB the mean of the per-channel SSIMs.
    """
    a, b = _prepare(img1, img2, crop_border, test_y_channel)
    if a.ndim == 2:
        return ssim_single_channel(a, b)
    return float(np.mean([ssim_single_channel(a[..., c], b[..., c])
                          for c in range(a.shape[2])]))


def mean_metrics(results, keys):
    """Mean of each of ``keys`` over per-image result dicts; non-finite values (the ``inf``
    PSNR of a perfect image) are skipped, and a key with no finite value gives nan."""
    out = {}
    for key in keys:
        vals = [r[key] for r in results if key in r and math.isfinite(r[key])]
        out[key] = float(np.mean(vals)) if vals else float("nan")
    return out
