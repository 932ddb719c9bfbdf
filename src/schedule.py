"""Per-iteration learning rates, identical to the authors' schedulers.

The authors (``codes/models/lr_scheduler.py`` of mmsr / IRN, driven by
``BaseModel.update_learning_rate`` in ``codes/train.py``) step the scheduler once
per iteration, *after* the optimizer update. So update number ``i`` (0-based,
i.e. MindSpore's ``global_step``) uses the learning rate the scheduler holds at
``last_epoch = i``: with milestones [100000, ...] the 100000th update (i = 99999)
still uses 2e-4 and update i = 100000 is the first at 1e-4.

The generators below replay those schedulers step by step (they are recursive:
each value is computed from the previous one) and return a float32 array of
length ``total_iters`` whose entry ``i`` is the learning rate of update ``i``, ready
to be given to a MindSpore optimizer as a per-step learning-rate tensor.

Warm-up (``warmup_iter > 0``) follows ``update_learning_rate``: after update ``t``
(1-based) with ``t < warmup_iter`` the rate is set to ``base_lr * t / warmup_iter``.
The first update uses ``base_lr``, and because the schedulers are recursive the
rate stays at ``base_lr * (warmup_iter - 1) / warmup_iter`` after the warm-up (an
artefact of the original code, reproduced; the paper runs use no warm-up).
"""

import math
from collections import Counter

import numpy as np

from src.utils.errors import IRNError

__all__ = ["multistep_lr", "cosine_restart_lr", "build_lr"]


def _restarts(restarts, weights):
    restarts = list(restarts) if restarts else [0]
    weights = list(weights) if weights else [1]
    if len(restarts) != len(weights):
        raise IRNError(f"config: {len(restarts)} restarts but {len(weights)} restart_weights")
    return [int(r) for r in restarts], [float(w) for w in weights]


def _check_common(base_lr, total_iters):
    if int(total_iters) <= 0:
        raise IRNError(f"config: the number of iterations must be > 0, got {total_iters}")
    if not float(base_lr) > 0:
        raise IRNError(f"config: the learning rate must be > 0, got {base_lr}")


def _replay(base_lr, total_iters, warmup_iter, get_lr):
    """Run ``get_lr(last_epoch, current_lr)`` as the authors' training loop does."""
    lrs = np.empty(int(total_iters), dtype=np.float64)
    lr = get_lr(0, float(base_lr))  # the scheduler's initial step (last_epoch = 0)
    warmup_iter = int(warmup_iter) if warmup_iter is not None else -1
    for i in range(len(lrs)):
        lrs[i] = lr
        t = i + 1  # update_learning_rate(cur_iter=t) after update t (1-based)
        lr = get_lr(t, lr)
        if t < warmup_iter:
            lr = float(base_lr) / warmup_iter * t
    return lrs.astype(np.float32)


def multistep_lr(base_lr, total_iters, milestones, gamma, warmup_iter=-1, restarts=None,
                 restart_weights=None):
    """Learning rates of the authors' ``MultiStepLR_Restart``.

    Args:
        base_lr (float): initial learning rate (``lr_G``).
        total_iters (int): number of updates (``niter``).
        milestones (list[int]): ``lr_steps``; from update index ``m`` on the rate is
            multiplied by ``gamma`` (repeated milestones multiply repeatedly).
        gamma (float): ``lr_gamma``.
        warmup_iter (int): linear warm-up length, -1 for none.
        restarts (list[int] | None): update indices where the rate is reset to
            ``base_lr * weight``.
        restart_weights (list[float] | None): one weight per restart.

    Returns:
        np.ndarray: float32 array of length ``total_iters``.
    """
    _check_common(base_lr, total_iters)
    steps = Counter(int(m) for m in (milestones or []))
    restarts, weights = _restarts(restarts, restart_weights)
    base_lr, gamma = float(base_lr), float(gamma)

    def get_lr(t, lr):
        if t in restarts:
            return base_lr * weights[restarts.index(t)]
        if t not in steps:
            return lr
        return lr * gamma ** steps[t]

    return _replay(base_lr, total_iters, warmup_iter, get_lr)


