"""IRN+ (IJCV extension): IRN x4 fine-tuned with a VGG19 feature loss and a GAN (``IRNp_model``).

G is base IRN's :class:`src.network.InvRescaleNet` (so evaluation, export and inference are
IRN's); training adds ``Discriminator_VGG_128`` and the frozen VGG19-54 feature extractor and
alternates G and D updates in the authors' order (:class:`src.gan.GANUpdate`, spec
EXTENSIONS.md section 4). Both optimizers follow the same learning-rate schedule (``lr_G`` and
``lr_D`` as base rates); G's first update comes after ``D_init_iters`` D-only steps.

Data parallel: both nets' gradients are averaged over the ranks. D's BatchNorms use each
rank's own batch (as the authors' DistributedDataParallel does without SyncBatchNorm), so R
ranks match one process on the global batch only up to that; the running statistics saved
are rank 0's (they are never used for computing).
"""
import os

import numpy as np
import mindspore as ms
from mindspore import nn, Parameter, Tensor

from src.config import OPTIONAL, overlay_schema
from src.gan import GAN_TYPES
from src.models.irn import IRNModel, OPTIONS
from src.utils.errors import IRNError

PERCEPTUAL = 'vgg54_mse'


class StepCounter(nn.Cell):
    """The number of iterations done, as a parameter, so training states carry it."""

    def __init__(self):
        super().__init__()
        self.iteration = Parameter(Tensor(0, ms.int64), name='iteration', requires_grad=False)

    def value(self):
        """Iterations done (int)."""
        return int(self.iteration.asnumpy())

    def advance(self):
        """One more iteration."""
        self.iteration.set_data(Tensor(self.value() + 1, ms.int64))


