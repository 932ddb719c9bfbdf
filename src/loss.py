"""The IRN training objective (spec: L_fit + L_rec + L_ce) as functions and a net-with-loss cell.

The same objective trains IRN-Color, with the grey image in place of the LR, the cv2 grey as
its target and z = 0 in the reconstruction branch (``gaussian_scale`` 0).
"""
from mindspore import nn, ops

from src.network import Quantization


def sum_per_image_mean(t):
    """Sum over (C, H, W), mean over the batch: the authors' reduction."""
    return t.sum(axis=(1, 2, 3)).mean()


def l2_loss(a, b):
    """The authors' 'l2': mean over the batch of sum (a - b)^2."""
    return sum_per_image_mean(ops.square(a - b))


def charbonnier_loss(a, b, eps=1e-6):
    """The authors' 'l1': mean over the batch of sum sqrt((a - b)^2 + eps)."""
    return sum_per_image_mean(ops.sqrt(ops.square(a - b) + eps))


class IRNLoss(nn.Cell):
    """The loss terms, split where the network sits between them.

    ``forward_terms(out, lr_ref)`` -> (l_fit, l_ce) on the forward output;
    ``backward_input(out, z_noise)`` -> the inverse pass's input cat[Quant(lr), gaussian_scale*z];
    ``reconstruction(hr, rec)`` -> l_rec (Charbonnier, eps 1e-6) on the inverse output.
    ``channels`` is the width of the LR part of ``out`` (3 for IRN, 1 for the colour net's grey).
    """

    def __init__(self, channels, lambda_fit, lambda_rec=1.0, lambda_ce=1.0, gaussian_scale=1.0):
        super().__init__()
        self.channels = channels
        self.quant = Quantization()
        self.lambda_fit, self.lambda_rec, self.lambda_ce = lambda_fit, lambda_rec, lambda_ce
        self.gaussian_scale = gaussian_scale

    def forward_terms(self, out, lr_ref):
        lr, z = out[:, :self.channels], out[:, self.channels:]
        l_fit = self.lambda_fit * l2_loss(lr, lr_ref)
        l_ce = self.lambda_ce * ops.square(z).sum() / out.shape[0]
        return l_fit, l_ce

    def backward_input(self, out, z_noise):
        return ops.cat((self.quant(out[:, :self.channels]), self.gaussian_scale * z_noise), 1)

    def reconstruction(self, hr, rec):
        return self.lambda_rec * charbonnier_loss(rec, hr)


class IRNWithLoss(nn.Cell):
    """Forward-downscale, quantise, inverse-upscale and the three loss terms.

    ``construct(hr, lr_ref, z_noise)`` returns ``(loss, l_fit, l_ce, l_rec)``; z_noise is the
    standard-normal sample for the reconstruction branch, supplied by the caller so that every
    step can be replayed.

    Args:
        net (InvRescaleNet | InvGreyNet): the bijection.
        lambda_fit, lambda_rec, lambda_ce (float): loss weights (authors: scale**2, 1, 1; 3, 1, 1
            for IRN-Color).
        gaussian_scale (float): std of the z fed to the reconstruction branch (0 for IRN-Color).
    """

    def __init__(self, net, lambda_fit, lambda_rec=1.0, lambda_ce=1.0, gaussian_scale=1.0):
        super().__init__(auto_prefix=False)  # keep parameter names as in the bare network
        self.net = net
        self.loss = IRNLoss(net.lr_channels, lambda_fit, lambda_rec, lambda_ce, gaussian_scale)

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
