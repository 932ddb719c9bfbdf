"""The inputs every inference benchmark uses (numpy only, so the PyTorch reference in its own
environment feeds its network exactly the same image and z as ours)."""
import resource

import numpy as np


def image(w, h):
    """HR test image: uniform noise in [0, 1), HxWx3 float32 (timing does not depend on content)."""
    return np.random.default_rng(1).random((h, w, 3), dtype=np.float32)


def z_sample(h, w, channels):
    """z ~ N(0, I) for an LR of h x w, HxWxC float32 (as ``src.inference.make_z`` draws it)."""
    return np.random.default_rng(0).standard_normal((h, w, channels), dtype=np.float32)


def weights(shapes, std=0.01):
    """Random weights for parameters of the given shapes (conv5 is zero at init)."""
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(s) * std).astype(np.float32) for s in shapes]


def peak_rss_gb():
    """Peak resident memory of this process (ru_maxrss), GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
