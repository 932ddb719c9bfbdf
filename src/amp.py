"""Mixed precision for IRN training (``train.amp_level``), loss scaling and the overflow check.

``O0``: everything in float32 (default, the reference numbers).
``O1``: only the dense sub-networks F, G, H of every coupling block (all the convolutions
that carry the cost) run in float16; their inputs are cast to float16 and their outputs back
to float32. The Haar transforms, sigmoid, exp, the division of the inverse, the
quantisation and every loss sum stay in float32, and the master weights and Adam state
remain float32. (The earlier MindSpore port trained in pure fp16, O3, with fp16 loss sums.)
Parameter names are unchanged, so checkpoints are interchangeable with O0.

Loss scaling (``train.loss_scale: dynamic``, O1 only) multiplies the objective by a scale
before differentiation, so that small float16 gradients inside the sub-networks do not flush
to zero, and divides the gradients by it after the all-reduce. It is MindSpore's
``amp.DynamicLossScaler``: the scale halves (``loss_scale_factor``) at every overflow, whose
update is skipped, and doubles after ``loss_scale_window`` finite steps in a row.

The skip-on-overflow check is :func:`finite_step`: a finite loss and ``amp.all_finite`` of the
gradients. On Ascend in saturation mode (Atlas training series / 910A, or
``MS_ASCEND_CHECK_OVERFLOW_MODE=SATURATION_MODE``) float16 overflow saturates to +-65504
instead of giving inf, so finiteness of values says nothing; ``all_finite`` reads the
device's overflow status instead, which :class:`OverflowReset` clears at the start of a step.
"""
import os

import mindspore as ms
from mindspore import nn, ops, Tensor

from src.network.blocks import InvBlockExp
from src.utils.errors import IRNError

__all__ = ['apply_amp', 'LossScale', 'build_loss_scale', 'finite_step', 'saturation_mode',
           'OverflowReset']


def apply_amp(net, level):
    """Apply ``level`` ('O0' or 'O1') to an InvRescaleNet in place; returns ``net``."""
    if level not in ('O0', 'O1'):
        raise IRNError(f"train.amp_level must be 'O0' or 'O1', got {level!r}")
    for _, cell in net.cells_and_names():
        if isinstance(cell, InvBlockExp):
            cell.half = level == 'O1'
    return net


class LossScale(nn.Cell):
    """``mindspore.amp.DynamicLossScaler`` as a Cell, so that its state (the scale and the
    count of finite steps) is saved and resumed with the training state.

    Args:
        value (float): initial scale (>= 1).
        factor (int): the scale is divided by it at an overflow, multiplied after a window.
        window (int): finite steps in a row before the scale grows.
        prefix (str): parameter names ``<prefix>.value`` and ``<prefix>.counter`` (a model
            with two optimizers uses two scalers with distinct prefixes).
    """

    def __init__(self, value=2.0 ** 16, factor=2, window=1000, prefix='loss_scale'):
        super().__init__(auto_prefix=False)
        self.scaler = ms.amp.DynamicLossScaler(value, factor, window)
        self.scaler.scale_value.name = f'{prefix}.value'
        self.scaler.counter.name = f'{prefix}.counter'
        self.value = self.scaler.scale_value
        self.counter = self.scaler.counter

    def scale(self, x):
        """``x`` times the current scale (the objective that is differentiated)."""
        return x * self.value

    def unscale(self, grads):
        """The gradients of the scaled objective divided by the scale."""
        return self.scaler.unscale(grads)

    def adjust(self, finite):
        """Update the scale after a step whose gradients were ``finite`` (a bool Tensor)."""
        return self.scaler.adjust(finite)


def build_loss_scale(train, prefix='loss_scale'):
    """The :class:`LossScale` the ``train`` section asks for (None: no loss scaling)."""
    if train['loss_scale'] is None:
        return None
    return LossScale(train['loss_scale_value'], train['loss_scale_factor'],
                     train['loss_scale_window'], prefix)


def check_loss_scale(train, source):
    """Config check: dynamic loss scaling needs ``amp_level`` O1 and sane numbers."""
    if train['loss_scale'] is None:
        return
    if train['amp_level'] != 'O1':
        raise IRNError(f"{source}: train.loss_scale {train['loss_scale']!r} needs "
                       f"train.amp_level O1 (got {train['amp_level']}): float32 needs no scaling")
    if train['loss_scale_value'] < 1 or train['loss_scale_factor'] < 2 \
            or train['loss_scale_window'] < 1:
        raise IRNError(f'{source}: train.loss_scale_value must be >= 1, loss_scale_factor >= 2 '
                       'and loss_scale_window >= 1')


def finite_step(loss, grads, norm):
    """True when the update may be applied: finite loss, gradient norm and gradients, the
    last read by ``amp.all_finite`` (the device's overflow status where float16 saturates)."""
    ok = ops.logical_and(ops.isfinite(loss), ops.isfinite(norm))
    return ops.logical_and(ok, ms.amp.all_finite(grads))


def saturation_mode(target=None, supports=None, mode=None):
    """True where float16 overflow saturates and only the device's status register tells:
    Ascend 910A (Atlas training series), or 910B and later with
    ``MS_ASCEND_CHECK_OVERFLOW_MODE=SATURATION_MODE`` (the same test ``amp.all_finite`` makes).

    ``target``, ``supports`` (SoC feature name -> bool) and ``mode`` default to the current
    device, MindSpore's SoC table and the environment.
    """
    target = target or ms.get_context('device_target')
    if target != 'Ascend':
        return False
    if supports is None:
        from mindspore._c_expression import MSContext
        supports = MSContext.get_instance().ascend_soc_supports_feature
    if mode is None:
        mode = os.environ.get('MS_ASCEND_CHECK_OVERFLOW_MODE')
    return bool(supports('amp_loss_scale_train_classic_target')
                or (supports('train_hq_dtype_line') and mode == 'SATURATION_MODE'))


class OverflowReset(nn.Cell):
    """Clears the device's float overflow status before ``x`` is used (saturation mode only),
    so that ``amp.all_finite`` at the end of the step sees this step's overflows alone and not
    those of a validation or logging graph run in between. Elsewhere it returns ``x``."""

    def __init__(self, enabled=None):
        super().__init__()
        self.enabled = saturation_mode() if enabled is None else enabled
        if self.enabled:
            from mindspore.ops.operations.math_ops import NPUClearFloatStatusV2
            self.clear = NPUClearFloatStatusV2()

    def construct(self, x):
        if self.enabled:
            status = Tensor([0] * 8, ms.int32)
            status = ops.depend(status, x)
            cleared = self.clear(status)
            return ops.depend(x, cleared)
        return x
