"""SAIN (Yang et al., AAAI 2023): compression-aware image rescaling with a self-asymmetric INN.

The network is :class:`src.network.sain.SAINet` (Haar levels, enhanced blocks whose last one
taps the high-quality LR, vanilla blocks that simulate the codec, and a learned Gaussian mixture
for z). Training (SAIN.md section 4): :class:`src.loss.SAINWithLoss` through the authors'
differentiable JPEG, with the two real-codec targets computed on the host between a forward
graph and the train graph (:class:`src.sain_step.SAINStep`); Adam, clipping and schedule as IRN.
Evaluation (:mod:`src.sain_eval`): Q(LR) -> real JPEG / WebP at each quality -> seeded mixture
z -> inverse, with the IRN and bicubic & bicubic baselines. The configs use the authors' SAIN
key names (``network:``, ``train.lr``, ``train.weight_decay``, ``path.pretrain_model``).
"""
import os

from src.config import OPTIONAL
from src.models.base import Model
from src.utils.errors import IRNError

OPTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'options')
QUALITIES = [30, 50, 70, 80, 90]
# the authors' SAIN names for keys the shared machinery reads under base IRN's names
ALIASES = (('train', 'lr', 'lr_G', 2e-4), ('train', 'weight_decay', 'weight_decay_G', 1e-5),
           ('path', 'pretrain_model', 'pretrain_model_G', None))


