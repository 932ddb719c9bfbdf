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
from src.loss import draw_step_noise, y_noise_option
from src.metrics import tensor_to_uint8
from src.models.base import Model
from src.report import IRN_COLUMNS
from src.utils.errors import IRNError

OPTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'options')


class IRNTraining:
    """The IRN objective's training, shared by the models that use it (IRN, IRN-Color):
    :class:`src.loss.IRNWithLoss` on ``self.net``, PyTorch-exact Adam with global-norm
    clipping, the memory mode of the config, optional loss scaling. A batch is (HR, fit
    target); z for the reconstruction branch has the forward output's z shape and comes from
    ``rng``."""

    loss_names = ('l_fit', 'l_ce', 'l_rec')

    def setup_training(self, make_reducer=None):
        from src.amp import apply_amp, build_loss_scale
        from src.loss import build_net_with_loss
        from src.optim import build_optimizer, build_train_step
        t = self.opt['train']
        self.net = apply_amp(self.build_net(), t['amp_level'])
        self.optimizer = build_optimizer(self.net, self.opt)
        self.loss_scale = build_loss_scale(t)  # None unless train.loss_scale (amp O1)
        reducer = make_reducer(self.optimizer.params) if make_reducer else None
        self.step = build_train_step(build_net_with_loss(self.net, self.opt), self.optimizer,
                                     self.opt, reducer, self.loss_scale)

    def state_cells(self):
        cells = {'net': self.net, 'opt': self.optimizer}
        if self.loss_scale is not None:
            cells['loss_scale'] = self.loss_scale
        return cells

    def draw_noise(self, rng, lr_shape):
        """This rank's rows of the step's noise: z ~ N(0, I), or with ``train.add_noise_on_y``
        (the noise fine-tune) the LR noise and z in the authors' draw order."""
        _, c, h, w = lr_shape
        zc = self.net.channel_out - self.net.lr_channels
        y_noise = y_noise_option(self.opt['train'])
        if y_noise is None:
            return self.draw_rows(rng, (zc, h, w))
        batch = self.opt['datasets']['train']['batch_size']
        return draw_step_noise(rng, batch, c, zc, h, w, y_noise)[self.rank_id::self.rank_size]

    def train_step(self, batch, lr, rng):
        hr, target = batch  # target: the LR guide, or IRN-Color's grey (the output's size)
        z = self.draw_noise(rng, target.shape)
        out = self.step(*self.tensors(hr, target, z), lr)
        loss, l_fit, l_ce, l_rec, norm = (float(o.asnumpy()) for o in out[:5])
        values = {'loss': loss, 'l_fit': l_fit, 'l_ce': l_ce, 'l_rec': l_rec, 'grad_norm': norm}
        return values, bool(out[5].asnumpy())


