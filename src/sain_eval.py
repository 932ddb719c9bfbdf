"""SAIN's evaluation protocol (SAIN.md section 6) and its baselines, on numpy images.

Per image: HR (mod-cropped) -> Q(HQ LR tap) -> real codec (format, quality; bytes counted)
-> z from the learned mixture (Gumbel and Gaussian noise from a numpy generator seeded by
``[seed, image index, draw]``; the authors never seed it) -> inverse -> uint8 -> PSNR / SSIM in
RGB and on the MATLAB Y channel with ``scale`` pixels cropped; the metrics of the draws are
averaged. The HQ LR is scored against the rounded MATLAB-bicubic LR (no crop). Baselines at the
same codec settings: IRN (its quantised LR through the codec, z ~ N(0, I) seeded the same way)
and bicubic & bicubic (MATLAB bicubic down, 8-bit, codec, MATLAB bicubic up). Rate: bits of
the compressed LR file per HR pixel.
"""
import numpy as np
import mindspore as ms
from mindspore import nn

from src.codecs.real import bits_per_pixel, roundtrip_batch
from src.data.bicubic import imresize
from src.evaluate import compiled_cells as irn_cells, pair_metrics, sample_z
from src.inference import QuantizeLR
from src.metrics import tensor_to_uint8
from src.sain_step import draw_gmm_noise
from src.utils.errors import IRNError
from src.utils.graphs import ShapeGraphs

__all__ = ['SAINDownscaleNet', 'SAINUpscaleNet', 'MixtureNet', 'evaluate_sain', 'sain_z',
           'eval_protocol', 'protocol_text', 'evaluate_protocol', 'quality_table', 'HR_METRICS']

HR_METRICS = ('psnr_rgb', 'ssim_rgb', 'psnr_y', 'ssim_y')


class SAINDownscaleNet(nn.Cell):
    """HR (1, 3, H, W) -> the quantised high-quality LR, the image the codec then compresses."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net
        self.quant = QuantizeLR()

    def construct(self, hr):
        return self.quant(self.net(hr)[1])


class SAINUpscaleNet(nn.Cell):
    """(compressed LR (1, 3, h, w), z (1, C - 3, h, w)) -> HR (unclamped)."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, lr, z):
        return self.net.upscale(lr, z)


class MixtureNet(nn.Cell):
    """(Gumbel noise, Gaussian noise), each (1, C - 3, h, w, K) -> z from the learned mixture."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, gumbel, eps):
        return self.net.gmm(gumbel, eps)


_CELLS = {}


def _sain_cells(net):
    """(down, up, mixture) graphs of ``net``: static shapes, one graph per image size, so the
    fast CPU convolution runs (see :mod:`src.utils.graphs`)."""
    cached = _CELLS.get(id(net))
    if cached is None or cached[0] is not net:
        cached = (net, ShapeGraphs(SAINDownscaleNet(net)), ShapeGraphs(SAINUpscaleNet(net)),
                  ShapeGraphs(MixtureNet(net)))
        _CELLS.clear()
        _CELLS[id(net)] = cached
    return cached[1:]


def sain_z(net, lr_shape, seed, index, draw, mixture=None):
    """z for an LR of ``lr_shape`` from the net's mixture; noise seeded by [seed, index, draw]."""
    rng = np.random.default_rng([int(seed), int(index), int(draw)])
    gumbel, eps = draw_gmm_noise(rng, net.latent_shape(lr_shape), net.gmm_components)
    mixture = mixture or net.gmm
    return mixture(ms.Tensor(gumbel), ms.Tensor(eps)).asnumpy()


def _codec(lr, fmt, quality):
    """(decoded LR, bytes); quality None: no codec (the 8-bit LR itself; bytes nan)."""
    if quality is None:
        return lr, float('nan')
    out, sizes = roundtrip_batch(lr, fmt, quality)
    return out, sizes[0]


def _upscaled_metrics(upscale, gt, crop, draws):
    """Metrics of ``upscale(draw)`` against ``gt`` averaged over the draws (+ the first SR)."""
    per_draw, first = [], None
    for d in range(draws):
        sr = tensor_to_uint8(upscale(d)[0])
        first = sr if first is None else first
        per_draw.append(pair_metrics(sr, gt, crop, 'hr'))
    return {k: float(np.mean([m[k] for m in per_draw])) for k in per_draw[0]}, first


