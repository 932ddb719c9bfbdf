"""IRN-Color's grey target: OpenCV's float BGR -> GRAY of the float32 image (spec section 3)."""
import cv2
import numpy as np

from src.utils.errors import IRNError


def grey_target(rgb):
    """HxWx3 float32 RGB in [0, 1] -> HxWx1 float32 grey, bit for bit the authors' target.

    The authors convert their BGR float32 crop with ``cv2.cvtColor(..., COLOR_BGR2GRAY)``
    (about 0.299 R + 0.587 G + 0.114 B, not rounded); the same call on the same BGR bytes
    gives the same bits.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise IRNError(f'the grey target needs an HxWx3 RGB image, got shape {rgb.shape}')
    bgr = np.ascontiguousarray(rgb[..., ::-1], dtype=np.float32)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[..., None]
