"""The IRN training objective (spec: L_fit + L_rec + L_ce) as functions and a net-with-loss cell."""
from mindspore import nn, ops

from src.network import Quantization


def sum_per_image_mean(t):
    """Sum over (C, H, W), mean over the batch: the authors' reduction."""
    return t.sum(axis=(1, 2, 3)).mean()


def l2_sum(a, b):
    """The authors' ``l2`` ReconstructionLoss: per-image sum of squares, batch mean."""
    return sum_per_image_mean(ops.square(a - b))


def charbonnier_sum(a, b):
    """The authors' ``l1`` ReconstructionLoss: per-image sum of sqrt(d^2 + 1e-6), batch mean."""
    return sum_per_image_mean(ops.sqrt(ops.square(a - b) + 1e-6))


class IRNLoss(nn.Cell):
    """The loss terms, split where the network sits between them.

    ``forward_terms(out, lr_ref)`` -> (l_fit, l_ce) on the forward output (``fit``, ``ce``);
    ``backward_input(out, z_noise)`` -> the inverse pass's input cat[Quant(lr), gaussian_scale*z];
    ``reconstruction(hr, rec)`` -> l_rec (Charbonnier, eps 1e-6) on the inverse output.
    """

    def __init__(self, channels, lambda_fit, lambda_rec=1.0, lambda_ce=1.0, gaussian_scale=1.0):
        super().__init__()
        self.channels = channels
        self.quant = Quantization()
        self.lambda_fit, self.lambda_rec, self.lambda_ce = lambda_fit, lambda_rec, lambda_ce
        self.gaussian_scale = gaussian_scale

    def fit(self, out, lr_ref):
        """lambda_fit * L2sum(LR part, bicubic reference)."""
        return self.lambda_fit * l2_sum(out[:, :self.channels], lr_ref)

    def ce(self, out):
        """lambda_ce * sum(z^2) / B."""
        return self.lambda_ce * ops.square(out[:, self.channels:]).sum() / out.shape[0]

    def forward_terms(self, out, lr_ref):
        return self.fit(out, lr_ref), self.ce(out)

    def backward_input(self, out, z_noise):
        return ops.cat((self.quant(out[:, :self.channels]), self.gaussian_scale * z_noise), 1)

    def reconstruction(self, hr, rec):
        return self.lambda_rec * charbonnier_sum(hr, rec[:, :self.channels])


class IRNWithLoss(nn.Cell):
    """Forward-downscale, quantise, inverse-upscale and the three loss terms.

    ``construct(hr, lr_ref, z_noise)`` returns ``(loss, l_fit, l_ce, l_rec)``; z_noise is the
    standard-normal sample for the reconstruction branch, supplied by the caller so that every
    step can be replayed.

    Args:
        net (InvRescaleNet): the bijection.
        lambda_fit, lambda_rec, lambda_ce (float): loss weights (authors: scale**2, 1, 1).
        gaussian_scale (float): std of the z fed to the reconstruction branch.
    """

    def __init__(self, net, lambda_fit, lambda_rec=1.0, lambda_ce=1.0, gaussian_scale=1.0):
        super().__init__(auto_prefix=False)  # keep parameter names as in the bare network
        self.net = net
        self.loss = IRNLoss(net.channel_in, lambda_fit, lambda_rec, lambda_ce, gaussian_scale)

    def construct(self, hr, lr_ref, z_noise):
        out = self.net(hr)
        l_fit, l_ce = self.loss.forward_terms(out, lr_ref)
        rec = self.net.inverse(self.loss.backward_input(out, z_noise))
        l_rec = self.loss.reconstruction(hr, rec)
        return l_fit + l_rec + l_ce, l_fit, l_ce, l_rec


def build_net_with_loss(net, opt):
    """IRNWithLoss with the weights from a parsed config's ``train`` section."""
    t = opt['train']
    return IRNWithLoss(net, t['lambda_fit_forw'], t['lambda_rec_back'], t['lambda_ce_forw'],
                       t['gaussian_scale'])


# ---------------------------------------------------------------- adversarial terms (IRN+)
GAN_TYPES = ('gan', 'ragan')


def bce_with_logits(logits, target):
    """``torch.nn.BCEWithLogitsLoss()`` (mean over all elements) against the constant ``target``
    (1.0 real, 0.0 fake), as the authors' ``GANLoss`` builds it."""
    return ops.binary_cross_entropy_with_logits(logits, ops.full_like(logits, target),
                                                reduction='mean')


def gan_generator_loss(gan_type, fake_logits, real_logits):
    """G's adversarial term (before ``gan_weight``).

    ``gan``: BCE(D(fake), real). ``ragan`` (relativistic average): the mean of
    BCE(D(real) - mean D(fake), fake) and BCE(D(fake) - mean D(real), real); ``real_logits``
    must then be detached by the caller (unused for ``gan``).
    """
    if gan_type == 'gan':
        return bce_with_logits(fake_logits, 1.0)
    return (bce_with_logits(real_logits - fake_logits.mean(), 0.0)
            + bce_with_logits(fake_logits - real_logits.mean(), 1.0)) / 2


def gan_discriminator_loss(gan_type, real_logits, fake_logits):
    """D's loss as the authors log it: ``(l_d_total, l_d_real, l_d_fake)``.

    ``gan``: total = BCE(D(real), real) + BCE(D(fake), fake). ``ragan``: the two terms are
    relative to the other batch's mean logit and the total is their mean.
    """
    if gan_type == 'gan':
        l_real = bce_with_logits(real_logits, 1.0)
        l_fake = bce_with_logits(fake_logits, 0.0)
        return l_real + l_fake, l_real, l_fake
    l_real = bce_with_logits(real_logits - fake_logits.mean(), 1.0)
    l_fake = bce_with_logits(fake_logits - real_logits.mean(), 0.0)
    return (l_real + l_fake) / 2, l_real, l_fake