def evaluate_sain(net, source, scale, fmt, qualities, seed=0, draws=1, irn=None, bicubic=False,
                  keep_images=False, crop=None):
    """Evaluate ``net`` (and the baselines) on every image of ``source`` at each quality.

    Args:
        net (SAINet): the network.
        source: iterable of ``(name, hr)``, hr float32 HxWx3 RGB in [0, 1], mod-cropped.
        scale (int): rescaling factor; also the border cropped before HR metrics.
        fmt (str): real codec, 'jpeg' or 'webp'.
        qualities (list): codec qualities; None in the list = no codec.
        seed, draws (int): the z noise (image i, draw d uses generator [seed, i, d]).
        irn (InvRescaleNet | None): add the IRN baseline with this network.
        bicubic (bool): add the bicubic & bicubic baseline.
        keep_images (bool): keep the uint8 LRs and the first SR of SAIN in the rows.
        crop (int | None): border cropped before the HR metrics (default: ``scale``).

    Returns:
        list[dict]: one row per (image, method, quality): ``name``, ``method`` ('SAIN', 'IRN',
        'bicubic'), ``quality``, ``bytes``, ``bpp``, the :data:`HR_METRICS`; SAIN rows also the
        LR metrics (``lr_*``, the HQ LR before the codec against the rounded bicubic LR).
    """
    if scale != net.scale:
        raise IRNError(f'evaluation scale x{scale} does not match the network (x{net.scale})')
    if irn is not None and irn.scale != scale:
        raise IRNError(f'the IRN baseline is x{irn.scale}, SAIN is x{scale}')
    if int(draws) < 1:
        raise IRNError(f'z draws must be >= 1, got {draws}')
    crop = scale if crop is None else crop
    down, up, mixture = _sain_cells(net)
    rows = []
    for index, (name, hr) in enumerate(source):
        h, w = hr.shape[:2]
        if h % scale or w % scale:
            raise IRNError(f'{name}: {h}x{w} is not mod-cropped to scale {scale}')
        hr_t = ms.Tensor(np.ascontiguousarray(hr.transpose(2, 0, 1)[None]), ms.float32)
        gt = tensor_to_uint8(hr.transpose(2, 0, 1))
        bic = imresize(hr.astype(np.float64), 1.0 / scale).transpose(2, 0, 1)
        bic8 = tensor_to_uint8(bic)
        lr_q = down(hr_t).asnumpy()
        lr_metrics = pair_metrics(tensor_to_uint8(lr_q[0]), bic8, 0, 'lr', 'lr_')
        irn_lr = None
        if irn is not None:
            irn_down, irn_up = irn_cells(irn)
            irn_lr, irn_z = (t.asnumpy() for t in irn_down(hr_t))
        for quality in qualities:
            base = {'name': name, 'quality': quality, 'draws': int(draws)}

            def sain_up(d, lr_c):
                z = sain_z(net, lr_c.shape, seed, index, d, mixture)
                return up(ms.Tensor(lr_c), ms.Tensor(z)).asnumpy()

            lr_c, nbytes = _codec(lr_q, fmt, quality)
            res, sr = _upscaled_metrics(lambda d: sain_up(d, lr_c), gt, crop, int(draws))
            row = {**base, 'method': 'SAIN', 'bytes': nbytes, 'bpp': bits_per_pixel(nbytes, h, w),
                   **res, **lr_metrics}
            if keep_images:
                row['images'] = {'LR': tensor_to_uint8(lr_q[0]), 'LR_codec': tensor_to_uint8(lr_c[0]),
                                 'SR': sr}
            rows.append(row)
            if irn is not None:
                irn_c, nbytes = _codec(irn_lr, fmt, quality)

                def irn_sr(d):
                    z = sample_z(irn_z.shape, 'sample', seed, index, d)
                    return irn_up(ms.Tensor(irn_c), ms.Tensor(z)).asnumpy()

                res, _ = _upscaled_metrics(irn_sr, gt, crop, int(draws))
                rows.append({**base, 'method': 'IRN', 'bytes': nbytes,
                             'bpp': bits_per_pixel(nbytes, h, w), **res})
            if bicubic:
                bic_lr = bic8.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
                bic_c, nbytes = _codec(bic_lr, fmt, quality)
                sr = imresize(bic_c[0].transpose(1, 2, 0).astype(np.float64), scale)
                res = pair_metrics(tensor_to_uint8(sr.transpose(2, 0, 1)), gt, crop, 'hr')
                rows.append({**base, 'method': 'bicubic', 'draws': 0, 'bytes': nbytes,
                             'bpp': bits_per_pixel(nbytes, h, w), **res})
    return rows


METHODS = (('bicubic', 'Bicubic & Bicubic'), ('IRN', 'IRN'), ('SAIN', 'SAIN'))


def _tag(quality):
    return 'raw' if quality is None else f'q{quality}'


