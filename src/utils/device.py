"""Device, precision and execution-mode set-up (standalone and data parallel)."""
import os

import mindspore as ms

from src.utils.errors import IRNError, describe_error


GRAPH_CALL_DEPTH = 4000


def precision_settings(target, allow_fast_fp32=False):
    """The operator-precision calls the device needs so that float32 stays float32.

    Returns ``[(device_context module, function, value)]``, applied by :func:`apply_precision`
    in that order. ``train.amp_level`` casts explicitly (O1: the dense sub-networks in
    float16), so everything else must keep the dtype it is given:

    * Ascend: CANN may lower float32 by itself: ``precision_mode`` defaults to ``force_fp16``
      or ``allow_fp32_to_fp16`` on the Atlas training series, and Conv runs in HF32 by
      default. So ``precision_mode('must_keep_origin_dtype')`` always, and HF32 for Conv
      and MatMul only with ``allow_fast_fp32``.
    * GPU: cuDNN convolutions may use TF32 (MindSpore's default for Conv is True); allowed
      only with ``allow_fast_fp32``.
    * CPU: nothing to set.
    """
    fast = bool(allow_fast_fp32)
    if target == 'Ascend':
        return [('ascend', 'precision_mode', 'must_keep_origin_dtype'),
                ('ascend', 'conv_allow_hf32', fast), ('ascend', 'matmul_allow_hf32', fast)]
    if target == 'GPU':
        return [('gpu', 'conv_allow_tf32', fast), ('gpu', 'matmul_allow_tf32', fast)]
    return []


def apply_precision(target, allow_fast_fp32=False):
    """Make the calls of :func:`precision_settings` (after ``ms.set_device(target)``: each
    function checks the device on its first call and does nothing on another one)."""
    calls = precision_settings(target, allow_fast_fp32)
    if calls:
        import mindspore.device_context  # noqa: F401  (ascend / gpu submodules)
    for device, name, value in calls:
        getattr(getattr(ms.device_context, device).op_precision, name)(value)
    return calls


def setup_device(target='CPU', graph=True, device_id=None, allow_fast_fp32=False):
    """Select the backend, its float32 precision and graph / PyNative mode; GPU and Ascend take
    ``DEVICE_ID`` by default.

    On CPU, the DenseBlock convolutions use the oneDNN kernels of :mod:`src.network.fast_conv`.
    """
    if target not in ('CPU', 'GPU', 'Ascend'):
        raise IRNError(f'device_target must be CPU, GPU or Ascend, got {target!r}')
    if device_id is None:
        device_id = int(os.environ.get('DEVICE_ID', '0')) if target != 'CPU' else None
    try:
        if device_id is None:
            ms.set_device(target)
        else:
            ms.set_device(target, device_id)
        apply_precision(target, allow_fast_fp32)
    except (RuntimeError, ValueError) as exc:
        raise IRNError(f'cannot use device {target}: {describe_error(exc)}') from None
    ms.set_context(mode=ms.GRAPH_MODE if graph else ms.PYNATIVE_MODE)
    select_conv(target)
    return target


def init_parallel(target, allow_fast_fp32=False):
    """Data parallel: set the device, ``init()`` the collective backend (HCCL / NCCL / MCCL)
    and the data-parallel context; returns ``(rank_id, rank_size)``.

    Under msrun each worker is given its device; with a rank table, ``DEVICE_ID`` names it.
    The gradients are averaged by an explicit ``nn.DistributedGradReducer(mean=True,
    degree=rank_size)`` in the train step. ``set_auto_parallel_context`` is marked for
    removal in favour of ``mindspore.parallel.auto_parallel.AutoParallel``, but 2.10's
    ``AutoParallel`` wraps one network for semi-auto / sharding-propagation parallelism and
    has no data-parallel mode for hand-written steps like ours, so the context call stays.
    """
    from mindspore.communication import get_group_size, get_rank, init
    try:
        if os.environ.get('RANK_TABLE_FILE') and os.environ.get('DEVICE_ID'):
            ms.set_device(target, int(os.environ['DEVICE_ID']))  # rank-table launch
        else:
            ms.set_device(target)  # msrun gives each worker its device
        apply_precision(target, allow_fast_fp32)
        ms.set_context(mode=ms.GRAPH_MODE)
        init()
        select_conv(target)
    except (RuntimeError, ValueError) as exc:
        raise IRNError(f'data-parallel init failed on {target}: {describe_error(exc)}') from None
    rank_id, rank_size = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL,
                                 gradients_mean=True, device_num=rank_size)
    return rank_id, rank_size


def select_conv(target):
    """Choose the convolution backend (see :mod:`src.network.fast_conv`); returns its name.

    Also raises MindSpore's graph call-depth limit: the x8 plain training graph (24 coupling
    blocks, forward + upscaling + gradients) exceeds the default of 1000.
    """
    ms.set_recursion_limit(GRAPH_CALL_DEPTH)
    from src.network import fast_conv
    return fast_conv.select(target)
