"""What data-parallel ranks share besides the gradients: agreed decisions, logged means and
sharded validation.

Every collective here is a small graph that all ranks must call at the same point of the loop;
the trainer does so unconditionally (never behind a rank-local ``if``).
"""
import numpy as np
import mindspore as ms
from mindspore import nn, ops

__all__ = ['RanksAgree', 'RankMean', 'ShardedSource', 'gather_results', 'validate_sharded']


class RanksAgree(nn.Cell):
    """``flag`` (a bool Tensor) of every rank together: True when all ranks say True
    (``mode='all'``) or when any rank does (``mode='any'``); one small all-reduce.

    Decisions that change what the ranks do next (apply or skip an update, stop) must be the
    same on every rank, or the ranks diverge or wait for each other in an AllReduce.
    """

    def __init__(self, mode='all'):
        super().__init__()
        if mode not in ('all', 'any'):
            raise ValueError(f"mode must be 'all' or 'any', got {mode!r}")
        self.want_all = mode == 'all'
        self.all_reduce = ops.AllReduce()  # a float32 sum: every backend has it

    def construct(self, flag):
        if self.want_all:  # count the ranks that say no
            return self.all_reduce(ops.cast(ops.logical_not(flag), ms.float32)) < 0.5
        return self.all_reduce(ops.cast(flag, ms.float32)) > 0.5


class RankMean(nn.Cell):
    """Mean of a tensor over the data-parallel ranks (all-reduce sum / world size)."""

    def __init__(self, rank_size):
        super().__init__()
        self.all_reduce = ops.AllReduce()
        self.rank_size = rank_size

    def construct(self, x):
        return self.all_reduce(x) / self.rank_size


class _AllGather(nn.Cell):
    def __init__(self):
        super().__init__()
        self.gather = ops.AllGather()

    def construct(self, x):
        return self.gather(x)


class ShardedSource:
    """Images ``rank, rank + size, ...`` of ``source`` (``len`` and ``[i]``); ``indices``
    are their positions in ``source``, which decide per-image randomness (e.g. the z seeds of
    :func:`src.evaluate.evaluate`), so a shard computes what the whole set computes there."""

    def __init__(self, source, rank, size):
        self.source = source
        self.indices = range(rank, len(source), size)

    def __len__(self):
        return len(self.indices)

    def __iter__(self):
        for i in self.indices:
            yield self.source[i]


def gather_results(results, total, keys, rank_id, rank_size, gather=None):
    """Every rank's per-image results -> the ``keys`` of all ``total`` images, in set order.

    ``results``: this rank's dicts for images ``rank_id, rank_id + rank_size, ...``. Values
    travel as the bits of float64 (viewed as int32: an all-gather only copies them, and the
    CPU backend's float64 all-gather rounds to float32 precision), so the list equals what a
    single process computes, bit for bit. A missing key or padding is NaN.
    """
    if total == 0:
        return []
    per_rank = -(-total // rank_size)
    local = np.full((per_rank, len(keys)), np.nan, np.float64)
    for row, r in enumerate(results):
        local[row] = [r.get(k, np.nan) for k in keys]
    gather = gather or _AllGather()
    rows = gather(ms.Tensor(local.view(np.int32))).asnumpy().view(np.float64)
    rows = rows.reshape(rank_size, per_rank, len(keys))
    return [dict(zip(keys, map(float, rows[i % rank_size, i // rank_size])))
            for i in range(total)]


def validate_sharded(model, source, rank_id, rank_size, any_rank, owner=None):
    """``model``'s validation metrics of all of ``source``, each rank evaluating its shard.

    ``any_rank(flag)``: ``flag`` or'ed over the ranks (a collective). With ``owner`` the shard
    is a :class:`src.train_signals.Stoppable`: a stop request interrupts this rank's shard, the
    rank still takes part in the gather (the others are in it), and then every rank raises
    ``StopRequested`` when any rank was interrupted."""
    from src.train_signals import StopRequested, Stoppable
    shard = ShardedSource(source, rank_id, rank_size)
    try:
        results = model.validate_images(shard if owner is None else Stoppable(shard, owner))
        stopped = False
    except StopRequested:
        results, stopped = [], True
    results = gather_results(results, len(source), model.metrics, rank_id, rank_size)
    if any_rank(stopped):
        raise StopRequested()
    return model.summarize(results)
