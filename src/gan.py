"""IRN+: the objective of the perceptual GAN fine-tune and its alternating G / D update.

The authors' ``IRNpModel.optimize_parameters(step)`` (spec EXTENSIONS.md section 4), in order:

1. G forward and upscaling, every step: out = G(HR), fake = G^-1(cat[Q(out[:, :3]), z]).
2. If ``step % D_update_ratio == 0 and step > D_init_iters``: G step on
   fit + rec + feature + gan (no CE term), clipped, Adam G (D frozen, but its BatchNorms still
   update their running statistics on D(fake)).
3. Every step: D step on BCE(D(HR), real) + BCE(D(fake.detach()), fake) with the pre-update
   fake of 1., Adam D (not clipped).

So D's running statistics move three times per G + D step (fake in the G step, then real and
fake in the D step) and twice per D-only step (four and twice for ``ragan``, whose G term also
looks at D(real)).
"""
from mindspore import nn, ops

from src.loss import IRNLoss, charbonnier_loss
from src.optim import TrainStep

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


class GeneratorWithLoss(nn.Cell):
    """G's objective: ``construct(hr, lr_ref, z)`` -> ``(loss, l_fit, l_rec, l_fea, l_gan, fake,
    fake_logits)``; the last two (detached) are the reconstruction the D step uses and D(fake).

    Args:
        net (InvRescaleNet): G. net_d (Discriminator_VGG_128): D (not trained here).
        net_f (VGGFeatureExtractor or None): the frozen feature extractor (None when
            ``feature_weight`` is 0).
        lambda_fit, lambda_rec, feature_weight, gan_weight (float): the term weights.
        gan_type (str): ``gan`` or ``ragan``.
        gaussian_scale (float): std of the z fed to the upscaling.
        criterion_forw (str): the fit term's ``pixel_criterion_forw`` (the yml: ``l2``).
    """

    def __init__(self, net, net_d, net_f, lambda_fit, lambda_rec, feature_weight, gan_weight,
                 gan_type='gan', gaussian_scale=1.0, criterion_forw='l2'):
        super().__init__(auto_prefix=False)  # keep the nets' own parameter names
        self.net, self.net_d, self.net_f = net, net_d, net_f
        self.loss = IRNLoss(net.lr_channels, lambda_fit, lambda_rec, 0.0, gaussian_scale,
                            criterion_forw)
        self.feature_weight, self.gan_weight, self.gan_type = feature_weight, gan_weight, gan_type

    def reconstruct(self, hr, z):
        """(out = G(hr), fake = G^-1(cat[Q(LR), gaussian_scale * z]))."""
        out = self.net(hr)
        return out, self.net.inverse(self.loss.backward_input(out, z))

    def construct(self, hr, lr_ref, z):
        out, fake = self.reconstruct(hr, z)
        l_fit = self.loss.fit(out, lr_ref)
        l_rec = self.loss.reconstruction(hr, fake)
        if self.net_f is None:
            l_fea = ops.zeros((), l_rec.dtype)
        else:
            real_fea = ops.stop_gradient(self.net_f(hr))
            l_fea = self.feature_weight * charbonnier_loss(real_fea, self.net_f(fake))
        fake_logits = self.net_d(fake)
        real_logits = fake_logits
        if self.gan_type == 'ragan':  # after D(fake): the order of D's running-stat updates
            real_logits = ops.stop_gradient(self.net_d(hr))
        l_gan = self.gan_weight * gan_generator_loss(self.gan_type, fake_logits, real_logits)
        loss = l_fit + l_rec + l_fea + l_gan
        return (loss, l_fit, l_rec, l_fea, l_gan, ops.stop_gradient(fake),
                ops.stop_gradient(fake_logits))


class DiscriminatorWithLoss(nn.Cell):
    """D's objective: ``construct(hr, fake)`` -> ``(l_d, l_d_real, l_d_fake, real_logits,
    fake_logits)``; D runs on the real batch first, then on the fake one."""

    def __init__(self, net_d, gan_type='gan'):
        super().__init__(auto_prefix=False)
        self.net_d, self.gan_type = net_d, gan_type

    def construct(self, hr, fake):
        real_logits = self.net_d(hr)
        fake_logits = self.net_d(fake)
        l_d, l_real, l_fake = gan_discriminator_loss(self.gan_type, real_logits, fake_logits)
        return (l_d, l_real, l_fake, ops.stop_gradient(real_logits),
                ops.stop_gradient(fake_logits))


class _Reconstruct(nn.Cell):
    """The fake of a D-only step: G's forward and upscaling without gradients."""

    def __init__(self, g_with_loss):
        super().__init__(auto_prefix=False)
        self.g_with_loss = g_with_loss

    def construct(self, hr, z):
        return self.g_with_loss.reconstruct(hr, z)[1]


G_FIELDS = ('loss', 'l_fit', 'l_rec', 'l_fea', 'l_gan')
D_FIELDS = ('l_d', 'l_d_real', 'l_d_fake')


class GANUpdate:
    """One IRN+ iteration, ``update(step, hr, lr_ref, z, lr_g, lr_d)`` with the authors' 1-based
    ``step``. Returns a dict of numpy values: always the D terms (``D_FIELDS``), ``d_logits_real``,
    ``d_logits_fake``, ``grad_norm_D`` and ``applied_D``; on G steps also ``G_FIELDS``,
    ``grad_norm`` (G, before clipping), ``g_logits_fake`` and ``applied``.

    Args:
        g_with_loss (GeneratorWithLoss), g_optimizer (ClippedAdam over G, clip 10),
        d_with_loss (DiscriminatorWithLoss), d_optimizer (ClippedAdam over D, no clipping).
        d_init_iters, d_update_ratio (int): G is updated when ``step % d_update_ratio == 0``
            and ``step > d_init_iters``.
        g_reducer, d_reducer: gradient all-reduce of each net in data-parallel runs.
    """

    def __init__(self, g_with_loss, g_optimizer, d_with_loss, d_optimizer, d_init_iters,
                 d_update_ratio=1, g_reducer=None, d_reducer=None):
        self.g_step = TrainStep(g_with_loss, g_optimizer, g_reducer)
        self.d_step = TrainStep(d_with_loss, d_optimizer, d_reducer)
        self.reconstruct = _Reconstruct(g_with_loss)
        self.d_init_iters, self.d_update_ratio = d_init_iters, d_update_ratio

    def updates_g(self, step):
        """Whether the authors' step ``step`` (1-based) has a G update."""
        return step % self.d_update_ratio == 0 and step > self.d_init_iters

    def __call__(self, step, hr, lr_ref, z, lr_g, lr_d):
        logs = {}
        if self.updates_g(step):
            out = self.g_step(hr, lr_ref, z, lr_g)
            logs.update(zip(G_FIELDS, (o.asnumpy() for o in out[:5])))
            fake = out[5]
            logs.update(g_logits_fake=out[6].asnumpy(), grad_norm=out[7].asnumpy(),
                        applied=bool(out[8].asnumpy()))
        else:
            fake = self.reconstruct(hr, z)
        out = self.d_step(hr, fake, lr_d)
        logs.update(zip(D_FIELDS, (o.asnumpy() for o in out[:3])))
        logs.update(d_logits_real=out[3].asnumpy(), d_logits_fake=out[4].asnumpy(),
                    grad_norm_D=out[5].asnumpy(), applied_D=bool(out[6].asnumpy()))
        return logs
