"""The IRN training objective (spec: L_fit + L_rec + L_ce) as functions and a net-with-loss cell.

The same objective trains IRN-Color, with the grey image in place of the LR, the cv2 grey as
its target and z = 0 in the reconstruction branch (``gaussian_scale`` 0).

Also the options of the noise fine-tune (EXTENSIONS.md section 5.1): the forward fit may use
the Charbonnier criterion (``pixel_criterion_forw: l1``), and with ``add_noise_on_y`` the
quantised LR fed to the upscaling gets Gaussian noise in one batch of two (drawn by
:func:`draw_step_noise`, on the caller's numpy generator, so every step can be replayed).
"""
import numpy as np
from mindspore import nn, ops

from src.network import Quantization

CRITERIA = ('l2', 'l1')  # l1 is the authors' Charbonnier sqrt(d^2 + 1e-6), not |d|


def sum_per_image_mean(t):
    """Sum over (C, H, W), mean over the batch: the authors' reduction."""
    return t.sum(axis=(1, 2, 3)).mean()


def l2_loss(a, b):
    """The authors' 'l2': mean over the batch of sum (a - b)^2."""
    return sum_per_image_mean(ops.square(a - b))


def charbonnier_loss(a, b, eps=1e-6):
    """The authors' 'l1': mean over the batch of sum sqrt((a - b)^2 + eps)."""
    return sum_per_image_mean(ops.sqrt(ops.square(a - b) + eps))


def pixel_loss(a, b, criterion):
    """``l2`` or ``l1`` (Charbonnier) with the authors' reduction; ``criterion`` is a constant."""
    if criterion == 'l1':
        return charbonnier_loss(a, b)
    return l2_loss(a, b)


class IRNLoss(nn.Cell):
    """The loss terms, split where the network sits between them.

    ``forward_terms(out, lr_ref)`` -> (l_fit, l_ce) on the forward output (l_fit: ``fit``);
    ``backward_input(out, noise)`` -> the inverse pass's input cat[Quant(lr), gaussian_scale*z];
    ``reconstruction(hr, rec)`` -> l_rec (Charbonnier, eps 1e-6) on the inverse output.
    ``channels`` is the width of the LR part of ``out`` (3 for IRN, 1 for the colour net's grey).

    ``noise`` is z (the z channels) or, with ``noise_on_y``, all output channels: the first
    ``channels`` are added to the quantised LR as they are (already scaled, zeros in a batch
    without noise; not re-quantised), the rest is z. The fit and CE terms never see it.
    """

    def __init__(self, channels, lambda_fit, lambda_rec=1.0, lambda_ce=1.0, gaussian_scale=1.0,
                 criterion_forw='l2', noise_on_y=False):
        super().__init__()
        if criterion_forw not in CRITERIA:
            raise ValueError(f'criterion_forw must be one of {CRITERIA}, got {criterion_forw!r}')
        self.channels = channels
        self.quant = Quantization()
        self.lambda_fit, self.lambda_rec, self.lambda_ce = lambda_fit, lambda_rec, lambda_ce
        self.gaussian_scale = gaussian_scale
        self.criterion_forw = criterion_forw
        self.noise_on_y = noise_on_y

    def fit(self, out, lr_ref):
        """lambda_fit * the forward criterion between the LR part of ``out`` and ``lr_ref``."""
        return self.lambda_fit * pixel_loss(out[:, :self.channels], lr_ref, self.criterion_forw)

    def forward_terms(self, out, lr_ref):
        l_ce = self.lambda_ce * ops.square(out[:, self.channels:]).sum() / out.shape[0]
        return self.fit(out, lr_ref), l_ce

    def backward_input(self, out, noise):
        lr = self.quant(out[:, :self.channels])
        if self.noise_on_y:
            lr = lr + noise[:, :self.channels]
            noise = noise[:, self.channels:]
        return ops.cat((lr, self.gaussian_scale * noise), 1)

    def reconstruction(self, hr, rec):
        return self.lambda_rec * charbonnier_loss(rec, hr)