class IRNModel(IRNTraining, Model):
    """IRN and its IJCV variants, chosen as the authors do by ``network_G.which_model_G``:

    * IRN: x2 / x4 / x8, ``network_G.block_num``: coupling blocks per Haar level;
    * IRN_LD (``use_ConvDownsampling: true``): a learnable s x s downsampling, any integer
      scale 2..8, then ``block_num: [K]`` blocks (train_IRN_x3.yml: x3, [12]);
    * IRN_E (``down_first: true``): all Haar levels first, then ``block_num: [K]`` blocks at
      the lowest resolution (train_IRN_E_x4.yml: x4, [16]).
    """

    name = 'IRN'
    SCHEMA = {'network_G': {'which_model_G': {'use_ConvDownsampling': (bool, False),
                                              'down_first': (bool, False)}}}
    CHOICES = {'scale': tuple(range(2, 9))}
    val_fields = ('psnr_rgb', 'psnr_y', 'ssim_rgb', 'ssim_y', 'lr_psnr_rgb', 'lr_psnr_y')
    best_metric = 'psnr_y'

    @classmethod
    def check_config(cls, opt, source):
        scale, net = opt['scale'], opt['network_G']
        block_num = net['block_num']
        flags = net['which_model_G']
        if not block_num or not all(isinstance(b, int) and b > 0 for b in block_num):
            raise IRNError(f'{source}: network_G.block_num must be a list of positive ints, '
                           f'got {block_num!r}')
        variant = ('IRN_LD (use_ConvDownsampling)' if flags['use_ConvDownsampling'] else
                   'IRN_E (down_first)' if flags['down_first'] else None)
        if variant and len(block_num) != 1:
            raise IRNError(f'{source}: {variant} takes one block count, network_G.block_num: [K] '
                           f'(the authors read only block_num[0]), got {block_num}')
        if not flags['use_ConvDownsampling'] and scale not in (2, 4, 8):
            raise IRNError(f'{source}: scale {scale} needs the learnable downsampling '
                           '(network_G.which_model_G.use_ConvDownsampling: true); Haar levels '
                           'give 2, 4 or 8')
        if not variant and 2 ** len(block_num) != scale:
            raise IRNError(f'{source}: scale {scale} needs {scale.bit_length() - 1} levels in '
                           f'network_G.block_num (got {block_num}) and network_G.scale {scale} '
                           f'(got {net["scale"]})')
        if net['in_nc'] != 3 or net['out_nc'] != 3:
            raise IRNError(f'{source}: network_G.in_nc / out_nc must be 3 (RGB)')
        if opt['train']['lambda_fit_forw'] is None:
            opt['train']['lambda_fit_forw'] = float(scale ** 2)

    @classmethod
    def default_layout(cls, opt, scale):
        """8 blocks per Haar level for 2 / 4 / 8; other scales: IRN_LD with the x3 paper's [12]."""
        if scale in (2, 4, 8):
            opt['network_G']['block_num'] = [8] * (int(scale).bit_length() - 1)
        else:
            opt['network_G']['block_num'] = [12]
            opt['network_G']['which_model_G']['use_ConvDownsampling'] = True

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
            cls.add_codec_arguments(parser, 'png')
            parser.add_argument('--crm', help='CRM checkpoint (ours or the authors\' CRM .pth): '
                                'restore a JPEG / WebP LR before upscaling (up, roundtrip)')

    @staticmethod
    def add_codec_arguments(parser, default_format):
        """infer.py's LR codec flags: --format and --quality."""
        from src.utils.cli import quality_type
        parser.add_argument('--format', default=default_format, choices=('png', 'jpeg', 'webp'),
                            help=f'LR file of down / roundtrip (default {default_format}): png '
                                 '(lossless) or jpeg / webp (lossy: upscale with a CRM)')
        parser.add_argument('--quality', type=quality_type, default=90,
                            help='JPEG / WebP quality of the LR, 1..100 (default 90, the authors\')')

    @classmethod
    def test_config(cls, arch):
        kind = '_E' if arch.get('down_first') and arch.get('downsampling') != 'conv' else ''
        path = os.path.join(OPTIONS, f"test_IRN{kind}_x{arch['scale']}.yml")
        return path if os.path.isfile(path) else None

    # ------------------------------------------------------------------ networks
    def build_net(self, arch=None):
        from src.network import InvRescaleNet, build_from_arch
        seed = self.opt['train']['manual_seed']
        if arch:
            return build_from_arch(arch, seed)
        net, flags = self.opt['network_G'], self.opt['network_G']['which_model_G']
        return InvRescaleNet(net['block_num'], channel_in=3, seed=seed, scale=self.opt['scale'],
                             use_ConvDownsampling=flags['use_ConvDownsampling'],
                             down_first=flags['down_first'])

    @classmethod
    def from_torch(cls, state, path):
        from src.convert import torch_to_irn
        return torch_to_irn(state, path)

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
    fractional_scales = True

    def runner(self, args, net):
        from src.inference import Rescaler
        from src.runner import Runner
        crm = None
        if getattr(args, 'crm', None) and args.mode != 'down':
            from src.compression import load_crm
            crm = load_crm(args.crm)
        return Runner(args, Rescaler(net), crm)

    @staticmethod
    def export_cells(net, height=None, width=None):
        """The down (HR -> quantised LR) and up ((LR, z) -> HR) graphs for export.py."""
        from src.exporting import graph_input
        from src.inference import DownscaleNet, UpscaleNet
        net.freeze_inverses()  # IRN_LD: w^-1 as a constant (ONNX has no matrix inverse)
        s, zc = net.scale, net.channel_out - net.channel_in
        h, w = (None, None) if height is None else (height // s, width // s)
        return [('_down', DownscaleNet(net), (graph_input(3, height, width),), ['hr']),
                ('_up', UpscaleNet(net), (graph_input(3, h, w), graph_input(zc, h, w)),
                 ['lr', 'z'])]

    def validate_images(self, source):
        v = self.opt['val']
        return evaluate(self.net, source, self.opt['scale'], v['z_mode'], v['seed'], v['z_draws'])

    def validation_text(self, res, num_images):
        v = self.opt['val']
        return (f"{num_images} images, z {v['z_mode']}, seed {v['seed']}, {v['z_draws']} draw(s), "
                f"crop {self.opt['scale']}): PSNR RGB {res['psnr_rgb']:.3f} Y {res['psnr_y']:.3f} "
                f"dB, SSIM RGB {res['ssim_rgb']:.4f} Y {res['ssim_y']:.4f} | LR PSNR RGB "
                f"{res['lr_psnr_rgb']:.2f} dB")
