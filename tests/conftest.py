"""Shared test set-up: run from the repo root, CPU, graph mode unless a test says otherwise."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, 'tests', 'data')
sys.path.insert(0, ROOT)
# no graph compile cache in ~/.cache from tests (tests/test_compile_cache.py uses its own folders)
os.environ.setdefault('IRN_COMPILE_CACHE', 'off')

import mindspore as ms  # noqa: E402

from src.utils.device import select_conv  # noqa: E402

ms.set_device('CPU')
ms.set_context(mode=ms.GRAPH_MODE)
CONV = select_conv('CPU')  # the default CPU path: oneDNN direct convolutions if they build


@pytest.fixture
def pynative():
    """Run one test in PyNative mode, then restore graph mode."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


@pytest.fixture(scope='session')
def vgg_file(tmp_path_factory):
    """A VGG19 features checkpoint as `python -m src.convert --vgg19` writes it, with random
    values (tests never see ImageNet weights); written once per test session."""
    from src.network.vgg import random_vgg19_weights, write_vgg19_features
    path = str(tmp_path_factory.mktemp('vgg') / 'vgg19_features.ckpt')
    write_vgg19_features(random_vgg19_weights(7), path)
    return path


def fixture(name):
    """Load tests/data/<name>.npz (outputs of the authors' PyTorch code)."""
    return np.load(os.path.join(DATA, name + '.npz'))


_WORKER_TALLIES = []  # the fault tallies of pytest-xdist workers (-n), summed at the end


def pytest_sessionfinish(session):
    """On an xdist worker: hand this process's fault tally to the controller."""
    faults = sys.modules.get('test_faults')
    if hasattr(session.config, 'workeroutput') and faults is not None:
        session.config.workeroutput['fault_tally'] = dict(faults.TALLY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """On the xdist controller: collect a finished worker's fault tally."""
    tally = getattr(node, 'workeroutput', {}).get('fault_tally')
    if tally:
        _WORKER_TALLIES.append(tally)


def pytest_terminal_summary(terminalreporter):
    """The tally of tests/test_faults.py, when it ran (in this process or in xdist workers)."""
    faults = sys.modules.get('test_faults')
    tallies = _WORKER_TALLIES + ([faults.TALLY] if faults is not None else [])
    total = {k: sum(t.get(k, 0) for t in tallies) for k in ('faults', 'lost', 'exact')}
    if total['faults']:
        terminalreporter.write_line(f"faults injected: {total['faults']}, states lost: "
                                    f"{total['lost']}, resumes exact: {total['exact']}")
