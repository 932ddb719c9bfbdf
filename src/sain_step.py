"""SAIN's training step: the real codec sits between two compiled graphs.

The two real-codec targets of SAIN's objective are not differentiable and run in numpy/OpenCV:
REALCOMP(lr_ref) needs only the data, REALCOMP(Q(y)) needs the HQ LR y of the current weights.
So one step is: a forward graph (HR -> y), Q(y) and both codec round trips on the host, then
the train graph (objective, gradients, clipping, Adam) fed with Q(y) and the targets. The
forward is computed twice (once without gradients), which costs about a sixth of the step.
"""
import numpy as np
from mindspore import nn, Tensor

from src.codecs.real import roundtrip_batch

__all__ = ['ForwardTap', 'SAINStep', 'draw_gmm_noise', 'quantize']


def quantize(x):
    """Q on the host: round(clamp(x, 0, 1) * 255) / 255 in float32 (half to even, as torch)."""
    return (np.round(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * np.float32(255.0))
            / np.float32(255.0)).astype(np.float32)


def draw_gmm_noise(rng, z_shape, components):
    """(gumbel, eps) for a latent of ``z_shape``: -log(E), E ~ Exp(1), then N(0, 1), each
    ``z_shape + (components,)``, drawn in that order from the numpy generator ``rng`` in float32
    (the order the authors' sampler draws them in)."""
    shape = tuple(z_shape) + (components,)
    exp = rng.standard_exponential(shape, dtype=np.float32)
    gumbel = -np.log(np.maximum(exp, np.finfo(np.float32).tiny))
    return gumbel, rng.standard_normal(shape, dtype=np.float32)


class ForwardTap(nn.Cell):
    """HR -> the high-quality LR tap y (before quantisation and the codec)."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, hr):
        return self.net(hr)[1]


class SAINStep:
    """Host side of a SAIN step around a compiled train step.

    Args:
        net (SAINet): the network the train step updates.
        train_step: ``optim.TrainStep`` / ``backprop.AccumulatingStep`` over ``SAINWithLoss``.
        comp_format (str): real codec of the targets ('JPEG' or 'WebP').
        comp_quality (int): its quality (authors: 75).
    """

    def __init__(self, net, train_step, comp_format, comp_quality):
        self.net, self.train_step = net, train_step
        self.tap = ForwardTap(net)
        self.comp_format, self.comp_quality = comp_format, comp_quality

    def targets(self, hr, lr_ref, lr_quant=None):
        """(Q(y), REALCOMP(lr_ref), REALCOMP(Q(y))) for numpy batches; ``lr_quant`` replaces
        Q(y) when given (a replay that shares the quantised LR)."""
        if lr_quant is None:
            lr_quant = quantize(self.tap(Tensor(hr)).asnumpy())
        target_ref, _ = roundtrip_batch(lr_ref, self.comp_format, self.comp_quality)
        target_rel, _ = roundtrip_batch(lr_quant, self.comp_format, self.comp_quality)
        return lr_quant, target_ref, target_rel

    def __call__(self, hr, lr_ref, gumbel, eps, lr, lr_quant=None):
        """One update; returns the train step's outputs (loss, 5 terms, grad_norm, applied)."""
        lr_quant, target_ref, target_rel = self.targets(hr, lr_ref, lr_quant)
        inputs = [Tensor(np.ascontiguousarray(a, np.float32))
                  for a in (hr, lr_ref, lr_quant, target_ref, target_rel, gumbel, eps)]
        return self.train_step(*inputs, lr)