class IRNWithLoss(nn.Cell):
    """Forward-downscale, quantise, inverse-upscale and the three loss terms.

    ``construct(hr, lr_ref, noise)`` returns ``(loss, l_fit, l_ce, l_rec)``; ``noise`` is the
    standard-normal z for the reconstruction branch (with ``noise_on_y``, preceded by the LR
    noise channels, see :class:`IRNLoss`), supplied by the caller so that every step can be
    replayed.

    Args:
        net (InvRescaleNet | InvGreyNet): the bijection.
        lambda_fit, lambda_rec, lambda_ce (float): loss weights (authors: scale**2, 1, 1; 3, 1, 1
            for IRN-Color).
        gaussian_scale (float): std of the z fed to the reconstruction branch (0 for IRN-Color).
        criterion_forw (str): 'l2' (IRN) or 'l1' (Charbonnier; the noise fine-tune).
        noise_on_y (bool): the noise input carries LR noise channels first.
    """

    def __init__(self, net, lambda_fit, lambda_rec=1.0, lambda_ce=1.0, gaussian_scale=1.0,
                 criterion_forw='l2', noise_on_y=False):
        super().__init__(auto_prefix=False)  # keep parameter names as in the bare network
        self.net = net
        self.loss = IRNLoss(net.lr_channels, lambda_fit, lambda_rec, lambda_ce, gaussian_scale,
                            criterion_forw, noise_on_y)

    def construct(self, hr, lr_ref, noise):
        out = self.net(hr)
        l_fit, l_ce = self.loss.forward_terms(out, lr_ref)
        rec = self.net.inverse(self.loss.backward_input(out, noise))
        l_rec = self.loss.reconstruction(hr, rec)
        return l_fit + l_rec + l_ce, l_fit, l_ce, l_rec


def build_net_with_loss(net, opt):
    """IRNWithLoss with the weights from a parsed config's ``train`` section."""
    t = opt['train']
    return IRNWithLoss(net, t['lambda_fit_forw'], t['lambda_rec_back'], t['lambda_ce_forw'],
                       t['gaussian_scale'], t['pixel_criterion_forw'], bool(t['add_noise_on_y']))


def draw_step_noise(rng, batch, lr_channels, z_channels, height, width, y_noise=None):
    """The numpy noise of one training step for the whole (global) batch.

    Without ``y_noise``: z ~ N(0, I) of shape (batch, z_channels, h, w). With ``y_noise`` =
    ``(prob, scale)`` (the noise fine-tune), the authors' draw order: one uniform ``u`` for the
    batch; if ``u < prob`` the LR noise ``scale * N(0, I)`` (else zeros, and nothing drawn);
    then z. Returns cat[LR noise, z] along channels, the input :class:`IRNLoss` expects.
    """
    def normal(channels):
        return rng.standard_normal((batch, channels, height, width), dtype=np.float32)

    if y_noise is None:
        return normal(z_channels)
    prob, scale = y_noise
    applied = rng.random() < prob
    lr_noise = np.float32(scale) * normal(lr_channels) if applied else \
        np.zeros((batch, lr_channels, height, width), np.float32)
    return np.concatenate([lr_noise, normal(z_channels)], axis=1)


def y_noise_option(train_opt):
    """``(y_noise_prob, y_noise_scale)`` when ``train.add_noise_on_y`` is set, else None."""
    if not train_opt.get('add_noise_on_y'):
        return None
    return train_opt['y_noise_prob'], train_opt['y_noise_scale']


class CRMWithLoss(nn.Cell):
    """The CRM objective with IRN frozen: ``lambda_rec_jpeg * L2sum(lr, CRM(jpeg))``.

    ``construct(jpeg, lr)`` -> ``(loss, l_jpeg)`` (equal; the total and its one term), where
    ``lr`` is the quantised IRN LR and ``jpeg`` its decoded JPEG (both constants here).
    """

    def __init__(self, crm, lambda_rec_jpeg=1.0, criterion='l2'):
        super().__init__(auto_prefix=False)  # parameter names as in the bare CRM
        if criterion not in CRITERIA:
            raise ValueError(f'criterion must be one of {CRITERIA}, got {criterion!r}')
        self.crm = crm
        self.lambda_rec_jpeg = lambda_rec_jpeg
        self.criterion = criterion

    def construct(self, jpeg, lr):
        l_jpeg = self.lambda_rec_jpeg * pixel_loss(lr, self.crm(jpeg), self.criterion)
        return l_jpeg, l_jpeg


