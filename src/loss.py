"""The IRN training objective as a net-with-loss cell (spec: L_fit + L_rec + L_ce)."""
from mindspore import nn, ops

from src.network import Quantization


def sum_per_image_mean(t):
    """Sum over (C, H, W), mean over the batch: the authors' reduction."""
    return t.sum(axis=(1, 2, 3)).mean()


class IRNWithLoss(nn.Cell):
    """Forward-downscale, quantise, inverse-upscale and the three loss terms.

    ``construct(hr, lr_ref, z_noise)`` returns ``(loss, l_fit, l_ce, l_rec)`` where z_noise is
    the standard-normal sample for the reconstruction branch (scaled by gaussian_scale here),
    supplied by the caller so that every step can be replayed.

    Args:
        net (InvRescaleNet): the bijection.
        lambda_fit, lambda_rec, lambda_ce (float): loss weights (authors: scale**2, 1, 1).
        gaussian_scale (float): std of the z fed to the reconstruction branch.
    """

    def __init__(self, net, lambda_fit, lambda_rec=1.0, lambda_ce=1.0, gaussian_scale=1.0):
        super().__init__(auto_prefix=False)  # keep parameter names as in the bare network
        self.net = net
        self.quant = Quantization()
        self.lambda_fit = lambda_fit
        self.lambda_rec = lambda_rec
        self.lambda_ce = lambda_ce
        self.gaussian_scale = gaussian_scale
        self.channels = net.channel_in

    def construct(self, hr, lr_ref, z_noise):
        out = self.net(hr)
        lr, z = out[:, :self.channels], out[:, self.channels:]
        batch = hr.shape[0]
        l_fit = self.lambda_fit * sum_per_image_mean(ops.square(lr - lr_ref))
        l_ce = self.lambda_ce * ops.square(z).sum() / batch
        rec = self.net.inverse(ops.cat((self.quant(lr), self.gaussian_scale * z_noise), 1))
        charbonnier = ops.sqrt(ops.square(hr - rec[:, :self.channels]) + 1e-6)
        l_rec = self.lambda_rec * sum_per_image_mean(charbonnier)
        return l_fit + l_rec + l_ce, l_fit, l_ce, l_rec


def build_net_with_loss(net, opt):
    """IRNWithLoss with the weights from a parsed config's ``train`` section."""
    t = opt['train']
    return IRNWithLoss(net, t['lambda_fit_forw'], t['lambda_rec_back'], t['lambda_ce_forw'],
                       t['gaussian_scale'])
