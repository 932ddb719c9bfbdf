"""IRN-Color's training data: the grey target (OpenCV's float BGR -> GRAY of the float32
image, spec section 3) and the training patches."""
import logging

import cv2
import numpy as np

from src.data.io import uint8_to_float
from src.data.pipeline import random_augment
from src.utils.errors import IRNError

_logger = logging.getLogger('irn')


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


class GreyPatchMaker:
    """IRN-Color's training sample (the authors' LQGT dataset with ``use_grey``): an RGB patch
    and its grey target.

    No mod-crop and no LR: an image with a side shorter than ``GT_size`` is first resized to
    ``GT_size`` x ``GT_size`` (bilinear, both sides, as the authors do), then a random
    ``GT_size`` crop, the random flips / transpose, and the grey of the patch. Called like
    :class:`src.data.pipeline.PatchMaker` (``lr_full`` must be None: there is no LR).
    """

    def __init__(self, gt_size, use_flip=True, use_rot=True):
        self.gt_size = int(gt_size)
        if self.gt_size <= 0:
            raise IRNError(f'GT_size {gt_size} must be positive')
        self.use_flip, self.use_rot = bool(use_flip), bool(use_rot)
        self._warned_small = False

    def __call__(self, hr, rng, lr_full=None, name='image'):
        """``hr`` HxWx3 RGB uint8 or float32 -> (patch, grey) float32 HWC, 3 and 1 channels."""
        if lr_full is not None:
            raise IRNError(f'{name}: IRN-Color trains without an LR (datasets.train.dataroot_LQ)')
        g = self.gt_size
        h, w = hr.shape[:2]
        if h < g or w < g:
            if not self._warned_small:
                self._warned_small = True
                _logger.warning('%s: %dx%d is smaller than GT_size %d, resized to %dx%d '
                                'bilinearly (logged once)', name, h, w, g, g, g)
            hr = cv2.resize(np.ascontiguousarray(uint8_to_float(hr) if hr.dtype == np.uint8 else hr),
                            (g, g), interpolation=cv2.INTER_LINEAR)
            h = w = g
        top = int(rng.integers(0, h - g + 1))
        left = int(rng.integers(0, w - g + 1))
        patch = hr[top:top + g, left:left + g]
        if patch.dtype == np.uint8:
            patch = uint8_to_float(patch)
        patch = np.ascontiguousarray(random_augment([patch], rng, self.use_flip, self.use_rot)[0],
                                     dtype=np.float32)
        return patch, grey_target(patch)
