"""The IRN training objective (spec: L_fit + L_rec + L_ce) as functions and a net-with-loss cell.

The same objective trains IRN-Color, with the grey image in place of the LR, the cv2 grey as
its target and z = 0 in the reconstruction branch (``gaussian_scale`` 0).
"""
from mindspore import nn, ops

from src.network import Quantization


def sum_per_image_mean(t):
    """Sum over (C, H, W), mean over the batch: the authors' reduction."""
    return t.sum(axis=(1, 2, 3)).mean()


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
        l_fit = self.lambda_fit * sum_per_image_mean(ops.square(lr - lr_ref))
        l_ce = self.lambda_ce * ops.square(z).sum() / out.shape[0]
        return l_fit, l_ce

    def backward_input(self, out, z_noise):
        return ops.cat((self.quant(out[:, :self.channels]), self.gaussian_scale * z_noise), 1)

    def reconstruction(self, hr, rec):
        charbonnier = ops.sqrt(ops.square(hr - rec) + 1e-6)
        return self.lambda_rec * sum_per_image_mean(charbonnier)


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
