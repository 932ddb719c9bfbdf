"""IRN (Xiao et al., ECCV 2020): the invertible rescaling bijection HR <-> (LR, z).

The network is :class:`src.network.InvRescaleNet`; the objective L_fit + L_ce + L_rec is
:class:`src.loss.IRNWithLoss`; the step is PyTorch-exact Adam with global-norm clipping in one of
the memory modes (:func:`src.optim.build_train_step`). Evaluation is the paper's protocol
(:func:`src.evaluate.evaluate`); export writes the two directions; infer.py offers
``down`` / ``up`` / ``roundtrip``.
"""
import os

import numpy as np

from src.data.bicubic import imresize
from src.evaluate import METRICS, evaluate
from src.metrics import tensor_to_uint8
from src.models.base import Model
from src.report import IRN_COLUMNS
from src.utils.errors import IRNError

OPTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'options')


class IRNModel(Model):
    """Base IRN at x2 / x4 / x8 (``network_G.block_num``: coupling blocks per Haar level)."""

    name = 'IRN'
    CHOICES = {'scale': (2, 4, 8)}
    loss_names = ('l_fit', 'l_ce', 'l_rec')
    val_fields = ('psnr_rgb', 'psnr_y', 'ssim_rgb', 'ssim_y', 'lr_psnr_rgb', 'lr_psnr_y')
    best_metric = 'psnr_y'

    @classmethod
    def check_config(cls, opt, source):
        scale, net = opt['scale'], opt['network_G']
        block_num = net['block_num']
        if not block_num or not all(isinstance(b, int) and b > 0 for b in block_num):
            raise IRNError(f'{source}: network_G.block_num must be a list of positive ints, '
                           f'got {block_num!r}')
        if 2 ** len(block_num) != scale:
            raise IRNError(f'{source}: scale {scale} needs {scale.bit_length() - 1} levels in '
                           f'network_G.block_num (got {block_num}) and network_G.scale {scale} '
                           f'(got {net["scale"]})')
        if net['in_nc'] != 3 or net['out_nc'] != 3:
            raise IRNError(f'{source}: network_G.in_nc / out_nc must be 3 (RGB)')
        if opt['train']['lambda_fit_forw'] is None:
            opt['train']['lambda_fit_forw'] = float(scale ** 2)

    @classmethod
    def default_layout(cls, opt, scale):
        opt['network_G']['block_num'] = [8] * (int(scale).bit_length() - 1)

    @classmethod
    def add_arguments(cls, parser, tool):
        if tool == 'val':
            parser.add_argument('--z_mode', choices=('sample', 'zero'), help='default: val.z_mode')
            parser.add_argument('--z_draws', type=int, help='z draws averaged (default: val.z_draws)')
            parser.add_argument('--seed', type=int, help='seed of the z draws (default: val.seed)')
        elif tool == 'infer':
            parser.add_argument('--z_mode', default='sample', choices=('sample', 'zero'),
                                help='z for upscaling: N(0, I) samples (default) or zeros')
            parser.add_argument('--seed', type=int, default=0, help='seed of the z sample')

    @classmethod
    def test_config(cls, arch):
        path = os.path.join(OPTIONS, f"test_IRN_x{arch['scale']}.yml")
        return path if os.path.isfile(path) else None

    # ------------------------------------------------------------------ networks
    def build_net(self, arch=None):
        from src.network import InvRescaleNet
        block_num = arch['block_num'] if arch else self.opt['network_G']['block_num']
        return InvRescaleNet(block_num, channel_in=3, seed=self.opt['train']['manual_seed'])

    def from_torch(self, state, path):
        from src.convert import torch_to_irn
        return torch_to_irn(state, path)

    # ------------------------------------------------------------------ training
    def setup_training(self, make_reducer=None):
        from src.amp import apply_amp
        from src.loss import build_net_with_loss
        from src.optim import build_optimizer, build_train_step
        t = self.opt['train']
        self.net = apply_amp(self.build_net(), t['amp_level'])
        self.optimizer = build_optimizer(self.net, self.opt)
        reducer = make_reducer(self.optimizer.params) if make_reducer else None
        self.step = build_train_step(build_net_with_loss(self.net, self.opt), self.optimizer,
                                     self.opt, reducer)

    def state_cells(self):
        return {'net': self.net, 'opt': self.optimizer}

    def train_step(self, batch, lr, rng):
        hr, lr_ref = batch
        _, _, h, w = lr_ref.shape
        z = self.draw_rows(rng, (self.net.channel_out - self.net.channel_in, h, w))
        out = self.step(*self.tensors(hr, lr_ref, z), lr)
        loss, l_fit, l_ce, l_rec, norm = (float(o.asnumpy()) for o in out[:5])
        values = {'loss': loss, 'l_fit': l_fit, 'l_ce': l_ce, 'l_rec': l_rec, 'grad_norm': norm}
        return values, bool(out[5].asnumpy())

    # ------------------------------------------------------------------ evaluation
    metrics = METRICS
    report_columns = IRN_COLUMNS

    def eval_protocol(self, args):
        val = self.opt['val']
        z_mode = args.z_mode or val['z_mode']
        draws = 1 if z_mode == 'zero' else (args.z_draws if args.z_draws is not None
                                            else val['z_draws'])
        if draws < 1:
            raise IRNError(f'--z_draws must be >= 1, got {draws}')
        seed = args.seed if args.seed is not None else val['seed']
        return {'scale': self.opt['scale'], 'z_mode': z_mode, 'z_draws': draws, 'seed': seed,
                'crop': self.opt['scale'], 'uint8': True, 'y': 'MATLAB rgb2ycbcr (float)',
                'lr_reference': 'rounded MATLAB bicubic, no crop'}

    def protocol_text(self, protocol):
        from src.report import protocol_text
        return protocol_text(protocol)

    def evaluate_set(self, net, images, protocol, keep_images=False):
        scale, bicubic = protocol['scale'], []

        def keep_bicubic():  # the rounded bicubic LR the LR score compares against, to save
            for name, hr in images:
                bic = imresize(hr.astype(np.float64), 1.0 / scale).transpose(2, 0, 1)
                bicubic.append(tensor_to_uint8(bic))
                yield name, hr

        results = evaluate(net, keep_bicubic() if keep_images else images, scale,
                           z_mode=protocol['z_mode'], seed=protocol['seed'],
                           draws=protocol['z_draws'], keep_images=keep_images)
        if keep_images:
            for r, bic in zip(results, bicubic):
                r['images'] = {'LR': r.pop('lr'), 'SR': r.pop('sr'), 'LR_bicubic': bic}
        return results

    # ------------------------------------------------------------------ deployment
    infer_modes = ('down', 'up', 'roundtrip')

    def runner(self, args, net):
        from src.inference import Rescaler
        from src.runner import Runner
        return Runner(args, Rescaler(net))

    @staticmethod
    def export_cells(net, height=None, width=None):
        """The down (HR -> quantised LR) and up ((LR, z) -> HR) graphs for export.py."""
        from src.exporting import graph_input
        from src.inference import DownscaleNet, UpscaleNet
        s, zc = net.scale, net.channel_out - net.channel_in
        h, w = (None, None) if height is None else (height // s, width // s)
        return [('_down', DownscaleNet(net), (graph_input(3, height, width),), ['hr']),
                ('_up', UpscaleNet(net), (graph_input(3, h, w), graph_input(zc, h, w)),
                 ['lr', 'z'])]

    def validate(self, source):
        v = self.opt['val']
        return self.summarize(evaluate(self.net, source, self.opt['scale'], v['z_mode'], v['seed'],
                                  v['z_draws']))

    def validation_text(self, res, num_images):
        v = self.opt['val']
        return (f"{num_images} images, z {v['z_mode']}, seed {v['seed']}, {v['z_draws']} draw(s), "
                f"crop {self.opt['scale']}): PSNR RGB {res['psnr_rgb']:.3f} Y {res['psnr_y']:.3f} "
                f"dB, SSIM RGB {res['ssim_rgb']:.4f} Y {res['ssim_y']:.4f} | LR PSNR RGB "
                f"{res['lr_psnr_rgb']:.2f} dB")
