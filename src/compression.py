"""IRN with a lossy codec on its LR (EXTENSIONS.md section 5): the CRM step and the evaluation.

The codec is real (OpenCV, :mod:`src.codecs.real`), so it runs in numpy between compiled graphs:

* training (IRN frozen, the authors' ``only_jpeg_reconstruction``): LR = Q(G(HR)[:, :3])
  (graph) -> J = JPEG(LR) (numpy) -> one CRM update on L2sum(CRM(J), LR) (graph);
* evaluation (``test_IRN-Compression.py``): LR -> JPEG q -> restore = Q(CRM(J)) (or J itself
  without a CRM) -> SR = G^-1(cat[restore, z]); PSNR / SSIM of SR (RGB and Y, crop = scale), of
  the LR against the bicubic LR, the restore PSNR (LR vs restore, no crop), and
  bpp = compressed LR bytes x 8 / HR pixels.

CRM checkpoints record their layout (in_nc, out_nc, nf, nb, gc) in the architecture record.
"""
import numpy as np
import mindspore as ms
from mindspore import nn

from src.codecs.real import bits_per_pixel, decode, encode, roundtrip_batch
from src.data.bicubic import imresize
from src.evaluate import Downscaler, Upscaler, pair_metrics, sample_z
from src.inference import DownscaleNet, QuantizeLR
from src.loss import CRMWithLoss, IRNCRMJointWithLoss
from src.metrics import calculate_psnr, tensor_to_uint8
from src.network.rrdb import RRDBNet
from src.optim import PairTrainStep, TrainStep
from src.utils.checkpoint import describe_arch, load_into, read_checkpoint, save_weights
from src.utils.errors import IRNError
from src.utils.tiling import tiled_apply

__all__ = ['save_crm', 'read_crm', 'load_crm', 'CRMStep', 'JointCRMStep',
           'RestoreNet', 'restore_lr', 'irn_lr', 'compress_image', 'evaluate_compression',
           'COMPRESSION_METRICS']

COMPRESSION_METRICS = ('psnr_rgb', 'ssim_rgb', 'psnr_y', 'ssim_y', 'lr_psnr_rgb', 'lr_ssim_rgb',
                       'lr_psnr_y', 'lr_ssim_y', 'psnr_restore', 'bpp', 'bytes')


# ------------------------------------------------------------------ CRM weights
def save_crm(weights, layout, path):
    """Write CRM weights ``{name: array}`` with their architecture record (net RRDBNet)."""
    save_weights(weights, path, {'net': 'RRDBNet', **layout})


def read_crm(path):
    """CRM weights and layout of a CRM .ckpt, an IRN-CRM checkpoint (its CRM part) or the
    authors' CRM .pth (``CRM_x2_q90.pth``). Raises IRNError naming the file otherwise."""
    from src.network.rrdb import torch_to_crm
    weights, arch = read_checkpoint(path, torch_to_crm)
    arch = arch or {}
    if arch.get('net') == 'IRNCRMNet':
        arch = {'net': 'RRDBNet', **arch['crm']}
        names = {p.name for p in RRDBNet(**arch_layout(arch)).get_parameters()}
        weights = {k: v for k, v in weights.items() if k in names}
    if arch.get('net') != 'RRDBNet':
        raise IRNError(f'{path}: not a CRM checkpoint (it holds {describe_arch(arch or None)})')
    return weights, arch_layout(arch)


def arch_layout(arch):
    """The RRDBNet arguments of an architecture record."""
    return {k: int(arch[k]) for k in ('in_nc', 'out_nc', 'nf', 'nb', 'gc')}


def load_crm(path):
    """An RRDBNet with the layout and weights of ``path`` (see :func:`read_crm`), eval mode."""
    weights, layout = read_crm(path)
    net = RRDBNet(**layout)
    load_into(net, weights, path)
    net.set_train(False)
    return net


