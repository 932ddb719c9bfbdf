"""IRN-CRM (IJCV extension, EXTENSIONS.md section 5): IRN whose LR is stored as JPEG, and the
Compression Restoration Module that undoes the codec before IRN upscales.

The network is :class:`IRNCRMNet`: the (noise fine-tuned) IRN and an RRDBNet CRM in one cell,
both under the authors' parameter names, so one checkpoint holds the pair. Training
(``only_jpeg_reconstruction``, the authors' yml): IRN frozen, LR = Q(G(HR)) -> real JPEG (numpy)
-> CRM update on L2sum(CRM(J), LR) (:class:`src.compression.CRMStep`); the joint IRN + CRM mode
(no yml uses it) is :class:`src.compression.JointCRMStep`. Evaluation is
``test_IRN-Compression.py``'s (:func:`src.compression.evaluate_compression`).
"""
import os

from mindspore import nn

from src.compression import COMPRESSION_METRICS
from src.config import OPTIONAL, overlay_schema
from src.models.irn import OPTIONS, IRNModel
from src.utils.errors import IRNError

COMPRESSION_COLUMNS = [('psnr_y', 'PSNR-Y', 2), ('ssim_y', 'SSIM-Y', 4), ('psnr_rgb', 'PSNR', 2),
                       ('ssim_rgb', 'SSIM', 4), ('lr_psnr_y', 'LR PSNR-Y', 2),
                       ('psnr_restore', 'restore PSNR', 2), ('bpp', 'bpp', 4)]


class IRNCRMNet(nn.Cell):
    """IRN and its CRM side by side (no name prefix: IRN's ``operations.*``, the CRM's
    ``conv_first.*`` / ``RRDB_trunk.*`` / ...). ``construct(jpeg)`` is the CRM's restoration.
    """

    def __init__(self, irn, crm):
        super().__init__(auto_prefix=False)
        self.irn, self.crm = irn, crm
        self.scale, self.block_num = irn.scale, irn.block_num
        self.channel_in, self.channel_out = irn.channel_in, irn.channel_out

    def arch(self):
        """The architecture record: IRN's layout and the CRM's."""
        return {'net': 'IRNCRMNet', 'scale': self.scale, 'block_num': list(self.block_num),
                'crm': self.crm.layout()}

    def construct(self, x):
        return self.crm(x)


def _schema(unset=OPTIONAL):
    return {
        'crop_border': (int, unset),                # test: None -> scale (the authors')
        'network_R': {'in_nc': (int, 3), 'out_nc': (int, 3), 'nf': (int, 64), 'nb': (int, 8),
                      'gc': (int, 32)},
        'path': {'pretrain_model_R': (str, unset)},
        'train': {
            'lr_R': (float, 2e-4),
            'beta1_R': (float, 0.9),
            'beta2_R': (float, 0.999),
            'weight_decay_R': (float, unset),        # absent in the authors' yml: 0
            'pixel_criterion_jpeg': (str, 'l2'),
            'jpg_quality': (int, 90),
            'codec': (str, 'jpeg'),                  # ours: jpeg (the authors') or webp
            'lambda_rec_jpeg': (float, 1.0),
            'lambda_joint_back': (float, 0.0),
            'only_jpeg_reconstruction': (bool, True),
            'add_joint_loss': (bool, False),
            'joint_loss_iters': (int, unset),
        },
        'test': {'jpg_quality': (int, 90), 'codec': (str, 'jpeg'), 'ignore_restore': (bool, False),
                 'gaussian_scale': (float, 1.0)},
    }


