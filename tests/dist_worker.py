"""msrun worker for tests/test_distributed.py: several data-parallel cases in one job (one
msrun start-up), each with train.py's own set-up and loop; every rank writes what it ended with.

    dist_worker.py OUT_DIR CASES ARG... : CASES ``plain`` or ``plain,blockwise``; ARG... the
    train.py arguments of the first case (it also does train.py's device and parallel
    set-up); the others reuse them with overrides.

Case ``plain``: the default CPU path (oneDNN conv, plain step), then sharded and unsharded
validation of the same weights on every rank. Case ``blockwise``: the off-CPU path (MindSpore's
Conv2D, block-wise ``recompute`` then ``invertible`` steps, the reducer after them) with a stop
request on rank 1 only. Also the agreement of a rank-local flag
and of a rank-local non-finite loss inside the update step.
"""
import copy
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402


def dump(trainer, path, **extra):
    """The rank's final weights (and ``extra`` arrays) as ``path``."""
    np.savez(path, **{p.name: p.asnumpy() for p in trainer.net.get_parameters()}, **extra)


def run_blockwise(base, rank_id, rank_size):
    """The off-CPU path: ``recompute`` for iteration 1, then the ``invertible`` walk (the same
    compiled graphs, block inputs rebuilt instead of stored); rank 1 alone asks to stop during
    iteration 2 (what a signal reaching one rank does)."""
    from src.trainer import Trainer
    opt = copy.deepcopy(base)
    opt['name'], opt['train']['memory_mode'], opt['train']['niter'] = 'blockwise', 'recompute', 4
    opt['datasets']['val']['dataroot_GT'] = None  # validated in the first case
    trainer = Trainer(opt, rank_id=rank_id, rank_size=rank_size)
    source, fetch = trainer.model.step.grad_source, trainer.fetch

    def fetch_and_switch(batch):
        if trainer.iteration == 1:
            source.store_inputs = False
            trainer.stop_requested = trainer.stop_requested or rank_id == 1
        return fetch(batch)
    trainer.fetch = fetch_and_switch
    return trainer, trainer.run(), source.store_inputs


def step_agreement(rank):
    """The update step of a data-parallel run (reducer, check, agreement, Adam) on one
    parameter: finite gradients on both ranks, a non-finite loss on rank 1 only. Returns
    ``[applied, parameter unchanged]`` for that step and ``applied`` for a finite one."""
    import mindspore as ms
    from mindspore import nn
    from src.optim import ApplyGradients, ClippedAdam
    w = ms.Parameter(ms.Tensor(np.ones(3, np.float32)), name='w')
    adam = ClippedAdam([w])
    update = ApplyGradients(adam, nn.DistributedGradReducer(adam.params, mean=True, degree=2))
    grads = (ms.Tensor(np.full(3, 0.5, np.float32)),)
    lr = ms.Tensor(0.1, ms.float32)
    _, applied = update(grads, ms.Tensor(np.inf if rank == 1 else 1.0, ms.float32), lr)
    unchanged = bool(np.array_equal(w.asnumpy(), np.ones(3, np.float32)))
    _, finite = update(grads, ms.Tensor(1.0, ms.float32), lr)
    return [bool(applied.asnumpy()), unchanged, bool(finite.asnumpy())]


def main():
    out, cases, argv = sys.argv[1], sys.argv[2].split(','), sys.argv[3:]
    import mindspore as ms
    from src.data.sources import ValidationSource
    from src.distributed import RanksAgree
    from src.utils.device import select_conv
    trainer = train.build_trainer(argv)  # plain, oneDNN conv
    rank, size = trainer.rank_id, trainer.rank_size
    trainer.run()
    sharded = trainer.validate()
    source = ValidationSource(trainer.opt['datasets']['val']['dataroot_GT'], trainer.opt['scale'])
    whole = trainer.model.validate(source)  # this rank alone, every image
    keys = sorted(whole)
    local = ms.Tensor(rank == 0)
    flags = [bool(RanksAgree(mode)(local).asnumpy()) for mode in ('all', 'any')]
    flags += step_agreement(rank)
    dump(trainer, os.path.join(out, f'plain_rank{rank}.npz'), flags=np.array(flags),
         sharded=np.array([sharded[k] for k in keys]), whole=np.array([whole[k] for k in keys]))

    if 'blockwise' not in cases:
        return
    os.environ['IRN_CONV'] = 'mindspore'
    assert select_conv('CPU') == 'mindspore'
    case, result, stored = run_blockwise(trainer.opt, rank, size)
    dump(case, os.path.join(out, f'blockwise_rank{rank}.npz'), stored=np.array(stored),
         iteration=np.array(result['iteration']), stopped=np.array(result['stopped']))


if __name__ == '__main__':
    main()
