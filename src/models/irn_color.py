"""IRN-Color (IJCV extension): invertible decolourisation RGB -> (grey, z) and colourisation back.

The network is :class:`src.network.grey.InvGreyNet` (a learnable 3x3 colour matrix, then
split-1 coupling blocks); training is IRN's (:class:`src.models.irn.IRNTraining`) with the grey
image as the LR: fit against OpenCV's float grey of the patch (lambda 3), the CE term on z and
the reconstruction from (Q(grey), z = 0): the authors' ``gaussian_scale`` is 0 for this model.
Evaluation is ``test_IRN-Color.py``'s (:mod:`src.evaluate_color`); export writes the
decolourise and colourise graphs; infer.py offers ``decolor`` / ``colorize``.
"""
import os

from src.config import OPTIONAL
from src.evaluate_color import COLOR_METRICS, evaluate_color
from src.models.base import Model
from src.models.irn import IRNTraining
from src.utils.errors import IRNError

OPTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'options')
COLUMNS = [('psnr_rgb', 'PSNR', 2), ('ssim_rgb', 'SSIM', 4), ('psnr_grey', 'grey PSNR', 2),
           ('ssim_grey', 'grey SSIM', 4)]


class IRNColorModel(IRNTraining, Model):
    """IRN-Color (``network_grey.block_num: [K]`` coupling blocks; the paper: 8)."""

    name = 'IRN-Color'
    SCHEMA = {
        'scale': (int, 2),               # only the mod-crop and the default crop border
        'crop_border': (int, OPTIONAL),  # test: pixels cropped for the colour metrics (~: scale)
        'datasets': {'train': {'use_grey': (bool, True)}, 'val': {'use_grey': (bool, True)}},
        'network_grey': {
            'which_model': {'rgb_type': (str, 'RGB'), 'subnet_type': (str, 'DBNet')},
            'block_num': (list, [8]),
            'init': (str, 'xavier'),
            'Conv1x1Grey_learnable': (bool, True),
        },
        'train': {'lambda_fit_forw': (float, 3.0), 'gaussian_scale': (float, 0.0)},
    }
    CHOICES = {'network_grey.which_model.rgb_type': ('RGB', 'BGR'),
               'network_grey.which_model.subnet_type': ('DBNet',),
               'network_grey.init': ('xavier',),
               'datasets.train.use_grey': (True,), 'datasets.val.use_grey': (True,)}
    val_fields = COLOR_METRICS
    best_metric = 'psnr_rgb'

    @classmethod
    def check_config(cls, opt, source):
        block_num = opt['network_grey']['block_num']
        if len(block_num) != 1 or not isinstance(block_num[0], int) or block_num[0] < 1:
            raise IRNError(f'{source}: network_grey.block_num must be [K] with K >= 1 coupling '
                           f'blocks, got {block_num!r}')
        if not opt['network_grey']['Conv1x1Grey_learnable']:
            raise IRNError(f'{source}: network_grey.Conv1x1Grey_learnable false is not supported: '
                           "the authors' code never reads it (the colour matrix is always "
                           'trained); remove the key')
        if opt['scale'] < 1:
            raise IRNError(f"{source}: scale must be >= 1 (IRN-Color's crop and mod-crop), "
                           f"got {opt['scale']}")
        if opt['datasets']['train']['dataroot_LQ']:
            raise IRNError(f'{source}: datasets.train.dataroot_LQ must be empty: IRN-Color '
                           'trains on RGB patches and their grey, no LR')
        crop = opt['crop_border']
        if crop is not None and crop < 0:
            raise IRNError(f'{source}: crop_border must be >= 0, got {crop}')

    @classmethod
    def default_layout(cls, opt, scale):
        opt['network_grey']['block_num'] = [8]

    @classmethod
    def test_config(cls, arch):
        return os.path.join(OPTIONS, 'test_IRN_color.yml')

    # ------------------------------------------------------------------ networks
    def build_net(self, arch=None):
        from src.network.grey import InvGreyNet
        block_num = arch['block_num'] if arch else self.opt['network_grey']['block_num']
        return InvGreyNet(block_num, self.opt['network_grey']['which_model']['rgb_type'],
                          seed=self.opt['train']['manual_seed'])

    @classmethod
    def from_torch(cls, state, path):
        from src.network.grey import InvGreyNet
        return InvGreyNet.from_torch(state, path)

    def load_net(self, ckpt, expect_scale=None):
        """As :meth:`Model.load_net`; ``expect_scale`` is not checked: the network does not
        rescale (the config's ``scale`` is only the evaluation's mod-crop and crop border)."""
        return super().load_net(ckpt)

    # ------------------------------------------------------------------ evaluation
    metrics = COLOR_METRICS
    report_columns = COLUMNS

    def crop(self):
        """Border cropped for the colour metrics: ``crop_border``, else the scale (2)."""
        crop = self.opt['crop_border']
        return self.opt['scale'] if crop is None else crop

    def eval_protocol(self, args):
        return {'model': self.name, 'modcrop': self.opt['scale'], 'crop': self.crop(),
                'z_mode': 'zero', 'uint8': True,
                'grey_reference': 'cv2 BGR2GRAY of the float image, rounded, no crop'}

    def protocol_text(self, protocol):
        return (f"protocol test_IRN-Color: mod-crop {protocol['modcrop']}, grey = Q(forward), "
                f"colour = inverse(grey, z = 0); colour PSNR/SSIM on RGB uint8, crop "
                f"{protocol['crop']} px; grey PSNR/SSIM against the rounded OpenCV grey, no crop")

    def evaluate_set(self, net, images, protocol, keep_images=False):
        results = evaluate_color(net, images, protocol['crop'], keep_images)
        if keep_images:
            for r in results:
                r['images'] = {'grey': r.pop('grey'), 'colour': r.pop('colour')}
        return results

    def validate_images(self, source):  # z = 0: no per-image randomness, any shard works
        return evaluate_color(self.net, source, self.crop())

    def validation_text(self, res, num_images):
        return (f"{num_images} images, test_IRN-Color protocol, z = 0, crop {self.crop()}): "
                f"colour PSNR {res['psnr_rgb']:.3f} dB SSIM {res['ssim_rgb']:.4f} | grey PSNR "
                f"{res['psnr_grey']:.2f} dB SSIM {res['ssim_grey']:.4f}")

    # ------------------------------------------------------------------ deployment
    infer_modes = ('decolor', 'colorize')

    def runner(self, args, net):
        from src.runner_color import ColorRunner
        return ColorRunner(args, net)

    @staticmethod
    def export_cells(net, height=None, width=None):
        """The decolourise (RGB -> quantised grey) and colourise ((grey, z) -> RGB) graphs."""
        from src.exporting import graph_input
        from src.inference import DownscaleNet, UpscaleNet
        net.freeze_inverses()  # the colour matrix's inverse as a constant (ONNX has none)
        zc = net.channel_out - net.lr_channels
        return [('_decolor', DownscaleNet(net), (graph_input(3, height, width),), ['rgb']),
                ('_colorize', UpscaleNet(net),
                 (graph_input(net.lr_channels, height, width), graph_input(zc, height, width)),
                 ['grey', 'z'])]