class IRNCRMModel(IRNModel):
    """IRN + CRM for a lossy-coded LR (the authors' ``IRNCRMModel``)."""

    name = 'IRN-CRM'
    SCHEMA = overlay_schema(IRNModel.SCHEMA, _schema())
    CHOICES = {'scale': (2, 4, 8), 'train.pixel_criterion_jpeg': ('l2', 'l1'),
               'train.codec': ('jpeg', 'webp'), 'test.codec': ('jpeg', 'webp')}
    loss_names = ('l_jpeg',)
    val_fields = ('psnr_rgb', 'psnr_y', 'psnr_restore', 'bpp')
    best_metric = 'psnr_rgb'

    def __init__(self, opt, rank_id=0, rank_size=1):
        super().__init__(opt, rank_id, rank_size)
        self.joint = not opt['train']['only_jpeg_reconstruction']
        if self.joint:
            self.loss_names = ('l_fit', 'l_ce', 'l_rec', 'l_jpeg', 'grad_norm_r')
        self.crm_path = opt['path']['pretrain_model_R']

    @classmethod
    def check_config(cls, opt, source):
        super().check_config(opt, source)
        t, r = opt['train'], opt['network_R']
        if t['add_joint_loss']:
            raise IRNError(f'{source}: train.add_joint_loss is not supported (the authors\' ymls '
                           'keep it off with lambda_joint_back 0)')
        for section, key in (('train', 'jpg_quality'), ('test', 'jpg_quality')):
            if not 1 <= opt[section][key] <= 100:
                raise IRNError(f'{source}: {section}.{key} must be in 1..100, got '
                               f'{opt[section][key]}')
        if min(r['nf'], r['nb'], r['gc']) < 1 or (r['in_nc'], r['out_nc']) != (3, 3):
            raise IRNError(f'{source}: network_R needs in_nc = out_nc = 3 and positive nf, nb, gc')

    @classmethod
    def add_arguments(cls, parser, tool):
        if tool == 'val':
            super().add_arguments(parser, tool)
            parser.add_argument('--crm', help='CRM checkpoint to pair with an IRN --ckpt (default: '
                                'path.pretrain_model_R; not needed for an IRN-CRM checkpoint)')
            parser.add_argument('--quality', type=int, help='codec quality (default: '
                                'test.jpg_quality)')
            parser.add_argument('--ignore_restore', action='store_true',
                                help='upscale the decoded LR without the CRM')
        elif tool == 'infer':
            parser.add_argument('--z_mode', default='sample', choices=('sample', 'zero'),
                                help='z for upscaling: N(0, I) samples (default) or zeros')
            parser.add_argument('--seed', type=int, default=0, help='seed of the z sample')
            cls.add_codec_arguments(parser, 'jpeg')

    @classmethod
    def test_config(cls, arch):
        path = os.path.join(OPTIONS, f"test_IRN-Compression_x{arch['scale']}_q90.yml")
        return path if os.path.isfile(path) else None

    # ------------------------------------------------------------------ networks
    def build_net(self, arch=None):
        from src.network.rrdb import RRDBNet
        irn = super().build_net(arch)
        layout = arch['crm'] if arch and 'crm' in arch else self.opt['network_R']
        crm = RRDBNet(**{k: int(layout[k]) for k in ('in_nc', 'out_nc', 'nf', 'nb', 'gc')},
                      seed=self.opt['train']['manual_seed'] + 1)
        return IRNCRMNet(irn, crm)

    @classmethod
    def from_torch(cls, state, path):
        raise IRNError(f"{path}: an authors' .pth holds either IRN or the CRM; pass the IRN as "
                       '--ckpt and the CRM as --crm (or path.pretrain_model_R)')

    def load_net(self, ckpt, expect_scale=None):
        """An IRN-CRM checkpoint, or an IRN checkpoint (ours or the authors') paired with the
        CRM of ``--crm`` / ``path.pretrain_model_R`` (ours or the authors' CRM .pth)."""
        from src.compression import load_crm
        from src.utils.checkpoint import peek_arch
        arch = None if str(ckpt).endswith('.pth') else peek_arch(ckpt)
        if arch and arch.get('model') == self.name:
            return super().load_net(ckpt, expect_scale)
        if not self.crm_path:
            raise IRNError(f'{ckpt}: not an IRN-CRM checkpoint; give the CRM to pair it with '
                           '(--crm CRM.ckpt or path.pretrain_model_R)')
        irn = IRNModel(self.opt, self.rank_id, self.rank_size).load_net(ckpt, expect_scale)
        net = IRNCRMNet(irn, load_crm(self.crm_path))
        net.set_train(False)
        return net

    def load_pretrained(self):
        """IRN from ``path.pretrain_model_G`` (required unless joint), the CRM from
        ``path.pretrain_model_R`` (optional)."""
        from src.compression import read_crm
        from src.utils.checkpoint import load_into, load_weights
        p, loaded = self.opt['path'], []
        if p['pretrain_model_G']:
            load_weights(self.net.irn, p['pretrain_model_G'])
            loaded.append(p['pretrain_model_G'])
        elif not self.joint:
            raise IRNError('path.pretrain_model_G: the CRM is trained for a trained, frozen IRN '
                           '(the authors: IRN_x2_finetune.pth); pass it (train.py --ckpt)')
        if p['pretrain_model_R']:
            weights, layout = read_crm(p['pretrain_model_R'])
            if layout != self.net.crm.layout():
                raise IRNError(f"{p['pretrain_model_R']}: CRM {layout} does not match "
                               f"network_R {self.net.crm.layout()}")
            load_into(self.net.crm, weights, p['pretrain_model_R'])
            loaded.append(p['pretrain_model_R'])
        return loaded

    # ------------------------------------------------------------------ training
    def lr_options(self):
        """The CRM's schedule (base ``lr_R``) when IRN is frozen; IRN's (``lr_G``) when joint."""
        t = self.opt['train']
        return t if self.joint else {**t, 'lr_G': t['lr_R']}

    def setup_training(self, make_reducer=None):
        from src.compression import CRMStep, JointCRMStep
        from src.loss import IRNLoss
        from src.optim import ClippedAdam
        t = self.opt['train']
        self.net = self.build_net()
        crm = self.net.crm
        self.optimizer = ClippedAdam(crm.trainable_params(), t['beta1_R'], t['beta2_R'], t['eps'],
                                     t['weight_decay_R'] or 0.0, t['gradient_clipping'],
                                     prefix='crm_' if self.joint else '')
        codec = (t['codec'], t['jpg_quality'])
        if not self.joint:
            for p in self.net.irn.get_parameters():
                p.requires_grad = False  # the authors freeze G for the step
            reducer = make_reducer(self.optimizer.params) if make_reducer else None
            self.step = CRMStep(self.net.irn, crm, self.optimizer, *codec, t['lambda_rec_jpeg'],
                                t['pixel_criterion_jpeg'], reducer)
            return
        if make_reducer:
            raise IRNError('the joint IRN + CRM mode (train.only_jpeg_reconstruction false) runs '
                           'on one device only')
        self.optimizer_g = ClippedAdam(self.net.irn.trainable_params(), t['beta1'], t['beta2'],
                                       t['eps'], t['weight_decay_G'], t['gradient_clipping'])
        loss = IRNLoss(3, t['lambda_fit_forw'], t['lambda_rec_back'], t['lambda_ce_forw'],
                       t['gaussian_scale'], t['pixel_criterion_forw'])
        self.step = JointCRMStep(self.net.irn, crm, self.optimizer_g, self.optimizer, loss, *codec,
                                 t['lambda_rec_jpeg'], t['pixel_criterion_jpeg'])

    def state_cells(self):
        if self.joint:
            return {'net': self.net, 'opt': self.optimizer_g, 'optR': self.optimizer}
        return {'net': self.net, 'opt': self.optimizer}

    def train_step(self, batch, lr, rng):
        hr, lr_ref = batch
        if not self.joint:
            out = self.step(hr, lr)
            return {k: out[k] for k in ('loss', 'l_jpeg', 'grad_norm')}, out['applied']
        t = self.opt['train']
        _, _, h, w = lr_ref.shape
        z = self.draw_rows(rng, (self.net.channel_out - self.net.channel_in, h, w))
        out = self.step(hr, lr_ref, z, lr, lr * (t['lr_R'] / t['lr_G']))
        values = {k: out[k] for k in ('loss', 'l_fit', 'l_ce', 'l_rec', 'l_jpeg', 'grad_norm_r')}
        values['grad_norm'] = out['grad_norm_g']
        return values, out['applied']

    # ------------------------------------------------------------------ evaluation
    metrics = COMPRESSION_METRICS
    report_columns = COMPRESSION_COLUMNS

    def eval_protocol(self, args):
        protocol = super().eval_protocol(args)
        t = self.opt['test']
        self.crm_path = getattr(args, 'crm', None) or self.crm_path
        crop = self.opt['crop_border']
        protocol.update(crop=self.opt['scale'] if crop is None else crop, codec=t['codec'],
                        quality=args.quality or t['jpg_quality'], restore_crop=0,
                        restore=not (args.ignore_restore or t['ignore_restore']),
                        crm=self.crm_path or 'in the checkpoint',
                        rate='bpp = compressed LR bytes x 8 / HR pixels')
        if not 1 <= protocol['quality'] <= 100:
            raise IRNError(f"--quality must be in 1..100, got {protocol['quality']}")
        return protocol

    def protocol_text(self, protocol):
        from src.report import protocol_text
        crm = 'CRM-restored' if protocol['restore'] else 'no CRM (decoded LR upscaled)'
        return (f"{protocol_text(protocol)} | LR as {protocol['codec']} q{protocol['quality']}, "
                f"{crm}; restore PSNR: IRN LR vs restored LR, crop {protocol['restore_crop']}; "
                f"{protocol['rate']}")

    def _evaluate(self, net, images, protocol, keep_images=False):
        from src.compression import evaluate_compression
        return evaluate_compression(net.irn, net.crm if protocol['restore'] else None, images,
                                    protocol['codec'], protocol['quality'], protocol['z_mode'],
                                    protocol['seed'], protocol['z_draws'], protocol['crop'],
                                    protocol['restore_crop'], keep_images)

    def evaluate_set(self, net, images, protocol, keep_images=False):
        results = self._evaluate(net, images, protocol, keep_images)
        if keep_images:
            for r in results:
                r['images'] = {'LR': r.pop('lr'), 'LR_decoded': r.pop('jpeg'),
                               'LR_restored': r.pop('restore'), 'SR': r.pop('sr')}
        return results

    def validate(self, source):
        """The authors' training validation: test.jpg_quality, PSNR RGB crop = scale, restore
        PSNR with ``scale`` px cropped off the LR, bpp."""
        v, t, s = self.opt['val'], self.opt['test'], self.opt['scale']
        protocol = {'codec': t['codec'], 'quality': t['jpg_quality'], 'z_mode': v['z_mode'],
                    'seed': v['seed'], 'z_draws': v['z_draws'], 'crop': s, 'restore_crop': s,
                    'restore': True}
        return {k: v for k, v in self.summarize(self._evaluate(self.net, source, protocol)).items()
                if k in self.val_fields}

    def validation_text(self, res, num_images):
        t = self.opt['test']
        return (f"{num_images} images, {t['codec']} q{t['jpg_quality']}, "
                f"z {self.opt['val']['z_mode']}"
                f"): PSNR RGB {res['psnr_rgb']:.3f} Y {res['psnr_y']:.3f} dB | restore PSNR "
                f"{res['psnr_restore']:.2f} dB | {res['bpp']:.3f} bpp")

    # ------------------------------------------------------------------ deployment
    def runner(self, args, net):
        from src.inference import Rescaler
        from src.runner import Runner
        return Runner(args, Rescaler(net.irn), net.crm)

    @staticmethod
    def export_cells(net, height=None, width=None):
        """IRN's down and up graphs and the CRM's restoration (decoded LR -> Q(CRM(LR)))."""
        from src.compression import RestoreNet
        from src.exporting import graph_input
        cells = IRNModel.export_cells(net.irn, height, width)
        h, w = (None, None) if height is None else (height // net.scale, width // net.scale)
        return cells + [('_crm', RestoreNet(net.crm), (graph_input(3, h, w),), ['lr_decoded'])]
