"""Experiment configuration: yaml files with the authors' key names, validated, with overrides.

Every key a config may hold is declared with its type and default: ``SCHEMA`` holds the keys
the family shares (base IRN's), and the model named by ``model:`` adds its own
(``Model.SCHEMA``, see src/models/). A file or a ``section.key=value`` override naming
anything else is an error that names the key.
"""
import ast
import copy
import difflib
import os

import yaml

from src.utils.errors import IRNError

OPTIONAL = object()  # marks keys whose default is None (unset)


def _dataset_schema(train):
    schema = {
        'name': (str, 'DIV2K'),
        'mode': (str, 'LQGT'),
        'dataroot_GT': (str, OPTIONAL),      # HR folder, DIV2K root or .lmdb
        'dataroot_LQ': (str, OPTIONAL),      # precomputed LR (optional)
        'color': (str, 'RGB'),
        'skip_bad_images': (bool, False),
    }
    if train:
        schema.update({
            'use_shuffle': (bool, True),
            'n_workers': (int, 1),
            'batch_size': (int, 16),
            'GT_size': (int, 144),
            'use_flip': (bool, True),
            'use_rot': (bool, True),
            'lr_cache_dir': (str, OPTIONAL),
        })
    return schema


SCHEMA = {
    'name': (str, 'IRN'),
    'model': (str, 'IRN'),
    'distortion': (str, 'sr'),
    'scale': (int, 4),
    'device_target': (str, 'CPU'),
    'allow_fast_fp32': (bool, False),        # GPU TF32 / Ascend HF32 for float32 conv, matmul
    'datasets': {'train': _dataset_schema(True), 'val': _dataset_schema(False)},
    'network_G': {
        'which_model_G': {'subnet_type': (str, 'DBNet')},
        'in_nc': (int, 3),
        'out_nc': (int, 3),
        'block_num': (list, [8, 8]),
        'scale': (int, 4),
        'init': (str, 'xavier'),
    },
    'path': {
        'root': (str, 'experiments'),        # outputs go to root/name
        'pretrain_model_G': (str, OPTIONAL),
        'strict_load': (bool, True),
        'resume_state': (str, OPTIONAL),
    },
    'train': {
        'lr_G': (float, 2e-4),
        'beta1': (float, 0.9),
        'beta2': (float, 0.999),
        'eps': (float, 1e-8),
        'niter': (int, 500000),
        'warmup_iter': (int, -1),
        'lr_scheme': (str, 'MultiStepLR'),
        'lr_steps': (list, [100000, 200000, 300000, 400000]),
        'lr_gamma': (float, 0.5),
        'T_period': (list, OPTIONAL),
        'restarts': (list, OPTIONAL),
        'restart_weights': (list, OPTIONAL),
        'eta_min': (float, 1e-7),
        'pixel_criterion_forw': (str, 'l2'),
        'pixel_criterion_back': (str, 'l1'),
        'manual_seed': (int, 10),
        'val_freq': (int, 5000),
        'lambda_fit_forw': (float, OPTIONAL),  # default scale**2
        'lambda_rec_back': (float, 1.0),
        'lambda_ce_forw': (float, 1.0),
        'weight_decay_G': (float, 1e-5),
        'gradient_clipping': (float, 10.0),
        'gaussian_scale': (float, 1.0),
        'add_noise_on_y': (bool, False),       # noise fine-tune (EXTENSIONS.md 5.1)
        'y_noise_prob': (float, OPTIONAL),
        'y_noise_scale': (float, OPTIONAL),
        'micro_batch': (int, OPTIONAL),        # default: the whole batch
        'memory_mode': (str, 'plain'),
        'amp_level': (str, 'O0'),
        'loss_scale': (str, OPTIONAL),         # 'dynamic' (amp O1): mindspore.amp.DynamicLossScaler
        'loss_scale_value': (float, 1.0),      # its initial scale (README: loss scaling),
        'loss_scale_factor': (int, 2),         # the factor it shrinks / grows by,
        'loss_scale_window': (int, 1000),      # the finite steps before it grows
        'max_nonfinite': (int, 10),
    },
    'val': {
        'z_mode': (str, 'sample'),
        'z_draws': (int, 1),
        'seed': (int, 0),
    },
    'test': {                                # val.py: evaluation sets and outputs
        'dataroots': (list, OPTIONAL),       # folders / DIV2K roots (--data_path wins)
        'max_images': (int, OPTIONAL),       # first N images of each set (quick checks)
    },
    'logger': {
        'print_freq': (int, 100),
        'save_checkpoint_freq': (int, 5000),
        'keep_last': (int, 3),
    },
}

CHOICES = {
    'device_target': ('CPU', 'GPU', 'Ascend'),
    'network_G.which_model_G.subnet_type': ('DBNet',),
    'train.lr_scheme': ('MultiStepLR', 'CosineAnnealingLR_Restart'),
    'train.pixel_criterion_forw': ('l2', 'l1'),
    'train.pixel_criterion_back': ('l1',),
    'train.memory_mode': ('auto', 'plain', 'recompute', 'invertible'),
    'train.amp_level': ('O0', 'O1'),
    'train.loss_scale': (None, 'dynamic'),
    'val.z_mode': ('sample', 'zero'),
}


def _defaults(schema):
    out = {}
    for key, spec in schema.items():
        if isinstance(spec, dict):
            out[key] = _defaults(spec)
        else:
            out[key] = None if spec[1] is OPTIONAL else copy.deepcopy(spec[1])
    return out