class SAINModel(Model):
    """SAIN at x2 / x4 (``network.e_blocks`` / ``v_blocks`` / ``gmm_components``)."""

    name = 'SAIN'
    SCHEMA = {
        'name': (str, 'SAIN'),
        'scale': (int, 2),
        'crop_border': (int, OPTIONAL),        # test yml: null = scale
        'datasets': {'train': {'GT_size': (int, 128)}},
        'network': {
            'subnet': (str, 'DBNet'),
            'in_nc': (int, 3),
            'out_nc': (int, 3),
            'e_blocks': (int, 5),
            'v_blocks': (int, 3),
            'scale': (int, 2),
            'gmm_components': (int, 5),
            'init': (str, 'xavier'),
        },
        'path': {'pretrain_model': (str, OPTIONAL), 'pretrain_model_G': (str, OPTIONAL)},
        'train': {
            'use_diffcomp': (bool, True),
            'use_realcomp': (bool, True),
            'comp_format': (str, 'JPEG'),
            'comp_quality': (int, 75),
            'lr': (float, OPTIONAL), 'lr_G': (float, OPTIONAL),
            'weight_decay': (float, OPTIONAL), 'weight_decay_G': (float, OPTIONAL),
        },
        'test': {'format': (str, 'JPEG'), 'qualities': (list, list(QUALITIES))},
    }
    CHOICES = {
        'scale': (2, 4, 8),
        'network.subnet': ('DBNet',),
        'network.init': ('xavier',),
        'train.use_diffcomp': (True,),   # the authors' step calls the simulator unconditionally
        'train.use_realcomp': (True,),   # ... and both real-codec targets
        'train.comp_format': ('JPEG', 'WebP'),
        'test.format': ('JPEG', 'WebP'),
        # block-wise modes need single-output ops; SAIN's taps and host codec are not (README)
        'train.memory_mode': ('auto', 'plain'),
        'train.amp_level': ('O0',),
    }
    loss_names = ('l_forw_fit1', 'l_forw_fit2', 'l_reg', 'l_rel', 'l_back_rec')
    val_fields = ('psnr_rgb', 'psnr_y', 'ssim_rgb', 'ssim_y', 'lr_psnr_rgb', 'lr_psnr_y', 'bpp')
    best_metric = 'psnr_rgb'  # the authors validate on RGB PSNR
    infer_modes = ('down', 'up', 'roundtrip')

    def __init__(self, opt, rank_id=0, rank_size=1):
        super().__init__(opt, rank_id, rank_size)
        k = opt['network']['gmm_components']
        # the authors also log the mixture: mu{i}, pi{i}, logvar{i}
        self.loss_names = self.loss_names + tuple(
            f'{p}{i}' for p in ('mu', 'pi', 'logvar') for i in range(k))

    # ------------------------------------------------------------------ config
    @classmethod
    def check_config(cls, opt, source):
        for section, ours, shared, default in ALIASES:
            sec = opt[section]
            if sec[ours] is not None and sec[shared] is not None and sec[ours] != sec[shared]:
                raise IRNError(f'{source}: {section}.{ours} ({sec[ours]}) and {section}.{shared} '
                               f'({sec[shared]}) disagree; SAIN configs use {section}.{ours}')
            value = sec[ours] if sec[ours] is not None else sec[shared]
            sec[ours] = sec[shared] = default if value is None else value
        scale, net = opt['scale'], opt['network']
        net['scale'] = scale
        if net['in_nc'] != 3 or net['out_nc'] != 3:
            raise IRNError(f'{source}: network.in_nc / out_nc must be 3 (RGB)')
        if net['e_blocks'] < 1 or net['v_blocks'] < 0 or net['gmm_components'] < 1:
            raise IRNError(f'{source}: network needs e_blocks >= 1, v_blocks >= 0 and '
                           f"gmm_components >= 1, got {net['e_blocks']}, {net['v_blocks']}, "
                           f"{net['gmm_components']}")
        t = opt['train']
        if t['lambda_fit_forw'] is None:
            t['lambda_fit_forw'] = float(scale ** 2)
        if not 1 <= t['comp_quality'] <= 99:
            raise IRNError(f"{source}: train.comp_quality must be 1..99 (the differentiable JPEG "
                           f"divides by zero at 100), got {t['comp_quality']}")
        lr_size = opt['datasets']['train']['GT_size'] // scale
        if lr_size % 16:
            raise IRNError(f"{source}: datasets.train.GT_size {opt['datasets']['train']['GT_size']} "
                           f'gives {lr_size}x{lr_size} LR patches; the differentiable JPEG needs '
                           'multiples of 16 (the authors use 128)')
        for q in opt['test']['qualities']:
            if not (isinstance(q, int) and (1 <= q <= 100 or q == -1)):
                raise IRNError(f'{source}: test.qualities must be ints 1..100 (or -1: no codec), '
                               f'got {q!r}')

    @classmethod
    def default_layout(cls, opt, scale):
        layout = {2: (5, 3), 4: (10, 6)}.get(int(scale))
        if layout is None:
            raise IRNError(f'SAIN has no published layout for x{scale}: pass --config')
        opt['network']['e_blocks'], opt['network']['v_blocks'] = layout

    @classmethod
    def add_arguments(cls, parser, tool):
        if tool == 'val':
            parser.add_argument('--format', type=str.upper, choices=('JPEG', 'WEBP'),
                                help='real codec of the LR (default: test.format)')
            parser.add_argument('--qualities', type=int, nargs='+', metavar='Q',
                                help='codec qualities, -1 = no codec (default: test.qualities)')
            parser.add_argument('--z_draws', type=int, help='z draws averaged (default: val.z_draws)')
            parser.add_argument('--seed', type=int, help='seed of the z draws (default: val.seed)')
            parser.add_argument('--irn_ckpt', help='IRN checkpoint of the same scale: adds the '
                                'IRN column (its LR through the same codec)')
            parser.add_argument('--no_bicubic', action='store_true',
                                help='leave out the bicubic & bicubic column')
        elif tool == 'infer':
            parser.add_argument('--format', type=str.upper, choices=('JPEG', 'WEBP'),
                                default='JPEG', help='down / roundtrip: codec of the LR file')
            parser.add_argument('--quality', type=int, default=75,
                                help='down / roundtrip: codec quality (default 75, as trained)')
            parser.add_argument('--seed', type=int, default=0,
                                help='up / roundtrip: seed of the mixture noise for z')

    @classmethod
    def test_config(cls, arch):
        path = os.path.join(OPTIONS, f"test_SAIN_JPEG_x{arch['scale']}.yml")
        return path if os.path.isfile(path) else None

    # ------------------------------------------------------------------ networks
    def build_net(self, arch=None):
        from src.network.sain import SAINet
        n = arch or self.opt['network']
        return SAINet(arch['scale'] if arch else self.opt['scale'], n['e_blocks'], n['v_blocks'],
                      n['gmm_components'], seed=self.opt['train']['manual_seed'])

    @classmethod
    def from_torch(cls, state, path):
        from src.network.sain import torch_state_to_sain
        return torch_state_to_sain(state, path)

    # ------------------------------------------------------------------ training
    def setup_training(self, make_reducer=None):
        from src.codecs.diffjpeg import DiffJPEG
        from src.loss import SAINWithLoss
        from src.optim import build_optimizer, build_train_step
        from src.sain_step import SAINStep
        t = self.opt['train']
        self.net = self.build_net()
        self.optimizer = build_optimizer(self.net, self.opt)
        reducer = make_reducer(self.optimizer.params) if make_reducer else None
        loss = SAINWithLoss(self.net, DiffJPEG(t['comp_quality']), t['lambda_fit_forw'],
                            t['lambda_rec_back'], t['gaussian_scale'])
        step = build_train_step(loss, self.optimizer, self.opt, reducer)
        self.step = SAINStep(self.net, step, t['comp_format'], t['comp_quality'])

    def state_cells(self):
        return {'net': self.net, 'opt': self.optimizer}

    def train_step(self, batch, lr, rng):
        from src.sain_step import draw_gmm_noise
        hr, lr_ref = batch
        b = self.opt['datasets']['train']['batch_size']  # global: every rank draws all rows
        gumbel, eps = draw_gmm_noise(rng, self.net.latent_shape((b,) + lr_ref.shape[1:]),
                                     self.net.gmm_components)
        rows = slice(self.rank_id, None, self.rank_size)
        out = self.step(hr, lr_ref, gumbel[rows], eps[rows], lr)
        names = ('loss',) + self.loss_names[:5] + ('grad_norm',)
        values = {k: float(o.asnumpy()) for k, o in zip(names, out[:7])}
        para = self.net.gmm.gmm_para.asnumpy()
        for i in range(para.shape[1]):
            values.update({f'pi{i}': float(para[0, i]), f'mu{i}': float(para[1, i]),
                           f'logvar{i}': float(para[2, i])})
        return values, bool(out[7].asnumpy())

    # ------------------------------------------------------------------ evaluation
    def eval_protocol(self, args):
        from src.sain_eval import eval_protocol
        protocol = eval_protocol(self.opt, args)
        self.metrics = protocol['metrics']  # one column per method, quality and metric
        self.report_columns = protocol_columns(protocol)
        return protocol

    def protocol_text(self, protocol):
        from src.sain_eval import protocol_text
        return protocol_text(protocol)

    def evaluate_set(self, net, images, protocol, keep_images=False):
        from src.sain_eval import evaluate_protocol
        return evaluate_protocol(net, images, protocol, keep_images)

    def summary_table(self, sets, protocol):
        from src.sain_eval import quality_table
        return quality_table(sets, protocol)

    def validate(self, source):
        from src.sain_eval import evaluate_sain
        t, v = self.opt['train'], self.opt['val']
        rows = evaluate_sain(self.net, source, self.opt['scale'], t['comp_format'],
                             [t['comp_quality']], v['seed'], v['z_draws'])
        return self.summarize_rows(rows)

    @staticmethod
    def summarize_rows(rows):
        from src.metrics import mean_metrics
        return mean_metrics(rows, SAINModel.val_fields)

    def validation_text(self, res, num_images):
        t, v = self.opt['train'], self.opt['val']
        return (f"{num_images} images, {t['comp_format']} q{t['comp_quality']}, mixture z seed "
                f"{v['seed']}, {v['z_draws']} draw(s), crop {self.opt['scale']}): PSNR RGB "
                f"{res['psnr_rgb']:.3f} Y {res['psnr_y']:.3f} dB, SSIM RGB {res['ssim_rgb']:.4f} "
                f"Y {res['ssim_y']:.4f} | HQ LR PSNR RGB {res['lr_psnr_rgb']:.2f} dB | "
                f"{res['bpp']:.3f} bpp")

    # ------------------------------------------------------------------ deployment
    @staticmethod
    def export_cells(net, height=None, width=None):
        """down: HR -> quantised HQ LR (what the codec compresses); up: (compressed LR, z) ->
        HR; z: the mixture, (Gumbel noise, Gaussian noise) -> z."""
        from src.exporting import graph_input
        from src.sain_eval import MixtureNet, SAINDownscaleNet, SAINUpscaleNet
        s, zc, k = net.scale, net.channel_out - net.channel_in, net.gmm_components
        h, w = (None, None) if height is None else (height // s, width // s)
        noise = graph_input(zc, h, w, k)
        return [('_down', SAINDownscaleNet(net), (graph_input(3, height, width),), ['hr']),
                ('_up', SAINUpscaleNet(net), (graph_input(3, h, w), graph_input(zc, h, w)),
                 ['lr', 'z']),
                ('_z', MixtureNet(net), (noise, noise), ['gumbel', 'eps'])]

    def runner(self, args, net):
        from src.sain_infer import SAINRunner
        return SAINRunner(args, net)


def protocol_columns(protocol):
    """Per-image table columns: SAIN's PSNR / SSIM (Y and RGB) and bpp at each quality."""
    cols = []
    for q in protocol['qualities']:
        tag = 'raw' if q == -1 else f'q{q}'
        cols += [(f'SAIN_{tag}_psnr_y', f'{tag} PSNR-Y', 2), (f'SAIN_{tag}_psnr_rgb', f'{tag} PSNR', 2),
                 (f'SAIN_{tag}_bpp', f'{tag} bpp', 3)]
    return cols