class IRNPlusModel(IRNModel):
    """IRN+ x4: G = IRN x4 (from ``path.pretrain_model_G``), D = Discriminator_VGG_128,
    F = VGG19 features up to conv5_4 (``path.pretrain_model_F``, torchvision's ImageNet weights
    converted with ``python -m src.convert --vgg19``)."""

    name = 'IRN+'
    SCHEMA = overlay_schema(IRNModel.SCHEMA, {
        'network_D': {
            'which_model_D': (str, 'discriminator_vgg_128'),
            'in_nc': (int, 3),
            'nf': (int, 64),
        },
        'path': {
            'pretrain_model_D': (str, OPTIONAL),   # D weights (ours or the authors' .pth)
            'pretrain_model_F': (str, OPTIONAL),   # converted VGG19 features (src.convert --vgg19)
        },
        'train': {
            'lambda_ce_forw': (float, OPTIONAL),   # IRN+ has no CE term: must stay unset
            'feature_criterion': (str, 'l1'),
            'feature_weight': (float, 0.0),
            'lr_D': (float, 1e-4),
            'weight_decay_D': (float, 0.0),
            'beta1_D': (float, 0.9),
            'beta2_D': (float, 0.99),
            'gan_type': (str, 'gan'),
            'gan_weight': (float, 1.0),
            'D_update_ratio': (int, 1),
            'D_init_iters': (int, 0),
            'memory_mode': (str, 'plain'),   # one graph per update; no micro-batches (D's BN)
        },
    })
    CHOICES = {
        'scale': (2, 4, 8),
        'network_D.which_model_D': ('discriminator_vgg_128',),
        'train.gan_type': GAN_TYPES,
        'train.feature_criterion': ('l1',),
        'train.memory_mode': ('plain',),
        'train.amp_level': ('O0',),
    }
    loss_names = ('l_fit', 'l_rec', 'l_fea', 'l_gan', 'l_d', 'l_d_real', 'l_d_fake', 'grad_norm_D')

    @classmethod
    def check_config(cls, opt, source):
        super().check_config(opt, source)
        t, d = opt['train'], opt['network_D']
        if t['lambda_ce_forw'] is not None:
            raise IRNError(f'{source}: train.lambda_ce_forw is not used by IRN+ (its objective '
                           'has no CE term); remove it')
        if t['add_noise_on_y'] or opt['network_G']['which_model_G']['use_ConvDownsampling'] \
                or opt['network_G']['which_model_G']['down_first']:
            raise IRNError(f'{source}: IRN+ fine-tunes a base IRN (Haar levels, no noise on the '
                           'LR): train.add_noise_on_y, network_G.which_model_G.use_ConvDownsampling'
                           ' and down_first must be false')
        if t['micro_batch'] is not None:
            raise IRNError(f'{source}: train.micro_batch is not supported by IRN+ (its '
                           'discriminator normalises over the whole batch)')
        if d['in_nc'] != 3 or d['nf'] != 64:
            raise IRNError(f'{source}: network_D must have in_nc 3 and nf 64 (Discriminator_VGG_128'
                           f' flattens 512x4x4 features), got in_nc {d["in_nc"]} nf {d["nf"]}')
        from src.network.discriminator import Discriminator_VGG_128
        Discriminator_VGG_128.check_size(opt['datasets']['train']['GT_size'],
                                         f'{source}: datasets.train.GT_size')
        if t['D_update_ratio'] < 1 or t['D_init_iters'] < 0:
            raise IRNError(f'{source}: train.D_update_ratio must be >= 1 and train.D_init_iters '
                           f'>= 0, got {t["D_update_ratio"]} and {t["D_init_iters"]}')
        if not t['lr_D'] > 0 or t['feature_weight'] < 0 or t['gan_weight'] < 0:
            raise IRNError(f'{source}: train.lr_D must be > 0 and feature_weight, gan_weight >= 0')
        vgg = opt['path']['pretrain_model_F']
        if t['feature_weight'] > 0 and not (vgg and os.path.isfile(vgg)):
            from src.network.vgg import VGG_HELP
            where = f'{vgg}: VGG19 weights not found. ' if vgg else ''
            raise IRNError(f'{source}: train.feature_weight > 0: {where}{VGG_HELP}')

    @classmethod
    def test_config(cls, arch):
        path = os.path.join(OPTIONS, f"test_IRN+_x{arch['scale']}.yml")
        return path if os.path.isfile(path) else None

    # ------------------------------------------------------------------ training
    def build_discriminator(self):
        """D with PyTorch's default init (seeded by ``train.manual_seed``)."""
        from src.network.discriminator import Discriminator_VGG_128
        d = self.opt['network_D']
        return Discriminator_VGG_128(d['in_nc'], d['nf'], seed=self.opt['train']['manual_seed'] + 1)

    def load_pretrained(self):
        """G from ``path.pretrain_model_G`` (a trained IRN x4) and, when given, D (weights and
        BatchNorm statistics) from ``path.pretrain_model_D``."""
        loaded = super().load_pretrained()
        path = self.opt['path']['pretrain_model_D']
        if path:
            from src.network.discriminator import load_discriminator
            load_discriminator(self.net_d, path)
            loaded.append(path)
        return loaded

    def setup_training(self, make_reducer=None):
        from src.gan import DiscriminatorWithLoss, GANUpdate, GeneratorWithLoss
        from src.network.vgg import VGGFeatureExtractor, load_vgg19_features
        from src.optim import ClippedAdam, build_optimizer
        from src.schedule import build_lr
        t, path = self.opt['train'], self.opt['path']
        net_f = None
        if t['feature_weight'] > 0:  # fails first, before anything big is built
            net_f = VGGFeatureExtractor(load_vgg19_features(path['pretrain_model_F']),
                                        path['pretrain_model_F'])
        self.net = self.build_net()
        self.net_d = self.build_discriminator()
        g_loss = GeneratorWithLoss(self.net, self.net_d, net_f, t['lambda_fit_forw'],
                                   t['lambda_rec_back'], t['feature_weight'], t['gan_weight'],
                                   t['gan_type'], t['gaussian_scale'], t['pixel_criterion_forw'])
        self.optimizer = build_optimizer(self.net, self.opt)
        self.optimizer_d = ClippedAdam(self.net_d.trainable_params(), t['beta1_D'], t['beta2_D'],
                                       t['eps'], t['weight_decay_D'], None, prefix='d_',
                                       fused=True)
        reducers = [make_reducer(o.params) if make_reducer else None
                    for o in (self.optimizer, self.optimizer_d)]
        self.update = GANUpdate(g_loss, self.optimizer, DiscriminatorWithLoss(self.net_d, t['gan_type']),
                                self.optimizer_d, t['D_init_iters'], t['D_update_ratio'], *reducers)
        self.lrs_d = build_lr({**t, 'lr_G': t['lr_D']})
        self.counter = StepCounter()

    def state_cells(self):
        return {'net': self.net, 'netD': self.net_d, 'opt': self.optimizer,
                'optD': self.optimizer_d, 'sched': self.counter}

    def train_step(self, batch, lr, rng):
        hr, lr_ref = batch
        _, _, h, w = lr_ref.shape
        z = self.draw_rows(rng, (self.net.channel_out - self.net.channel_in, h, w))
        done = self.counter.value()
        logs = self.update(done + 1, *self.tensors(hr, lr_ref, z), lr,
                           Tensor(self.lrs_d[done], ms.float32))
        self.counter.advance()
        nan = float('nan')  # G terms of a D-only step: not computed
        values = {key: float(logs[key]) if key in logs else nan
                  for key in ('loss', 'grad_norm') + self.loss_names}
        applied = logs['applied_D'] and logs.get('applied', True)
        return values, applied

    # ------------------------------------------------------------------ evaluation
    @classmethod
    def add_arguments(cls, parser, tool):
        super().add_arguments(parser, tool)
        if tool == 'val':
            parser.add_argument('--vgg19', metavar='FEATURES.ckpt',
                                help='VGG19 ImageNet weights (python -m src.convert --vgg19) for a '
                                     'perceptual score: the VGG19-54 feature MSE of SR and GT; '
                                     'none is computed without them')

    def eval_protocol(self, args):
        protocol = super().eval_protocol(args)
        vgg = getattr(args, 'vgg19', None)
        protocol['perceptual'] = None
        if vgg:
            from src.network.vgg import VGGFeatureExtractor, load_vgg19_features
            self.net_f = VGGFeatureExtractor(load_vgg19_features(vgg), vgg)
            protocol['perceptual'] = {'metric': PERCEPTUAL, 'weights': os.path.abspath(vgg),
                                      'on': 'first z draw, uint8 SR and GT, no crop'}
            self.metrics = tuple(self.metrics) + (PERCEPTUAL,)
            self.report_columns = list(self.report_columns) + [(PERCEPTUAL, 'VGG54-MSE', 4)]
        return protocol

    def protocol_text(self, protocol):
        text = super().protocol_text(protocol)
        if protocol.get('perceptual'):
            return text + ' | VGG19-54 feature MSE of SR vs GT (first draw; not LPIPS)'
        return text + ' | no perceptual score (pass --vgg19 with converted VGG19 weights)'

    def evaluate_set(self, net, images, protocol, keep_images=False):
        if not protocol.get('perceptual'):
            return super().evaluate_set(net, images, protocol, keep_images)
        gts = {}

        def remember(items):
            for name, hr in items:
                gts[name] = hr
                yield name, hr

        results = super().evaluate_set(net, remember(images), protocol, keep_images=True)
        for r in results:
            gt = np.round(np.clip(gts.pop(r['name']), 0, 1) * 255) / 255
            r[PERCEPTUAL] = vgg_feature_mse(self.net_f, r['images']['SR'] / 255.0, gt)
            if not keep_images:
                del r['images']
        return results


def vgg_feature_mse(net_f, sr, gt):
    """Mean squared difference of the VGG19-54 features of two HxWx3 RGB images in [0, 1]."""
    pair = np.stack([sr, gt]).transpose(0, 3, 1, 2).astype(np.float32)
    feats = net_f(Tensor(np.ascontiguousarray(pair))).asnumpy().astype(np.float64)
    return float(np.mean((feats[0] - feats[1]) ** 2))