def _coerce(value, kind, where, source):
    if value is None:
        return None
    if kind is float and isinstance(value, str):
        try:
            return float(value)  # yaml reads 2e-4 (no dot) as a string
        except ValueError:
            pass
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)  # !!float 5e3 for a frequency
    if kind is list and isinstance(value, tuple):
        return list(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise IRNError(f'{source}: {where} must be {kind.__name__}, got {value!r}')
    return value


def _merge(dst, src, schema, prefix, source):
    for key, value in src.items():
        where = f'{prefix}{key}'
        if key not in schema:
            hint = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" (did you mean '{prefix}{hint[0]}'?)" if hint else ''
            raise IRNError(f"{source}: unknown key '{where}'{hint}")
        spec = schema[key]
        if isinstance(spec, dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise IRNError(f'{source}: {where} must be a section (mapping), got {value!r}')
            _merge(dst[key], value, spec, where + '.', source)
        else:
            dst[key] = _coerce(value, spec[0], where, source)


def overlay_schema(base, extra):
    """``base`` with the keys of ``extra`` added or replaced (sections merged recursively)."""
    out = dict(base)
    for key, spec in extra.items():
        if isinstance(spec, dict) and isinstance(out.get(key), dict):
            out[key] = overlay_schema(out[key], spec)
        else:
            out[key] = spec
    return out


def model_schema(name, source='config'):
    """(schema, choices, Model class) of the model registered as ``name``."""
    from src.models import model_class
    cls = model_class(name, source)
    return overlay_schema(SCHEMA, cls.SCHEMA), {**CHOICES, **cls.CHOICES}, cls


def _set_path(opt, dotted, value, schema, source):
    parts = dotted.split('.')
    nested = value
    for part in reversed(parts):
        nested = {part: nested}
    _merge(opt, nested, schema, '', source)


def parse_override(text):
    """'train.niter=1000' -> ('train.niter', 1000); values parsed as yaml scalars / lists."""
    if '=' not in text:
        raise IRNError(f"override '{text}': expected section.key=value")
    key, raw = text.split('=', 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
    return key.strip(), value


def load_config(path=None, overrides=(), **flags):
    """Load ``path`` over the defaults, apply ``key=value`` overrides and common CLI flags.

    ``flags`` are the shared command-line options (scale, device_target, data_path, ...) and
    win over the file; None values are ignored. The model (flag ``model``, an override
    ``model=...`` or the file's ``model:``; default ``IRN``) decides which keys are allowed.
    Returns a plain nested dict.
    """
    data = read_yaml(path) if path is not None else {}
    parsed = [(text, *parse_override(text)) for text in overrides]
    name = flags.get('model') or next((v for _, k, v in parsed if k == 'model'), None) \
        or data.get('model') or 'IRN'
    schema, choices, cls = model_schema(name, path or f"model '{name}'")
    opt = _defaults(schema)
    _merge(opt, data, schema, '', path)
    for text, key, value in parsed:
        _set_path(opt, key, value, schema, f"override '{text}'")
    opt['model'] = name
    scale = flags.get('scale')
    if scale is not None:
        opt['scale'] = scale
        if path is None:
            cls.default_layout(opt, scale)
    if flags.get('device_target'):
        opt['device_target'] = flags['device_target']
    if flags.get('data_path'):
        opt['datasets']['train']['dataroot_GT'] = flags['data_path']
    if flags.get('output_dir'):
        opt['path']['root'] = flags['output_dir']
    return validate(opt, path or '<defaults>', choices, cls)


def read_yaml(path):
    """The mapping a yaml config file holds; IRNError naming the file when it is unreadable."""
    if not os.path.isfile(path):
        raise IRNError(f'{path}: config file not found')
    try:
        with open(path, encoding='utf-8') as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        line = f' at line {mark.line + 1}' if mark else ''
        raise IRNError(f'{path}: invalid yaml{line}') from None
    if not isinstance(data, dict):
        raise IRNError(f'{path}: the top level must be a mapping of keys')
    return data


def _get(opt, dotted):
    for part in dotted.split('.'):
        opt = opt[part]
    return opt


def validate(opt, source, choices, cls):
    """Check the values and cross-key consistency (the model's own checks included)."""
    for dotted, allowed in choices.items():
        if _get(opt, dotted) not in allowed:
            raise IRNError(f'{source}: {dotted} must be one of {list(allowed)}, got {_get(opt, dotted)!r}')
    scale = opt['scale']
    opt['network_G']['scale'] = scale  # as the authors' options.parse does
    cls.check_config(opt, source)
    train = opt['train']
    if train['add_noise_on_y']:
        for key in ('y_noise_prob', 'y_noise_scale'):
            if train[key] is None or train[key] < 0:
                raise IRNError(f'{source}: train.add_noise_on_y needs train.{key} (>= 0)')
    batch = opt['datasets']['train']['batch_size']
    micro = train['micro_batch']  # None: each device's whole batch at once
    if micro is not None and (micro <= 0 or batch % micro):
        raise IRNError(f'{source}: train.micro_batch ({micro}) must divide '
                       f'datasets.train.batch_size ({batch})')
    from src.amp import check_loss_scale
    check_loss_scale(train, source)
    gt = opt['datasets']['train']['GT_size']
    if gt % scale:
        raise IRNError(f'{source}: datasets.train.GT_size ({gt}) must be a multiple of scale {scale}')
    return opt


def dump_config(opt, path):
    """Write the merged config (what actually ran) as yaml."""
    from src.utils.atomic import write_text
    write_text(path, yaml.safe_dump(opt, sort_keys=False), 'config')
