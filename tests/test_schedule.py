"""Learning-rate generators vs hand-computed values of the authors' schedulers.

Convention checked here: entry i is the rate of update i (0-based = MindSpore global_step);
the authors step the scheduler after each update, so a milestone m takes effect at entry m.
"""
import math

import numpy as np
import pytest

from src.schedule import build_lr, cosine_restart_lr, multistep_lr
from src.utils.errors import IRNError

PAPER = {"lr_G": 2e-4, "niter": 500000, "lr_scheme": "MultiStepLR", "warmup_iter": -1,
         "lr_steps": [100000, 200000, 300000, 400000], "lr_gamma": 0.5}


def test_paper_schedule():
    lr = build_lr(PAPER)
    assert lr.dtype == np.float32 and lr.shape == (500000,)
    expect = {0: 2e-4, 99999: 2e-4, 100000: 1e-4, 199999: 1e-4, 200000: 5e-5,
              299999: 5e-5, 300000: 2.5e-5, 400000: 1.25e-5, 499999: 1.25e-5}
    for i, v in expect.items():
        assert lr[i] == pytest.approx(v, rel=1e-6), i
    assert len(np.unique(lr)) == 5


def test_multistep_repeated_milestone_and_restart():
    lr = multistep_lr(1.0, 12, milestones=[3, 3, 8], gamma=0.5, restarts=[6],
                      restart_weights=[0.5])
    np.testing.assert_allclose(lr, [1, 1, 1, .25, .25, .25, .5, .5, .25, .25, .25, .25])


def test_warmup_reproduces_authors_loop():
    # update 0 uses base_lr; after update t < warmup: base * t / warmup; then the
    # recursive scheduler keeps the last warm-up value (as in the original code)
    lr = multistep_lr(1.0, 8, milestones=[6], gamma=0.5, warmup_iter=5)
    np.testing.assert_allclose(lr, [1, .2, .4, .6, .8, .8, .4, .4])


def test_cosine_without_restart_is_periodic_cosine():
    base, eta, T = 2e-4, 1e-7, 10
    lr = cosine_restart_lr(base, 35, T_period=[T], eta_min=eta)
    expect = [eta + (base - eta) * (1 + math.cos(math.pi * t / T)) / 2 for t in range(35)]
    np.testing.assert_allclose(lr, expect, rtol=1e-5, atol=1e-12)


def test_cosine_with_restarts():
    lr = cosine_restart_lr(1.0, 25, T_period=[10, 10, 5], restarts=[10, 20],
                           weights=[0.5, 0.25], eta_min=0.0)
    expect = [(1 + math.cos(math.pi * t / 10)) / 2 for t in range(10)]
    expect += [0.5 * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(10)]
    expect += [0.25 * (1 + math.cos(math.pi * t / 5)) / 2 for t in range(5)]
    np.testing.assert_allclose(lr, expect, rtol=1e-6, atol=1e-7)
    assert lr[10] == pytest.approx(0.5) and lr[20] == pytest.approx(0.25)


def test_build_lr_dispatch_and_errors():
    opt = {"lr_G": 1.0, "niter": 30, "lr_scheme": "CosineAnnealingLR_Restart",
           "T_period": [10, 20], "restarts": [10], "restart_weights": [1], "eta_min": 0}
    lr = build_lr(opt)
    assert lr.shape == (30,) and lr[10] == pytest.approx(1.0) and lr[5] == pytest.approx(0.5)
    with pytest.raises(IRNError, match="lr_scheme"):
        build_lr(dict(PAPER, lr_scheme="Step"))
    with pytest.raises(IRNError, match="lr_steps"):
        build_lr({k: v for k, v in PAPER.items() if k != "lr_steps"})
    with pytest.raises(IRNError, match="restart"):
        multistep_lr(1.0, 10, [5], 0.5, restarts=[3, 6], restart_weights=[1])
    with pytest.raises(IRNError, match="T_period"):
        cosine_restart_lr(1.0, 10, T_period=[5], restarts=[5], weights=[1])