class IRNCRMJointWithLoss(nn.Cell):
    """The authors' joint IRN + CRM objective (``only_jpeg_reconstruction: False``; no yml uses it).

    ``construct(hr, lr_ref, jpeg, z)`` -> ``(loss, l_fit, l_ce, l_rec, l_jpeg)`` with
    ``jpeg`` the decoded JPEG of Q(G(hr)[:, :3]) (a constant), R = CRM(jpeg),
    l_jpeg = lambda_rec_jpeg * L2sum(Q(lr), R) (its gradient reaches G through Q(lr)), and the
    upscaling fed with ``Replace(Q(lr), Q(R))``: the value Q(R), the gradient passed to both.
    """

    def __init__(self, net, crm, irn_loss, lambda_rec_jpeg=1.0, criterion='l2'):
        super().__init__(auto_prefix=False)
        self.net, self.crm, self.loss = net, crm, irn_loss
        self.quant = Quantization()
        self.lambda_rec_jpeg, self.criterion = lambda_rec_jpeg, criterion

    def construct(self, hr, lr_ref, jpeg, z):
        out = self.net(hr)
        l_fit, l_ce = self.loss.forward_terms(out, lr_ref)
        lr = self.quant(out[:, :self.loss.channels])
        restored = self.crm(jpeg)
        l_jpeg = self.lambda_rec_jpeg * pixel_loss(lr, restored, self.criterion)
        y = self.quant(restored) + (lr - ops.stop_gradient(lr))  # exact value Q(R)
        rec = self.net.inverse(ops.cat((y, self.loss.gaussian_scale * z), 1))
        l_rec = self.loss.reconstruction(hr, rec)
        return l_jpeg + l_fit + l_rec + l_ce, l_fit, l_ce, l_rec, l_jpeg


def straight_through(value, x):
    """``value`` (computed outside the graph, e.g. Q(x)) with the identity gradient to ``x``."""
    return value + (x - ops.stop_gradient(x))


class SAINWithLoss(nn.Cell):
    """SAIN's objective (SAIN.md section 4), the real-codec targets given as inputs.

    ``construct(hr, lr_ref, lr_quant, target_ref, target_rel, gumbel, eps)`` returns
    ``(loss, l_forw_fit1, l_forw_fit2, l_reg, l_rel, l_back_rec)``:

    * (out, y) = net(hr); ``lr_quant`` = Q(y) computed from the same forward outside the graph
      (straight-through to y), so the real codec and this graph see the same 8-bit image;
    * y' = DiffJPEG(Q(y)); z = gaussian_scale * GMM(gumbel, eps); (x_hat, y_r) = net^-1([y' | z]);
    * l_forw_fit1 = lf * l2(y, lr_ref), l_forw_fit2 = lf * l2(out[:, :3], target_ref) with
      target_ref = REALCOMP(lr_ref), l_reg = lf * l2(Q(y), y_r), l_rel = lf * l2(out[:, :3],
      target_rel) with target_rel = REALCOMP(Q(y)), l_back_rec = lb * charbonnier(x_hat, hr);
    * loss = l_back_rec + (l_forw_fit1 + l_forw_fit2 + l_reg + l_rel) / 4.

    Args:
        net (SAINet): the network (holds the mixture).
        diffjpeg (DiffJPEG): the training codec simulator.
        lambda_fit, lambda_rec (float): ``lambda_fit_forw`` (authors: scale**2), ``lambda_rec_back``.
        gaussian_scale (float): factor on the sampled z (authors: 1).
    """

    def __init__(self, net, diffjpeg, lambda_fit, lambda_rec=1.0, gaussian_scale=1.0):
        super().__init__(auto_prefix=False)  # keep parameter names as in the bare network
        self.net, self.diffjpeg = net, diffjpeg
        self.lambda_fit, self.lambda_rec, self.gaussian_scale = lambda_fit, lambda_rec, gaussian_scale
        self.channels = net.channel_in

    def construct(self, hr, lr_ref, lr_quant, target_ref, target_rel, gumbel, eps):
        out, lr = self.net(hr)
        lr_sim = out[:, :self.channels]
        l_fit1 = self.lambda_fit * l2_loss(lr, lr_ref)
        lr_q = straight_through(lr_quant, lr)
        z = self.gaussian_scale * self.net.gmm(gumbel, eps)
        rec, lr_rec = self.net.inverse(ops.cat((self.diffjpeg(lr_q), z), 1))
        l_back = self.lambda_rec * charbonnier_loss(rec, hr)
        l_fit2 = self.lambda_fit * l2_loss(lr_sim, target_ref)
        l_reg = self.lambda_fit * l2_loss(lr_q, lr_rec)
        l_rel = self.lambda_fit * l2_loss(lr_sim, target_rel)
        loss = l_back + (l_fit1 + l_fit2 + l_reg + l_rel) / 4
        return loss, l_fit1, l_fit2, l_reg, l_rel, l_back
