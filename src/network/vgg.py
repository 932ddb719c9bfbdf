"""VGG19 feature extractor of IRN+'s perceptual loss ("VGG19-54": conv5_4 before its ReLU).

It is torchvision's ``vgg19().features`` children 0..34: 16 3x3 convolutions (padding 1, bias)
with a ReLU after each but the last, and 2x2 max-pooling after conv1_2, conv2_2, conv3_4 and
conv4_4. The input is normalised with the ImageNet mean and std first. The weights must be the
ImageNet ones (a converted torchvision file, see :func:`load_vgg19_features`); the network is
frozen and has no train/eval difference.
"""
import os

import numpy as np
import mindspore as ms
from mindspore import nn, Parameter, Tensor

from src.network.convs import Conv3x3
from src.utils.errors import IRNError

# torchvision indices of the 16 convs in vgg19.features (0..34) with (in, out) channels
VGG19_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128),
               (10, 128, 256), (12, 256, 256), (14, 256, 256), (16, 256, 256),
               (19, 256, 512), (21, 512, 512), (23, 512, 512), (25, 512, 512),
               (28, 512, 512), (30, 512, 512), (32, 512, 512), (34, 512, 512))
VGG19_POOLS = (4, 9, 18, 27)
FEATURE_LAYER = 34
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_KEY = 'irn_vgg19_features'   # tag of a converted checkpoint (value: the last layer index)
VGG_HELP = ("IRN+'s feature loss needs torchvision's ImageNet VGG19 weights: download "
            "vgg19-dcbb9e9d.pth (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) on a "
            "machine with internet access, convert it with `python -m src.convert --vgg19 "
            "vgg19-dcbb9e9d.pth vgg19_features.ckpt` and set path.pretrain_model_F to the .ckpt")


def vgg19_feature_shapes():
    """``{name: shape}`` of every tensor of ``features.0..34`` in torchvision's naming."""
    shapes = {}
    for index, cin, cout in VGG19_CONVS:
        shapes[f'features.{index}.weight'] = (cout, cin, 3, 3)
        shapes[f'features.{index}.bias'] = (cout,)
    return shapes


class VGGFeatureExtractor(nn.Cell):
    """``VGGFeatureExtractor(feature_layer=34, use_bn=False, use_input_norm=True)``.

    ``construct(x)``: x (B, 3, H, W) RGB in [0, 1] (not clamped: IRN+ feeds its raw
    reconstruction) -> (B, 512, H/16, W/16) conv5_4 features before the ReLU.

    Args:
        weights (dict): ``features.N.weight`` / ``.bias`` arrays for all 16 convolutions
            (:func:`load_vgg19_features` reads them from a file); checked by name and shape.
        source (str): where the weights came from, for error messages.
    """

    def __init__(self, weights, source='<weights>'):
        super().__init__()
        check_vgg19_weights(weights, source)
        self.mean = Parameter(Tensor(np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)),
                              name='mean', requires_grad=False)
        self.std = Parameter(Tensor(np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)),
                             name='std', requires_grad=False)
        layers = []
        convs = {index for index, _, _ in VGG19_CONVS}
        for index in range(FEATURE_LAYER + 1):
            if index in convs:
                layers.append(Conv3x3(weights[f'features.{index}.weight'],
                                      weights[f'features.{index}.bias']))
            elif index in VGG19_POOLS:
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU())
        self.features = nn.SequentialCell(layers)
        for p in self.get_parameters():
            p.requires_grad = False

    def construct(self, x):
        return self.features((x - self.mean) / self.std)


def check_vgg19_weights(weights, source):
    """Raise IRNError naming ``source`` unless ``weights`` has every VGG19 conv at its shape."""
    for name, shape in vgg19_feature_shapes().items():
        if name not in weights:
            raise IRNError(f'{source}: missing {name}: not torchvision VGG19 weights (vgg19, '
                           'not vgg19_bn)')
        if tuple(weights[name].shape) != shape:
            raise IRNError(f'{source}: {name} has shape {tuple(weights[name].shape)}, VGG19 '
                           f'has {shape}')


def vgg19_from_torch(state, path):
    """torchvision ``vgg19`` state dict -> ``{features.N.*: float32}`` (0..34; shapes checked).

    The classifier (``classifier.*``) is not used and is dropped; anything else is an error.
    """
    shapes = vgg19_feature_shapes()
    other = [k for k in state if k not in shapes and not k.startswith('classifier.')]
    if other:
        raise IRNError(f'{path}: unexpected key {other[0]!r} ({len(other)} unknown keys): not a '
                       'torchvision vgg19 state dict')
    check_vgg19_weights(state, path)
    return {k: np.asarray(state[k], np.float32) for k in shapes}


def load_vgg19_features(path):
    """Read VGG19 feature weights from a converted .ckpt (or torchvision's .pth directly)."""
    if not path:
        raise IRNError(VGG_HELP)
    if not os.path.isfile(path):
        raise IRNError(f'{path}: VGG19 weights not found. {VGG_HELP}')
    if path.endswith('.pth'):
        from src.convert import read_pth
        return vgg19_from_torch(read_pth(path), path)
    try:
        raw = ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError with long texts
        raise IRNError(f'{path}: not a readable MindSpore checkpoint ({type(exc).__name__})') from None
    if VGG_KEY not in raw:
        raise IRNError(f'{path}: not a VGG19 features checkpoint written by `python -m '
                       'src.convert --vgg19`')
    weights = {k: v.asnumpy() for k, v in raw.items() if hasattr(v, 'asnumpy') and k != VGG_KEY}
    check_vgg19_weights(weights, path)
    return weights



def write_vgg19_features(weights, path):
    """Write ``{features.N.*: array}`` as the tagged .ckpt :func:`load_vgg19_features` reads."""
    from src.utils.checkpoint import atomic_save
    entries = [{'name': k, 'data': Tensor(np.asarray(v, np.float32))} for k, v in weights.items()]
    atomic_save(lambda tmp: ms.save_checkpoint(entries, tmp,
                                               append_dict={VGG_KEY: str(FEATURE_LAYER)}), path)


def random_vgg19_weights(seed=0):
    """VGG19 feature weights with random He-scaled values: for tests and timing only (a
    feature loss or score computed with them means nothing)."""
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(shape) * (np.sqrt(2.0 / np.prod(shape[1:])) if len(shape) > 1
                                               else 0.01)).astype(np.float32)
            for k, shape in vgg19_feature_shapes().items()}