# ------------------------------------------------------------------ training step
class CRMStep:
    """One CRM update with IRN frozen: graph, numpy codec, graph.

    ``step(hr, lr_rate)`` (hr a numpy NCHW batch) -> dict with ``loss``, ``l_jpeg``,
    ``grad_norm`` (pre-clip), ``applied`` and the numpy ``lr`` / ``jpeg`` batches and
    ``bytes`` per image. The optimizer holds the CRM's parameters only (wd 0, clip 10 in the
    authors' yml); IRN's weights are not touched.

    Args:
        irn (InvRescaleNet): the frozen IRN (the noise fine-tuned x2 in the paper).
        crm (RRDBNet): the network being trained.
        optimizer (ClippedAdam): over ``crm.trainable_params()``.
        fmt, quality: the codec (``jpeg`` / ``webp``) and its quality (authors: jpeg 90).
        lambda_rec_jpeg (float), criterion (str): the loss weight and criterion (1, 'l2').
        grad_reducer: ``nn.DistributedGradReducer`` in data-parallel runs.
    """

    def __init__(self, irn, crm, optimizer, fmt='jpeg', quality=90, lambda_rec_jpeg=1.0,
                 criterion='l2', grad_reducer=None):
        self.down = DownscaleNet(irn)
        self.down.set_train(False)
        self.fmt, self.quality = fmt, quality
        self.train = TrainStep(CRMWithLoss(crm, lambda_rec_jpeg, criterion), optimizer,
                               grad_reducer)

    def __call__(self, hr, lr_rate):
        lr = self.down(ms.Tensor(hr, ms.float32)).asnumpy()
        jpeg, sizes = roundtrip_batch(lr, self.fmt, self.quality)
        loss, l_jpeg, norm, ok = self.train(ms.Tensor(jpeg), ms.Tensor(lr), lr_rate)
        return {'loss': float(loss.asnumpy()), 'l_jpeg': float(l_jpeg.asnumpy()),
                'grad_norm': float(norm.asnumpy()), 'applied': bool(ok.asnumpy()),
                'lr': lr, 'jpeg': jpeg, 'bytes': sizes}


class JointCRMStep:
    """One joint IRN + CRM update (the authors' ``only_jpeg_reconstruction: False``).

    ``step(hr, lr_ref, z, lr_g, lr_r)`` (numpy batches) -> dict with ``loss``, ``l_fit``,
    ``l_ce``, ``l_rec``, ``l_jpeg``, ``grad_norm_g``, ``grad_norm_r``, ``applied``, ``jpeg``.
    The JPEG of Q(G(hr)) is made from a forward pass of its own (graph, numpy codec); the
    train graph then recomputes that forward with gradients (the same values).

    Args:
        irn_loss (IRNLoss): the fit / CE / reconstruction terms (λ, criteria, gaussian_scale).
        opt_g, opt_r (ClippedAdam): over IRN's and the CRM's parameters (clipped apart).
    """

    def __init__(self, irn, crm, opt_g, opt_r, irn_loss, fmt='jpeg', quality=90,
                 lambda_rec_jpeg=1.0, criterion='l2'):
        self.down = DownscaleNet(irn)
        self.fmt, self.quality = fmt, quality
        self.train = PairTrainStep(IRNCRMJointWithLoss(irn, crm, irn_loss, lambda_rec_jpeg,
                                                       criterion), opt_g, opt_r)

    def __call__(self, hr, lr_ref, z, lr_g, lr_r):
        hr = ms.Tensor(hr, ms.float32)
        jpeg, _ = roundtrip_batch(self.down(hr).asnumpy(), self.fmt, self.quality)
        out = self.train(hr, ms.Tensor(lr_ref, ms.float32), ms.Tensor(jpeg),
                         ms.Tensor(z, ms.float32), lr_g, lr_r)
        names = ('loss', 'l_fit', 'l_ce', 'l_rec', 'l_jpeg', 'grad_norm_g', 'grad_norm_r')
        res = {k: float(v.asnumpy()) for k, v in zip(names, out)}
        res.update(applied=bool(out[-1].asnumpy()), jpeg=jpeg)
        return res


# ------------------------------------------------------------------ evaluation
class RestoreNet(nn.Cell):
    """Decoded LR -> Q(CRM(LR)): the restored LR handed to IRN's upscaling."""

    def __init__(self, crm):
        super().__init__(auto_prefix=False)
        self.crm = crm
        self.quant = QuantizeLR()

    def construct(self, x):
        return self.quant(self.crm(x))


_CELLS = {}  # (kind, id(net)) -> (net, cell)


def _cell(kind, net):
    """The evaluation cell ``kind`` (down / up / restore) of ``net``, built once.

    Static shapes: MindSpore compiles (and keeps) one graph per input size, run with the fast
    CPU convolution. (Dynamic-shape graphs compile once, but on this CPU they ran the RRDBNet
    and IRN two orders of magnitude slower than static ones.)
    """
    cached = _CELLS.get((kind, id(net)))
    if cached is None or cached[0] is not net:
        make = {'down': Downscaler, 'up': Upscaler, 'restore': RestoreNet}[kind]
        cached = _CELLS[(kind, id(net))] = (net, make(net))
    return cached[1]


def _unit(img8):
    """uint8 -> float32 k/255 (what the codec round trip returns)."""
    return img8.astype(np.float32) / np.float32(255.0)


def _nchw(img):
    return ms.Tensor(np.ascontiguousarray(np.asarray(img, np.float32).transpose(2, 0, 1)[None]))


