"""The IRN family: the config's ``model:`` (the authors' names) -> a :class:`~src.models.base.Model`.

Each model lives in one file of this package; the table below is the registry. It names modules
instead of importing them, so reading a config imports only the model it asks for.
"""
import importlib

from src.utils.errors import IRNError

__all__ = ['MODELS', 'model_class', 'create_model', 'checkpoint_model', 'default_config',
           'load_model', 'load_network']

MODELS = {
    'IRN': 'src.models.irn:IRNModel',  # also IRN_LD and IRN_E (network_G.which_model_G flags)
    'IRN-Color': 'src.models.irn_color:IRNColorModel',
    'SAIN': 'src.models.sain:SAINModel',
    'IRN-CRM': 'src.models.irn_crm:IRNCRMModel',
    'IRN+': 'src.models.irn_plus:IRNPlusModel',  # IRN x4 G with a GAN fine-tune
}


def model_class(name, source='config'):
    """The Model subclass registered as ``name``; an IRNError listing the known names otherwise."""
    if name not in MODELS:
        raise IRNError(f"{source}: model {name!r} is not one of {sorted(MODELS)}")
    module, cls = MODELS[name].split(':')
    return getattr(importlib.import_module(module), cls)


def create_model(opt, rank_id=0, rank_size=1):
    """An instance of the model a parsed config describes (``opt['model']``)."""
    return model_class(opt['model'])(opt, rank_id, rank_size)


def checkpoint_model(ckpt):
    """(Model class, architecture record or None) that ``ckpt`` was made for.

    A file that names no model (an authors' .pth, older checkpoints) is taken as base IRN's
    family; a .pth belongs to the first model whose ``torch_arch`` recognises its keys.
    """
    from src.utils.checkpoint import peek_arch
    arch = peek_arch(ckpt)
    if arch is None and ckpt.endswith('.pth'):
        from src.convert import read_pth
        state = read_pth(ckpt)
        for name in MODELS:
            found = model_class(name).torch_arch(state, ckpt)
            if found is not None:
                return model_class(name), found
    return model_class((arch or {}).get('model') or 'IRN', ckpt), arch


def default_config(ckpt=None, scale=None):
    """The evaluation config for ``ckpt``: its model's test yml for ``scale`` (default: the
    recorded scale), or None when there is none."""
    cls, arch = checkpoint_model(ckpt) if ckpt else (model_class('IRN'), None)
    if scale is not None:
        arch = {**(arch or {}), 'scale': scale}
    return cls.test_config(arch) if arch else None


def load_model(ckpt, config=None, overrides=(), scale=None, device_target=None):
    """What val.py, export.py and infer.py start from: ``(opt, model, net)`` for ``ckpt``,
    with the device (``device_target`` or the config's) set up.

    The model comes from ``config`` when given (a checkpoint of another model is then an
    IRNError), else from the checkpoint's record with that model's evaluation config for the
    recorded architecture. The checkpoint must have ``scale`` (when given) or the scale of
    the ``config`` given.
    """
    from src.config import load_config
    from src.utils.device import setup_device
    if not ckpt:
        raise IRNError('no checkpoint given (--ckpt X.ckpt or the authors\' .pth)')
    cls, arch = checkpoint_model(ckpt)
    given = config is not None
    if not given:
        config = default_config(ckpt, scale)
        if config is None and arch is None and scale is None:
            raise IRNError(f'{ckpt}: the file does not record its architecture; pass --config '
                           'or --scale')
    if config is None and scale is None and arch:  # no evaluation yml: defaults at its scale
        scale = arch['scale']
    opt = load_config(config, overrides, scale=scale, device_target=device_target,
                      model=None if config else cls.name)
    setup_device(opt['device_target'], allow_fast_fp32=opt['allow_fast_fp32'])
    model = create_model(opt)
    expect = scale if scale is not None else (opt['scale'] if given else None)
    return opt, model, model.load_net(ckpt, expect_scale=expect)


def load_network(ckpt, scale=None):
    """The main network of ``ckpt`` (whatever model made it), weights loaded, in eval mode."""
    return load_model(ckpt, scale=scale)[2]