def eval_protocol(opt, args):
    """val.py's protocol for SAIN from its flags (``args``) and the config (json-able)."""
    v, test = opt['val'], opt['test']
    fmt = (getattr(args, 'format', None) or test['format']).upper()
    qualities = list(getattr(args, 'qualities', None) or test['qualities'])
    for q in qualities:
        if not (1 <= q <= 100 or q == -1):
            raise IRNError(f'--qualities: {q} is not a codec quality 1..100 (or -1: no codec)')
    draws = args.z_draws if getattr(args, 'z_draws', None) is not None else v['z_draws']
    if draws < 1:
        raise IRNError(f'--z_draws must be >= 1, got {draws}')
    seed = args.seed if getattr(args, 'seed', None) is not None else v['seed']
    methods = ['SAIN'] + (['IRN'] if getattr(args, 'irn_ckpt', None) else []) + \
        ([] if getattr(args, 'no_bicubic', False) else ['bicubic'])
    crop = opt['crop_border'] if opt['crop_border'] is not None else opt['scale']
    metrics = ['draws', *[f'lr_{k}' for k in HR_METRICS]]
    for method in methods:
        for q in qualities:
            metrics += [f'{method}_{_tag(None if q == -1 else q)}_{k}'
                        for k in ('bpp',) + HR_METRICS]
    return {'scale': opt['scale'], 'format': 'WebP' if fmt == 'WEBP' else 'JPEG',
            'qualities': qualities, 'z': 'learned Gaussian mixture (hard Gumbel-softmax)',
            'z_draws': int(draws), 'seed': int(seed), 'crop': crop, 'methods': methods,
            'irn_ckpt': getattr(args, 'irn_ckpt', None), 'codec': 'OpenCV (libjpeg-turbo / libwebp)',
            'metrics': metrics}


def protocol_text(p):
    """SAIN's protocol in one line: codec, qualities, z draws and seed, crop, baselines."""
    qs = ', '.join('none' if q == -1 else str(q) for q in p['qualities'])
    return (f"x{p['scale']} | Q(HQ LR) -> {p['format']} q {qs} ({p['codec']}) -> z from the "
            f"learned mixture, seed {p['seed']}, {p['z_draws']} draw(s) averaged -> inverse | "
            f"HR: uint8, crop {p['crop']} px, Y = MATLAB rgb2ycbcr | bpp: LR file bits per HR "
            f"pixel | methods: {', '.join(p['methods'])}")


_IRN = {}


def _irn_net(path, scale):
    if path not in _IRN:
        from src.models import load_network
        _IRN.clear()
        _IRN[path] = load_network(path, scale)
    return _IRN[path]


def evaluate_protocol(net, images, protocol, keep_images=False):
    """val.py's per-image rows: one row per image, a column per method, quality and metric."""
    qualities = [None if q == -1 else q for q in protocol['qualities']]
    irn = _irn_net(protocol['irn_ckpt'], protocol['scale']) if protocol['irn_ckpt'] else None
    rows = evaluate_sain(net, images, protocol['scale'], protocol['format'], qualities,
                         protocol['seed'], protocol['z_draws'], irn,
                         'bicubic' in protocol['methods'], keep_images, protocol['crop'])
    out, by_name = [], {}
    for r in rows:
        row = by_name.get(r['name'])
        if row is None:
            row = by_name[r['name']] = {'name': r['name'], 'draws': r['draws']}
            out.append(row)
        prefix = f"{r['method']}_{_tag(r['quality'])}_"
        row.update({prefix + k: r[k] for k in ('bpp',) + HR_METRICS})
        row.update({k: v for k, v in r.items() if k.startswith('lr_')})
        if 'images' in r:
            row.setdefault('images', {}).update(
                {f"{kind}_{_tag(r['quality'])}": img for kind, img in r['images'].items()})
    return out


def quality_table(sets, protocol):
    """The paper's layout per set: a row per method, a column per quality, PSNR / SSIM on Y,
    then on RGB, then the bpp of the compressed LR."""
    from src.report import _fmt
    qs = [None if q == -1 else q for q in protocol['qualities']]
    heads = ['method'] + [('no codec' if q is None else f"{protocol['format']} QF {q}") for q in qs]
    blocks = []
    for name, s in sets.items():
        m = s['mean']
        for title, keys in (('PSNR / SSIM, Y', ('psnr_y', 'ssim_y')),
                            ('PSNR / SSIM, RGB', ('psnr_rgb', 'ssim_rgb')), ('bpp', ('bpp',))):
            body = []
            for method, label in METHODS:
                if method not in protocol['methods']:
                    continue
                cells = []
                for q in qs:
                    p = f'{method}_{_tag(q)}_'
                    if keys == ('bpp',):
                        cells.append(_fmt(m.get(p + 'bpp'), 3))
                    else:
                        cells.append(f"{_fmt(m.get(p + keys[0]), 2)} / {_fmt(m.get(p + keys[1]), 4)}")
                body.append([label] + cells)
            widths = [max(len(r[i]) for r in [heads] + body) for i in range(len(heads))]
            line = lambda r: '  '.join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i])
                                       for i, v in enumerate(r))
            blocks.append('\n'.join([f"{name} ({len(s['images'])} images): {title}", line(heads),
                                     '  '.join('-' * w for w in widths)] + [line(r) for r in body]))
    return '\n\n'.join(blocks)
