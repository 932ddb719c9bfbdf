"""Memory modes and micro-batching compute the plain step's update (authors' fixtures, graph mode)."""
import pytest

from test_parity import replay
from src.backprop import AccumulatingStep, BlockwiseGrad, PlainGrad
from src.config import load_config
from src.loss import IRNWithLoss
from src.optim import ClippedAdam, TrainStep, build_train_step
from src.network import InvRescaleNet
from src.utils.errors import IRNError


def make(mode, micro=None):
    def make_step(net, scale):
        loss = IRNWithLoss(net, float(scale ** 2))
        adam = ClippedAdam(net.trainable_params(), 0.9, 0.999, 1e-8, weight_decay=1e-5, clip_norm=10.0)
        if mode == 'plain':
            source = PlainGrad(loss, adam.params)
        else:
            source = BlockwiseGrad(loss, store_inputs=(mode == 'recompute'))
        return AccumulatingStep(source, adam, micro)  # None: the whole batch at once
    return make_step


@pytest.mark.parametrize('mode,micro', [('recompute', None), ('invertible', 1)])
def test_memory_modes_reproduce_authors_steps(mode, micro):
    replay('irn_x2_tiny', make(mode, micro))  # batch 2: micro 1 accumulates two halves


def test_plain_micro_batches_reproduce_authors_steps():
    replay('irn_x2_tiny', make('plain', 1))


def test_micro_batch_must_divide_batch():
    with pytest.raises(IRNError, match='micro_batch \\(5\\) must divide'):
        load_config(None, ['datasets.train.batch_size=16', 'train.micro_batch=5'])


def test_build_train_step_picks_the_mode():
    opt = load_config(None, ['scale=2', 'network_G.scale=2', 'network_G.block_num=[1]',
                             'datasets.train.batch_size=4', 'datasets.train.GT_size=16'])
    net = InvRescaleNet([1])
    loss = IRNWithLoss(net, 4.0)
    assert opt['train']['micro_batch'] is None
    assert isinstance(build_train_step(loss, ClippedAdam(net.trainable_params()), opt), TrainStep)
    for mode, micro in (('invertible', 4), ('recompute', 2), ('plain', 2)):
        opt['train']['memory_mode'], opt['train']['micro_batch'] = mode, micro
        step = build_train_step(loss, ClippedAdam(net.trainable_params()), opt)
        assert isinstance(step, AccumulatingStep) and step.micro_batch == micro
        expected = PlainGrad if mode == 'plain' else BlockwiseGrad
        assert isinstance(step.grad_source, expected)
        if mode != 'plain':
            assert step.grad_source.store_inputs == (mode == 'recompute')