def cosine_restart_lr(base_lr, total_iters, T_period, restarts=None, weights=None, eta_min=0.0,
                      warmup_iter=-1):
    """Learning rates of the authors' ``CosineAnnealingLR_Restart``.

    Cosine annealing from ``base_lr`` to ``eta_min`` over ``T_period[0]`` updates
    (then back up, periodically, if no restart comes); at ``restarts[k]`` the rate
    jumps to ``base_lr * weights[k]`` and anneals over ``T_period[k + 1]``.

    Args:
        base_lr (float): initial learning rate.
        total_iters (int): number of updates.
        T_period (list[int]): cosine period lengths, one more than ``restarts``.
        restarts (list[int] | None): update indices of the restarts.
        weights (list[float] | None): restart weights.
        eta_min (float): minimum learning rate.
        warmup_iter (int): linear warm-up length, -1 for none.

    Returns:
        np.ndarray: float32 array of length ``total_iters``.
    """
    _check_common(base_lr, total_iters)
    restarts, weights = _restarts(restarts, weights)
    periods = [int(p) for p in (T_period or [])]
    if not periods or min(periods) <= 0:
        raise IRNError(f"config: T_period must be a list of positive lengths, got {T_period}")
    if restarts != [0] and len(periods) < len(restarts) + 1:
        raise IRNError(f"config: T_period needs {len(restarts) + 1} entries for "
                       f"{len(restarts)} restarts, got {len(periods)}")
    base_lr, eta_min = float(base_lr), float(eta_min)
    state = {"t_max": periods[0], "last_restart": 0}

    def get_lr(t, lr):
        t_max, last = state["t_max"], state["last_restart"]
        if t == 0:
            return base_lr
        if t in restarts:
            state["last_restart"] = t
            state["t_max"] = periods[restarts.index(t) + 1]
            return base_lr * weights[restarts.index(t)]
        if (t - last - 1 - t_max) % (2 * t_max) == 0:
            return lr + (base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
        return ((1 + math.cos(math.pi * (t - last) / t_max))
                / (1 + math.cos(math.pi * (t - last - 1) / t_max)) * (lr - eta_min) + eta_min)

    return _replay(base_lr, total_iters, warmup_iter, get_lr)


def build_lr(train_opt):
    """Per-update learning rates from the ``train`` section of a config.

    Keys (the authors' names): ``lr_G``, ``niter``, ``lr_scheme``
    ('MultiStepLR' | 'CosineAnnealingLR_Restart'), ``warmup_iter``, ``restarts``,
    ``restart_weights``; MultiStepLR: ``lr_steps``, ``lr_gamma``;
    cosine: ``T_period``, ``eta_min``.

    Returns:
        np.ndarray: float32 array of length ``niter``.
    """
    def need(key):
        if train_opt.get(key) is None:
            raise IRNError(f"config: train.{key} is missing")
        return train_opt[key]

    scheme = need("lr_scheme")
    common = dict(base_lr=need("lr_G"), total_iters=int(need("niter")),
                  warmup_iter=train_opt.get("warmup_iter") or -1,
                  restarts=train_opt.get("restarts"))
    if scheme == "MultiStepLR":
        return multistep_lr(milestones=need("lr_steps"), gamma=need("lr_gamma"),
                            restart_weights=train_opt.get("restart_weights"), **common)
    if scheme == "CosineAnnealingLR_Restart":
        return cosine_restart_lr(T_period=need("T_period"),
                                 weights=train_opt.get("restart_weights"),
                                 eta_min=train_opt.get("eta_min") or 0.0, **common)
    raise IRNError(f"config: train.lr_scheme {scheme!r} is not one of 'MultiStepLR', "
                   f"'CosineAnnealingLR_Restart'")
