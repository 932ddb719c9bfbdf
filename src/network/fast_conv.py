"""Fast CPU convolution for the dense sub-networks: oneDNN direct kernels as MindSpore Custom ops.

MindSpore's CPU Conv2D hands oneDNN plain NCHW tensors, for which oneDNN picks an im2col GEMM
(about 22 GFLOP/s here, and a large workspace per conv). ``dnnl_conv.cc`` calls the same oneDNN
library (MindSpore's own ``libdnnl.so.3``) with blocked layouts, which selects its direct JIT
kernels (50-70 GFLOP/s). It is compiled with g++ on first use against the oneDNN headers of the
``onednn-devel-cpu-gomp`` package and cached. Only 3x3, stride 1, padding 1, float32, CPU.

The backend is chosen by :func:`select` (called by ``src.utils.device.setup``) from the
environment variable ``IRN_CONV`` = ``auto`` (default: oneDNN on CPU if it builds, else
MindSpore's conv), ``dnnl`` (oneDNN or a one-line error) or ``mindspore``.
"""
import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile

import mindspore as ms
from mindspore import ops

from src.utils.errors import IRNError

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dnnl_conv.cc')
_LOG = logging.getLogger('irn')
_state = {'backend': 'mindspore', 'conv': None}


def _headers():
    """The oneDNN include dir (onednn-devel-cpu-gomp installs it under the environment prefix)."""
    for root in (os.environ.get('IRN_DNNL_INCLUDE'), os.path.join(sys.prefix, 'include')):
        if root and os.path.isfile(os.path.join(root, 'oneapi', 'dnnl', 'dnnl.hpp')):
            return root
    raise IRNError('oneDNN headers not found under %s/include (pip install onednn-devel-cpu-gomp, '
                   'or set IRN_DNNL_INCLUDE)' % sys.prefix)


def _mindspore_lib():
    lib = os.path.join(os.path.dirname(ms.__file__), 'lib')
    if not os.path.isfile(os.path.join(lib, 'libdnnl.so.3')):
        raise IRNError('%s/libdnnl.so.3 not found: this MindSpore build has no oneDNN' % lib)
    return lib


def build():
    """Compile ``dnnl_conv.cc`` once per source/MindSpore version; return the .so path."""
    include, lib = _headers(), _mindspore_lib()
    with open(_SOURCE, 'rb') as f:
        digest = hashlib.sha256(f.read() + ms.__version__.encode() + include.encode()).hexdigest()[:16]
    cache = os.environ.get('IRN_KERNEL_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'irn_mindspore')
    target = os.path.join(cache, 'dnnl_conv-%s.so' % digest)
    if os.path.isfile(target):
        return target
    compiler = shutil.which(os.environ.get('CXX', 'g++'))
    if compiler is None:
        raise IRNError('no C++ compiler (g++) found to build %s' % _SOURCE)
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        # MindSpore's oneDNN uses the threadpool runtime; the packaged headers say OpenMP.
        inc = os.path.join(tmp, 'include')
        shutil.copytree(os.path.join(include, 'oneapi'), os.path.join(inc, 'oneapi'))
        config = os.path.join(inc, 'oneapi', 'dnnl', 'dnnl_config.h')
        with open(config) as f:
            text = f.read()
        for key in ('DNNL_CPU_THREADING_RUNTIME', 'DNNL_CPU_RUNTIME'):
            text = text.replace('#define %s DNNL_RUNTIME_OMP' % key,
                                '#define %s DNNL_RUNTIME_THREADPOOL' % key)
        with open(config, 'w') as f:
            f.write(text)
        out = os.path.join(tmp, 'dnnl_conv.so')
        cmd = [compiler, '-O2', '-std=c++17', '-shared', '-fPIC', '-I', inc, _SOURCE, '-o', out,
               '-L', lib, '-l:libdnnl.so.3', '-Wl,-rpath,' + lib, '-lpthread']
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise IRNError('building %s failed: %s' % (_SOURCE, proc.stderr.strip().splitlines()[-1:]))
        os.replace(out, target)
    return target


def _make_conv(so):
    backward = ops.Custom(
        so + ':IrnConv3x3Backward', func_type='aot',
        out_shape=lambda dy, x, w: (x, w, [w[0]]),
        out_dtype=lambda dy, x, w: (x, x, x))

    def bprop(x, w, b, out, dout):
        return backward(dout, x, w)

    forward = ops.Custom(
        so + ':IrnConv3x3Forward', func_type='aot',
        out_shape=lambda x, w, b: [x[0], w[0], x[2], x[3]],
        out_dtype=lambda x, w, b: x, bprop=bprop)
    return forward


def select(device_target):
    """Pick the conv backend for ``device_target`` (see the module docstring); return its name."""
    want = os.environ.get('IRN_CONV', 'auto')
    if want not in ('auto', 'dnnl', 'mindspore'):
        raise IRNError('IRN_CONV=%s: expected auto, dnnl or mindspore' % want)
    _state.update(backend='mindspore', conv=None)
    if want == 'mindspore' or (want == 'auto' and device_target != 'CPU'):
        return 'mindspore'
    if device_target != 'CPU':
        raise IRNError('IRN_CONV=dnnl needs --device_target CPU, got %s' % device_target)
    try:
        _state.update(backend='dnnl', conv=_make_conv(build()))
    except IRNError as err:
        if want == 'dnnl':
            raise
        _LOG.warning('fast CPU conv unavailable (%s); using MindSpore Conv2D', err)
    return _state['backend']


def backend():
    """The convolution backend graphs traced now will use: 'dnnl' or 'mindspore'."""
    return _state['backend']


def use_mindspore():
    """Use MindSpore's Conv2D from now on (e.g. for a portable export)."""
    _state.update(backend='mindspore', conv=None)


@contextlib.contextmanager
def mindspore_conv():
    """Graphs traced inside this block use MindSpore's Conv2D.

    For dynamic-shape graphs (``Cell.set_inputs`` with ``None`` sizes): the custom op supports
    static shapes only. A graph is traced once, on its first call, so wrapping every call of
    such a Cell is cheap.
    """
    saved = dict(_state)
    _state.update(backend='mindspore', conv=None)
    try:
        yield
    finally:
        _state.update(saved)


def conv3x3(x, weight, bias):
    """3x3 convolution, stride 1, zero padding 1, with bias."""
    if _state['conv'] is not None and x.dtype == ms.float32:
        return _state['conv'](x, weight, bias)
    return ops.conv2d(x, weight, bias, pad_mode='pad', padding=1)