def restore_lr(crm, lr8, tile=0, overlap=0):
    """A decoded lossy LR (HxWx3 uint8) -> the CRM-restored LR, uint8 (Q(CRM(lr / 255))).

    ``tile`` / ``overlap`` in LR pixels (0: the whole image at once).
    """
    cell = _cell('restore', crm)

    def once(parts):
        return cell(_nchw(parts[0])).asnumpy()[0].transpose(1, 2, 0)

    x = _unit(np.asarray(lr8, np.uint8))
    out = once([x]) if not tile else tiled_apply(once, [x], tile, overlap)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def irn_lr(irn, hr):
    """The quantised IRN LR of one HR image (HxWx3 float32, mod-cropped) as HxWx3 uint8."""
    lr_q, _ = _cell('down', irn)(_nchw(hr))
    return tensor_to_uint8(lr_q.asnumpy()[0])


def compress_image(irn, crm, hr, fmt='jpeg', quality=90, zs=(), crop=None, lr8=None,
                   restore_crop=0):
    """The authors' compression pipeline on one HR image (HxWx3 float32, mod-cropped).

    ``crm`` None skips the restoration (their ``ignore_restore``: J goes to the upscaling).
    ``zs``: the z arrays (1, C, h, w) to upscale with; the HR metrics are averaged over them.
    ``crop``: border cropped for the HR metrics (default: the scale). ``lr8``: the image's
    :func:`irn_lr` if already known (a quality sweep downscales once). ``restore_crop``: LR
    border cropped for the restore PSNR (0 in the authors' test, ``scale`` in their training
    validation).
    Returns ``(metrics, images)``: metrics has :data:`COMPRESSION_METRICS` (the HR ones only
    with ``zs``); images has uint8 HxWx3 ``lr``, ``jpeg``, ``restore``, first ``sr``, and
    the compressed ``data`` bytes.
    """
    scale = irn.scale
    crop = scale if crop is None else crop
    lr8 = irn_lr(irn, hr) if lr8 is None else lr8
    data = encode(lr8, fmt, quality)
    jpeg8 = decode(data)
    if crm is None:
        restore8 = jpeg8
    else:
        restore8 = tensor_to_uint8(_cell('restore', crm)(_nchw(_unit(jpeg8))).asnumpy()[0])
    lr_ref = tensor_to_uint8(imresize(hr.astype(np.float64), 1.0 / scale).transpose(2, 0, 1))
    res = {'bytes': len(data), 'bpp': bits_per_pixel(len(data), hr.shape[0], hr.shape[1]),
           'psnr_restore': calculate_psnr(lr8, restore8, restore_crop)}
    res.update(pair_metrics(lr8, lr_ref, 0, 'lr', 'lr_'))
    gt = tensor_to_uint8(hr.transpose(2, 0, 1))
    restore_t = _nchw(_unit(restore8))
    up = _cell('up', irn)
    images = {'lr': lr8, 'jpeg': jpeg8, 'restore': restore8, 'data': data, 'sr': None}
    draws = []
    for z in zs:
        sr = tensor_to_uint8(up(restore_t, ms.Tensor(np.asarray(z, np.float32))).asnumpy()[0])
        images['sr'] = sr if images['sr'] is None else images['sr']
        draws.append(pair_metrics(sr, gt, crop, 'hr'))
    for key in (draws[0] if draws else ()):
        res[key] = float(np.mean([d[key] for d in draws]))
    return res, images


def evaluate_compression(irn, crm, source, fmt='jpeg', quality=90, z_mode='sample', seed=0,
                         draws=1, crop=None, restore_crop=0, keep_images=False):
    """:func:`compress_image` over ``source`` (``(name, hr)`` pairs, mod-cropped).

    z of image ``i``, draw ``d`` is :func:`src.evaluate.sample_z` with ``[seed, i, d]``
    (as in the IRN evaluation). Returns one dict per image: ``name``, ``draws``, the metrics,
    and with ``keep_images`` the uint8 ``lr``, ``jpeg``, ``restore``, ``sr``.
    """
    draws = 1 if z_mode == 'zero' else int(draws)
    if draws < 1:
        raise IRNError(f'z draws must be >= 1, got {draws}')
    zc = irn.channel_out - irn.channel_in
    results = []
    for index, (name, hr) in enumerate(source):
        h, w = hr.shape[:2]
        if h % irn.scale or w % irn.scale:
            raise IRNError(f'{name}: {h}x{w} is not mod-cropped to scale {irn.scale}')
        shape = (1, zc, h // irn.scale, w // irn.scale)
        zs = [sample_z(shape, z_mode, seed, index, d) for d in range(draws)]
        res, images = compress_image(irn, crm, hr, fmt, quality, zs, crop,
                                     restore_crop=restore_crop)
        res.update(name=name, draws=draws)
        if keep_images:
            res.update({k: images[k] for k in ('lr', 'jpeg', 'restore', 'sr')})
        results.append(res)
    return results
